//! `vae_model::Vae::load` on hostile files; a model it accepts must also run.
//!
//! With `VAE_FUZZ_WRITE_SEED=<file>` set, the first thing it does is save a tiny valid model there (`cargo xtask
//! fuzz` uses this to seed the corpus with a file that gets past the format checks).
#![no_main]

use candle_core::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;
use vae_model::{Activation, Vae, VaeConfig, VaeRng};

fn write_seed() {
    let Some(path) = std::env::var_os("VAE_FUZZ_WRITE_SEED") else {
        return;
    };
    let cfg = VaeConfig {
        input_dim: 4,
        hidden_dims: vec![3, 2],
        latent_dim: 2,
        activation: Activation::Tanh,
        ..VaeConfig::mnist()
    };
    let (vae, _) = Vae::init(&cfg, &mut VaeRng::seed_from(1), &Device::Cpu).expect("tiny model");
    vae.save(&path).expect("write the seed model");
}

fuzz_target!(init: write_seed(), |data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, data).unwrap();
    let Ok(vae) = Vae::load(&path, &Device::Cpu) else {
        return;
    };
    let cfg = vae.config();
    if cfg.num_parameters() < 5_000_000 {
        let x = Tensor::zeros((1, cfg.input_dim), DType::F32, &Device::Cpu).unwrap();
        // Class 0, which a conditional model reads and a plain one ignores.
        let label = Tensor::zeros(1, DType::U32, &Device::Cpu).unwrap();
        let _ = vae.reconstruct(&x, Some(&label));
    }
});
