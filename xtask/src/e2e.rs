//! The end-to-end check of `cargo xtask test`: a short real run through `cargo xtask train`, then `eval`,
//! `Vae::load` from another crate, the refusal of a file that is not a model, and every `vae-train` command of the
//! README.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, features, status, stdout, summary, target_dir, vae_train};
use crate::summary::TrainSummary;

/// Counts the checks that passed; the first that fails ends the run.
struct Checks(usize);

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) -> Result<()> {
        if !ok {
            bail!("e2e check `{name}` failed: {detail}");
        }
        eprintln!("e2e: {name} ... ok");
        self.0 += 1;
        Ok(())
    }
}

/// Runs every check, on the datasets in vae-train's data directory.
pub fn end_to_end() -> Result<()> {
    let work = target_dir().join("e2e");
    let _ = std::fs::remove_dir_all(&work);
    let out = work.join("run");
    let mut checks = Checks(0);

    let mut train = Command::new(std::env::current_exe()?);
    train
        .args(["train", "--preset", "mnist", "--", "--epochs", "2"])
        .args(["--train-subset", "10000", "--out"])
        .arg(&out);
    let run: TrainSummary = summary(&stdout(&mut train)?)?;
    let last = check_run(&run, &out, &mut checks)?;
    check_eval(&run.model, last, &mut checks)?;
    check_load_model(&run.model, &mut checks)?;
    numpy_check(&run.model, &work, &mut checks)?;
    check_refusal(&run.config, &mut checks)?;
    check_readme(&work, &mut checks)?;

    eprintln!("e2e: {} passed, 0 failed", checks.0);
    Ok(())
}

/// The run directory holds every file the summary lists, and the two epochs' test loss fell to a trained model's;
/// returns the last epoch's.
fn check_run(run: &TrainSummary, out: &Path, checks: &mut Checks) -> Result<f64> {
    let files = &run.files;
    let missing: Vec<&String> = files.iter().filter(|f| !out.join(f).is_file()).collect();
    checks.check(
        "run directory complete",
        files.len() >= 6 && missing.is_empty(),
        format!("reported {files:?}, missing {missing:?}"),
    )?;

    let history = &run.history;
    let test_loss = |i: usize| history.get(i).map_or(f64::NAN, |l| l.test_loss);
    let (first, last) = (test_loss(0), test_loss(1));
    checks.check(
        "two epochs reported",
        history.len() == 2,
        format!("{history:?}"),
    )?;
    // An untrained model scores ~545 nats. These 158 Adam steps measured 194.4 then 162.3 (seed 1, OpenBLAS); the
    // bound leaves room for another BLAS's rounding, not for a model that did not learn.
    checks.check(
        "loss falls and is sane",
        last < first && last < 200.0,
        format!("{first} -> {last}"),
    )?;
    Ok(last)
}

/// `vae-train eval` on the model agrees with training's last test loss, and its importance-weighted bound is
/// tighter.
fn check_eval(model: &Path, last: f64, checks: &mut Checks) -> Result<()> {
    let eval = stdout(
        vae_train("cpu")
            .args(["eval", "--model"])
            .arg(model)
            .args(["--iw-samples", "5"]),
    )?;
    let json: serde_json::Value =
        serde_json::from_str(eval.trim()).with_context(|| format!("eval printed {eval:?}"))?;
    let eval_loss = json["test_loss"].as_f64().unwrap_or(f64::NAN);
    let iw = json["test_nll_iw"].as_f64().unwrap_or(f64::NAN);
    // Another draw of ε than training's evaluation: equal within sampling noise (< 0.5 nat on 10k images).
    checks.check(
        "eval agrees with training",
        (eval_loss - last).abs() < 0.5,
        format!("{eval_loss} vs {last}"),
    )?;
    checks.check(
        "importance-weighted bound is tighter",
        iw < eval_loss,
        format!("{iw} vs {eval_loss}"),
    )
}

/// vae-model's `load_model` example, another crate than the trainer, loads the model.
fn check_load_model(model: &Path, checks: &mut Checks) -> Result<()> {
    // Built beside vae-train, with its features, so Cargo reuses the release build rather than re-resolving.
    status(
        cargo()
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "vae-train",
                "-p",
                "vae-model",
            ])
            .args(["--example", "load_model"])
            .args(features("cpu")),
    )?;
    let example = target_dir()
        .join("release")
        .join("examples")
        .join("load_model");
    let output = Command::new(example).arg(model).output()?;
    let printed = String::from_utf8_lossy(&output.stdout);
    checks.check(
        "Vae::load from another crate",
        output.status.success() && printed.contains("784-400-20"),
        &printed,
    )
}

/// `vae-train eval` on the run's config file, not a model, fails with one line that names the file.
fn check_refusal(config: &Path, checks: &mut Checks) -> Result<()> {
    let output = vae_train("cpu")
        .args(["eval", "--model"])
        .arg(config)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let one_line = stderr.trim().lines().count() == 1
        && stderr.contains("config.json")
        && !stderr.contains("panicked");
    checks.check(
        "a non-model is refused in one line",
        !output.status.success() && one_line,
        &stderr,
    )
}

/// Every `vae-train` command of the README runs as written ([`crate::readme`]).
fn check_readme(work: &Path, checks: &mut Checks) -> Result<()> {
    let data = std::env::var_os("VAE_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::cmd::project_root().join("data"));
    let bin = crate::readme::release_binary();
    let (ran, skipped) = crate::readme::run_all(&bin, &work.join("readme"), &data)?;
    for s in &skipped {
        eprintln!("e2e: README command skipped: {s}");
    }
    checks.check(
        "README commands run as written",
        ran > 0,
        format!("{ran} ran"),
    )
}

/// The decoders besides the mnist run's Bernoulli that [`numpy_check`] trains a tiny model of, as `train` flags.
const LIKELIHOODS: [&[&str]; 4] = [
    &["--likelihood", "gaussian"],
    &["--likelihood", "gaussian", "--sigma", "0.2"],
    &["--likelihood", "continuous-bernoulli"],
    &["--likelihood", "logistic"],
];

/// The second convolutional model [`numpy_check`] trains, a preset it writes: 28→14→7→4 with kernel 3, so the
/// transposed layers need output padding 0 and then 1 (mnist-conv's k4 needs none), no dense hidden layer, the ELU
/// and the continuous Bernoulli, whose means lie inside (0, 1) (an untrained logistic's are all clamped to 0, and
/// would check nothing); trained as models/mnist-conv.toml.
const CONV_ELU: &str = r#"dataset = "mnist"

[model]
input_dim = 784
conv = { channels = [4, 8, 8], kernel = 3, stride = 2, padding = 1 }
hidden_dims = []
latent_dim = 4
activation = "elu"
likelihood = "continuous-bernoulli"

[training]
epochs = 10
batch_size = 128
lr = 1e-3
seed = 1
"#;

/// Our export read without us: `crates/vae-model/scripts/numpy_forward.py` recomputes, in numpy from the file
/// alone, the posterior means and reconstructions that `vae-train` wrote, for the mnist model, a tiny model of
/// each other likelihood, and two convolutional models (the mnist-conv preset and [`CONV_ELU`]). The
/// Python is `$VAE_NUMPY_PYTHON` (CI makes a venv with numpy and safetensors), else `python3`; without the two
/// packages the check is skipped, saying so.
fn numpy_check(model: &Path, work: &Path, checks: &mut Checks) -> Result<()> {
    let python = std::env::var("VAE_NUMPY_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_packages = Command::new(&python)
        .args(["-c", "import numpy, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_packages {
        eprintln!("e2e: numpy check skipped: {python} cannot import numpy and safetensors (set VAE_NUMPY_PYTHON)");
        return Ok(());
    }
    numpy_compare(&python, model, &work.join("numpy"), "", checks)?;
    for flags in LIKELIHOODS {
        let name = flags[1..].join(" ");
        let dir = work.join(format!(
            "numpy-{}",
            name.replace("--", "").replace(' ', "-")
        ));
        let mut train = vae_train("cpu");
        train
            .args(["train", "--epochs", "1", "--train-subset", "500"])
            .args(["--hidden-dims", "32", "--latent-dim", "4"])
            .args(flags);
        numpy_train(&python, train, &dir, &format!(" ({name})"), checks)?;
    }
    std::fs::create_dir_all(work)?;
    let conv_preset = work.join("conv-elu.toml");
    std::fs::write(&conv_preset, CONV_ELU)?;
    for (name, preset) in [
        ("mnist-conv", Path::new("mnist-conv")),
        ("conv-elu", conv_preset.as_path()),
    ] {
        let mut train = vae_train("cpu");
        train.args(["train", "--preset"]).arg(preset);
        train.args(["--epochs", "1", "--train-subset", "500"]);
        let dir = work.join(format!("numpy-{name}"));
        numpy_train(&python, train, &dir, &format!(" (preset {name})"), checks)?;
    }
    Ok(())
}

/// Runs `train` (a `vae-train train` command) into `dir`, then [`numpy_compare`]s the model it saved.
fn numpy_train(
    python: &str,
    mut train: Command,
    dir: &Path,
    what: &str,
    checks: &mut Checks,
) -> Result<()> {
    stdout(train.arg("--out").arg(dir))?;
    numpy_compare(python, &dir.join("model.safetensors"), dir, what, checks)
}

/// Writes `model`'s posterior means and reconstructions of the first 64 test images into `dir`, then checks them
/// with the numpy script; `what` ends the check's name.
fn numpy_compare(
    python: &str,
    model: &Path,
    dir: &Path,
    what: &str,
    checks: &mut Checks,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (inputs, means, recon) = (dir.join("x.npy"), dir.join("mu.npy"), dir.join("recon.npy"));
    let on_model = |cmd: &str| {
        let mut c = vae_train("cpu");
        c.args([cmd, "--n", "64", "--model"]).arg(model);
        c
    };
    status(
        on_model("encode")
            .arg("--out")
            .arg(&means)
            .arg("--inputs-out")
            .arg(&inputs),
    )?;
    status(on_model("reconstruct").arg("--out").arg(&recon))?;
    let script = crate::cmd::project_root().join("crates/vae-model/scripts/numpy_forward.py");
    let mut check = Command::new(python);
    check.arg(script).arg("--model").arg(model);
    for (flag, path) in [
        ("--inputs", &inputs),
        ("--means", &means),
        ("--recon", &recon),
    ] {
        check.arg(flag).arg(path);
    }
    let output = check.output()?;
    checks.check(
        &format!("numpy forward pass agrees within 1e-5{what}"),
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}
