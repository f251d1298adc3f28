//! The likelihood row of `cargo xtask bench`: the importance-weighted estimate of −log p(x) by `vae-train eval` and
//! by `bench/torch_iw_estimate.py`, on the same model and the same binarised test images, alternated.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::median;
use crate::cmd::{project_root, summary};
use crate::flags::BenchArgs;

/// Seconds and estimates of one side over the rounds.
#[derive(Default)]
struct Estimates {
    seconds: Vec<f64>,
    nll: Vec<f64>,
}

impl Estimates {
    fn push(&mut self, (seconds, nll): (f64, f64)) {
        self.seconds.push(seconds);
        self.nll.push(nll);
    }
}

/// Times both estimators and returns the table row and the JSON entry.
pub fn likelihood(
    exe: &Path,
    work: &Path,
    args: &BenchArgs,
    torch: bool,
) -> Result<(String, serde_json::Value)> {
    let model = train_model(exe, work)?;
    let inputs = work.join("likelihood-inputs.npy");
    let k = args.likelihood_k.to_string();
    let (mut us, mut them) = (Estimates::default(), Estimates::default());
    for round in 1..=args.rounds {
        us.push(ours(exe, &model, &inputs, args)?);
        eprintln!(
            "bench: likelihood round {round}: ours {:.2} s",
            us.seconds[round - 1]
        );
        if torch {
            them.push(theirs(&model, &inputs, &k)?);
            eprintln!(
                "bench: likelihood round {round}: torch {:.2} s",
                them.seconds[round - 1]
            );
        }
    }
    Ok(row_and_entry(args, &us, &them, torch))
}

/// One epoch of the papers' model, whose file the estimators read: their speed does not depend on how well the
/// model is trained.
fn train_model(exe: &Path, work: &Path) -> Result<PathBuf> {
    let run = work.join("likelihood-model");
    let _ = std::fs::remove_dir_all(&run);
    crate::cmd::status(
        Command::new(exe)
            .args(["train", "--preset", "mnist-iwae", "--epochs", "1", "--out"])
            .arg(&run)
            .current_dir(project_root())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null()),
    )?;
    Ok(run.join("model.safetensors"))
}

/// `vae-train eval --iw-samples K`, writing the binarised test images it used to `inputs`: seconds and estimate.
fn ours(exe: &Path, model: &Path, inputs: &Path, args: &BenchArgs) -> Result<(f64, f64)> {
    let (k, n) = (
        args.likelihood_k.to_string(),
        args.likelihood_images.to_string(),
    );
    let o = Command::new(exe)
        .args(["eval", "--model"])
        .arg(model)
        .args(["--iw-samples", &k, "--test-subset", &n, "--inputs-out"])
        .arg(inputs)
        .current_dir(project_root())
        .output()?;
    if !o.status.success() {
        bail!(
            "vae-train eval failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = summary(&String::from_utf8_lossy(&o.stdout))?;
    Ok((number(&out, "iw_seconds")?, number(&out, "test_nll_iw")?))
}

/// `bench/torch_iw_estimate.py` on the same model and images: seconds and estimate.
fn theirs(model: &Path, inputs: &Path, k: &str) -> Result<(f64, f64)> {
    let script = project_root().join("bench").join("torch_iw_estimate.py");
    let o = Command::new("python3")
        .arg(script)
        .arg("--model")
        .arg(model)
        .arg("--inputs")
        .arg(inputs)
        .args(["--k", k])
        .output()?;
    if !o.status.success() {
        bail!(
            "the PyTorch estimator failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = summary(&String::from_utf8_lossy(&o.stdout))?;
    Ok((number(&out, "seconds")?, number(&out, "nll")?))
}

/// The table row and the JSON entry of the rounds' estimates.
fn row_and_entry(
    args: &BenchArgs,
    us: &Estimates,
    them: &Estimates,
    torch: bool,
) -> (String, serde_json::Value) {
    let (k, n) = (args.likelihood_k, args.likelihood_images);
    let (ours, theirs) = (median(&us.seconds), median(&them.seconds));
    let dash = |v: String| if torch { v } else { "-".into() };
    let row = format!(
        "| IWAE-{k} estimate, first {n} test images (mnist-iwae model) | {ours:.2} | {} | {} | {:.3} | {} |",
        dash(format!("{theirs:.2}")),
        dash(format!("{:.2}x", ours / theirs)),
        us.nll[0],
        dash(format!("{:.3}", them.nll.first().copied().unwrap_or(f64::NAN))),
    );
    let mut entry = serde_json::json!({ "k": args.likelihood_k, "images": args.likelihood_images,
        "ours": { "seconds": us.seconds, "median_s": ours, "nll": us.nll } });
    if torch {
        entry["torch"] =
            serde_json::json!({ "seconds": them.seconds, "median_s": theirs, "nll": them.nll });
        entry["ratio_ours_over_torch"] = (ours / theirs).into();
    }
    (row, entry)
}

fn number(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("no number `{key}` in {v}"))
}
