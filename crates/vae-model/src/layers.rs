//! The plan's layers as Candle modules: dense, and (transposed) convolutions. Between layers every activation is
//! flat, `[..., C·H·W]` channel-major as PyTorch's `flatten` leaves it, so flattening and unflattening are
//! reshapes and a dense layer needs to know nothing of maps.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::product::linear_product;
use crate::{ConvLayer, ConvShape, LayerKind, LayerSpec};

/// One dense layer of the plan as a Candle module: `act(x Wᵀ + b)`, its tensors under the layer's local name.
#[derive(Debug, Clone)]
pub struct Dense {
    spec: LayerSpec,
    linear: Linear,
}

impl Dense {
    /// Builds the layer from `vb`, which is already inside the layer's block (`encoder` or `decoder`).
    pub fn new(spec: &LayerSpec, vb: VarBuilder) -> Result<Self> {
        let linear = candle_nn::linear(spec.fan_in, spec.fan_out, vb.pp(&spec.local_name))?;
        Ok(Self {
            spec: spec.clone(),
            linear,
        })
    }

    /// What the layer is.
    pub fn spec(&self) -> &LayerSpec {
        &self.spec
    }

    /// The weight `[fan_out, fan_in]`.
    pub fn weight(&self) -> &Tensor {
        self.linear.weight()
    }

    pub(crate) fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
        out.push((self.spec.weight_name(), self.linear.weight().clone()));
        if let Some(b) = self.linear.bias() {
            out.push((self.spec.bias_name(), b.clone()));
        }
    }
}

impl Module for Dense {
    /// # Shapes
    /// `x [B, fan_in]` to `[B, fan_out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Leading dimensions are rows of one product, as `candle_nn::Linear` treats them.
        let fan_in = x.dim(D::Minus1)?;
        let mut shape = x.dims().to_vec();
        let rows = x.elem_count() / fan_in.max(1);
        let (x, w, act) = (
            x.reshape((rows, fan_in))?,
            self.linear.weight(),
            self.spec.activation,
        );
        let y = match self.linear.bias() {
            Some(b) => crate::dense_layer(&x, w, b, act)?,
            None => crate::activation::apply(linear_product(&x, w)?, act)?,
        };
        *shape.last_mut().expect("dim(Minus1) found one") = self.spec.fan_out;
        y.reshape(shape)
    }
}

/// One convolution or transposed convolution of the plan: `act(conv(x, W) + b)`, one graph node through
/// [`crate::conv_layer`].
#[derive(Debug, Clone)]
pub struct Conv {
    spec: LayerSpec,
    shape: ConvShape,
    transposed: bool,
    weight: Tensor,
    bias: Tensor,
}

impl Conv {
    /// Builds the layer from `vb`, which is already inside the layer's block. `None` for a dense spec.
    pub fn new(spec: &LayerSpec, vb: VarBuilder) -> Result<Option<Self>> {
        let (shape, transposed) = match spec.kind {
            LayerKind::Dense => return Ok(None),
            LayerKind::Conv(c) => (c, false),
            LayerKind::ConvTranspose(c) => (c, true),
        };
        let vb = vb.pp(&spec.local_name);
        Ok(Some(Self {
            spec: spec.clone(),
            shape,
            transposed,
            weight: vb.get(spec.weight_shape(), "weight")?,
            bias: vb.get(spec.bias_len(), "bias")?,
        }))
    }

    /// What the layer is.
    pub fn spec(&self) -> &LayerSpec {
        &self.spec
    }

    pub(crate) fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
        out.push((self.spec.weight_name(), self.weight.clone()));
        out.push((self.spec.bias_name(), self.bias.clone()));
    }
}

impl Module for Conv {
    /// # Shapes
    /// `x [..., C·H·W]` (the input map, flat) to `[..., C'·H'·W']`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.shape;
        let [ch, h, w] = c.input;
        let rows = x.elem_count() / c.input_values().max(1);
        let maps = x.reshape((rows, ch, h, w))?;
        let layer = ConvLayer {
            transposed: self.transposed,
            stride: c.stride,
            padding: c.padding,
            output_padding: c.output_padding,
            activation: self.spec.activation,
        };
        let y = crate::conv_layer(&maps, &self.weight, &self.bias, &layer)?;
        let mut shape = x.dims().to_vec();
        *shape.last_mut().unwrap_or(&mut 0) = c.output_values();
        y.reshape(shape)
    }
}
