//! The CPU kernels the fused layers share ([`crate::conv_layer`] and [`crate::dense_layer`]): the activations
//! with their bias, forward and backward, on slices, and a product of strided views through the `gemm` crate.

use candle_core::{bail, CustomOp3, DType, Layout, Result, Storage, Tensor, WithDType};
use rayon::prelude::*;

use crate::Activation;

/// f32 and f64, with the two functions the activations need.
pub(crate) trait Real: WithDType {
    fn exp_(self) -> Self;
    fn tanh_(self) -> Self;
}

impl Real for f32 {
    fn exp_(self) -> Self {
        self.exp()
    }
    fn tanh_(self) -> Self {
        self.tanh()
    }
}

impl Real for f64 {
    fn exp_(self) -> Self {
        self.exp()
    }
    fn tanh_(self) -> Self {
        self.tanh()
    }
}

/// A strided `[rows, cols]` view of a slice.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    pub(crate) fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    pub(crate) fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// A `[rows, cols]` view of `data` with row stride `rs` and column stride `cs`.
    pub(crate) fn strided(data: &'a [T], [rows, cols]: [usize; 2], [rs, cs]: [usize; 2]) -> Self {
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Whether the view reads its slice row-major (`Some(false)`) or column-major (`Some(true)`), with no gaps;
    /// `None` for other strides.
    fn stored_transposed(&self) -> Option<bool> {
        if self.cs == 1 && (self.rs == self.cols || self.rows == 1) {
            Some(false)
        } else if self.rs == 1 && (self.cs == self.rows || self.cols == 1) {
            Some(true)
        } else {
            None
        }
    }

    /// Whether every element the view reaches lies in its slice.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// A product on every thread of the calling rayon pool.
pub(crate) fn pool_parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    }
}

/// `dst [a.rows, b.cols]` (row-major) `= a b`, plus what `dst` held when `accumulate`.
pub(crate) fn gemm_into<T: WithDType>(
    dst: &mut [T],
    a: Mat<T>,
    b: Mat<T>,
    accumulate: bool,
    par: gemm::Parallelism,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.len() != m * n || !a.in_bounds() || !b.in_bounds() {
        bail!("fused layer: internal error, a product's shapes do not match");
    }
    if m * n == 0 {
        return Ok(());
    }
    if installed_sgemm(dst, a, b, accumulate) {
        return Ok(());
    }
    let (one, zero) = (T::one(), T::zero());
    let alpha = if accumulate { one } else { zero };
    // SAFETY: `dst` holds m×n elements, row-major; every element of `a` and `b` their strides reach was checked
    // above (and k = 0 reads nothing).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            alpha,
            one,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// [`gemm_into`] on the product [`crate::set_cpu_sgemm`] installed, where there is one, `T` is f32, `k > 0` and
/// both views are row-major or transposed; returns whether it ran (the caller checked the shapes and bounds).
fn installed_sgemm<T: WithDType>(dst: &mut [T], a: Mat<T>, b: Mat<T>, accumulate: bool) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let Some(sgemm) = crate::sgemm::cpu_sgemm().filter(|_| T::DTYPE == DType::F32 && k > 0) else {
        return false;
    };
    let (Some(a_transposed), Some(b_transposed)) = (a.stored_transposed(), b.stored_transposed())
    else {
        return false;
    };
    let shape = crate::GemmShape {
        a_transposed,
        b_transposed,
        m,
        n,
        k,
    };
    // SAFETY: `T` is f32, as its DTYPE says; a gapless view of r×c elements reaches exactly its slice's first r·c.
    let f32s =
        |x: &[T], len: usize| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), len) };
    let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len()) };
    sgemm(
        shape,
        f32s(a.data, m * k),
        f32s(b.data, k * n),
        dst,
        accumulate,
    );
    true
}

/// `v ← f(v + b)`, `b` the bias of each plane of `plane` numbers.
fn add_then<T: Real>(data: &mut [T], bias: &[T], plane: usize, f: impl Fn(T) -> T) {
    match plane {
        1 => data.iter_mut().zip(bias).for_each(|(v, &b)| *v = f(*v + b)),
        _ => {
            for (plane, &b) in data.chunks_mut(plane).zip(bias) {
                plane.iter_mut().for_each(|v| *v = f(*v + b));
            }
        }
    }
}

/// Adds the bias and applies the activation (not SiLU): the bias of channel `c` to the `c`-th plane of an image
/// `[C, H W]`, or of feature `j` to the `j`-th number of a row `[fan_out]` (planes of one number).
pub(crate) fn bias_and_activation<T: Real>(data: &mut [T], bias: &[T], act: Option<Activation>) {
    let plane = (data.len() / bias.len().max(1)).max(1);
    let (zero, one) = (T::zero(), T::one());
    let slope = T::from_f64(Activation::LEAKY_SLOPE);
    match act {
        None | Some(Activation::Silu) => add_then(data, bias, plane, |z| z),
        Some(Activation::Relu) => add_then(data, bias, plane, |z| if z > zero { z } else { zero }),
        Some(Activation::LeakyRelu) => {
            add_then(data, bias, plane, |z| if z > zero { z } else { slope * z })
        }
        Some(Activation::Elu) => {
            add_then(
                data,
                bias,
                plane,
                |z| if z > zero { z } else { z.exp_() - one },
            )
        }
        Some(Activation::Tanh) => add_then(data, bias, plane, |z| z.tanh_()),
    }
}

/// `f(g, y)` element by element.
fn zip_map<T: Real>(g: &[T], y: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    g.par_iter().zip(y).map(|(&g, &y)| f(g, y)).collect()
}

/// `g ⊙ act'`, the slope taken from the output `y` (not for SiLU, which the fused op never applies).
pub(crate) fn through_activation<T: Real>(g: &[T], y: &[T], act: Option<Activation>) -> Vec<T> {
    let (zero, one) = (T::zero(), T::one());
    let slope = T::from_f64(Activation::LEAKY_SLOPE);
    match act {
        None | Some(Activation::Silu) => g.to_vec(),
        Some(Activation::Relu) => zip_map(g, y, |g, y| if y > zero { g } else { zero }),
        Some(Activation::LeakyRelu) => zip_map(g, y, |g, y| if y > zero { g } else { slope * g }),
        Some(Activation::Elu) => zip_map(g, y, |g, y| if y > zero { g } else { g * (y + one) }),
        Some(Activation::Tanh) => zip_map(g, y, |g, y| g * (one - y * y)),
    }
}

/// The storage's elements in `layout`'s order, which must be contiguous and hold `len` elements.
pub(crate) fn contiguous<'a, T>(
    op: &str,
    data: &'a [T],
    layout: &Layout,
    len: usize,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) if end - start == len => match data.get(start..end) {
            Some(slice) => Ok(slice),
            None => bail!("{op}: the layout reaches past its storage"),
        },
        Some(_) => bail!("{op}: expected {len} elements"),
        None => bail!("{op}: the input must be contiguous"),
    }
}

/// The gradients of x, W and b of a fused layer, flat, each only where asked for.
pub(crate) type Grads<T> = [Option<Vec<T>>; 3];

/// A layer fused into one graph node, `y = layer(x, W, b)`, whose backward pass runs on slices.
pub(crate) trait FusedLayer: CustomOp3 {
    /// The gradients from `[x, W, y, ∂y]` (contiguous, of dims `dims`), each where `need` (x, W, b) asks.
    fn grads<T: Real>(
        &self,
        t: [&[T]; 4],
        dims: [&[usize]; 4],
        need: (bool, bool, bool),
    ) -> Result<Grads<T>>;
}

/// The gradients of a fused layer as [`CustomOp3::bwd`] returns them: for the tracked ones of x, W and b (so not for
/// data), shaped as they are, none with a backward pass of its own.
pub(crate) fn fused_bwd<L: FusedLayer>(
    layer: &L,
    [x, w, b, y, g]: [&Tensor; 5],
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let need = (x.track_op(), w.track_op(), b.track_op());
    let g = g.contiguous()?;
    let t = [x, w, y, &g];
    let [dx, dw, db] = match x.dtype() {
        DType::F32 => grads_as_tensors::<f32, L>(layer, t, need)?,
        DType::F64 => grads_as_tensors::<f64, L>(layer, t, need)?,
        other => bail!("{}: {other:?} is not supported", layer.name()),
    };
    let shaped = |v: Option<Tensor>, like: &Tensor| v.map(|v| v.reshape(like.shape())).transpose();
    Ok((shaped(dx, x)?, shaped(dw, w)?, shaped(db, b)?))
}

/// [`FusedLayer::grads`] on the CPU storage of `[x, W, y, ∂y]`, as flat tensors.
fn grads_as_tensors<T: Real, L: FusedLayer>(
    layer: &L,
    t: [&Tensor; 4],
    need: (bool, bool, bool),
) -> Result<[Option<Tensor>; 3]> {
    let guards = t.map(|t| t.storage_and_layout());
    let mut slices: [&[T]; 4] = [&[]; 4];
    for (slice, (guard, layout)) in slices.iter_mut().zip(&guards) {
        let Storage::Cpu(storage) = &**guard else {
            bail!("{}: the backward pass expects CPU tensors", layer.name());
        };
        let len = layout.shape().elem_count();
        *slice = contiguous(layer.name(), storage.as_slice::<T>()?, layout, len)?;
    }
    let grads = layer.grads(slices, t.map(Tensor::dims), need)?;
    drop(guards);
    let mut out = [None, None, None];
    for (o, grad) in out.iter_mut().zip(grads) {
        *o = grad
            .map(|v| {
                let len = v.len();
                Tensor::from_vec(v, len, t[0].device())
            })
            .transpose()?;
    }
    Ok(out)
}
