//! Encoder q(z|x), decoder p(x|z), and the VAE that joins them with the reparameterisation trick.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

use crate::{Block, Conv, Dense, LayerSpec, Likelihood, ScaleHead, VaeConfig, VaeRng};

/// The recognition model q(z | x): convolutions (if any), then an MLP whose last hidden layer feeds two linear
/// heads, the mean `mu` and the spread of a diagonal Gaussian over z. The spread head predicts log σ², which keeps
/// σ² positive without a constraint, or (imported teaching models, [`ScaleHead::Std`]) σ itself, whose log σ² the
/// encoder computes.
#[derive(Debug, Clone)]
pub struct Encoder {
    convs: Vec<Conv>,
    hidden: Vec<Dense>,
    mu: Dense,
    scale: Dense,
    scale_head: ScaleHead,
    input_dim: usize,
}

impl Encoder {
    /// Builds the encoder's layers of [`VaeConfig::plan`] from `vb` (tensors `conv.{i}`, `hidden.{i}`, `mu`,
    /// `logvar`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let plan = cfg.plan();
        let (convs, hidden) = split_layers(&plan.encoder, &vb)?;
        Ok(Self {
            convs,
            hidden,
            mu: Dense::new(&plan.mu, vb.clone())?,
            scale: Dense::new(&plan.scale, vb)?,
            scale_head: cfg.scale_head,
            input_dim: cfg.input_dim,
        })
    }

    /// # Shapes
    /// `x [B, input_dim]` (`[B, input_dim + C]`, the one-hot label of C classes appended, for a conditional model) to
    /// `(mu, logvar)`, each `[B, latent_dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = match self.convs.is_empty() {
            true => x.clone(),
            // The convolutions read the image; a label joins their flattened output.
            false => {
                let labels = x.dim(D::Minus1)? - self.input_dim;
                let image = x.narrow(D::Minus1, 0, self.input_dim)?;
                let h = self.convs.iter().try_fold(image, |h, l| l.forward(&h))?;
                match labels {
                    0 => h,
                    n => Tensor::cat(&[h, x.narrow(D::Minus1, self.input_dim, n)?], D::Minus1)?,
                }
            }
        };
        let h = self.hidden.iter().try_fold(h, |h, l| l.forward(&h))?;
        let scale = self.scale.forward(&h)?;
        let logvar = match self.scale_head {
            ScaleHead::Logvar => scale,
            // log σ², as the teaching code's KL takes it; the sign of σ does not matter to N(mu, σ²).
            ScaleHead::Std => scale.sqr()?.log()?,
        };
        Ok((self.mu.forward(&h)?, logvar))
    }

    fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
        self.convs.iter().for_each(|l| l.named_tensors(out));
        self.hidden.iter().for_each(|l| l.named_tensors(out));
        self.mu.named_tensors(out);
        self.scale.named_tensors(out);
    }
}

/// The generative model p(x | z): an MLP from z, then (for a convolutional model) transposed convolutions, to the
/// parameters of p(x | z), e.g. one logit per pixel. Logits rather than probabilities, so the loss can use the
/// numerically stable BCE-with-logits form.
#[derive(Debug, Clone)]
pub struct Decoder {
    dense: Vec<Dense>,
    convs: Vec<Conv>,
}

impl Decoder {
    /// Builds the decoder's layers of [`VaeConfig::plan`] from `vb` (tensors `hidden.{i}`, then `out`, or
    /// `project`, `deconv.{i}` and `out` for a convolutional model).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let plan = cfg.plan();
        let layers: Vec<LayerSpec> = plan.decoder.iter().chain([&plan.out]).cloned().collect();
        let (convs, dense) = split_layers(&layers, &vb)?;
        Ok(Self { dense, convs })
    }

    fn named_tensors(&self, out: &mut Vec<(String, Tensor)>) {
        self.dense.iter().for_each(|l| l.named_tensors(out));
        self.convs.iter().for_each(|l| l.named_tensors(out));
    }
}

impl Module for Decoder {
    /// # Shapes
    /// `z [B, latent_dim]` (`[B, latent_dim + C]` for a conditional model) to the decoder's output
    /// `[B, k·input_dim]` (see [`VaeOutput::logits`]).
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let h = self
            .dense
            .iter()
            .try_fold(z.clone(), |h, l| l.forward(&h))?;
        self.convs.iter().try_fold(h, |h, l| l.forward(&h))
    }
}

/// The (transposed) convolutions and the dense layers of `specs`, each in plan order: in a half of the model all
/// the convolutions come first (encoder) or last (decoder).
fn split_layers(specs: &[LayerSpec], vb: &VarBuilder) -> Result<(Vec<Conv>, Vec<Dense>)> {
    let (mut convs, mut dense) = (Vec::new(), Vec::new());
    for spec in specs {
        match Conv::new(spec, vb.clone())? {
            Some(conv) => convs.push(conv),
            None => dense.push(Dense::new(spec, vb.clone())?),
        }
    }
    Ok((convs, dense))
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
                let bound = layer.init_bound();
                for (name, shape) in [
                    (layer.weight_name(), layer.weight_shape()),
                    (layer.bias_name(), vec![layer.bias_len()]),
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
        self.encoder.named_tensors(&mut out);
        self.decoder.named_tensors(&mut out);
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
        let dtype = self.encoder.mu.weight().dtype();
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
        let dtype = self.encoder.mu.weight().dtype();
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
