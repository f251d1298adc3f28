//! The backend a thread's products run on: set for a training step ([`with_backend`]) or a calibration trial, and
//! carried into the pool's threads when a step runs two products side by side ([`side_by_side`]). Per thread, so that
//! other threads' products (tests run side by side) keep their own.

use std::cell::RefCell;

use super::{timing, Backend, GemmShape, SPLIT_MACS};

/// A thread's scope: its backend, whether it is a calibration trial, and (in a trial) the product shapes met.
pub(super) struct Scope {
    pub(super) backend: Backend,
    pub(super) trial: bool,
    pub(super) shapes: Vec<GemmShape>,
}

thread_local! {
    pub(super) static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// The scope's backend, and whether it is a trial, noting `shape` in a trial (the shapes are its step's key).
pub(super) fn scoped(shape: GemmShape) -> Option<(Backend, bool)> {
    SCOPE.with_borrow_mut(|s| {
        let s = s.as_mut()?;
        if s.trial && !s.shapes.contains(&shape) {
            s.shapes.push(shape);
        }
        Some((s.backend, s.trial))
    })
}

/// Whether this thread is inside a trial of the backend calibration ([`super::calibrate`]), whose steps are not
/// profiled.
pub fn in_trial() -> bool {
    SCOPE.with_borrow(|s| s.as_ref().is_some_and(|s| s.trial))
}

/// Runs `f` with every product of this thread on `backend`; a training step runs so with its calibrated backend,
/// so that one run uses the backend measured fastest for its whole step, whatever other runs chose for the same
/// shapes alone.
pub fn with_backend<T>(backend: Backend, f: impl FnOnce() -> T) -> T {
    in_scope(Some((backend, false)), f).0
}

/// Starts a trial on `backend`, keeping the shapes an earlier trial of the same step noted.
pub(super) fn begin_trial(backend: Backend) {
    SCOPE.with_borrow_mut(|s| {
        let shapes = s.take().map(|s| s.shapes).unwrap_or_default();
        *s = Some(Scope {
            backend,
            trial: true,
            shapes,
        });
    });
}

/// The shapes the trials so far met, as cache keys, sorted.
pub(super) fn trial_shapes() -> Vec<String> {
    let mut shapes: Vec<String> = SCOPE.with_borrow(|s| {
        let shapes = s.iter().flat_map(|s| &s.shapes);
        shapes.map(|s| s.to_string()).collect()
    });
    shapes.sort();
    shapes
}

/// Ends the trials: this thread's products choose for themselves again.
pub(super) fn end_trials() {
    SCOPE.with_borrow_mut(|s| *s = None);
}

/// Runs `a` and `b`, independent parts of a step (a layer's weight gradient and its input gradient), side by side on
/// the rayon pool, each in this thread's scope (its backend; in a trial, the shapes they meet are noted here), where
/// the pass's largest product does `pass_work` multiply-adds from `SPLIT_MACS` (8M): it splits across the threads, which
/// are then awake for the pairs (below, one after the other, since waking a sleeping thread for each pair costs more
/// than the pair saves). When profiling, the products' overlap is counted, so that their total stays wall time.
pub fn side_by_side(pass_work: usize, a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    if pass_work < SPLIT_MACS || rayon::current_num_threads() == 1 {
        a();
        return b();
    }
    let here = SCOPE.with_borrow(|s| s.as_ref().map(|s| (s.backend, s.trial)));
    let ((_, noted_a), (_, noted_b)) =
        timing::overlapping(|| rayon::join(|| in_scope(here, a), || in_scope(here, b)));
    SCOPE.with_borrow_mut(|s| {
        if let Some(s) = s.as_mut() {
            for shape in noted_a.into_iter().chain(noted_b) {
                if !s.shapes.contains(&shape) {
                    s.shapes.push(shape);
                }
            }
        }
    });
}

/// Runs `f` with this thread's scope set to `(backend, trial)` (left as it is for `None`), then put back; returns
/// the shapes it noted.
fn in_scope<T>(scope: Option<(Backend, bool)>, f: impl FnOnce() -> T) -> (T, Vec<GemmShape>) {
    let Some((backend, trial)) = scope else {
        return (f(), Vec::new());
    };
    let inner = Scope {
        backend,
        trial,
        shapes: Vec::new(),
    };
    let outer = SCOPE.with_borrow_mut(|s| s.replace(inner));
    let out = f();
    let inner = SCOPE.with_borrow_mut(|s| std::mem::replace(s, outer));
    (out, inner.map(|s| s.shapes).unwrap_or_default())
}
