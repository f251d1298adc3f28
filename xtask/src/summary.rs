//! The JSON summary line that `vae-train train` prints on stdout, as xtask reads it: the fields the tasks use, by
//! name and type, so that a changed summary fails where it is parsed rather than as a missing number later.
//!
//! Its own types rather than vae-train's, so that xtask stays free of Candle; fields it does not read (`out`,
//! `final`) are ignored.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The summary of one training run.
#[derive(Debug, Deserialize)]
pub struct TrainSummary {
    /// The trained model's file.
    pub model: PathBuf,
    /// The run's resolved config file.
    pub config: PathBuf,
    /// The metrics of every epoch.
    pub history: Vec<Epoch>,
    /// The engine that trained (`fused`, `autograd`).
    pub engine: String,
    /// The files written into the run directory, relative to it.
    pub files: Vec<String>,
    /// The sgemm of the fused engine (`openblas`, `gemm`).
    pub gemm: String,
    /// Where the epochs' time went, with `VAE_PROFILE` set.
    pub profile: Option<Profile>,
    /// The process's peak resident set, where the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

/// One epoch's metrics.
#[derive(Debug, Clone, Deserialize)]
pub struct Epoch {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training objective over the epoch's steps.
    pub train_loss: f64,
    /// Test −ELBO after the epoch.
    pub test_loss: f64,
    /// Test reconstruction term.
    pub test_recon: f64,
    /// Test KL term.
    pub test_kl: f64,
    /// Seconds spent on training steps.
    pub epoch_s: f64,
}

/// Milliseconds per epoch in each part of training, averaged over the profiled epochs: every field vae-train
/// writes, since bench copies it into its JSON report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Epochs averaged.
    pub epochs: usize,
    /// The whole training pass.
    pub epoch_ms: f64,
    /// The products.
    pub products_ms: f64,
    /// The rest of the step.
    pub elementwise_ms: f64,
    /// The Adam update.
    pub adam_ms: f64,
    /// Drawing ε.
    pub noise_ms: f64,
    /// Waiting for batches.
    pub data_ms: f64,
    /// Everything else in the epoch.
    pub other_ms: f64,
    /// Each product shape, slowest first.
    pub products: Vec<ProductTime>,
}

impl Profile {
    /// The parts of [`Profile`] that bench tabulates, in its table's order.
    pub fn parts(&self) -> [f64; 7] {
        [
            self.epoch_ms,
            self.products_ms,
            self.elementwise_ms,
            self.adam_ms,
            self.noise_ms,
            self.data_ms,
            self.other_ms,
        ]
    }
}

/// One product shape's share of the profiled epochs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductTime {
    /// `"NT 128x400x784"`: transposes, then m, n, k.
    pub shape: String,
    /// The sgemm that ran it, or `sparse`.
    pub backend: String,
    /// Calls per epoch.
    pub calls: f64,
    /// Milliseconds per epoch.
    pub ms: f64,
    /// Floating-point operations per call.
    pub flop_per_call: f64,
    /// The FLOPs over the time.
    pub gflop_per_s: f64,
}
