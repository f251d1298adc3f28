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
//!
//! A conditional model's halves read `[x | y]` and `[z | y]` (y the one-hot label): the encoder's input is copied
//! with the label appended, and the z rows are `latent + classes` wide with the label in the last columns, so every
//! product is the same as for a plain model with wider first layers. Only the first `latent` columns of `∂[z | y]`
//! are used.

mod iwae;
mod kernels;
mod sparse;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use vae_model::{Activation, LayerSpec, Likelihood, ScaleHead, Vae, VaeConfig};

use crate::config::Loss;
use crate::gemm::{self, sgemm, side_by_side, GemmShape, StepBackend};
use crate::metrics::StepTerms;
use crate::{AdamState, FlatAdam};
use kernels::{act_backward, activate, bce_and_grad};
use sparse::Nonzeros;

/// Where every parameter tensor lives in the engine's flat buffers, derived from [`VaeConfig::plan`]: all weights
/// in plan order, then all biases in plan order. Layers that sit side by side in the plan and read the same input
/// (the `mu` and `logvar` heads) thereby form one contiguous `[Σ fan_out, fan_in]` matrix, computed by one product.
/// The first layer's weight, when `transpose_first`, is kept as `Wᵀ [fan_in, fan_out]` (see [`sparse`]).
#[derive(Debug, Clone)]
struct Layout {
    /// `(name, shape, range)` in [`VaeConfig::parameter_shapes`] order.
    tensors: Vec<(String, Vec<usize>, Range<usize>)>,
    /// Weight and bias ranges of each plan layer, in plan order.
    layers: Vec<(Range<usize>, Range<usize>)>,
    transpose_first: bool,
    len: usize,
}

impl Layout {
    fn new(plan: &[&LayerSpec], transpose_first: bool) -> Self {
        let weights: usize = plan.iter().map(|l| l.fan_in * l.fan_out).sum();
        let (mut w0, mut b0) = (0, weights);
        let mut layers = Vec::with_capacity(plan.len());
        let mut tensors = Vec::with_capacity(2 * plan.len());
        for l in plan {
            let (w, b) = (w0..w0 + l.fan_in * l.fan_out, b0..b0 + l.fan_out);
            (w0, b0) = (w.end, b.end);
            tensors.push((l.weight_name(), l.weight_shape().to_vec(), w.clone()));
            tensors.push((l.bias_name(), vec![l.fan_out], b.clone()));
            layers.push((w, b));
        }
        Self {
            tensors,
            layers,
            transpose_first,
            len: b0,
        }
    }

    /// Whether the tensor at `index` (of [`Layout::tensors`]) is stored transposed.
    fn transposed(&self, index: usize) -> bool {
        self.transpose_first && index == 0
    }

    /// Copies named tensors, in `parameter_shapes` order, into `buf`.
    fn fill(&self, buf: &mut [f32], tensors: &[(String, Tensor)]) -> candle_core::Result<()> {
        assert_eq!(
            tensors.len(),
            self.tensors.len(),
            "one tensor per parameter"
        );
        for (i, ((name, _, range), (given, t))) in self.tensors.iter().zip(tensors).enumerate() {
            assert_eq!(name, given, "tensors in plan order");
            let t = if self.transposed(i) {
                t.t()?.contiguous()?
            } else {
                t.clone()
            };
            let values = t
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            buf[range.clone()].copy_from_slice(&values);
        }
        Ok(())
    }

    /// `buf` cut into its named tensors, on the CPU.
    fn tensors(&self, buf: &[f32]) -> candle_core::Result<Vec<(String, Tensor)>> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(i, (name, shape, range))| {
                let values = &buf[range.clone()];
                let t = if self.transposed(i) {
                    Tensor::from_slice(values, (shape[1], shape[0]), &Device::Cpu)?
                        .t()?
                        .contiguous()?
                } else {
                    Tensor::from_slice(values, shape.as_slice(), &Device::Cpu)?
                };
                Ok((name.clone(), t))
            })
            .collect()
    }
}

/// A layer's input rows: dense, or the nonzeros of a sparse batch (for a layer that keeps `Wᵀ`).
#[derive(Clone, Copy)]
enum Input<'a> {
    Dense(&'a [f32]),
    Sparse(&'a Nonzeros),
}

/// One matrix product of the step, `out = act(input · Wᵀ + b)`, over ranges of the flat buffers.
#[derive(Debug, Clone)]
struct Dense {
    fan_in: usize,
    fan_out: usize,
    w: Range<usize>,
    b: Range<usize>,
    activation: Option<Activation>,
    /// Whether `w` holds `Wᵀ [fan_in, fan_out]` (the first layer's, for its sparse input).
    transposed: bool,
}

impl Dense {
    /// The plan layers `first..=last` of `layout`, which must read the same input and be adjacent.
    fn span(plan: &[&LayerSpec], layout: &Layout, first: usize, last: usize) -> Self {
        let specs = &plan[first..=last];
        debug_assert!(specs.iter().all(|s| s.fan_in == specs[0].fan_in));
        Self {
            fan_in: specs[0].fan_in,
            fan_out: specs.iter().map(|s| s.fan_out).sum(),
            w: layout.layers[first].0.start..layout.layers[last].0.end,
            b: layout.layers[first].1.start..layout.layers[last].1.end,
            activation: specs[0].activation,
            transposed: first == 0 && layout.transpose_first,
        }
    }

    /// `out[rows, fan_out] = act(input[rows, fan_in] · Wᵀ + b)`.
    fn forward(&self, params: &[f32], input: Input, rows: usize, out: &mut [f32]) {
        let out = &mut out[..rows * self.fan_out];
        let (w, b) = (&params[self.w.clone()], &params[self.b.clone()]);
        match input {
            Input::Sparse(nz) => {
                let shape = product(false, false, rows, self.fan_out, self.fan_in);
                gemm::timing::sparse_product(
                    shape,
                    || nz.len(),
                    || sparse::forward(nz, w, b, self.fan_out, out),
                );
            }
            Input::Dense(x) => {
                for row in out.chunks_exact_mut(self.fan_out) {
                    row.copy_from_slice(b);
                }
                let (fan_in, fan_out, tb) = (self.fan_in, self.fan_out, !self.transposed);
                sgemm(product(false, tb, rows, fan_out, fan_in), x, w, out, true);
            }
        }
        if let Some(act) = self.activation {
            // Split across threads only where the work outweighs waking them (the estimator's thousands of rows).
            if out.len() >= 1 << 17 {
                out.par_chunks_mut(1 << 14).for_each(|c| activate(c, act));
            } else {
                activate(out, act);
            }
        }
    }

    /// Multiply-adds of a product of `rows`.
    fn work(&self, rows: usize) -> usize {
        rows * self.fan_in * self.fan_out
    }

    /// [`Dense::backward_params`] and, given `d_input`, [`Dense::backward_input`]: independent, so side by side in a
    /// pass whose largest product does `pass_work` multiply-adds, where that is enough ([`side_by_side`]).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        da: &[f32],
        input: Input,
        rows: usize,
        d_input: Option<&mut [f32]>,
        pass_work: usize,
    ) {
        let Some(d_input) = d_input else {
            return self.backward_params(grads, da, input, rows);
        };
        side_by_side(
            pass_work,
            || self.backward_params(grads, da, input, rows),
            || self.backward_input(params, da, rows, d_input),
        );
    }

    /// Weight and bias gradients into `grads` from `da[rows, fan_out]` (the gradient at the pre-activation) and
    /// the layer's input.
    fn backward_params(&self, grads: &mut [f32], da: &[f32], input: Input, rows: usize) {
        let gw = &mut grads[self.w.clone()];
        let (fan_in, fan_out) = (self.fan_in, self.fan_out);
        match input {
            Input::Sparse(nz) => {
                let shape = product(true, false, fan_in, fan_out, rows);
                gemm::timing::sparse_product(
                    shape,
                    || nz.len(),
                    || sparse::weight_grad(nz, da, fan_out, gw),
                );
            }
            Input::Dense(x) if self.transposed => sgemm(
                product(true, false, fan_in, fan_out, rows),
                x,
                da,
                gw,
                false,
            ),
            Input::Dense(x) => sgemm(
                product(true, false, fan_out, fan_in, rows),
                da,
                x,
                gw,
                false,
            ),
        }
        let gb = &mut grads[self.b.clone()];
        gb.iter_mut().for_each(|g| *g = 0.0);
        for row in da[..rows * self.fan_out].chunks_exact(self.fan_out) {
            for (g, d) in gb.iter_mut().zip(row) {
                *g += d;
            }
        }
    }

    /// `d_input[rows, fan_in] = da[rows, fan_out] · W`.
    fn backward_input(&self, params: &[f32], da: &[f32], rows: usize, d_input: &mut [f32]) {
        let w = &params[self.w.clone()];
        let (fan_in, fan_out, tb) = (self.fan_in, self.fan_out, self.transposed);
        sgemm(
            product(false, tb, rows, fan_in, fan_out),
            da,
            w,
            d_input,
            false,
        );
    }
}

/// The product `op(a)[m, k] · op(b)[k, n]`, `ta` and `tb` saying which operand is stored transposed.
fn product(ta: bool, tb: bool, m: usize, n: usize, k: usize) -> GemmShape {
    GemmShape {
        a_transposed: ta,
        b_transposed: tb,
        m,
        n,
        k,
    }
}

/// The model and its gradients as flat buffers, and the scratch of a step; the optimiser's moments are a
/// [`FlatAdam`] of the caller's, so that a model that only decodes needs none.
#[derive(Debug, Clone)]
pub struct FusedVae {
    config: VaeConfig,
    layout: Layout,
    encoder: Vec<Dense>,
    /// `mu` and `logvar` as one product: its output rows are `[mu | logvar]`.
    head: Dense,
    decoder: Vec<Dense>,
    out: Dense,
    params: Vec<f32>,
    grads: Vec<f32>,
    scratch: Scratch,
}

/// Activations of the last forward pass, `[rows, width]` each, and gradient buffers.
#[derive(Debug, Clone, Default)]
struct Scratch {
    enc_h: Vec<Vec<f32>>,
    head_out: Vec<f32>,
    sigma: Vec<f32>,
    /// The decoder's input rows `[z | y]`, [`FusedVae::dec_in`] wide (just z for a plain model).
    z: Vec<f32>,
    dec_h: Vec<Vec<f32>>,
    logits: Vec<f32>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
    grad_head: Vec<f32>,
    /// log w of each z row (IWAE).
    log_w: Vec<f64>,
    /// The nonzeros of the encoder's input, when [`Scratch::sparse_input`].
    nonzeros: Nonzeros,
    /// Whether the last [`FusedVae::encode`]'s input was sparse enough for [`sparse`]'s products.
    sparse_input: bool,
}

/// Whether the fused engine can train this model: see [`unsupported`].
pub fn supports(cfg: &VaeConfig) -> bool {
    unsupported(cfg).is_none()
}

/// What the fused engine lacks for this model, if anything: it trains dense models (no `conv`) with a Bernoulli
/// decoder, a log σ² head (a σ head, from an imported teaching model, trains through autograd) and an activation
/// whose slope its output gives (not SiLU).
pub fn unsupported(cfg: &VaeConfig) -> Option<&'static str> {
    if cfg.conv.is_some() {
        Some("convolutions")
    } else if cfg.likelihood != Likelihood::Bernoulli {
        Some("a decoder other than the Bernoulli")
    } else if cfg.scale_head != ScaleHead::Logvar {
        Some("a σ head")
    } else if cfg.activation == Activation::Silu {
        Some("SiLU")
    } else {
        None
    }
}

impl FusedVae {
    /// The engine for `vae`'s architecture, holding a copy of its parameters.
    pub fn new(vae: &Vae) -> candle_core::Result<Self> {
        let config = vae.config().clone();
        let plan = config.plan();
        let specs: Vec<&LayerSpec> = plan.layers().collect();
        let (n_enc, n_dec) = (plan.encoder.len(), plan.decoder.len());
        // Only a layer of its own can keep Wᵀ: the heads share one matrix.
        let layout = Layout::new(&specs, n_enc > 0);
        let head_at = n_enc; // `mu`, then `logvar`
        let dense = |i| Dense::span(&specs, &layout, i, i);
        let encoder: Vec<Dense> = (0..n_enc).map(dense).collect();
        let head = Dense::span(&specs, &layout, head_at, head_at + 1);
        let decoder: Vec<Dense> = (head_at + 2..head_at + 2 + n_dec).map(dense).collect();
        let out = dense(specs.len() - 1);
        let zeros = vec![0f32; layout.len];
        let mut params = zeros.clone();
        layout.fill(&mut params, &vae.named_tensors())?;
        let scratch = Scratch {
            enc_h: vec![Vec::new(); encoder.len()],
            dec_h: vec![Vec::new(); decoder.len()],
            ..Default::default()
        };
        Ok(Self {
            config,
            encoder,
            head,
            decoder,
            out,
            params,
            grads: zeros,
            layout,
            scratch,
        })
    }

    /// Dimension of z.
    pub fn latent_dim(&self) -> usize {
        self.config.latent_dim
    }

    /// Parameters in the flat buffers: the length of the [`FlatAdam`] that trains them.
    pub fn parameter_count(&self) -> usize {
        self.layout.len
    }

    /// The current parameters as a model on the CPU.
    pub fn to_vae(&self) -> candle_core::Result<Vae> {
        let tensors: HashMap<String, Tensor> =
            self.layout.tensors(&self.params)?.into_iter().collect();
        Vae::from_tensors(&self.config, tensors, &Device::Cpu)
    }

    /// `adam`'s step count and moments as tensors, in parameter order.
    pub fn adam_state(&self, adam: &FlatAdam) -> candle_core::Result<AdamState> {
        let (m, v) = adam.moments();
        let (m, v) = (self.layout.tensors(m)?, self.layout.tensors(v)?);
        Ok(AdamState {
            step: adam.step_count(),
            moments: m
                .into_iter()
                .zip(v)
                .map(|((_, m), (_, v))| (m, v))
                .collect(),
        })
    }

    /// Restores what [`FusedVae::adam_state`] returned into `adam` (shapes already checked by the caller).
    pub fn restore_adam(&self, adam: &mut FlatAdam, state: &AdamState) -> candle_core::Result<()> {
        let names = self.layout.tensors.iter().map(|(n, ..)| n.clone());
        let (m, v): (Vec<_>, Vec<_>) = names
            .zip(&state.moments)
            .map(|(n, (m, v))| ((n.clone(), m.clone()), (n, v.clone())))
            .unzip();
        let (mut m_flat, mut v_flat) = (vec![0f32; self.layout.len], vec![0f32; self.layout.len]);
        self.layout.fill(&mut m_flat, &m)?;
        self.layout.fill(&mut v_flat, &v)?;
        adam.restore(state.step, m_flat, v_flat);
        Ok(())
    }

    /// The gradient of every parameter after [`FusedVae::forward_backward`], by name.
    #[cfg(test)]
    pub(crate) fn gradients(&self) -> Vec<(String, Vec<f32>)> {
        let tensors = self.layout.tensors(&self.grads).unwrap();
        tensors
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect()
    }

    fn ensure_capacity(&mut self, rows: usize) {
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        let dec_in = self.dec_in();
        let (s, zdim) = (&mut self.scratch, self.config.latent_dim);
        for (h, l) in s.enc_h.iter_mut().zip(&self.encoder) {
            grow(h, rows * l.fan_out);
        }
        for (h, l) in s.dec_h.iter_mut().zip(&self.decoder) {
            grow(h, rows * l.fan_out);
        }
        grow(&mut s.head_out, rows * 2 * zdim);
        grow(&mut s.grad_head, rows * 2 * zdim);
        grow(&mut s.sigma, rows * zdim);
        grow(&mut s.z, rows * dec_in);
        grow(&mut s.logits, rows * self.config.input_dim);
        let widest = self
            .encoder
            .iter()
            .chain(&self.decoder)
            .map(|l| l.fan_out)
            .max()
            .unwrap_or(0);
        grow(&mut s.grad_a, rows * widest.max(dec_in));
        grow(&mut s.grad_b, rows * widest.max(dec_in));
    }

    /// Width of a decoder input row: the latent, plus the one-hot label of a conditional model.
    fn dec_in(&self) -> usize {
        self.config.latent_dim + self.config.label_dim()
    }

    /// The encoder's input: `x [rows, input_dim]` itself for a plain model, each row with its one-hot label
    /// appended for a conditional one.
    fn encoder_input<'a>(&self, x: &'a [f32], labels: &[u32], rows: usize) -> Cow<'a, [f32]> {
        let (dim, classes) = (self.config.input_dim, self.config.label_dim());
        if classes == 0 {
            return Cow::Borrowed(x);
        }
        let mut input = vec![0f32; rows * (dim + classes)];
        for (r, row) in input.chunks_exact_mut(dim + classes).enumerate() {
            row[..dim].copy_from_slice(&x[r * dim..(r + 1) * dim]);
            row[dim + labels[r] as usize] = 1.0;
        }
        Cow::Owned(input)
    }

    /// Writes the one-hot labels into the last columns of the `rows` decoder input rows, sample-major over `images`
    /// images (row `r` is image `r % images`). Nothing for a plain model.
    fn label_latents(&mut self, labels: &[u32], images: usize, rows: usize) {
        let (zdim, width) = (self.config.latent_dim, self.dec_in());
        if width == zdim {
            return;
        }
        for (r, row) in self.scratch.z[..rows * width]
            .chunks_exact_mut(width)
            .enumerate()
        {
            row[zdim..].fill(0.0);
            row[zdim + labels[r % images] as usize] = 1.0;
        }
    }

    /// The encoder and both heads on `x [rows, input_dim]`: `[mu | logvar]` rows into `head_out`, and
    /// `σ = exp(logvar/2)` into `sigma`.
    fn encode(&mut self, x: &[f32], rows: usize) {
        let (p, s, zdim) = (&self.params, &mut self.scratch, self.config.latent_dim);
        s.sparse_input = match self.encoder.first() {
            Some(first) if first.transposed => s.nonzeros.gather(x, rows, first.fan_in),
            _ => false,
        };
        for (i, layer) in self.encoder.iter().enumerate() {
            let (done, rest) = s.enc_h.split_at_mut(i);
            let input = match i {
                0 if s.sparse_input => Input::Sparse(&s.nonzeros),
                0 => Input::Dense(x),
                _ => Input::Dense(&done[i - 1]),
            };
            layer.forward(p, input, rows, &mut rest[0]);
        }
        let last_h: &[f32] = s.enc_h.last().map_or(x, |h| h.as_slice());
        self.head
            .forward(p, Input::Dense(last_h), rows, &mut s.head_out);
        for r in 0..rows {
            let logvar = &s.head_out[(2 * r + 1) * zdim..(2 * r + 2) * zdim];
            for (sd, lv) in s.sigma[r * zdim..(r + 1) * zdim].iter_mut().zip(logvar) {
                *sd = (0.5 * lv).exp();
            }
        }
    }

    /// The decoder on `[z | y] [rows, dec_in]`: logits into `logits`.
    fn decode(&mut self, rows: usize) {
        let (p, s) = (&self.params, &mut self.scratch);
        for (i, layer) in self.decoder.iter().enumerate() {
            let (done, rest) = s.dec_h.split_at_mut(i);
            let input: &[f32] = if i == 0 { &s.z } else { &done[i - 1] };
            layer.forward(p, Input::Dense(input), rows, &mut rest[0]);
        }
        let last_g: &[f32] = s.dec_h.last().map_or(&s.z, |h| h.as_slice());
        self.out
            .forward(p, Input::Dense(last_g), rows, &mut s.logits);
    }

    /// From the gradient at the logits (held in `logits`), the decoder's parameter gradients, and `∂[z | y]` in
    /// `grad_a` (rows [`FusedVae::dec_in`] wide).
    fn backward_decoder(&mut self, rows: usize) {
        let (p, s, g) = (&self.params, &mut self.scratch, &mut self.grads);
        let layers = || self.decoder.iter().chain([&self.out]);
        let work = layers().map(|l| l.work(rows)).max().unwrap_or(0);
        let last_g: &[f32] = s.dec_h.last().map_or(&s.z, |h| h.as_slice());
        let (input, d_input) = (Input::Dense(last_g), Some(s.grad_a.as_mut_slice()));
        self.out
            .backward(p, g, &s.logits, input, rows, d_input, work);
        for (i, layer) in self.decoder.iter().enumerate().rev() {
            let width = rows * layer.fan_out;
            if let Some(act) = layer.activation {
                act_backward(&mut s.grad_a[..width], &s.dec_h[i][..width], act);
            }
            let input = Input::Dense(if i == 0 { &s.z } else { &s.dec_h[i - 1] });
            let d_input = Some(s.grad_b.as_mut_slice());
            layer.backward(p, g, &s.grad_a, input, rows, d_input, work);
            std::mem::swap(&mut s.grad_a, &mut s.grad_b);
        }
    }

    /// From the gradient at `[mu | logvar]` (held in `grad_head`), the encoder's parameter gradients.
    fn backward_encoder(&mut self, x: &[f32], rows: usize) {
        let (p, s, g) = (&self.params, &mut self.scratch, &mut self.grads);
        let layers = || self.encoder.iter().chain([&self.head]);
        let work = layers().map(|l| l.work(rows)).max().unwrap_or(0);
        let last_h: &[f32] = s.enc_h.last().map_or(x, |h| h.as_slice());
        let (input, d_input) = (Input::Dense(last_h), Some(s.grad_a.as_mut_slice()));
        let d_input = d_input.filter(|_| !self.encoder.is_empty());
        self.head
            .backward(p, g, &s.grad_head, input, rows, d_input, work);
        for (i, layer) in self.encoder.iter().enumerate().rev() {
            let width = rows * layer.fan_out;
            if let Some(act) = layer.activation {
                act_backward(&mut s.grad_a[..width], &s.enc_h[i][..width], act);
            }
            let input = match i {
                0 if s.sparse_input => Input::Sparse(&s.nonzeros),
                0 => Input::Dense(x),
                _ => Input::Dense(&s.enc_h[i - 1]),
            };
            // The gradient with respect to the images themselves is never needed.
            let d_input = (i > 0).then_some(s.grad_b.as_mut_slice());
            layer.backward(p, g, &s.grad_a, input, rows, d_input, work);
            if i > 0 {
                std::mem::swap(&mut s.grad_a, &mut s.grad_b);
            }
        }
    }

    /// Computes the gradients of `recon + beta·kl` for a batch `x [rows, input_dim]` (with their `labels`, read by
    /// a conditional model) with noise `eps [rows, latent]`, leaving them in the gradient buffer. Returns the loss
    /// terms.
    pub fn forward_backward(
        &mut self,
        x: &[f32],
        labels: &[u32],
        eps: &[f32],
        rows: usize,
        beta: f64,
    ) -> StepTerms {
        self.check_batch(x, labels, rows);
        assert_eq!(eps.len(), rows * self.config.latent_dim, "noise size");
        self.ensure_capacity(rows);
        let (zdim, width) = (self.config.latent_dim, self.dec_in());
        let inv_b = 1.0 / rows as f32;
        let beta32 = beta as f32;

        let input = self.encoder_input(x, labels, rows);
        self.encode(&input, rows);
        // Reparameterise; KL in closed form.
        let s = &mut self.scratch;
        let mut kl = 0f64;
        for r in 0..rows {
            let head = &s.head_out[r * 2 * zdim..(r + 1) * 2 * zdim];
            let (mu, logvar) = head.split_at(zdim);
            for j in 0..zdim {
                let sd = s.sigma[r * zdim + j];
                s.z[r * width + j] = mu[j] + sd * eps[r * zdim + j];
                kl += -0.5 * (1.0 + logvar[j] - mu[j] * mu[j] - sd * sd) as f64;
            }
        }
        self.label_latents(labels, rows, rows);
        self.decode(rows);
        // BCE with logits, and its gradient σ(l) − x written over the logits.
        let s = &mut self.scratch;
        let recon = bce_and_grad(&mut s.logits[..rows * self.config.input_dim], x, inv_b);
        self.backward_decoder(rows);

        // Through the reparameterisation into [∂mu | ∂logvar].
        let s = &mut self.scratch;
        for r in 0..rows {
            let head = &s.head_out[r * 2 * zdim..(r + 1) * 2 * zdim];
            let gh = &mut s.grad_head[r * 2 * zdim..(r + 1) * 2 * zdim];
            for j in 0..zdim {
                let k = r * zdim + j;
                let (dz, sd, mu) = (s.grad_a[r * width + j], s.sigma[k], head[j]);
                gh[j] = dz + beta32 * mu * inv_b;
                gh[zdim + j] = 0.5 * dz * eps[k] * sd + 0.5 * beta32 * (sd * sd - 1.0) * inv_b;
            }
        }
        self.backward_encoder(&input, rows);

        let (recon, kl) = (recon / rows as f64, kl / rows as f64);
        StepTerms {
            loss: recon + beta * kl,
            recon,
            kl,
        }
    }

    /// Panics unless `x` holds `rows` images and, for a conditional model, `labels` one class each (the callers
    /// check labels where they enter).
    fn check_batch(&self, x: &[f32], labels: &[u32], rows: usize) {
        assert_eq!(x.len(), rows * self.config.input_dim, "batch size");
        if self.config.conditional {
            assert_eq!(labels.len(), rows, "one label per image");
            let classes = self.config.label_dim();
            assert!(
                labels.iter().all(|&c| (c as usize) < classes),
                "labels are classes"
            );
        }
    }

    /// Chooses the sgemm backend for training steps under `loss` by timing whole steps on each backend (see
    /// [`gemm::calibrate`]), on a copy of the model and the batch `x` of `rows` images (the run's first, so that its
    /// share of nonzeros decides the first layer's products as in the run): the model and every RNG of the run are
    /// untouched.
    pub fn calibrate_gemm(
        &self,
        x: &[f32],
        labels: &[u32],
        rows: usize,
        loss: Loss,
    ) -> StepBackend {
        let mut copy = self.clone();
        let mut eps = vec![0f32; loss.samples() * rows * self.config.latent_dim];
        vae_model::VaeRng::seed_from(0).fill_normal(&mut eps);
        let what = format!("training steps of {rows} images");
        gemm::calibrate(&what, || {
            copy.loss_and_gradients(x, labels, &eps, rows, loss);
        })
    }

    /// The gradients of `loss` on the batch `x [rows, input_dim]` with its `labels`, left in the gradient buffer;
    /// returns the loss terms. `eps` holds the noise: `[rows, latent]` for the ELBO, `[k·rows, latent]`
    /// (sample-major) for IWAE.
    pub fn loss_and_gradients(
        &mut self,
        x: &[f32],
        labels: &[u32],
        eps: &[f32],
        rows: usize,
        loss: Loss,
    ) -> StepTerms {
        match loss {
            Loss::Elbo { beta } => self.forward_backward(x, labels, eps, rows, beta),
            Loss::Iwae { k } => self.forward_backward_iwae(x, labels, eps, rows, k),
        }
    }

    /// A training step: [`FusedVae::loss_and_gradients`], then an update by `adam`.
    pub fn train_step(
        &mut self,
        adam: &mut FlatAdam,
        x: &[f32],
        labels: &[u32],
        eps: &[f32],
        rows: usize,
        loss: Loss,
    ) -> StepTerms {
        let terms = self.loss_and_gradients(x, labels, eps, rows, loss);
        adam.update(&mut self.params, &self.grads);
        terms
    }
}
