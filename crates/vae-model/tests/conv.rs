//! `conv2d` and `conv_transpose2d` against Candle's own convolutions (forward values), against central finite
//! differences (gradients, including `output_padding` 1 and 2, where Candle's own backward pass ignores it), on
//! strided views, and their errors.

use candle_core::{DType, Device, Result, Tensor, Var};
use vae_model::{conv2d, conv_transpose2d, VaeRng};

mod common;
use common::{numeric_gradient, relative_error};

/// One geometry: batch, channels in and out, input height and width, kernel, stride, padding, output padding (for
/// the transposed convolution only).
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    op: usize,
}

const fn case(
    n: usize,
    c_in: usize,
    c_out: usize,
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    op: usize,
) -> Case {
    let ((h, w), (k, s, p)) = (hw, ksp);
    Case {
        n,
        c_in,
        c_out,
        h,
        w,
        k,
        s,
        p,
        op,
    }
}

/// The encoder's geometries, scaled down in channels: k4 s2 p1, k3 s2 p1, k3 s1 p1, and an odd non-square one.
const CONV: [Case; 8] = [
    case(2, 1, 3, (28, 28), (4, 2, 1), 0),
    case(2, 2, 3, (14, 14), (4, 2, 1), 0),
    case(2, 2, 3, (32, 32), (3, 2, 1), 0),
    case(3, 2, 2, (16, 16), (3, 2, 1), 0),
    case(2, 3, 2, (8, 8), (3, 2, 1), 0),
    case(2, 2, 3, (4, 4), (3, 2, 1), 0),
    case(2, 2, 3, (10, 10), (3, 1, 1), 0),
    case(2, 2, 3, (9, 13), (5, 3, 2), 0),
];

/// The decoder's geometries: k4 s2 p1 (7→14, 14→28), k3 s2 p1 op 1 (2→4 … 16→32), k3 s1 p1, and k5 s3 p2 on a
/// non-square input with every output padding below the stride.
const TRANSPOSED: [Case; 10] = [
    case(2, 3, 2, (7, 7), (4, 2, 1), 0),
    case(2, 2, 1, (14, 14), (4, 2, 1), 0),
    case(2, 2, 3, (2, 2), (3, 2, 1), 1),
    case(2, 3, 2, (4, 4), (3, 2, 1), 1),
    case(3, 2, 2, (8, 8), (3, 2, 1), 1),
    case(2, 2, 2, (16, 16), (3, 2, 1), 1),
    case(2, 2, 3, (10, 10), (3, 1, 1), 0),
    case(2, 2, 3, (9, 13), (5, 3, 2), 0),
    case(2, 2, 3, (9, 13), (5, 3, 2), 1),
    case(2, 3, 2, (9, 13), (5, 3, 2), 2),
];

fn uniform(rng: &mut VaeRng, shape: &[usize], dtype: DType) -> Tensor {
    rng.uniform_dtype(shape, -1.0, 1.0, dtype, &Device::Cpu)
        .unwrap()
}

/// x and w for `c`; `transposed` picks `nn.ConvTranspose2d`'s weight layout.
fn inputs(c: Case, transposed: bool, seed: u64, dtype: DType) -> (Tensor, Tensor) {
    let mut rng = VaeRng::seed_from(seed);
    let x = uniform(&mut rng, &[c.n, c.c_in, c.h, c.w], dtype);
    let w_shape = match transposed {
        true => [c.c_in, c.c_out, c.k, c.k],
        false => [c.c_out, c.c_in, c.k, c.k],
    };
    (x, uniform(&mut rng, &w_shape, dtype))
}

fn ours(c: Case, transposed: bool, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    match transposed {
        true => conv_transpose2d(x, w, c.s, c.p, c.op),
        false => conv2d(x, w, c.s, c.p),
    }
}

fn candles(c: Case, transposed: bool, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    match transposed {
        true => x.conv_transpose2d(w, c.p, c.op, c.s, 1),
        false => x.conv2d(w, c.p, c.s, 1, 1),
    }
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

fn forward_matches_candle(transposed: bool, cases: &[Case]) {
    for (i, &c) in cases.iter().enumerate() {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-10)] {
            let (x, w) = inputs(c, transposed, i as u64, dtype);
            let (got, want) = (
                ours(c, transposed, &x, &w).unwrap(),
                candles(c, transposed, &x, &w).unwrap(),
            );
            assert_eq!(got.dims(), want.dims(), "{c:?}");
            assert!(got.is_contiguous());
            let diff = max_abs_diff(&got, &want);
            assert!(diff < tol, "{c:?} {dtype:?}: max abs diff {diff}");
        }
    }
}

#[test]
fn conv2d_forward_matches_candle() {
    forward_matches_candle(false, &CONV);
}

#[test]
fn conv_transpose2d_forward_matches_candle() {
    forward_matches_candle(true, &TRANSPOSED);
}

/// L = Σ r ⊙ conv(x, w) for a fixed random r, so that every output element counts.
fn loss(c: Case, transposed: bool, x: &Tensor, w: &Tensor, r: &Tensor) -> Result<Tensor> {
    (ours(c, transposed, x, w)? * r)?.sum_all()
}

fn gradients_match_finite_differences(transposed: bool, cases: &[Case]) {
    for (i, &c) in cases.iter().enumerate() {
        let (x, w) = inputs(c, transposed, 100 + i as u64, DType::F64);
        let out_dims = ours(c, transposed, &x, &w).unwrap().dims().to_vec();
        let r = uniform(
            &mut VaeRng::seed_from(200 + i as u64),
            &out_dims,
            DType::F64,
        );
        let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
        let grads = loss(c, transposed, &xv, &wv, &r)
            .unwrap()
            .backward()
            .unwrap();
        let value = |x: &Tensor, w: &Tensor| {
            loss(c, transposed, x, w, &r)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let fd_x = numeric_gradient(&x, |x| value(x, &w));
        let fd_w = numeric_gradient(&w, |w| value(&x, w));
        let (ex, ew) = (
            relative_error(grads.get(&xv).unwrap(), &fd_x),
            relative_error(grads.get(&wv).unwrap(), &fd_w),
        );
        assert!(
            ex < 1e-6 && ew < 1e-6,
            "{c:?}: relative error {ex} in x, {ew} in w"
        );
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    gradients_match_finite_differences(false, &CONV);
}

#[test]
fn conv_transpose2d_gradients_match_finite_differences() {
    gradients_match_finite_differences(true, &TRANSPOSED);
}

/// The backward pass in f32 runs and agrees with f64's.
#[test]
fn f32_gradients_agree_with_f64() {
    for (transposed, c) in [(false, CONV[7]), (true, TRANSPOSED[9])] {
        let grads = |dtype: DType| {
            let (x, w) = inputs(c, transposed, 7, dtype);
            let (x, w) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
            let g = ours(c, transposed, &x, &w)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let get = |v: &Var| g.get(v).unwrap().to_dtype(DType::F64).unwrap();
            (get(&x), get(&w))
        };
        let ((x32, w32), (x64, w64)) = (grads(DType::F32), grads(DType::F64));
        assert!(
            max_abs_diff(&x32, &x64) < 1e-4 && max_abs_diff(&w32, &w64) < 1e-4,
            "{c:?}"
        );
    }
}

/// Transposed views of x and w give what their contiguous copies give.
#[test]
fn strided_inputs_give_the_contiguous_result() {
    for (transposed, c) in [(false, CONV[7]), (true, TRANSPOSED[8])] {
        let (x, w) = inputs(c, transposed, 9, DType::F64);
        let want = ours(c, transposed, &x, &w).unwrap();
        // The same values, stored with H and W (and the kernel's two spatial axes) swapped.
        let xs = x
            .transpose(2, 3)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(2, 3)
            .unwrap();
        let ws = w
            .transpose(0, 3)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(0, 3)
            .unwrap();
        assert!(!xs.is_contiguous() && !ws.is_contiguous());
        assert_eq!(
            max_abs_diff(&ours(c, transposed, &xs, &ws).unwrap(), &want),
            0.0
        );
    }
}

fn error(r: Result<Tensor>) -> String {
    let msg = r.expect_err("an error").to_string();
    let first = msg.lines().next().unwrap_or_default().to_string();
    assert!(!first.is_empty());
    first
}

#[test]
fn bad_shapes_are_errors_that_name_the_problem() {
    let dev = Device::Cpu;
    let z = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev).unwrap();
    let x = z(&[1, 2, 5, 5]);
    assert!(error(conv2d(&x, &z(&[3, 2, 0, 0]), 1, 0)).contains("kernel is empty"));
    assert!(error(conv2d(&x, &z(&[3, 2, 3, 3]), 0, 0)).contains("stride"));
    assert!(error(conv2d(&x, &z(&[3, 2, 8, 8]), 1, 1)).contains("larger than the padded input"));
    assert!(error(conv2d(&x, &z(&[3, 4, 3, 3]), 1, 0)).contains("channels"));
    assert!(error(conv2d(&x, &z(&[3, 2, 3, 2]), 1, 0)).contains("square"));
    assert!(error(conv2d(&z(&[1, 2, 0, 5]), &z(&[3, 2, 1, 1]), 1, 0)).contains("empty"));
    assert!(error(conv2d(&z(&[2, 5, 5]), &z(&[3, 2, 3, 3]), 1, 0)).contains("rank"));
    assert!(error(conv_transpose2d(&x, &z(&[2, 3, 0, 0]), 1, 0, 0)).contains("kernel is empty"));
    assert!(error(conv_transpose2d(&x, &z(&[2, 3, 3, 3]), 0, 0, 0)).contains("stride"));
    assert!(error(conv_transpose2d(&x, &z(&[4, 3, 3, 3]), 1, 0, 0)).contains("channels"));
    assert!(error(conv_transpose2d(&x, &z(&[2, 3, 3, 3]), 2, 0, 2)).contains("output_padding"));
    // (1 − 1)·1 + 3 − 2·2 = −1: no output.
    let one = z(&[1, 2, 1, 1]);
    assert!(error(conv_transpose2d(&one, &z(&[2, 3, 3, 3]), 1, 2, 0)).contains("no output"));
    let bf16 = x.to_dtype(DType::BF16).unwrap();
    let w16 = z(&[3, 2, 3, 3]).to_dtype(DType::BF16).unwrap();
    assert!(error(conv2d(&bf16, &w16, 1, 0)).contains("BF16"));
}
