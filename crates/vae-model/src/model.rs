//! Encoder q(z|x), decoder p(x|z), and the VAE that joins them with the reparameterisation trick.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};

use crate::{Activation, Likelihood, VaeConfig, VaeRng};

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
    }
}

fn linear(fan_in: usize, fan_out: usize, vb: VarBuilder) -> Result<Linear> {
    candle_nn::linear(fan_in, fan_out, vb)
}

/// The recognition model q(z | x): an MLP whose last hidden layer feeds two linear heads, the mean `mu` and the
/// log-variance `logvar` of a diagonal Gaussian over z. Predicting log σ² keeps σ² positive without a constraint.
#[derive(Debug, Clone)]
pub struct Encoder {
    hidden: Vec<Linear>,
    mu: Linear,
    logvar: Linear,
    activation: Activation,
}

impl Encoder {
    /// Builds the encoder from `vb` (tensors `hidden.{i}`, `mu`, `logvar`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let mut hidden = Vec::with_capacity(cfg.hidden_dims.len());
        let mut fan_in = cfg.input_dim;
        for (i, &h) in cfg.hidden_dims.iter().enumerate() {
            hidden.push(linear(fan_in, h, vb.pp(format!("hidden.{i}")))?);
            fan_in = h;
        }
        let mu = linear(fan_in, cfg.latent_dim, vb.pp("mu"))?;
        let logvar = linear(fan_in, cfg.latent_dim, vb.pp("logvar"))?;
        Ok(Self {
            hidden,
            mu,
            logvar,
            activation: cfg.activation,
        })
    }

    /// `x [B, input_dim]` to `(mu, logvar)`, each `[B, latent_dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = activate(&layer.forward(&h)?, self.activation)?;
        }
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
        for (i, l) in self.hidden.iter().enumerate() {
            push_linear(out, &format!("encoder.hidden.{i}"), l);
        }
        push_linear(out, "encoder.mu", &self.mu);
        push_linear(out, "encoder.logvar", &self.logvar);
    }
}

/// The generative model p(x | z): an MLP from z to one logit per pixel. Logits rather than probabilities, so the
/// loss can use the numerically stable BCE-with-logits form.
#[derive(Debug, Clone)]
pub struct Decoder {
    hidden: Vec<Linear>,
    out: Linear,
    activation: Activation,
}

impl Decoder {
    /// Builds the decoder from `vb` (tensors `hidden.{i}`, `out`); hidden widths are the encoder's, reversed.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let mut hidden = Vec::with_capacity(cfg.hidden_dims.len());
        let mut fan_in = cfg.latent_dim;
        for (i, &h) in cfg.hidden_dims.iter().rev().enumerate() {
            hidden.push(linear(fan_in, h, vb.pp(format!("hidden.{i}")))?);
            fan_in = h;
        }
        let out = linear(fan_in, cfg.input_dim, vb.pp("out"))?;
        Ok(Self {
            hidden,
            out,
            activation: cfg.activation,
        })
    }

    fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
        for (i, l) in self.hidden.iter().enumerate() {
            push_linear(out, &format!("decoder.hidden.{i}"), l);
        }
        push_linear(out, "decoder.out", &self.out);
    }
}

impl Module for Decoder {
    /// `z [B, latent_dim]` to pixel logits `[B, input_dim]`.
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = z.clone();
        for layer in &self.hidden {
            h = activate(&layer.forward(&h)?, self.activation)?;
        }
        self.out.forward(&h)
    }
}

fn push_linear(out: &mut Vec<(String, Tensor)>, name: &str, l: &Linear) {
    out.push((format!("{name}.weight"), l.weight().clone()));
    if let Some(b) = l.bias() {
        out.push((format!("{name}.bias"), b.clone()));
    }
}

/// Everything one forward pass produces; [`crate::elbo`] turns it into the loss.
#[derive(Debug, Clone)]
pub struct VaeOutput {
    /// Decoder logits `[B, input_dim]`.
    pub logits: Tensor,
    /// Posterior means `[B, latent_dim]`.
    pub mu: Tensor,
    /// Posterior log-variances `[B, latent_dim]`.
    pub logvar: Tensor,
    /// The reparameterised sample `z = mu + exp(logvar / 2) * eps` that was decoded.
    pub z: Tensor,
    /// The decoder distribution the logits parameterise; it picks the reconstruction term of [`crate::elbo`].
    pub likelihood: Likelihood,
}

/// A variational auto-encoder (Kingma & Welling, 2014) with an MLP encoder and decoder.
#[derive(Debug, Clone)]
pub struct Vae {
    /// q(z | x).
    pub encoder: Encoder,
    /// p(x | z).
    pub decoder: Decoder,
    config: VaeConfig,
    device: Device,
    dataset: Option<String>,
}

impl Vae {
    /// Builds a VAE whose tensors come from `vb` under `encoder.*` and `decoder.*`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let encoder = Encoder::new(cfg, vb.pp("encoder"))?;
        let decoder = Decoder::new(cfg, vb.pp("decoder"))?;
        Ok(Self {
            encoder,
            decoder,
            config: cfg.clone(),
            device: vb.device().clone(),
            dataset: None,
        })
    }

    /// A freshly initialised f32 model whose parameters live, trainable, in the returned [`VarMap`].
    ///
    /// Weights and biases are drawn from `rng` as PyTorch's `nn.Linear` does by default:
    /// U(−1/√fan_in, 1/√fan_in) for both. The same seed therefore gives the same model on every device.
    pub fn init(cfg: &VaeConfig, rng: &mut VaeRng, device: &Device) -> Result<(Self, VarMap)> {
        Self::init_with_dtype(cfg, rng, DType::F32, device)
    }

    /// As [`Vae::init`], in another float dtype (f64 is what gradient checks want).
    pub fn init_with_dtype(
        cfg: &VaeConfig,
        rng: &mut VaeRng,
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let varmap = VarMap::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .expect("a fresh VarMap's lock cannot be poisoned");
            // Draw layer by layer, weight before bias; `parameter_shapes` lists each weight with its bias after it.
            for layer in cfg.parameter_shapes().chunks(2) {
                let fan_in = layer[0].1[1];
                let bound = 1.0 / (fan_in as f64).sqrt();
                for (name, shape) in layer {
                    let t = rng.uniform_dtype(shape.as_slice(), -bound, bound, dtype, device)?;
                    data.insert(name.clone(), candle_core::Var::from_tensor(&t)?);
                }
            }
        }
        let vae = Self::new(cfg, VarBuilder::from_varmap(&varmap, dtype, device))?;
        Ok((vae, varmap))
    }

    /// The architecture.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dataset this model was trained on, as recorded in its file (if any).
    pub fn dataset(&self) -> Option<&str> {
        self.dataset.as_deref()
    }

    /// Records the training dataset; [`Vae::save`] writes it to the file's metadata.
    pub fn set_dataset(&mut self, name: impl Into<String>) {
        self.dataset = Some(name.into());
    }

    /// Every parameter with its `state_dict` name, in the order of [`VaeConfig::parameter_shapes`].
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.encoder.named_tensors(&mut out);
        self.decoder.named_tensors(&mut out);
        out
    }

    /// q(z | x): `(mu, logvar)` for images `x [B, input_dim]`.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.encoder.forward(x)
    }

    /// The reparameterisation trick: `z = mu + σ · eps` with `σ = exp(logvar / 2)` and `eps ~ N(0, I)` drawn outside.
    ///
    /// Writing the sample as a deterministic function of (mu, logvar) and independent noise is what lets gradients
    /// of the ELBO flow back into the encoder.
    pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let std = (logvar * 0.5)?.exp()?;
        mu + std.mul(eps)?
    }

    /// p(x | z) as pixel logits.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(z)
    }

    /// p(x | z) as pixel probabilities (the sigmoid of the logits): what a picture shows.
    pub fn decode_probs(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.decode(z)?)
    }

    /// Encode, sample z with noise `eps` of shape `[B, latent_dim]`, decode.
    pub fn forward_with_noise(&self, x: &Tensor, eps: &Tensor) -> Result<VaeOutput> {
        let (mu, logvar) = self.encode(x)?;
        let z = Self::reparameterize(&mu, &logvar, eps)?;
        let logits = self.decode(&z)?;
        Ok(VaeOutput {
            logits,
            mu,
            logvar,
            z,
            likelihood: self.config.likelihood,
        })
    }

    /// One stochastic forward pass, with the noise drawn from `rng`.
    pub fn forward(&self, x: &Tensor, rng: &mut VaeRng) -> Result<VaeOutput> {
        let eps = self.noise(x.dim(0)?, rng)?;
        self.forward_with_noise(x, &eps)
    }

    /// `n` draws of `eps ~ N(0, I)` in the model's dtype and device.
    pub fn noise(&self, n: usize, rng: &mut VaeRng) -> Result<Tensor> {
        let dtype = self.encoder.mu.weight().dtype();
        rng.normal((n, self.config.latent_dim), &self.device)?
            .to_dtype(dtype)
    }

    /// `n` images from the generative model: z ~ N(0, I) from `rng`, decoded to probabilities `[n, input_dim]`.
    pub fn sample(&self, n: usize, rng: &mut VaeRng) -> Result<Tensor> {
        self.decode_probs(&self.noise(n, rng)?)
    }

    /// Deterministic reconstruction: decode the posterior mean of each image, as probabilities.
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let (mu, _) = self.encode(x)?;
        self.decode_probs(&mu)
    }

    pub(crate) fn with_dataset(mut self, dataset: Option<String>) -> Self {
        self.dataset = dataset;
        self
    }
}
