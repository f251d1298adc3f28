//! `vae_train::import::import` on hostile PyTorch files: it may refuse one, never panic, abort or overflow its
//! stack; a model it accepts must also run. Seeded with the import test's `torch.save` fixtures.
#![no_main]

use candle_core::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;
use vae_model::Activation;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.pt");
    std::fs::write(&path, data).unwrap();
    let Ok((vae, _)) = vae_train::import::import(&path, Activation::Relu) else {
        return;
    };
    let cfg = vae.config();
    if cfg.num_parameters() < 5_000_000 {
        let x = Tensor::zeros((1, cfg.input_dim), DType::F32, &Device::Cpu).unwrap();
        let label = Tensor::zeros(1, DType::U32, &Device::Cpu).unwrap();
        let _ = vae.reconstruct(&x, Some(&label));
    }
});
