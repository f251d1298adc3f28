//! The activations as Candle ops: what the dense layers apply, and the conv layers off the CPU.

use candle_core::{Result, Tensor};

use crate::Activation;

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
        Activation::LeakyRelu => candle_nn::ops::leaky_relu(x, Activation::LEAKY_SLOPE),
        Activation::Elu => x.elu(1.0),
        Activation::Silu => x.silu(),
    }
}

/// `act(x)`, or `x` itself without an activation.
pub(crate) fn apply(x: Tensor, act: Option<Activation>) -> Result<Tensor> {
    match act {
        Some(act) => activate(&x, act),
        None => Ok(x),
    }
}
