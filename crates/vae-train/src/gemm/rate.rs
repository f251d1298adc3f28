//! One product's speed alone, for `cargo xtask bench --sgemm`: a shape on a backend, timed call by call.

use std::time::{Duration, Instant};

use super::{scope, Backend, GemmShape};

/// Untimed calls before the timed ones: the first packs into cold buffers and wakes the threads.
const WARM_UP: usize = 3;

/// Timed calls at least, however long they take.
const MIN_CALLS: usize = 5;

/// The GFLOP/s (2·m·n·k per call) of `shape` on `backend`: the median call of those made in `min_time` (at least
/// five), after three untimed ones. It runs as a training step's product does: on the current rayon pool, split
/// across its threads when large.
///
/// ```
/// use vae_train::gemm::{rate, Backend, GemmShape};
///
/// let shape: GemmShape = "NT 64x64x64".parse().unwrap();
/// assert!(rate(shape, Backend::Gemm, std::time::Duration::ZERO) > 0.0);
/// ```
pub fn rate(shape: GemmShape, backend: Backend, min_time: Duration) -> f64 {
    let GemmShape { m, n, k, .. } = shape;
    let operand =
        |len: usize| -> Vec<f32> { (0..len).map(|i| (i % 251) as f32 / 125.0 - 1.0).collect() };
    let (a, b, mut c) = (operand(m * k), operand(k * n), vec![0f32; m * n]);
    let seconds = scope::with_backend(backend, || {
        for _ in 0..WARM_UP {
            super::sgemm(shape, &a, &b, &mut c, false);
        }
        let (start, mut times) = (Instant::now(), Vec::new());
        while times.len() < MIN_CALLS || start.elapsed() < min_time {
            let call = Instant::now();
            super::sgemm(shape, &a, &b, &mut c, false);
            times.push(call.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    });
    2.0 * shape.macs() as f64 / seconds.max(1e-12) / 1e9
}
