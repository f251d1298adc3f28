//! Several z per image: the IWAE training step and the importance-weighted estimate of log p(x).
//!
//! With `k` samples of each of `B` images, the z rows are sample-major (row `s·B + b` is sample `s` of image `b`),
//! so the decoder runs once on `k·B` rows: one product per layer instead of `k`. Each row's importance weight is
//! `log w = −Σ BCE(l, x) + ½ Σ (logvar + ε² − z²)` (the `½ log 2π` of p(z) and q(z|x) cancel).
//!
//! The IWAE loss is `L = −(1/B) Σ_b log (1/k) Σ_s w_sb`. With the normalised weights `w̃ = w / Σ_s w` and
//! `a = w̃ / B`: `∂L/∂l = a (σ(l) − x)`, `∂L/∂z = a z` plus what comes back through the decoder,
//! `∂mu = Σ_s ∂z`, and `∂logvar = Σ_s ∂z ε σ / 2 − 1/(2B)` (the last from log q's `−½ logvar`, as Σ_s a = 1/B).

use rayon::prelude::*;
use vae_model::VaeRng;

use super::kernels::{bce_and_grad, bce_sum};
use super::FusedVae;
use crate::metrics::StepTerms;

/// Rows of z the estimator decodes at a time: large products, while the logits (rows × 784 floats, 6 MB) stay
/// small enough to reuse.
const ESTIMATE_ROWS: usize = 2048;

impl FusedVae {
    /// Computes the gradients of the `k`-sample IWAE loss for `x [images, input_dim]` (and their `labels`, for a
    /// conditional model) with noise `eps [k·images, latent]` (sample-major), leaving them in the gradient buffer.
    /// Returns the loss, and the samples' average BCE and log q(z|x) − log p(z).
    pub fn forward_backward_iwae(
        &mut self,
        x: &[f32],
        labels: &[u32],
        eps: &[f32],
        images: usize,
        k: usize,
    ) -> StepTerms {
        let (zdim, rows) = (self.config.latent_dim, k * images);
        self.check_batch(x, labels, images);
        assert_eq!(eps.len(), rows * zdim, "noise size");
        self.ensure_capacity(rows);
        let input = self.encoder_input(x, labels, images);
        self.encode(&input, images);
        self.reparameterize_samples(eps, images, rows);
        self.label_latents(labels, images, rows);
        self.decode(rows);

        let (recon, kl) = self.log_weights(x, eps, images, rows);
        let bound = self.normalise_weights(images, k);
        self.backward_decoder(rows);
        self.head_gradient(eps, images, rows);
        self.backward_encoder(&input, images);

        let n = rows as f64;
        StepTerms {
            loss: -bound / images as f64,
            recon: recon / n,
            kl: kl / n,
        }
    }

    /// log w per row into `log_w`, with σ(l) − x written over the logits; returns the rows' summed BCE and
    /// log q(z|x) − log p(z).
    fn log_weights(&mut self, x: &[f32], eps: &[f32], images: usize, rows: usize) -> (f64, f64) {
        let (dim, zdim, width) = (self.config.input_dim, self.config.latent_dim, self.dec_in());
        let s = &mut self.scratch;
        s.log_w.resize(rows, 0.0);
        let (mut recon, mut kl) = (0f64, 0f64);
        for r in 0..rows {
            let b = r % images;
            let logits = &mut s.logits[r * dim..(r + 1) * dim];
            let bce = bce_and_grad(logits, &x[b * dim..(b + 1) * dim], 1.0);
            let log_p_over_q = latent_log_ratio(&s.head_out, &s.z, eps, r, b, (zdim, width));
            s.log_w[r] = -bce + log_p_over_q;
            (recon, kl) = (recon + bce, kl - log_p_over_q);
        }
        (recon, kl)
    }

    /// Replaces log w by each image's normalised weights over its `k` samples, scaled by 1/B, and scales each row's
    /// gradient at the logits by its weight; returns the summed bound.
    fn normalise_weights(&mut self, images: usize, k: usize) -> f64 {
        let (dim, rows, s) = (self.config.input_dim, k * images, &mut self.scratch);
        let mut bound = 0f64;
        for b in 0..images {
            let lse = log_sum_exp((0..k).map(|s_| s.log_w[s_ * images + b]));
            bound += lse - (k as f64).ln();
            for s_ in 0..k {
                let w = &mut s.log_w[s_ * images + b];
                *w = (*w - lse).exp() / images as f64;
            }
        }
        for (row, &a) in s.logits.chunks_exact_mut(dim).zip(&s.log_w[..rows]) {
            row.iter_mut().for_each(|g| *g *= a as f32);
        }
        bound
    }

    /// The gradient at `[mu | logvar]` into `grad_head`, from `∂[z | y]` (in `grad_a`, after the decoder's backward
    /// pass) and the weights: each sample's path through the reparameterisation, and the entropy term of log q.
    fn head_gradient(&mut self, eps: &[f32], images: usize, rows: usize) {
        let (zdim, width, s) = (self.config.latent_dim, self.dec_in(), &mut self.scratch);
        s.grad_head[..images * 2 * zdim].fill(0.0);
        let half_inv_b = 0.5 / images as f32;
        for r in 0..rows {
            let (b, a) = (r % images, s.log_w[r] as f32);
            for j in 0..zdim {
                let i = r * width + j;
                let dz = s.grad_a[i] + a * s.z[i];
                s.grad_head[2 * b * zdim + j] += dz;
                s.grad_head[(2 * b + 1) * zdim + j] +=
                    0.5 * dz * eps[r * zdim + j] * s.sigma[b * zdim + j];
            }
        }
        for b in 0..images {
            let glv = &mut s.grad_head[(2 * b + 1) * zdim..(2 * b + 2) * zdim];
            glv.iter_mut().for_each(|g| *g -= half_inv_b);
        }
    }

    /// log p̂(x) = log (1/k) Σ_s w_s for each image of `x [images, input_dim]` (given its label, for a conditional
    /// model), with the noise drawn from `noise` as `k` blocks of `[images, latent]` in order (the stream
    /// [`crate::eval::iw_log_px`] draws). The samples are decoded in chunks with a running log-sum-exp, so memory
    /// does not grow with `k`.
    pub fn iw_log_px(
        &mut self,
        x: &[f32],
        labels: &[u32],
        images: usize,
        k: usize,
        noise: &mut VaeRng,
    ) -> Vec<f64> {
        let (dim, zdim, width) = (self.config.input_dim, self.config.latent_dim, self.dec_in());
        self.check_batch(x, labels, images);
        let per_chunk = (ESTIMATE_ROWS / images.max(1)).clamp(1, k.max(1));
        self.ensure_capacity(images.max(per_chunk * images));
        let input = self.encoder_input(x, labels, images);
        self.encode(&input, images);
        let mut eps = vec![0f32; per_chunk * images * zdim];
        // Running log-sum-exp per image: the maximum so far, and Σ exp(log w − maximum).
        let mut acc = vec![(f64::NEG_INFINITY, 0f64); images];
        let mut done = 0;
        while done < k {
            let rows = per_chunk.min(k - done) * images;
            noise.fill_normal(&mut eps[..rows * zdim]);
            self.reparameterize_samples(&eps, images, rows);
            self.label_latents(labels, images, rows);
            self.decode(rows);
            let s = &mut self.scratch;
            let (head, z) = (&s.head_out, &s.z);
            s.log_w.resize(rows, 0.0);
            s.logits[..rows * dim]
                .par_chunks(dim)
                .zip(s.log_w[..rows].par_iter_mut())
                .enumerate()
                .for_each(|(r, (logits, log_w))| {
                    let b = r % images;
                    let bce = bce_sum(logits, &x[b * dim..(b + 1) * dim]);
                    *log_w = -bce + latent_log_ratio(head, z, &eps, r, b, (zdim, width));
                });
            for (r, &w) in s.log_w[..rows].iter().enumerate() {
                let (max, sum) = &mut acc[r % images];
                if w > *max {
                    *sum = *sum * (*max - w).exp() + 1.0;
                    *max = w;
                } else {
                    *sum += (w - *max).exp();
                }
            }
            done += rows / images;
        }
        let ln_k = (k as f64).ln();
        acc.iter()
            .map(|&(max, sum)| max + sum.ln() - ln_k)
            .collect()
    }

    /// `z = mu + σ·ε` for `rows` sample-major rows of `images` images.
    fn reparameterize_samples(&mut self, eps: &[f32], images: usize, rows: usize) {
        let (zdim, width) = (self.config.latent_dim, self.dec_in());
        let s = &mut self.scratch;
        for r in 0..rows {
            let b = r % images;
            let mu = &s.head_out[2 * b * zdim..(2 * b + 1) * zdim];
            let sd = &s.sigma[b * zdim..(b + 1) * zdim];
            for j in 0..zdim {
                s.z[r * width + j] = mu[j] + sd[j] * eps[r * zdim + j];
            }
        }
    }
}

/// log p(z) − log q(z|x) of z row `r` (of image `b`): `½ Σ (logvar + ε² − z²)`. The z rows are `width` wide.
fn latent_log_ratio(
    head: &[f32],
    z: &[f32],
    eps: &[f32],
    r: usize,
    b: usize,
    (zdim, width): (usize, usize),
) -> f64 {
    let logvar = &head[(2 * b + 1) * zdim..(2 * b + 2) * zdim];
    let (z, eps) = (
        &z[r * width..r * width + zdim],
        &eps[r * zdim..(r + 1) * zdim],
    );
    let sum: f64 = (0..zdim)
        .map(|j| (logvar[j] + eps[j] * eps[j] - z[j] * z[j]) as f64)
        .sum();
    0.5 * sum
}

/// log Σ exp(v), without overflow.
fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}
