//! The evidence lower bound and its two terms.
//!
//! For one image, log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) =: ELBO. Training minimises −ELBO, which is the
//! reconstruction cost (BCE, a negative log-likelihood) plus the KL divergence from the approximate posterior to
//! the N(0, I) prior. Both are summed over pixels / latent dims and averaged over the batch: nats per image.

use candle_core::{Result, Tensor};

use crate::{Likelihood, VaeOutput};

/// The terms of −ELBO for a batch, each a scalar tensor in nats per image.
#[derive(Debug, Clone)]
pub struct ElboTerms {
    /// Reconstruction cost −E_q[log p(x|z)], estimated with one z per image.
    pub recon: Tensor,
    /// KL(q(z|x) ‖ N(0, I)), in closed form.
    pub kl: Tensor,
    /// The objective to minimise: `recon + beta * kl` (the plain −ELBO when beta = 1).
    pub loss: Tensor,
}

/// −ELBO (β = 1) of a forward pass against its targets `x [B, input_dim]` in [0, 1].
pub fn elbo(x: &Tensor, out: &VaeOutput) -> Result<ElboTerms> {
    beta_elbo(x, out, 1.0)
}

/// As [`elbo`], with the KL term weighted by `beta` (β-VAE, Higgins et al. 2017) in `loss`.
pub fn beta_elbo(x: &Tensor, out: &VaeOutput, beta: f64) -> Result<ElboTerms> {
    let batch = x.dim(0)? as f64;
    let recon = match out.likelihood {
        Likelihood::Bernoulli => (bce_with_logits(&out.logits, x)?.sum_all()? / batch)?,
    };
    let kl = (kl_divergence(&out.mu, &out.logvar)?.sum_all()? / batch)?;
    let loss = if beta == 1.0 {
        (&recon + &kl)?
    } else {
        (&recon + (&kl * beta)?)?
    };
    Ok(ElboTerms { recon, kl, loss })
}

/// Element-wise binary cross-entropy of `targets` under Bernoulli `logits`: −[t·log σ(l) + (1−t)·log(1−σ(l))].
///
/// Computed as `max(l, 0) − l·t + log(1 + exp(−|l|))`, which never takes the log of 0 nor exponentiates a large
/// number, so it is finite and exact for logits of ±100 where the naive form gives inf or NaN.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let softplus_tail = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - logits.mul(targets)?)? + softplus_tail
}

/// KL(N(mu, exp(logvar)) ‖ N(0, 1)) per latent dimension: `−½ (1 + logvar − mu² − exp(logvar))`.
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let inner = (((logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?)?;
    inner * -0.5
}
