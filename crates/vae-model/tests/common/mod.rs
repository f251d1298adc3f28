//! Finite-difference helpers shared by the convolution tests.

use candle_core::Tensor;

/// Central differences of `f` in each element of `v`, with step 1e-6.
pub fn numeric_gradient(v: &Tensor, f: impl Fn(&Tensor) -> f64) -> Vec<f64> {
    let eps = 1e-6;
    let base = v.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let at = |i: usize, d: f64| {
        let mut e = base.clone();
        e[i] += d;
        f(&Tensor::from_vec(e, v.shape(), v.device()).unwrap())
    };
    (0..base.len())
        .map(|i| (at(i, eps) - at(i, -eps)) / (2.0 * eps))
        .collect()
}

/// max |g − fd| / max |fd|.
pub fn relative_error(got: &Tensor, fd: &[f64]) -> f64 {
    let got = got.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(got.len(), fd.len());
    let err = got
        .iter()
        .zip(fd)
        .map(|(g, f)| (g - f).abs())
        .fold(0.0, f64::max);
    err / fd.iter().map(|f| f.abs()).fold(0.0, f64::max)
}
