//! Training, evaluation and figures for the VAE of `vae-model` on the datasets of `vae-data`; the `vae-train`
//! binary is a thin CLI over this library.

mod adam;
pub mod checkpoint;
mod config;
pub mod engine;
pub mod eval;
pub mod figures;
pub mod fused;
pub mod interrupt;
pub mod rundir;
pub mod train;

pub use adam::{Adam, AdamConfig, AdamState};
pub use config::{Engine, Overrides, RunConfig, TrainingConfig, BUILTIN_PRESETS};
pub use engine::{build_engine, resolve_engine, StepTerms, TrainEngine};
pub use interrupt::{Interrupt, Interrupted};
pub use train::{train, EpochMetrics, TrainOptions, TrainReport};

use anyhow::{bail, Result};
use candle_core::Device;

/// The device kinds the CLI accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// The CPU (always available).
    Cpu,
    /// An NVIDIA GPU (needs the `cuda` feature).
    Cuda,
    /// An Apple GPU (needs the `metal` feature).
    Metal,
}

/// Opens the device, or says which build would support it.
pub fn open_device(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if cfg!(feature = "cuda") => Ok(Device::new_cuda(0)?),
        DeviceKind::Metal if cfg!(feature = "metal") => Ok(Device::new_metal(0)?),
        DeviceKind::Cuda => bail!("this vae-train was built without CUDA support; run `cargo xtask build --device cuda`"),
        DeviceKind::Metal => bail!("this vae-train was built without Metal support; run `cargo xtask build --device metal`"),
    }
}

/// Refuses to allocate `bytes` for `what` when the machine cannot hold them (its available memory, where the OS
/// says), so that an absurd size is one clear error instead of an abort in the allocator.
pub fn ensure_memory(bytes: u128, what: &str) -> Result<()> {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse::<u128>().ok()
        })
        .map_or(u128::from(u64::MAX), |kib| kib * 1024);
    if bytes > available {
        bail!(
            "{what} needs about {:.1} GiB of memory, more than the {:.1} GiB available",
            bytes as f64 / f64::from(1u32 << 30),
            available as f64 / f64::from(1u32 << 30)
        );
    }
    Ok(())
}
