//! The `gemm` crate's product, the kernel Candle's CPU matmul uses.

use gemm::Parallelism;

use super::{GemmShape, SPLIT_MACS};

/// [`super::sgemm`] on the `gemm` crate (the caller checked the slices).
pub fn sgemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    let GemmShape { m, n, k, .. } = shape;
    let (a_rs, a_cs) = if shape.a_transposed {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if shape.b_transposed {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let threads = rayon::current_num_threads();
    // Small products are faster on one thread than split by the crate.
    let par = if threads > 1 && shape.macs() >= SPLIT_MACS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the caller checked every slice holds its matrix; the strides describe exactly those layouts.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
