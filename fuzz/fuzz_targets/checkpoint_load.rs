//! `vae_train::checkpoint::load` on hostile files, against the `mnist` preset.
//!
//! The preset is shrunk to hidden_dims [1], latent_dim 1 so that a checkpoint of it fits the fuzzer's input size
//! (the real mnist checkpoint is megabytes) and the tensor checks behind the config comparison are reached.
//! With `VAE_FUZZ_WRITE_SEED=<file>` set, the first thing it does is write such a checkpoint there, as a seed.
#![no_main]

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;
use vae_model::{Vae, VaeRng};
use vae_train::{AdamState, Overrides, RunConfig};

fn cfg() -> &'static RunConfig {
    static CFG: OnceLock<RunConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let (cfg, _) = RunConfig::load_preset("mnist", std::path::Path::new("/nonexistent"))
            .expect("built-in preset mnist");
        cfg.apply(&Overrides {
            hidden_dims: Some(vec![1]),
            latent_dim: Some(1),
            ..Overrides::default()
        })
        .expect("a tiny mnist")
    })
}

fn write_seed() {
    let cfg = cfg();
    let Some(path) = std::env::var_os("VAE_FUZZ_WRITE_SEED") else {
        return;
    };
    let mut rng = VaeRng::seed_from(cfg.training.seed);
    let (model, _) = Vae::init(&cfg.model, &mut rng, &Device::Cpu).expect("tiny model");
    let moments = cfg
        .model
        .parameter_shapes()
        .into_iter()
        .map(|(_, shape)| {
            let z = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
            (z.clone(), z)
        })
        .collect();
    let adam = AdamState { step: 3, moments };
    vae_train::checkpoint::save(path.as_ref(), cfg, 1, &model, &adam, &rng, None)
        .expect("write the seed checkpoint");
}

fuzz_target!(init: write_seed(), |data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    std::fs::write(&path, data).unwrap();
    let _ = vae_train::checkpoint::load(&path, cfg(), &Device::Cpu);
});
