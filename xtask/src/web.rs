//! `cargo xtask web`: the explorer's WebAssembly module (`crates/vae-web` for `wasm32-unknown-unknown`, through
//! wasm-bindgen's `--target web`) into `target/web/pkg/`, where `vae-train`'s build script embeds it for
//! `export-web`. Installs rustup's target and the matching `wasm-bindgen-cli` (into `target/tools/`) when missing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::{cargo, project_root, status, stdout, target_dir};

const TARGET: &str = "wasm32-unknown-unknown";
/// What wasm-bindgen writes, and `vae-train` embeds.
pub const FILES: [&str; 2] = ["vae_web.js", "vae_web_bg.wasm"];

/// Builds the module and updates `target/web/pkg/` where its files changed (so `vae-train` is rebuilt only then).
pub fn run() -> Result<()> {
    ensure_target()?;
    let bindgen = ensure_bindgen()?;
    status(cargo().args(["build", "--release", "--target", TARGET, "-p", "vae-web"]))?;
    let wasm = target_dir().join(TARGET).join("release/vae_web.wasm");
    let fresh = target_dir().join("web/fresh");
    let _ = std::fs::remove_dir_all(&fresh);
    status(
        std::process::Command::new(&bindgen)
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(&fresh)
            .arg(&wasm),
    )?;
    let pkg = pkg_dir();
    std::fs::create_dir_all(&pkg)?;
    for name in FILES {
        let new = std::fs::read(fresh.join(name))
            .with_context(|| format!("wasm-bindgen wrote no {name}"))?;
        if std::fs::read(pkg.join(name)).ok().as_ref() != Some(&new) {
            std::fs::write(pkg.join(name), &new)?;
        }
    }
    let size = std::fs::metadata(pkg.join(FILES[1]))?.len();
    eprintln!("built {} ({:.2} MB)", pkg.display(), size as f64 / 1e6);
    Ok(())
}

/// `target/web/pkg/`, which `crates/vae-train/build.rs` reads.
pub fn pkg_dir() -> PathBuf {
    target_dir().join("web/pkg")
}

fn ensure_target() -> Result<()> {
    let rustup = || std::process::Command::new("rustup");
    let installed = stdout(rustup().args(["target", "list", "--installed"]))
        .context("the WebAssembly build needs rustup")?;
    if !installed.lines().any(|l| l.trim() == TARGET) {
        eprintln!("installing rustup's {TARGET} target");
        status(rustup().args(["target", "add", TARGET]))?;
    }
    Ok(())
}

/// `wasm-bindgen` of the version in Cargo.lock: the CLI must match the crate exactly.
fn ensure_bindgen() -> Result<PathBuf> {
    let version = locked_version(&project_root().join("Cargo.lock"), "wasm-bindgen")?;
    let root = target_dir().join("tools");
    let bin = root.join("bin/wasm-bindgen");
    let has = |bin: &Path| {
        stdout(std::process::Command::new(bin).arg("--version"))
            .is_ok_and(|v| v.split_whitespace().nth(1) == Some(version.as_str()))
    };
    if !has(&bin) {
        eprintln!(
            "installing wasm-bindgen-cli {version} into {}",
            root.display()
        );
        status(
            cargo()
                .args([
                    "install",
                    "wasm-bindgen-cli",
                    "--version",
                    &version,
                    "--root",
                ])
                .arg(&root),
        )?;
    }
    if !has(&bin) {
        bail!("{}: not wasm-bindgen {version}", bin.display());
    }
    Ok(bin)
}

/// The version Cargo.lock pins for `package`.
fn locked_version(lock: &Path, package: &str) -> Result<String> {
    let text = std::fs::read_to_string(lock).with_context(|| lock.display().to_string())?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"") {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    bail!("{}: no {package}", lock.display())
}
