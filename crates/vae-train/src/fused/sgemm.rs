//! Single-precision GEMM on row-major slices: OpenBLAS with the `blas` feature, else the `gemm` crate (the kernel
//! Candle's CPU matmul uses).
//!
//! Even with OpenBLAS, products with a dimension of [`TALL`] rows or more (the importance-weighted estimate's
//! thousands of z rows, IWAE training's k·B rows) go to the `gemm` crate: measured on an AVX-512 CPU (AMD EPYC
//! Zen 4), its AVX-512 kernels took about 25% less time there than Debian's OpenBLAS 0.3.21, which has none for that
//! CPU, while on training batches of 100-128 rows OpenBLAS was as fast or faster. The choice depends on the shape
//! only, so the same run gives the same numbers.

/// Rows (m or k) from which a product goes to the `gemm` crate in an OpenBLAS build.
#[cfg(any(feature = "blas", test))]
const TALL: usize = 1024;

/// `c = op(a) · op(b)`, or `c += op(a) · op(b)` when `accumulate`; `op(a)` is `[m, k]`, `op(b)` is `[k, n]`, `c` is
/// `[m, n]`, all row-major and contiguous. With `ta`, `a` is stored as `[k, m]`; with `tb`, `b` as `[n, k]`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    // The FFI below trusts these lengths, so they are checked in release builds too.
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm: slices too short for {m}x{n}x{k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(feature = "blas")]
    if m.max(k) < TALL {
        return openblas::sgemm(ta, tb, m, n, k, a, b, c, accumulate);
    }
    gemm_crate::sgemm(ta, tb, m, n, k, a, b, c, accumulate)
}

/// Which kernels [`sgemm`] runs.
pub fn backend() -> &'static str {
    if cfg!(feature = "blas") {
        "OpenBLAS (gemm crate for products of 1024+ rows)"
    } else {
        "gemm crate"
    }
}

#[cfg(feature = "blas")]
mod openblas {
    // Linked for its libopenblas; the symbols come through cblas-sys.
    extern crate openblas_src as _;
    use cblas_sys::{cblas_sgemm, CBLAS_LAYOUT::CblasRowMajor, CBLAS_TRANSPOSE};

    #[allow(clippy::too_many_arguments)]
    pub fn sgemm(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        acc: bool,
    ) {
        let t = |x: bool| {
            if x {
                CBLAS_TRANSPOSE::CblasTrans
            } else {
                CBLAS_TRANSPOSE::CblasNoTrans
            }
        };
        let lda = if ta { m } else { k };
        let ldb = if tb { k } else { n };
        // SAFETY: the caller checked every slice holds its matrix; leading dimensions match those shapes.
        unsafe {
            cblas_sgemm(
                CblasRowMajor,
                t(ta),
                t(tb),
                m as i32,
                n as i32,
                k as i32,
                1.0,
                a.as_ptr(),
                lda as i32,
                b.as_ptr(),
                ldb as i32,
                if acc { 1.0 } else { 0.0 },
                c.as_mut_ptr(),
                n as i32,
            )
        }
    }
}

mod gemm_crate {
    use gemm::Parallelism;

    #[allow(clippy::too_many_arguments)]
    pub fn sgemm(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        acc: bool,
    ) {
        let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
        let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
        let threads = rayon::current_num_threads();
        let par = if threads > 1 && m * n * k > 1 << 18 {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let x = if ta { a[p * m + i] } else { a[i * k + p] };
                    let y = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += x as f64 * y as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn every_transpose_combination_matches_the_naive_product() {
        let (m, n, k) = (37, 23, 71); // odd sizes exercise the kernels' edges
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 113) as f32 / 57.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 97) as f32 / 49.0 - 1.0)
            .collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let expect = naive(ta, tb, m, n, k, &a, &b);
            let mut c = vec![1f32; m * n];
            sgemm(ta, tb, m, n, k, &a, &b, &mut c, false);
            for (x, y) in c.iter().zip(&expect) {
                assert!((x - y).abs() < 1e-4, "{ta} {tb}: {x} vs {y}");
            }
            sgemm(ta, tb, m, n, k, &a, &b, &mut c, true);
            for (x, y) in c.iter().zip(&expect) {
                assert!((x - 2.0 * y).abs() < 2e-4, "accumulate {ta} {tb}");
            }
        }
    }

    #[test]
    fn tall_products_match_the_naive_product_too() {
        // Past TALL rows in m, then in k: the other kernel in an OpenBLAS build.
        for (m, n, k) in [(TALL + 3, 5, 7), (6, 5, TALL + 9)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 13) % 11) as f32 / 5.0 - 1.0)
                .collect();
            for (ta, tb) in [(false, true), (true, false)] {
                let expect = naive(ta, tb, m, n, k, &a, &b);
                let mut c = vec![0f32; m * n];
                sgemm(ta, tb, m, n, k, &a, &b, &mut c, false);
                for (x, y) in c.iter().zip(&expect) {
                    assert!(
                        (x - y).abs() < 1e-3 * (1.0 + y.abs()),
                        "{m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
