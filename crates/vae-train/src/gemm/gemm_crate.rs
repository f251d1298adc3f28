//! The `gemm` crate's product, the kernel Candle's CPU matmul uses: as the crate dispatches it (its AVX-512 kernels
//! where the CPU has them), or on its AVX2 kernels, which can win where AVX-512 runs at half width (a Zen 4).

use gemm::Parallelism;

use super::{GemmShape, SPLIT_MACS};

/// The kernels a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The crate's own choice: AVX-512 where the CPU has it.
    Dispatched,
    /// The crate's AVX2 and FMA kernels (only where [`avx2_is_a_second_choice`]).
    Avx2,
}

/// Whether the CPU has AVX-512 beside AVX2 and FMA, so that the crate's AVX2 kernels differ from its own choice.
pub fn avx2_is_a_second_choice() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f") && crate::cpu::has_avx2();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`super::sgemm`] on the `gemm` crate's `kernels` (the caller checked the slices, and the CPU for AVX2).
pub fn sgemm(kernels: Kernels, shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
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
    let alpha = if acc { 1.0 } else { 0.0 };
    let (c, a, b) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
    // SAFETY: the caller checked every slice holds its matrix; the strides describe exactly those layouts.
    unsafe {
        match kernels {
            Kernels::Dispatched => gemm::gemm(
                m, n, k, c, 1, n as isize, acc, a, a_cs, a_rs, b, b_cs, b_rs, alpha, 1.0, false,
                false, false, par,
            ),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => avx2::gemm(
                [m, n, k],
                (c, n as isize),
                (a, a_cs, a_rs),
                (b, b_cs, b_rs),
                acc,
                par,
            ),
            #[cfg(not(target_arch = "x86_64"))]
            Kernels::Avx2 => unreachable!("AVX2 is offered only on x86-64"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use gemm::Parallelism;
    use gemm_common::simd::V3;
    use gemm_f32::microkernel::fma::f32 as ukr;

    /// The row-major `c[m, n] (+)= a[m, k] · b[k, n]` (`c`'s row stride given, its column stride 1) on the crate's
    /// AVX2 kernels: what `gemm::gemm` does with such a product on a CPU without AVX-512. Like it, this hands the
    /// kernels the transposed product `cᵀ = bᵀ·aᵀ`, column-major, which they prefer.
    ///
    /// # Safety
    /// The pointers and strides must describe matrices of these sizes, and the CPU must have AVX2 and FMA.
    pub unsafe fn gemm(
        [m, n, k]: [usize; 3],
        (c, c_rs): (*mut f32, isize),
        (a, a_cs, a_rs): (*const f32, isize, isize),
        (b, b_cs, b_rs): (*const f32, isize, isize),
        acc: bool,
        par: Parallelism,
    ) {
        let simd = V3::try_new().expect("the caller checked the CPU has AVX2 and FMA");
        let alpha = if acc { 1.0 } else { 0.0 };
        // As `gemm::gemm` orients a destination whose columns are closer together than its rows.
        let ((m, n), (c_cs, c_rs), (lhs, l_cs, l_rs), (rhs, r_cs, r_rs)) = if 1 < c_rs {
            ((n, m), (c_rs, 1), (b, b_rs, b_cs), (a, a_rs, a_cs))
        } else {
            ((m, n), (1, c_rs), (a, a_cs, a_rs), (b, b_cs, b_rs))
        };
        gemm_common::gemm::gemm_basic_generic::<
            _,
            f32,
            8,
            { ukr::MR_DIV_N * 8 },
            { ukr::NR },
            { ukr::MR_DIV_N },
            { ukr::H_M },
            { ukr::H_N },
        >(
            simd,
            m,
            n,
            k,
            c,
            c_cs,
            c_rs,
            acc,
            lhs,
            l_cs,
            l_rs,
            rhs,
            r_cs,
            r_rs,
            alpha,
            1.0,
            false,
            false,
            false,
            |x, y, z| x * y + z,
            &ukr::UKR,
            &ukr::H_UKR,
            false,
            par,
        )
    }
}
