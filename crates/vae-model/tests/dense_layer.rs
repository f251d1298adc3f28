//! The fused dense layer `dense_layer` (`act(x Wᵀ + b)` as one node) against the composition of `linear_product`,
//! the bias and Candle's activations (values and gradients, f32 and f64), and its gradients in x, W and b against
//! central finite differences, for every activation.

use candle_core::{DType, Device, Result, Tensor, Var};
use vae_model::{dense_layer, linear_product, Activation, VaeRng};

mod common;
use common::{candle_activation, numeric_gradient, relative_error, ACTIVATIONS};

/// Rows, fan-in and fan-out: one row, a few, and more rows than one element-wise task takes (16).
const SHAPES: [(usize, usize, usize); 3] = [(1, 3, 2), (5, 7, 4), (37, 20, 33)];

fn inputs((rows, fan_in, fan_out): (usize, usize, usize), seed: u64, dtype: DType) -> [Tensor; 3] {
    let mut rng = VaeRng::seed_from(seed);
    let mut uniform = |shape: &[usize]| {
        rng.uniform_dtype(shape, -1.0, 1.0, dtype, &Device::Cpu)
            .unwrap()
    };
    [
        uniform(&[rows, fan_in]),
        uniform(&[fan_out, fan_in]),
        uniform(&[fan_out]),
    ]
}

fn unfused(x: &Tensor, w: &Tensor, b: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let y = linear_product(x, w)?.broadcast_add(b)?;
    candle_activation(y, act)
}

fn max_abs(t: &Tensor) -> f64 {
    let t = t.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    t.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
}

#[test]
fn values_and_gradients_match_the_unfused_composition() {
    for (i, &shape) in SHAPES.iter().enumerate() {
        for act in ACTIVATIONS {
            for (dtype, tol) in [(DType::F32, 3e-5), (DType::F64, 1e-10)] {
                let vars = inputs(shape, i as u64, dtype).map(|t| Var::from_tensor(&t).unwrap());
                let grads =
                    |f: fn(&Tensor, &Tensor, &Tensor, Option<Activation>) -> Result<Tensor>| {
                        let y = f(&vars[0], &vars[1], &vars[2], act).unwrap();
                        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                        (y, vars.each_ref().map(|v| g.get(v).unwrap().clone()))
                    };
                let ((y, got), (y_want, want)) = (grads(dense_layer), grads(unfused));
                let diff = max_abs(&(&y - &y_want).unwrap());
                assert!(
                    diff < tol,
                    "{shape:?} {act:?} {dtype:?}: values differ by {diff}"
                );
                for (g, w) in got.iter().zip(&want) {
                    let diff = max_abs(&(g - w).unwrap()) / max_abs(w).max(1.0);
                    assert!(
                        diff < tol,
                        "{shape:?} {act:?} {dtype:?}: gradients differ by {diff}"
                    );
                }
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences_and_data_gets_none() {
    for (i, &shape) in SHAPES[..2].iter().enumerate() {
        for act in ACTIVATIONS {
            let [x, w, b] = inputs(shape, 10 + i as u64, DType::F64);
            let r = VaeRng::seed_from(20 + i as u64)
                .uniform_dtype(&[shape.0, shape.2], -1.0, 1.0, DType::F64, &Device::Cpu)
                .unwrap();
            let value = |x: &Tensor, w: &Tensor, b: &Tensor| {
                let y = dense_layer(x, w, b, act).unwrap();
                (y * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let vars = [&x, &w, &b].map(|t| Var::from_tensor(t).unwrap());
            let y = dense_layer(&vars[0], &vars[1], &vars[2], act).unwrap();
            let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let fds = [
                numeric_gradient(&x, |x| value(x, &w, &b)),
                numeric_gradient(&w, |w| value(&x, w, &b)),
                numeric_gradient(&b, |b| value(&x, &w, b)),
            ];
            for (v, fd) in vars.iter().zip(&fds) {
                let err = relative_error(grads.get(v).unwrap(), fd);
                assert!(err < 1e-6, "{shape:?} {act:?}: relative error {err}");
            }
            let y = dense_layer(&x, &vars[1], &vars[2], act).unwrap();
            let grads = y.sum_all().unwrap().backward().unwrap();
            assert!(grads.get(&x).is_none() && grads.get(&vars[1]).is_some());
        }
    }
}

#[test]
fn mismatched_shapes_are_an_error() {
    let [x, w, b] = inputs((2, 3, 4), 1, DType::F32);
    let msg = dense_layer(&x, &w.t().unwrap(), &b, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("dense_layer"), "{msg}");
    let short = b.narrow(0, 0, 3).unwrap();
    assert!(dense_layer(&x, &w, &short, None).is_err());
}
