//! A fused CPU training step for the MLP VAE: forward pass, hand-derived backward pass and an in-place Adam update
//! on flat `f32` buffers, with the large products done by one [`sgemm`] call each.
//!
//! It computes exactly what the autograd path computes (the tests compare the gradients), but it skips what a
//! general graph must do: allocating every intermediate, transposing weights for the backward products, computing
//! the input gradient of the first layer, and allocating Adam's temporaries. The autograd path (`--engine autograd`)
//! stays available and is the one used on GPUs.
//!
//! Notation for one batch of `B` images: encoder layers `h = act(x Wᵀ + b)`, one "head" layer whose output is
//! `[mu | logvar]`, `z = mu + exp(logvar/2)·ε`, decoder layers, and output logits `l`. With loss
//! `L = (1/B) Σ BCE(l, x) + β (1/B) Σ KL`:
//! - `∂L/∂l = (σ(l) − x) / B`
//! - through a layer `a = h_in Wᵀ + b`, `h = act(a)`: `∂a = ∂h ⊙ act'(a)`, `∂W = ∂aᵀ h_in`, `∂b = Σ_rows ∂a`,
//!   `∂h_in = ∂a W`
//! - `∂mu = ∂z + β mu / B`, `∂logvar = ∂z ε σ / 2 + β (σ² − 1) / (2B)` with `σ = exp(logvar/2)`.

mod kernels;
mod sgemm;

pub use sgemm::{backend as gemm_backend, sgemm};

use candle_core::{Tensor, Var};
use vae_model::{Activation, Likelihood, VaeConfig};

use crate::AdamConfig;
use kernels::{act_backward, activate, adam_update, bce_and_grad, AdamStep};

/// One dense layer with its gradient and Adam moments, weights `[fan_out, fan_in]` row-major as PyTorch stores them.
#[derive(Debug, Clone)]
struct Dense {
    fan_in: usize,
    fan_out: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
    mw: Vec<f32>,
    vw: Vec<f32>,
    mb: Vec<f32>,
    vb: Vec<f32>,
}

impl Dense {
    fn new(fan_in: usize, fan_out: usize) -> Self {
        let z = |n| vec![0f32; n];
        let (nw, nb) = (fan_in * fan_out, fan_out);
        Self {
            fan_in,
            fan_out,
            w: z(nw),
            b: z(nb),
            gw: z(nw),
            gb: z(nb),
            mw: z(nw),
            vw: z(nw),
            mb: z(nb),
            vb: z(nb),
        }
    }

    /// `out[rows, fan_out] = input[rows, fan_in] · Wᵀ + b`.
    fn forward(&self, input: &[f32], rows: usize, out: &mut [f32]) {
        let out = &mut out[..rows * self.fan_out];
        for row in out.chunks_exact_mut(self.fan_out) {
            row.copy_from_slice(&self.b);
        }
        sgemm(
            false,
            true,
            rows,
            self.fan_out,
            self.fan_in,
            input,
            &self.w,
            out,
            true,
        );
    }

    /// Gradients from `da[rows, fan_out]` (the gradient at the pre-activation) and the layer's input.
    fn backward_params(&mut self, da: &[f32], input: &[f32], rows: usize) {
        sgemm(
            true,
            false,
            self.fan_out,
            self.fan_in,
            rows,
            da,
            input,
            &mut self.gw,
            false,
        );
        self.gb.iter_mut().for_each(|g| *g = 0.0);
        for row in da[..rows * self.fan_out].chunks_exact(self.fan_out) {
            for (g, d) in self.gb.iter_mut().zip(row) {
                *g += d;
            }
        }
    }

    /// `d_input[rows, fan_in] = da[rows, fan_out] · W`.
    fn backward_input(&self, da: &[f32], rows: usize, d_input: &mut [f32]) {
        sgemm(
            false,
            false,
            rows,
            self.fan_in,
            self.fan_out,
            da,
            &self.w,
            d_input,
            false,
        );
    }
}

/// Per-image averages of one step's loss terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTerms {
    /// The objective `recon + β kl`.
    pub loss: f64,
    /// Reconstruction term (BCE).
    pub recon: f64,
    /// KL term.
    pub kl: f64,
}

/// The model, its Adam state and the scratch buffers of a training step.
#[derive(Debug, Clone)]
pub struct FusedVae {
    activation: Activation,
    latent: usize,
    input_dim: usize,
    encoder: Vec<Dense>,
    head: Dense,
    decoder: Vec<Dense>,
    out: Dense,
    adam: AdamConfig,
    step: u64,
    // Activations of the last forward pass, `[rows, width]` each.
    enc_h: Vec<Vec<f32>>,
    head_out: Vec<f32>,
    sigma: Vec<f32>,
    z: Vec<f32>,
    dec_h: Vec<Vec<f32>>,
    logits: Vec<f32>,
    // Gradient scratch.
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    grad_head: Vec<f32>,
}

/// Whether the fused engine can train this model.
pub fn supports(cfg: &VaeConfig) -> bool {
    matches!(cfg.likelihood, Likelihood::Bernoulli)
}

impl FusedVae {
    /// Zero-initialised buffers for `cfg`; load weights with [`FusedVae::load_params`].
    pub fn new(cfg: &VaeConfig, adam: AdamConfig) -> Self {
        let mut encoder = Vec::new();
        let mut fan_in = cfg.input_dim;
        for &h in &cfg.hidden_dims {
            encoder.push(Dense::new(fan_in, h));
            fan_in = h;
        }
        let head = Dense::new(fan_in, 2 * cfg.latent_dim);
        let mut decoder = Vec::new();
        let mut fan_in = cfg.latent_dim;
        for &h in cfg.hidden_dims.iter().rev() {
            decoder.push(Dense::new(fan_in, h));
            fan_in = h;
        }
        let out = Dense::new(fan_in, cfg.input_dim);
        Self {
            activation: cfg.activation,
            latent: cfg.latent_dim,
            input_dim: cfg.input_dim,
            enc_h: vec![Vec::new(); encoder.len()],
            dec_h: vec![Vec::new(); decoder.len()],
            encoder,
            head,
            decoder,
            out,
            adam,
            step: 0,
            head_out: Vec::new(),
            sigma: Vec::new(),
            z: Vec::new(),
            logits: Vec::new(),
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            grad_head: Vec::new(),
        }
    }

    /// Dimension of z.
    pub fn latent_dim(&self) -> usize {
        self.latent
    }

    /// Adam steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The `(tensor name, layer, is_bias, row offset)` of every parameter. The head layer holds `encoder.mu` in its
    /// first `latent` rows and `encoder.logvar` in the rest.
    fn slots(&self) -> Vec<(String, LayerId, bool, usize)> {
        let mut out = Vec::new();
        let mut add = |name: String, id: LayerId, row0: usize| {
            out.push((format!("{name}.weight"), id, false, row0));
            out.push((format!("{name}.bias"), id, true, row0));
        };
        for i in 0..self.encoder.len() {
            add(format!("encoder.hidden.{i}"), LayerId::Encoder(i), 0);
        }
        add("encoder.mu".into(), LayerId::Head, 0);
        add("encoder.logvar".into(), LayerId::Head, self.latent);
        for i in 0..self.decoder.len() {
            add(format!("decoder.hidden.{i}"), LayerId::Decoder(i), 0);
        }
        add("decoder.out".into(), LayerId::Out, 0);
        out
    }

    fn layer(&self, id: LayerId) -> &Dense {
        match id {
            LayerId::Encoder(i) => &self.encoder[i],
            LayerId::Head => &self.head,
            LayerId::Decoder(i) => &self.decoder[i],
            LayerId::Out => &self.out,
        }
    }

    fn layer_mut(&mut self, id: LayerId) -> &mut Dense {
        match id {
            LayerId::Encoder(i) => &mut self.encoder[i],
            LayerId::Head => &mut self.head,
            LayerId::Decoder(i) => &mut self.decoder[i],
            LayerId::Out => &mut self.out,
        }
    }

    /// The element range of parameter `slot` inside its layer's weight or bias buffer.
    fn range(&self, id: LayerId, bias: bool, row0: usize) -> std::ops::Range<usize> {
        let l = self.layer(id);
        let rows = if matches!(id, LayerId::Head) {
            self.latent
        } else {
            l.fan_out
        };
        let width = if bias { 1 } else { l.fan_in };
        row0 * width..(row0 + rows) * width
    }

    fn buffer(&mut self, id: LayerId, bias: bool, which: Buf) -> &mut Vec<f32> {
        let l = self.layer_mut(id);
        match (bias, which) {
            (false, Buf::Value) => &mut l.w,
            (false, Buf::M) => &mut l.mw,
            (false, Buf::V) => &mut l.vw,
            (true, Buf::Value) => &mut l.b,
            (true, Buf::M) => &mut l.mb,
            (true, Buf::V) => &mut l.vb,
        }
    }

    /// Copies the values of named parameters (as `vae_model` names them) into the buffers.
    pub fn load_params(&mut self, params: &[(String, Var)]) -> candle_core::Result<()> {
        self.load_named(Buf::Value, |name| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_tensor().clone())
        })
    }

    /// Restores Adam moments named `m.<param>` / `v.<param>` and the step count.
    pub fn load_adam(
        &mut self,
        step: u64,
        get: impl Fn(&str) -> Option<Tensor>,
    ) -> candle_core::Result<()> {
        self.load_named(Buf::M, |name| get(&format!("m.{name}")))?;
        self.load_named(Buf::V, |name| get(&format!("v.{name}")))?;
        self.step = step;
        Ok(())
    }

    fn load_named(
        &mut self,
        which: Buf,
        get: impl Fn(&str) -> Option<Tensor>,
    ) -> candle_core::Result<()> {
        for (name, id, bias, row0) in self.slots() {
            let t = get(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no tensor for `{name}`")))?;
            let values = t
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            let range = self.range(id, bias, row0);
            if values.len() != range.len() {
                return Err(candle_core::Error::Msg(format!(
                    "`{name}` has {} values, expected {}",
                    values.len(),
                    range.len()
                )));
            }
            self.buffer(id, bias, which)[range].copy_from_slice(&values);
        }
        Ok(())
    }

    /// Writes the current weights into the matching candle variables (for evaluation, saving, checkpoints).
    pub fn store_params(&mut self, params: &[(String, Var)]) -> candle_core::Result<()> {
        let slots = self.slots();
        for (name, var) in params {
            let (_, id, bias, row0) = slots.iter().find(|(n, ..)| n == name).ok_or_else(|| {
                candle_core::Error::Msg(format!("the fused engine has no parameter `{name}`"))
            })?;
            let range = self.range(*id, *bias, *row0);
            let values = self.buffer(*id, *bias, Buf::Value)[range].to_vec();
            var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
        }
        Ok(())
    }

    /// Adam moments as `m.<param>` / `v.<param>` tensors, as [`crate::Adam::state_tensors`] names them.
    pub fn adam_tensors(&mut self) -> candle_core::Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (name, id, bias, row0) in self.slots() {
            let range = self.range(id, bias, row0);
            let rows = range.len() / if bias { 1 } else { self.layer(id).fan_in };
            let shape: Vec<usize> = if bias {
                vec![rows]
            } else {
                vec![rows, self.layer(id).fan_in]
            };
            for (prefix, which) in [("m", Buf::M), ("v", Buf::V)] {
                let values = self.buffer(id, bias, which)[range.clone()].to_vec();
                out.push((
                    format!("{prefix}.{name}"),
                    Tensor::from_vec(values, shape.as_slice(), &candle_core::Device::Cpu)?,
                ));
            }
        }
        Ok(out)
    }

    fn ensure_capacity(&mut self, rows: usize) {
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        for (h, l) in self.enc_h.iter_mut().zip(&self.encoder) {
            grow(h, rows * l.fan_out);
        }
        for (h, l) in self.dec_h.iter_mut().zip(&self.decoder) {
            grow(h, rows * l.fan_out);
        }
        grow(&mut self.head_out, rows * 2 * self.latent);
        grow(&mut self.grad_head, rows * 2 * self.latent);
        grow(&mut self.sigma, rows * self.latent);
        grow(&mut self.z, rows * self.latent);
        grow(&mut self.logits, rows * self.input_dim);
        let widest = self
            .encoder
            .iter()
            .chain(&self.decoder)
            .map(|l| l.fan_out)
            .max()
            .unwrap_or(0)
            .max(self.latent);
        grow(&mut self.grad_a, rows * widest);
        grow(&mut self.grad_b, rows * widest);
    }

    /// Computes the gradients of `recon + beta·kl` for a batch `x [rows, input_dim]` with noise `eps [rows, latent]`,
    /// leaving them in the layers' gradient buffers. Returns the loss terms.
    pub fn forward_backward(
        &mut self,
        x: &[f32],
        eps: &[f32],
        rows: usize,
        beta: f64,
    ) -> StepTerms {
        assert_eq!(x.len(), rows * self.input_dim, "batch size");
        assert_eq!(eps.len(), rows * self.latent, "noise size");
        self.ensure_capacity(rows);
        let act = self.activation;
        let zdim = self.latent;
        let inv_b = 1.0 / rows as f32;
        let beta32 = beta as f32;

        // Encoder.
        for i in 0..self.encoder.len() {
            let (done, rest) = self.enc_h.split_at_mut(i);
            let input: &[f32] = if i == 0 { x } else { &done[i - 1] };
            self.encoder[i].forward(input, rows, &mut rest[0]);
            activate(&mut rest[0][..rows * self.encoder[i].fan_out], act);
        }
        let last_h: &[f32] = self.enc_h.last().map_or(x, |h| h.as_slice());
        self.head.forward(last_h, rows, &mut self.head_out);

        // Reparameterise; KL in closed form.
        let mut kl = 0f64;
        for r in 0..rows {
            let head = &self.head_out[r * 2 * zdim..(r + 1) * 2 * zdim];
            let (mu, logvar) = head.split_at(zdim);
            for j in 0..zdim {
                let s = (0.5 * logvar[j]).exp();
                self.sigma[r * zdim + j] = s;
                self.z[r * zdim + j] = mu[j] + s * eps[r * zdim + j];
                kl += -0.5 * (1.0 + logvar[j] - mu[j] * mu[j] - s * s) as f64;
            }
        }

        // Decoder.
        for i in 0..self.decoder.len() {
            let (done, rest) = self.dec_h.split_at_mut(i);
            let input: &[f32] = if i == 0 { &self.z } else { &done[i - 1] };
            self.decoder[i].forward(input, rows, &mut rest[0]);
            activate(&mut rest[0][..rows * self.decoder[i].fan_out], act);
        }
        let last_g: &[f32] = self.dec_h.last().map_or(&self.z, |h| h.as_slice());
        self.out.forward(last_g, rows, &mut self.logits);

        // BCE with logits, and its gradient σ(l) − x written over the logits.
        let recon = bce_and_grad(&mut self.logits[..rows * self.input_dim], x, inv_b);

        // Output layer and decoder, backwards. `grad_a` holds ∂ at the current layer's output.
        let last_g: &[f32] = self.dec_h.last().map_or(&self.z, |h| h.as_slice());
        self.out.backward_params(&self.logits, last_g, rows);
        self.out
            .backward_input(&self.logits, rows, &mut self.grad_a);
        for i in (0..self.decoder.len()).rev() {
            let width = self.decoder[i].fan_out;
            act_backward(
                &mut self.grad_a[..rows * width],
                &self.dec_h[i][..rows * width],
                act,
            );
            let input: &[f32] = if i == 0 { &self.z } else { &self.dec_h[i - 1] };
            self.decoder[i].backward_params(&self.grad_a, input, rows);
            self.decoder[i].backward_input(&self.grad_a, rows, &mut self.grad_b);
            std::mem::swap(&mut self.grad_a, &mut self.grad_b);
        }

        // Through the reparameterisation into [∂mu | ∂logvar].
        for r in 0..rows {
            let head = &self.head_out[r * 2 * zdim..(r + 1) * 2 * zdim];
            let g = &mut self.grad_head[r * 2 * zdim..(r + 1) * 2 * zdim];
            for j in 0..zdim {
                let k = r * zdim + j;
                let (dz, s, mu) = (self.grad_a[k], self.sigma[k], head[j]);
                g[j] = dz + beta32 * mu * inv_b;
                g[zdim + j] = 0.5 * dz * eps[k] * s + 0.5 * beta32 * (s * s - 1.0) * inv_b;
            }
        }
        let last_h: &[f32] = self.enc_h.last().map_or(x, |h| h.as_slice());
        self.head.backward_params(&self.grad_head, last_h, rows);
        if !self.encoder.is_empty() {
            self.head
                .backward_input(&self.grad_head, rows, &mut self.grad_a);
        }
        for i in (0..self.encoder.len()).rev() {
            let width = self.encoder[i].fan_out;
            act_backward(
                &mut self.grad_a[..rows * width],
                &self.enc_h[i][..rows * width],
                act,
            );
            let input: &[f32] = if i == 0 { x } else { &self.enc_h[i - 1] };
            self.encoder[i].backward_params(&self.grad_a, input, rows);
            // The gradient with respect to the images themselves is never needed.
            if i > 0 {
                self.encoder[i].backward_input(&self.grad_a, rows, &mut self.grad_b);
                std::mem::swap(&mut self.grad_a, &mut self.grad_b);
            }
        }

        let (recon, kl) = (recon / rows as f64, kl / rows as f64);
        StepTerms {
            loss: recon + beta * kl,
            recon,
            kl,
        }
    }

    /// One Adam update from the gradients of the last [`FusedVae::forward_backward`].
    pub fn adam_step(&mut self) {
        self.step += 1;
        let AdamConfig {
            beta1, beta2, eps, ..
        } = self.adam;
        let (step_size, bc2_sqrt) = self.adam.corrections(self.step);
        let c = AdamStep {
            beta1: beta1 as f32,
            one_minus_beta1: (1.0 - beta1) as f32,
            beta2: beta2 as f32,
            one_minus_beta2: (1.0 - beta2) as f32,
            step_size: step_size as f32,
            inv_sqrt_bc2: (1.0 / bc2_sqrt) as f32,
            eps: eps as f32,
        };
        for l in self
            .encoder
            .iter_mut()
            .chain([&mut self.head])
            .chain(self.decoder.iter_mut())
            .chain([&mut self.out])
        {
            adam_update(&mut l.w, &l.gw, &mut l.mw, &mut l.vw, c);
            adam_update(&mut l.b, &l.gb, &mut l.mb, &mut l.vb, c);
        }
    }

    /// A training step: gradients, then Adam.
    pub fn train_step(&mut self, x: &[f32], eps: &[f32], rows: usize, beta: f64) -> StepTerms {
        let terms = self.forward_backward(x, eps, rows, beta);
        self.adam_step();
        terms
    }

    /// The gradient of every parameter after [`FusedVae::forward_backward`], by `vae_model` name (for tests).
    pub fn gradients(&mut self) -> Vec<(String, Vec<f32>)> {
        self.slots()
            .into_iter()
            .map(|(name, id, bias, row0)| {
                let range = self.range(id, bias, row0);
                let l = self.layer(id);
                let g = if bias { &l.gb } else { &l.gw };
                (name, g[range].to_vec())
            })
            .collect()
    }
}

/// Which of a parameter's buffers: its value, or Adam's first or second moment.
#[derive(Debug, Clone, Copy)]
enum Buf {
    Value,
    M,
    V,
}

#[derive(Debug, Clone, Copy)]
enum LayerId {
    Encoder(usize),
    Head,
    Decoder(usize),
    Out,
}
