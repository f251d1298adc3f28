//! `x Wᵀ` as one graph node whose backward pass computes only what the graph needs.
//!
//! `x.matmul(&w.t())` (what `candle_nn::Linear` does) has two costs in Candle's backward pass: the input's gradient
//! is computed even when the input is data (the first layer's is a `[B, 784]` product nobody reads), and the
//! weight's gradient comes out as `(xᵀ g)ᵀ`, a strided view that is then added element by element. Here the
//! weight's gradient is `gᵀ x`, already in W's `[fan_out, fan_in]` layout, and the input's is skipped when nothing
//! upstream is tracked. The forward product is each backend's own matmul, so CUDA and Metal run it as before; on the
//! CPU, f32 and f64 products run on the threads of the calling rayon pool (see `cpu_matmul`), f32 ones on the
//! product [`crate::set_cpu_sgemm`] installed where there is one.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, Layout, MetalStorage, Result, Shape, Tensor, WithDType,
};

use crate::cpu_kernels::{gemm_into, pool_parallelism, Mat};

/// The product `x Wᵀ`.
///
/// # Shapes
/// `x [B, fan_in]` and `w [fan_out, fan_in]` to `[B, fan_out]`.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
/// let w = Tensor::new(&[[1f32, 0.], [1., 1.], [0., 2.]], &Device::Cpu)?;
/// let y = vae_model::linear_product(&x, &w)?;
/// assert_eq!(y.to_vec2::<f32>()?, vec![vec![1., 3., 4.], vec![3., 7., 8.]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn linear_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let ((_, fan_in), (_, w_fan_in)) = (x.dims2()?, w.dims2()?);
    if fan_in != w_fan_in {
        candle_core::bail!("linear_product: x has {fan_in} columns, W has {w_fan_in}");
    }
    x.apply_op2(
        w,
        Product {
            transpose_rhs: true,
        },
    )
}

/// `a b` with no backward pass: the products of the backward pass of [`linear_product`].
fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.apply_op2_no_bwd(
        b,
        &Product {
            transpose_rhs: false,
        },
    )
}

/// `a [m, k]` times `b [k, n]`, either of them a strided view; with `transpose_rhs`, times `bᵀ` for `b [n, k]` (W as
/// it is stored), the op [`linear_product`] applies.
struct Product {
    transpose_rhs: bool,
}

/// The backend's own matmul: what CUDA and Metal run.
fn backend_matmul<S: BackendStorage>(a: &S, al: &Layout, b: &S, bl: &Layout) -> Result<(S, Shape)> {
    let ((m, k), (_, n)) = (al.shape().dims2()?, bl.shape().dims2()?);
    Ok((a.matmul(b, (1, m, n, k), al, bl)?, Shape::from((m, n))))
}

/// On the CPU, f32 and f64 products use the threads of the rayon pool they are called in. Candle's matmul takes
/// its thread count from the environment, and splitting a product for two threads that a one-thread pool then
/// runs one after the other costs a tenth of an autograd step.
fn cpu_matmul(
    a: &CpuStorage,
    al: &Layout,
    b: &CpuStorage,
    bl: &Layout,
) -> Result<(CpuStorage, Shape)> {
    match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            let (c, shape) = gemm_in_pool(a, al, b, bl)?;
            Ok((CpuStorage::F32(c), shape))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            let (c, shape) = gemm_in_pool(a, al, b, bl)?;
            Ok((CpuStorage::F64(c), shape))
        }
        _ => backend_matmul(a, al, b, bl),
    }
}

fn gemm_in_pool<T: WithDType>(
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
) -> Result<(Vec<T>, Shape)> {
    let ((m, k), (k_b, n)) = (al.shape().dims2()?, bl.shape().dims2()?);
    if k != k_b {
        candle_core::bail!("product: [{m}, {k}] times [{k_b}, {n}]");
    }
    // Each operand's last element must lie in its storage before gemm reads through raw pointers.
    for (data, layout) in [(a, al), (b, bl)] {
        let (dims, strides) = (layout.dims(), layout.stride());
        let last = layout.start_offset()
            + (dims[0].max(1) - 1) * strides[0]
            + (dims[1].max(1) - 1) * strides[1];
        if data.len() <= last && m * n * k > 0 {
            candle_core::bail!("product: a layout reaches past its storage");
        }
    }
    let mut c = vec![T::zero(); m * n];
    if m * n * k > 0 {
        let (a, b) = (view(a, al, [m, k]), view(b, bl, [k, n]));
        gemm_into(&mut c, a, b, false, pool_parallelism())?;
    }
    Ok((c, Shape::from((m, n))))
}

/// The `dims` matrix that `layout` describes in `data`.
fn view<'a, T>(data: &'a [T], layout: &Layout, dims: [usize; 2]) -> Mat<'a, T> {
    let s = layout.stride();
    Mat::strided(&data[layout.start_offset()..], dims, [s[0], s[1]])
}

impl Product {
    /// The right operand's layout as the product reads it.
    fn rhs(&self, bl: &Layout) -> Result<Layout> {
        match self.transpose_rhs {
            true => bl.transpose(0, 1),
            false => Ok(bl.clone()),
        }
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        match self.transpose_rhs {
            true => "linear-product",
            false => "product",
        }
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_matmul(a, al, b, &self.rhs(bl)?)
    }

    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        al: &Layout,
        b: &CudaStorage,
        bl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        backend_matmul(a, al, b, &self.rhs(bl)?)
    }

    fn metal_fwd(
        &self,
        a: &MetalStorage,
        al: &Layout,
        b: &MetalStorage,
        bl: &Layout,
    ) -> Result<(MetalStorage, Shape)> {
        backend_matmul(a, al, b, &self.rhs(bl)?)
    }

    /// For `x Wᵀ`: `dx = g W` (only when x is tracked) and `dW = gᵀ x`, both contiguous. (The backward pass's own
    /// products are applied without one.)
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !self.transpose_rhs {
            return Err(candle_core::Error::BackwardNotSupported { op: self.name() });
        }
        let dx = match x.track_op() {
            true => Some(product(g, w)?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(product(&g.t()?, x)?),
            false => None,
        };
        Ok((dx, dw))
    }
}
