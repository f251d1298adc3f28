//! Test-set evaluation: −ELBO with its terms, and an importance-weighted estimate of −log p(x).

use candle_core::{Result, Tensor, D};
use rand::RngCore;
use serde::Serialize;
use vae_data::Batcher;
use vae_model::{bce_with_logits, elbo, Vae, VaeRng};

/// Per-image averages over a dataset, in nats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ElboAverages {
    /// −ELBO.
    pub loss: f64,
    /// Reconstruction term.
    pub recon: f64,
    /// KL term.
    pub kl: f64,
}

/// Running sums of per-batch terms weighted by batch size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct ElboSums {
    loss: f64,
    recon: f64,
    kl: f64,
    n: usize,
}

impl ElboSums {
    /// Adds a batch of `n` images whose per-image averages are given.
    pub fn add(&mut self, n: usize, loss: f64, recon: f64, kl: f64) {
        self.loss += loss * n as f64;
        self.recon += recon * n as f64;
        self.kl += kl * n as f64;
        self.n += n;
    }

    /// Per-image averages.
    pub fn averages(&self) -> ElboAverages {
        let n = self.n.max(1) as f64;
        ElboAverages {
            loss: self.loss / n,
            recon: self.recon / n,
            kl: self.kl / n,
        }
    }
}

/// −ELBO of `vae` over every batch of `data`, one z per image drawn from `rng`.
pub fn evaluate(vae: &Vae, data: &Batcher, rng: &mut VaeRng) -> Result<ElboAverages> {
    let mut sums = ElboSums::default();
    // Its own stream, so noise never correlates with the binarisation draws.
    let mut noise_rng = VaeRng::seed_from(rng.next_u64());
    for batch in data.in_order(rng) {
        let (x, _) = batch.tensors().map_err(candle_core::Error::wrap)?;
        let out = vae.forward(&x, &mut noise_rng)?;
        let t = elbo(&x, &out)?;
        sums.add(
            x.dim(0)?,
            t.loss.to_scalar::<f32>()? as f64,
            t.recon.to_scalar::<f32>()? as f64,
            t.kl.to_scalar::<f32>()? as f64,
        );
    }
    Ok(sums.averages())
}

/// The importance-weighted bound (Burda et al. 2016) with `k` samples, averaged over `data`:
/// −log p(x) ≈ −log (1/k) Σ p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x). Tighter than −ELBO as k grows.
pub fn iw_nll(vae: &Vae, data: &Batcher, k: usize, rng: &mut VaeRng) -> Result<f64> {
    let mut total = 0.0;
    let mut n = 0usize;
    // Its own stream, so noise never correlates with the binarisation draws.
    let mut noise_rng = VaeRng::seed_from(rng.next_u64());
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(data.len() as u64);
        let style = "importance samples [{bar:30}] {pos}/{len} images ({elapsed}<{eta})";
        bar.set_style(indicatif::ProgressStyle::with_template(style).expect("static template"));
        bar
    });
    for batch in data.in_order(rng) {
        let (x, _) = batch.tensors().map_err(candle_core::Error::wrap)?;
        let b = x.dim(0)?;
        let (mu, logvar) = vae.encode(&x)?;
        // A running log-sum-exp over the samples: memory does not grow with k.
        let mut lse: Option<Tensor> = None;
        for _ in 0..k {
            let eps = vae.noise(b, &mut noise_rng)?;
            let z = Vae::reparameterize(&mu, &logvar, &eps)?;
            let log_px_z = bce_with_logits(&vae.decode(&z)?, &x)?
                .sum(D::Minus1)?
                .neg()?;
            let latent = z.dim(1)? as f64;
            let log_pz = ((z.sqr()?.sum(D::Minus1)? * -0.5)? - latent * half_log_2pi)?;
            let log_qz =
                (((eps.sqr()? + &logvar)?.sum(D::Minus1)? * -0.5)? - latent * half_log_2pi)?;
            let log_w = ((log_px_z + log_pz)? - log_qz)?.to_dtype(candle_core::DType::F64)?;
            lse = Some(match lse {
                None => log_w,
                Some(acc) => log_add_exp(&acc, &log_w)?,
            });
        }
        let Some(lse) = lse else { return Ok(f64::NAN) };
        let log_px = (lse - (k as f64).ln())?;
        total -= log_px.sum_all()?.to_scalar::<f64>()?;
        n += b;
        if let Some(bar) = &bar {
            bar.inc(b as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(total / n.max(1) as f64)
}

/// `log(exp(a) + exp(b))` element-wise, without overflow.
fn log_add_exp(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let max = a.maximum(b)?;
    let sum = ((a - &max)?.exp()? + (b - &max)?.exp()?)?;
    sum.log()? + max
}
