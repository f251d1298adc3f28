//! Training, evaluation and figures for the VAE of `vae-model` on the datasets of `vae-data`; the `vae-train`
//! binary is a thin CLI over this library.
//!
//! A training loop in code reads like Candle's own examples: [`Adam`] is a candle-nn `Optimizer`.
//!
//! ```
//! use candle_core::Device;
//! use candle_nn::Optimizer;
//! use vae_model::{elbo, Vae, VaeConfig, VaeRng};
//! use vae_train::{Adam, AdamConfig};
//!
//! let device = Device::Cpu;
//! let mut rng = VaeRng::seed_from(1);
//! let cfg = VaeConfig { input_dim: 16, hidden_dims: vec![8], latent_dim: 2, ..VaeConfig::mnist() };
//! let (vae, params) = Vae::init(&cfg, &mut rng, &device)?;
//! let mut opt = Adam::new(params.all_vars(), AdamConfig { lr: 1e-2, ..Default::default() })?;
//! // Two 16-pixel "images", left half or right half on, sixteen of each.
//! let pixels: Vec<f32> = (0..32 * 16).map(|i| ((i / 16 % 2) == (i % 16 / 8)) as u8 as f32).collect();
//! let x = candle_core::Tensor::from_vec(pixels, (32, 16), &device)?;
//! let mut losses = Vec::new();
//! for _ in 0..300 {
//!     let terms = elbo(&x, &vae.forward(&x, None, &mut rng)?)?;
//!     opt.backward_step(&terms.loss)?;
//!     losses.push(terms.loss.to_scalar::<f32>()?);
//! }
//! assert!(losses[299] < losses[0] / 2.0, "{losses:?}"); // the model learns the two shapes
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod adam;
pub mod charts;
pub mod checkpoint;
mod config;
mod cpu;
pub mod data;
pub mod engine;
pub mod eval;
pub mod fused;
pub mod gemm;
pub mod images;
pub mod import;
pub mod inputs;
pub mod interrupt;
pub mod latent;
pub mod metrics;
pub mod npy;
pub mod outputs;
pub mod profile;
pub mod rundir;
#[cfg(feature = "serve")]
pub mod serve;
pub mod train;

pub use adam::{Adam, AdamConfig, AdamState, FlatAdam};
pub use config::{
    Engine, Loss, Objective, Overrides, RunConfig, TrainingConfig, BUILTIN_PRESETS, MAX_IWAE_K,
};
pub use cpu::shorten_candle_spin;
pub use engine::{build_engine, resolve_engine, TrainEngine};
pub use gemm::pin_openblas_kernels;
pub use interrupt::{Interrupt, Interrupted};
pub use metrics::{EpochMetrics, StepTerms};
pub use train::{train, TrainOptions, TrainReport, TrainSummary};

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// The device kinds the CLI accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
        DeviceKind::Cuda if cfg!(feature = "cuda") => {
            Device::new_cuda(0).context("cannot open CUDA device 0 (is an NVIDIA GPU and its driver there?)")
        }
        DeviceKind::Metal if cfg!(feature = "metal") => {
            Device::new_metal(0).context("cannot open the Metal device")
        }
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

/// The process's peak resident set (VmHWM) in MiB, where the OS reports it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The data directory the unit tests read, as the product's own download fills it: `$VAE_DATA_DIR`, else `data/`
/// at the workspace root.
#[cfg(test)]
pub(crate) fn tests_data_dir() -> std::path::PathBuf {
    std::env::var_os("VAE_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"))
}
