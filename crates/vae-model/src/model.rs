//! Encoder q(z|x), decoder p(x|z), and the VAE that joins them with the reparameterisation trick.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder, VarMap};

use crate::product::linear_product;
use crate::{Activation, Block, LayerSpec, Likelihood, ScaleHead, VaeConfig, VaeRng};

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
    }
}

/// One layer of the plan as a Candle module: `act(x Wᵀ + b)`, its tensors under the layer's local name.
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

    fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
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
        let y = linear_product(&x.reshape((rows, fan_in))?, self.linear.weight())?;
        let y = match self.linear.bias() {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        *shape.last_mut().expect("dim(Minus1) found one") = self.spec.fan_out;
        let y = y.reshape(shape)?;
        match self.spec.activation {
            Some(act) => activate(&y, act),
            None => Ok(y),
        }
    }
}

/// The recognition model q(z | x): an MLP whose last hidden layer feeds two linear heads, the mean `mu` and the
/// spread of a diagonal Gaussian over z. The spread head predicts log σ², which keeps σ² positive without a
/// constraint, or (imported teaching models, [`ScaleHead::Std`]) σ itself, whose log σ² the encoder computes.
#[derive(Debug, Clone)]
pub struct Encoder {
    hidden: Vec<Dense>,
    mu: Dense,
    scale: Dense,
    scale_head: ScaleHead,
}

impl Encoder {
    /// Builds the encoder's layers of [`VaeConfig::plan`] from `vb` (tensors `hidden.{i}`, `mu`, `logvar`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let plan = cfg.plan();
        Ok(Self {
            hidden: dense_layers(&plan.encoder, &vb)?,
            mu: Dense::new(&plan.mu, vb.clone())?,
            scale: Dense::new(&plan.scale, vb)?,
            scale_head: cfg.scale_head,
        })
    }

    /// # Shapes
    /// `x [B, input_dim]` (`[B, input_dim + C]`, the one-hot label of C classes appended, for a conditional model) to
    /// `(mu, logvar)`, each `[B, latent_dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self
            .hidden
            .iter()
            .try_fold(x.clone(), |h, l| l.forward(&h))?;
        let scale = self.scale.forward(&h)?;
        let logvar = match self.scale_head {
            ScaleHead::Logvar => scale,
            // log σ², as the teaching code's KL takes it; the sign of σ does not matter to N(mu, σ²).
            ScaleHead::Std => scale.sqr()?.log()?,
        };
        Ok((self.mu.forward(&h)?, logvar))
    }

    fn layers(&self) -> impl Iterator<Item = &Dense> {
        self.hidden.iter().chain([&self.mu, &self.scale])
    }
}

/// The generative model p(x | z): an MLP from z to one logit per pixel. Logits rather than probabilities, so the
/// loss can use the numerically stable BCE-with-logits form.
#[derive(Debug, Clone)]
pub struct Decoder {
    hidden: Vec<Dense>,
    out: Dense,
}

impl Decoder {
    /// Builds the decoder's layers of [`VaeConfig::plan`] from `vb` (tensors `hidden.{i}`, `out`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let plan = cfg.plan();
        Ok(Self {
            hidden: dense_layers(&plan.decoder, &vb)?,
            out: Dense::new(&plan.out, vb)?,
        })
    }

    fn layers(&self) -> impl Iterator<Item = &Dense> {
        self.hidden.iter().chain([&self.out])
    }
}

impl Module for Decoder {
    /// # Shapes
    /// `z [B, latent_dim]` (`[B, latent_dim + C]` for a conditional model) to pixel logits
    /// `[B, input_dim]`.
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        self.layers().try_fold(z.clone(), |h, l| l.forward(&h))
    }
}

fn dense_layers(specs: &[LayerSpec], vb: &VarBuilder) -> Result<Vec<Dense>> {
    specs.iter().map(|s| Dense::new(s, vb.clone())).collect()
}

/// Everything one forward pass produces; [`crate::elbo`] turns it into the loss.
#[derive(Debug, Clone)]
pub struct VaeOutput {
    /// The decoder's output `[B, k·input_dim]`: logits, or means and then log-scales (see
    /// [`VaeConfig::outputs_per_value`]).
    pub logits: Tensor,
    /// Posterior means `[B, latent_dim]`.
    pub mu: Tensor,
    /// Posterior log-variances `[B, latent_dim]`.
    pub logvar: Tensor,
    /// The reparameterised sample `z = mu + exp(logvar / 2) * eps` that was decoded.
    pub z: Tensor,
    /// The decoder distribution the logits parameterise; it picks the reconstruction term of [`crate::elbo`].
    pub likelihood: Likelihood,
    /// A Gaussian decoder's fixed σ ([`VaeConfig::sigma`]).
    pub sigma: Option<f64>,
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
    binarize: Option<String>,
    data_options: Option<String>,
}

impl Vae {
    /// Builds a VAE whose tensors come from `vb` under `encoder.*` and `decoder.*`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let encoder = Encoder::new(cfg, vb.pp(Block::Encoder.prefix()))?;
        let decoder = Decoder::new(cfg, vb.pp(Block::Decoder.prefix()))?;
        Ok(Self {
            encoder,
            decoder,
            config: cfg.clone(),
            device: vb.device().clone(),
            dataset: None,
            binarize: None,
            data_options: None,
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
            // Layer by layer in plan order, weight before bias: the order fixes which draws each tensor gets.
            for layer in cfg.plan().layers() {
                let bound = 1.0 / (layer.fan_in as f64).sqrt();
                for (name, shape) in [
                    (layer.weight_name(), layer.weight_shape().to_vec()),
                    (layer.bias_name(), vec![layer.fan_out]),
                ] {
                    let t = rng.uniform_dtype(shape, -bound, bound, dtype, device)?;
                    data.insert(name, candle_core::Var::from_tensor(&t)?);
                }
            }
        }
        let vae = Self::new(cfg, VarBuilder::from_varmap(&varmap, dtype, device))?;
        Ok((vae, varmap))
    }

    /// A model whose parameters are `tensors`, named as [`VaeConfig::parameter_shapes`] names them. A missing
    /// tensor or a wrong shape is an error naming it.
    pub fn from_tensors(
        cfg: &VaeConfig,
        tensors: std::collections::HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let dtype = tensors.values().next().map_or(DType::F32, Tensor::dtype);
        Self::new(cfg, VarBuilder::from_tensors(tensors, dtype, device))
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

    /// How the training images were binarised (`none`, `static` or `dynamic`), as recorded in its file; `None` for
    /// files written before the key existed.
    pub fn binarize(&self) -> Option<&str> {
        self.binarize.as_deref()
    }

    /// Records the training binarisation; [`Vae::save`] writes it to the file's metadata as `binarize`.
    pub fn set_binarize(&mut self, name: impl Into<String>) {
        self.binarize = Some(name.into());
    }

    /// How the training data was made from its source (a folder's image size, channels and split, as JSON), as
    /// recorded in its file's `data`; `None` for the built-in datasets, which need none.
    pub fn data_options(&self) -> Option<&str> {
        self.data_options.as_deref()
    }

    /// Records how the training data was made; [`Vae::save`] writes it to the file's metadata as `data`.
    pub fn set_data_options(&mut self, json: impl Into<String>) {
        self.data_options = Some(json.into());
    }

    /// Every parameter with its `state_dict` name, in the order of [`VaeConfig::parameter_shapes`].
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for layer in self.encoder.layers().chain(self.decoder.layers()) {
            layer.named_tensors(&mut out);
        }
        out
    }

    /// The label input of a conditional model of C classes ([`VaeConfig::label_dim`]), `[B, C]` in the model's
    /// dtype: class indices `[B]` (u32) become one-hot rows; float rows `[B, C]` (class weights, e.g. a blend of two
    /// classes) pass as they
    /// are. `None` for an unconditional model, which ignores labels; a conditional model without labels, or with a
    /// class outside 0..C, is an error.
    pub fn label_input(&self, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        let classes = self.config.label_dim();
        if classes == 0 {
            return Ok(None);
        }
        let Some(labels) = labels else {
            candle_core::bail!(
                "this model is conditional: it needs the label (class 0-{}) of each image",
                classes - 1
            )
        };
        let dtype = self.encoder.mu.linear.weight().dtype();
        if labels.rank() == 2 {
            if labels.dim(1)? != classes {
                candle_core::bail!(
                    "label rows have {} columns; this model has {classes} classes",
                    labels.dim(1)?
                );
            }
            return Ok(Some(labels.to_dtype(dtype)?));
        }
        let indices = labels.to_dtype(DType::U32)?;
        if let Some(bad) = indices
            .to_vec1::<u32>()?
            .into_iter()
            .find(|&c| c as usize >= classes)
        {
            candle_core::bail!(
                "label {bad} is not a class of this model (0-{})",
                classes - 1
            );
        }
        let eye = Tensor::eye(classes, dtype, labels.device())?;
        Ok(Some(
            eye.index_select(&indices.to_device(labels.device())?, 0)?,
        ))
    }

    /// `t [B, n]` with the label input appended (`[B, n + C]`) for a conditional model; `t` otherwise.
    fn with_labels(&self, t: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        match self.label_input(labels)? {
            Some(y) => Tensor::cat(&[t, &y.to_device(t.device())?], 1),
            None => Ok(t.clone()),
        }
    }

    /// q(z | x): `(mu, logvar)` for images `x [B, input_dim]` (and, for a conditional model, their `labels`; see
    /// [`Vae::label_input`]).
    pub fn encode(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.encoder.forward(&self.with_labels(x, labels)?)
    }

    /// The reparameterisation trick: `z = mu + σ · eps` with `σ = exp(logvar / 2)` and `eps ~ N(0, I)` drawn outside.
    ///
    /// Writing the sample as a deterministic function of (mu, logvar) and independent noise is what lets gradients
    /// of the ELBO flow back into the encoder.
    pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let std = (logvar * 0.5)?.exp()?;
        mu + std.mul(eps)?
    }

    /// p(x | z) as the decoder's raw output (pixel logits for the Bernoulli decoder; see [`VaeOutput::logits`]),
    /// under `labels` for a conditional model.
    pub fn decode(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        self.decoder.forward(&self.with_labels(z, labels)?)
    }

    /// The mean of p(x | z) `[B, input_dim]` in [0, 1] (for the Bernoulli decoder, the sigmoid of the logits):
    /// what a picture shows.
    pub fn decode_probs(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let cfg = &self.config;
        crate::likelihood::mean(cfg.likelihood, cfg.sigma, &self.decode(z, labels)?)
    }

    /// One draw of each value from p(x | z) `[B, input_dim]` in [0, 1] (see [`crate::likelihood::sample`]): what
    /// `--sample-pixels` shows in place of the mean.
    pub fn decode_sample(
        &self,
        z: &Tensor,
        labels: Option<&Tensor>,
        rng: &mut crate::VaeRng,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        crate::likelihood::sample(cfg.likelihood, cfg.sigma, &self.decode(z, labels)?, rng)
    }

    /// Encode, sample z with noise `eps` of shape `[B, latent_dim]`, decode.
    pub fn forward_with_noise(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        eps: &Tensor,
    ) -> Result<VaeOutput> {
        let (mu, logvar) = self.encode(x, labels)?;
        let z = Self::reparameterize(&mu, &logvar, eps)?;
        let logits = self.decode(&z, labels)?;
        Ok(VaeOutput {
            logits,
            mu,
            logvar,
            z,
            likelihood: self.config.likelihood,
            sigma: self.config.sigma,
        })
    }

    /// One stochastic forward pass, with the noise drawn from `rng`.
    pub fn forward(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        rng: &mut VaeRng,
    ) -> Result<VaeOutput> {
        let eps = self.noise(x.dim(0)?, rng)?;
        self.forward_with_noise(x, labels, &eps)
    }

    /// `n` draws of `eps ~ N(0, I)` in the model's dtype and device.
    pub fn noise(&self, n: usize, rng: &mut VaeRng) -> Result<Tensor> {
        let dtype = self.encoder.mu.linear.weight().dtype();
        rng.normal((n, self.config.latent_dim), &self.device)?
            .to_dtype(dtype)
    }

    /// `n` images from the generative model: z ~ N(0, I) from `rng`, decoded to probabilities `[n, input_dim]`
    /// (under `labels [n]` for a conditional model).
    pub fn sample(&self, n: usize, labels: Option<&Tensor>, rng: &mut VaeRng) -> Result<Tensor> {
        self.decode_probs(&self.noise(n, rng)?, labels)
    }

    /// Deterministic reconstruction: decode the posterior mean of each image, as probabilities.
    pub fn reconstruct(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let (mu, _) = self.encode(x, labels)?;
        self.decode_probs(&mu, labels)
    }

    pub(crate) fn with_provenance(
        mut self,
        dataset: Option<String>,
        binarize: Option<String>,
    ) -> Self {
        self.dataset = dataset;
        self.binarize = binarize;
        self
    }
}
