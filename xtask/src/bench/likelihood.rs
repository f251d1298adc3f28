//! The likelihood row of `cargo xtask bench`: the importance-weighted estimate of −log p(x) by `vae-train eval` and
//! by `bench/torch_iw_estimate.py`, on the same model and the same binarised test images, alternated.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{median, BenchArgs};
use crate::cmd::{project_root, summary};

/// Seconds and estimates of one side over the rounds.
#[derive(Default)]
struct Estimates {
    seconds: Vec<f64>,
    nll: Vec<f64>,
}

/// Times both estimators and returns the table row and the JSON entry.
pub fn likelihood(
    exe: &Path,
    work: &Path,
    args: &BenchArgs,
    torch: bool,
) -> Result<(String, serde_json::Value)> {
    // Its speed does not depend on how well the model is trained, so one epoch of the papers' model will do.
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
    let model = run.join("model.safetensors");
    let inputs = work.join("likelihood-inputs.npy");
    let (k, n) = (
        args.likelihood_k.to_string(),
        args.likelihood_images.to_string(),
    );
    let (mut us, mut them) = (Estimates::default(), Estimates::default());
    for round in 1..=args.rounds {
        let o = Command::new(exe)
            .args(["eval", "--model"])
            .arg(&model)
            .args(["--iw-samples", &k, "--test-subset", &n, "--inputs-out"])
            .arg(&inputs)
            .current_dir(project_root())
            .output()?;
        if !o.status.success() {
            bail!(
                "vae-train eval failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let out = summary(&String::from_utf8_lossy(&o.stdout))?;
        us.seconds.push(number(&out, "iw_seconds")?);
        us.nll.push(number(&out, "test_nll_iw")?);
        eprintln!(
            "bench: likelihood round {round}: ours {:.2} s",
            us.seconds[round - 1]
        );
        if torch {
            let script = project_root().join("bench").join("torch_iw_estimate.py");
            let o = Command::new("python3")
                .arg(script)
                .arg("--model")
                .arg(&model)
                .arg("--inputs")
                .arg(&inputs)
                .args(["--k", &k])
                .output()?;
            if !o.status.success() {
                bail!(
                    "the PyTorch estimator failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            let out = summary(&String::from_utf8_lossy(&o.stdout))?;
            them.seconds.push(number(&out, "seconds")?);
            them.nll.push(number(&out, "nll")?);
            eprintln!(
                "bench: likelihood round {round}: torch {:.2} s",
                them.seconds[round - 1]
            );
        }
    }
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
    Ok((row, entry))
}

fn number(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("no number `{key}` in {v}"))
}
