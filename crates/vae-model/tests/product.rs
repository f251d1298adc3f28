//! `linear_product` against products written out by hand: its value on strided views and in every CPU dtype, its
//! gradients in closed form, and no gradient for an input that is data.

use candle_core::{DType, Device, Tensor, Var};
use vae_model::{linear_product, VaeRng};

/// `x Wᵀ` in f64, one sum at a time.
fn naive(x: &[Vec<f64>], w: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|xr| {
            w.iter()
                .map(|wr| xr.iter().zip(wr).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn transpose(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..m[0].len())
        .map(|j| m.iter().map(|r| r[j]).collect())
        .collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
    assert_eq!((got.len(), got[0].len()), (want.len(), want[0].len()));
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{g} against {w}");
    }
}

fn uniform(rng: &mut VaeRng, shape: (usize, usize)) -> Tensor {
    rng.uniform(shape, -1.0, 1.0, &Device::Cpu).unwrap()
}

#[test]
fn value_on_strided_views_in_every_cpu_dtype() {
    let mut rng = VaeRng::seed_from(3);
    // x as the transpose of a [19, 37] block, W as columns 2..19 of a wider matrix: neither contiguous.
    let x = uniform(&mut rng, (19, 37)).t().unwrap();
    let w = uniform(&mut rng, (23, 21)).narrow(1, 2, 19).unwrap();
    let want = naive(&rows(&x), &rows(&w));
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5), (DType::BF16, 3e-2)] {
        let (xd, wd) = (x.to_dtype(dtype).unwrap(), w.to_dtype(dtype).unwrap());
        let got = linear_product(&xd, &wd).unwrap();
        assert_eq!(got.dims(), &[37, 23]);
        assert_close(&rows(&got), &want, tol);
    }
}

#[test]
fn gradients_are_the_closed_form_products() {
    let mut rng = VaeRng::seed_from(4);
    let x = Var::from_tensor(&uniform(&mut rng, (6, 9)).to_dtype(DType::F64).unwrap()).unwrap();
    let w = Var::from_tensor(&uniform(&mut rng, (4, 9)).to_dtype(DType::F64).unwrap()).unwrap();
    let r = uniform(&mut rng, (6, 4)).to_dtype(DType::F64).unwrap();
    // L = Σ r ⊙ (x Wᵀ): dL/dx = r W, dL/dW = rᵀ x.
    let loss = (linear_product(&x, &w).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let (xs, ws, rs) = (rows(&x), rows(&w), rows(&r));
    assert_close(
        &rows(grads.get(&x).unwrap()),
        &naive(&rs, &transpose(&ws)),
        1e-12,
    );
    assert_close(
        &rows(grads.get(&w).unwrap()),
        &naive(&transpose(&rs), &transpose(&xs)),
        1e-12,
    );
    assert!(grads.get(&w).unwrap().is_contiguous());
}

#[test]
fn data_input_gets_no_gradient() {
    let mut rng = VaeRng::seed_from(5);
    let x = uniform(&mut rng, (3, 5));
    let w = Var::from_tensor(&uniform(&mut rng, (2, 5))).unwrap();
    let grads = linear_product(&x, &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&x).is_none());
    // dL/dW for L = Σ x Wᵀ: every row of W gets the column sums of x.
    let column_sums: Vec<f64> = transpose(&rows(&x))
        .iter()
        .map(|c| c.iter().sum())
        .collect();
    assert_close(
        &rows(grads.get(&w).unwrap()),
        &[column_sums.clone(), column_sums],
        1e-6,
    );
}

#[test]
fn mismatched_shapes_are_refused() {
    let x = Tensor::zeros((3, 5), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    let err = linear_product(&x, &w).unwrap_err().to_string();
    assert!(err.contains("x has 5 columns, W has 4"), "{err}");
}
