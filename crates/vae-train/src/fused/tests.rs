//! The fused CPU engine against Candle's autograd: same loss, same gradients (to f32 rounding) for every parameter,
//! and the same trajectory over several Adam steps.

use std::collections::HashMap;

use candle_core::{DType, Device, Var};
use candle_nn::Optimizer;
use vae_model::{beta_elbo, iwae_bound, Activation, Vae, VaeConfig, VaeRng};

use super::FusedVae;
use crate::{Adam, AdamConfig, FlatAdam, Loss};

/// The trainable variables of `varmap` in the model's parameter order.
fn params(varmap: &candle_nn::VarMap, cfg: &VaeConfig) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap();
    cfg.parameter_shapes()
        .into_iter()
        .map(|(name, _)| (name.clone(), data[&name].clone()))
        .collect()
}

/// Classes for `rows` images, all ten in turn from an offset: what a conditional model reads (and a plain one
/// ignores).
fn labels(rows: usize, offset: u32) -> (Vec<u32>, candle_core::Tensor) {
    let ls: Vec<u32> = (0..rows as u32).map(|r| (r * 7 + offset) % 10).collect();
    let t = candle_core::Tensor::new(ls.as_slice(), &Device::Cpu).unwrap();
    (ls, t)
}

fn close(name: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{name}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{name}[{i}]: fused {g} vs autograd {w} (scale {scale})"
        );
    }
}

fn check_gradients(cfg: &VaeConfig, rows: usize, beta: f64, seed: u64) {
    check_loss_gradients(cfg, rows, Loss::Elbo { beta }, seed)
}

fn check_loss_gradients(cfg: &VaeConfig, rows: usize, loss: Loss, seed: u64) {
    check_gradients_at_density(cfg, rows, loss, seed, 1.0)
}

/// The fused gradients against autograd's on images of which about `density` of the pixels are nonzero (all of
/// them at 1; MNIST-like below [`super::sparse::MAX_DENSITY`], which takes the sparse first-layer products).
fn check_gradients_at_density(cfg: &VaeConfig, rows: usize, loss: Loss, seed: u64, density: f64) {
    let dev = Device::Cpu;
    let mut rng = VaeRng::seed_from(seed);
    let (vae, varmap) = Vae::init(cfg, &mut rng, &dev).unwrap();
    let p = params(&varmap, cfg);
    let x = rng.uniform((rows, cfg.input_dim), 0.0, 1.0, &dev).unwrap();
    let x = (x.lt(density).unwrap().to_dtype(DType::F32).unwrap() * &x).unwrap();
    let samples = match loss {
        Loss::Elbo { .. } => 1,
        Loss::Iwae { k } => k,
    };
    let eps = vae.noise(samples * rows, &mut rng).unwrap();
    let (ls, y) = labels(rows, seed as u32);

    let terms = match loss {
        Loss::Elbo { beta } => beta_elbo(
            &x,
            &vae.forward_with_noise(&x, Some(&y), &eps).unwrap(),
            beta,
        ),
        Loss::Iwae { .. } => iwae_bound(&vae, &x, Some(&y), &eps),
    }
    .unwrap();
    let grads = terms.loss.backward().unwrap();

    let mut fused = FusedVae::new(&vae).unwrap();
    let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let es = eps.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let t = match loss {
        Loss::Elbo { beta } => fused.forward_backward(&xs, &ls, &es, rows, beta),
        Loss::Iwae { k } => fused.forward_backward_iwae(&xs, &ls, &es, rows, k),
    };
    let sparse = density <= super::sparse::MAX_DENSITY / 2.0 && !cfg.hidden_dims.is_empty();
    assert_eq!(
        fused.scratch.sparse_input, sparse,
        "sparse path at density {density}"
    );

    let want = |v: &candle_core::Tensor| v.to_scalar::<f32>().unwrap() as f64;
    // Autograd's IWAE kl is a difference of two sums of the size of recon, rounded in f32.
    let scale = want(&terms.recon).abs().max(1.0);
    for (what, got, want) in [
        ("recon", t.recon, want(&terms.recon)),
        ("kl", t.kl, want(&terms.kl)),
        ("loss", t.loss, want(&terms.loss)),
    ] {
        assert!((got - want).abs() < 1e-5 * scale, "{what}: {t:?} vs {want}");
    }

    let by_name: HashMap<String, Var> = p.into_iter().collect();
    let fused_grads = fused.gradients();
    assert_eq!(fused_grads.len(), cfg.parameter_shapes().len());
    for (name, g) in fused_grads {
        let autograd = grads
            .get(&by_name[&name])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        close(&name, &g, &autograd, 2e-4);
    }
}

/// A small model with two tanh layers.
fn tanh_two_layers() -> VaeConfig {
    VaeConfig {
        input_dim: 30,
        hidden_dims: vec![17, 9],
        latent_dim: 4,
        activation: Activation::Tanh,
        ..VaeConfig::mnist()
    }
}

#[test]
fn gradients_match_autograd_tanh_two_layers() {
    let cfg = tanh_two_layers();
    check_gradients(&cfg, 7, 1.0, 1);
    check_gradients(&cfg, 1, 0.3, 2);
}

#[test]
fn gradients_match_autograd_relu_with_beta() {
    let cfg = VaeConfig {
        input_dim: 50,
        hidden_dims: vec![24],
        latent_dim: 3,
        ..VaeConfig::mnist()
    };
    check_gradients(&cfg, 16, 2.5, 3);
}

#[test]
fn gradients_match_autograd_at_the_mnist_preset_shapes() {
    check_gradients(&VaeConfig::mnist(), 128, 1.0, 4);
}

#[test]
fn gradients_match_autograd_on_sparse_images_at_the_preset_shapes() {
    let elbo = Loss::Elbo { beta: 1.0 };
    check_gradients_at_density(&VaeConfig::mnist(), 128, elbo, 12, 0.1);
    let mut cvae = VaeConfig::mnist();
    cvae.conditional = true;
    check_gradients_at_density(&cvae, 32, elbo, 13, 0.1);
    let iwae = VaeConfig {
        hidden_dims: vec![200, 200],
        latent_dim: 50,
        activation: Activation::Tanh,
        ..VaeConfig::mnist()
    };
    check_gradients_at_density(&iwae, 20, Loss::Iwae { k: 5 }, 14, 0.1);
    check_gradients_at_density(&iwae, 3, elbo, 15, 0.02);
}

#[test]
fn conditional_gradients_match_autograd() {
    let cvae = VaeConfig {
        conditional: true,
        ..tanh_two_layers()
    };
    check_gradients(&cvae, 13, 1.0, 9);
    check_loss_gradients(&cvae, 6, Loss::Iwae { k: 5 }, 10);
    let mnist_cvae = VaeConfig {
        conditional: true,
        ..VaeConfig::mnist()
    };
    check_gradients(&mnist_cvae, 128, 1.0, 11);
}

#[test]
fn several_adam_steps_follow_the_autograd_trajectory() {
    adam_trajectory(Loss::Elbo { beta: 1.0 }, false);
    adam_trajectory(Loss::Elbo { beta: 1.0 }, true);
}

#[test]
fn several_iwae_adam_steps_follow_the_autograd_trajectory() {
    adam_trajectory(Loss::Iwae { k: 4 }, false);
    adam_trajectory(Loss::Iwae { k: 4 }, true);
}

fn adam_trajectory(loss: Loss, conditional: bool) {
    let dev = Device::Cpu;
    let cfg = VaeConfig {
        input_dim: 40,
        hidden_dims: vec![32],
        latent_dim: 5,
        conditional,
        ..VaeConfig::mnist()
    };
    let mut rng = VaeRng::seed_from(9);
    let (vae, varmap) = Vae::init(&cfg, &mut rng, &dev).unwrap();
    let p = params(&varmap, &cfg);
    let adam_cfg = AdamConfig {
        lr: 1e-2,
        ..Default::default()
    };
    let mut fused = FusedVae::new(&vae).unwrap();
    let mut flat_adam = FlatAdam::new(adam_cfg, fused.parameter_count());
    let mut adam = Adam::new(p.iter().map(|(_, v)| v.clone()).collect(), adam_cfg).unwrap();
    for _ in 0..20 {
        let x = rng.uniform((12, 40), 0.0, 1.0, &dev).unwrap();
        let (ls, y) = labels(12, flat_adam.step_count() as u32);
        let terms = match loss {
            Loss::Elbo { beta } => {
                let eps = vae.noise(12, &mut rng).unwrap();
                let out = vae.forward_with_noise(&x, Some(&y), &eps).unwrap();
                beta_elbo(&x, &out, beta).map(|t| (t, eps))
            }
            Loss::Iwae { k } => {
                let eps = vae.noise(12 * k, &mut rng).unwrap();
                iwae_bound(&vae, &x, Some(&y), &eps).map(|t| (t, eps))
            }
        };
        let (terms, eps) = terms.unwrap();
        adam.step(&terms.loss.backward().unwrap()).unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let es = eps.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        fused.train_step(&mut flat_adam, &xs, &ls, &es, 12, loss);
    }
    assert_eq!(flat_adam.step_count(), 20);
    // Copy the fused weights out and compare with the autograd ones.
    let autograd: Vec<Vec<f32>> = p
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let trained = fused.to_vae().unwrap().named_tensors();
    assert_eq!(trained.len(), p.len());
    for ((name, t), want) in trained.iter().zip(&autograd) {
        close(
            name,
            &t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want,
            1e-3,
        );
    }
    // The Adam moments agree with the autograd optimiser's, parameter by parameter.
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (mine, theirs) = (fused.adam_state(&flat_adam).unwrap(), adam.state().unwrap());
    assert_eq!(mine.step, theirs.step);
    for (((name, _), (m1, v1)), (m2, v2)) in p.iter().zip(&mine.moments).zip(&theirs.moments) {
        close(&format!("m.{name}"), &flat(m1), &flat(m2), 2e-3);
        close(&format!("v.{name}"), &flat(v1), &flat(v2), 2e-3);
    }
}

#[test]
fn iwae_gradients_match_autograd() {
    let cfg = tanh_two_layers();
    check_loss_gradients(&cfg, 6, Loss::Iwae { k: 5 }, 5);
    check_loss_gradients(&cfg, 1, Loss::Iwae { k: 3 }, 6);
    let relu = VaeConfig {
        input_dim: 50,
        hidden_dims: vec![24],
        latent_dim: 3,
        ..VaeConfig::mnist()
    };
    check_loss_gradients(&relu, 8, Loss::Iwae { k: 1 }, 7);
}

#[test]
fn iwae_gradients_match_autograd_at_the_mnist_iwae_shapes() {
    let cfg = VaeConfig {
        hidden_dims: vec![200, 200],
        latent_dim: 50,
        activation: Activation::Tanh,
        ..VaeConfig::mnist()
    };
    check_loss_gradients(&cfg, 20, Loss::Iwae { k: 50 }, 8);
}

#[test]
fn the_estimate_through_sgemm_equals_candles_from_the_same_noise() {
    estimates_agree(tanh_two_layers());
    estimates_agree(VaeConfig {
        conditional: true,
        ..tanh_two_layers()
    });
}

fn estimates_agree(cfg: VaeConfig) {
    let dev = Device::Cpu;
    let mut rng = VaeRng::seed_from(21);
    let (vae, _) = Vae::init(&cfg, &mut rng, &dev).unwrap();
    let mut fused = FusedVae::new(&vae).unwrap();
    // 300 images make chunks of 6 samples, so k = 50 ends on a partial chunk.
    for (images, k) in [(3, 1), (300, 50), (7, 1000)] {
        let x = rng
            .uniform((images, cfg.input_dim), 0.0, 1.0, &dev)
            .unwrap();
        let (ls, y) = labels(images, k as u32);
        let noise = || VaeRng::seed_from(4);
        let want = crate::eval::iw_log_px(&vae, &x, Some(&y), k, &mut noise()).unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = fused.iw_log_px(&xs, &ls, images, k, &mut noise());
        assert_eq!(got.len(), images);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 2e-5 * w.abs(),
                "{images} images, k = {k}, image {i}: {g} vs {w}"
            );
        }
    }
}
