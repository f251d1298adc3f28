//! `cargo xtask`: the project's automation, as plain Rust (see matklad/cargo-xtask).
//!
//! Every subcommand is a function that runs `$CARGO`; the work itself lives in the `vae-train` binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Automation for the VAE workspace", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    Cpu,
    Cuda,
    Metal,
}

impl DeviceKind {
    fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Metal => "metal",
        }
    }

    /// Cargo arguments selecting the device's feature; forwarded through vae-train to vae-model, vae-data, candle.
    fn features(self) -> Vec<&'static str> {
        match self {
            DeviceKind::Cpu => vec![],
            DeviceKind::Cuda => vec!["--features", "vae-train/cuda"],
            DeviceKind::Metal => vec!["--features", "vae-train/metal"],
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Fetch and verify datasets into data/ (or --data-dir).
    Download {
        /// mnist, fashion-mnist or all.
        #[arg(long, default_value = "mnist")]
        dataset: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Base URL(s) replacing the built-in mirrors (also $VAE_DATA_MIRROR).
        #[arg(long)]
        mirror: Option<String>,
        /// Copy from a local folder instead.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Build vae-train in release for a device, fetch the data if missing, and train.
    Train {
        #[arg(long, default_value = "mnist")]
        preset: String,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Flags passed to `vae-train train`, after `--` (e.g. -- --epochs 2).
        #[arg(last = true)]
        train_flags: Vec<OsString>,
    },
    /// Build the workspace in release with a device's feature set.
    Build {
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
    },
    /// Run the test suite and the end-to-end check (the README's test command).
    Test,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Download { dataset, data_dir, mirror, from } => download(&dataset, data_dir, mirror, from),
        Cmd::Train { preset, device, train_flags } => train(&preset, device, &train_flags),
        Cmd::Build { device } => build(device),
        Cmd::Test => test(),
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", format!("{cmd:?}").replace('"', ""));
    let st = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !st.success() {
        bail!("{} failed ({st})", format!("{:?}", cmd.get_program()).replace('"', ""));
    }
    Ok(())
}

/// `cargo run --release -p vae-train [features] -- <args>`.
fn vae_train(device: DeviceKind) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "vae-train"]).args(device.features()).arg("--");
    cmd
}

fn download(dataset: &str, data_dir: Option<PathBuf>, mirror: Option<String>, from: Option<PathBuf>) -> Result<()> {
    let mut cmd = vae_train(DeviceKind::Cpu);
    cmd.args(["download", "--dataset", dataset]);
    if let Some(d) = data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if let Some(m) = mirror {
        cmd.args(["--mirror", &m]);
    }
    if let Some(f) = from {
        cmd.arg("--from").arg(f);
    }
    status(&mut cmd)
}

fn build(device: DeviceKind) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--workspace"]).args(device.features());
    status(&mut cmd).with_context(|| match device {
        DeviceKind::Cpu => String::new(),
        DeviceKind::Cuda => "the cuda build needs the CUDA toolkit (nvcc) and an NVIDIA driver".into(),
        DeviceKind::Metal => "the metal build needs macOS with Xcode's command-line tools".into(),
    })
}

fn train(preset: &str, device: DeviceKind, flags: &[OsString]) -> Result<()> {
    let mut cmd = vae_train(device);
    // --download fetches (and verifies) only what is missing; vae-train's own flags may follow.
    cmd.args(["train", "--preset", preset, "--device", device.name(), "--download"]).args(flags);
    status(&mut cmd)
}

fn test() -> Result<()> {
    status(cargo().args(["test", "--workspace"]))?;
    end_to_end()
}

/// A short real run through `cargo xtask train`, then `eval`, `Vae::load` from another crate, and refusals.
fn end_to_end() -> Result<()> {
    let root = project_root();
    let work = root.join("target").join("e2e");
    let _ = std::fs::remove_dir_all(&work);
    let (data, out) = (work.join("data"), work.join("run"));
    let mut passed = 0;
    let mut check = |name: &str, ok: bool, detail: String| -> Result<()> {
        if !ok {
            bail!("e2e check `{name}` failed: {detail}");
        }
        eprintln!("e2e: {name} ... ok");
        passed += 1;
        Ok(())
    };

    let xtask = std::env::current_exe()?;
    let mut cmd = Command::new(&xtask);
    cmd.current_dir(&root).args(["train", "--preset", "mnist", "--"]);
    cmd.arg("--epochs").arg("2").arg("--train-subset").arg("10000");
    cmd.arg("--data-dir").arg(&data).arg("--out").arg(&out);
    status(&mut cmd)?;
    let files = ["model.safetensors", "config.json", "checkpoint.safetensors", "metrics.jsonl", "samples.png", "reconstructions.png"];
    let missing: Vec<&str> = files.iter().copied().filter(|f| !out.join(f).is_file()).collect();
    check("run directory complete", missing.is_empty(), format!("missing {missing:?}"))?;

    let metrics = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let lines: Vec<serde_json::Value> = metrics.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let last_test = lines.last().and_then(|l| l["test_loss"].as_f64()).unwrap_or(f64::NAN);
    let first_test = lines.first().and_then(|l| l["test_loss"].as_f64()).unwrap_or(f64::NAN);
    check("two metrics lines", lines.len() == 2, metrics.clone())?;
    // After 2 epochs on 10k images the test −ELBO is ~130 nats; an untrained model scores ~540.
    check("loss falls and is sane", last_test < first_test && last_test < 160.0, format!("{first_test} -> {last_test}"))?;

    let output = vae_train(DeviceKind::Cpu)
        .args(["eval", "--model"])
        .arg(out.join("model.safetensors"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--iw-samples", "5"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).with_context(|| format!("eval printed {stdout:?}"))?;
    let eval_loss = json["test_loss"].as_f64().unwrap_or(f64::NAN);
    let iw = json["test_nll_iw"].as_f64().unwrap_or(f64::NAN);
    // Another draw of ε than training's evaluation: equal within sampling noise (< 0.5 nat on 10k images).
    check("eval agrees with training", (eval_loss - last_test).abs() < 0.5, format!("{eval_loss} vs {last_test}"))?;
    check("importance-weighted bound is tighter", iw < eval_loss, format!("{iw} vs {eval_loss}"))?;

    let output = cargo()
        .args(["run", "--quiet", "--release", "-p", "vae-model", "--example", "load_model", "--"])
        .arg(out.join("model.safetensors"))
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    check("Vae::load from another crate", output.status.success() && stdout.contains("784-400-20"), format!("{stdout}"))?;

    let output = vae_train(DeviceKind::Cpu).args(["eval", "--model"]).arg(out.join("config.json")).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let one_line = stderr.trim().lines().count() == 1 && stderr.contains("config.json") && !stderr.contains("panicked");
    check("a non-model is refused in one line", !output.status.success() && one_line, stderr.to_string())?;

    eprintln!("e2e: {passed} passed, 0 failed");
    Ok(())
}
