//! Cargo for a device's build: `target/DEVICE/` and, for CUDA, the toolkit's environment.

use std::process::Command;

use anyhow::Result;

use crate::cmd::{cargo, features, target_dir};
use crate::cuda::{Link, Toolkit};

/// `cargo` for a device's build: its own target folder (`target/cuda/`, `target/metal/`), so a GPU binary never
/// replaces the CPU one, and for CUDA the toolkit's environment (found, or installed from pip wheels).
pub fn device_cargo(device: &str, compute_cap: Option<&str>) -> Result<Command> {
    let mut cmd = cargo();
    if device != "cpu" {
        cmd.env("CARGO_TARGET_DIR", target_dir().join(device));
    }
    if device == "cuda" {
        let toolkit = Toolkit::find_or_install(Link::Run, compute_cap)?;
        toolkit.apply(&mut cmd);
    }
    Ok(cmd)
}

/// [`vae_train`](crate::cmd::vae_train) built for `device` by [`device_cargo`].
pub fn vae_train_on(device: &str, compute_cap: Option<&str>) -> Result<Command> {
    let mut cmd = device_cargo(device, compute_cap)?;
    cmd.args(["run", "--quiet", "--release", "-p", "vae-train"])
        .args(features(device))
        .arg("--");
    Ok(cmd)
}
