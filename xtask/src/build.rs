//! `cargo xtask build` and `cargo xtask train`: release builds with a device's features.

use std::ffi::OsString;

use anyhow::{Context, Result};

use crate::cmd::{device_cargo, features, status, target_dir, vae_train_on};

/// `cargo build --release --workspace` with the device's features, into the device's own target folder.
pub fn build(device: &str, compute_cap: Option<&str>) -> Result<()> {
    let mut cmd = device_cargo(device, compute_cap)?;
    cmd.args(["build", "--release", "--workspace"])
        .args(features(device));
    status(&mut cmd).with_context(|| match device {
        "cuda" => "the cuda build failed",
        "metal" => "the metal build needs macOS with Xcode's command-line tools",
        _ => "",
    })?;
    let dir = if device == "cpu" {
        target_dir()
    } else {
        target_dir().join(device)
    };
    eprintln!("built {}", dir.join("release/vae-train").display());
    Ok(())
}

/// `vae-train train --preset P --device D --download [flags]`, built in release for the device.
pub fn train(
    preset: &str,
    device: &str,
    compute_cap: Option<&str>,
    flags: &[OsString],
) -> Result<()> {
    // --download fetches (and verifies) only what is missing; vae-train's own flags may follow.
    let mut cmd = vae_train_on(device, compute_cap)?;
    cmd.args([
        "train",
        "--preset",
        preset,
        "--device",
        device,
        "--download",
    ])
    .args(flags);
    status(&mut cmd)
}
