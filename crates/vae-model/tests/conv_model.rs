//! Convolutional models: the plan of the common MNIST net layer by layer against its published description and
//! PyTorch's parameter count, PyTorch's initialisation bounds, the geometry refusals, shapes through the model,
//! and a byte-exact save/load round trip.

use candle_core::{Device, Tensor};
use vae_model::{Activation, ConvStack, LayerKind, Likelihood, Vae, VaeConfig, VaeRng};

fn mnist_conv() -> VaeConfig {
    VaeConfig {
        conv: Some(ConvStack {
            channels: vec![32, 64],
            kernel: 4,
            stride: 2,
            padding: 1,
        }),
        hidden_dims: vec![256],
        latent_dim: 32,
        ..VaeConfig::mnist()
    }
}

/// PyTorch-VAE's VanillaVAE on 32×32 colour images, with a discretised logistic decoder.
fn cifar_conv() -> VaeConfig {
    VaeConfig {
        input_dim: 3072,
        input_shape: Some(vec![3, 32, 32]),
        conv: Some(ConvStack {
            channels: vec![32, 64, 128, 256, 512],
            kernel: 3,
            stride: 2,
            padding: 1,
        }),
        hidden_dims: vec![],
        latent_dim: 128,
        activation: Activation::LeakyRelu,
        likelihood: Likelihood::Logistic,
        ..VaeConfig::mnist()
    }
}

type Row = (String, Vec<usize>, usize, usize, usize);

fn rows(cfg: &VaeConfig) -> Vec<Row> {
    cfg.plan()
        .layers()
        .map(|l| {
            let op = match l.kind {
                LayerKind::ConvTranspose(c) => c.output_padding,
                _ => 0,
            };
            (l.name(), l.weight_shape(), l.fan_in, l.fan_out, op)
        })
        .collect()
}

#[test]
fn mnist_conv_is_the_common_k4_s2_p1_net_with_pytorchs_parameter_count() {
    let cfg = mnist_conv();
    let want: Vec<Row> = [
        ("encoder.conv.0", vec![32, 1, 4, 4], 784, 32 * 14 * 14),
        ("encoder.conv.1", vec![64, 32, 4, 4], 32 * 14 * 14, 3136),
        ("encoder.hidden.0", vec![256, 3136], 3136, 256),
        ("encoder.mu", vec![32, 256], 256, 32),
        ("encoder.logvar", vec![32, 256], 256, 32),
        ("decoder.hidden.0", vec![256, 32], 32, 256),
        ("decoder.project", vec![3136, 256], 256, 3136),
        ("decoder.deconv.0", vec![64, 32, 4, 4], 3136, 32 * 14 * 14),
        ("decoder.out", vec![32, 1, 4, 4], 32 * 14 * 14, 784),
    ]
    .into_iter()
    .map(|(n, w, i, o)| (n.to_string(), w, i, o, 0))
    .collect();
    assert_eq!(rows(&cfg), want);
    // sum(p.numel()) of the PyTorch module.
    assert_eq!(cfg.num_parameters(), 1_700_609);
    let activations: Vec<_> = cfg.plan().layers().map(|l| l.activation).collect();
    let relu = Some(Activation::Relu);
    assert_eq!(
        activations,
        [relu, relu, relu, None, None, relu, relu, relu, None]
    );
}

#[test]
fn a_k3_stack_returns_to_32_by_32_through_output_padding_1() {
    let cfg = cifar_conv();
    cfg.validate().unwrap();
    let plan = cfg.plan();
    let maps: Vec<([usize; 3], [usize; 3], usize)> = plan
        .layers()
        .filter_map(|l| match l.kind {
            LayerKind::Conv(c) | LayerKind::ConvTranspose(c) => {
                Some((c.input, c.output, c.output_padding))
            }
            LayerKind::Dense => None,
        })
        .collect();
    assert_eq!(maps[0], ([3, 32, 32], [32, 16, 16], 0));
    assert_eq!(maps[4], ([256, 2, 2], [512, 1, 1], 0));
    assert_eq!(maps[5], ([512, 1, 1], [256, 2, 2], 1));
    // The logistic's mean and log-scale for each of the three channels.
    assert_eq!(maps[9], ([32, 16, 16], [6, 32, 32], 1));
    assert_eq!((plan.mu.fan_in, plan.mu.fan_out), (512, 128));
    assert_eq!(plan.decoder[0].weight_shape(), [512, 128]);
}

#[test]
fn initialisation_bounds_are_pytorchs_conv_defaults() {
    let cfg = mnist_conv();
    let plan = cfg.plan();
    let bound = |name: &str| {
        plan.layers()
            .find(|l| l.name() == name)
            .unwrap()
            .init_bound()
    };
    // kaiming_uniform(a=√5) gives 1/√fan_in with fan_in = weight.size(1)·k·k: C_in·16 for Conv2d, and C_out·16
    // for ConvTranspose2d, whose weight is [C_in, C_out, k, k].
    assert_eq!(bound("encoder.conv.1"), 1.0 / (32.0f64 * 16.0).sqrt());
    assert_eq!(bound("decoder.deconv.0"), 1.0 / (32.0f64 * 16.0).sqrt());
    assert_eq!(bound("decoder.out"), 1.0 / 16.0f64.sqrt());
    let mut rng = VaeRng::seed_from(3);
    let (vae, _) = Vae::init(&cfg, &mut rng, &Device::Cpu).unwrap();
    for (name, t) in vae.named_tensors() {
        let layer = name.rsplit_once('.').unwrap().0;
        let b = bound(layer) as f32;
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(max <= b, "{name}: max |w| {max}, bound {b}");
        if v.len() >= 100 {
            assert!(
                max > 0.9 * b,
                "{name}: max |w| {max}, far below the bound {b}"
            );
        }
    }
}

fn config_error(cfg: VaeConfig) -> String {
    cfg.validate().unwrap_err().to_string()
}

#[test]
fn geometry_that_does_not_fit_is_refused_naming_the_layer_and_sizes() {
    let with = |f: &dyn Fn(&mut ConvStack)| {
        let mut cfg = mnist_conv();
        f(cfg.conv.as_mut().unwrap());
        config_error(cfg)
    };
    let deep = with(&|c| c.channels = vec![8; 6]);
    assert!(
        deep.contains("encoder.conv.4") && deep.contains("1×1") && deep.contains("28×28"),
        "{deep}"
    );
    assert!(with(&|c| c.stride = 0).contains("conv.stride is 0"));
    assert!(with(&|c| c.kernel = 0).contains("conv.kernel is 0"));
    let big = with(&|c| c.kernel = 40);
    assert!(
        big.contains("kernel 40 is larger than its input 28×28"),
        "{big}"
    );
    assert!(with(&|c| c.channels = vec![]).contains("at least one layer"));
    assert!(with(&|c| c.channels = vec![4, 0]).contains("conv.channels[1] is 0"));
    assert!(with(&|c| c.channels = vec![1 << 20]).contains("at most 65536"));
    assert!(with(&|c| c.kernel = 1000).contains("at most 255"));
    // A hostile shape: every size computed without wrapping, and refused in one line.
    let huge = VaeConfig {
        input_dim: 1 << 62,
        input_shape: Some(vec![1, 1 << 31, 1 << 31]),
        conv: Some(ConvStack {
            channels: vec![65536],
            kernel: 1,
            stride: 1,
            padding: 0,
        }),
        ..mnist_conv()
    };
    assert!(config_error(huge).contains("too large"));
    let vectors = VaeConfig {
        input_dim: 10,
        input_shape: Some(vec![10]),
        ..mnist_conv()
    };
    assert!(config_error(vectors).contains("conv needs images"));
    // 28×27: the columns would need another output padding than the rows.
    let odd = VaeConfig {
        input_dim: 28 * 27,
        input_shape: Some(vec![1, 28, 27]),
        ..mnist_conv()
    };
    let odd = config_error(odd);
    assert!(
        odd.contains("transposed layer 0 cannot return 7×6 to 14×13"),
        "{odd}"
    );
}

#[test]
fn shapes_through_the_model_and_a_conditional_conv_model() {
    let dev = Device::Cpu;
    let mut rng = VaeRng::seed_from(5);
    let (vae, _) = Vae::init(&cifar_conv(), &mut rng, &dev).unwrap();
    let x = rng.uniform((2, 3072), 0.0, 1.0, &dev).unwrap();
    let out = vae.forward(&x, None, &mut rng).unwrap();
    assert_eq!(out.logits.dims(), [2, 2 * 3072]);
    assert_eq!(out.mu.dims(), [2, 128]);
    // IWAE decodes [K, B, latent] at once.
    let z = rng.normal((4, 2, 128), &dev).unwrap();
    assert_eq!(vae.decode(&z, None).unwrap().dims(), [4, 2, 2 * 3072]);

    let cfg = VaeConfig {
        conditional: true,
        num_classes: Some(10),
        ..mnist_conv()
    };
    let plan = cfg.plan();
    assert_eq!(plan.encoder[2].weight_shape(), [256, 3136 + 10]);
    assert_eq!(plan.decoder[0].weight_shape(), [256, 32 + 10]);
    let (cvae, _) = Vae::init(&cfg, &mut rng, &dev).unwrap();
    let x = rng.uniform((3, 784), 0.0, 1.0, &dev).unwrap();
    let labels = Tensor::new(&[1u32, 7, 7], &dev).unwrap();
    let (mu, _) = cvae.encode(&x, Some(&labels)).unwrap();
    let mu = mu.to_vec2::<f32>().unwrap();
    assert_ne!(mu[1], mu[2], "same label, different images");
    let one = x.narrow(0, 1, 1).unwrap();
    let same = Tensor::cat(&[&one, &one], 0).unwrap();
    let two = Tensor::new(&[1u32, 7], &dev).unwrap();
    let (mu, _) = cvae.encode(&same, Some(&two)).unwrap();
    let mu = mu.to_vec2::<f32>().unwrap();
    assert_ne!(mu[0], mu[1], "same image, different labels");
}

#[test]
fn a_conv_model_round_trips_byte_exact_as_format_2() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let mut rng = VaeRng::seed_from(6);
    let (vae, _) = Vae::init(&mnist_conv(), &mut rng, &dev).unwrap();
    let path = dir.path().join("conv.safetensors");
    vae.save(&path).unwrap();
    let back = Vae::load(&path, &dev).unwrap();
    assert_eq!(back.config(), vae.config());
    assert_eq!(vae_model::format_of(back.config()), vae_model::FORMAT_V2);
    let x = rng.uniform((3, 784), 0.0, 1.0, &dev).unwrap();
    let eps = vae.noise(3, &mut rng).unwrap();
    let logits = |v: &Vae| {
        let o = v.forward_with_noise(&x, None, &eps).unwrap().logits;
        o.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(logits(&vae), logits(&back));
    let again = dir.path().join("again.safetensors");
    back.save(&again).unwrap();
    let tensors = |p: &std::path::Path| {
        let mut t: Vec<(String, Vec<u8>)> = candle_core::safetensors::load(p, &dev)
            .unwrap()
            .into_iter()
            .map(|(n, t)| {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (n, v.iter().flat_map(|f| f.to_le_bytes()).collect())
            })
            .collect();
        t.sort();
        t
    };
    assert_eq!(tensors(&path), tensors(&again));
}
