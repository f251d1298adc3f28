//! The fused layer `conv_layer` (`act(conv(x, W) + b)` as one node) against the unfused composition of
//! `conv2d`/`conv_transpose2d`, the bias and Candle's activations (values and gradients), and its gradients in x, W
//! and b against central finite differences, for every activation.

use candle_core::{DType, Device, Result, Tensor, Var};
use vae_model::{conv2d, conv_layer, conv_transpose2d, Activation, ConvLayer, VaeRng};

mod common;
use common::{candle_activation, numeric_gradient, relative_error, ACTIVATIONS};

/// Batch, channels in and out, input height and width, kernel, stride, padding, output padding, transposed.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c: (usize, usize),
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    op: usize,
    transposed: bool,
}

const fn case(
    c: (usize, usize),
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    op: usize,
    t: bool,
) -> Case {
    Case {
        n: 2,
        c,
        hw,
        ksp,
        op,
        transposed: t,
    }
}

/// k4 s2 p1 (28→14, 14→7, and back 7→14, 14→28), k3 s2 p1 (8→4, and 4→8 with output padding 1), and k5 s3 p2
/// on a non-square input (and back, with output padding 2).
const CASES: [Case; 8] = [
    case((1, 3), (28, 28), (4, 2, 1), 0, false),
    case((2, 3), (14, 14), (4, 2, 1), 0, false),
    case((3, 2), (7, 7), (4, 2, 1), 0, true),
    case((2, 1), (14, 14), (4, 2, 1), 0, true),
    case((2, 3), (8, 8), (3, 2, 1), 0, false),
    case((3, 2), (4, 4), (3, 2, 1), 1, true),
    case((2, 3), (9, 13), (5, 3, 2), 0, false),
    case((2, 3), (9, 13), (5, 3, 2), 2, true),
];

/// More images than one product takes (16), with a partial last chunk, and more channels: k4 s2 p1 14→7 and back.
const MANY: [Case; 2] = [
    Case {
        n: 37,
        ..case((5, 6), (14, 14), (4, 2, 1), 0, false)
    },
    Case {
        n: 37,
        ..case((6, 5), (7, 7), (4, 2, 1), 0, true)
    },
];

fn layer(c: Case, activation: Option<Activation>) -> ConvLayer {
    ConvLayer {
        transposed: c.transposed,
        stride: c.ksp.1,
        padding: c.ksp.2,
        output_padding: c.op,
        activation,
    }
}

/// x, w and b for `c`, uniform in [−1, 1].
fn inputs(c: Case, seed: u64, dtype: DType) -> (Tensor, Tensor, Tensor) {
    let mut rng = VaeRng::seed_from(seed);
    let ((c_in, c_out), (h, w), k) = (c.c, c.hw, c.ksp.0);
    let mut uniform = |shape: &[usize]| {
        rng.uniform_dtype(shape, -1.0, 1.0, dtype, &Device::Cpu)
            .unwrap()
    };
    let w_shape = match c.transposed {
        true => [c_in, c_out, k, k],
        false => [c_out, c_in, k, k],
    };
    (
        uniform(&[c.n, c_in, h, w]),
        uniform(&w_shape),
        uniform(&[c_out]),
    )
}

fn fused(c: Case, act: Option<Activation>, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    conv_layer(x, w, b, &layer(c, act))
}

fn unfused(c: Case, act: Option<Activation>, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (_, s, p) = c.ksp;
    let y = match c.transposed {
        true => conv_transpose2d(x, w, s, p, c.op)?,
        false => conv2d(x, w, s, p)?,
    };
    let y = y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
    candle_activation(y, act)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The fused forward pass equals the unfused composition, in f32 and f64.
fn compare_forward(c: Case, seed: u64) {
    for act in ACTIVATIONS {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
            let (x, w, b) = inputs(c, seed, dtype);
            let got = fused(c, act, &x, &w, &b).unwrap();
            let want = unfused(c, act, &x, &w, &b).unwrap();
            assert_eq!(got.dims(), want.dims(), "{c:?}");
            assert!(got.is_contiguous());
            let diff = max_abs_diff(&got, &want);
            assert!(diff < tol, "{c:?} {act:?} {dtype:?}: max abs diff {diff}");
        }
    }
}

#[test]
fn forward_matches_the_unfused_composition() {
    for (i, &c) in CASES.iter().chain(&MANY).enumerate() {
        compare_forward(c, i as u64);
    }
}

fn loss(y: Tensor, r: &Tensor) -> f64 {
    (y * r)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn gradients_match_finite_differences() {
    for (i, &c) in CASES.iter().enumerate() {
        for act in ACTIVATIONS {
            let (x, w, b) = inputs(c, 100 + i as u64, DType::F64);
            let dims = fused(c, act, &x, &w, &b).unwrap().dims().to_vec();
            let r = VaeRng::seed_from(200 + i as u64).uniform_dtype(
                dims.as_slice(),
                -1.0,
                1.0,
                DType::F64,
                &Device::Cpu,
            );
            let r = r.unwrap();
            let vars = [&x, &w, &b].map(|t| Var::from_tensor(t).unwrap());
            let y = fused(c, act, &vars[0], &vars[1], &vars[2]).unwrap();
            let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let value =
                |x: &Tensor, w: &Tensor, b: &Tensor| loss(fused(c, act, x, w, b).unwrap(), &r);
            let fds = [
                numeric_gradient(&x, |x| value(x, &w, &b)),
                numeric_gradient(&w, |w| value(&x, w, &b)),
                numeric_gradient(&b, |b| value(&x, &w, b)),
            ];
            for (name, (v, fd)) in ["x", "w", "b"].iter().zip(vars.iter().zip(&fds)) {
                let e = relative_error(grads.get(v).unwrap(), fd);
                assert!(e < 1e-6, "{c:?} {act:?}: relative error {e} in {name}");
            }
        }
    }
}

/// The gradients equal the unfused composition's (relative to the largest, or 1), in f32 and f64, and x gets
/// none when it is data.
#[test]
fn gradients_match_the_unfused_composition() {
    for (i, &c) in CASES.iter().chain(&MANY).enumerate() {
        compare_gradients(c, 300 + i as u64);
    }
}

/// The fused gradients equal the unfused composition's; f32's rounding in the sums over images grows as √n.
fn compare_gradients(c: Case, seed: u64) {
    let f32_tol = 1e-5 * (c.n as f64).sqrt();
    for act in ACTIVATIONS {
        for (dtype, tol) in [(DType::F32, f32_tol), (DType::F64, 1e-10)] {
            let (x, w, b) = inputs(c, seed, dtype);
            let vars = [&x, &w, &b].map(|t| Var::from_tensor(t).unwrap());
            let grads =
                |f: fn(Case, Option<Activation>, &Tensor, &Tensor, &Tensor) -> Result<Tensor>| {
                    let y = f(c, act, &vars[0], &vars[1], &vars[2]).unwrap();
                    let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                    vars.each_ref().map(|v| g.get(v).unwrap().clone())
                };
            let (got, want) = (grads(fused), grads(unfused));
            for (g, w) in got.iter().zip(&want) {
                let scale = max_abs_diff(w, &w.zeros_like().unwrap()).max(1.0);
                let diff = max_abs_diff(g, w) / scale;
                assert!(diff < tol, "{c:?} {act:?} {dtype:?}: relative diff {diff}");
            }
            let data = fused(c, act, &x, &vars[1], &vars[2]).unwrap();
            let g = data.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            assert!(g.get(&x).is_none() && g.get(&vars[1]).is_some() && g.get(&vars[2]).is_some());
        }
    }
}

#[test]
fn a_bias_of_the_wrong_length_is_an_error() {
    let c = CASES[1];
    let (x, w, _) = inputs(c, 1, DType::F32);
    let b = Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap();
    let msg = fused(c, None, &x, &w, &b)
        .expect_err("an error")
        .to_string();
    assert!(msg.contains("bias"), "{msg}");
}
