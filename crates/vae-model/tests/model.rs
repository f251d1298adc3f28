//! Behaviour of the model against known answers: closed-form loss values, finite-difference gradients, byte-exact
//! save/load round trips, refusals of bad files, and seeding.

use std::collections::HashMap;
use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor, Var};
use vae_model::{
    bce_with_logits, beta_elbo, elbo, iwae_bound, kl_divergence, Activation, Vae, VaeConfig,
    VaeOutput, VaeRng,
};

fn cpu() -> Device {
    Device::Cpu
}

fn tiny(activation: Activation) -> VaeConfig {
    VaeConfig {
        input_dim: 5,
        hidden_dims: vec![4, 3],
        latent_dim: 2,
        activation,
        ..VaeConfig::mnist()
    }
}

fn t2(v: &[&[f64]]) -> Tensor {
    let rows = v.len();
    let flat: Vec<f64> = v.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows, v[0].len()), &cpu()).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn output(logits: Tensor, mu: Tensor, logvar: Tensor) -> VaeOutput {
    let z = mu.clone();
    VaeOutput {
        logits,
        mu,
        logvar,
        z,
        likelihood: vae_model::Likelihood::Bernoulli,
        sigma: None,
    }
}

/// Reference BCE in f64, written the textbook way (fine for moderate logits).
fn bce_ref(l: f64, t: f64) -> f64 {
    let p = 1.0 / (1.0 + (-l).exp());
    -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
}

#[test]
fn elbo_terms_match_hand_computed_values() {
    let logits = [[0.0, 2.0, -1.0], [0.5, -3.0, 1.5]];
    let x = [[1.0, 0.0, 0.25], [0.5, 1.0, 0.0]];
    let mu = [[0.0, 1.0], [-0.5, 2.0]];
    let logvar = [[0.0, 2f64.ln()], [-1.0, 0.3]];
    let rows = |a: &[[f64; 3]; 2]| t2(&[&a[0], &a[1]]);
    let rows2 = |a: &[[f64; 2]; 2]| t2(&[&a[0], &a[1]]);
    let out = output(rows(&logits), rows2(&mu), rows2(&logvar));
    let terms = elbo(&rows(&x), &out).unwrap();

    let mut recon = 0.0;
    let mut kl = 0.0;
    for b in 0..2 {
        for i in 0..3 {
            recon += bce_ref(logits[b][i], x[b][i]);
        }
        for j in 0..2 {
            kl += -0.5 * (1.0 + logvar[b][j] - mu[b][j] * mu[b][j] - logvar[b][j].exp());
        }
    }
    recon /= 2.0;
    kl /= 2.0;
    // ln 2 and ln(1 + e²) are two of the terms above; check the reference itself once.
    assert!((bce_ref(0.0, 1.0) - std::f64::consts::LN_2).abs() < 1e-15);
    assert!((bce_ref(2.0, 0.0) - (1.0 + 2f64.exp()).ln()).abs() < 1e-14);

    assert!(
        (scalar(&terms.recon) - recon).abs() < 1e-12,
        "{} vs {recon}",
        scalar(&terms.recon)
    );
    assert!(
        (scalar(&terms.kl) - kl).abs() < 1e-12,
        "{} vs {kl}",
        scalar(&terms.kl)
    );
    assert!((scalar(&terms.loss) - (recon + kl)).abs() < 1e-12);

    let weighted = beta_elbo(&rows(&x), &out, 0.25).unwrap();
    assert!((scalar(&weighted.loss) - (recon + 0.25 * kl)).abs() < 1e-12);
    assert!(
        (scalar(&weighted.kl) - kl).abs() < 1e-12,
        "kl term itself is unweighted"
    );
}

#[test]
fn kl_is_zero_at_the_prior_and_closed_form_elsewhere() {
    let zeros = Tensor::zeros((3, 4), DType::F32, &cpu()).unwrap();
    let kl = kl_divergence(&zeros, &zeros)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(kl.iter().flatten().all(|&v| v == 0.0), "{kl:?}");

    // KL(N(1, 1) ‖ N(0, 1)) = ½ and KL(N(0, 2) ‖ N(0, 1)) = ½(1 − ln 2).
    let mu = t2(&[&[1.0, 0.0]]);
    let logvar = t2(&[&[0.0, 2f64.ln()]]);
    let kl = kl_divergence(&mu, &logvar)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    assert!((kl[0][0] - 0.5).abs() < 1e-15);
    assert!((kl[0][1] - 0.5 * (1.0 - 2f64.ln())).abs() < 1e-15);
}

#[test]
fn bce_is_finite_and_exact_at_extreme_logits() {
    let logits = Tensor::new(&[[100f32, 100.0, -100.0, -100.0]], &cpu()).unwrap();
    let targets = Tensor::new(&[[1f32, 0.0, 1.0, 0.0]], &cpu()).unwrap();
    let v = bce_with_logits(&logits, &targets)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()[0]
        .clone();
    assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
    // Exact answers: log(1 + e^-100) ≈ 3.7e-44 (0 in f32), and 100 + that.
    assert_eq!(v, vec![0.0, 100.0, 100.0, 0.0]);

    // Its gradient is sigmoid(l) − t: finite too.
    let l = Var::new(&[[100f32, -100.0]], &cpu()).unwrap();
    let t = Tensor::new(&[[0f32, 0.0]], &cpu()).unwrap();
    let g = bce_with_logits(l.as_tensor(), &t)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g.get(&l).unwrap().to_vec2::<f32>().unwrap();
    assert!(
        (g[0][0] - 1.0).abs() < 1e-6 && g[0][1].abs() < 1e-6,
        "{g:?}"
    );
}

#[test]
fn reparameterize_is_mu_plus_sigma_eps() {
    let mu = t2(&[&[1.0, -2.0]]);
    let logvar = t2(&[&[0.0, 2.0 * 3f64.ln()]]); // σ = 1 and 3
    let eps = t2(&[&[0.5, -1.0]]);
    let z = Vae::reparameterize(&mu, &logvar, &eps)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    assert!((z[0][0] - 1.5).abs() < 1e-15);
    assert!((z[0][1] - (-5.0)).abs() < 1e-14);
}

/// Central differences of the loss in every parameter, against Candle's backprop, in f64. The loss gets the
/// model, 3 images and `noise_rows` rows of noise.
fn gradient_check(
    cfg: VaeConfig,
    noise_rows: usize,
    objective: impl Fn(&Vae, &Tensor, &Tensor) -> Tensor,
) {
    let dev = cpu();
    let mut rng = VaeRng::seed_from(11);
    let (vae, varmap) = Vae::init_with_dtype(&cfg, &mut rng, DType::F64, &dev).unwrap();
    let x = rng
        .uniform_dtype((3, cfg.input_dim), 0.0, 1.0, DType::F64, &dev)
        .unwrap();
    let eps = vae.noise(noise_rows, &mut rng).unwrap();
    let loss = |vae: &Vae| objective(vae, &x, &eps);
    let grads = loss(&vae).backward().unwrap();

    let vars: HashMap<String, Var> = varmap.data().lock().unwrap().clone();
    assert_eq!(vars.len(), cfg.parameter_shapes().len());
    let h = 1e-6;
    let mut checked = 0;
    for (name, var) in &vars {
        let analytic = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let analytic = analytic.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let orig = var.as_tensor().copy().unwrap();
        let shape = orig.shape().clone();
        let flat = orig.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in 0..flat.len() {
            let eval = |delta: f64| {
                let mut p = flat.clone();
                p[i] += delta;
                var.set(&Tensor::from_vec(p, shape.clone(), &dev).unwrap())
                    .unwrap();
                scalar(&loss(&vae))
            };
            let numeric = (eval(h) - eval(-h)) / (2.0 * h);
            var.set(&orig).unwrap();
            let err = (numeric - analytic[i]).abs();
            assert!(
                err < 1e-6 * (1.0 + numeric.abs()),
                "{name}[{i}]: backprop {} vs finite diff {numeric}",
                analytic[i]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, cfg.num_parameters());
}

fn beta_elbo_loss(beta: f64) -> impl Fn(&Vae, &Tensor, &Tensor) -> Tensor {
    move |vae, x, eps| {
        let out = vae.forward_with_noise(x, None, eps).unwrap();
        beta_elbo(x, &out, beta).unwrap().loss
    }
}

fn iwae_loss(vae: &Vae, x: &Tensor, eps: &Tensor) -> Tensor {
    iwae_bound(vae, x, None, eps).unwrap().loss
}

#[test]
fn gradients_match_finite_differences_tanh() {
    gradient_check(tiny(Activation::Tanh), 3, beta_elbo_loss(1.0));
}

#[test]
fn gradients_match_finite_differences_relu_beta() {
    gradient_check(tiny(Activation::Relu), 3, beta_elbo_loss(0.5));
}

#[test]
fn iwae_gradients_match_finite_differences() {
    // k = 4 samples for each of the 3 images.
    gradient_check(tiny(Activation::Tanh), 12, iwae_loss);
    gradient_check(tiny(Activation::Relu), 12, iwae_loss);
}

#[test]
fn a_std_head_model_has_gradients_that_match_finite_differences() {
    let cfg = VaeConfig {
        scale_head: vae_model::ScaleHead::Std,
        ..tiny(Activation::Tanh)
    };
    gradient_check(cfg, 3, beta_elbo_loss(1.0));
}

/// The same weights read as a σ head give log σ² = ln(s²) where a log σ² head gives s.
#[test]
fn a_std_head_encodes_log_of_its_output_squared() {
    let dev = cpu();
    let plain = tiny(Activation::Relu);
    let std_cfg = VaeConfig {
        scale_head: vae_model::ScaleHead::Std,
        ..plain.clone()
    };
    let mut rng = VaeRng::seed_from(12);
    let (vae, _) = Vae::init_with_dtype(&plain, &mut rng, DType::F64, &dev).unwrap();
    let renamed: HashMap<String, Tensor> = vae
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (n.replace("encoder.logvar", "encoder.std"), t))
        .collect();
    let std_vae = Vae::from_tensors(&std_cfg, renamed, &dev).unwrap();
    let x = rng
        .uniform_dtype((4, 5), 0.0, 1.0, DType::F64, &dev)
        .unwrap();
    let (mu, s) = vae.encode(&x, None).unwrap();
    let (mu_std, logvar) = std_vae.encode(&x, None).unwrap();
    assert_eq!(
        mu.to_vec2::<f64>().unwrap(),
        mu_std.to_vec2::<f64>().unwrap()
    );
    let s = s.to_vec2::<f64>().unwrap();
    for (row, got) in s.iter().zip(logvar.to_vec2::<f64>().unwrap()) {
        for (s, g) in row.iter().zip(got) {
            assert!((g - (s * s).ln()).abs() < 1e-12, "{g} vs ln({s}²)");
        }
    }
}

/// A 6×6 image through convolutions k3 s2 p1 (6 → 3 → 2) and back, the last transposed layer with output padding 1.
fn tiny_conv(activation: Activation) -> VaeConfig {
    VaeConfig {
        input_dim: 36,
        input_shape: Some(vec![1, 6, 6]),
        conv: Some(vae_model::ConvStack {
            channels: vec![2, 3],
            kernel: 3,
            stride: 2,
            padding: 1,
        }),
        ..tiny(activation)
    }
}

#[test]
fn conv_gradients_match_finite_differences() {
    for act in [Activation::Tanh, Activation::Elu, Activation::Silu] {
        gradient_check(tiny_conv(act), 3, beta_elbo_loss(1.0));
    }
    gradient_check(tiny_conv(Activation::LeakyRelu), 12, iwae_loss);
    let logistic = VaeConfig {
        likelihood: vae_model::Likelihood::Logistic,
        hidden_dims: vec![],
        ..tiny_conv(Activation::Tanh)
    };
    gradient_check(logistic, 3, beta_elbo_loss(1.0));
    let labels = Tensor::new(&[3u32, 0, 9], &cpu()).unwrap();
    let conditional = VaeConfig {
        conditional: true,
        ..tiny_conv(Activation::Tanh)
    };
    let elbo_given = |vae: &Vae, x: &Tensor, eps: &Tensor| {
        let out = vae.forward_with_noise(x, Some(&labels), eps).unwrap();
        elbo(x, &out).unwrap().loss
    };
    gradient_check(conditional, 3, elbo_given);
}

fn tiny_conditional() -> VaeConfig {
    VaeConfig {
        conditional: true,
        ..tiny(Activation::Tanh)
    }
}

#[test]
fn conditional_gradients_match_finite_differences() {
    let labels = Tensor::new(&[3u32, 0, 9], &cpu()).unwrap();
    let elbo_given = |vae: &Vae, x: &Tensor, eps: &Tensor| {
        let out = vae.forward_with_noise(x, Some(&labels), eps).unwrap();
        elbo(x, &out).unwrap().loss
    };
    gradient_check(tiny_conditional(), 3, elbo_given);
    let iwae_given =
        |vae: &Vae, x: &Tensor, eps: &Tensor| iwae_bound(vae, x, Some(&labels), eps).unwrap().loss;
    gradient_check(tiny_conditional(), 12, iwae_given);
}

/// `[x | one-hot(c)] Wᵀ + b` written out: the input columns of W times x, plus column `input_dim + c`.
#[test]
fn the_label_adds_its_column_of_the_first_weights_to_each_half() {
    let dev = cpu();
    let cfg = tiny_conditional();
    let mut rng = VaeRng::seed_from(5);
    let (vae, _) = Vae::init_with_dtype(&cfg, &mut rng, DType::F64, &dev).unwrap();
    let x = rng
        .uniform_dtype((2, 5), 0.0, 1.0, DType::F64, &dev)
        .unwrap();
    let labels = Tensor::new(&[7u32, 2], &dev).unwrap();
    let tensors: HashMap<String, Tensor> = vae.named_tensors().into_iter().collect();
    let first_layer = |name: &str, input: &Tensor, c: usize| -> Vec<f64> {
        let w = tensors[&format!("{name}.weight")].to_vec2::<f64>().unwrap();
        let b = tensors[&format!("{name}.bias")].to_vec1::<f64>().unwrap();
        let input = input.to_vec1::<f64>().unwrap();
        let n = input.len();
        (0..b.len())
            .map(|o| (b[o] + w[o][n + c] + (0..n).map(|i| w[o][i] * input[i]).sum::<f64>()).tanh())
            .collect()
    };
    let hidden0 = |model: &Vae, t: &Tensor, labels: &Tensor, encoder: bool| -> Vec<Vec<f64>> {
        // The first hidden layer of a half, through the model's own modules.
        let full =
            Tensor::cat(&[t, &model.label_input(Some(labels)).unwrap().unwrap()], 1).unwrap();
        let plan = cfg.plan();
        let spec = if encoder {
            &plan.encoder[0]
        } else {
            &plan.decoder[0]
        };
        let layer = vae_model::Dense::new(
            spec,
            candle_nn::VarBuilder::from_tensors(tensors.clone(), DType::F64, &dev)
                .pp(spec.block.prefix()),
        )
        .unwrap();
        candle_core::Module::forward(&layer, &full)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap()
    };
    let z = rng
        .uniform_dtype((2, 2), -1.0, 1.0, DType::F64, &dev)
        .unwrap();
    for (row, c) in [(0usize, 7usize), (1, 2)] {
        let got = hidden0(&vae, &x, &labels, true);
        let want = first_layer("encoder.hidden.0", &x.get(row).unwrap(), c);
        assert_close(&got[row], &want);
        let got = hidden0(&vae, &z, &labels, false);
        let want = first_layer("decoder.hidden.0", &z.get(row).unwrap(), c);
        assert_close(&got[row], &want);
    }
    // And the whole model reads it: another label gives other logits for the same z.
    let other = Tensor::new(&[1u32, 1], &dev).unwrap();
    let a = vae
        .decode(&z, Some(&labels))
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let b = vae
        .decode(&z, Some(&other))
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    assert!(a[0].iter().zip(&b[0]).any(|(p, q)| (p - q).abs() > 1e-6));
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

#[test]
fn labels_are_one_hot_class_indices_or_class_weight_rows() {
    let dev = cpu();
    let mut rng = VaeRng::seed_from(2);
    let (vae, _) = Vae::init(&tiny_conditional(), &mut rng, &dev).unwrap();
    let y = vae
        .label_input(Some(&Tensor::new(&[4u32, 0], &dev).unwrap()))
        .unwrap()
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut want = vec![vec![0f32; 10]; 2];
    (want[0][4], want[1][0]) = (1.0, 1.0);
    assert_eq!(y, want);
    let half = Tensor::full(0.1f32, (2, 10), &dev).unwrap();
    let y = vae.label_input(Some(&half)).unwrap().unwrap();
    assert_eq!(y.to_vec2::<f32>().unwrap(), half.to_vec2::<f32>().unwrap());

    let x = Tensor::zeros((2, 5), DType::F32, &dev).unwrap();
    let err = |labels: Option<&Tensor>| vae.encode(&x, labels).unwrap_err().to_string();
    assert!(err(None).contains("conditional"), "{}", err(None));
    let ten = Tensor::new(&[10u32, 0], &dev).unwrap();
    assert!(err(Some(&ten)).contains("label 10"), "{}", err(Some(&ten)));
    let narrow = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    assert!(
        err(Some(&narrow)).contains("3 columns"),
        "{}",
        err(Some(&narrow))
    );
    // An unconditional model ignores labels.
    let (plain, _) = Vae::init(&tiny(Activation::Tanh), &mut rng, &dev).unwrap();
    let with = plain
        .encode(&x, Some(&ten))
        .unwrap()
        .0
        .to_vec2::<f32>()
        .unwrap();
    let without = plain.encode(&x, None).unwrap().0.to_vec2::<f32>().unwrap();
    assert_eq!(with, without);
}

#[test]
fn the_iwae_bound_is_the_log_mean_of_the_importance_weights_written_out() {
    let dev = cpu();
    let cfg = tiny(Activation::Tanh);
    let mut rng = VaeRng::seed_from(5);
    let (vae, _) = Vae::init_with_dtype(&cfg, &mut rng, DType::F64, &dev).unwrap();
    let x = rng
        .uniform_dtype((3, 5), 0.0, 1.0, DType::F64, &dev)
        .unwrap();
    let (k, b) = (7, 3);
    let eps = vae.noise(k * b, &mut rng).unwrap();
    let got = iwae_bound(&vae, &x, None, &eps).unwrap();
    // Each sample's log w from its own one-row forward pass, by the densities' definitions.
    let (mu, logvar) = vae.encode(&x, None).unwrap();
    let (mu, logvar) = (
        mu.to_vec2::<f64>().unwrap(),
        logvar.to_vec2::<f64>().unwrap(),
    );
    let (xs, es) = (x.to_vec2::<f64>().unwrap(), eps.to_vec2::<f64>().unwrap());
    let normal = |v: f64, m: f64, var: f64| -0.5 * ((v - m).powi(2) / var + (2.0 * PI * var).ln());
    let (mut bound, mut recon, mut kl) = (0.0, 0.0, 0.0);
    for i in 0..b {
        let log_w: Vec<f64> = (0..k)
            .map(|s| {
                let e = &es[s * b + i];
                let z: Vec<f64> = (0..e.len())
                    .map(|j| mu[i][j] + (0.5 * logvar[i][j]).exp() * e[j])
                    .collect();
                let zt = Tensor::from_vec(z.clone(), (1, z.len()), &dev).unwrap();
                let logits = vae.decode(&zt, None).unwrap().to_vec2::<f64>().unwrap();
                let log_px_z: f64 = (0..5)
                    .map(|p| xs[i][p] * logits[0][p] - (1.0 + logits[0][p].exp()).ln())
                    .sum();
                let log_pz: f64 = z.iter().map(|&v| normal(v, 0.0, 1.0)).sum();
                let log_qz: f64 = (0..z.len())
                    .map(|j| normal(z[j], mu[i][j], logvar[i][j].exp()))
                    .sum();
                (recon, kl) = (recon - log_px_z, kl + log_qz - log_pz);
                log_px_z + log_pz - log_qz
            })
            .collect();
        let mean_w = log_w.iter().map(|w| w.exp()).sum::<f64>() / k as f64;
        bound -= mean_w.ln();
    }
    let n = (k * b) as f64;
    for (what, got, want) in [
        ("loss", &got.loss, bound / b as f64),
        ("recon", &got.recon, recon / n),
        ("kl", &got.kl, kl / n),
    ] {
        let got = scalar(got);
        assert!((got - want).abs() < 1e-9, "{what}: {got} vs {want}");
    }
    // It is a tighter bound than the same samples' average log w (Jensen).
    assert!(scalar(&got.loss) < (recon + kl) / n);
}

#[test]
fn same_seed_same_model_different_seed_different_model() {
    let dev = cpu();
    let cfg = tiny(Activation::Relu);
    let build = |seed| {
        let mut rng = VaeRng::seed_from(seed);
        let (vae, _) = Vae::init(&cfg, &mut rng, &dev).unwrap();
        let x = VaeRng::seed_from(100)
            .uniform((4, 5), 0.0, 1.0, &dev)
            .unwrap();
        let out = vae.forward(&x, None, &mut rng).unwrap();
        let weights: Vec<Vec<f32>> = vae
            .named_tensors()
            .iter()
            .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        (weights, out.logits.to_vec2::<f32>().unwrap())
    };
    let (w1, o1) = build(5);
    let (w2, o2) = build(5);
    let (w3, o3) = build(6);
    assert_eq!(w1, w2);
    assert_eq!(o1, o2);
    assert_ne!(w1, w3);
    assert_ne!(o1, o3);
}

#[test]
fn init_matches_pytorch_linear_default() {
    let cfg = VaeConfig::mnist();
    let (vae, _) = Vae::init(&cfg, &mut VaeRng::seed_from(0), &cpu()).unwrap();
    let tensors: HashMap<String, Tensor> = vae.named_tensors().into_iter().collect();
    for (name, fan_in) in [
        ("encoder.hidden.0.weight", 784.0),
        ("decoder.out.weight", 400.0),
        ("encoder.mu.bias", 400.0),
    ] {
        let v = tensors[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bound = 1.0 / f64::sqrt(fan_in);
        assert!(
            v.iter().all(|&w| (w as f64).abs() <= bound),
            "{name} out of ±{bound}"
        );
        // U(−b, b) has variance b²/3.
        let n = v.len() as f64;
        let var = v.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / n;
        let expect = bound * bound / 3.0;
        assert!(
            (var / expect - 1.0).abs() < 0.05 + 3.0 / n.sqrt(),
            "{name}: var {var} vs {expect}"
        );
    }
}

#[test]
fn sample_and_reconstruct_give_probabilities() {
    let dev = cpu();
    let cfg = tiny(Activation::Relu);
    let mut rng = VaeRng::seed_from(2);
    let (vae, _) = Vae::init(&cfg, &mut rng, &dev).unwrap();
    let s = vae.sample(6, None, &mut rng).unwrap();
    assert_eq!(s.dims(), &[6, 5]);
    let x = rng.uniform((3, 5), 0.0, 1.0, &dev).unwrap();
    let r = vae.reconstruct(&x, None).unwrap();
    assert_eq!(r.dims(), &[3, 5]);
    for v in s
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .chain(r.flatten_all().unwrap().to_vec1().unwrap())
    {
        assert!(v > 0.0 && v < 1.0);
    }
    // Reconstruction decodes the posterior mean: deterministic, and equal to decode_probs(mu).
    let (mu, _) = vae.encode(&x, None).unwrap();
    assert_eq!(
        r.to_vec2::<f32>().unwrap(),
        vae.decode_probs(&mu, None)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
}

mod files {
    use super::*;
    use std::path::Path;

    fn saved(dir: &Path) -> (Vae, std::path::PathBuf) {
        let cfg = VaeConfig {
            hidden_dims: vec![16, 8],
            latent_dim: 3,
            input_dim: 12,
            ..VaeConfig::mnist()
        };
        let (mut vae, _) = Vae::init(&cfg, &mut VaeRng::seed_from(4), &cpu()).unwrap();
        vae.set_dataset("mnist");
        let path = dir.join("model.safetensors");
        vae.save(&path).unwrap();
        (vae, path)
    }

    #[test]
    fn a_conditional_model_round_trips_with_its_wider_first_layers() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = VaeConfig {
            input_dim: 12,
            hidden_dims: vec![16],
            latent_dim: 3,
            conditional: true,
            ..VaeConfig::mnist()
        };
        let (vae, _) = Vae::init(&cfg, &mut VaeRng::seed_from(4), &cpu()).unwrap();
        let path = dir.path().join("cvae.safetensors");
        vae.save(&path).unwrap();
        let back = Vae::load(&path, &cpu()).unwrap();
        assert!(back.config().conditional);
        let shapes: HashMap<String, Vec<usize>> = back
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        assert_eq!(shapes["encoder.hidden.0.weight"], [16, 22]);
        assert_eq!(shapes["decoder.hidden.0.weight"], [16, 13]);
        let labels = Tensor::new(&[0u32, 9], &cpu()).unwrap();
        let z = VaeRng::seed_from(1).normal((2, 3), &cpu()).unwrap();
        let probs = |v: &Vae| {
            v.decode_probs(&z, Some(&labels))
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        assert_eq!(probs(&vae), probs(&back));
    }

    #[test]
    fn save_then_load_is_bit_identical() {
        let dir = tempfile::tempdir().unwrap();
        let (vae, path) = saved(dir.path());
        let back = Vae::load(&path, &cpu()).unwrap();
        assert_eq!(back.config(), vae.config());
        assert_eq!(back.dataset(), Some("mnist"));
        for ((n1, t1), (n2, t2)) in vae.named_tensors().iter().zip(back.named_tensors().iter()) {
            assert_eq!(n1, n2);
            let a: Vec<u32> = t1
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let b: Vec<u32> = t2
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(a, b, "{n1}");
        }
        let mut rng = VaeRng::seed_from(8);
        let x = rng.uniform((5, 12), 0.0, 1.0, &cpu()).unwrap();
        let eps = vae.noise(5, &mut rng).unwrap();
        let bits = |v: &Vae| -> Vec<u32> {
            let o = v.forward_with_noise(&x, None, &eps).unwrap();
            o.logits
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect()
        };
        assert_eq!(bits(&vae), bits(&back));
        // Saving the loaded model reproduces the tensor bytes exactly and the same metadata. (The header's JSON
        // key order is not stable: safetensors keeps metadata in a HashMap.)
        let again = dir.path().join("again.safetensors");
        back.save(&again).unwrap();
        let split = |p: &Path| {
            let bytes = std::fs::read(p).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            (bytes[8 + n..].to_vec(), meta.metadata().clone())
        };
        let (data1, meta1) = split(&path);
        let (data2, meta2) = split(&again);
        assert!(
            data1 == data2,
            "tensor data differs after a save/load/save round trip"
        );
        assert_eq!(meta1, meta2);
    }

    /// Rewrites the saved model with `edit` applied to its tensors and metadata.
    fn rewrite(
        path: &Path,
        out: &Path,
        edit: impl FnOnce(&mut Vec<(String, Tensor)>, &mut HashMap<String, String>),
    ) {
        let bytes = std::fs::read(path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut md = meta.metadata().clone().unwrap();
        let mut tensors: Vec<(String, Tensor)> =
            candle_core::safetensors::load_buffer(&bytes, &cpu())
                .unwrap()
                .into_iter()
                .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        edit(&mut tensors, &mut md);
        std::fs::write(out, safetensors::serialize(tensors, Some(md)).unwrap()).unwrap();
    }

    fn load_err(path: &Path) -> String {
        let err = Vae::load(path, &cpu()).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()),
            "error does not name the file: {err}"
        );
        assert!(!err.contains('\n'), "not one line: {err}");
        err
    }

    #[test]
    fn load_refuses_bad_files_with_a_named_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (_, good) = saved(dir.path());
        let bad = dir.path().join("bad.safetensors");

        rewrite(&good, &bad, |t, _| {
            t.retain(|(n, _)| n != "decoder.out.bias")
        });
        assert!(load_err(&bad).contains("missing tensor `decoder.out.bias`"));

        rewrite(&good, &bad, |t, _| {
            t.push((
                "encoder.extra.weight".into(),
                Tensor::zeros(3, DType::F32, &cpu()).unwrap(),
            ))
        });
        assert!(load_err(&bad).contains("unexpected tensor `encoder.extra.weight`"));

        rewrite(&good, &bad, |t, _| {
            let e = t
                .iter_mut()
                .find(|(n, _)| n == "encoder.mu.weight")
                .unwrap();
            e.1 = Tensor::zeros((3, 7), DType::F32, &cpu()).unwrap();
        });
        let e = load_err(&bad);
        assert!(
            e.contains("tensor `encoder.mu.weight` has shape [3, 7], expected [3, 8]"),
            "{e}"
        );

        rewrite(&good, &bad, |t, _| {
            let e = t
                .iter_mut()
                .find(|(n, _)| n == "decoder.hidden.1.bias")
                .unwrap();
            e.1 = e.1.to_dtype(DType::F64).unwrap();
        });
        let e = load_err(&bad);
        assert!(
            e.contains("tensor `decoder.hidden.1.bias` has dtype F64, expected F32"),
            "{e}"
        );

        rewrite(&good, &bad, |_, md| {
            md.insert("format".into(), "vae-candle/3".into());
        });
        assert!(load_err(&bad).contains("unknown format version \"vae-candle/3\""));
        // A Bernoulli model is format /1, so that it keeps its bytes; /2 is for what /1 cannot say.
        rewrite(&good, &bad, |_, md| {
            md.insert("format".into(), "vae-candle/2".into());
        });
        assert!(load_err(&bad).contains("a bernoulli decoder is format \"vae-candle/1\""));

        rewrite(&good, &bad, |_, md| {
            md.remove("format");
        });
        assert!(load_err(&bad).contains("no `format`"));

        rewrite(&good, &bad, |_, md| {
            md.insert("config".into(), r#"{"input_dim":12,"hidden_dims":[],"latent_dim":3,"activation":"relu","likelihood":"bernoulli"}"#.into());
        });
        assert!(load_err(&bad).contains("at least one hidden layer"));

        std::fs::write(&bad, b"this is not a safetensors file at all").unwrap();
        assert!(load_err(&bad).contains("not a safetensors file"));

        let bytes = std::fs::read(&good).unwrap();
        for cut in [4, 100, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&bad, &bytes[..cut]).unwrap();
            let e = load_err(&bad);
            assert!(
                e.contains("not a safetensors file") || e.contains("corrupt safetensors"),
                "cut {cut}: {e}"
            );
        }

        let e = load_err(&dir.path().join("absent.safetensors"));
        assert!(e.contains("No such file"), "{e}");

        for (value, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
            rewrite(&good, &bad, |t, _| {
                let e = t
                    .iter_mut()
                    .find(|(n, _)| n == "encoder.logvar.bias")
                    .unwrap();
                let mut v = e.1.to_vec1::<f32>().unwrap();
                v[1] = value;
                e.1 = Tensor::new(v, &cpu()).unwrap();
            });
            let e = load_err(&bad);
            assert!(
                e.contains(&format!(
                    "tensor `encoder.logvar.bias` holds {shown} at index 1"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn the_same_model_is_the_same_bytes() {
        // safetensors writes its metadata map in a random order; ten saves (each with a fresh HashMap) would
        // almost surely show two orders if the header were not put in a fixed order.
        let dir = tempfile::tempdir().unwrap();
        let (vae, path) = saved(dir.path());
        let first = std::fs::read(&path).unwrap();
        for i in 0..10 {
            let again = dir.path().join(format!("again-{i}.safetensors"));
            vae.save(&again).unwrap();
            assert!(std::fs::read(&again).unwrap() == first, "save {i} differs");
        }
        // And the file is still what safetensors reads.
        Vae::load(&path, &cpu()).unwrap();
    }
}
