//! The decoder's distribution, the teaching code's "why binary cross-entropy?": the `fashion-mnist` preset
//! (784-400-20, ReLU, 10 epochs, seed 1) on Fashion-MNIST's grey levels with a Bernoulli, a continuous Bernoulli and
//! a Gaussian decoder (σ learned per pixel), each one's samples and reconstructions, test −ELBO, and a 100-sample
//! importance-weighted estimate of −log p(x) on the first 1000 test images.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{eval, num, samples_and_reconstructions, train, Dirs};

/// The distributions compared, as `--likelihood` takes them.
const LIKELIHOODS: [&str; 3] = ["bernoulli", "continuous-bernoulli", "gaussian"];

/// Trains each run into `fashion-<likelihood>`, draws its pictures, and returns each one's `eval` JSON with the
/// importance-weighted estimate.
pub fn runs(dirs: &Dirs) -> Result<Vec<(&'static str, Value)>> {
    let mut evals = Vec::new();
    for likelihood in LIKELIHOODS {
        let run = format!("fashion-{likelihood}");
        let flags = ["--likelihood", likelihood];
        train(&dirs.run(&run), Path::new("fashion-mnist"), &flags)?;
        samples_and_reconstructions(dirs, &run)?;
        let whole = eval(&dirs.run(&run), &[])?;
        let iw = eval(
            &dirs.run(&run),
            &["--iw-samples", "100", "--test-subset", "1000"],
        )?;
        let mut row = whole.clone();
        row["iw_nll_1000"] = iw["test_nll_iw"].clone();
        evals.push((likelihood, row));
    }
    Ok(evals)
}

/// The table of [`runs`], in nats per image.
pub fn table(rows: &[(&str, Value)]) -> String {
    let mut t = String::from(
        "| likelihood | test −ELBO | test recon | test KL | −log p(x), K = 100, first 1000 test images |\n|---|---|---|---|---|\n",
    );
    for (name, v) in rows {
        t += &format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            num(v, "test_loss"),
            num(v, "test_recon"),
            num(v, "test_kl"),
            num(v, "iw_nll_1000"),
        );
    }
    t
}
