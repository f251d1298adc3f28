//! `cargo xtask fuzz`: each cargo-fuzz target in `fuzz/` for N seconds, one after the other.
//!
//! The corpora are seeded here rather than committed: the downloaded datasets' gzips cut short (and a few tiny IDX
//! files, which the `idx_reader` target also gzips itself), the presets in `models/`, the PyTorch fixtures of the
//! import test, and for the two safetensors
//! targets a tiny valid model and checkpoint that the targets themselves write when `VAE_FUZZ_WRITE_SEED` is set,
//! so the seeds always follow the current file formats.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cmd;

/// The targets (`fuzz/fuzz_targets/<name>.rs`) and the longest input each is given.
const TARGETS: [(&str, usize); 5] = [
    ("idx_reader", 65_536),
    ("import", 65_536),
    ("model_load", 65_536),
    ("checkpoint_load", 65_536),
    ("preset_parser", 16_384),
];

/// What one target's run came to.
struct Outcome {
    target: &'static str,
    runs: Option<(u64, u64)>,
    ok: bool,
    artifacts: Vec<String>,
    log: PathBuf,
}

/// Runs every target for `seconds`, then says how each went; an error if one failed.
pub fn run(seconds: u64) -> Result<()> {
    check_cargo_fuzz()?;
    let root = cmd::project_root();
    let logs = cmd::target_dir().join("fuzz-logs");
    fs::create_dir_all(&logs).with_context(|| logs.display().to_string())?;
    let mut outcomes = Vec::new();
    for (target, max_len) in TARGETS {
        outcomes.push(fuzz_target(&root, &logs, (target, max_len), seconds)?);
    }
    report(&outcomes, seconds)
}

/// An error, saying how to install it, unless `cargo +nightly fuzz` runs.
fn check_cargo_fuzz() -> Result<()> {
    let ok = nightly_cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("`cargo +nightly fuzz` does not run: rustup toolchain install nightly && cargo install cargo-fuzz");
    }
    Ok(())
}

/// Seeds one target's corpus and runs it for `seconds`, its log in `logs`.
fn fuzz_target(
    root: &Path,
    logs: &Path,
    (target, max_len): (&'static str, usize),
    seconds: u64,
) -> Result<Outcome> {
    let corpus = root.join("fuzz/corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| corpus.display().to_string())?;
    let mut run = nightly_cargo();
    match target {
        "idx_reader" => seed_idx(&corpus)?,
        "preset_parser" => seed_presets(&root.join("models"), &corpus)?,
        "import" => seed_torch(&root.join("crates/vae-train/tests/fixtures/torch"), &corpus)?,
        // Written by the target's own init, before libFuzzer reads the corpus.
        _ => {
            run.env("VAE_FUZZ_WRITE_SEED", corpus.join("seed-tiny.safetensors"));
        }
    }
    run.args([
        "fuzz",
        "run",
        target,
        "--",
        &format!("-max_total_time={seconds}"),
    ])
    .args([
        "-rss_limit_mb=4096",
        &format!("-max_len={max_len}"),
        "-timeout=60",
    ]);
    run_target(target, &mut run, &logs.join(format!("{target}.log")))
}

/// Each target's verdict, runs, log and artifacts; an error naming the targets that failed.
fn report(outcomes: &[Outcome], seconds: u64) -> Result<()> {
    eprintln!("\nfuzzing, {seconds} s per target:");
    for o in outcomes {
        let runs = match o.runs {
            Some((n, s)) => format!("{n} runs in {s} s"),
            None => "no `Done` line".into(),
        };
        let verdict = if o.ok { "ok" } else { "FAILED" };
        eprintln!(
            "  {:<16} {verdict:<7} {runs}  (log {})",
            o.target,
            o.log.display()
        );
        for a in &o.artifacts {
            eprintln!("  {:<16} artifact {a}", "");
        }
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.target)
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (see the logs and artifacts above)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// `cargo +nightly` at the workspace root, through rustup's proxy (`$CARGO` is the stable cargo), without the
/// variables `cargo run` gave xtask, and building in fuzz/target whatever `CARGO_TARGET_DIR` says.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").current_dir(cmd::project_root());
    for (key, value) in cmd::cargo().get_envs() {
        if value.is_none() {
            c.env_remove(key);
        }
    }
    c.env_remove("CARGO_TARGET_DIR");
    c
}

/// Runs one target with its stderr copied to `log`, and reads libFuzzer's verdict from it.
fn run_target(target: &'static str, run: &mut Command, log: &Path) -> Result<Outcome> {
    let line = cmd::line(run);
    eprintln!("$ {line}");
    let mut file = fs::File::create(log).with_context(|| log.display().to_string())?;
    let mut child = run
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {line}"))?;
    let mut reader = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (mut runs, mut artifacts) = (None, Vec::new());
    let mut buf = Vec::new();
    let stderr = std::io::stderr();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        stderr.lock().write_all(&buf)?;
        file.write_all(&buf)?;
        let text = String::from_utf8_lossy(&buf);
        // `Done 1234 runs in 600 second(s)`
        if let Some(rest) = text.trim().strip_prefix("Done ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [n, "runs", "in", s, ..] = words[..] {
                runs = n.parse().ok().zip(s.parse().ok());
            }
        }
        // `Test unit written to ./artifacts/…/crash-…`, also for leaks, OOMs and timeouts.
        if let Some((_, path)) = text.split_once("Test unit written to ") {
            artifacts.push(path.trim().to_string());
        }
    }
    let status = child.wait()?;
    Ok(Outcome {
        target,
        runs,
        ok: status.success(),
        artifacts,
        log: log.to_path_buf(),
    })
}

/// The committed PyTorch fixtures (`torch.save` files of small VAEs), as they are.
fn seed_torch(fixtures: &Path, corpus: &Path) -> Result<()> {
    for file in fs::read_dir(fixtures).with_context(|| fixtures.display().to_string())? {
        let path = file?.path();
        if path.extension().is_some_and(|e| e == "pt" || e == "pth") {
            let name = path.file_name().expect("a file name");
            fs::copy(&path, corpus.join(name)).with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}

/// The datasets' gzips cut short (their headers, then a stream that ends early), and tiny valid IDX files, which the
/// target reads as they are and gzipped.
fn seed_idx(corpus: &Path) -> Result<()> {
    let data = std::env::var_os("VAE_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::project_root().join("data"));
    for dataset in fs::read_dir(&data).into_iter().flatten().flatten() {
        for file in fs::read_dir(dataset.path()).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_none_or(|e| e != "gz") {
                continue;
            }
            let bytes = fs::read(&path).with_context(|| path.display().to_string())?;
            let stem = format!(
                "{}-{}",
                dataset.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            for len in [512, 8192] {
                let cut = &bytes[..len.min(bytes.len())];
                fs::write(corpus.join(format!("{stem}-{len}")), cut)?;
            }
        }
    }
    let idx = |magic: u8, dims: &[u32]| {
        let mut b = vec![0, 0, 8, magic];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        let n: u32 = dims.iter().product();
        b.extend((0..n).map(|i| i as u8));
        b
    };
    fs::write(corpus.join("tiny-images"), idx(3, &[2, 3, 2]))?;
    fs::write(corpus.join("tiny-labels"), idx(1, &[5]))?;
    Ok(())
}

/// The presets in `models/`.
fn seed_presets(models: &Path, corpus: &Path) -> Result<()> {
    for file in fs::read_dir(models).with_context(|| models.display().to_string())? {
        let path = file?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().expect("a file");
            fs::copy(&path, corpus.join(name)).with_context(|| path.display().to_string())?;
        }
    }
    Ok(())
}
