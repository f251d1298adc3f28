//! Each log-density and mean against SciPy's and PyTorch's, in f64 and in the f32 the models train in
//! (`tests/fixtures/likelihoods/make_fixtures.py` made the values), and each gradient against central differences.

use candle_core::{DType, Device, Tensor};

use super::*;

/// One fixture case: the decoder output, the values and what the libraries computed.
struct Case {
    name: String,
    likelihood: Likelihood,
    sigma: Option<f64>,
    out: Vec<f64>,
    x: Vec<f64>,
    log_density: Vec<f64>,
    mean: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/likelihoods/likelihoods.json"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let row = |v: &serde_json::Value| -> Vec<f64> {
        v[0].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let cases = json["cases"].as_array().unwrap();
    cases
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            likelihood: c["likelihood"].as_str().unwrap().parse().unwrap(),
            sigma: c["sigma"].as_f64(),
            out: row(&c["out"]),
            x: row(&c["x"]),
            log_density: row(&c["log_density"]),
            mean: row(&c["mean"]),
        })
        .collect()
}

fn tensor(v: &[f64], dtype: DType) -> Tensor {
    Tensor::from_vec(v.to_vec(), (1, v.len()), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1.0);
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: ours {g}, the library's {w} (±{tol})"
        );
    }
}

#[test]
fn log_densities_and_means_match_scipy_and_torch() {
    for (dtype, rel) in [(DType::F64, 1e-9), (DType::F32, 2e-5)] {
        for c in cases() {
            let (out, x) = (tensor(&c.out, dtype), tensor(&c.x, dtype));
            let what = format!("{} ({dtype:?})", c.name);
            let got = log_density(c.likelihood, c.sigma, &out, &x).unwrap();
            assert_close(
                &format!("{what}: log p"),
                &values(&got),
                &c.log_density,
                rel,
            );
            let got = mean(c.likelihood, c.sigma, &out).unwrap();
            assert_close(&format!("{what}: mean"), &values(&got), &c.mean, rel);
        }
    }
}

#[test]
fn a_discretised_logistic_sums_to_one_over_the_256_values() {
    // Any location and scale: the 256 bins tile the line, the edge bins open-ended.
    for (mu, log_s) in [(0.5, -3.0), (0.0, -7.0), (1.3, 0.5), (-0.2, -5.0)] {
        let x: Vec<f64> = (0..256).map(|k| k as f64 / 255.0).collect();
        let out: Vec<f64> = [vec![mu; 256], vec![log_s; 256]].concat();
        let lp = log_density(
            Likelihood::Logistic,
            None,
            &tensor(&out, DType::F64),
            &tensor(&x, DType::F64),
        )
        .unwrap();
        let total: f64 = values(&lp).iter().map(|l| l.exp()).sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "μ {mu}, log s {log_s}: total mass {total}"
        );
    }
}

#[test]
fn gradients_are_finite_and_match_central_differences() {
    for c in cases() {
        let out = candle_core::Var::from_tensor(&tensor(&c.out, DType::F64)).unwrap();
        let x = tensor(&c.x, DType::F64);
        let f = |o: &Tensor| {
            log_density(c.likelihood, c.sigma, o, &x)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let grads = f(out.as_tensor()).backward().unwrap();
        let grad = values(grads.get(out.as_tensor()).unwrap());
        for (i, g) in grad.iter().enumerate() {
            assert!(g.is_finite(), "{}: d/d out[{i}] = {g}", c.name);
            let h = 1e-6;
            let at = |delta: f64| {
                let mut v = c.out.clone();
                v[i] += delta;
                values(&f(&tensor(&v, DType::F64)))[0]
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            // A log-scale held at its bound (or a branch edge within h) has no central difference to compare.
            let on_edge = (at(h) - at(0.0)).abs() < 1e-14 || (at(0.0) - at(-h)).abs() < 1e-14;
            if !on_edge {
                assert!(
                    (g - numeric).abs() <= 1e-5 * numeric.abs().max(1.0),
                    "{}: d/d out[{i}] {g}, numeric {numeric}",
                    c.name
                );
            }
        }
    }
}
