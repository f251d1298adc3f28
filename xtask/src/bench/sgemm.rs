//! `cargo xtask bench --sgemm`: every product shape of each preset (from one profiled epoch of ours), timed alone
//! on each of our sgemm backends (`crates/vae-train/examples/sgemm_rates.rs`) and through `torch.matmul`
//! (`bench/torch_matmul.py`), in alternated rounds; the medians' GFLOP/s side by side.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use super::{median, Side, VARIANTS};
use crate::cmd::{cargo, features, project_root, status, target_dir};
use crate::flags::BenchArgs;

/// Milliseconds of timed calls per shape and backend in a round.
const MS_PER_SHAPE: &str = "300";

/// A shape's rates in each round, by backend (`gemm`, `openblas`, `torch`).
type Rates = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

/// A product of a preset's epoch: its shape, calls and milliseconds per epoch.
struct Product {
    shape: String,
    calls: f64,
    ms: f64,
}

/// One preset's dense products (the sparse first layer has no sgemm), slowest first.
fn products(exe: &Path, work: &Path, preset: &str) -> Result<Vec<Product>> {
    let mut side = Side::default();
    let out = work.join(format!("sgemm-{preset}"));
    super::ours(exe, preset, (1, true), &VARIANTS[0], &out, &mut side)?;
    let profile = side.profiles.pop();
    let products = profile.map(|p| p.products).unwrap_or_default();
    Ok(products
        .into_iter()
        .filter(|p| p.backend != "sparse")
        .map(|p| Product {
            shape: p.shape,
            calls: p.calls,
            ms: p.ms,
        })
        .collect())
}

/// Runs `cmd` with the shapes and adds each JSON line's rate to `rates`.
fn rates_of(mut cmd: Command, shapes: &[&String], rates: &mut Rates) -> Result<()> {
    let o = cmd.args(shapes).current_dir(project_root()).output()?;
    if !o.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let (Some(shape), Some(backend), Some(r)) = (
            v["shape"].as_str(),
            v["backend"].as_str(),
            v["gflop_per_s"].as_f64(),
        ) else {
            bail!("an sgemm rate line without shape, backend or rate: {line}");
        };
        let by_backend = rates.entry(shape.to_string()).or_default();
        by_backend.entry(backend.to_string()).or_default().push(r);
    }
    Ok(())
}

/// One preset and its products.
type Preset<'a> = (&'a str, Vec<Product>);

/// Builds the rates example, finds each preset's products, times them in `args.rounds` alternated rounds (at
/// least one), prints the table and returns the JSON report.
pub fn run(args: &BenchArgs, exe: &Path, work: &Path, torch: bool) -> Result<serde_json::Value> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "vae-train"]);
    status(
        build
            .args(["--example", "sgemm_rates"])
            .args(features("cpu")),
    )?;
    let rates_exe = target_dir().join("release/examples/sgemm_rates");
    let mut presets: Vec<Preset> = Vec::new();
    for preset in &args.presets {
        presets.push((preset.as_str(), products(exe, work, preset)?));
    }
    let mut shapes: Vec<&String> = presets
        .iter()
        .flat_map(|(_, products)| products.iter().map(|p| &p.shape))
        .collect();
    shapes.sort();
    shapes.dedup();
    let mut rates = Rates::new();
    for round in 1..=args.rounds.max(1) {
        let mut ours = Command::new(&rates_exe);
        ours.args(["--ms", MS_PER_SHAPE]);
        rates_of(ours, &shapes, &mut rates)?;
        if torch {
            let mut theirs = Command::new("python3");
            theirs.arg(project_root().join("bench/torch_matmul.py"));
            theirs.args(["--ms", MS_PER_SHAPE]);
            rates_of(theirs, &shapes, &mut rates)?;
        }
        eprintln!("bench: sgemm round {round}: {} shapes", shapes.len());
    }
    Ok(report(&presets, &rates))
}

/// The backends that ran, ours first, `torch` last.
fn backends(rates: &Rates) -> Vec<&str> {
    let mut names: Vec<&str> = rates
        .values()
        .flat_map(|r| r.keys())
        .map(String::as_str)
        .collect();
    names.sort_by_key(|&name| (name == "torch", name));
    names.dedup();
    names
}

/// Prints the table (each preset's products, slowest first) and returns it as JSON.
fn report(presets: &[Preset], rates: &Rates) -> serde_json::Value {
    let names = backends(rates);
    println!(
        "\nEach product alone, GFLOP/s (2·m·n·k over the median call; medians of the rounds)\n"
    );
    println!(
        "| preset | product (a, b transposed? m×n×k) | calls/epoch | ms/epoch | {} | ours / torch |",
        names.join(" | ")
    );
    println!("|---|---|---|---|{}---|", "---|".repeat(names.len()));
    let mut json = Vec::new();
    for (preset, products) in presets {
        for p in products {
            let of = |b: &str| {
                rates
                    .get(&p.shape)
                    .and_then(|r| r.get(b))
                    .map_or(f64::NAN, |v| median(v))
            };
            let medians: BTreeMap<&str, f64> = names.iter().map(|&b| (b, of(b))).collect();
            let ours = names.iter().filter(|&&b| b != "torch").map(|&b| of(b));
            let ratio = ours.fold(f64::NAN, f64::max) / of("torch");
            let cells: Vec<String> = names.iter().map(|&b| format!("{:.0}", of(b))).collect();
            let ratio_cell = match ratio.is_finite() {
                true => format!("{:.0}%", 100.0 * ratio),
                false => "-".into(),
            };
            let (shape, calls, ms) = (&p.shape, p.calls, p.ms);
            println!(
                "| {preset} | {shape} | {calls:.0} | {ms:.0} | {} | {ratio_cell} |",
                cells.join(" | ")
            );
            json.push(serde_json::json!({
                "preset": preset, "shape": shape, "calls_per_epoch": calls, "ms_per_epoch": ms,
                "gflop_per_s": medians, "rounds": rates.get(shape), "ours_over_torch": ratio,
            }));
        }
    }
    serde_json::Value::Array(json)
}
