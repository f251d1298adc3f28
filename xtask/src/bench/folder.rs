//! `cargo xtask bench --folder`: MNIST's 70 000 images as a folder of PNGs, read by `--dataset folder:` the first
//! time (decoded on every core and cached) and again (from the cache), and an epoch from the folder beside one from
//! the IDX files, alternated.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cmd::{project_root, summary};
use crate::summary::TrainSummary;

/// What `vae-train train` logs about reading a folder: the decode and the cache read, each in seconds.
fn logged_seconds(stderr: &str, prefix: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.contains(prefix))?;
    let tail = &line[line.find(prefix)? + prefix.len()..];
    tail.split_whitespace().next()?.parse().ok()
}

/// One epoch of the `mnist` preset on `dataset`; the run's epoch time, its wall time and its stderr.
fn epoch(exe: &Path, dataset: &str, data_dir: &Path, out: &Path) -> Result<(f64, f64, String)> {
    let _ = std::fs::remove_dir_all(out);
    let started = Instant::now();
    let o = Command::new(exe)
        .args(["train", "--epochs", "1", "--dataset", dataset, "--data-dir"])
        .arg(data_dir)
        .arg("--out")
        .arg(out)
        .current_dir(project_root())
        .env("RUST_LOG", "info")
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        bail!("vae-train on {dataset} failed: {stderr}");
    }
    let run: TrainSummary = summary(&String::from_utf8_lossy(&o.stdout))?;
    Ok((run.history[0].epoch_s, wall, stderr))
}

/// Prints the folder's decode and cache times and the epochs from both sources, per round.
pub fn run(exe: &Path, work: &Path, rounds: usize) -> Result<serde_json::Value> {
    let pictures = work.join("mnist-pictures");
    if !pictures.is_dir() {
        let ok = Command::new(exe)
            .args(["export-images", "--dataset", "mnist", "--out"])
            .arg(&pictures)
            .current_dir(project_root())
            .status()?;
        if !ok.success() {
            bail!("export-images failed");
        }
    }
    let (folder, data) = (
        format!("folder:{}", pictures.display()),
        project_root().join("data"),
    );
    let cache_data = work.join("folder-data");
    let mut rows = Vec::new();
    println!("\nMNIST as 70 000 PNGs (--dataset folder:), mnist preset, 1 epoch; per round:");
    for round in 1..=rounds {
        let _ = std::fs::remove_dir_all(&cache_data);
        let (_, first_wall, first_log) =
            epoch(exe, &folder, &cache_data, &work.join("folder-first"))?;
        let (folder_epoch, _, cached_log) =
            epoch(exe, &folder, &cache_data, &work.join("folder-cached"))?;
        let (idx_epoch, _, _) = epoch(exe, "mnist", &data, &work.join("folder-idx"))?;
        let decode = logged_seconds(&first_log, "decoded 70000 pictures in ");
        let cached = logged_seconds(&cached_log, "examples from the cache in ");
        let show = |v: Option<f64>| v.map_or("?".into(), |s| format!("{s:.2} s"));
        println!(
            "  round {round}: decode {}, from the cache {}, epoch from the folder {folder_epoch:.2} s, from the IDX files {idx_epoch:.2} s (first run {first_wall:.1} s in all)",
            show(decode),
            show(cached)
        );
        rows.push(serde_json::json!({
            "decode_s": decode, "cache_s": cached, "folder_epoch_s": folder_epoch, "idx_epoch_s": idx_epoch,
        }));
    }
    Ok(serde_json::Value::Array(rows))
}
