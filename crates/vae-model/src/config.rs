//! The model's shape: what `Vae::new` builds and what a saved file records.

use serde::{Deserialize, Serialize};

use crate::Error;

mod conv;
mod table;
pub use conv::{ConvShape, ConvStack, LayerKind};

/// Classes of a conditional model's label unless its config says otherwise: the digits 0-9 of MNIST, the ten
/// garments of Fashion-MNIST.
pub const DEFAULT_NUM_CLASSES: usize = 10;

/// The largest model [`VaeConfig::validate`] accepts: 2³² parameters (16 GiB of f32 weights alone).
pub const MAX_PARAMETERS: u64 = 1 << 32;

/// The non-linearity between hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(0, x)`, the pytorch/examples choice.
    Relu,
    /// `tanh(x)`, the choice of the original paper.
    Tanh,
    /// `max(0, x) + 0.01 min(0, x)`, PyTorch's `LeakyReLU()` (PyTorch-VAE's choice).
    LeakyRelu,
    /// `x` above 0, `exp(x) − 1` below: PyTorch's `ELU()` (α = 1).
    Elu,
    /// `x σ(x)`, PyTorch's `SiLU()`.
    Silu,
}

impl Activation {
    /// The slope of [`Activation::LeakyRelu`] below 0, PyTorch's default.
    pub const LEAKY_SLOPE: f64 = 0.01;
}

/// The decoder's output distribution p(x | z), which fixes the reconstruction term of the ELBO. Each is a true
/// (log-)density of values in [0, 1], so −ELBO stays in nats per example; see [`crate::log_likelihood`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Likelihood {
    /// Each value is an independent Bernoulli whose logit the decoder outputs; the reconstruction term is the
    /// binary cross-entropy, which also accepts grey levels in [0, 1] as targets (though it is then no density).
    Bernoulli,
    /// A normal density per value, its mean the decoder's output; σ is [`VaeConfig::sigma`] when set, else the
    /// decoder predicts log σ per value too (a second half of its output layer).
    Gaussian,
    /// The continuous Bernoulli of Loaiza-Ganem & Cunningham (2019): the Bernoulli's form normalised into a density
    /// on [0, 1], for grey levels.
    ContinuousBernoulli,
    /// The discretised logistic of Kingma et al. (2016) and Salimans et al. (2017) for 8-bit values k/255: the
    /// mass of a logistic (mean and log-scale predicted per value) over each value's bin, the edges open-ended.
    Logistic,
}

impl Likelihood {
    /// Its name in a preset and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Likelihood::Bernoulli => "bernoulli",
            Likelihood::Gaussian => "gaussian",
            Likelihood::ContinuousBernoulli => "continuous-bernoulli",
            Likelihood::Logistic => "logistic",
        }
    }

    /// The decoder's outputs per value under a Gaussian's fixed `sigma` (if any): 2 where it predicts a log-scale
    /// beside the mean, 1 otherwise.
    pub fn outputs_per_value(self, sigma: Option<f64>) -> usize {
        match (self, sigma) {
            (Likelihood::Gaussian, None) | (Likelihood::Logistic, _) => 2,
            _ => 1,
        }
    }

    /// Every likelihood, for errors that list them.
    pub const ALL: [Likelihood; 4] = [
        Likelihood::Bernoulli,
        Likelihood::Gaussian,
        Likelihood::ContinuousBernoulli,
        Likelihood::Logistic,
    ];
}

impl std::str::FromStr for Likelihood {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|l| l.name()).collect();
                format!("unknown likelihood {s:?}; one of {}", names.join(", "))
            })
    }
}

/// What the encoder's second head predicts: the spread of q(z|x) = N(mu, σ²).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleHead {
    /// log σ², which needs no constraint to give a positive variance: ours and pytorch/examples'.
    #[default]
    Logvar,
    /// σ itself, as the teaching code predicts it (`mu + sigma * eps`, and `log(sigma²)` in the KL). Imported
    /// models keep it, so their weights are used as trained; the model turns it into log σ² as it encodes.
    Std,
}

impl ScaleHead {
    /// The head's tensor name inside the encoder: `logvar` or `std`.
    pub fn name(self) -> &'static str {
        match self {
            ScaleHead::Logvar => "logvar",
            ScaleHead::Std => "std",
        }
    }

    fn is_logvar(&self) -> bool {
        *self == ScaleHead::Logvar
    }
}

/// The architecture of a VAE: `input_dim → hidden_dims… → (mu, logvar) [latent_dim]`, and the mirror image back.
///
/// A conditional VAE (Sohn et al., 2015; `conditional = true`) also reads the image's class as a one-hot vector
/// (of [`VaeConfig::label_dim`] classes), appended to the encoder's input (`[x | y]`) and to the decoder's
/// (`[z | y]`); only the first layer of each half grows.
///
/// ```
/// let cfg = vae_model::VaeConfig::mnist();
/// assert_eq!(cfg.hidden_dims, vec![400]);
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Values per example (784 for 28×28 grey pixels).
    pub input_dim: usize,
    /// The example's shape, `[C, H, W]` for images or `[D]` for vectors, its product `input_dim`. Absent (and not
    /// written) for the square grey images of the first format, whose side is √`input_dim`; see
    /// [`VaeConfig::image_shape`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
    /// The convolutions before the encoder's dense layers (and, transposed, after the decoder's); absent (and not
    /// written) for a dense model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv: Option<ConvStack>,
    /// Widths of the encoder's hidden dense layers, first to last; the decoder uses them in reverse.
    pub hidden_dims: Vec<usize>,
    /// Dimension of the latent code z.
    pub latent_dim: usize,
    /// Non-linearity after each hidden layer.
    pub activation: Activation,
    /// Decoder output distribution.
    pub likelihood: Likelihood,
    /// A Gaussian decoder's fixed σ; absent, the decoder predicts log σ per value. Only with `gaussian`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// What the encoder's second head predicts. Absent (and not written) for `logvar`, what every older file meant.
    #[serde(default, skip_serializing_if = "ScaleHead::is_logvar")]
    pub scale_head: ScaleHead,
    /// Whether both halves also read the one-hot class label. Absent in files written before it existed, and not
    /// written when false, so unconditional models keep their exact bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conditional: bool,
    /// A conditional model's number of classes; [`DEFAULT_NUM_CLASSES`] when absent. Written for every conditional
    /// model that training saves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
}

impl VaeConfig {
    /// The pytorch/examples VAE: 784-400-20, ReLU, Bernoulli.
    pub fn mnist() -> Self {
        Self {
            input_dim: 784,
            input_shape: None,
            conv: None,
            hidden_dims: vec![400],
            latent_dim: 20,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            sigma: None,
            scale_head: ScaleHead::Logvar,
            conditional: false,
            num_classes: None,
        }
    }

    /// The decoder's outputs per value: 2 where it predicts a log-scale beside the mean (a Gaussian of no fixed σ,
    /// the logistic), 1 otherwise.
    pub fn outputs_per_value(&self) -> usize {
        self.likelihood.outputs_per_value(self.sigma)
    }

    /// The images' `[channels, height, width]`: [`VaeConfig::input_shape`] when it is an image's, a square grey
    /// image when the shape is absent and `input_dim` a square, `None` for vectors.
    ///
    /// ```
    /// let mut cfg = vae_model::VaeConfig::mnist();
    /// assert_eq!(cfg.image_shape(), Some([1, 28, 28]));
    /// cfg.input_dim = 3 * 32 * 32;
    /// cfg.input_shape = Some(vec![3, 32, 32]);
    /// assert_eq!(cfg.image_shape(), Some([3, 32, 32]));
    /// cfg.input_dim = 10;
    /// cfg.input_shape = Some(vec![10]);
    /// assert_eq!(cfg.image_shape(), None);
    /// ```
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match self.input_shape.as_deref() {
            Some(&[c, h, w]) => Some([c, h, w]),
            Some(_) => None,
            None => {
                let side = (self.input_dim as f64).sqrt().round() as usize;
                (side * side == self.input_dim).then_some([1, side, side])
            }
        }
    }

    /// Width of the label input: the number of classes for a conditional model, 0 otherwise.
    pub fn label_dim(&self) -> usize {
        match self.conditional {
            true => self.num_classes.unwrap_or(DEFAULT_NUM_CLASSES),
            false => 0,
        }
    }

    /// Rejects shapes that would build a degenerate model: zero widths or no hidden layer.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.input_dim == 0 {
            return bad("input_dim must be at least 1".into());
        }
        if self.latent_dim == 0 {
            return bad("latent_dim must be at least 1".into());
        }
        if let Some(shape) = &self.input_shape {
            self.validate_shape(shape)?;
        }
        if self.hidden_dims.is_empty() && self.conv.is_none() {
            return bad("hidden_dims needs at least one hidden layer".into());
        }
        if let Some(i) = self.hidden_dims.iter().position(|&d| d == 0) {
            return bad(format!(
                "hidden_dims[{i}] is 0; every hidden layer needs at least 1 unit"
            ));
        }
        match (self.conditional, self.num_classes) {
            (false, Some(_)) => return bad("num_classes is set but conditional is false".into()),
            (true, Some(n)) if n < 2 => {
                return bad(format!(
                    "num_classes is {n}; a conditional model needs at least 2"
                ))
            }
            _ => {}
        }
        match (self.likelihood, self.sigma) {
            (Likelihood::Gaussian, Some(s)) if !(s.is_finite() && s > 0.0) => {
                return bad(format!(
                    "sigma is {s}; a Gaussian's σ must be positive and finite"
                ))
            }
            (Likelihood::Gaussian, _) | (_, None) => {}
            (other, Some(_)) => {
                return bad(format!(
                    "sigma is set but the likelihood is {}, not gaussian",
                    other.name()
                ))
            }
        }
        self.conv_shapes()?;
        if self.checked_num_parameters().is_none() {
            return bad(format!(
                "the model would have more than {MAX_PARAMETERS} parameters; use smaller widths"
            ));
        }
        Ok(())
    }

    fn validate_shape(&self, shape: &[usize]) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        let product = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match shape {
            [c, _, _] if *c != 1 && *c != 3 => bad(format!(
                "input_shape {shape:?}: images have 1 or 3 channels, not {c}"
            )),
            [_] | [_, _, _] if product != Some(self.input_dim) => bad(format!(
                "input_shape {shape:?} holds {} values but input_dim is {}",
                product.map_or("too many".to_string(), |p| p.to_string()),
                self.input_dim
            )),
            [_] | [_, _, _] => Ok(()),
            _ => bad(format!(
                "input_shape {shape:?} is neither [C, H, W] (images) nor [D] (vectors)"
            )),
        }
    }

    /// The encoder's convolutions and the decoder's transposed ones (both empty for a dense model); an error
    /// names the layer whose sizes do not work.
    fn conv_shapes(&self) -> Result<(Vec<ConvShape>, Vec<ConvShape>), Error> {
        let Some(stack) = &self.conv else {
            return Ok((Vec::new(), Vec::new()));
        };
        let Some(image) = self.image_shape() else {
            return Err(Error::Config(format!(
                "conv needs images [C, H, W], and the examples are {:?}",
                self.input_shape.as_deref().unwrap_or(&[self.input_dim])
            )));
        };
        let encoder = stack.encoder_shapes(image)?;
        let decoder = ConvStack::decoder_shapes(&encoder, image[0] * self.outputs_per_value())?;
        Ok((encoder, decoder))
    }

    /// The model's layers, the one place that walks `hidden_dims` and `conv`: every shape, name, initialisation,
    /// module and engine buffer is derived from this plan. The config must be valid ([`VaeConfig::validate`], which
    /// every constructor and reader calls).
    pub fn plan(&self) -> LayerPlan {
        let (conv_encoder, conv_decoder) = self
            .conv_shapes()
            .expect("validate() refuses convolutions that do not fit");
        let act = Some(self.activation);
        let labels = self.label_dim();
        let mut encoder: Vec<LayerSpec> = conv_encoder
            .iter()
            .enumerate()
            .map(|(i, c)| LayerSpec::conv(Block::Encoder, format!("conv.{i}"), *c, false, act))
            .collect();
        let flat = conv_encoder
            .last()
            .map_or(self.input_dim, ConvShape::output_values);
        let mut fan_in = flat + labels;
        for (i, &h) in self.hidden_dims.iter().enumerate() {
            encoder.push(LayerSpec::new(
                Block::Encoder,
                format!("hidden.{i}"),
                fan_in,
                h,
                act,
            ));
            fan_in = h;
        }
        let mu = LayerSpec::new(Block::Encoder, "mu".into(), fan_in, self.latent_dim, None);
        let scale_name = self.scale_head.name().into();
        let scale = LayerSpec::new(Block::Encoder, scale_name, fan_in, self.latent_dim, None);
        let (decoder, out) = self.decoder_plan(&conv_decoder);
        LayerPlan {
            encoder,
            mu,
            scale,
            decoder,
            out,
        }
    }

    /// The decoder's dense layers (and, for a convolutional model, its projection and transposed convolutions but
    /// the last), and its output layer.
    fn decoder_plan(&self, conv_decoder: &[ConvShape]) -> (Vec<LayerSpec>, LayerSpec) {
        let act = Some(self.activation);
        let mut decoder = Vec::with_capacity(self.hidden_dims.len() + conv_decoder.len() + 1);
        let mut fan_in = self.latent_dim + self.label_dim();
        for (i, &h) in self.hidden_dims.iter().rev().enumerate() {
            decoder.push(LayerSpec::new(
                Block::Decoder,
                format!("hidden.{i}"),
                fan_in,
                h,
                act,
            ));
            fan_in = h;
        }
        let out = match conv_decoder.split_last() {
            None => {
                let outputs = self.input_dim * self.outputs_per_value();
                LayerSpec::new(Block::Decoder, "out".into(), fan_in, outputs, None)
            }
            Some((last, hidden)) => {
                let map = conv_decoder[0].input_values();
                decoder.push(LayerSpec::new(
                    Block::Decoder,
                    "project".into(),
                    fan_in,
                    map,
                    act,
                ));
                for (i, c) in hidden.iter().enumerate() {
                    let name = format!("deconv.{i}");
                    decoder.push(LayerSpec::conv(Block::Decoder, name, *c, true, act));
                }
                LayerSpec::conv(Block::Decoder, "out".into(), *last, true, None)
            }
        };
        (decoder, out)
    }

    /// Every parameter tensor of the model with its shape, in the `state_dict` naming of the safetensors format and
    /// in [`LayerPlan::layers`] order, each weight before its bias.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.plan()
            .layers()
            .flat_map(|l| {
                [
                    (l.weight_name(), l.weight_shape()),
                    (l.bias_name(), vec![l.bias_len()]),
                ]
            })
            .collect()
    }

    /// Total number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.plan().layers().map(LayerSpec::num_parameters).sum()
    }

    /// The parameter count from the plan, in u128 so absurd widths cannot overflow; `None` above
    /// [`MAX_PARAMETERS`].
    fn checked_num_parameters(&self) -> Option<usize> {
        let total: u128 = self
            .plan()
            .layers()
            .map(|l| {
                l.weight_shape()
                    .iter()
                    .map(|&d| d as u128)
                    .product::<u128>()
                    + l.bias_len() as u128
            })
            .sum();
        (total <= MAX_PARAMETERS as u128).then_some(total as usize)
    }
}

/// The two halves of the model, which are also the first part of every tensor name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// q(z | x): tensors `encoder.*`.
    Encoder,
    /// p(x | z): tensors `decoder.*`.
    Decoder,
}

impl Block {
    /// `encoder` or `decoder`, the `VarBuilder` prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Block::Encoder => "encoder",
            Block::Decoder => "decoder",
        }
    }
}

/// One layer of the plan: dense, `y = act(x Wᵀ + b)` with W `[fan_out, fan_in]` as PyTorch's `nn.Linear` stores
/// it, or a (transposed) convolution as its [`LayerKind`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// The half of the model it belongs to.
    pub block: Block,
    /// Its name inside the block, e.g. `hidden.0`, `mu`, `out`.
    pub local_name: String,
    /// Values in, per example (a feature map's `C·H·W`).
    pub fan_in: usize,
    /// Values out, per example.
    pub fan_out: usize,
    /// The non-linearity after it; `None` for the linear heads and the output logits.
    pub activation: Option<Activation>,
    /// Dense or (transposed) convolution.
    pub kind: LayerKind,
}

impl LayerSpec {
    fn new(
        block: Block,
        local_name: String,
        fan_in: usize,
        fan_out: usize,
        activation: Option<Activation>,
    ) -> Self {
        Self {
            block,
            local_name,
            fan_in,
            fan_out,
            activation,
            kind: LayerKind::Dense,
        }
    }

    fn conv(
        block: Block,
        local_name: String,
        shape: ConvShape,
        transposed: bool,
        activation: Option<Activation>,
    ) -> Self {
        let (fan_in, fan_out) = (shape.input_values(), shape.output_values());
        let kind = match transposed {
            false => LayerKind::Conv(shape),
            true => LayerKind::ConvTranspose(shape),
        };
        Self {
            kind,
            ..Self::new(block, local_name, fan_in, fan_out, activation)
        }
    }

    /// The `state_dict` prefix, e.g. `encoder.hidden.0`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.block.prefix(), self.local_name)
    }

    /// `<name>.weight`.
    pub fn weight_name(&self) -> String {
        format!("{}.weight", self.name())
    }

    /// `<name>.bias`.
    pub fn bias_name(&self) -> String {
        format!("{}.bias", self.name())
    }

    /// PyTorch's layout: `[fan_out, fan_in]` (`nn.Linear`), `[C_out, C_in, k, k]` (`nn.Conv2d`) or
    /// `[C_in, C_out, k, k]` (`nn.ConvTranspose2d`).
    pub fn weight_shape(&self) -> Vec<usize> {
        match self.kind {
            LayerKind::Dense => vec![self.fan_out, self.fan_in],
            LayerKind::Conv(c) => vec![c.output[0], c.input[0], c.kernel, c.kernel],
            LayerKind::ConvTranspose(c) => vec![c.input[0], c.output[0], c.kernel, c.kernel],
        }
    }

    /// The bias's length: one per output (per output channel, for a convolution).
    pub fn bias_len(&self) -> usize {
        match self.kind {
            LayerKind::Dense => self.fan_out,
            LayerKind::Conv(c) | LayerKind::ConvTranspose(c) => c.output[0],
        }
    }

    /// The bound of PyTorch's default initialisation, U(−b, b) for weights and biases: 1/√fan_in, where a
    /// convolution's fan-in is `weight.size(1)·k²` (for a transposed one, its output channels).
    pub fn init_bound(&self) -> f64 {
        let fan_in = match self.kind {
            LayerKind::Dense => self.fan_in,
            LayerKind::Conv(c) => c.input[0] * c.kernel * c.kernel,
            LayerKind::ConvTranspose(c) => c.output[0] * c.kernel * c.kernel,
        };
        1.0 / (fan_in as f64).sqrt()
    }

    /// Weights plus biases.
    pub fn num_parameters(&self) -> usize {
        self.weight_shape().iter().product::<usize>() + self.bias_len()
    }
}

/// The layers of a VAE by role; see [`VaeConfig::plan`].
///
/// ```
/// let plan = vae_model::VaeConfig::mnist().plan();
/// let names: Vec<String> = plan.layers().map(|l| l.name()).collect();
/// assert_eq!(names, ["encoder.hidden.0", "encoder.mu", "encoder.logvar", "decoder.hidden.0", "decoder.out"]);
/// assert_eq!((plan.mu.fan_in, plan.mu.fan_out), (400, 20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// The encoder's hidden layers, first to last.
    pub encoder: Vec<LayerSpec>,
    /// The posterior-mean head, reading the last encoder layer.
    pub mu: LayerSpec,
    /// The second head, log σ² (`logvar`) or σ (`std`) as [`VaeConfig::scale_head`] says, reading the same
    /// input as `mu`.
    pub scale: LayerSpec,
    /// The decoder's hidden layers, from z onwards.
    pub decoder: Vec<LayerSpec>,
    /// The output layer: one logit per pixel.
    pub out: LayerSpec,
}

impl LayerPlan {
    /// Every layer in `state_dict` order: encoder hidden layers, `mu`, the scale head, decoder hidden layers, `out`.
    pub fn layers(&self) -> impl Iterator<Item = &LayerSpec> {
        self.encoder
            .iter()
            .chain([&self.mu, &self.scale])
            .chain(&self.decoder)
            .chain([&self.out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_degenerate_shapes() {
        let ok = VaeConfig::mnist();
        ok.validate().unwrap();
        for (cfg, needle) in [
            (
                VaeConfig {
                    input_dim: 0,
                    ..ok.clone()
                },
                "input_dim",
            ),
            (
                VaeConfig {
                    latent_dim: 0,
                    ..ok.clone()
                },
                "latent_dim",
            ),
            (
                VaeConfig {
                    hidden_dims: vec![],
                    ..ok.clone()
                },
                "at least one hidden layer",
            ),
            (
                VaeConfig {
                    hidden_dims: vec![400, 0],
                    ..ok.clone()
                },
                "hidden_dims[1]",
            ),
            (
                VaeConfig {
                    num_classes: Some(10),
                    ..ok.clone()
                },
                "conditional is false",
            ),
            (
                VaeConfig {
                    conditional: true,
                    num_classes: Some(1),
                    ..ok.clone()
                },
                "num_classes is 1",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_plan_mirrors_the_encoder_into_the_decoder_with_state_dict_names() {
        let cfg = VaeConfig {
            input_dim: 30,
            input_shape: None,
            conv: None,
            hidden_dims: vec![17, 9],
            latent_dim: 4,
            activation: Activation::Tanh,
            likelihood: Likelihood::Bernoulli,
            sigma: None,
            scale_head: ScaleHead::Logvar,
            conditional: false,
            num_classes: None,
        };
        let got: Vec<(String, usize, usize, Option<Activation>)> = cfg
            .plan()
            .layers()
            .map(|l| (l.name(), l.fan_in, l.fan_out, l.activation))
            .collect();
        let tanh = Some(Activation::Tanh);
        let want = [
            ("encoder.hidden.0", 30, 17, tanh),
            ("encoder.hidden.1", 17, 9, tanh),
            ("encoder.mu", 9, 4, None),
            ("encoder.logvar", 9, 4, None),
            ("decoder.hidden.0", 4, 9, tanh),
            ("decoder.hidden.1", 9, 17, tanh),
            ("decoder.out", 17, 30, None),
        ]
        .map(|(n, i, o, a)| (n.to_string(), i, o, a));
        assert_eq!(got, want);
        let shapes = cfg.parameter_shapes();
        assert_eq!(shapes[0], ("encoder.hidden.0.weight".into(), vec![17, 30]));
        assert_eq!(shapes[1], ("encoder.hidden.0.bias".into(), vec![17]));
        assert_eq!(shapes.len(), 14);
    }

    #[test]
    fn mnist_parameter_count_matches_pytorch_examples() {
        // 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784, as torch's sum(p.numel()) prints.
        assert_eq!(VaeConfig::mnist().num_parameters(), 652_824);
        let deep = VaeConfig {
            hidden_dims: vec![512, 256, 7],
            ..VaeConfig::mnist()
        };
        assert_eq!(deep.checked_num_parameters(), Some(deep.num_parameters()));
        let huge = VaeConfig {
            hidden_dims: vec![1_000_000_000],
            ..VaeConfig::mnist()
        };
        assert!(huge
            .validate()
            .unwrap_err()
            .to_string()
            .contains("parameters"));
    }

    #[test]
    fn a_conditional_model_widens_only_the_first_layer_of_each_half() {
        let cfg = VaeConfig {
            conditional: true,
            ..VaeConfig::mnist()
        };
        let plan = cfg.plan();
        assert_eq!(plan.encoder[0].weight_shape(), [400, 794]);
        assert_eq!(plan.decoder[0].weight_shape(), [400, 30]);
        assert_eq!((plan.mu.fan_in, plan.out.fan_out), (400, 784));
        // 652,824 plus ten label columns in each first layer.
        assert_eq!(cfg.num_parameters(), 652_824 + 2 * 10 * 400);
    }

    #[test]
    fn a_std_head_is_named_for_what_it_holds_and_written_only_when_not_logvar() {
        let cfg = VaeConfig {
            scale_head: ScaleHead::Std,
            ..VaeConfig::mnist()
        };
        let names: Vec<String> = cfg.plan().layers().map(|l| l.name()).collect();
        assert_eq!(names[2], "encoder.std");
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"scale_head\":\"std\""), "{json}");
        assert!(!serde_json::to_string(&VaeConfig::mnist())
            .unwrap()
            .contains("scale_head"));
    }

    #[test]
    fn conditional_is_written_only_when_true_and_defaults_to_false() {
        let plain = serde_json::to_string(&VaeConfig::mnist()).unwrap();
        assert!(!plain.contains("conditional"), "{plain}");
        let cvae = VaeConfig {
            conditional: true,
            num_classes: Some(10),
            ..VaeConfig::mnist()
        };
        let json = serde_json::to_string(&cvae).unwrap();
        assert!(
            json.ends_with("\"conditional\":true,\"num_classes\":10}"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<VaeConfig>(&json).unwrap(), cvae);
        assert_eq!(
            serde_json::from_str::<VaeConfig>(&plain).unwrap(),
            VaeConfig::mnist()
        );
    }

    #[test]
    fn serde_round_trip_and_unknown_keys() {
        let cfg = VaeConfig {
            hidden_dims: vec![512, 256],
            activation: Activation::Tanh,
            ..VaeConfig::mnist()
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"activation\":\"tanh\""));
        assert!(json.contains("\"likelihood\":\"bernoulli\""));
        assert_eq!(serde_json::from_str::<VaeConfig>(&json).unwrap(), cfg);
        let extra = json.replace('}', ",\"dropout\":0.5}");
        assert!(serde_json::from_str::<VaeConfig>(&extra)
            .unwrap_err()
            .to_string()
            .contains("dropout"));
    }
}
