//! 2-D convolutions on the CPU as im2col/col2im and matrix products.
//!
//! Candle's CPU `conv_transpose2d` is a direct loop, and `conv2d`'s backward pass calls it for the input's gradient;
//! that backward pass also takes one `output_padding` from the height for both axes, so it fails on inputs where
//! height and width need different ones (9×13 with kernel 5, stride 3). Here both convolutions are built from two
//! custom ops that are each other's adjoint, [`Im2Col`] (unfold an image into the columns a kernel sees) and
//! [`Col2Im`] (scatter-add columns back into an image), and one matrix product with the weight for the whole batch
//! ([`linear_product`], whose backward pass skips the gradient of data). Gradients follow from autograd through the
//! product and the adjoint pair, so `output_padding` needs no special case: it only sets the size of the image
//! `col2im` writes. On other devices the two functions call Candle's own convolutions.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::cpu_kernels::contiguous;
use crate::linear_product;

mod fused;
mod gather;
pub use fused::{conv_layer, ConvLayer};

/// A 2-D convolution, no bias, with PyTorch's `nn.Conv2d` weight layout.
///
/// # Shapes
/// `x [N, C_in, H, W]` and `w [C_out, C_in, k, k]` to `[N, C_out, (H + 2p − k)/s + 1, (W + 2p − k)/s + 1]`, for
/// stride `s` and zero padding `p` on every side.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// // A 2×2 kernel of ones sums each 2×2 block of a 3×3 image.
/// let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
/// let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let y = vae_model::conv2d(&x, &w, 1, 0)?;
/// assert_eq!(y.dims(), &[1, 1, 2, 2]);
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![8., 12., 20., 24.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let g = conv_geometry(x, w, stride, padding)?;
    if !x.device().is_cpu() {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let (n, c_out) = (x.dim(0)?, w.dim(0)?);
    // One product for the whole batch, [N Ho Wo, C_in k k] times Wᵀ, whose backward pass is one product for W's
    // gradient and none for the columns when x is data.
    let cols = x.contiguous()?.apply_op1(Im2Col(g))?; // [N, Ho Wo, C_in k k]
    let cols = cols.reshape((n * g.positions(), g.rows()))?;
    let y = linear_product(&cols, &w.reshape((c_out, g.rows()))?)?; // [N Ho Wo, C_out]
                                                                    // The output-sized copy to NCHW costs less than the columns it was computed from.
    let y = y
        .reshape((n, g.positions(), c_out))?
        .transpose(1, 2)?
        .contiguous()?;
    y.reshape((n, c_out, g.ho, g.wo))
}

/// A 2-D transposed convolution, no bias, with PyTorch's `nn.ConvTranspose2d` weight layout: the adjoint of
/// [`conv2d`] in `x`, with `output_padding` extra rows and columns at the bottom and right of the output.
///
/// # Shapes
/// `x [N, C_in, H, W]` and `w [C_in, C_out, k, k]` to `[N, C_out, (H − 1)s − 2p + k + op, (W − 1)s − 2p + k + op]`,
/// for stride `s`, padding `p` and output padding `op < s`.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// // Stride 2, kernel 2: each pixel becomes a 2×2 block; output padding 1 adds a zero row and column.
/// let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu)?;
/// let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let y = vae_model::conv_transpose2d(&x, &w, 2, 0, 1)?;
/// assert_eq!(y.dims(), &[1, 1, 5, 5]);
/// assert_eq!(y.sum_all()?.to_scalar::<f32>()?, 40.);
/// assert_eq!(y.get(0)?.get(0)?.get(4)?.sum_all()?.to_scalar::<f32>()?, 0.);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Result<Tensor> {
    let g = transposed_geometry(x, w, stride, padding, output_padding)?;
    if !x.device().is_cpu() {
        return x.conv_transpose2d(w, padding, output_padding, stride, 1);
    }
    let (n, c_in, h, wd) = x.dims4()?;
    // x as rows of channels [N H W, C_in] (an input-sized copy), times W [C_in, C_out k k] in one product: the
    // columns [N, H W, C_out k k] that col2im sums into the output.
    let rows = x.permute((0, 2, 3, 1))?.reshape((n * h * wd, c_in))?;
    let cols = linear_product(&rows, &w.reshape((c_in, g.rows()))?.t()?)?;
    cols.reshape((n, h * wd, g.rows()))?.apply_op1(Col2Im(g))
}

/// Checks a convolution's shapes; the geometry of its input `x`, the image its kernel slides over.
fn conv_geometry(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Geometry> {
    let (_, c_in, h, wd) = x.dims4()?;
    let (_, w_c_in, k, k_w) = w.dims4()?;
    check("conv2d", (c_in, w_c_in), (h, wd), (k, k_w), stride)?;
    if h + 2 * padding < k || wd + 2 * padding < k {
        let (ph, pw) = (h + 2 * padding, wd + 2 * padding);
        bail!("conv2d: kernel {k}x{k} is larger than the padded input {ph}x{pw}");
    }
    Ok(Geometry::new(c_in, h, wd, k, stride, padding))
}

/// Checks a transposed convolution's shapes; the geometry of its output, the image whose kernel positions form
/// the grid of `x`.
fn transposed_geometry(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Result<Geometry> {
    let (_, c_in, h, wd) = x.dims4()?;
    let (w_c_in, c_out, k, k_w) = w.dims4()?;
    check(
        "conv_transpose2d",
        (c_in, w_c_in),
        (h, wd),
        (k, k_w),
        stride,
    )?;
    if output_padding >= stride {
        bail!("conv_transpose2d: output_padding {output_padding} must be smaller than stride {stride}");
    }
    let size = |i: usize| ((i - 1) * stride + k + output_padding).checked_sub(2 * padding);
    let (ho, wo) = match (size(h), size(wd)) {
        (Some(ho), Some(wo)) if ho > 0 && wo > 0 => (ho, wo),
        _ => bail!("conv_transpose2d: padding {padding} leaves no output for a {h}x{wd} input"),
    };
    let g = Geometry::new(c_out, ho, wo, k, stride, padding);
    if (g.ho, g.wo) != (h, wd) {
        bail!(
            "conv_transpose2d: internal error, a {ho}x{wo} output maps to {}x{}",
            g.ho,
            g.wo
        );
    }
    Ok(g)
}

/// The checks both convolutions share, each failure one line that names the problem.
fn check(
    op: &str,
    (x_c, w_c): (usize, usize),
    (h, w): (usize, usize),
    (k, k_w): (usize, usize),
    stride: usize,
) -> Result<()> {
    if k == 0 || k_w == 0 {
        bail!("{op}: the kernel is empty ({k}x{k_w})");
    }
    if k != k_w {
        bail!("{op}: the kernel must be square, not {k}x{k_w}");
    }
    if stride == 0 {
        bail!("{op}: stride must be at least 1");
    }
    if x_c != w_c {
        bail!("{op}: x has {x_c} channels but the kernel expects {w_c}");
    }
    if h == 0 || w == 0 {
        bail!("{op}: x has an empty {h}x{w} image");
    }
    Ok(())
}

/// An image of `c` channels of `h × w` pixels seen through a `k × k` kernel with stride `s` and zero padding `p`:
/// `ho × wo` kernel positions.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// Callers have checked `k ≤ h + 2p`, `k ≤ w + 2p` and `s ≥ 1`.
    fn new(c: usize, h: usize, w: usize, k: usize, s: usize, p: usize) -> Self {
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        Self {
            c,
            h,
            w,
            k,
            s,
            p,
            ho,
            wo,
        }
    }

    /// The length of one column: one entry per (channel, kernel row, kernel column).
    fn rows(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Kernel positions per image.
    fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// The kernel offsets `[lo, hi)` (of `k`) whose input index `o s + kk − p` lies in `[0, n_in)`.
    fn taps(&self, o: usize, n_in: usize) -> (usize, usize) {
        let start = o * self.s;
        let hi = (n_in + self.p).saturating_sub(start).min(self.k);
        (self.p.saturating_sub(start).min(hi), hi)
    }

    /// Calls `f(column, pixel, len)` for each run of one image's columns `[ho wo, c k k]` that reads `len`
    /// consecutive pixels of its `[c, h, w]` planes (a kernel row's overlap with an image row); the rest is padding.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (k, rows) = (self.k, self.rows());
        for oy in 0..self.ho {
            let (ky_lo, ky_hi) = self.taps(oy, self.h);
            for ox in 0..self.wo {
                let (kx_lo, kx_hi) = self.taps(ox, self.w);
                let column = (oy * self.wo + ox) * rows;
                for c in 0..self.c {
                    for ky in ky_lo..ky_hi {
                        let row = ((c * self.h + oy * self.s + ky - self.p) * self.w) + ox * self.s;
                        f(
                            column + (c * k + ky) * k + kx_lo,
                            row + kx_lo - self.p,
                            kx_hi - kx_lo,
                        );
                    }
                }
            }
        }
    }

    /// One image `[c, h, w]` to its columns `[ho wo, c k k]` (zeroed by the caller, for the padding).
    fn im2col_image<T: WithDType>(&self, image: &[T], cols: &mut [T]) {
        self.for_each_run(|col, pixel, len| {
            cols[col..col + len].copy_from_slice(&image[pixel..pixel + len]);
        });
    }

    /// The adjoint of [`Geometry::im2col_image`]: adds each column entry into the pixel it was read from.
    fn col2im_image<T: WithDType>(&self, cols: &[T], image: &mut [T]) {
        self.for_each_run(|col, pixel, len| {
            let dst = &mut image[pixel..pixel + len];
            dst.iter_mut()
                .zip(&cols[col..col + len])
                .for_each(|(d, c)| *d += *c);
        });
    }
}

/// `x [N, C, H, W]` to its columns `[N, Ho Wo, C k k]`, for a contiguous `x`.
struct Im2Col(Geometry);

/// Columns `[N, Ho Wo, C k k]` to the images `[N, C, H, W]` they sum into, for contiguous columns.
struct Col2Im(Geometry);

/// Maps each of `n` contiguous source images of `src_len` elements to a zeroed destination image of `dst_len`, in
/// parallel on the calling rayon pool.
fn per_image<T: WithDType>(
    src: &[T],
    (n, src_len, dst_len): (usize, usize, usize),
    f: impl Fn(&[T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut dst = vec![T::zero(); n * dst_len];
    if src_len > 0 && dst_len > 0 {
        dst.par_chunks_mut(dst_len)
            .zip(src.par_chunks(src_len))
            .for_each(|(d, s)| f(s, d));
    }
    dst
}

/// Runs `per_image` with im2col (`forward`) or col2im on f32 or f64 storage; other dtypes are an error.
fn map_storage(
    op: &str,
    storage: &CpuStorage,
    layout: &Layout,
    sizes: (usize, usize, usize),
    (g, forward): (Geometry, bool),
) -> Result<CpuStorage> {
    fn run<T: WithDType>(x: &[T], sizes: (usize, usize, usize), g: Geometry, fwd: bool) -> Vec<T> {
        match fwd {
            true => per_image(x, sizes, |s, d| g.im2col_image(s, d)),
            false => per_image(x, sizes, |s, d| g.col2im_image(s, d)),
        }
    }
    let len = sizes.0 * sizes.1;
    Ok(match storage {
        CpuStorage::F32(x) => {
            CpuStorage::F32(run(contiguous(op, x, layout, len)?, sizes, g, forward))
        }
        CpuStorage::F64(x) => {
            CpuStorage::F64(run(contiguous(op, x, layout, len)?, sizes, g, forward))
        }
        other => bail!(
            "{op}: {:?} is not supported on the CPU (f32 and f64 only)",
            other.dtype()
        ),
    })
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (n, c, h, w) = layout.shape().dims4()?;
        if (c, h, w) != (g.c, g.h, g.w) {
            bail!(
                "im2col: input [{n}, {c}, {h}, {w}] is not [N, {}, {}, {}]",
                g.c,
                g.h,
                g.w
            );
        }
        let sizes = (n, c * h * w, g.positions() * g.rows());
        let out = map_storage(self.name(), storage, layout, sizes, (g, true))?;
        Ok((out, Shape::from((n, g.positions(), g.rows()))))
    }

    fn bwd(&self, _x: &Tensor, _cols: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (n, positions, rows) = layout.shape().dims3()?;
        if (positions, rows) != (g.positions(), g.rows()) {
            let (gp, gr) = (g.positions(), g.rows());
            bail!("col2im: input [{n}, {positions}, {rows}] is not [N, {gp}, {gr}]");
        }
        let sizes = (n, positions * rows, g.c * g.h * g.w);
        let out = map_storage(self.name(), storage, layout, sizes, (g, false))?;
        Ok((out, Shape::from((n, g.c, g.h, g.w))))
    }

    fn bwd(&self, _cols: &Tensor, _x: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}
