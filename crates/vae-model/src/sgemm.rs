//! The CPU's f32 matrix products: their shapes, and the product they run on. By default the `gemm` crate; a
//! program can install its own with [`set_cpu_sgemm`] (`vae-train` installs its measured choice of sgemm backends),
//! which then runs every f32 product of [`crate::linear_product`], [`crate::dense_layer`] and
//! [`crate::conv_layer`] on the CPU whose operands are row-major or transposed.

use std::sync::OnceLock;

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

/// A CPU product: `c = op(a) · op(b)`, or `c += op(a) · op(b)` when the flag is set, on row-major contiguous
/// slices laid out as the [`GemmShape`] says.
pub type CpuSgemm = fn(GemmShape, &[f32], &[f32], &mut [f32], bool);

static CPU_SGEMM: OnceLock<CpuSgemm> = OnceLock::new();

/// Runs this library's f32 products on the CPU through `sgemm` instead of the `gemm` crate, from now on in this
/// process. The first call wins; returns whether this one did.
///
/// ```
/// use vae_model::{set_cpu_sgemm, GemmShape};
///
/// fn naive(s: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
///     for i in 0..s.m {
///         for j in 0..s.n {
///             let at = |p: usize| if s.a_transposed { a[p * s.m + i] } else { a[i * s.k + p] };
///             let bt = |p: usize| if s.b_transposed { b[j * s.k + p] } else { b[p * s.n + j] };
///             let sum: f32 = (0..s.k).map(|p| at(p) * bt(p)).sum();
///             c[i * s.n + j] = sum + if acc { c[i * s.n + j] } else { 0.0 };
///         }
///     }
/// }
/// assert!(set_cpu_sgemm(naive));
/// assert!(!set_cpu_sgemm(naive), "the first call wins");
/// ```
pub fn set_cpu_sgemm(sgemm: CpuSgemm) -> bool {
    CPU_SGEMM.set(sgemm).is_ok()
}

/// The product [`set_cpu_sgemm`] installed, if any.
pub(crate) fn cpu_sgemm() -> Option<CpuSgemm> {
    CPU_SGEMM.get().copied()
}
