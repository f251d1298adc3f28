//! The convolutional stack of a model: its few config lines, and the geometry of every layer they imply.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The largest kernel side and stride a stack may have.
pub const MAX_KERNEL: usize = 255;

/// The most channels a layer may have.
pub const MAX_CHANNELS: usize = 1 << 16;

/// Convolutions before the encoder's dense layers and their mirror, transposed, after the decoder's: the common
/// image VAE (Keras's example, PyTorch-VAE). Each encoder layer is `Conv2d(c_in → channels[i], kernel, stride,
/// padding)`; the decoder's dense layers end in a projection to the last feature map, and
/// `ConvTranspose2d` layers with the same kernel, stride and padding lead back to the image, each with the output
/// padding that restores its mirror's input size exactly.
///
/// ```
/// let cfg: vae_model::VaeConfig = serde_json::from_str(r#"{"input_dim": 784, "hidden_dims": [256],
///     "latent_dim": 32, "activation": "relu", "likelihood": "bernoulli",
///     "conv": {"channels": [32, 64], "kernel": 4, "stride": 2, "padding": 1}}"#)?;
/// assert_eq!(cfg.num_parameters(), 1_700_609);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvStack {
    /// Output channels of each encoder convolution, first to last.
    pub channels: Vec<usize>,
    /// The side of every (square) kernel.
    pub kernel: usize,
    /// The step of every convolution.
    pub stride: usize,
    /// Zeros added on each side of every convolution's input.
    pub padding: usize,
}

/// The geometry of one convolution, or of one transposed convolution, as the plan derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// The side of the square kernel.
    pub kernel: usize,
    /// The step.
    pub stride: usize,
    /// Zeros on each side (of the input; of the output, for a transposed convolution).
    pub padding: usize,
    /// Extra rows and columns at the end of a transposed convolution's output (0 for a convolution).
    pub output_padding: usize,
    /// The input feature map `[C, H, W]`.
    pub input: [usize; 3],
    /// The output feature map `[C, H, W]`.
    pub output: [usize; 3],
}

/// What a layer of the plan computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// `x Wᵀ + b` on a flat vector (a feature map is flattened first, channel-major as PyTorch's `flatten`).
    Dense,
    /// `Conv2d`, weight `[C_out, C_in, k, k]`.
    Conv(ConvShape),
    /// `ConvTranspose2d`, weight `[C_in, C_out, k, k]`; a flat input is unflattened to its `input` map first.
    ConvTranspose(ConvShape),
}

impl ConvStack {
    /// The encoder's convolutions from an image `[C, H, W]`; an error names the layer and the sizes when a kernel
    /// does not fit its input.
    pub fn encoder_shapes(&self, image: [usize; 3]) -> Result<Vec<ConvShape>, Error> {
        self.validate()?;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let mut input = image;
        let mut shapes = Vec::with_capacity(self.channels.len());
        for (i, &c) in self.channels.iter().enumerate() {
            let [_, h, w] = input;
            // Saturating: a side near usize::MAX (a hostile input_shape) must not wrap.
            let (hp, wp) = (h.saturating_add(2 * p), w.saturating_add(2 * p));
            if hp < k || wp < k {
                return Err(Error::Config(format!(
                    "conv layer encoder.conv.{i}: kernel {k} is larger than its input {h}×{w} padded by {p}; \
                     the stack reduces the {}×{} images to nothing (use fewer channels, a smaller kernel or \
                     larger images)",
                    image[1], image[2]
                )));
            }
            let output = [c, (hp - k) / s + 1, (wp - k) / s + 1];
            if output
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none()
            {
                return Err(Error::Config(format!(
                    "conv layer encoder.conv.{i}: its output {c}×{}×{} is too large",
                    output[1], output[2]
                )));
            }
            shapes.push(ConvShape {
                kernel: k,
                stride: s,
                padding: p,
                output_padding: 0,
                input,
                output,
            });
            input = output;
        }
        Ok(shapes)
    }

    /// The decoder's transposed convolutions, each the mirror of an encoder layer: from its output map back to
    /// its input, `output_channels` at the end (the likelihood's outputs per value times the image's channels).
    /// An error names the layer when the rows and the columns would need different output paddings.
    pub fn decoder_shapes(
        encoder: &[ConvShape],
        output_channels: usize,
    ) -> Result<Vec<ConvShape>, Error> {
        let mut shapes = Vec::with_capacity(encoder.len());
        for (j, (i, e)) in encoder.iter().enumerate().rev().enumerate() {
            let mut output = e.input;
            if i == 0 {
                output[0] = output_channels;
            }
            // A transposed convolution makes (H−1)s − 2p + k rows; the mirror's input has what the convolution's
            // floor dropped more, always less than the stride: the output padding.
            let made = |side: usize| (side - 1) * e.stride + e.kernel - 2 * e.padding;
            let (pad_h, pad_w) = (output[1] - made(e.output[1]), output[2] - made(e.output[2]));
            if pad_h != pad_w {
                return Err(Error::Config(format!(
                    "conv: the transposed layer {j} cannot return {}×{} to {}×{} (it would need output padding                      {pad_h} for the rows and {pad_w} for the columns); use square images or sides the stride divides",
                    e.output[1], e.output[2], output[1], output[2]
                )));
            }
            shapes.push(ConvShape {
                output_padding: pad_h,
                input: e.output,
                output,
                ..*e
            });
        }
        Ok(shapes)
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.channels.is_empty() {
            return bad("conv.channels needs at least one layer".into());
        }
        if let Some(i) = self.channels.iter().position(|&c| c == 0) {
            return bad(format!(
                "conv.channels[{i}] is 0; every layer needs at least 1 channel"
            ));
        }
        if let Some(i) = self.channels.iter().position(|&c| c > MAX_CHANNELS) {
            let c = self.channels[i];
            return bad(format!("conv.channels[{i}] is {c}; at most {MAX_CHANNELS}"));
        }
        if self.kernel > MAX_KERNEL || self.stride > MAX_KERNEL {
            return bad(format!(
                "conv.kernel {} and conv.stride {} must be at most {MAX_KERNEL}",
                self.kernel, self.stride
            ));
        }
        if self.kernel == 0 {
            return bad("conv.kernel is 0; a kernel needs at least 1 pixel".into());
        }
        if self.stride == 0 {
            return bad("conv.stride is 0; the stride must be at least 1".into());
        }
        if self.padding >= self.kernel {
            return bad(format!(
                "conv.padding {} is not below conv.kernel {}: some outputs would read only padding",
                self.padding, self.kernel
            ));
        }
        Ok(())
    }
}

impl ConvShape {
    /// Values in the input map.
    pub fn input_values(&self) -> usize {
        self.input.iter().product()
    }

    /// Values in the output map.
    pub fn output_values(&self) -> usize {
        self.output.iter().product()
    }
}
