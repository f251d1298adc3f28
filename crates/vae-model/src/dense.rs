//! A whole dense layer, `act(x Wᵀ + b)`, as one graph node with one backward node.
//!
//! As three Candle nodes (the product, the bias broadcast, the activation) a layer makes each of its maps three
//! times, and Candle's backward pass adds a zeroed gradient and a sum per node on top; for the 3136-wide layers of a
//! conv model each of those passes is megabytes. Here the bias and the activation run in one pass over the product,
//! and the backward pass takes the activation's slope from the output.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_kernels::{
    bias_and_activation, contiguous, fused_bwd, gemm_into, pool_parallelism, through_activation,
    FusedLayer, Grads, Mat, Real,
};
use crate::{linear_product, Activation};

/// `act(x Wᵀ + b)` as one graph node on the CPU for f32 and f64, whose backward pass is one node too (the input's
/// gradient only when the input is tracked); on other devices, [`linear_product`], the bias and Candle's activation
/// one after the other. SiLU, whose slope does not follow from its output, is applied after the fused node.
///
/// # Shapes
/// `x [B, fan_in]`, `w [fan_out, fan_in]` and `b [fan_out]` to `[B, fan_out]`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vae_model::{dense_layer, Activation};
///
/// let x = Tensor::new(&[[1f32, 2.], [3., -4.]], &Device::Cpu)?;
/// let w = Tensor::new(&[[1f32, 0.], [1., 1.]], &Device::Cpu)?;
/// let b = Tensor::new(&[0f32, -1.], &Device::Cpu)?;
/// let y = dense_layer(&x, &w, &b, Some(Activation::Relu))?;
/// assert_eq!(y.to_vec2::<f32>()?, vec![vec![1., 2.], vec![3., 0.]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn dense_layer(x: &Tensor, w: &Tensor, b: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let ((_, fan_in), (fan_out, w_fan_in)) = (x.dims2()?, w.dims2()?);
    if fan_in != w_fan_in || b.dims() != [fan_out] {
        bail!(
            "dense_layer: x has {fan_in} columns, W is {:?} and b {:?}",
            w.dims(),
            b.dims()
        );
    }
    let fused = matches!(x.dtype(), DType::F32 | DType::F64) && x.device().is_cpu();
    let (inside, after) = match act {
        Some(Activation::Silu) => (None, Some(Activation::Silu)),
        act if fused => (act, None),
        act => (None, act),
    };
    let y = match fused {
        true => {
            let op = FusedDense { act: inside };
            x.contiguous()?
                .apply_op3(&w.contiguous()?, &b.contiguous()?, op)?
        }
        false => linear_product(x, w)?.broadcast_add(b)?,
    };
    crate::activation::apply(y, after)
}

/// The fused layer, with the activation it applies inside.
#[derive(Debug, Clone, Copy)]
struct FusedDense {
    act: Option<Activation>,
}

/// Rows per parallel task of the element-wise passes.
const ROWS_PER_TASK: usize = 16;

impl FusedDense {
    fn forward<T: Real>(&self, x: &[T], w: &[T], b: &[T]) -> Result<Vec<T>> {
        let (fan_out, fan_in) = (b.len(), w.len() / b.len().max(1));
        let rows = x.len() / fan_in.max(1);
        let mut y = vec![T::zero(); rows * fan_out];
        let (x, w) = (
            Mat::row_major(x, rows, fan_in),
            Mat::row_major(w, fan_out, fan_in),
        );
        gemm_into(&mut y, x, w.t(), false, pool_parallelism())?;
        y.par_chunks_mut(ROWS_PER_TASK * fan_out.max(1))
            .for_each(|rows| {
                rows.chunks_mut(fan_out.max(1))
                    .for_each(|row| bias_and_activation(row, b, self.act))
            });
        Ok(y)
    }
}

/// The elements of `(storage, layout)` as `T`, `len` of them, contiguous.
fn slice<'a, T: Real>(s: &'a CpuStorage, l: &Layout, len: usize) -> Result<&'a [T]> {
    contiguous("dense-layer", s.as_slice::<T>()?, l, len)
}

impl CustomOp3 for FusedDense {
    fn name(&self) -> &'static str {
        "dense-layer"
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
        let ((rows, fan_in), (fan_out, _)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        let lens = (rows * fan_in, fan_out * fan_in, fan_out);
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward(
                slice::<f32>(s1, l1, lens.0)?,
                slice(s2, l2, lens.1)?,
                slice(s3, l3, lens.2)?,
            )?),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward(
                slice::<f64>(s1, l1, lens.0)?,
                slice(s2, l2, lens.1)?,
                slice(s3, l3, lens.2)?,
            )?),
            other => bail!("{}: {:?} is not supported", self.name(), other.dtype()),
        };
        Ok((out, Shape::from((rows, fan_out))))
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

impl FusedLayer for FusedDense {
    /// `dx = g' W`, `dW = g'ᵀ x` and `db = Σ_rows g'` with `g' = g ⊙ act'`, each only where `need` asks.
    fn grads<T: Real>(
        &self,
        [x, w, y, g]: [&[T]; 4],
        [x_dims, w_dims, ..]: [&[usize]; 4],
        need: (bool, bool, bool),
    ) -> Result<Grads<T>> {
        let (rows, fan_in, fan_out) = (x_dims[0], x_dims[1], w_dims[0]);
        let gp = through_activation(g, y, self.act);
        let gm = Mat::row_major(&gp, rows, fan_out);
        let dx = match need.0 {
            false => None,
            true => {
                let mut dx = vec![T::zero(); rows * fan_in];
                let w = Mat::row_major(w, fan_out, fan_in);
                gemm_into(&mut dx, gm, w, false, pool_parallelism())?;
                Some(dx)
            }
        };
        let dw = match need.1 {
            false => None,
            true => {
                let mut dw = vec![T::zero(); fan_out * fan_in];
                let x = Mat::row_major(x, rows, fan_in);
                gemm_into(&mut dw, gm.t(), x, false, pool_parallelism())?;
                Some(dw)
            }
        };
        let db = need.2.then(|| {
            let mut db = vec![T::zero(); fan_out];
            for row in gp.chunks(fan_out.max(1)) {
                db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
            }
            db
        });
        Ok([dx, dw, db])
    }
}
