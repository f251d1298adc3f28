//! A lone product's backend: forced by the environment, chosen earlier, cached for this machine, or measured the
//! first time its shape is met.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::{cache, run, Backend, GemmShape};

/// How [`super::sgemm`] chooses, for logs and the run summary: `"gemm crate"`, a forced backend, or the measured
/// choice between those this run has (`"OpenBLAS, MKL or gemm crate, the fastest measured on this run's step"`).
pub fn backend_summary() -> String {
    let title = |b: Backend| match b {
        Backend::OpenBlas => "OpenBLAS",
        Backend::Mkl => "MKL",
        Backend::Blis => "BLIS",
        Backend::Gemm => "gemm crate",
        Backend::GemmAvx2 => "gemm crate's AVX2 kernels",
    };
    let available = Backend::available();
    match forced() {
        Some(b) if available.len() == 1 => title(b).to_string(),
        Some(b) => format!("{} (forced)", title(b)),
        None => {
            let names: Vec<&str> = available.iter().map(|&b| title(b)).collect();
            let (last, rest) = names
                .split_last()
                .expect("a run has two backends or more here");
            format!(
                "{} or {last}, the fastest measured on this run's step",
                rest.join(", ")
            )
        }
    }
}

/// The backend forced by the environment, if any (the one backend where a run has only one).
pub(super) fn forced() -> Option<Backend> {
    static FORCED: OnceLock<Option<Backend>> = OnceLock::new();
    *FORCED.get_or_init(|| {
        let available = Backend::available();
        if let [only] = available[..] {
            return Some(only);
        }
        let named = match std::env::var("VAE_GEMM").ok().as_deref() {
            Some("auto") | Some("") | None => None,
            Some(name) => {
                let named = Backend::ALL.into_iter().find(|b| b.name() == name);
                if named.is_none() {
                    let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                    let names = names.join(", ");
                    tracing::warn!("VAE_GEMM={name:?} is not {names} or auto; measuring");
                }
                named
            }
        };
        match named {
            Some(b) if available.contains(&b) => Some(b),
            Some(b) => {
                tracing::warn!("VAE_GEMM={}: not in this run; measuring", b.name());
                None
            }
            None => None,
        }
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

/// Times every backend on `shape`, in turn so that a change in the machine's load falls on all, and returns the
/// fastest, logging the measurement.
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
    let all = Backend::available();
    // One untimed run each (first-touch, thread start-up), then about 20 ms in all, at least 5 rounds: the best
    // run of each is its speed without the machine's interruptions.
    let first: f64 = all.iter().map(|&b| time(b)).sum();
    let rounds = ((0.02 / first.max(1e-9)) as usize).clamp(5, 100);
    let mut best = vec![f64::INFINITY; all.len()];
    for _ in 0..rounds {
        for (i, &backend) in all.iter().enumerate() {
            best[i] = best[i].min(time(backend));
        }
    }
    let fastest = (0..all.len()).fold(0, |f, i| if best[i] < best[f] { i } else { f });
    let gflops = |s: f64| 2.0 * shape.macs() as f64 / s / 1e9;
    let rates: Vec<String> = (all.iter().zip(&best))
        .map(|(b, &s)| format!("{} {:.0} GFLOP/s", b.name(), gflops(s)))
        .collect();
    let (rates, name) = (rates.join(", "), all[fastest].name());
    tracing::info!("sgemm {shape}: {rates}: {name} ({note})");
    all[fastest]
}
