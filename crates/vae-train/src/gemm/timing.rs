//! The products' times when profiling: calls, nanoseconds and FLOPs per shape and what ran it, and by how much
//! products run side by side summed to more than their wall time. Off unless [`reset`] turned it on (one relaxed
//! load per product).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{scope, GemmShape};

static ON: AtomicBool = AtomicBool::new(false);
static OVERLAP_NS: AtomicU64 = AtomicU64::new(0);

/// Per product shape and what ran it (an sgemm backend, or `sparse`): calls, nanoseconds and FLOPs.
type Products = HashMap<(GemmShape, &'static str), (u64, u64, f64)>;

fn products() -> std::sync::MutexGuard<'static, Products> {
    static P: OnceLock<Mutex<Products>> = OnceLock::new();
    P.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Whether products are being timed.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Clears the counters and turns timing on or off (at the start of an epoch).
pub fn reset(on: bool) {
    ON.store(on, Ordering::Relaxed);
    OVERLAP_NS.store(0, Ordering::Relaxed);
    products().clear();
}

/// Adds one product's time.
pub(super) fn record(shape: GemmShape, ran_on: &'static str, took: Duration, flop: f64) {
    let mut p = products();
    let e = p.entry((shape, ran_on)).or_insert((0, 0, 0.0));
    e.0 += 1;
    e.1 += took.as_nanos() as u64;
    e.2 += flop;
}

/// Runs `f`, which runs products side by side, counting their overlap: the time their calls took beyond `f`'s.
pub(super) fn overlapping<T>(f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let summed = || products().values().map(|&(_, ns, _)| ns).sum::<u64>();
    let before = summed();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed().as_nanos() as u64;
    let overlap = (summed() - before).saturating_sub(wall);
    OVERLAP_NS.fetch_add(overlap, Ordering::Relaxed);
    out
}

/// Runs `f`, a product of `shape` done on the `nonzeros()` of its sparse operand (`2·nonzeros·n` FLOPs), timing
/// it when profiling (and not in a calibration trial).
pub fn sparse_product<T>(
    shape: GemmShape,
    nonzeros: impl FnOnce() -> usize,
    f: impl FnOnce() -> T,
) -> T {
    if !enabled() || scope::in_trial() {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let flop = 2.0 * (nonzeros() * shape.n) as f64;
    record(shape, "sparse", start.elapsed(), flop);
    out
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
            shape: dims.to_string(),
            backend: backend.to_string(),
            calls,
            ms,
            flop_per_call,
            gflop_per_s: flop_per_call * calls / (ms * 1e6).max(1e-9),
            dims,
        }
    }

    /// Whether `self` and `other` are the same product on the same backend.
    fn same(&self, other: &ProductTime) -> bool {
        self.dims == other.dims && self.backend == other.backend
    }
}

/// The products since the last [`reset`], slowest first, and the milliseconds by which those run side by side
/// overlapped.
pub fn take() -> (Vec<ProductTime>, f64) {
    let mut times: Vec<ProductTime> = products()
        .iter()
        .map(|(&(shape, backend), &(calls, ns, flop))| {
            let per_call = flop / calls.max(1) as f64;
            let ms = ns as f64 / 1e6;
            ProductTime::new(shape, backend, calls as f64, ms, per_call)
        })
        .collect();
    times.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    (times, OVERLAP_NS.load(Ordering::Relaxed) as f64 / 1e6)
}

/// The per-epoch average of two epochs' products, `a` weighing `wa` epochs and `b` `wb`: calls, milliseconds and
/// FLOPs weighted by epochs, the speed following from them; slowest first.
pub fn merge(a: &[ProductTime], wa: f64, b: &[ProductTime], wb: f64) -> Vec<ProductTime> {
    let mut merged: Vec<ProductTime> = Vec::new();
    let weighted = a.iter().map(|p| (p, wa)).chain(b.iter().map(|p| (p, wb)));
    for (p, w) in weighted {
        let (calls, ms) = (p.calls * w / (wa + wb), p.ms * w / (wa + wb));
        let flop = p.flop_per_call * calls;
        match merged.iter_mut().find(|q| q.same(p)) {
            Some(q) => {
                let (calls, ms) = (q.calls + calls, q.ms + ms);
                let per_call = (q.flop_per_call * q.calls + flop) / calls.max(1e-9);
                *q = ProductTime::new(q.dims, &q.backend, calls, ms, per_call)
            }
            None => merged.push(ProductTime::new(
                p.dims,
                &p.backend,
                calls,
                ms,
                p.flop_per_call,
            )),
        }
    }
    merged.sort_by(|x, y| y.ms.total_cmp(&x.ms));
    merged
}
