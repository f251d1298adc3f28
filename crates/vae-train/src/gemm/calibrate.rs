//! A training step's backend, chosen by timing whole steps on each backend.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::cache;
use super::{choose, scope, Backend};

/// The backend a training run's steps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepBackend {
    /// The environment forces one backend for every product ([`choose`]).
    Forced,
    /// Measured fastest for the run's step, by [`calibrate`] or an earlier run on this machine.
    Chosen(Backend),
}

impl StepBackend {
    /// Runs `step` with its products on this backend.
    pub fn run<T>(self, step: impl FnOnce() -> T) -> T {
        match self {
            StepBackend::Forced => step(),
            StepBackend::Chosen(backend) => scope::with_backend(backend, step),
        }
    }
}

/// Chooses the backend of a training step by timing it on OpenBLAS and on the `gemm` crate: `step` (a step on a copy
/// of the model, which must not touch the run's RNG) runs once to find its product shapes; unless this process or
/// the cache holds a choice for that step, it then runs trials until two agree on the backend of the fastest
/// best step. Whole steps are timed because a product inside a step is slower than the same product repeated (cold
/// caches, threads waking up), and not by the same amount on both backends. Logged; written to the cache, where a
/// choice another run made first wins, so that runs on one machine agree.
pub fn calibrate(what: &str, mut step: impl FnMut()) -> StepBackend {
    if choose::forced().is_some() {
        return StepBackend::Forced;
    }
    let mut timed = |backend: Backend| {
        scope::begin_trial(backend);
        let start = Instant::now();
        step();
        start.elapsed().as_secs_f64()
    };
    let candidates = Backend::available();
    timed(candidates[0]);
    let names = candidates
        .iter()
        .map(|&b| key_name(b))
        .collect::<Vec<_>>()
        .join(" or ");
    let key = format!("step ({names}): {}", scope::trial_shapes().join(", "));
    let path = cache::cache_path();
    let before = chosen_steps().get(&key).copied().or_else(|| {
        path.as_deref()
            .and_then(|p| cache::read(p, &key).ok().flatten())
    });
    let pick = match before {
        Some(b) => {
            let place = path.map_or("not cached".into(), |p| p.display().to_string());
            tracing::info!(
                "sgemm for {what}: {} (chosen earlier on this machine, {place})",
                b.name()
            );
            b
        }
        None => measure_and_record(what, (&key, &candidates), path.as_deref(), &mut timed),
    };
    scope::end_trials();
    StepBackend::Chosen(*chosen_steps().entry(key).or_insert(pick))
}

/// A backend's name in a step's cache key, with its library's kernels or version: other kernels, another choice.
fn key_name(b: Backend) -> String {
    match b {
        Backend::OpenBlas => format!("openblas {}", super::openblas_core().unwrap_or_default()),
        Backend::Mkl => format!("mkl {}", super::mkl_version().unwrap_or_default()),
        Backend::Blis => format!("blis {}", super::blis_version().unwrap_or_default()),
        Backend::Gemm | Backend::GemmAvx2 => b.name().to_string(),
    }
}

/// This process's choices for training steps, by key: an earlier choice stands even where the cache cannot be
/// written.
fn chosen_steps() -> std::sync::MutexGuard<'static, HashMap<String, Backend>> {
    static STEPS: OnceLock<Mutex<HashMap<String, Backend>>> = OnceLock::new();
    let steps = STEPS.get_or_init(Default::default);
    steps.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs trials until two choose alike (one can be skewed by a moment of the machine's), then records the choice in
/// the cache at `path`, where another run's earlier choice wins; logs what it measured.
fn measure_and_record(
    what: &str,
    (key, candidates): (&str, &[Backend]),
    path: Option<&Path>,
    timed: &mut impl FnMut(Backend) -> f64,
) -> Backend {
    let mut chosen = Vec::new();
    let (fastest, best) = loop {
        let best = trial(candidates, timed);
        let fastest = (0..best.len()).fold(0, |f, i| if best[i] < best[f] { i } else { f });
        if chosen.contains(&fastest) {
            break (fastest, best);
        }
        chosen.push(fastest);
    };
    let mine = candidates[fastest];
    let pick = match path {
        Some(p) => cache::record(p, key, mine, "the choice holds for this run only"),
        None => mine,
    };
    let times: Vec<String> = (candidates.iter().zip(&best))
        .map(|(b, t)| format!("{:.2} ms on {}", t * 1e3, b.name()))
        .collect();
    let place = path.map_or("not cached".into(), |p| p.display().to_string());
    let trials = chosen.len() + 1;
    let times = times.join(", ");
    tracing::info!(
        "sgemm for {what}: {} (best step {times}; {trials} trials; cached in {place})",
        pick.name()
    );
    pick
}

/// One trial of [`calibrate`]: three blocks of four steps on each candidate in turn, the first of each block
/// untimed (it finds the caches as the previous candidate left them). Returns each candidate's best step, in seconds.
fn trial(candidates: &[Backend], timed: &mut impl FnMut(Backend) -> f64) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; candidates.len()];
    for _ in 0..3 {
        for (i, &b) in candidates.iter().enumerate() {
            timed(b);
            for _ in 0..3 {
                best[i] = best[i].min(timed(b));
            }
        }
    }
    best
}
