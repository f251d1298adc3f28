//! `cargo xtask test`, the README's test command.

use anyhow::Result;

use crate::cmd::{cargo, features, status, vae_train};
use crate::device::device_cargo;

/// `--device cpu`: everything; `--device cuda`: the GPU tests.
pub fn run(device: &str) -> Result<()> {
    match device {
        "cpu" => test(),
        "cuda" => test_cuda(),
        other => anyhow::bail!("--device {other}: the GPU tests exist for cuda only"),
    }
}

/// Runs the lints, fetches (or verifies) the datasets where the product keeps them, runs every test in the release
/// profile (so it reuses what `cargo xtask train` built), then the end-to-end check.
fn test() -> Result<()> {
    // First: the tests and the e2e check build vae-train with the module embedded.
    crate::web::run()?;
    crate::lint::run()?;
    // The two IDX datasets the tests read; CIFAR-10's tests write their own small archives.
    for dataset in ["mnist", "fashion-mnist"] {
        status(vae_train("cpu").args(["download", "--dataset", dataset]))?;
    }
    status(
        cargo()
            .args(["test", "--workspace", "--release"])
            .args(features("cpu")),
    )?;
    crate::e2e::end_to_end()
}

/// The tests that need an NVIDIA GPU (`crates/vae-train/tests/gpu.rs`), built for CUDA in `target/cuda/`.
fn test_cuda() -> Result<()> {
    status(vae_train("cpu").args(["download", "--dataset", "mnist"]))?;
    status(
        device_cargo("cuda", None)?
            .args(["test", "--release", "-p", "vae-train", "--test", "gpu"])
            .args(features("cuda")),
    )
}
