//! `cargo xtask figures`: the figures of `docs/concepts.md`, written into `docs/concepts/`, and its measured tables,
//! printed as markdown on stdout so that the page's numbers can be checked against a rerun.
//!
//! Everything starts from the teaching code's model, the `mnist-seed` preset (784-200-20, ReLU, Adam 3e-4, batch
//! 32, 10 epochs, seed 1), trained into `target/figures/`:
//!
//! - `beta-{0,1,2,4}`: the KL weighted by β = 0 (an auto-encoder with noise), 1 (the VAE), 2 (the teaching code's
//!   KL, which lacks the ½) and 4;
//! - `dynamic`: β = 1 on dynamically binarised images (`--binarize dynamic`);
//! - `head-logvar`, `head-std`: two epochs on 10,000 images through Candle's autograd, the encoder's second head
//!   predicting log σ² (ours) or σ (the teaching code's, `scale_head = "std"`).
//!
//! Then `eval` (with a 1000-sample importance-weighted estimate of −log p(x) for `beta-1` and `dynamic`), `sample`,
//! `reconstruct`, `scatter`, `traverse` and `generate` on those models. Every draw is seeded, so a rerun on the same
//! machine gives the same numbers. [`likelihoods`] adds the decoder's distribution on Fashion-MNIST
//! (`--only likelihoods` runs that section alone).

mod likelihoods;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::cmd::{project_root, stdout, summary, target_dir, vae_train};
use crate::flags::FiguresArgs;
use crate::summary::TrainSummary;

/// The teaching code's model.
const PRESET: &str = "mnist-seed";
/// The KL weights trained, as `--beta` takes them.
const BETAS: [&str; 4] = ["0", "1", "2", "4"];
/// Importance samples per test image for the estimate of −log p(x).
const IW_SAMPLES: &str = "1000";
/// The short runs that compare the two scale heads.
const HEAD_FLAGS: [&str; 6] = [
    "--engine",
    "autograd",
    "--epochs",
    "2",
    "--train-subset",
    "10000",
];

/// Where the runs go (`target/figures/`) and where the pictures go (`docs/concepts/`).
struct Dirs {
    runs: PathBuf,
    pictures: PathBuf,
}

impl Dirs {
    fn run(&self, name: &str) -> PathBuf {
        self.runs.join(name)
    }

    fn picture(&self, name: &str) -> PathBuf {
        self.pictures.join(format!("{name}.png"))
    }
}

/// Trains every run (or those of `--only`), writes every picture, and prints the tables.
pub fn run(args: &FiguresArgs) -> Result<()> {
    let start = Instant::now();
    let dirs = Dirs {
        runs: target_dir().join("figures"),
        pictures: project_root().join("docs").join("concepts"),
    };
    std::fs::create_dir_all(&dirs.pictures)?;
    let likelihoods = likelihoods::runs(&dirs)?;
    println!(
        "### The decoder's distribution on Fashion-MNIST\n\n{}",
        likelihoods::table(&likelihoods)
    );
    if args.only.is_some() {
        return Ok(());
    }
    let betas = beta_runs(&dirs)?;
    let traversals = latent_figures(&dirs)?;
    let dynamic = dynamic_run(&dirs)?;
    let floor = grey_floor(&dirs.run("beta-1").join("test-inputs.npy"))?;
    let heads = head_runs(&dirs)?;

    let sections = [
        (
            "The KL weight β: test terms of each run",
            beta_table(&betas),
        ),
        ("Traversals", traversal_lines(&traversals)),
        (
            "The ELBO against log p(x)",
            gap_table(&betas[1].1, &dynamic),
        ),
        (
            "Grey targets and dynamic binarisation",
            binarize_table(&betas[1].1, &dynamic, floor),
        ),
        (
            "The scale head: two epochs of 10,000 images, autograd",
            head_table(&heads),
        ),
    ];
    for (title, body) in sections {
        println!("### {title}\n\n{body}");
    }
    eprintln!(
        "figures: {} pictures in {}, {:.0} s",
        std::fs::read_dir(&dirs.pictures)?.count(),
        dirs.pictures.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `vae-train train --preset PRESET --out DIR --overwrite FLAGS…`: the run's summary.
fn train(dir: &Path, preset: &Path, flags: &[&str]) -> Result<TrainSummary> {
    let mut cmd = vae_train("cpu");
    cmd.args(["train", "--overwrite", "--preset"])
        .arg(preset)
        .arg("--out")
        .arg(dir)
        .args(flags);
    summary(&stdout(&mut cmd)?)
}

/// `vae-train CMD --model DIR/model.safetensors`, for the caller to add to.
fn on_model(cmd: &str, run: &Path) -> Command {
    let mut c = vae_train("cpu");
    c.args([cmd, "--model"]).arg(run.join("model.safetensors"));
    c
}

/// Runs `vae-train CMD` on a run's model with `--out` the picture `name`; its JSON line, if it printed one.
fn picture(dirs: &Dirs, cmd: &str, run: &str, name: &str, flags: &[&str]) -> Result<Value> {
    let mut c = on_model(cmd, &dirs.run(run));
    c.args(flags).arg("--out").arg(dirs.picture(name));
    let out = stdout(&mut c)?;
    Ok(summary(&out).unwrap_or(Value::Null))
}

/// `vae-train eval` of a run's model: its JSON.
fn eval(run: &Path, flags: &[&str]) -> Result<Value> {
    let mut c = on_model("eval", run);
    c.args(flags);
    summary(&stdout(&mut c)?)
}

/// Prior samples (8×8) and 8 reconstructions of a run, as `NAME-samples.png` and `NAME-reconstructions.png`.
fn samples_and_reconstructions(dirs: &Dirs, run: &str) -> Result<()> {
    picture(
        dirs,
        "sample",
        run,
        &format!("{run}-samples"),
        &["--n", "64"],
    )?;
    let name = format!("{run}-reconstructions");
    picture(dirs, "reconstruct", run, &name, &["--n", "8"])?;
    Ok(())
}

/// The β runs, their samples, reconstructions and (β = 0 and 1) scatters, and each one's `eval`; β = 1's with the
/// importance-weighted estimate, and its test images written out for [`grey_floor`].
fn beta_runs(dirs: &Dirs) -> Result<Vec<(&'static str, Value)>> {
    let mut evals = Vec::new();
    for beta in BETAS {
        let run = format!("beta-{beta}");
        train(&dirs.run(&run), Path::new(PRESET), &["--beta", beta])?;
        samples_and_reconstructions(dirs, &run)?;
        if matches!(beta, "0" | "1") {
            picture(dirs, "scatter", &run, &format!("{run}-scatter"), &[])?;
        }
        let json = match beta {
            "1" => {
                let inputs = dirs.run(&run).join("test-inputs.npy");
                let inputs = inputs.to_str().context("a non-UTF-8 target folder")?;
                eval(
                    &dirs.run(&run),
                    &["--iw-samples", IW_SAMPLES, "--inputs-out", inputs],
                )?
            }
            _ => eval(&dirs.run(&run), &[])?,
        };
        evals.push((beta, json));
    }
    Ok(evals)
}

/// Traversals of β = 1 (its 8 most used dimensions) and β = 4 (all 20, the inactive ones last), and the
/// posterior means and draws of the first 16 test 3s under β = 1. Returns the traversals' JSON.
fn latent_figures(dirs: &Dirs) -> Result<Vec<(&'static str, Value)>> {
    let one = picture(
        dirs,
        "traverse",
        "beta-1",
        "beta-1-traverse",
        &["--dims", "8"],
    )?;
    let four = picture(dirs, "traverse", "beta-4", "beta-4-traverse", &[])?;
    for (name, t) in [("beta-1-threes-means", "0"), ("beta-1-threes-draws", "1")] {
        let flags = ["--like", "3", "--n", "16", "--temperature", t];
        picture(dirs, "generate", "beta-1", name, &flags)?;
    }
    Ok(vec![("1", one), ("4", four)])
}

/// β = 1 on dynamically binarised images: pictures, and `eval` with the importance-weighted estimate.
fn dynamic_run(dirs: &Dirs) -> Result<Value> {
    let run = dirs.run("dynamic");
    train(&run, Path::new(PRESET), &["--binarize", "dynamic"])?;
    samples_and_reconstructions(dirs, "dynamic")?;
    eval(&run, &["--iw-samples", IW_SAMPLES])
}

/// The two scale heads, trained alike through autograd: each run's summary, log σ² first.
fn head_runs(dirs: &Dirs) -> Result<[TrainSummary; 2]> {
    let preset = project_root().join("models").join(format!("{PRESET}.toml"));
    let text = std::fs::read_to_string(&preset)
        .with_context(|| format!("cannot read {}", preset.display()))?;
    let std_text = text.replacen("[model]\n", "[model]\nscale_head = \"std\"\n", 1);
    ensure!(std_text != text, "{}: no [model] table", preset.display());
    std::fs::create_dir_all(&dirs.runs)?;
    let std_preset = dirs.runs.join("mnist-seed-std-head.toml");
    std::fs::write(&std_preset, std_text)?;
    let logvar = train(&dirs.run("head-logvar"), &preset, &HEAD_FLAGS)?;
    let sigma = train(&dirs.run("head-std"), &std_preset, &HEAD_FLAGS)?;
    Ok([logvar, sigma])
}

/// The test images of a `.npy` file written by `eval --inputs-out` (`[n, d]` little-endian f32): the least
/// binary cross-entropy any decoder can reach on them, Σ_pixels H(x) (the entropy of a Bernoulli(x)), averaged
/// over images, and the share of pixels strictly between 0 and 1.
fn grey_floor(npy: &Path) -> Result<(f64, f64)> {
    let bytes = std::fs::read(npy).with_context(|| format!("cannot read {}", npy.display()))?;
    let (shape, data) = npy_f32(&bytes).with_context(|| format!("{}", npy.display()))?;
    let entropy = |p: f64| match p {
        p if p <= 0.0 || p >= 1.0 => 0.0,
        p => -p * p.ln() - (1.0 - p) * (1.0 - p).ln(),
    };
    let total: f64 = data.iter().map(|&p| entropy(p as f64)).sum();
    let grey = data.iter().filter(|&&p| p > 0.0 && p < 1.0).count();
    Ok((total / shape as f64, grey as f64 / data.len() as f64))
}

/// The rows and values of a 2-D little-endian f32 `.npy` file (format versions 1 to 3).
fn npy_f32(bytes: &[u8]) -> Result<(usize, Vec<f32>)> {
    ensure!(bytes.starts_with(b"\x93NUMPY"), "not a .npy file");
    let (len, start) = match bytes.get(6) {
        Some(1) => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        Some(2 | 3) => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
        _ => bail!("unknown .npy version"),
    };
    let header = std::str::from_utf8(&bytes[start..start + len])?;
    ensure!(
        header.contains("'<f4'") && header.contains("False"),
        "expected C-ordered f32, found {header}"
    );
    let shape = header.split("'shape': (").nth(1).context("no shape")?;
    let rows: usize = shape
        .split(',')
        .next()
        .context("no shape")?
        .trim()
        .parse()?;
    let data = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((rows, data))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// Dimensions whose average KL is at least 0.01 nats (`traverse`'s criterion), from `eval`'s `kl_per_dim`.
fn used_dims(eval: &Value) -> usize {
    let kl = eval["kl_per_dim"].as_array().map(Vec::as_slice);
    kl.unwrap_or_default()
        .iter()
        .filter(|k| k.as_f64().is_some_and(|k| k >= 0.01))
        .count()
}

/// The mean over dimensions of the variance of the posterior means over the test set (the prior's is 1).
fn mean_code_variance(eval: &Value) -> f64 {
    let v: Vec<f64> = eval["mean_variance_per_dim"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    v.iter().sum::<f64>() / v.len() as f64
}

fn beta_table(betas: &[(&str, Value)]) -> String {
    let mut t = String::from(
        "| β | test recon | test KL | test −ELBO | active units (Var μ > 0.01) | dims with KL ≥ 0.01 | mean Var μ_i |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (beta, e) in betas {
        t += &format!(
            "| {beta} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} |\n",
            num(e, "test_recon"),
            num(e, "test_kl"),
            num(e, "test_loss"),
            e["active_units"],
            used_dims(e),
            mean_code_variance(e)
        );
    }
    t
}

fn traversal_lines(traversals: &[(&str, Value)]) -> String {
    let mut t = String::new();
    for (beta, v) in traversals {
        let kl: Vec<String> = v["kl"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64))
            .into_iter()
            .flatten()
            .map(|k| format!("{k:.2}"))
            .collect();
        t += &format!(
            "- β = {beta} traversal: rows (dimensions, most used first) {}, KL per row {}, inactive {}\n",
            v["dims"],
            kl.join(" "),
            v["inactive"]
        );
    }
    t
}

fn gap_table(beta1: &Value, dynamic: &Value) -> String {
    let mut t = format!(
        "| model | test −ELBO | −log p(x), K = {IW_SAMPLES} (± s.e.) | gap | seconds |\n|---|---|---|---|---|\n"
    );
    for (name, e) in [("β = 1, grey", beta1), ("β = 1, dynamic", dynamic)] {
        t += &format!(
            "| {name} | {:.2} | {:.2} ± {:.2} | {:.2} | {:.0} |\n",
            num(e, "test_loss"),
            num(e, "test_nll_iw"),
            num(e, "test_nll_iw_se"),
            num(e, "test_loss") - num(e, "test_nll_iw"),
            num(e, "iw_seconds")
        );
    }
    t
}

fn binarize_table(grey: &Value, dynamic: &Value, (floor, share): (f64, f64)) -> String {
    let mut t = String::from(
        "| training images | test images | test recon | test KL | test −ELBO |\n|---|---|---|---|---|\n",
    );
    for (name, test, e) in [
        ("grey", "grey", grey),
        ("dynamic", "binarised once (seed 2016)", dynamic),
    ] {
        t += &format!(
            "| {name} | {test} | {:.2} | {:.2} | {:.2} |\n",
            num(e, "test_recon"),
            num(e, "test_kl"),
            num(e, "test_loss")
        );
    }
    t + &format!(
        "\nGrey test images: {:.1}% of pixels strictly between 0 and 1; least reachable BCE Σ H(x) = {floor:.2} nats per image\n",
        100.0 * share
    )
}

fn head_table(heads: &[TrainSummary; 2]) -> String {
    let mut t = String::from(
        "| head | epoch | train −ELBO | test −ELBO | test recon | test KL |\n|---|---|---|---|---|---|\n",
    );
    for (name, run) in ["log σ²", "σ"].iter().zip(heads) {
        for h in &run.history {
            t += &format!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                h.epoch, h.train_loss, h.test_loss, h.test_recon, h.test_kl
            );
        }
    }
    t
}
