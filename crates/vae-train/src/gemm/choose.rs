//! A lone product's backend: forced by the environment, chosen earlier, cached for this machine, or measured the
//! first time its shape is met.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::{cache, run, Backend, GemmShape};

/// How [`super::sgemm`] chooses, for logs and the run summary.
pub fn backend_summary() -> &'static str {
    if !cfg!(feature = "blas") {
        return "gemm crate";
    }
    match forced() {
        Some(Backend::Gemm) => "gemm crate (forced)",
        Some(_) => "OpenBLAS (forced)",
        None => "OpenBLAS or gemm crate, the faster measured on this run's step",
    }
}

/// The backend forced by the environment, if any (always the `gemm` crate without the `blas` feature).
pub(super) fn forced() -> Option<Backend> {
    static FORCED: OnceLock<Option<Backend>> = OnceLock::new();
    *FORCED.get_or_init(|| {
        if !cfg!(feature = "blas") {
            return Some(Backend::Gemm);
        }
        match std::env::var("VAE_GEMM").ok().as_deref() {
            Some("openblas") => return Some(Backend::OpenBlas),
            Some("gemm") => return Some(Backend::Gemm),
            Some("auto") | Some("") | None => {}
            Some(other) => {
                tracing::warn!("VAE_GEMM={other:?} is not openblas, gemm or auto; measuring")
            }
        }
        std::env::var_os("VAE_NO_AVX512").map(|_| Backend::OpenBlas)
    })
}

/// The backend for `shape`: forced, already chosen in this process, cached for this machine, or measured now.
pub fn choose(shape: GemmShape) -> Backend {
    if let Some(b) = forced() {
        return b;
    }
    if let Some(&b) = chosen().get(&shape) {
        return b;
    }
    // Measured outside the lock, so other shapes are not held up; a shape measured twice at once keeps the first.
    let b = cached_or_measured(shape);
    *chosen().entry(shape).or_insert(b)
}

/// The choices made in this process.
fn chosen() -> std::sync::MutexGuard<'static, HashMap<GemmShape, Backend>> {
    static CHOSEN: OnceLock<Mutex<HashMap<GemmShape, Backend>>> = OnceLock::new();
    let map = CHOSEN.get_or_init(Default::default);
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the choice from the cache, or measures and records it. The cache is locked while it is read, and again
/// while it is updated, where a choice another run recorded meanwhile wins, so that two runs that start together
/// agree; not while measuring, which runs on the rayon pool, whose threads may themselves be waiting for the lock
/// (the backward pass's pairs meeting a new shape). A cache that cannot be used costs only a warning.
fn cached_or_measured(shape: GemmShape) -> Backend {
    let key = shape.to_string();
    let Some(path) = cache::cache_path() else {
        return measured(shape, "no cache: no home directory");
    };
    match cache::read(&path, &key) {
        Ok(Some(b)) => {
            tracing::debug!("sgemm {key}: {} (cached in {})", b.name(), path.display());
            return b;
        }
        Ok(None) => {}
        Err(e) => {
            let where_ = path.display();
            cache::warn_once(&format!(
                "sgemm cache {where_}: {e}; measuring in this run only"
            ));
            return measured(shape, "not cached");
        }
    }
    let mine = measured(shape, &format!("cached in {}", path.display()));
    cache::record(&path, &key, mine, "measuring in this run only")
}

/// Times both backends on `shape`, alternating them so that a change in the machine's load falls on both, and
/// returns the faster, logging the measurement.
fn measured(shape: GemmShape, note: &str) -> Backend {
    let GemmShape { m, n, k, .. } = shape;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
    let mut c = vec![0f32; m * n];
    let mut time = |backend| {
        let t = Instant::now();
        run(backend, shape, &a, &b, &mut c, false);
        t.elapsed().as_secs_f64()
    };
    let both = [Backend::OpenBlas, Backend::Gemm];
    // One untimed run each (first-touch, thread start-up), then about 20 ms in all, at least 5 pairs: the best
    // run of each is its speed without the machine's interruptions.
    let first = both.map(&mut time);
    let pairs = ((0.02 / (first[0] + first[1]).max(1e-9)) as usize).clamp(5, 100);
    let mut best = [f64::INFINITY; 2];
    for _ in 0..pairs {
        for (i, &backend) in both.iter().enumerate() {
            best[i] = best[i].min(time(backend));
        }
    }
    let pick = if best[0] <= best[1] { both[0] } else { both[1] };
    let gflops = |s: f64| 2.0 * shape.macs() as f64 / s / 1e9;
    let (blas, crate_) = (gflops(best[0]), gflops(best[1]));
    let name = pick.name();
    tracing::info!(
        "sgemm {shape}: openblas {blas:.0} GFLOP/s, gemm {crate_:.0} GFLOP/s: {name} ({note})"
    );
    pick
}
