//! A library's product (OpenBLAS's and MKL's `cblas_sgemm`, BLIS's `bli_sgemm`) on the calling thread, a large
//! product split by rows or columns of `c` across ours: the libraries' own threads spin for a while after each call,
//! taking the cores from our kernels, so they run single-threaded and the split is ours.

#[cfg(any(feature = "blas", feature = "mkl"))]
use std::ffi::c_int;

use rayon::prelude::*;

use super::{GemmShape, SPLIT_MACS};

/// `cblas_sgemm`'s signature, its enums as the C `int`s they are.
#[cfg(any(feature = "blas", feature = "mkl"))]
pub type Sgemm = unsafe extern "C" fn(
    layout: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

/// CBLAS's `CblasRowMajor`, `CblasNoTrans` and `CblasTrans`.
#[cfg(any(feature = "blas", feature = "mkl"))]
const ROW_MAJOR: c_int = 101;
#[cfg(any(feature = "blas", feature = "mkl"))]
const NO_TRANS: c_int = 111;
#[cfg(any(feature = "blas", feature = "mkl"))]
const TRANS: c_int = 112;

/// A block of a product as [`split`] hands it to a library: its shape, each operand's first element with its leading
/// dimension (all row-major, `a` and `b` transposed as the shape says), and whether to add to `c`.
pub struct Part {
    pub shape: GemmShape,
    pub a: (*const f32, usize),
    pub b: (*const f32, usize),
    pub c: (*mut f32, usize),
    pub acc: bool,
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

/// [`super::sgemm`] through `f`, a library's `cblas_sgemm` on one thread (the caller checked the slices).
#[cfg(any(feature = "blas", feature = "mkl"))]
pub fn sgemm(f: Sgemm, shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    // SAFETY: `split` hands `call` only parts whose pointers hold their blocks.
    split(|part| unsafe { call(f, part) }, shape, a, b, c, acc)
}

/// [`super::sgemm`] through `product`, a library's product of one [`Part`] on one thread, split across the calling
/// pool's threads when the product is large (the caller checked the slices). `product` is handed only parts whose
/// pointers hold their blocks, each block of `c` to one thread.
pub fn split(
    product: impl Fn(Part) + Sync,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    acc: bool,
) {
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
    let block = |p: usize| unsafe { block(&product, &ops, shape, parts, p, acc) };
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
unsafe fn block(
    product: &impl Fn(Part),
    ops: &Operands,
    shape: GemmShape,
    parts: usize,
    p: usize,
    acc: bool,
) {
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
            product(Part {
                shape: part,
                a: (a, lda),
                b: (ops.b, ldb),
                c: (ops.c.add(r0 * n), n),
                acc,
            });
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
            product(Part {
                shape: part,
                a: (ops.a, lda),
                b: (b, ldb),
                c: (ops.c.add(c0), n),
                acc,
            });
        }
    }
}

/// `f`, a `cblas_sgemm`, on one part.
///
/// # Safety
/// Each pointer must hold its block of the part's shape at its leading dimension.
#[cfg(any(feature = "blas", feature = "mkl"))]
unsafe fn call(f: Sgemm, part: Part) {
    let t = |x: bool| if x { TRANS } else { NO_TRANS };
    let Part {
        shape,
        a: (a, lda),
        b: (b, ldb),
        c: (c, ldc),
        acc,
    } = part;
    let GemmShape { m, n, k, .. } = shape;
    f(
        ROW_MAJOR,
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
