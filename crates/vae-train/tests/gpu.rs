//! Tests that need an NVIDIA GPU: built with the `cuda` feature only, and run by `cargo xtask test --device cuda`.
//! `cargo xtask check-gpu` compiles them on machines without one.
#![cfg(feature = "cuda")]

mod common;

use std::path::Path;

use candle_core::Device;
use common::data_dir;
use vae_model::{Vae, VaeConfig, VaeRng};
use vae_train::{train, Engine, EpochMetrics, Overrides, RunConfig, TrainOptions};

fn cuda() -> Device {
    Device::new_cuda(0)
        .expect("a CUDA device (these tests run only through `cargo xtask test --device cuda`)")
}

/// One epoch of a small autograd run on `device`.
fn one_epoch(device: Device, out: &Path) -> EpochMetrics {
    let (base, _) = RunConfig::load_preset("mnist", Path::new("/nonexistent")).unwrap();
    let cfg = base
        .apply(&Overrides {
            epochs: Some(1),
            hidden_dims: Some(vec![64]),
            latent_dim: Some(8),
            train_subset: Some(2000),
            seed: Some(5),
            engine: Some(Engine::Autograd),
            ..Default::default()
        })
        .unwrap();
    let opts = TrainOptions {
        data_dir: data_dir().to_path_buf(),
        out_dir: out.to_path_buf(),
        device,
        resume: false,
        overwrite: false,
        progress: false,
        interrupt: vae_train::Interrupt::none(),
        strict: false,
        stop_after_steps: None,
    };
    train(&cfg, &opts).unwrap().history.remove(0)
}

#[test]
fn autograd_on_cuda_matches_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let gpu = one_epoch(cuda(), &tmp.path().join("gpu"));
    let cpu = one_epoch(Device::Cpu, &tmp.path().join("cpu"));
    // The same seed draws the same weights, batches and noise on the host; only the arithmetic differs.
    for (name, g, c) in [
        ("train_loss", gpu.train_loss, cpu.train_loss),
        ("train_kl", gpu.train_kl, cpu.train_kl),
        ("test_loss", gpu.test_loss, cpu.test_loss),
        ("test_kl", gpu.test_kl, cpu.test_kl),
    ] {
        assert!(((g - c) / c).abs() < 1e-4, "{name}: cuda {g} vs cpu {c}");
    }
}

#[test]
fn a_model_saved_on_the_gpu_loads_on_the_cpu_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (vae, _) = Vae::init(&VaeConfig::mnist(), &mut VaeRng::seed_from(9), &cuda()).unwrap();
    let path = tmp.path().join("m.safetensors");
    vae.save(&path).unwrap();
    let back = Vae::load(&path, &Device::Cpu).unwrap();
    for ((name, a), (_, b)) in vae.named_tensors().iter().zip(back.named_tensors()) {
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn sample_on_the_gpu_draws_what_the_cpu_draws() {
    let tmp = tempfile::tempdir().unwrap();
    let (vae, _) = Vae::init(&VaeConfig::mnist(), &mut VaeRng::seed_from(3), &Device::Cpu).unwrap();
    let model = tmp.path().join("m.safetensors");
    vae.save(&model).unwrap();
    let draw = |device: &str| {
        let png = tmp.path().join(format!("{device}.png"));
        let (code, _, err) = common::vae_train(&[
            "sample",
            "--model",
            model.to_str().unwrap(),
            "--n",
            "16",
            "--seed",
            "4",
            "--device",
            device,
            "--out",
            png.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{err}");
        image::open(&png).unwrap().to_luma8()
    };
    let (gpu, cpu) = (draw("cuda"), draw("cpu"));
    assert_eq!(gpu.dimensions(), cpu.dimensions());
    let worst = gpu
        .pixels()
        .zip(cpu.pixels())
        .map(|(a, b)| a.0[0].abs_diff(b.0[0]))
        .max()
        .unwrap();
    assert!(worst <= 1, "pixels differ by up to {worst} levels");
}
