//! Single-precision GEMM on row-major slices, through OpenBLAS (with the `blas` feature), Intel MKL (with the `mkl`
//! feature, where `libmkl_rt` is found as the program runs) or the `gemm` crate (the kernel Candle's CPU matmul uses).
//!
//! None is always faster (which wins depends on the CPU, the shapes and the machine's load), so where there are
//! several a run measures: a training run times a few whole steps on each ([`calibrate`]), and its step uses the
//! fastest for all its products; any other product (the
//! estimator's thousands of rows) is timed alone the first time its shape is met ([`choose`]). Each choice takes
//! milliseconds, is logged, and is written to a cache file ([`cache_path`]) that later runs read, so the same run
//! gives the same numbers every time on that machine. `VAE_GEMM=openblas|mkl|gemm` forces a backend; `VAE_NO_AVX512` (as
//! on a CPU without AVX-512) forces OpenBLAS, whose kernels the library picks for the CPU, since the `gemm` crate
//! cannot be kept off its AVX-512 kernels.
//!
//! The pieces: `scope` (the backend a thread's products run on), `calibrate` (a training step's choice),
//! `choose` (a lone product's choice), `cache` (the choices on disk), [`timing`] (the products' times when
//! profiling), and one file per backend.

mod cache;
mod calibrate;
#[cfg(any(feature = "blas", feature = "mkl"))]
mod cblas;
mod choose;
mod gemm_crate;
#[cfg(feature = "mkl")]
mod mkl;
#[cfg(feature = "blas")]
mod openblas;
mod rate;
mod scope;
#[cfg(test)]
mod tests;
pub mod timing;

pub use cache::cache_path;
pub use calibrate::{calibrate, StepBackend};
pub use choose::{backend_summary, choose};
pub use rate::rate;
pub use scope::{in_trial, side_by_side, with_backend};

/// A product `c[m, n] = op(a)[m, k] · op(b)[k, n]`, all row-major: its sizes, and whether `a` is stored as `[k, m]`
/// and `b` as `[n, k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GemmShape {
    /// `a` is stored transposed, as `[k, m]`.
    pub a_transposed: bool,
    /// `b` is stored transposed, as `[n, k]`.
    pub b_transposed: bool,
    /// Rows of `c`.
    pub m: usize,
    /// Columns of `c`.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
}

impl GemmShape {
    /// Multiply-adds of the product: `m·n·k`.
    pub fn macs(&self) -> usize {
        self.m * self.n * self.k
    }
}

/// A shape that is not written as [`GemmShape`]'s `Display` writes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a product shape such as `NT 128x400x784` (transposes of a and b, then m, n, k)"
)]
pub struct BadShape(String);

impl std::str::FromStr for GemmShape {
    type Err = BadShape;

    /// `"NT 128x400x784"`, as [`GemmShape`]'s `Display` writes it.
    fn from_str(s: &str) -> Result<Self, BadShape> {
        let bad = || BadShape(s.to_string());
        let (t, dims) = s.trim().split_once(' ').ok_or_else(bad)?;
        let transposed = |c: Option<char>| match c {
            Some('N') => Ok(false),
            Some('T') => Ok(true),
            _ => Err(bad()),
        };
        let mut t = t.chars();
        let (a_transposed, b_transposed) = (transposed(t.next())?, transposed(t.next())?);
        let dims: Vec<usize> = dims
            .split('x')
            .map(|d| d.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match (t.next(), dims.as_slice()) {
            (None, &[m, n, k]) => Ok(Self {
                a_transposed,
                b_transposed,
                m,
                n,
                k,
            }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for GemmShape {
    /// `"NT 128x400x784"`: the transposes of a and b, then m, n, k.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |x: bool| if x { 'T' } else { 'N' };
        let (m, n, k) = (self.m, self.n, self.k);
        write!(
            f,
            "{}{} {m}x{n}x{k}",
            t(self.a_transposed),
            t(self.b_transposed)
        )
    }
}

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
    /// The `gemm` crate.
    Gemm,
}

impl Backend {
    /// The backends this run has, in the order a calibration tries them: OpenBLAS with the `blas` feature, MKL with
    /// the `mkl` feature where its library loads, and the `gemm` crate.
    pub fn available() -> Vec<Backend> {
        let mut v = Vec::new();
        if cfg!(feature = "blas") {
            v.push(Backend::OpenBlas);
        }
        #[cfg(feature = "mkl")]
        if mkl::available() {
            v.push(Backend::Mkl);
        }
        v.push(Backend::Gemm);
        v
    }

    /// The name used in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::OpenBlas => "openblas",
            Backend::Mkl => "mkl",
            Backend::Gemm => "gemm",
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

/// The kernels OpenBLAS runs (`None` without the `blas` feature).
pub fn openblas_core() -> Option<String> {
    #[cfg(feature = "blas")]
    return Some(openblas::corename());
    #[cfg(not(feature = "blas"))]
    None
}

/// OpenBLAS's kernels for this CPU where OpenBLAS did not know it and fell back to its generic SSE3 kernels
/// (`Prescott`, seven times slower; OpenBLAS 0.3.21 does so on Intel's family 6 model 207): `SkylakeX` with
/// AVX-512, `Haswell` with AVX2 and FMA. `None` where OpenBLAS knew the CPU or `OPENBLAS_CORETYPE` already names
/// the kernels.
pub fn openblas_core_to_pin() -> Option<&'static str> {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() || openblas_core()? != "Prescott" {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx512() {
            return Some("SkylakeX");
        }
        if crate::cpu::has_avx2() {
            return Some("Haswell");
        }
    }
    None
}

/// Runs one product on `backend` (the caller checked the slices).
fn run(backend: Backend, shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    match backend {
        #[cfg(feature = "blas")]
        Backend::OpenBlas => openblas::sgemm(shape, a, b, c, acc),
        #[cfg(feature = "mkl")]
        Backend::Mkl => mkl::sgemm(shape, a, b, c, acc),
        _ => gemm_crate::sgemm(shape, a, b, c, acc),
    }
}
