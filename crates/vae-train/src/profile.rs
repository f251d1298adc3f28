//! Where a training epoch's time goes, measured when `VAE_PROFILE=1` (off otherwise: one relaxed load per timed
//! section). The fused engine's products are timed per shape, so their GFLOP/s show the distance to the sgemm
//! floor; the rest of a step is its element-wise work (activations, the loss, the reparameterisation), Adam, and
//! the noise; outside the step are the wait for the next batch (made beside the steps: gathering, binarising) and
//! everything else (progress, sums).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::gemm::timing::{self, ProductTime};

/// Whether `VAE_PROFILE` is set (to anything but `0`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("VAE_PROFILE").is_some_and(|v| v != "0"))
}

/// A timed part of an epoch.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// Waiting for the next batch, which a thread of its own makes (gathers rows, binarises) beside the steps.
    Data,
    /// One engine step, all of it (products, Adam and noise included).
    Step,
    /// Drawing ε.
    Noise,
    /// The Adam update.
    Adam,
}

static PHASE_NS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Runs `f`, adding its time to `phase` when profiling.
pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let start = Instant::now();
    let out = f();
    PHASE_NS[phase as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Clears every counter (at the start of an epoch), the products' included, whose timing it turns on when
/// profiling.
pub fn reset() {
    PHASE_NS.iter().for_each(|a| a.store(0, Ordering::Relaxed));
    timing::reset(enabled());
}

/// Milliseconds per epoch in each part, averaged over the profiled epochs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Epochs averaged.
    pub epochs: usize,
    /// The whole training pass.
    pub epoch_ms: f64,
    /// The products' wall time: sgemm calls and the sparse ones, those run side by side counted once.
    pub products_ms: f64,
    /// The rest of the step: activations, loss, reparameterisation, copies.
    pub elementwise_ms: f64,
    /// The Adam update.
    pub adam_ms: f64,
    /// Drawing ε.
    pub noise_ms: f64,
    /// Making batches.
    pub data_ms: f64,
    /// Everything else in the epoch.
    pub other_ms: f64,
    /// Each product shape, slowest first.
    pub products: Vec<ProductTime>,
}

impl Profile {
    /// The counters since the last [`reset`], for an epoch that took `epoch`.
    pub fn take(epoch: Duration) -> Self {
        let ms = |p: Phase| PHASE_NS[p as usize].load(Ordering::Relaxed) as f64 / 1e6;
        let (products, overlap_ms) = timing::take();
        let products_ms = products.iter().map(|p| p.ms).sum::<f64>() - overlap_ms;
        let (step, adam, noise, data) = (
            ms(Phase::Step),
            ms(Phase::Adam),
            ms(Phase::Noise),
            ms(Phase::Data),
        );
        let epoch_ms = epoch.as_secs_f64() * 1e3;
        Self {
            epochs: 1,
            epoch_ms,
            products_ms,
            elementwise_ms: (step - products_ms - adam - noise).max(0.0),
            adam_ms: adam,
            noise_ms: noise,
            data_ms: data,
            other_ms: (epoch_ms - step - data).max(0.0),
            products,
        }
    }

    /// The average of `self` and `other`, weighted by their epochs.
    pub fn merge(self, other: Profile) -> Profile {
        let (a, b) = (self.epochs as f64, other.epochs as f64);
        let avg = |x: f64, y: f64| (x * a + y * b) / (a + b);
        let products = timing::merge(&self.products, a, &other.products, b);
        Profile {
            epochs: self.epochs + other.epochs,
            epoch_ms: avg(self.epoch_ms, other.epoch_ms),
            products_ms: avg(self.products_ms, other.products_ms),
            elementwise_ms: avg(self.elementwise_ms, other.elementwise_ms),
            adam_ms: avg(self.adam_ms, other.adam_ms),
            noise_ms: avg(self.noise_ms, other.noise_ms),
            data_ms: avg(self.data_ms, other.data_ms),
            other_ms: avg(self.other_ms, other.other_ms),
            products,
        }
    }
}
