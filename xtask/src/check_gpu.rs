//! `cargo xtask check-gpu`: the GPU builds checked on a machine without a GPU.

use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::{cargo, status, target_dir};
use crate::cuda::{Link, Toolkit};

/// `cargo xtask check-gpu`: builds the `cuda` feature (binaries and tests) against stub libraries, and type-checks
/// the `metal` feature for Apple silicon, so that a broken GPU build fails here rather than on a user's machine.
pub fn run() -> Result<()> {
    let toolkit = Toolkit::find_or_install(Link::Check, None)?;
    let mut build = cargo();
    build
        .args(["build", "--release", "--workspace", "--all-targets"])
        .args(["--features", "vae-train/cuda"])
        .env("CARGO_TARGET_DIR", target_dir().join("cuda-check"));
    toolkit.apply(&mut build);
    status(&mut build).context("the cuda feature does not build")?;

    // The HTTP stack's C code cannot be cross-compiled without the macOS SDK, so `http` is left out here.
    let target = "aarch64-apple-darwin";
    status(Command::new("rustup").args(["target", "add", target]))?;
    status(
        cargo()
            .args([
                "check",
                "--all-targets",
                "--target",
                target,
                "--no-default-features",
            ])
            .args(["-p", "vae-model", "-p", "vae-data", "-p", "vae-train"])
            .args(["--features", "vae-train/metal,vae-train/cli"])
            .env("CARGO_TARGET_DIR", target_dir().join("metal")),
    )
    .context("the metal feature does not type-check")
}
