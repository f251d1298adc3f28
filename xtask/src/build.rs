//! `cargo xtask build` and `cargo xtask train`: release builds with a device's features.

use std::ffi::OsString;

use anyhow::{Context, Result};

use crate::cmd::{cargo, features, status, vae_train};

/// `cargo build --release --workspace` with the device's features.
pub fn build(device: &str) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--workspace"])
        .args(features(device));
    status(&mut cmd).with_context(|| match device {
        "cuda" => "the cuda build needs the CUDA toolkit (nvcc) and an NVIDIA driver",
        "metal" => "the metal build needs macOS with Xcode's command-line tools",
        _ => "",
    })
}

/// `vae-train train --preset P --device D --download [flags]`, built in release for the device.
pub fn train(preset: &str, device: &str, flags: &[OsString]) -> Result<()> {
    // --download fetches (and verifies) only what is missing; vae-train's own flags may follow.
    let mut cmd = vae_train(device);
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
