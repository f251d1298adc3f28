//! `cargo xtask test`, the README's test command.

use anyhow::Result;

use crate::cmd::{cargo, device_cargo, features, status, vae_train};

/// Runs the lints, fetches (or verifies) the datasets where the product keeps them, runs every test in the release
/// profile (so it reuses what `cargo xtask train` built), then the end-to-end check.
pub fn test() -> Result<()> {
    crate::lint::lint()?;
    status(vae_train("cpu").args(["download", "--dataset", "all"]))?;
    status(
        cargo()
            .args(["test", "--workspace", "--release"])
            .args(features("cpu")),
    )?;
    crate::e2e::end_to_end()
}

/// The tests that need an NVIDIA GPU (`crates/vae-train/tests/gpu.rs`), built for CUDA in `target/cuda/`.
pub fn test_cuda() -> Result<()> {
    status(vae_train("cpu").args(["download", "--dataset", "mnist"]))?;
    status(
        device_cargo("cuda", None)?
            .args(["test", "--release", "-p", "vae-train", "--test", "gpu"])
            .args(features("cuda")),
    )
}
