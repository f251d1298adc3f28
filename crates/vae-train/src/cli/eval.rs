//! `vae-train eval`: the test-set −ELBO terms, latent usage and, on request, the importance-weighted likelihood.

use anyhow::Result;
use vae_model::VaeRng;
use vae_train::{eval, inputs, npy};

use super::args::EvalArgs;
use super::model::model_and_data;

/// `vae-train eval`.
pub(super) fn run(a: EvalArgs) -> Result<()> {
    if let Some(path) = &a.inputs_out {
        vae_train::outputs::check_output(path, "--inputs-out", &["npy"], a.replace.force)?;
    }
    let (vae, data, dataset) = model_and_data(&a.on)?;
    let binarize = inputs::recorded_binarize(&vae, a.binarize, &a.on.model)?;
    let subset = a.test_subset.map(|n| n as usize);
    let test = eval::test_batcher(&data, binarize, subset, vae.device())?;
    if let Some(path) = &a.inputs_out {
        let mut rng = VaeRng::seed_from(a.seed);
        let images = test.in_order(&mut rng).map(|b| b.tensors().map(|(x, _)| x));
        let images: Vec<candle_core::Tensor> = images.collect::<Result<_, _>>()?;
        npy::write_npy(path, &candle_core::Tensor::cat(&images, 0)?)?;
    }
    let avg = eval::evaluate(&vae, &test, &mut VaeRng::seed_from(a.seed))?;
    anyhow::ensure!(
        avg.loss.is_finite(),
        "{}: the test loss is {}; the model's outputs overflow",
        a.on.model.display(),
        avg.loss
    );
    tracing::info!(
        "test −ELBO {:.3}: one draw of ε per test image, from --seed {}; training's epochs drew others, so its last \
         test figure differs by that noise",
        avg.loss,
        a.seed
    );
    let usage = eval::latent_usage(&vae, &test, &mut VaeRng::seed_from(a.seed))?;
    let mut out = serde_json::json!({
        "model": a.on.model.display().to_string(),
        "dataset": dataset.to_string(),
        "binarize": binarize.name(),
        "test_images": test.len(),
        "test_loss": avg.loss,
        "test_recon": avg.recon,
        "test_kl": avg.kl,
        "active_units": usage.active_units,
        "kl_per_dim": usage.kl_per_dim,
        "mean_variance_per_dim": usage.mean_variance,
        "likelihood": vae.config().likelihood.name(),
    });
    if let Some(bits) = bits_per_dim(&vae, avg.loss) {
        out["bits_per_dim"] = bits.into();
    }
    if a.iw_samples > 0 {
        importance_weighted(&a, &vae, &test, &mut out)?;
    }
    println!("{out}");
    Ok(())
}

/// Adds the importance-weighted estimate of −log p(x) with `--iw-samples` to `out`.
fn importance_weighted(
    a: &EvalArgs,
    vae: &vae_model::Vae,
    test: &vae_data::Batcher,
    out: &mut serde_json::Value,
) -> Result<()> {
    let k = a.iw_samples as usize;
    let start = std::time::Instant::now();
    let iw = eval::iw_nll(vae, test, k, &mut VaeRng::seed_from(a.seed))?;
    out["iw_seconds"] = start.elapsed().as_secs_f64().into();
    anyhow::ensure!(
        iw.nll.is_finite(),
        "{}: the importance-weighted estimate is {}",
        a.on.model.display(),
        iw.nll
    );
    out["iw_samples"] = a.iw_samples.into();
    out["test_nll_iw"] = iw.nll.into();
    out["test_nll_iw_se"] = iw.se.into();
    if let Some(bits) = bits_per_dim(vae, iw.nll) {
        out["test_nll_iw_bits_per_dim"] = bits.into();
    }
    Ok(())
}

/// `nats` per example in bits per dimension, the unit 8-bit image likelihoods are published in; `None` for a
/// likelihood whose −log p(x) is a density's, not a code length.
fn bits_per_dim(vae: &vae_model::Vae, nats: f64) -> Option<f64> {
    let cfg = vae.config();
    (cfg.likelihood == vae_model::Likelihood::Logistic)
        .then(|| nats / (cfg.input_dim as f64 * std::f64::consts::LN_2))
}
