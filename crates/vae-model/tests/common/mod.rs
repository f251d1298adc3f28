//! Helpers shared by the tests of the convolutions and the fused layers: finite differences, and the activations
//! as Candle applies them.

#![allow(dead_code)] // each test file uses its own part

use candle_core::{Result, Tensor};
use vae_model::Activation;

/// Every activation, and none.
pub const ACTIVATIONS: [Option<Activation>; 6] = [
    Some(Activation::Relu),
    Some(Activation::Tanh),
    Some(Activation::LeakyRelu),
    Some(Activation::Elu),
    Some(Activation::Silu),
    None,
];

/// `act(y)` through Candle's own ops: what a fused layer is held to.
pub fn candle_activation(y: Tensor, act: Option<Activation>) -> Result<Tensor> {
    match act {
        None => Ok(y),
        Some(Activation::Relu) => y.relu(),
        Some(Activation::Tanh) => y.tanh(),
        Some(Activation::LeakyRelu) => candle_nn::ops::leaky_relu(&y, Activation::LEAKY_SLOPE),
        Some(Activation::Elu) => y.elu(1.0),
        Some(Activation::Silu) => y.silu(),
    }
}

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
