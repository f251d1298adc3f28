//! Running cargo and the `vae-train` binary from the workspace root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `cargo` at the workspace root, without the variables `cargo run` gave xtask itself.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    // Passed on, they look like a changed environment to build scripts that watch them (ring's watches
    // CARGO_MANIFEST_DIR), and every build from a shell after one from xtask, or the other way round, recompiled.
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

/// `cargo run --release -p vae-train [features] -- `, the arguments to follow.
pub fn vae_train(device: &str) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "vae-train"])
        .args(features(device))
        .arg("--");
    cmd
}

/// Cargo's feature arguments for a device (vae-train's features are named after the devices it adds), plus
/// `blas` for the fused CPU engine when OpenBLAS is installed.
pub fn features(device: &str) -> Vec<String> {
    let mut f = Vec::new();
    if device != "cpu" {
        f.push(format!("vae-train/{device}"));
    }
    if blas_available() {
        f.push("vae-train/blas".into());
    }
    if f.is_empty() {
        return f;
    }
    vec!["--features".into(), f.join(",")]
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

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// The workspace root.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The command as one line, for echoing and errors.
pub fn line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd`, echoed, with inherited output; an error if it fails.
pub fn status(cmd: &mut Command) -> Result<()> {
    let line = line(cmd);
    eprintln!("$ {line}");
    let st = cmd.status().with_context(|| format!("cannot run {line}"))?;
    if !st.success() {
        bail!("`{line}` failed ({st})");
    }
    Ok(())
}

/// Runs `cmd`, echoed, with stderr inherited; returns its stdout, or an error if it fails.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let line = line(cmd);
    eprintln!("$ {line}");
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {line}"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last line of a `vae-train` run's stdout, its JSON summary, as `T` ([`crate::summary::TrainSummary`] for
/// `vae-train train`, a [`serde_json::Value`] for the others).
pub fn summary<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T> {
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("vae-train's summary line {last:?}"))
}

/// Makes a relative `$VAE_DATA_DIR` absolute, from the directory xtask was started in, so that everything xtask
/// starts (vae-train at the workspace root, test binaries in their crates' folders) sees the same folder. Unset, each
/// falls back to `data/` at the workspace root.
pub fn pin_data_dir() {
    if let Some(dir) = std::env::var_os("VAE_DATA_DIR").filter(|d| !d.is_empty()) {
        if let Ok(abs) = std::path::absolute(&dir) {
            std::env::set_var("VAE_DATA_DIR", abs);
        }
    }
}

/// `$XDG_CACHE_HOME/vae-candle`, else `~/.cache/vae-candle`: where the CUDA and MKL wheels go (and where
/// `vae-train` looks for MKL).
pub fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(base.join("vae-candle"))
}
