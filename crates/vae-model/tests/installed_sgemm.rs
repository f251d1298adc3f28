//! `set_cpu_sgemm`: once a program installs a product, the f32 products of `linear_product`, `dense_layer` and
//! `conv_layer`, forward and backward, run on it and give what the `gemm` crate gave; f64 products do not. (Its own
//! test binary: the product, once installed, stays for the process.)

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var};
use vae_model::{
    conv_layer, dense_layer, linear_product, set_cpu_sgemm, Activation, ConvLayer, GemmShape,
    VaeRng,
};

/// The shapes the installed product was handed.
static SEEN: Mutex<Vec<GemmShape>> = Mutex::new(Vec::new());

/// The naive product, in f64, noting its shape.
fn naive(s: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    assert_eq!(
        (a.len(), b.len(), c.len()),
        (s.m * s.k, s.k * s.n, s.m * s.n)
    );
    SEEN.lock().unwrap().push(s);
    for i in 0..s.m {
        for j in 0..s.n {
            let at = |p: usize| {
                if s.a_transposed {
                    a[p * s.m + i]
                } else {
                    a[i * s.k + p]
                }
            };
            let bt = |p: usize| {
                if s.b_transposed {
                    b[j * s.k + p]
                } else {
                    b[p * s.n + j]
                }
            };
            let sum: f64 = (0..s.k).map(|p| at(p) as f64 * bt(p) as f64).sum();
            let before = if acc { c[i * s.n + j] as f64 } else { 0.0 };
            c[i * s.n + j] = (before + sum) as f32;
        }
    }
}

/// The outputs and every gradient of one linear product, one dense layer and one transposed conv layer.
fn outputs_and_gradients(dtype: DType) -> Vec<Vec<f64>> {
    let mut rng = VaeRng::seed_from(7);
    let mut var = |shape: &[usize]| {
        let t = rng
            .uniform_dtype(shape, -1.0, 1.0, dtype, &Device::Cpu)
            .unwrap();
        Var::from_tensor(&t).unwrap()
    };
    let (x, w, b) = (var(&[5, 7]), var(&[4, 7]), var(&[4]));
    let (cx, cw, cb) = (var(&[2, 3, 7, 7]), var(&[3, 2, 4, 4]), var(&[2]));
    let layer = ConvLayer {
        transposed: true,
        stride: 2,
        padding: 1,
        output_padding: 0,
        activation: Some(Activation::Relu),
    };
    let ys = [
        linear_product(&x, &w).unwrap(),
        dense_layer(&x, &w, &b, Some(Activation::Tanh)).unwrap(),
        conv_layer(&cx, &cw, &cb, &layer).unwrap(),
    ];
    let loss = ys.iter().map(|y| y.sqr().unwrap().sum_all().unwrap());
    let loss = loss.reduce(|a, b| (a + b).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let flat = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let mut out: Vec<Vec<f64>> = ys.iter().map(flat).collect();
    for v in [&x, &w, &b, &cx, &cw, &cb] {
        out.push(flat(grads.get(v).unwrap()));
    }
    out
}

#[test]
fn an_installed_product_runs_every_f32_product_of_the_layers_and_gives_the_same_numbers() {
    let (before, before_f64) = (
        outputs_and_gradients(DType::F32),
        outputs_and_gradients(DType::F64),
    );
    assert!(SEEN.lock().unwrap().is_empty());
    assert!(set_cpu_sgemm(naive));
    assert!(!set_cpu_sgemm(naive), "the first product installed stays");
    let after = outputs_and_gradients(DType::F32);
    for (i, (got, want)) in after.iter().zip(&before).enumerate() {
        let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(want)
            .fold(0f64, |m, (g, w)| m.max((g - w).abs()));
        assert!(
            diff < 1e-5 * scale,
            "output or gradient {i}: differs by {diff}"
        );
    }
    // Dense: x Wᵀ forward (W read transposed, as it is stored), then dW = gᵀ x and dx = g W, for both layers.
    // The transposed conv, per image (7·7 = 49 positions, 3 channels in, 2 out, a 4x4 kernel: 2·16 = 32 columns):
    // its columns xᵀ W, then dW = x cols and the input's gradient cols Wᵀ.
    let seen = std::mem::take(&mut *SEEN.lock().unwrap());
    let mut names: Vec<String> = seen.iter().map(|s| s.to_string()).collect();
    names.sort();
    let mut want = [
        "NT 5x4x7",
        "TN 4x7x5",
        "NN 5x7x4",
        "TN 49x32x3",
        "NN 3x32x49",
        "NT 49x3x32",
    ]
    .repeat(2);
    want.sort();
    assert_eq!(names, want);
    // f64 products stay on the gemm crate.
    assert_eq!(outputs_and_gradients(DType::F64), before_f64);
    assert!(SEEN.lock().unwrap().is_empty());
}
