//! The evidence lower bound and its two terms.
//!
//! For one image, log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) =: ELBO. Training minimises −ELBO, which is the
//! reconstruction cost (BCE, a negative log-likelihood) plus the KL divergence from the approximate posterior to
//! the N(0, I) prior. Both are summed over pixels / latent dims and averaged over the batch: nats per image.

use candle_core::{Result, Tensor, D};

use crate::likelihood::{bce_with_logits, log_density, log_likelihood};
use crate::{Likelihood, Vae, VaeOutput};

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
        Likelihood::Bernoulli => (bce_summed(&out.logits, x, Tensor::sum_all)? / batch)?,
        other => (log_density(other, out.sigma, &out.logits, x)?.sum_all()? / -batch)?,
    };
    let kl = (kl_divergence(&out.mu, &out.logvar)?.sum_all()? / batch)?;
    let loss = if beta == 1.0 {
        (&recon + &kl)?
    } else {
        (&recon + (&kl * beta)?)?
    };
    Ok(ElboTerms { recon, kl, loss })
}

/// `sum(bce_with_logits(logits, targets))`, where `sum` reduces over all elements or over each row, with its
/// gradient with respect to the logits taken in closed form, `σ(l) − t`.
///
/// Differentiating [`bce_with_logits`]'s ten element-wise ops takes some thirty more, each a pass over every pixel
/// of the batch: two thirds of a CPU training step. Here the value is computed without a graph, and the graph holds
/// `S − S.detach()` (exactly 0, so the value is [`bce_with_logits`]'s bit for bit) with `S = sum(l ⊙ (σ(l) − t))`,
/// whose gradient is `σ(l) − t`. Only ops that every backend has.
fn bce_summed(
    logits: &Tensor,
    targets: &Tensor,
    sum: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let value = sum(&bce_with_logits(&logits.detach(), targets)?)?;
    if !logits.track_op() {
        return Ok(value);
    }
    let grad = (candle_nn::ops::sigmoid(&logits.detach())? - targets)?;
    let carrier = sum(&logits.mul(&grad)?)?;
    value + (&carrier - carrier.detach())?
}

/// KL(N(mu, exp(logvar)) ‖ N(0, 1)) per latent dimension: `−½ (1 + logvar − mu² − exp(logvar))`.
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let inner = (((logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?)?;
    inner * -0.5
}

/// log w = log p(x|z) + log p(z) − log q(z|x) for each row of a forward pass with noise `eps` (`z = mu + σ·eps`):
/// the importance weight of z for its image. In closed form, `−Σ BCE − ½ Σ z² + ½ Σ (logvar + eps²)` (the
/// `½ log 2π` of p(z) and q(z|x) cancel).
///
/// # Shapes
/// `x [N, input_dim]`, `out` for `N` rows, `eps [N, latent_dim]` → `[N]`.
pub fn log_importance_weights(x: &Tensor, out: &VaeOutput, eps: &Tensor) -> Result<Tensor> {
    let log_px_z = match out.likelihood {
        Likelihood::Bernoulli => bce_summed(&out.logits, x, |t| t.sum(D::Minus1))?.neg()?,
        other => log_likelihood(other, out.sigma, &out.logits, x)?,
    };
    let log_p_over_q = ((out.logvar.broadcast_add(&eps.sqr()?)?.sum(D::Minus1)?
        - out.z.sqr()?.sum(D::Minus1)?)?
        * 0.5)?;
    log_px_z + log_p_over_q
}

/// The importance-weighted bound of Burda, Grosse & Salakhutdinov (2016), as a loss:
/// `−(1/B) Σ_images log (1/k) Σ_i w_i`, with `k = eps.dim(0) / B` samples per image. With k = 1 it is −ELBO with
/// the KL estimated from the sample; as k grows it tightens towards −log p(x). Its gradient weights each sample's
/// by its normalised importance weight.
///
/// `recon` and `kl` are the per-sample averages of BCE and of log q(z|x) − log p(z) (their sum is the k = 1 bound).
///
/// # Shapes
/// `x [B, input_dim]`; `labels [B]` for a conditional model (see [`Vae::label_input`]); `eps [k·B, latent_dim]`,
/// sample-major: row `s·B + b` is sample `s` of image `b`.
pub fn iwae_bound(
    vae: &Vae,
    x: &Tensor,
    labels: Option<&Tensor>,
    eps: &Tensor,
) -> Result<ElboTerms> {
    let (batch, rows) = (x.dim(0)?, eps.dim(0)?);
    if batch == 0 || rows % batch != 0 {
        candle_core::bail!("iwae_bound: {rows} noise rows for {batch} images");
    }
    let k = rows / batch;
    let (mu, logvar) = vae.encode(x, labels)?;
    let y = vae
        .label_input(labels)?
        .map(|y| y.repeat((k, 1)))
        .transpose()?;
    let (mu, logvar, x) = (
        mu.repeat((k, 1))?,
        logvar.repeat((k, 1))?,
        x.repeat((k, 1))?,
    );
    let z = Vae::reparameterize(&mu, &logvar, eps)?;
    let out = VaeOutput {
        logits: vae.decode(&z, y.as_ref())?,
        mu,
        logvar,
        z,
        likelihood: vae.config().likelihood,
        sigma: vae.config().sigma,
    };
    let log_w = log_importance_weights(&x, &out, eps)?.reshape((k, batch))?;
    // log-sum-exp over the samples, shifted by a constant (hence detached) maximum.
    let max = log_w.max_keepdim(0)?.detach();
    let lse = (log_w.broadcast_sub(&max)?.exp()?.sum_keepdim(0)?.log()? + &max)?;
    let loss = ((lse.mean_all()? - (k as f64).ln())? * -1.0)?;
    let log_px = log_density(out.likelihood, out.sigma, &out.logits, &x)?;
    let recon = (log_px.sum_all()? / -(rows as f64))?;
    let kl = ((log_w.sum_all()? / rows as f64)? * -1.0 - &recon)?;
    Ok(ElboTerms { recon, kl, loss })
}
