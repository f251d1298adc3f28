//! `cargo xtask`: the project's automation, as plain Rust (see matklad/cargo-xtask).
//!
//! Every subcommand is a function that runs `$CARGO`; the work itself lives in the `vae-train` binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Automation for the VAE workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
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

    /// Cargo arguments selecting the device's feature (forwarded through vae-train to vae-model, vae-data and
    /// candle), plus `blas` for the fused CPU engine when OpenBLAS is installed.
    fn features(self) -> Vec<String> {
        let mut f: Vec<&str> = match self {
            DeviceKind::Cpu => vec![],
            DeviceKind::Cuda => vec!["vae-train/cuda"],
            DeviceKind::Metal => vec!["vae-train/metal"],
        };
        if blas_available() {
            f.push("vae-train/blas");
        }
        if f.is_empty() {
            return vec![];
        }
        vec!["--features".into(), f.join(",")]
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
    /// Time training epochs of each preset, ours and (where importable) PyTorch's, side by side.
    Bench {
        /// Epochs per run; the median epoch time is reported.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Runs of each side, alternating ours and PyTorch's.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Presets to time.
        #[arg(long, value_delimiter = ',', default_value = "mnist,mnist-seed")]
        presets: Vec<String>,
        /// Skip PyTorch even if it is importable.
        #[arg(long)]
        no_torch: bool,
        /// Where the JSON report goes.
        #[arg(long, default_value = "target/bench/bench.json")]
        json: PathBuf,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        // Bare `cargo xtask`: the help, as a successful answer rather than a usage error.
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(());
    };
    match command {
        Cmd::Download {
            dataset,
            data_dir,
            mirror,
            from,
        } => download(&dataset, data_dir, mirror, from),
        Cmd::Train {
            preset,
            device,
            train_flags,
        } => train(&preset, device, &train_flags),
        Cmd::Build { device } => build(device),
        Cmd::Test => test(),
        Cmd::Bench {
            epochs,
            rounds,
            presets,
            no_torch,
            json,
        } => bench(epochs, rounds, &presets, no_torch, &json),
    }
}

/// Whether to build with OpenBLAS: `VAE_BLAS=1`/`0` decides, else whether libopenblas is installed.
fn blas_available() -> bool {
    use std::sync::OnceLock;
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| match std::env::var("VAE_BLAS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => {
            let dirs = ["/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib", "/usr/lib64"];
            let found = dirs.iter().any(|d| Path::new(d).join("libopenblas.so").exists());
            if !found {
                eprintln!("note: OpenBLAS not found, so the CPU engine uses the slower `gemm` crate (apt-get install libopenblas-dev)");
            }
            found
        }
    })
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    // `cargo run` gave xtask its own package's variables. Passed on, they look like a changed environment to build
    // scripts that watch them (ring's watches CARGO_MANIFEST_DIR), and every build from a shell after one from
    // xtask, or the other way round, recompiled ring, rustls, reqwest, hf-hub and candle-datasets.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_package = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
        ];
        if per_package.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn status(cmd: &mut Command) -> Result<()> {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("$ {line}");
    let st = cmd.status().with_context(|| format!("cannot run {line}"))?;
    if !st.success() {
        bail!("`{line}` failed ({st})");
    }
    Ok(())
}

/// `cargo run --release -p vae-train [features] -- <args>`.
fn vae_train(device: DeviceKind) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "vae-train"])
        .args(device.features())
        .arg("--");
    cmd
}

fn download(
    dataset: &str,
    data_dir: Option<PathBuf>,
    mirror: Option<String>,
    from: Option<PathBuf>,
) -> Result<()> {
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
    cmd.args(["build", "--release", "--workspace"])
        .args(device.features());
    status(&mut cmd).with_context(|| match device {
        DeviceKind::Cpu => String::new(),
        DeviceKind::Cuda => {
            "the cuda build needs the CUDA toolkit (nvcc) and an NVIDIA driver".into()
        }
        DeviceKind::Metal => "the metal build needs macOS with Xcode's command-line tools".into(),
    })
}

fn train(preset: &str, device: DeviceKind, flags: &[OsString]) -> Result<()> {
    let mut cmd = vae_train(device);
    // --download fetches (and verifies) only what is missing; vae-train's own flags may follow.
    cmd.args([
        "train",
        "--preset",
        preset,
        "--device",
        device.name(),
        "--download",
    ])
    .args(flags);
    status(&mut cmd)
}

fn test() -> Result<()> {
    status(
        cargo()
            .args(["test", "--workspace"])
            .args(DeviceKind::Cpu.features()),
    )?;
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
    cmd.current_dir(&root)
        .args(["train", "--preset", "mnist", "--"]);
    cmd.arg("--epochs")
        .arg("2")
        .arg("--train-subset")
        .arg("10000");
    cmd.arg("--data-dir").arg(&data).arg("--out").arg(&out);
    status(&mut cmd)?;
    let files = [
        "model.safetensors",
        "config.json",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "samples.png",
        "reconstructions.png",
    ];
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !out.join(f).is_file())
        .collect();
    check(
        "run directory complete",
        missing.is_empty(),
        format!("missing {missing:?}"),
    )?;

    let metrics = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let last_test = lines
        .last()
        .and_then(|l| l["test_loss"].as_f64())
        .unwrap_or(f64::NAN);
    let first_test = lines
        .first()
        .and_then(|l| l["test_loss"].as_f64())
        .unwrap_or(f64::NAN);
    check("two metrics lines", lines.len() == 2, metrics.clone())?;
    // An untrained model scores ~545 nats. These 158 Adam steps measured 194.4 then 162.3 (seed 1, OpenBLAS); the
    // bound leaves room for another BLAS's rounding, not for a model that did not learn.
    check(
        "loss falls and is sane",
        last_test < first_test && last_test < 200.0,
        format!("{first_test} -> {last_test}"),
    )?;

    let output = vae_train(DeviceKind::Cpu)
        .args(["eval", "--model"])
        .arg(out.join("model.safetensors"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--iw-samples", "5"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("eval printed {stdout:?}"))?;
    let eval_loss = json["test_loss"].as_f64().unwrap_or(f64::NAN);
    let iw = json["test_nll_iw"].as_f64().unwrap_or(f64::NAN);
    // Another draw of ε than training's evaluation: equal within sampling noise (< 0.5 nat on 10k images).
    check(
        "eval agrees with training",
        (eval_loss - last_test).abs() < 0.5,
        format!("{eval_loss} vs {last_test}"),
    )?;
    check(
        "importance-weighted bound is tighter",
        iw < eval_loss,
        format!("{iw} vs {eval_loss}"),
    )?;

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
                "--example",
                "load_model",
            ])
            .args(DeviceKind::Cpu.features()),
    )?;
    let output = Command::new(
        target_dir()
            .join("release")
            .join("examples")
            .join("load_model"),
    )
    .arg(out.join("model.safetensors"))
    .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    check(
        "Vae::load from another crate",
        output.status.success() && stdout.contains("784-400-20"),
        format!("{stdout}"),
    )?;

    let output = vae_train(DeviceKind::Cpu)
        .args(["eval", "--model"])
        .arg(out.join("config.json"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let one_line = stderr.trim().lines().count() == 1
        && stderr.contains("config.json")
        && !stderr.contains("panicked");
    check(
        "a non-model is refused in one line",
        !output.status.success() && one_line,
        stderr.to_string(),
    )?;

    eprintln!("e2e: {passed} passed, 0 failed");
    Ok(())
}

/// What one side measured for a preset.
#[derive(Default)]
struct Side {
    epoch_s: Vec<f64>,
    test_loss: Vec<f64>,
    peak_rss_mib: f64,
}

impl Side {
    fn median(&self) -> f64 {
        let mut v = self.epoch_s.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
        }
    }

    fn json(&self, images: f64) -> serde_json::Value {
        serde_json::json!({
            "median_epoch_s": self.median(),
            "images_per_s": images / self.median(),
            "epoch_s": self.epoch_s,
            "final_test_loss": self.test_loss,
            "peak_rss_mib": self.peak_rss_mib,
        })
    }
}

/// The PyTorch script's arguments for a preset, read from `models/<preset>.toml`.
fn torch_args(preset: &str, data: &Path) -> Result<Vec<OsString>> {
    let path = project_root().join("models").join(format!("{preset}.toml"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let doc: toml::Table = text.parse().with_context(|| path.display().to_string())?;
    let get = |table: &str, key: &str| {
        doc.get(table)
            .and_then(|t| t.get(key))
            .with_context(|| format!("{}: no `{table}.{key}`", path.display()))
    };
    let hidden = match get("model", "hidden_dims")?.as_array().map(Vec::as_slice) {
        Some([h]) => h.to_string(),
        _ => bail!(
            "{}: the PyTorch reference has exactly one hidden layer",
            path.display()
        ),
    };
    let dataset = doc
        .get("dataset")
        .and_then(|d| d.as_str())
        .with_context(|| format!("{}: no `dataset`", path.display()))?;
    let mut args: Vec<OsString> = vec![
        "--data-dir".into(),
        data.join(dataset).into(),
        "--hidden".into(),
        hidden.into(),
    ];
    for (flag, table, key) in [
        ("--latent", "model", "latent_dim"),
        ("--batch-size", "training", "batch_size"),
        ("--lr", "training", "lr"),
    ] {
        args.push(flag.into());
        args.push(get(table, key)?.to_string().into());
    }
    Ok(args)
}

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn bench(
    epochs: usize,
    rounds: usize,
    presets: &[String],
    no_torch: bool,
    json_path: &Path,
) -> Result<()> {
    let root = project_root();
    let work = root.join("target").join("bench");
    let data = std::env::var_os("VAE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("data"));
    // Build once, then run the binary directly so cargo's own time is not measured.
    status(
        cargo()
            .args(["build", "--release", "-p", "vae-train"])
            .args(DeviceKind::Cpu.features()),
    )?;
    let exe = target_dir().join("release").join("vae-train");
    status(
        Command::new(&exe)
            .arg("download")
            .arg("--data-dir")
            .arg(&data),
    )?;
    let torch = !no_torch && torch_available();
    if !torch && !no_torch {
        eprintln!("note: PyTorch is not importable, so only our side is timed; `pip install torch numpy` adds it");
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let mut report = Vec::new();
    let mut rows = Vec::new();
    for preset in presets {
        let (mut ours, mut theirs) = (Side::default(), Side::default());
        let mut engine = String::new();
        for round in 0..rounds {
            let out = work.join(format!("{preset}-{round}"));
            let _ = std::fs::remove_dir_all(&out);
            let o = Command::new(&exe)
                .args(["train", "--preset", preset, "--epochs", &epochs.to_string()])
                .arg("--data-dir")
                .arg(&data)
                .arg("--out")
                .arg(&out)
                .env("RUST_LOG", "warn")
                .output()?;
            if !o.status.success() {
                bail!(
                    "vae-train failed on {preset}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            let summary: serde_json::Value =
                serde_json::from_slice(&o.stdout).context("vae-train's summary line")?;
            engine = format!(
                "{} + {}",
                summary["engine"].as_str().unwrap_or("?"),
                summary["gemm"].as_str().unwrap_or("?")
            );
            let metrics = std::fs::read_to_string(out.join("metrics.jsonl"))?;
            for line in metrics.lines() {
                let m: serde_json::Value = serde_json::from_str(line)?;
                ours.epoch_s.push(m["epoch_s"].as_f64().unwrap_or(f64::NAN));
            }
            ours.test_loss
                .push(summary["final"]["test_loss"].as_f64().unwrap_or(f64::NAN));
            ours.peak_rss_mib = ours
                .peak_rss_mib
                .max(summary["peak_rss_mib"].as_f64().unwrap_or(0.0));
            eprintln!(
                "bench: {preset} round {}: ours {:?}",
                round + 1,
                &ours.epoch_s[ours.epoch_s.len() - epochs..]
            );

            if torch {
                let o = Command::new("python3")
                    .arg(root.join("bench").join("torch_reference.py"))
                    .args(torch_args(preset, &data)?)
                    .args(["--epochs", &epochs.to_string()])
                    .output()?;
                if !o.status.success() {
                    bail!(
                        "the PyTorch reference failed on {preset}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
                let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(serde_json::from_str)
                    .collect::<Result<_, _>>()?;
                let (summary, per_epoch) = lines
                    .split_last()
                    .context("no output from the PyTorch reference")?;
                theirs.epoch_s.extend(
                    per_epoch
                        .iter()
                        .map(|l| l["epoch_s"].as_f64().unwrap_or(f64::NAN)),
                );
                theirs.test_loss.push(
                    per_epoch
                        .last()
                        .and_then(|l| l["test_loss"].as_f64())
                        .unwrap_or(f64::NAN),
                );
                theirs.peak_rss_mib = theirs
                    .peak_rss_mib
                    .max(summary["peak_rss_mib"].as_f64().unwrap_or(0.0));
                eprintln!(
                    "bench: {preset} round {}: torch {:?}",
                    round + 1,
                    &theirs.epoch_s[theirs.epoch_s.len() - epochs..]
                );
            }
        }
        let images = 60000.0;
        let mut entry = serde_json::json!({ "preset": preset, "epochs": epochs, "rounds": rounds, "engine": engine, "ours": ours.json(images) });
        let (t_med, ratio) = if torch {
            (theirs.median(), ours.median() / theirs.median())
        } else {
            (f64::NAN, f64::NAN)
        };
        if torch {
            entry["torch"] = theirs.json(images);
            entry["ratio_ours_over_torch"] = ratio.into();
        }
        report.push(entry);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        rows.push(format!(
            "| {preset} | {:.2} | {} | {} | {:.0} | {} | {:.0} | {} | {:.2} | {} |",
            ours.median(),
            if torch {
                format!("{t_med:.2}")
            } else {
                "-".into()
            },
            if torch {
                format!("{ratio:.2}x")
            } else {
                "-".into()
            },
            images / ours.median(),
            if torch {
                format!("{:.0}", images / t_med)
            } else {
                "-".into()
            },
            ours.peak_rss_mib,
            if torch {
                format!("{:.0}", theirs.peak_rss_mib)
            } else {
                "-".into()
            },
            mean(&ours.test_loss),
            if torch {
                format!("{:.2}", mean(&theirs.test_loss))
            } else {
                "-".into()
            },
        ));
    }
    let machine = format!("{cpu}, {cores} cores");
    println!("\nTraining epoch time, median of {} epochs ({rounds} alternating runs of {epochs}); {machine}\n", rounds * epochs);
    println!("| preset | ours s/epoch | PyTorch s/epoch | ours / PyTorch | ours img/s | PyTorch img/s | ours peak RSS MiB | PyTorch peak RSS MiB | ours test -ELBO | PyTorch test -ELBO |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    std::fs::create_dir_all(json_path.parent().unwrap_or(Path::new(".")))?;
    let doc = serde_json::json!({ "machine": machine, "results": report });
    std::fs::write(json_path, serde_json::to_string_pretty(&doc)?)?;
    println!("\n(JSON: {})", json_path.display());
    Ok(())
}
