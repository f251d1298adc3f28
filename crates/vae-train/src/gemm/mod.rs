//! Single-precision GEMM on row-major slices, through OpenBLAS (with the `blas` feature), Intel MKL and BLIS (with
//! the `mkl` and `blis` features, where their libraries are found as the program runs) or the `gemm` crate (the
//! kernel Candle's CPU matmul uses), on its own choice of kernels and, on a CPU with AVX-512, on its AVX2 kernels too.
//!
//! None is always faster (which wins depends on the CPU, the shapes and the machine's load), so where there are
//! several a run measures: a training run times a few whole steps on each ([`calibrate`]), and its step uses the
//! fastest for all its products; any other product (the
//! estimator's thousands of rows) is timed alone the first time its shape is met ([`choose`]). Each choice takes
//! milliseconds, is logged, and is written to a cache file ([`cache_path`]) that later runs read, so the same run
//! gives the same numbers every time on that machine. `VAE_GEMM=openblas|mkl|blis|gemm|gemm-avx2` forces a backend;
//! `VAE_NO_AVX512` (as on a CPU without AVX-512) leaves out the backends that would run AVX-512 kernels: the `gemm`
//! crate's own choice, MKL, and BLIS where it chose its AVX-512 kernels.
//!
//! The pieces: `scope` (the backend a thread's products run on), `calibrate` (a training step's choice),
//! `choose` (a lone product's choice), `cache` (the choices on disk), [`timing`] (the products' times when
//! profiling), and one file per backend.

#[cfg(feature = "blis")]
mod blis;
mod cache;
mod calibrate;
#[cfg(any(feature = "blas", feature = "mkl", feature = "blis"))]
mod cblas;
mod choose;
#[cfg(any(feature = "mkl", feature = "blis"))]
mod dylib;
mod gemm_crate;
#[cfg(feature = "mkl")]
mod mkl;
#[cfg(feature = "blas")]
mod openblas;
mod pin;
mod rate;
mod scope;
#[cfg(test)]
mod tests;
pub mod timing;

pub use cache::cache_path;
pub use calibrate::{calibrate, StepBackend};
pub use choose::{backend_summary, choose};
use gemm_crate::Kernels;
pub use pin::{openblas_core, openblas_core_to_pin, pin_openblas_kernels};
pub use rate::rate;
pub use scope::{in_trial, side_by_side, with_backend};
pub use vae_model::{BadShape, GemmShape};

/// The sgemm implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// OpenBLAS's `cblas_sgemm` (the `blas` feature), on one thread, a large product split across ours. (Earlier
    /// versions cached `openblas+threads`, OpenBLAS threaded beside ours.)
    #[serde(alias = "openblas+threads")]
    OpenBlas,
    /// Intel MKL's `cblas_sgemm` (the `mkl` feature, where `libmkl_rt` loads), sequential, split as OpenBLAS's is.
    Mkl,
    /// BLIS's `bli_sgemm` (the `blis` feature, where `libblis` loads), on one thread, split as OpenBLAS's is.
    Blis,
    /// The `gemm` crate, on the kernels it picks for the CPU (AVX-512 where the CPU has it).
    Gemm,
    /// The `gemm` crate's AVX2 kernels, offered on a CPU with AVX-512, where they can win (a Zen 4 runs AVX-512 at
    /// half width).
    #[serde(rename = "gemm-avx2")]
    GemmAvx2,
}

impl Backend {
    /// Every backend, in the order a calibration tries those a run has.
    pub const ALL: [Backend; 5] = [
        Backend::OpenBlas,
        Backend::Mkl,
        Backend::Blis,
        Backend::GemmAvx2,
        Backend::Gemm,
    ];

    /// The backends this run has, in the order a calibration tries them: OpenBLAS with the `blas` feature, MKL and
    /// BLIS with their features where their libraries load, the `gemm` crate's AVX2 kernels on a CPU with AVX-512,
    /// and the `gemm` crate's own choice. `VAE_NO_AVX512` leaves out those that would run AVX-512 kernels.
    pub fn available() -> Vec<Backend> {
        let no_avx512 = std::env::var_os("VAE_NO_AVX512").is_some();
        Self::offered(gemm_crate::avx2_is_a_second_choice(), no_avx512)
    }

    /// [`Backend::available`] where the CPU has AVX-512 beside AVX2 (`avx2_second`) or not, and `VAE_NO_AVX512`
    /// is set or not.
    fn offered(avx2_second: bool, no_avx512: bool) -> Vec<Backend> {
        let mut v = Vec::new();
        if cfg!(feature = "blas") {
            v.push(Backend::OpenBlas);
        }
        #[cfg(feature = "mkl")]
        if !no_avx512 && mkl::available() {
            v.push(Backend::Mkl);
        }
        #[cfg(feature = "blis")]
        if blis::available() && !(no_avx512 && blis::runs_avx512()) {
            v.push(Backend::Blis);
        }
        if avx2_second {
            v.push(Backend::GemmAvx2);
        }
        if !(no_avx512 && avx2_second) {
            v.push(Backend::Gemm);
        }
        v
    }

    /// The name used in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::OpenBlas => "openblas",
            Backend::Mkl => "mkl",
            Backend::Blis => "blis",
            Backend::Gemm => "gemm",
            Backend::GemmAvx2 => "gemm-avx2",
        }
    }
}

/// MKL's version where it loaded, for logs and reports.
pub fn mkl_version() -> Option<&'static str> {
    #[cfg(feature = "mkl")]
    return mkl::version();
    #[cfg(not(feature = "mkl"))]
    None
}

/// BLIS's version and the kernels it chose for this CPU (`0.9.0 zen3`), where it loaded, for logs and reports.
pub fn blis_version() -> Option<&'static str> {
    #[cfg(feature = "blis")]
    return blis::version();
    #[cfg(not(feature = "blis"))]
    None
}

/// The multiply-adds from which a product is split across threads: below it, waking the threads costs more than
/// they save.
const SPLIT_MACS: usize = 1 << 23;

/// `c = op(a) · op(b)`, or `c += op(a) · op(b)` when `accumulate`, on the backend this thread's scope or the
/// product's measured choice names.
///
/// # Shapes
/// `op(a)` is `[m, k]`, `op(b)` is `[k, n]`, `c` is `[m, n]`, all row-major and contiguous; a transposed `a` is
/// stored as `[k, m]`, a transposed `b` as `[n, k]`.
pub fn sgemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
    let GemmShape { m, n, k, .. } = shape;
    // The FFI below trusts these lengths, so they are checked in release builds too.
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm: slices too short for {m}x{n}x{k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (backend, trial) = scope::scoped(shape).unwrap_or_else(|| (choose(shape), false));
    let start = (timing::enabled() && !trial).then(std::time::Instant::now);
    run(backend, shape, a, b, c, accumulate);
    if let Some(start) = start {
        let flop = 2.0 * shape.macs() as f64;
        timing::record(shape, backend.name(), start.elapsed(), flop);
    }
}

/// Runs `vae-model`'s f32 products on the CPU (the autograd engine's layers, the conv layers, the likelihood
/// estimate through Candle) on [`sgemm`], so on the backends a run measured, as the fused engine's products do.
/// [`crate::train()`] and the `vae-train` binary call it first; it sticks for the process.
pub fn run_model_products_here() {
    vae_model::set_cpu_sgemm(sgemm);
}

/// Runs one product on `backend` (the caller checked the slices).
fn run(backend: Backend, shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    match backend {
        #[cfg(feature = "blas")]
        Backend::OpenBlas => openblas::sgemm(shape, a, b, c, acc),
        #[cfg(feature = "mkl")]
        Backend::Mkl => mkl::sgemm(shape, a, b, c, acc),
        #[cfg(feature = "blis")]
        Backend::Blis => blis::sgemm(shape, a, b, c, acc),
        Backend::GemmAvx2 => gemm_crate::sgemm(Kernels::Avx2, shape, a, b, c, acc),
        _ => gemm_crate::sgemm(Kernels::Dispatched, shape, a, b, c, acc),
    }
}
