//! A whole convolution layer, `act(conv(x, W) + b)`, as one graph node with one backward node.
//!
//! Both convolutions are built from three kernels on one [`Geometry`], the image side of the convolution (x for
//! [`conv2d`](crate::conv2d), the output for the transposed one), and a map of `ca` channels on its grid of kernel
//! positions (the output, or x). With `Wm` the weight as a `[ca, k k C]` matrix (either PyTorch layout, its
//! channels moved last) and the channel-last columns of [`super::gather`]:
//! - `img_to_map`: `A_n = Wm im2col(I_n)ᵀ`, the convolution's forward pass and the transposed one's input gradient;
//! - `map_to_img`: `I_n = col2im(A_nᵀ Wm)`, the transposed convolution's forward pass and the convolution's input
//!   gradient;
//! - `weight_grad`: `dWm = Σ_n A_n im2col(I_n)`, both weight gradients.
//!
//! Each thread takes a contiguous share of the images and runs it in chunks of [`CHUNK`] images, one product per
//! chunk: the columns of a chunk side by side, so the weight is packed once per chunk rather than once per image.
//! The bias and the activation run in the same pass over each output image, and the backward pass takes the
//! activation's slope from the output.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gather::{permute_weight, transpose, transpose_with};
use super::{conv_geometry, transposed_geometry, Geometry};
use crate::cpu_kernels::{
    bias_and_activation, contiguous, fused_bwd, gemm_into, through_activation, FusedLayer, Grads,
    Mat, Real,
};
use crate::Activation;

/// One convolution layer's hyper-parameters, for [`conv_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLayer {
    /// A transposed convolution (`nn.ConvTranspose2d`'s weight layout) rather than a convolution.
    pub transposed: bool,
    /// The stride, on both axes.
    pub stride: usize,
    /// The zero padding, on every side.
    pub padding: usize,
    /// Extra output rows and columns of a transposed convolution (ignored for a convolution).
    pub output_padding: usize,
    /// The activation after the bias, if any.
    pub activation: Option<Activation>,
}

/// `act(conv(x, w) + b)` (or with [`conv_transpose2d`](crate::conv_transpose2d)) as one graph node on the CPU for
/// f32 and f64, whose backward pass is one node too; on other devices, Candle's own ops one after the other. SiLU,
/// whose slope does not follow from its output, is applied after the fused node.
///
/// # Shapes
/// `x [N, C_in, H, W]`, `w` as for [`conv2d`](crate::conv2d) or [`conv_transpose2d`](crate::conv_transpose2d) and
/// `b [C_out]` to their `[N, C_out, H', W']`, contiguous.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vae_model::{conv_layer, Activation, ConvLayer};
///
/// let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
/// let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let b = Tensor::new(&[-10f32], &Device::Cpu)?;
/// let layer = ConvLayer {
///     transposed: false,
///     stride: 1,
///     padding: 0,
///     output_padding: 0,
///     activation: Some(Activation::Relu),
/// };
/// let y = conv_layer(&x, &w, &b, &layer)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0., 2., 10., 14.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv_layer(x: &Tensor, w: &Tensor, b: &Tensor, layer: &ConvLayer) -> Result<Tensor> {
    let (s, p, op) = (layer.stride, layer.padding, layer.output_padding);
    let g = match layer.transposed {
        true => transposed_geometry(x, w, s, p, op)?,
        false => conv_geometry(x, w, s, p)?,
    };
    let (ca, c_out) = match layer.transposed {
        true => (w.dim(0)?, w.dim(1)?),
        false => (w.dim(0)?, w.dim(0)?),
    };
    if b.dims() != [c_out] {
        bail!("conv_layer: the bias is {:?}, not [{c_out}]", b.dims());
    }
    let fused = matches!(x.dtype(), DType::F32 | DType::F64) && x.device().is_cpu();
    let (act, after) = match layer.activation {
        Some(Activation::Silu) => (None, Some(Activation::Silu)),
        act if fused => (act, None),
        act => (None, act),
    };
    let y = match fused {
        true => {
            let op = FusedConv {
                g,
                ca,
                transposed: layer.transposed,
                act,
            };
            x.contiguous()?
                .apply_op3(&w.contiguous()?, &b.contiguous()?, op)?
        }
        false => {
            let y = match layer.transposed {
                true => super::conv_transpose2d(x, w, s, p, op)?,
                false => super::conv2d(x, w, s, p)?,
            };
            y.broadcast_add(&b.reshape((1, c_out, 1, 1))?)?
        }
    };
    crate::activation::apply(y, after)
}

/// The fused layer: `g` the image side, `ca` the channels of the map on its kernel positions.
#[derive(Debug, Clone, Copy)]
struct FusedConv {
    g: Geometry,
    ca: usize,
    transposed: bool,
    act: Option<Activation>,
}

/// Images per product: the columns of 16 `mnist-conv` images (1.6 MB) stay in a core's cache, and the weight is
/// packed once for all of them rather than once per image.
const CHUNK: usize = 16;

/// One thread's buffers for a chunk of `m ≤ CHUNK` images: an image channel-last, the chunk's columns
/// `[m ho wo, k k c]` (whose padding entries stay zero as long as only [`Scratch::columns`] writes them), and the
/// chunk's map, `[ca, m ho wo]` or channel-last `[m ho wo, ca]`.
struct Scratch<T> {
    hwc: Vec<T>,
    cols: Vec<T>,
    map: Vec<T>,
}

impl<T: Real> Scratch<T> {
    /// Buffers for chunks of at most `m` images.
    fn new((g, ca): (Geometry, usize), m: usize) -> Self {
        let hwc = if g.c > 1 { g.c * g.h * g.w } else { 0 };
        let m = m.min(CHUNK);
        Self {
            hwc: vec![T::zero(); hwc],
            cols: vec![T::zero(); m * g.positions() * g.rows()],
            map: vec![T::zero(); m * ca * g.positions()],
        }
    }

    /// Fills the columns of the images `[m, c, h, w]`.
    fn columns(&mut self, g: &Geometry, images: &[T]) {
        let (img_len, cols_len) = (g.c * g.h * g.w, g.positions() * g.rows());
        for (image, cols) in images.chunks(img_len).zip(self.cols.chunks_mut(cols_len)) {
            let hwc = match g.c {
                1 => image,
                c => {
                    transpose(image, (c, g.h * g.w), &mut self.hwc);
                    &self.hwc
                }
            };
            g.im2col_hwc(hwc, cols);
        }
    }

    /// Adds what the columns sum into to the images `[m, c, h, w]`.
    fn add_images(&mut self, g: &Geometry, images: &mut [T]) {
        let (plane, cols_len) = (g.h * g.w, g.positions() * g.rows());
        for (image, cols) in images
            .chunks_mut(g.c * plane)
            .zip(self.cols.chunks(cols_len))
        {
            if g.c == 1 {
                g.col2im_hwc(cols, image);
                continue;
            }
            self.hwc.fill(T::zero());
            g.col2im_hwc(cols, &mut self.hwc);
            transpose_with(&self.hwc, (plane, g.c), image, |d, v| *d += v);
        }
    }

    /// The maps `[m, ca, P]` gathered as `[ca, m P]`.
    fn gather_map(&mut self, maps: &[T], (ca, p): (usize, usize)) {
        let m = maps.len() / (ca * p);
        for (n, map) in maps.chunks(ca * p).enumerate() {
            for (c, row) in map.chunks(p).enumerate() {
                self.map[(c * m + n) * p..][..p].copy_from_slice(row);
            }
        }
    }

    /// `A_n = Wm im2col(I_n)ᵀ` into `maps [m, ca, P]` from the columns of the chunk's `m` images, computed
    /// channel-last as `im2col(I_n) Wmᵀ` (the orientation the gemm crate runs 2-3 times faster), then turned.
    fn maps_from_columns(
        &mut self,
        (g, ca): (&Geometry, usize),
        wm: &[T],
        maps: &mut [T],
        par: gemm::Parallelism,
    ) -> Result<()> {
        let (p, r) = (g.positions(), g.rows());
        let mp = maps.len() / ca;
        let cols = Mat::row_major(&self.cols[..mp * r], mp, r);
        let wm = Mat::row_major(wm, ca, r).t();
        gemm_into(&mut self.map[..ca * mp], cols, wm, false, par)?;
        for (map, hwc) in maps.chunks_mut(ca * p).zip(self.map.chunks(ca * p)) {
            transpose(hwc, (p, ca), map);
        }
        Ok(())
    }
}

/// Images per thread for `n` images (each thread's run of chunks shares one [`Scratch`]), and how each product
/// runs: on one thread when there are images enough for every thread of the pool, else on all of them.
fn split(n: usize) -> (usize, gemm::Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    let per_thread = n.div_ceil(threads.min(n).max(1)).max(1);
    let par = match threads {
        t if t > 1 && n < t => gemm::Parallelism::Rayon(t),
        _ => gemm::Parallelism::None,
    };
    (per_thread, par)
}

/// `A_n [ca, P] = Wm [ca, R] im2col(I_n)ᵀ` for each image, a chunk of images per product, then `finish(A_n)`;
/// `Wm` channel-last.
fn img_to_map<T: Real>(
    (g, ca): (Geometry, usize),
    img: &[T],
    wm: &[T],
    out: &mut [T],
    finish: impl Fn(&mut [T]) + Sync,
) -> Result<()> {
    let (p, img_len) = (g.positions(), g.c * g.h * g.w);
    if img_len == 0 || ca * p == 0 {
        return Ok(());
    }
    let (per_thread, par) = split(img.len() / img_len);
    out.par_chunks_mut(per_thread * ca * p)
        .zip(img.par_chunks(per_thread * img_len))
        .try_for_each(|(maps, images)| {
            let mut scratch = Scratch::new((g, ca), per_thread);
            let chunks = maps
                .chunks_mut(CHUNK * ca * p)
                .zip(images.chunks(CHUNK * img_len));
            for (maps, images) in chunks {
                scratch.columns(&g, images);
                scratch.maps_from_columns((&g, ca), wm, maps, par)?;
                maps.chunks_mut(ca * p).for_each(&finish);
            }
            Ok(())
        })
}

/// `I_n = col2im(A_nᵀ [P, ca] Wm [ca, R])` into zeroed images, a chunk of images per product, then `finish(I_n)`;
/// `Wm` channel-last.
fn map_to_img<T: Real>(
    (g, ca): (Geometry, usize),
    map: &[T],
    wm: &[T],
    out: &mut [T],
    finish: impl Fn(&mut [T]) + Sync,
) -> Result<()> {
    let (p, r, img_len) = (g.positions(), g.rows(), g.c * g.h * g.w);
    if img_len == 0 || ca * p == 0 {
        return Ok(());
    }
    let (per_thread, par) = split(out.len() / img_len);
    out.par_chunks_mut(per_thread * img_len)
        .zip(map.par_chunks(per_thread * ca * p))
        .try_for_each(|(images, maps)| {
            let mut scratch = Scratch::new((g, ca), per_thread);
            let chunks = images
                .chunks_mut(CHUNK * img_len)
                .zip(maps.chunks(CHUNK * ca * p));
            for (images, maps) in chunks {
                let mp = maps.len() / ca;
                scratch.gather_map(maps, (ca, p));
                let a = Mat::row_major(&scratch.map[..ca * mp], ca, mp).t();
                let cols = &mut scratch.cols[..mp * r];
                gemm_into(cols, a, Mat::row_major(wm, ca, r), false, par)?;
                scratch.add_images(&g, images);
                images.chunks_mut(img_len).for_each(&finish);
            }
            Ok(())
        })
}

/// The input gradient of a transposed convolution, `A'_n = Wm im2col(I_n)ᵀ`, computed by [`weight_grad`] from
/// the columns it makes anyway: `Wm` channel-last and the maps `[N, ca, P]` to write.
type AlsoMap<'a, T> = Option<(&'a [T], &'a mut [T])>;

/// `dWm [ca, R] = Σ_n A_n [ca, P] im2col(I_n) [P, R]`, channel-last, a chunk of images per product and one
/// partial sum per thread, added in a fixed order; and `also` from the same columns.
fn weight_grad<T: Real>(
    (g, ca): (Geometry, usize),
    map: &[T],
    img: &[T],
    also: AlsoMap<T>,
) -> Result<Vec<T>> {
    let (p, r, img_len) = (g.positions(), g.rows(), g.c * g.h * g.w);
    let n = match img_len {
        0 => 0,
        len => img.len() / len,
    };
    let mut dw = vec![T::zero(); ca * r];
    if n == 0 || ca * p * r == 0 {
        return Ok(dw);
    }
    let (per_thread, par) = split(n);
    let (wm, outs): (_, Vec<Option<&mut [T]>>) = match also {
        Some((wm, out)) => (
            Some(wm),
            out.chunks_mut(per_thread * ca * p).map(Some).collect(),
        ),
        None => (None, (0..n.div_ceil(per_thread)).map(|_| None).collect()),
    };
    let partials = map
        .par_chunks(per_thread * ca * p)
        .zip(img.par_chunks(per_thread * img_len))
        .zip(outs)
        .map(|((maps, images), mut out)| {
            let (mut part, mut scratch) =
                (vec![T::zero(); ca * r], Scratch::new((g, ca), per_thread));
            for (i, (maps, images)) in maps
                .chunks(CHUNK * ca * p)
                .zip(images.chunks(CHUNK * img_len))
                .enumerate()
            {
                let mp = maps.len() / ca;
                scratch.columns(&g, images);
                scratch.gather_map(maps, (ca, p));
                let a = Mat::row_major(&scratch.map[..ca * mp], ca, mp);
                let cols = Mat::row_major(&scratch.cols[..mp * r], mp, r);
                gemm_into(&mut part, a, cols, true, par)?;
                if let (Some(wm), Some(out)) = (wm, out.as_deref_mut()) {
                    let out = &mut out[i * CHUNK * ca * p..][..ca * mp];
                    scratch.maps_from_columns((&g, ca), wm, out, par)?;
                }
            }
            Ok(part)
        })
        .collect::<Result<Vec<_>>>()?;
    for part in partials {
        dw.iter_mut().zip(part).for_each(|(d, p)| *d += p);
    }
    Ok(dw)
}

impl FusedConv {
    /// Elements per image of the input and of the output.
    fn lens(&self) -> (usize, usize) {
        let (img, map) = (self.g.c * self.g.h * self.g.w, self.ca * self.g.positions());
        match self.transposed {
            true => (map, img),
            false => (img, map),
        }
    }

    /// The weight `[ca, c k k]` as `[ca, k k c]`, the order of the channel-last columns.
    fn channel_last<T: Real>(&self, w: &[T]) -> Vec<T> {
        permute_weight(w, (self.g.c, self.g.k * self.g.k), true)
    }

    /// The output's shape for `n` images.
    fn out_shape(&self, n: usize) -> Shape {
        let g = &self.g;
        match self.transposed {
            true => Shape::from((n, g.c, g.h, g.w)),
            false => Shape::from((n, self.ca, g.ho, g.wo)),
        }
    }

    fn forward<T: Real>(&self, x: &[T], w: &[T], b: &[T], n: usize) -> Result<Vec<T>> {
        let mut out = vec![T::zero(); n * self.lens().1];
        let finish = |image: &mut [T]| bias_and_activation(image, b, self.act);
        let w = &self.channel_last(w);
        match self.transposed {
            true => map_to_img((self.g, self.ca), x, w, &mut out, finish)?,
            false => img_to_map((self.g, self.ca), x, w, &mut out, finish)?,
        }
        Ok(out)
    }
}

/// The elements of f32 or f64 storage as `T`, checked against `layout`.
fn cpu_slices<'a, T: Real>(
    op: &FusedConv,
    [(s1, l1), (s2, l2), (s3, l3)]: [(&'a CpuStorage, &Layout); 3],
    n: usize,
) -> Result<[&'a [T]; 3]> {
    let (in_len, _) = op.lens();
    let wm_len = op.ca * op.g.rows();
    let b_len = op.out_shape(1).dims()[1];
    Ok([
        contiguous(op.name(), s1.as_slice::<T>()?, l1, n * in_len)?,
        contiguous(op.name(), s2.as_slice::<T>()?, l2, wm_len)?,
        contiguous(op.name(), s3.as_slice::<T>()?, l3, b_len)?,
    ])
}

impl CustomOp3 for FusedConv {
    fn name(&self) -> &'static str {
        match self.transposed {
            true => "conv-transpose2d-layer",
            false => "conv2d-layer",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = l1.shape().dims4()?.0;
        let want = self.out_shape(n);
        let input = [(s1, l1), (s2, l2), (s3, l3)];
        let out = match s1 {
            CpuStorage::F32(_) => {
                let [x, w, b] = cpu_slices::<f32>(self, input, n)?;
                CpuStorage::F32(self.forward(x, w, b, n)?)
            }
            CpuStorage::F64(_) => {
                let [x, w, b] = cpu_slices::<f64>(self, input, n)?;
                CpuStorage::F64(self.forward(x, w, b, n)?)
            }
            other => bail!("{}: {:?} is not supported", self.name(), other.dtype()),
        };
        Ok((out, want))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fused_bwd(self, [x, w, b, y, g])
    }
}

impl FusedLayer for FusedConv {
    fn grads<T: Real>(
        &self,
        [x, w, y, g]: [&[T]; 4],
        _dims: [&[usize]; 4],
        need: (bool, bool, bool),
    ) -> Result<Grads<T>> {
        let gp = through_activation(g, y, self.act);
        let c_out = match self.transposed {
            true => self.g.c,
            false => self.ca,
        };
        let db = need.2.then(|| {
            let mut db = vec![T::zero(); c_out];
            let plane = self.lens().1 / c_out.max(1);
            for (i, plane) in gp.chunks(plane.max(1)).enumerate() {
                db[i % c_out] += plane.iter().fold(T::zero(), |s, &v| s + v);
            }
            db
        });
        let geo = (self.g, self.ca);
        let (map, img) = match self.transposed {
            true => (x, gp.as_slice()),
            false => (gp.as_slice(), x),
        };
        let w = &self.channel_last(w);
        let mut dx = need.0.then(|| vec![T::zero(); x.len()]);
        // A transposed layer's dx reads the same columns as its dW: one pass makes both.
        let shared = need.1 && self.transposed;
        let dw = match need.1 {
            true => {
                let also = dx
                    .as_deref_mut()
                    .filter(|_| shared)
                    .map(|dx| (w.as_slice(), dx));
                let dw = weight_grad(geo, map, img, also)?;
                Some(permute_weight(&dw, (self.g.c, self.g.k * self.g.k), false))
            }
            false => None,
        };
        if let Some(dx) = dx.as_deref_mut().filter(|_| !shared) {
            match self.transposed {
                true => img_to_map(geo, &gp, w, dx, |_| ())?,
                false => map_to_img(geo, &gp, w, dx, |_| ())?,
            }
        }
        Ok([dx, dw, db])
    }
}
