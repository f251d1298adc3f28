//! `cargo xtask bench`: training epochs of each preset through our binary and, where PyTorch is importable,
//! through `bench/torch_reference.py` both eager and compiled (`torch.compile` and fused Adam), alternated in one
//! run, with medians and ratios against the faster PyTorch; then the same for the importance-weighted likelihood
//! estimate ([`likelihood`]). `--variants` adds our other configurations (each sgemm backend forced, the AVX2 paths
//! forced, the autograd engine); `--profile` adds where our epoch's time goes; `--folder` the reading of MNIST as
//! a folder of pictures ([`folder`]); `--web` the explorer's WebAssembly module in Chromium ([`web`]). `--sgemm`
//! times each preset's products alone instead of its epochs ([`sgemm`]).

mod folder;
mod likelihood;
mod sgemm;
mod web;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, features, project_root, status, summary, target_dir};
use crate::flags::BenchArgs;
use crate::summary::{Profile, TrainSummary};

/// What one side measured for a preset.
#[derive(Default)]
struct Side {
    epoch_s: Vec<f64>,
    test_loss: Vec<f64>,
    peak_rss_mib: f64,
    /// Our run's `profile` of each round, with `--profile`.
    profiles: Vec<Profile>,
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
            "profiles": self.profiles,
        })
    }
}

/// One configuration of ours: its `--variants` flag (empty for the default), name, environment and extra flags.
struct Variant {
    flag: &'static str,
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
}

const VARIANTS: [Variant; 8] = [
    Variant {
        flag: "",
        name: "ours",
        env: &[],
        args: &[],
    },
    Variant {
        flag: "openblas",
        name: "ours, OpenBLAS forced",
        env: &[("VAE_GEMM", "openblas")],
        args: &[],
    },
    Variant {
        flag: "mkl",
        name: "ours, MKL forced",
        env: &[("VAE_GEMM", "mkl")],
        args: &[],
    },
    Variant {
        flag: "blis",
        name: "ours, BLIS forced",
        env: &[("VAE_GEMM", "blis")],
        args: &[],
    },
    Variant {
        flag: "gemm",
        name: "ours, gemm crate forced",
        env: &[("VAE_GEMM", "gemm")],
        args: &[],
    },
    Variant {
        flag: "gemm-avx2",
        name: "ours, gemm crate's AVX2 kernels forced",
        env: &[("VAE_GEMM", "gemm-avx2")],
        args: &[],
    },
    Variant {
        flag: "avx2",
        name: "ours, AVX2 forced",
        env: &[("VAE_NO_AVX512", "1"), ("OPENBLAS_CORETYPE", "Haswell")],
        args: &[],
    },
    Variant {
        flag: "autograd",
        name: "ours, autograd engine",
        env: &[],
        args: &["--engine", "autograd"],
    },
];

/// The variants `--variants` names, after the default one.
fn variants(names: &[String]) -> Vec<&'static Variant> {
    let mut out = vec![&VARIANTS[0]];
    out.extend(
        VARIANTS
            .iter()
            .filter(|v| names.iter().any(|n| n == v.flag)),
    );
    out
}

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Our side of one round: trains `preset` for `epochs` as `variant` says and records what the run's summary line
/// reports.
fn ours(
    exe: &Path,
    preset: &str,
    (epochs, profile): (usize, bool),
    variant: &Variant,
    out: &Path,
    side: &mut Side,
) -> Result<String> {
    let _ = std::fs::remove_dir_all(out);
    let mut cmd = Command::new(exe);
    cmd.args(["train", "--preset", preset, "--epochs", &epochs.to_string()])
        .args(variant.args)
        .current_dir(project_root())
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .envs(variant.env.iter().copied());
    if profile {
        cmd.env("VAE_PROFILE", "1");
    }
    let o = cmd.output()?;
    if !o.status.success() {
        bail!(
            "vae-train failed on {preset}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let run: TrainSummary = summary(&String::from_utf8_lossy(&o.stdout))?;
    side.epoch_s.extend(run.history.iter().map(|m| m.epoch_s));
    side.test_loss
        .push(run.history.last().map_or(f64::NAN, |m| m.test_loss));
    side.peak_rss_mib = side.peak_rss_mib.max(run.peak_rss_mib.unwrap_or(0.0));
    side.profiles.extend(run.profile);
    Ok(format!("{} + {}", run.engine, run.gemm))
}

/// PyTorch's side of one round, on the config `vae-train preset` resolved; `compiled` adds `--compile`.
fn theirs(config: &Path, epochs: usize, compiled: bool, side: &mut Side) -> Result<()> {
    let script = project_root().join("bench").join("torch_reference.py");
    let o = Command::new("python3")
        .arg(script)
        .arg("--config")
        .arg(config)
        .current_dir(project_root())
        .args(["--epochs", &epochs.to_string()])
        .args(compiled.then_some("--compile"))
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
pub fn run(args: &BenchArgs) -> Result<()> {
    let work = target_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    if args.web {
        // vae-train embeds the module it exports.
        crate::web::run()?;
    }
    let exe = build_and_download()?;
    let torch = !args.no_torch && torch_available();
    if !torch && !args.no_torch {
        eprintln!("note: PyTorch is not importable, so only our side is timed; `pip install torch numpy` adds it");
    }
    if args.sgemm {
        let doc = serde_json::json!({ "machine": machine(), "sgemm": sgemm::run(args, &exe, &work, torch)? });
        return write_report(args, &doc);
    }
    let compile = torch && !args.no_torch_compile;
    let mut timed = resolve_presets(args, &exe, &work)?;
    for round in 1..=args.rounds {
        time_round(args, &exe, &work, round, (torch, compile), &mut timed)?;
    }
    let (report, rows) = training_report(args, &timed, (torch, compile));
    let machine = machine();
    // `--rounds 0` times no training (for `--web` or `--folder` alone).
    if args.rounds > 0 {
        print_training_table(args, &rows, &machine);
    }
    if args.profile {
        print_profiles(&timed);
    }
    let mut doc = serde_json::json!({ "machine": machine, "results": report });
    if !args.no_likelihood {
        doc["likelihood"] = likelihood_row(&exe, &work, args, torch)?;
    }
    if args.folder {
        doc["folder"] = folder::run(&exe, &work, args.rounds)?;
    }
    if args.web {
        doc["web"] = web::run(&exe, &work)?;
    }
    write_report(args, &doc)
}

/// Writes the JSON report to `args.json` and says where.
fn write_report(args: &BenchArgs, doc: &serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(args.json.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&args.json, serde_json::to_string_pretty(doc)?)?;
    println!("\n(JSON: {})", args.json.display());
    Ok(())
}

/// Builds vae-train once, so that the runs time the binary and not cargo, fetches the data, and returns the binary.
fn build_and_download() -> Result<PathBuf> {
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
    Ok(exe)
}

/// Each preset as the trainer resolves it, written into `work` for PyTorch to train exactly that, with the sides
/// to time: our variants on the first preset, our default on the others.
fn resolve_presets<'a>(args: &'a BenchArgs, exe: &Path, work: &Path) -> Result<Vec<Timed<'a>>> {
    let mut timed = Vec::with_capacity(args.presets.len());
    for (i, preset) in args.presets.iter().enumerate() {
        let config = work.join(format!("{preset}.json"));
        let resolved = Command::new(exe).args(["preset", preset]).output()?;
        if !resolved.status.success() {
            bail!("{}", String::from_utf8_lossy(&resolved.stderr).trim());
        }
        std::fs::write(&config, &resolved.stdout)?;
        let ours: Vec<_> = match i {
            0 => variants(&args.variants),
            _ => vec![&VARIANTS[0]],
        };
        timed.push(Timed {
            preset,
            config,
            ours: ours
                .into_iter()
                .map(|v| (v, Side::default(), String::new()))
                .collect(),
            eager: Side::default(),
            compiled: Side::default(),
        });
    }
    Ok(timed)
}

/// One round: every preset and every side in turn, so that presets are compared side by side too (the machine's
/// speed drifts over minutes, and one preset's rounds all before another's would measure the drift).
fn time_round(
    args: &BenchArgs,
    exe: &Path,
    work: &Path,
    round: usize,
    (torch, compile): (bool, bool),
    timed: &mut [Timed],
) -> Result<()> {
    for t in timed {
        for (variant, side, engine) in &mut t.ours {
            let out = work.join(format!("{}-{round}", t.preset));
            *engine = ours(
                exe,
                t.preset,
                (args.epochs, args.profile),
                variant,
                &out,
                side,
            )?;
            let epochs = last(&side.epoch_s, args.epochs);
            eprintln!(
                "bench: {} round {round}: {} {epochs:?}",
                t.preset, variant.name
            );
        }
        for (on, side, name) in [
            (torch, &mut t.eager, "PyTorch"),
            (compile, &mut t.compiled, "PyTorch compiled"),
        ] {
            if on {
                theirs(&t.config, args.epochs, name != "PyTorch", side)?;
                eprintln!(
                    "bench: {} round {round}: {name} {:?}",
                    t.preset,
                    last(&side.epoch_s, args.epochs)
                );
            }
        }
    }
    Ok(())
}

/// Training images per epoch, for the images per second.
const IMAGES: f64 = 60000.0;

/// Each preset's JSON entry and each side of ours's table row.
fn training_report(
    args: &BenchArgs,
    timed: &[Timed],
    (torch, compile): (bool, bool),
) -> (Vec<serde_json::Value>, Vec<String>) {
    let (mut report, mut rows) = (Vec::new(), Vec::new());
    for t in timed {
        // The faster PyTorch of the two, by median: what every ratio is measured against.
        let faster = match (torch, compile) {
            (false, _) => None,
            (true, true) if t.compiled.median() < t.eager.median() => {
                Some((&t.compiled, "compiled"))
            }
            (true, _) => Some((&t.eager, "eager")),
        };
        let mut entry =
            serde_json::json!({ "preset": t.preset, "epochs": args.epochs, "rounds": args.rounds });
        if torch {
            entry["torch_eager"] = t.eager.json(IMAGES);
        }
        if compile {
            entry["torch_compiled"] = t.compiled.json(IMAGES);
        }
        let mut ours_json = Vec::new();
        for (variant, side, engine) in &t.ours {
            let mut o = serde_json::json!({ "variant": variant.name, "engine": engine, "result": side.json(IMAGES) });
            if let Some((them, which)) = faster {
                o["ratio_over_faster_torch"] = (side.median() / them.median()).into();
                o["faster_torch"] = which.into();
            }
            ours_json.push(o);
            let theirs = [cell(torch, &t.eager), cell(compile, &t.compiled)];
            rows.push(row(t.preset, variant.name, side, theirs, faster, IMAGES));
        }
        entry["ours"] = ours_json.into();
        report.push(entry);
    }
    (report, rows)
}

/// The training table, under its heading.
fn print_training_table(args: &BenchArgs, rows: &[String], machine: &str) {
    println!(
        "\nTraining epoch time, median of {} epochs ({} rounds of {}, each round every preset and side in turn); ratios against the faster PyTorch (eager, or torch.compile with fused Adam); {machine}\n",
        args.rounds * args.epochs,
        args.rounds,
        args.epochs
    );
    println!("| preset | ours | s/epoch | PyTorch eager s/epoch | PyTorch compiled s/epoch | ours / faster PyTorch | ours img/s | ours peak RSS MiB | PyTorch peak RSS MiB | ours test -ELBO | PyTorch test -ELBO |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// Times the likelihood estimates, prints their table and returns its JSON entry.
fn likelihood_row(
    exe: &Path,
    work: &Path,
    args: &BenchArgs,
    torch: bool,
) -> Result<serde_json::Value> {
    let (row, entry) = likelihood::likelihood(exe, work, args, torch)?;
    println!(
        "\nImportance-weighted estimate of -log p(x), seconds, median of {} alternating runs\n",
        args.rounds
    );
    println!("| estimate | ours s | PyTorch s | ours / PyTorch | ours NLL | PyTorch NLL |");
    println!("|---|---|---|---|---|---|");
    println!("{row}");
    Ok(entry)
}

/// One preset's sides.
struct Timed<'a> {
    preset: &'a str,
    config: PathBuf,
    ours: Vec<(&'static Variant, Side, String)>,
    eager: Side,
    compiled: Side,
}

/// A PyTorch median cell, `-` when that side did not run.
fn cell(on: bool, side: &Side) -> String {
    if on {
        format!("{:.2}", side.median())
    } else {
        "-".into()
    }
}

/// Where the time of an epoch of ours went (the profiled rounds' medians, ms per epoch), then each product.
fn print_profiles(timed: &[Timed]) {
    println!("\nWhere an epoch of ours goes, ms (median over rounds of each round's mean epoch)\n");
    println!("| preset | epoch | products | element-wise | Adam | noise | data | other |");
    println!("|---|---|---|---|---|---|---|---|");
    for t in timed {
        let p = &t.ours[0].1.profiles;
        let cells: Vec<String> = (0..7)
            .map(|i| {
                format!(
                    "{:.0}",
                    median(&p.iter().map(|r| r.parts()[i]).collect::<Vec<_>>())
                )
            })
            .collect();
        println!("| {} | {} |", t.preset, cells.join(" | "));
    }
    println!(
        "\nEach product of a step, last profiled round: GFLOP/s (the FLOPs a call does, 2·m·n·k, or 2·nonzeros·n for a \
         sparse one, over its time)\n"
    );
    println!(
        "| preset | product (a, b transposed? m×n×k) | sgemm | calls/epoch | ms/epoch | GFLOP/s |"
    );
    println!("|---|---|---|---|---|---|");
    for t in timed {
        let Some(p) = t.ours[0].1.profiles.last() else {
            continue;
        };
        for q in p.products.iter().filter(|q| q.calls > 2.0) {
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} |",
                t.preset, q.shape, q.backend, q.calls, q.ms, q.gflop_per_s
            );
        }
    }
}

fn last(v: &[f64], n: usize) -> &[f64] {
    &v[v.len().saturating_sub(n)..]
}

/// One table row of ours, with PyTorch's eager and compiled median cells and the faster PyTorch.
fn row(
    preset: &str,
    variant: &str,
    us: &Side,
    [eager, compiled]: [String; 2],
    them: Option<(&Side, &str)>,
    images: f64,
) -> String {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let theirs = |f: &dyn Fn(&Side) -> String| them.map_or("-".to_string(), |(t, _)| f(t));
    format!(
        "| {preset} | {variant} | {:.2} | {eager} | {compiled} | {} | {:.0} | {:.0} | {} | {:.2} | {} |",
        us.median(),
        them.map_or("-".into(), |(t, which)| format!("{:.2}x ({which})", us.median() / t.median())),
        images / us.median(),
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
