//! Test-set evaluation: −ELBO with its terms, and an importance-weighted estimate of −log p(x).

use candle_core::{Result, Tensor};
use rand::RngCore;
use serde::Serialize;
use vae_data::Batcher;
use vae_model::{elbo, kl_divergence, log_importance_weights, Vae, VaeOutput, VaeRng};

use crate::fused::{self, FusedVae};

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
        let (x, labels) = batch.tensors().map_err(candle_core::Error::wrap)?;
        let out = crate::cpu::on_pool(|| vae.forward(&x, Some(&labels), &mut noise_rng))?;
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

/// The seed of the one binarisation of the test set that models trained with dynamic binarisation are evaluated on
/// (Burda et al.'s convention: the test set is binarised once, and the same every time).
pub const TEST_BINARIZE_SEED: u64 = 2016;

/// The first `subset` test images (all when `None`) in batches of 1000, binarised as `binarize` says; a dynamic
/// binarisation is drawn once from [`TEST_BINARIZE_SEED`].
pub fn test_batcher(
    data: &vae_data::Data,
    binarize: vae_data::Binarize,
    subset: Option<usize>,
    device: &candle_core::Device,
) -> Result<Batcher> {
    let n = data.test_images.dim(0)?;
    let keep = subset.unwrap_or(n).min(n);
    let (images, labels) = (
        data.test_images.narrow(0, 0, keep)?,
        data.test_labels.narrow(0, 0, keep)?,
    );
    let batcher = Batcher::new(&images, &labels, 1000, device).map_err(candle_core::Error::wrap)?;
    Ok(batcher
        .binarize(binarize)
        .frozen(&mut VaeRng::seed_from(TEST_BINARIZE_SEED)))
}

/// The importance-weighted estimate of −log p(x), with its standard error over images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IwEstimate {
    /// Mean over images of −log p̂(x), in nats.
    pub nll: f64,
    /// Standard error of that mean (the spread of the per-image estimates / √n).
    pub se: f64,
}

/// The importance-weighted bound (Burda et al. 2016) with `k` samples, averaged over `data`:
/// −log p(x) ≈ −log (1/k) Σ p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x). Tighter than −ELBO as k grows. For a
/// conditional model every term is given the image's label, so it estimates −log p(x | y).
///
/// On the CPU the samples are decoded as large products by the fused engine's sgemm
/// ([`FusedVae::iw_log_px`]); elsewhere by [`iw_log_px`]. Both draw the same noise and agree to f32 rounding.
pub fn iw_nll(vae: &Vae, data: &Batcher, k: usize, rng: &mut VaeRng) -> Result<IwEstimate> {
    let mut fused = match vae.device().is_cpu() && fused::supports(vae.config()) {
        true => Some(FusedVae::new(vae)?),
        false => None,
    };
    if vae.device().is_cpu() {
        crate::cpu::keep_freed_buffers();
    }
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0usize);
    // Its own stream, so noise never correlates with the binarisation draws.
    let mut noise_rng = VaeRng::seed_from(rng.next_u64());
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(data.len() as u64);
        let style = "importance samples [{bar:30}] {pos}/{len} images ({elapsed}<{eta})";
        bar.set_style(indicatif::ProgressStyle::with_template(style).expect("static template"));
        bar
    });
    for batch in data.in_order(rng) {
        let (x, labels) = batch.tensors().map_err(candle_core::Error::wrap)?;
        let log_px = match &mut fused {
            Some(f) => {
                let pixels = x.flatten_all()?.to_vec1()?;
                let rows = batch.rows();
                crate::cpu::on_pool(|| f.iw_log_px(&pixels, &batch.labels, rows, k, &mut noise_rng))
            }
            None => crate::cpu::on_pool(|| iw_log_px(vae, &x, Some(&labels), k, &mut noise_rng))?,
        };
        for nll in log_px.iter().map(|l| -l) {
            (sum, sum_sq, n) = (sum + nll, sum_sq + nll * nll, n + 1);
        }
        if let Some(bar) = &bar {
            bar.inc(x.dim(0)? as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let n = n.max(1) as f64;
    let mean = sum / n;
    let var = (sum_sq / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
    Ok(IwEstimate {
        nll: mean,
        se: (var / n).sqrt(),
    })
}

/// log p̂(x) = log (1/k) Σ w_i for each image of `x [b, input_dim]` (given its label, for a conditional model),
/// streamed over the samples with a running log-sum-exp, so memory does not grow with `k`. Draws `k` noise tensors
/// `[b, latent_dim]` from `noise`, in order.
pub fn iw_log_px(
    vae: &Vae,
    x: &Tensor,
    labels: Option<&Tensor>,
    k: usize,
    noise: &mut VaeRng,
) -> Result<Vec<f64>> {
    let b = x.dim(0)?;
    let (mu, logvar) = vae.encode(x, labels)?;
    let y = vae.label_input(labels)?;
    let mut lse: Option<Tensor> = None;
    for _ in 0..k {
        let eps = vae.noise(b, noise)?;
        let log_w = log_weight(vae, x, y.as_ref(), (&mu, &logvar), &eps)?;
        lse = Some(match lse {
            None => log_w,
            Some(acc) => log_add_exp(&acc, &log_w)?,
        });
    }
    match lse {
        Some(lse) => (lse - (k as f64).ln())?.to_vec1::<f64>(),
        None => Ok(vec![f64::NAN; b]),
    }
}

/// log w = log p(x|z) + log p(z) − log q(z|x) at z = mu + σ·eps, per image, in f64.
fn log_weight(
    vae: &Vae,
    x: &Tensor,
    labels: Option<&Tensor>,
    (mu, logvar): (&Tensor, &Tensor),
    eps: &Tensor,
) -> Result<Tensor> {
    let z = Vae::reparameterize(mu, logvar, eps)?;
    let out = VaeOutput {
        logits: vae.decode(&z, labels)?,
        mu: mu.clone(),
        logvar: logvar.clone(),
        z,
        likelihood: vae.config().likelihood,
        sigma: vae.config().sigma,
    };
    log_importance_weights(x, &out, eps)?.to_dtype(candle_core::DType::F64)
}

/// How the model uses its latent dimensions over a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatentUsage {
    /// Dimensions with Cov_x(E_q[z_i | x]) > 0.01 (Burda et al.'s active units).
    pub active_units: usize,
    /// Cov_x(E_q[z_i | x]) of each dimension: the variance over images of the posterior mean.
    pub mean_variance: Vec<f64>,
    /// The average KL(q(z_i|x) ‖ N(0, 1)) of each dimension, in nats; they sum to the KL term.
    pub kl_per_dim: Vec<f64>,
}

/// Burda et al.'s threshold on the posterior mean's variance above which a dimension is active.
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

/// The latent usage of `vae` over every image of `data` (one pass of the encoder).
pub fn latent_usage(vae: &Vae, data: &Batcher, rng: &mut VaeRng) -> Result<LatentUsage> {
    let d = vae.config().latent_dim;
    let (mut s, mut s2, mut kl, mut n) = (vec![0f64; d], vec![0f64; d], vec![0f64; d], 0usize);
    for batch in data.in_order(rng) {
        let (x, labels) = batch.tensors().map_err(candle_core::Error::wrap)?;
        let (mu, logvar) = vae.encode(&x, Some(&labels))?;
        let (mu, logvar) = (
            mu.to_dtype(candle_core::DType::F64)?,
            logvar.to_dtype(candle_core::DType::F64)?,
        );
        let kl_b = kl_divergence(&mu, &logvar);
        let sums = |t: Tensor| -> Result<Vec<f64>> { t.sum(0)?.to_vec1::<f64>() };
        let (ms, m2s, kls) = (sums(mu.clone())?, sums(mu.sqr()?)?, sums(kl_b?)?);
        for i in 0..d {
            (s[i], s2[i], kl[i]) = (s[i] + ms[i], s2[i] + m2s[i], kl[i] + kls[i]);
        }
        n += x.dim(0)?;
    }
    let n = n.max(1) as f64;
    let mean_variance: Vec<f64> = (0..d)
        .map(|i| (s2[i] / n - (s[i] / n).powi(2)).max(0.0))
        .collect();
    Ok(LatentUsage {
        active_units: mean_variance
            .iter()
            .filter(|&&v| v > ACTIVE_UNIT_THRESHOLD)
            .count(),
        mean_variance,
        kl_per_dim: kl.iter().map(|k| k / n).collect(),
    })
}

/// `log(exp(a) + exp(b))` element-wise, without overflow.
fn log_add_exp(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let max = a.maximum(b)?;
    let sum = ((a - &max)?.exp()? + (b - &max)?.exp()?)?;
    sum.log()? + max
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{Device, Tensor};
    use vae_data::Batcher;
    use vae_model::{Activation, Likelihood, Vae, VaeConfig, VaeRng};

    use super::*;

    fn config(input_dim: usize, hidden: usize, latent_dim: usize) -> VaeConfig {
        VaeConfig {
            input_dim,
            input_shape: None,
            conv: None,
            hidden_dims: vec![hidden],
            latent_dim,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            sigma: None,
            scale_head: vae_model::ScaleHead::Logvar,
            conditional: false,
            num_classes: None,
        }
    }

    /// A model whose tensors are `values(name, shape)`.
    fn model(cfg: &VaeConfig, mut values: impl FnMut(&str, &[usize]) -> Vec<f32>) -> Vae {
        let tensors: HashMap<String, Tensor> = cfg
            .parameter_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor::from_vec(values(&name, &shape), shape.as_slice(), &Device::Cpu)
                    .unwrap();
                (name, t)
            })
            .collect();
        Vae::from_tensors(cfg, tensors, &Device::Cpu).unwrap()
    }

    /// `rows` images of `dim` pixels in [0, 1], seeded.
    fn images(rows: usize, dim: usize, seed: u64) -> Tensor {
        VaeRng::seed_from(seed)
            .uniform((rows, dim), 0.0, 1.0, &Device::Cpu)
            .unwrap()
    }

    fn batcher(x: &Tensor, batch: usize) -> Batcher {
        let labels =
            Tensor::zeros(x.dim(0).unwrap(), candle_core::DType::U32, &Device::Cpu).unwrap();
        Batcher::new(x, &labels, batch, &Device::Cpu).unwrap()
    }

    #[test]
    fn with_the_posterior_equal_to_the_prior_and_a_decoder_that_ignores_z_every_k_gives_log_p_x() {
        // Encoder and decoder weights 0, so q(z|x) = N(0, I) = p(z) and the logits are the output bias b:
        // every importance weight is p(x|z) = Π σ(b)^x σ(−b)^(1−x), so the estimate is exact for any k.
        let cfg = config(6, 4, 3);
        let bias = [-2.0f32, -0.5, 0.0, 0.3, 1.0, 3.0];
        let vae = model(&cfg, |name, shape| match name {
            "decoder.out.bias" => bias.to_vec(),
            _ => vec![0.0; shape.iter().product()],
        });
        let x = images(5, 6, 1);
        let log_sigmoid = |l: f64| -(1.0 + (-l).exp()).ln();
        let want: Vec<f64> = x
            .to_vec2::<f32>()
            .unwrap()
            .iter()
            .map(|row| {
                row.iter()
                    .zip(bias)
                    .map(|(&p, b)| {
                        p as f64 * log_sigmoid(b as f64) + (1.0 - p as f64) * log_sigmoid(-b as f64)
                    })
                    .sum()
            })
            .collect();
        for k in [1, 13] {
            let got = iw_log_px(&vae, &x, None, k, &mut VaeRng::seed_from(2)).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "k = {k}: {g} vs {w}");
            }
        }
        let usage = latent_usage(&vae, &batcher(&x, 2), &mut VaeRng::seed_from(0)).unwrap();
        assert_eq!(usage.active_units, 0);
        assert!(
            usage.kl_per_dim.iter().all(|&k| k.abs() < 1e-12),
            "{:?}",
            usage.kl_per_dim
        );
    }

    /// A small model with every weight drawn from N(0, 0.3²).
    fn random_model(cfg: &VaeConfig) -> Vae {
        let mut rng = VaeRng::seed_from(11);
        model(cfg, |_, shape| {
            let n: usize = shape.iter().product();
            let t = rng.normal(n, &Device::Cpu).unwrap();
            (t * 0.3).unwrap().to_vec1::<f32>().unwrap()
        })
    }

    #[test]
    fn one_sample_is_log_p_x_given_z_plus_log_p_z_minus_log_q_z_given_x_by_hand() {
        let cfg = config(5, 4, 2);
        let vae = random_model(&cfg);
        let x = images(3, 5, 4);
        let got = iw_log_px(&vae, &x, None, 1, &mut VaeRng::seed_from(8)).unwrap();
        // The same draw of ε, then the three densities written out in f64.
        let eps = vae.noise(3, &mut VaeRng::seed_from(8)).unwrap();
        let (mu, logvar) = vae.encode(&x, None).unwrap();
        let z = Vae::reparameterize(&mu, &logvar, &eps).unwrap();
        let logits = vae.decode(&z, None).unwrap().to_vec2::<f32>().unwrap();
        let rows = |t: &Tensor| t.to_vec2::<f32>().unwrap();
        let (xs, zs, es, lvs) = (rows(&x), rows(&z), rows(&eps), rows(&logvar));
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        for i in 0..3 {
            let log_px_z: f64 = (0..5)
                .map(|j| {
                    let (l, t) = (logits[i][j] as f64, xs[i][j] as f64);
                    t * l - (1.0 + l.exp()).ln()
                })
                .sum();
            let log_pz: f64 = zs[i]
                .iter()
                .map(|&z| -0.5 * (z as f64).powi(2) - half_log_2pi)
                .sum();
            let log_qz: f64 = (0..2)
                .map(|d| -0.5 * (es[i][d] as f64).powi(2) - 0.5 * lvs[i][d] as f64 - half_log_2pi)
                .sum();
            let want = log_px_z + log_pz - log_qz;
            assert!(
                (got[i] - want).abs() < 1e-4,
                "image {i}: {} vs {want}",
                got[i]
            );
        }
    }

    #[test]
    fn streaming_over_samples_equals_one_log_sum_exp_over_all_of_them() {
        let cfg = config(5, 4, 2);
        let vae = random_model(&cfg);
        let x = images(4, 5, 6);
        let k = 50;
        let streamed = iw_log_px(&vae, &x, None, k, &mut VaeRng::seed_from(3)).unwrap();
        // All k log-weights at once, from the same noise stream, then one log-sum-exp per image on the host.
        let mut noise = VaeRng::seed_from(3);
        let (mu, logvar) = vae.encode(&x, None).unwrap();
        let all: Vec<Vec<f64>> = (0..k)
            .map(|_| {
                let eps = vae.noise(4, &mut noise).unwrap();
                log_weight(&vae, &x, None, (&mu, &logvar), &eps)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect();
        for i in 0..4 {
            let w: Vec<f64> = all.iter().map(|s| s[i]).collect();
            let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + w.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - (k as f64).ln();
            assert!((streamed[i] - lse).abs() < 1e-9, "{} vs {lse}", streamed[i]);
        }
    }

    #[test]
    fn the_estimate_reports_the_mean_and_its_standard_error_over_images() {
        let cfg = config(5, 4, 2);
        let vae = random_model(&cfg);
        let x = images(7, 5, 9);
        let est = iw_nll(&vae, &batcher(&x, 3), 10, &mut VaeRng::seed_from(1)).unwrap();
        // The noise stream iw_nll derives from its generator, over the batches in order.
        let mut noise = VaeRng::seed_from(VaeRng::seed_from(1).next_u64());
        let mut nll = Vec::new();
        for rows in [0..3, 3..6, 6..7] {
            let b = x.narrow(0, rows.start, rows.len()).unwrap();
            nll.extend(
                iw_log_px(&vae, &b, None, 10, &mut noise)
                    .unwrap()
                    .iter()
                    .map(|l| -l),
            );
        }
        let n = nll.len() as f64;
        let mean = nll.iter().sum::<f64>() / n;
        let sd = (nll.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // iw_nll decodes through the fused engine here, which rounds differently in f32.
        assert!((est.nll - mean).abs() < 1e-6, "{} vs {mean}", est.nll);
        assert!(
            (est.se - sd / n.sqrt()).abs() < 1e-6,
            "{} vs {}",
            est.se,
            sd / n.sqrt()
        );
    }

    #[test]
    fn active_units_and_kl_per_dimension_match_the_data_they_come_from() {
        // mu_0 = x_0 (variance 1/12 over uniform pixels: active), mu_1 = 0.05·x_1 (variance ~2e-4: inactive),
        // mu_2 = 0; log σ² = 0. Hidden unit j copies pixel j through the ReLU.
        let cfg = config(4, 3, 3);
        let vae = model(&cfg, |name, shape| {
            let mut v = vec![0f32; shape.iter().product()];
            match name {
                "encoder.hidden.0.weight" => (0..3).for_each(|j| v[j * 4 + j] = 1.0),
                "encoder.mu.weight" => {
                    v[0] = 1.0;
                    v[3 + 1] = 0.05;
                }
                _ => {}
            }
            v
        });
        let x = images(400, 4, 12);
        let usage = latent_usage(&vae, &batcher(&x, 64), &mut VaeRng::seed_from(0)).unwrap();
        assert_eq!(usage.active_units, 1);
        let cols = x.to_vec2::<f32>().unwrap();
        let var = |c: &dyn Fn(&[f32]) -> f64| {
            let v: Vec<f64> = cols.iter().map(|r| c(r)).collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (
                v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len() as f64,
                v.iter().map(|a| a * a).sum::<f64>() / v.len() as f64,
            )
        };
        let (var0, sq0) = var(&|r| r[0] as f64);
        let (var1, sq1) = var(&|r| 0.05 * r[1] as f64);
        assert!(
            (usage.mean_variance[0] - var0).abs() < 1e-6,
            "{:?}",
            usage.mean_variance
        );
        assert!((usage.mean_variance[1] - var1).abs() < 1e-6);
        assert_eq!(usage.mean_variance[2], 0.0);
        // With σ² = 1, the KL of a dimension is ½ E[μ²].
        assert!(
            (usage.kl_per_dim[0] - 0.5 * sq0).abs() < 1e-6,
            "{:?}",
            usage.kl_per_dim
        );
        assert!((usage.kl_per_dim[1] - 0.5 * sq1).abs() < 1e-6);
        assert!(usage.kl_per_dim[2].abs() < 1e-12);
    }
}
