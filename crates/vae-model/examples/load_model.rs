//! Using a trained model from another crate: load it, sample, and encode.
//!
//! `cargo run -p vae-model --example load_model -- runs/mnist/model.safetensors`

use candle_core::Device;
use vae_model::{Vae, VaeRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/mnist/model.safetensors".into());
    let device = Device::Cpu;
    let vae = Vae::load(&path, &device)?; // rebuilt from the file's metadata alone
    let cfg = vae.config();
    let dims: Vec<String> = std::iter::once(cfg.input_dim)
        .chain(cfg.hidden_dims.iter().copied())
        .chain([cfg.latent_dim])
        .map(|d| d.to_string())
        .collect();
    println!(
        "{path}: {} VAE trained on {}",
        dims.join("-"),
        vae.dataset().unwrap_or("?")
    );

    let mut rng = VaeRng::seed_from(0);
    let images = vae.sample(4, None, &mut rng)?; // [4, 784] pixel probabilities
    let (mu, logvar) = vae.encode(&images, None)?; // the posterior of each sample
    println!(
        "samples {:?}, posterior mean {:?}, log-variance {:?}",
        images.dims(),
        mu.dims(),
        logvar.dims()
    );
    Ok(())
}
