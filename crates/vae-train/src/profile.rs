//! Where a training epoch's time goes, measured when `VAE_PROFILE=1` (off otherwise: one relaxed load per timed
//! section). The fused engine's products are timed per shape, so their GFLOP/s show the distance to the sgemm
//! floor; the rest of a step is its element-wise work (activations, the loss, the reparameterisation), Adam, and
//! the noise; outside the step are the wait for the next batch (made beside the steps: gathering, binarising) and
//! everything else (progress, sums).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::fused::{gemm_shape_key, GemmBackend, GemmShape};

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
    /// By how much products run side by side summed to more than their wall time.
    Overlap,
}

static PHASE_NS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Per product shape and what ran it (an sgemm backend, or `sparse`): calls, nanoseconds and FLOPs.
type Products = HashMap<(GemmShape, &'static str), (u64, u64, f64)>;

fn products() -> std::sync::MutexGuard<'static, Products> {
    static P: OnceLock<Mutex<Products>> = OnceLock::new();
    P.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

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

/// Runs `f`, which runs products side by side, counting their overlap: the time their calls took beyond `f`'s.
pub fn overlapping<T>(f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let summed = || products().values().map(|&(_, ns, _)| ns).sum::<u64>();
    let before = summed();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed().as_nanos() as u64;
    let overlap = (summed() - before).saturating_sub(wall);
    PHASE_NS[Phase::Overlap as usize].fetch_add(overlap, Ordering::Relaxed);
    out
}

/// Records one product (called by the sgemm wrapper when profiling).
pub fn product(shape: GemmShape, backend: GemmBackend, took: Duration) {
    let flop = 2.0 * (shape.2 * shape.3 * shape.4) as f64;
    record((shape, backend.name()), took, flop);
}

/// Runs `f`, a product of `shape` done on the `nonzeros()` of its sparse operand (`2·nonzeros·n` FLOPs), timing
/// it when profiling.
pub fn sparse_product<T>(
    shape: GemmShape,
    nonzeros: impl FnOnce() -> usize,
    f: impl FnOnce() -> T,
) -> T {
    if !enabled() || crate::fused::gemm_in_trial() {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let flop = 2.0 * (nonzeros() * shape.3) as f64;
    record((shape, "sparse"), start.elapsed(), flop);
    out
}

fn record(key: (GemmShape, &'static str), took: Duration, flop: f64) {
    let mut p = products();
    let e = p.entry(key).or_insert((0, 0, 0.0));
    e.0 += 1;
    e.1 += took.as_nanos() as u64;
    e.2 += flop;
}

/// Clears every counter (at the start of an epoch).
pub fn reset() {
    PHASE_NS.iter().for_each(|a| a.store(0, Ordering::Relaxed));
    products().clear();
}

/// One product shape's share of the profiled epochs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProductTime {
    /// `"NT 128x400x784"`: transposes, then m, n, k.
    pub shape: String,
    /// The sgemm that ran it (`openblas`, `gemm`), or `sparse`: the first layer's products on the images'
    /// nonzeros.
    pub backend: String,
    /// Calls per epoch.
    pub calls: f64,
    /// Milliseconds per epoch: its calls' own time (beside another product, in the backward pass's pairs, at the
    /// speed it had there).
    pub ms: f64,
    /// Floating-point operations per call: 2·m·n·k, or 2·nonzeros·n for a sparse product.
    pub flop_per_call: f64,
    /// Its speed: the FLOPs over the time.
    pub gflop_per_s: f64,
    /// The shape itself, which with the backend identifies the product when epochs are averaged.
    #[serde(skip)]
    dims: GemmShape,
}

impl ProductTime {
    fn new(dims: GemmShape, backend: &str, calls: f64, ms: f64, flop_per_call: f64) -> Self {
        Self {
            shape: gemm_shape_key(dims),
            backend: backend.to_string(),
            calls,
            ms,
            flop_per_call,
            gflop_per_s: flop_per_call * calls / (ms * 1e6).max(1e-9),
            dims,
        }
    }
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
        let mut products: Vec<ProductTime> = products()
            .iter()
            .map(|(&(shape, backend), &(calls, ns, flop))| {
                let per_call = flop / calls.max(1) as f64;
                ProductTime::new(shape, backend, calls as f64, ns as f64 / 1e6, per_call)
            })
            .collect();
        products.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let products_ms = products.iter().map(|p| p.ms).sum::<f64>() - ms(Phase::Overlap);
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
        // Per product, calls, milliseconds and FLOPs weighted by epochs; the speed follows from them.
        let mut products: Vec<ProductTime> = Vec::new();
        for (p, w) in self
            .products
            .iter()
            .map(|p| (p, a))
            .chain(other.products.iter().map(|p| (p, b)))
        {
            let (calls, ms) = (p.calls * w / (a + b), p.ms * w / (a + b));
            let flop = p.flop_per_call * calls;
            match products
                .iter_mut()
                .find(|q| q.dims == p.dims && q.backend == p.backend)
            {
                Some(q) => {
                    let (calls, ms) = (q.calls + calls, q.ms + ms);
                    let per_call = (q.flop_per_call * q.calls + flop) / calls.max(1e-9);
                    *q = ProductTime::new(q.dims, &q.backend, calls, ms, per_call)
                }
                None => products.push(ProductTime::new(
                    p.dims,
                    &p.backend,
                    calls,
                    ms,
                    p.flop_per_call,
                )),
            }
        }
        products.sort_by(|x, y| y.ms.total_cmp(&x.ms));
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
