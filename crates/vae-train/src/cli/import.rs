//! `vae-train import`: a PyTorch VAE's weights as a model file.

use anyhow::Result;

use super::args::{ActivationArg, ImportArgs};

/// `vae-train import`.
pub(super) fn run(a: ImportArgs) -> Result<()> {
    vae_train::outputs::check_output(&a.out, "--out", &["safetensors"], a.replace.force)?;
    let activation = match a.activation {
        ActivationArg::Relu => vae_model::Activation::Relu,
        ActivationArg::Tanh => vae_model::Activation::Tanh,
    };
    let (mut vae, layout) = vae_train::import::import(&a.from, activation)?;
    vae.set_dataset(a.dataset.name());
    vae.save(&a.out)?;
    let cfg = serde_json::to_string(vae.config())?;
    tracing::info!("{}: {layout} layout, {cfg}", a.from.display());
    println!(
        "{}",
        serde_json::json!({ "out": a.out.display().to_string(), "layout": layout, "config": vae.config() })
    );
    Ok(())
}
