//! OpenBLAS's `cblas_sgemm`, on the calling thread, a large product split by rows or columns of `c` across ours.
//!
//! OpenBLAS's own threads spin (sched_yield) for a while after each call, taking the cores from our kernels, so
//! OpenBLAS runs single-threaded and the split is ours.

// Linked for its libopenblas; the symbols come through cblas-sys.
extern crate openblas_src as _;
use cblas_sys::{cblas_sgemm, CBLAS_LAYOUT::CblasRowMajor, CBLAS_TRANSPOSE};
use rayon::prelude::*;

use super::{GemmShape, SPLIT_MACS};

extern "C" {
    fn openblas_set_num_threads(n: std::ffi::c_int);
    fn openblas_get_corename() -> *const std::ffi::c_char;
}

/// The kernels OpenBLAS chose when it loaded (`Haswell`, `SkylakeX`, …; `Prescott`, its generic SSE3 ones, for a
/// CPU it does not know).
pub fn corename() -> String {
    // SAFETY: OpenBLAS returns a static NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(openblas_get_corename()) };
    name.to_string_lossy().into_owned()
}

/// A product's operands as raw parts, so that threads can each take a disjoint block of `c`.
#[derive(Clone, Copy)]
struct Operands {
    a: *const f32,
    b: *const f32,
    c: *mut f32,
}
// SAFETY: the threads read `a` and `b` and write disjoint blocks of `c`, for the duration of one call.
unsafe impl Send for Operands {}
unsafe impl Sync for Operands {}

/// [`super::sgemm`] on OpenBLAS (the caller checked the slices).
pub fn sgemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    static ONE_THREAD: std::sync::Once = std::sync::Once::new();
    // SAFETY: sets a count; called before any product of ours runs.
    ONE_THREAD.call_once(|| unsafe { openblas_set_num_threads(1) });
    let ops = Operands {
        a: a.as_ptr(),
        b: b.as_ptr(),
        c: c.as_mut_ptr(),
    };
    let parts = if shape.macs() >= SPLIT_MACS {
        rayon::current_num_threads()
    } else {
        1
    };
    // SAFETY: the caller checked that the slices hold their matrices, and the blocks of `c` are disjoint.
    let block = |p: usize| unsafe { block(&ops, shape, parts, p, acc) };
    if parts == 1 {
        block(0)
    } else {
        (0..parts).into_par_iter().for_each(block)
    }
}

/// Block `p` of `parts` of the product: rows of `c` when it is at least as tall as wide, else columns; blocks a
/// multiple of 8 wide (the kernels' width with AVX2), as even as that allows.
///
/// # Safety
/// `ops` must hold matrices of `shape`, and no other thread may write this block of `c`.
unsafe fn block(ops: &Operands, shape: GemmShape, parts: usize, p: usize, acc: bool) {
    let GemmShape {
        a_transposed: ta,
        b_transposed: tb,
        m,
        n,
        k,
    } = shape;
    let split = |len: usize| (len.div_ceil(parts)).div_ceil(8) * 8;
    let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
    if m >= n {
        let step = split(m);
        let (r0, r1) = (p * step, ((p + 1) * step).min(m));
        if r0 < r1 {
            let a = ops.a.add(if ta { r0 } else { r0 * k });
            let part = GemmShape {
                m: r1 - r0,
                ..shape
            };
            call(part, (a, lda), (ops.b, ldb), (ops.c.add(r0 * n), n), acc);
        }
    } else {
        let step = split(n);
        let (c0, c1) = (p * step, ((p + 1) * step).min(n));
        if c0 < c1 {
            let b = ops.b.add(if tb { c0 * k } else { c0 });
            let part = GemmShape {
                n: c1 - c0,
                ..shape
            };
            call(part, (ops.a, lda), (b, ldb), (ops.c.add(c0), n), acc);
        }
    }
}

/// `cblas_sgemm` on row-major blocks, each operand with its leading dimension.
///
/// # Safety
/// Each pointer must hold its block of `shape` at its leading dimension.
unsafe fn call(
    shape: GemmShape,
    (a, lda): (*const f32, usize),
    (b, ldb): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    acc: bool,
) {
    let t = |x: bool| {
        if x {
            CBLAS_TRANSPOSE::CblasTrans
        } else {
            CBLAS_TRANSPOSE::CblasNoTrans
        }
    };
    let GemmShape { m, n, k, .. } = shape;
    cblas_sgemm(
        CblasRowMajor,
        t(shape.a_transposed),
        t(shape.b_transposed),
        m as i32,
        n as i32,
        k as i32,
        1.0,
        a,
        lda as i32,
        b,
        ldb as i32,
        if acc { 1.0 } else { 0.0 },
        c,
        ldc as i32,
    )
}
