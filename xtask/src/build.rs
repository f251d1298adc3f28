//! `cargo xtask build`: a release build with a device's features.

use anyhow::{Context, Result};

use crate::cmd::{features, status, target_dir};
use crate::device::device_cargo;
use crate::flags::BuildArgs;

/// `cargo build --release --workspace` with the device's features, into the device's own target folder.
pub fn run(args: &BuildArgs) -> Result<()> {
    let device = args.device.as_str();
    // vae-train embeds the explorer's WebAssembly module for `export-web`.
    crate::web::run()?;
    let mut cmd = device_cargo(device, args.compute_cap.as_deref())?;
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
