//! `cargo xtask bench`: training epochs of each preset through our binary and, where PyTorch is importable,
//! through `bench/torch_reference.py`, alternated in one run, with medians and ratios; then the same for the
//! importance-weighted likelihood estimate ([`likelihood`]).

mod likelihood;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, features, project_root, status, summary, target_dir};

/// `cargo xtask bench` flags.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Epochs per run; the median epoch time is reported.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Runs of each side, alternating ours and PyTorch's.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Presets to time.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist,mnist-seed,mnist-cvae"
    )]
    presets: Vec<String>,
    /// Skip PyTorch even if it is importable.
    #[arg(long)]
    no_torch: bool,
    /// Skip the likelihood row.
    #[arg(long)]
    no_likelihood: bool,
    /// Importance samples per image for the likelihood row.
    #[arg(long, default_value_t = 5000)]
    likelihood_k: usize,
    /// Test images for the likelihood row.
    #[arg(long, default_value_t = 1000)]
    likelihood_images: usize,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/bench.json")]
    json: PathBuf,
}

/// What one side measured for a preset.
#[derive(Default)]
struct Side {
    epoch_s: Vec<f64>,
    test_loss: Vec<f64>,
    peak_rss_mib: f64,
}

/// The median of `v` (NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

impl Side {
    fn median(&self) -> f64 {
        median(&self.epoch_s)
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

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Our side of one round: trains `preset` for `epochs` and records what the run's summary line reports.
fn ours(exe: &Path, preset: &str, epochs: usize, out: &Path, side: &mut Side) -> Result<String> {
    let _ = std::fs::remove_dir_all(out);
    let o = Command::new(exe)
        .args(["train", "--preset", preset, "--epochs", &epochs.to_string()])
        .current_dir(project_root())
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()?;
    if !o.status.success() {
        bail!(
            "vae-train failed on {preset}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let run = summary(&String::from_utf8_lossy(&o.stdout))?;
    let history = run["history"].as_array().cloned().unwrap_or_default();
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    side.epoch_s
        .extend(history.iter().map(|m| num(&m["epoch_s"])));
    side.test_loss
        .push(history.last().map_or(f64::NAN, |m| num(&m["test_loss"])));
    side.peak_rss_mib = side
        .peak_rss_mib
        .max(run["peak_rss_mib"].as_f64().unwrap_or(0.0));
    Ok(format!(
        "{} + {}",
        run["engine"].as_str().unwrap_or("?"),
        run["gemm"].as_str().unwrap_or("?")
    ))
}

/// PyTorch's side of one round, on the config `vae-train preset` resolved.
fn theirs(config: &Path, epochs: usize, side: &mut Side) -> Result<()> {
    let script = project_root().join("bench").join("torch_reference.py");
    let o = Command::new("python3")
        .arg(script)
        .arg("--config")
        .arg(config)
        .current_dir(project_root())
        .args(["--epochs", &epochs.to_string()])
        .output()?;
    if !o.status.success() {
        bail!(
            "the PyTorch reference failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let (last, per_epoch) = lines
        .split_last()
        .context("no output from the PyTorch reference")?;
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    side.epoch_s
        .extend(per_epoch.iter().map(|l| num(&l["epoch_s"])));
    side.test_loss
        .push(per_epoch.last().map_or(f64::NAN, |l| num(&l["test_loss"])));
    side.peak_rss_mib = side
        .peak_rss_mib
        .max(last["peak_rss_mib"].as_f64().unwrap_or(0.0));
    Ok(())
}

/// Runs the benchmark and prints the table; the JSON report goes to `args.json`.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let work = target_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    // Build once, then run the binary directly so cargo's own time is not measured.
    status(
        cargo()
            .args(["build", "--release", "-p", "vae-train"])
            .args(features("cpu")),
    )?;
    let exe = target_dir().join("release").join("vae-train");
    status(
        Command::new(&exe)
            .arg("download")
            .current_dir(project_root()),
    )?;
    let torch = !args.no_torch && torch_available();
    if !torch && !args.no_torch {
        eprintln!("note: PyTorch is not importable, so only our side is timed; `pip install torch numpy` adds it");
    }
    // Every preset in every round, so that presets are compared side by side too: the machine's speed drifts
    // over minutes, and one preset's rounds all before another's would measure the drift.
    let mut timed = Vec::with_capacity(args.presets.len());
    for preset in &args.presets {
        // The trainer resolves the preset; PyTorch trains exactly that.
        let config = work.join(format!("{preset}.json"));
        let resolved = Command::new(&exe).args(["preset", preset]).output()?;
        if !resolved.status.success() {
            bail!("{}", String::from_utf8_lossy(&resolved.stderr).trim());
        }
        std::fs::write(&config, &resolved.stdout)?;
        timed.push((
            preset,
            config,
            Side::default(),
            Side::default(),
            String::new(),
        ));
    }
    for round in 1..=args.rounds {
        for (preset, config, us, them, engine) in &mut timed {
            let out = work.join(format!("{preset}-{round}"));
            *engine = ours(&exe, preset, args.epochs, &out, us)?;
            let epochs = last(&us.epoch_s, args.epochs);
            eprintln!("bench: {preset} round {round}: ours {epochs:?}");
            if torch {
                theirs(config, args.epochs, them)?;
                let epochs = last(&them.epoch_s, args.epochs);
                eprintln!("bench: {preset} round {round}: torch {epochs:?}");
            }
        }
    }
    let (mut report, mut rows) = (Vec::new(), Vec::new());
    let images = 60000.0;
    for (preset, _, us, them, engine) in &timed {
        let mut entry = serde_json::json!({ "preset": preset, "epochs": args.epochs, "rounds": args.rounds,
            "engine": engine, "ours": us.json(images) });
        if torch {
            entry["torch"] = them.json(images);
            entry["ratio_ours_over_torch"] = (us.median() / them.median()).into();
        }
        report.push(entry);
        rows.push(row(preset, us, torch.then_some(them), images));
    }
    let machine = machine();
    println!(
        "\nTraining epoch time, median of {} epochs ({} rounds of {}, each round every preset, ours then PyTorch's); {machine}\n",
        args.rounds * args.epochs,
        args.rounds,
        args.epochs
    );
    println!("| preset | ours s/epoch | PyTorch s/epoch | ours / PyTorch | ours img/s | PyTorch img/s | ours peak RSS MiB | PyTorch peak RSS MiB | ours test -ELBO | PyTorch test -ELBO |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    let mut doc = serde_json::json!({ "machine": machine, "results": report });
    if !args.no_likelihood {
        let (row, entry) = likelihood::likelihood(&exe, &work, args, torch)?;
        println!(
            "\nImportance-weighted estimate of -log p(x), seconds, median of {} alternating runs\n",
            args.rounds
        );
        println!("| estimate | ours s | PyTorch s | ours / PyTorch | ours NLL | PyTorch NLL |");
        println!("|---|---|---|---|---|---|");
        println!("{row}");
        doc["likelihood"] = entry;
    }
    std::fs::create_dir_all(args.json.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)?)?;
    println!("\n(JSON: {})", args.json.display());
    Ok(())
}

fn last(v: &[f64], n: usize) -> &[f64] {
    &v[v.len().saturating_sub(n)..]
}

/// One table row; PyTorch's columns are `-` without it.
fn row(preset: &str, us: &Side, them: Option<&Side>, images: f64) -> String {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let theirs = |f: &dyn Fn(&Side) -> String| them.map_or("-".to_string(), f);
    format!(
        "| {preset} | {:.2} | {} | {} | {:.0} | {} | {:.0} | {} | {:.2} | {} |",
        us.median(),
        theirs(&|t| format!("{:.2}", t.median())),
        theirs(&|t| format!("{:.2}x", us.median() / t.median())),
        images / us.median(),
        theirs(&|t| format!("{:.0}", images / t.median())),
        us.peak_rss_mib,
        theirs(&|t| format!("{:.0}", t.peak_rss_mib)),
        mean(&us.test_loss),
        theirs(&|t| format!("{:.2}", mean(&t.test_loss))),
    )
}

/// The CPU model and core count.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}
