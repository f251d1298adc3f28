//! Real (small) training runs on the MNIST that the product downloaded into `data/`: determinism, resume, the run directory, and the CLI's
//! refusals of bad input.

use std::path::Path;
use std::process::Command;

mod common;

use candle_core::Device;
use common::data_dir;
use vae_model::Vae;
use vae_train::{train, EpochMetrics, Overrides, RunConfig, TrainOptions};

/// The names in a directory, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A small, quick config: 784-64-8 on 3000 images.
fn small(epochs: usize) -> RunConfig {
    let (base, _) = RunConfig::load_preset("mnist", Path::new("/nonexistent")).unwrap();
    base.apply(&Overrides {
        epochs: Some(epochs),
        hidden_dims: Some(vec![64]),
        latent_dim: Some(8),
        train_subset: Some(3000),
        seed: Some(7),
        ..Default::default()
    })
    .unwrap()
}

fn run(cfg: &RunConfig, out: &Path, resume: bool) -> anyhow::Result<Vec<EpochMetrics>> {
    run_until(cfg, out, resume, None)
}

/// As [`run`], stopping as an interrupt would once `stop` optimiser steps are done.
fn run_until(
    cfg: &RunConfig,
    out: &Path,
    resume: bool,
    stop: Option<u64>,
) -> anyhow::Result<Vec<EpochMetrics>> {
    let opts = TrainOptions {
        data_dir: data_dir().to_path_buf(),
        out_dir: out.to_path_buf(),
        device: Device::Cpu,
        resume,
        overwrite: false,
        progress: false,
        interrupt: vae_train::Interrupt::none(),
        strict: false,
        stop_after_steps: stop,
    };
    train(cfg, &opts).map(|report| report.history)
}

/// The numbers that must reproduce: everything but the timings.
fn numbers(m: &[EpochMetrics]) -> Vec<[u64; 7]> {
    m.iter()
        .map(|m| {
            [
                m.epoch as f64,
                m.train_loss,
                m.train_recon,
                m.train_kl,
                m.test_loss,
                m.test_recon,
                m.test_kl,
            ]
            .map(f64::to_bits)
        })
        .collect()
}

#[test]
fn same_seed_same_numbers_and_a_complete_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run(&small(2), &tmp.path().join("a"), false).unwrap();
    let b = run(&small(2), &tmp.path().join("b"), false).unwrap();
    assert_eq!(
        numbers(&a),
        numbers(&b),
        "same seed, same data, same numbers"
    );
    let mut other = small(2);
    other.training.seed = 8;
    let c = run(&other, &tmp.path().join("c"), false).unwrap();
    assert_ne!(numbers(&a), numbers(&c));

    // Learning happened: an untrained 784-64-8 model scores ~545 nats; 48 Adam steps reach ~250.
    assert!(
        a[1].test_loss < a[0].test_loss && a[1].test_loss < 300.0,
        "{a:?}"
    );
    for m in &a {
        assert!((m.train_loss - (m.train_recon + m.train_kl)).abs() < 1e-3);
        assert!((m.test_loss - (m.test_recon + m.test_kl)).abs() < 1e-3);
        assert!(m.epoch_s > 0.0 && (m.images_per_s * m.epoch_s - 3000.0).abs() < 1.0);
    }

    let dir = tmp.path().join("a");
    let lines: Vec<EpochMetrics> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, a);
    let cfg: RunConfig =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg, small(2));
    let vae = Vae::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(vae.config(), &small(2).model);
    assert_eq!(vae.dataset(), Some("mnist"));
    for (png, size) in [
        ("samples.png", (8 * 58 + 2, 8 * 58 + 2)),
        ("reconstructions.png", (8 * 58 + 2, 2 * 58 + 2)),
        ("curves.png", (1500, 450)),
        ("scatter.png", (900, 800)),
    ] {
        let img = image::open(dir.join(png)).unwrap().to_luma8();
        assert_eq!(img.dimensions(), size, "{png}");
    }
    // Nothing else is left in the run directory (no temporaries).
    assert_eq!(
        file_names(&dir),
        [
            "checkpoint.safetensors",
            "config.json",
            "curves.png",
            "metrics.jsonl",
            "model.safetensors",
            "reconstructions.png",
            "samples.png",
            "scatter.png"
        ]
    );
}

/// The small config as a conditional model, trained by `engine`.
fn small_conditional(engine: vae_train::Engine) -> RunConfig {
    let mut cfg = small(1);
    (cfg.model.conditional, cfg.model.num_classes) = (true, Some(10));
    cfg.training.engine = engine;
    cfg
}

#[test]
fn a_conditional_model_trains_alike_through_both_engines_and_draws_a_row_per_class() {
    let tmp = tempfile::tempdir().unwrap();
    let fused = run(
        &small_conditional(vae_train::Engine::Fused),
        &tmp.path().join("f"),
        false,
    )
    .unwrap();
    let autograd = run(
        &small_conditional(vae_train::Engine::Autograd),
        &tmp.path().join("a"),
        false,
    )
    .unwrap();
    // The same steps, rounded in another order: the same losses to a fraction of a percent.
    let (f, a) = (fused[0].test_loss, autograd[0].test_loss);
    assert!((f - a).abs() < 1e-3 * a, "fused {f} vs autograd {a}");
    // An untrained 784-64-8 model scores ~545 nats; 23 Adam steps reach ~360.
    assert!(f < 450.0, "learning happened: {f}");
    let vae = Vae::load(tmp.path().join("f/model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(vae.config().label_dim(), 10);
    let samples = image::open(tmp.path().join("f/samples.png")).unwrap();
    assert_eq!(
        (samples.width(), samples.height()),
        (8 * 58 + 2, 10 * 58 + 2)
    );
    assert!(!tmp.path().join("f/manifold.png").exists());
}

/// `mnist-conv` on 1024 images for one epoch, run in a rayon pool of `threads`.
fn small_conv_in_pool(threads: usize, out: &Path) -> Vec<EpochMetrics> {
    let (base, _) = RunConfig::load_preset("mnist-conv", Path::new("/nonexistent")).unwrap();
    let cfg = base
        .apply(&Overrides {
            epochs: Some(1),
            train_subset: Some(1024),
            seed: Some(7),
            ..Default::default()
        })
        .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| run(&cfg, out, false)).unwrap()
}

#[test]
fn a_conv_model_splits_its_steps_over_the_pool_and_keeps_its_numbers() {
    // A conv model's step splits its images over every thread of the pool it runs in, with per-thread sums added
    // in a fixed order: two threads give the same bytes twice, and the numbers of one thread to rounding.
    let tmp = tempfile::tempdir().unwrap();
    let two = small_conv_in_pool(2, &tmp.path().join("a"));
    let again = small_conv_in_pool(2, &tmp.path().join("b"));
    assert_eq!(numbers(&two), numbers(&again));
    let one = small_conv_in_pool(1, &tmp.path().join("c"));
    // The split is real: two threads add the weight gradients' partial sums in another order than one.
    assert_ne!(numbers(&two), numbers(&one));
    let (a, b) = (two[0].test_loss, one[0].test_loss);
    assert!((a - b).abs() < 1e-3 * b, "two threads {a} vs one {b}");
    // An untrained mnist-conv scores ~545 nats; 8 Adam steps take it below 400.
    assert!(a < 400.0, "learning happened: {a}");
}

#[test]
fn resume_continues_exactly_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = run(&small(3), &tmp.path().join("straight"), false).unwrap();

    let split = tmp.path().join("split");
    run(&small(1), &split, false).unwrap();
    let resumed = run(&small(3), &split, true).unwrap();
    assert_eq!(numbers(&resumed), numbers(&straight));
    let a = std::fs::read(tmp.path().join("straight/model.safetensors")).unwrap();
    let b = std::fs::read(split.join("model.safetensors")).unwrap();
    let tensors = |bytes: &[u8]| {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        bytes[8 + n..].to_vec()
    };
    assert!(
        tensors(&a) == tensors(&b),
        "resumed weights differ from an uninterrupted run"
    );

    // A different config is refused, naming the checkpoint.
    let mut other = small(3);
    other.training.lr = 0.01;
    let err = format!("{:#}", run(&other, &split, true).unwrap_err());
    assert!(
        err.contains("checkpoint.safetensors") && err.contains("different config"),
        "{err}"
    );

    // No checkpoint at all.
    let err = format!(
        "{:#}",
        run(&small(2), &tmp.path().join("fresh"), true).unwrap_err()
    );
    assert!(err.contains("no checkpoint to resume from"), "{err}");
}

#[test]
fn an_interrupted_epoch_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    // Dynamic binarisation and both engines: the resume must replay the shuffle, the binarisation draws and the
    // noise of the steps it had done.
    for engine in [vae_train::Engine::Fused, vae_train::Engine::Autograd] {
        let mut cfg = small(3);
        cfg.training.binarize = vae_data::Binarize::Dynamic;
        cfg.training.engine = engine;
        let whole = run(&cfg, &tmp.path().join(format!("{engine:?}-whole")), false).unwrap();
        let out = tmp.path().join(format!("{engine:?}-cut"));
        // 3000 images in batches of 128: 24 steps an epoch, so step 30 is inside epoch 2.
        let err = run_until(&cfg, &out, false, Some(30)).unwrap_err();
        let stop = err
            .downcast_ref::<vae_train::Interrupted>()
            .expect("an interruption");
        assert_eq!((stop.epoch, stop.step, stop.signal), (2, 6, None), "{err}");
        assert!(!out.join("model.safetensors").exists());
        let ck =
            vae_train::checkpoint::load(&out.join("checkpoint.safetensors"), &cfg, &Device::Cpu)
                .unwrap();
        assert_eq!(
            (ck.epoch, ck.adam.step, ck.partial.unwrap().batches),
            (1, 30, 6)
        );
        // Stopped again at once, then resumed to the end.
        let err = run_until(&cfg, &out, true, Some(30)).unwrap_err();
        assert!(
            err.downcast_ref::<vae_train::Interrupted>().is_some(),
            "{err}"
        );
        let resumed = run(&cfg, &out, true).unwrap();
        assert_eq!(numbers(&resumed), numbers(&whole), "{engine:?}");
    }
}

mod cli {
    use super::*;

    fn vae_train(args: &[&str]) -> (bool, String, String) {
        let (code, stdout, stderr) = common::vae_train(args);
        (code == Some(0), stdout, stderr)
    }

    /// Exits non-zero with exactly one `error:` line containing every needle, and no panic.
    fn refused(args: &[&str], needles: &[&str]) {
        let (ok, _, err) = vae_train(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("error:"), "{err}");
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: `{n}` not in {err}");
        }
    }

    #[test]
    fn bad_input_gets_one_clear_line_and_no_model() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let out_s = out.to_str().unwrap();
        let data = data_dir().to_str().unwrap();

        refused(
            &["train", "--preset", "nope", "--out", out_s],
            &["unknown preset `nope`"],
        );
        let bad_preset = tmp.path().join("bad.toml");
        std::fs::write(
            &bad_preset,
            preset_text().replace("lr = 1e-3", "lr = 1e-3\nlearning_rate = 2"),
        )
        .unwrap();
        refused(
            &[
                "train",
                "--preset",
                bad_preset.to_str().unwrap(),
                "--out",
                out_s,
            ],
            &["bad.toml", "learning_rate"],
        );
        refused(
            &["train", "--epochs", "0", "--out", out_s, "--data-dir", data],
            &["epochs must be at least 1"],
        );
        refused(
            &["train", "--lr", "5", "--out", out_s, "--data-dir", data],
            &["training.lr"],
        );
        refused(
            &["train", "--device", "cuda", "--out", out_s],
            &["cargo xtask build --device cuda"],
        );
        refused(
            &["train", "--out", out_s, "--resume", "--data-dir", data],
            &["no checkpoint to resume from"],
        );

        // A missing dataset, and a corrupt one.
        let empty = tmp.path().join("empty");
        refused(
            &[
                "train",
                "--out",
                out_s,
                "--data-dir",
                empty.to_str().unwrap(),
            ],
            &[
                "missing",
                "vae-train download --dataset mnist",
                "train --download",
            ],
        );
        let corrupt = tmp.path().join("corrupt");
        std::fs::create_dir_all(corrupt.join("mnist")).unwrap();
        for f in vae_data::FILE_NAMES {
            std::fs::copy(
                data_dir().join("mnist").join(f),
                corrupt.join("mnist").join(f),
            )
            .unwrap();
        }
        let labels = corrupt.join("mnist/train-labels-idx1-ubyte.gz");
        let bytes = std::fs::read(&labels).unwrap();
        std::fs::write(&labels, &bytes[..bytes.len() / 2]).unwrap();
        refused(
            &[
                "train",
                "--out",
                out_s,
                "--data-dir",
                corrupt.to_str().unwrap(),
            ],
            &["train-labels-idx1-ubyte.gz"],
        );
        assert!(
            !out.join("model.safetensors").exists(),
            "no model after a failed run"
        );

        // --model pointing at things that are not our format.
        let not_model = tmp.path().join("notes.txt");
        std::fs::write(&not_model, "hello").unwrap();
        refused(
            &[
                "eval",
                "--model",
                not_model.to_str().unwrap(),
                "--data-dir",
                data,
            ],
            &["notes.txt", "not a safetensors file"],
        );
        refused(
            &[
                "sample",
                "--model",
                "/nonexistent/model.safetensors",
                "--out",
                "x.png",
            ],
            &["/nonexistent/model.safetensors"],
        );

        // Flags clap rejects exit non-zero too (with usage help, so not checked for one line).
        let (ok, _, err) = vae_train(&["train", "--epochs", "many"]);
        assert!(!ok && err.contains("invalid value 'many'"), "{err}");
    }

    fn preset_text() -> &'static str {
        vae_train::BUILTIN_PRESETS[0].1
    }

    /// One epoch of a 784-32-`latent` model on the first `images` training images.
    fn quick_train(out: &Path, latent: usize, images: usize) -> (bool, String, String) {
        quick_train_with(out, latent, images, &[])
    }

    /// [`quick_train`] with more flags.
    fn quick_train_with(
        out: &Path,
        latent: usize,
        images: usize,
        extra: &[&str],
    ) -> (bool, String, String) {
        let (code, stdout, stderr) = common::quick_train(out, latent, images, extra);
        (code == Some(0), stdout, stderr)
    }

    #[test]
    fn iwae_training_reports_a_bound_tighter_than_its_samples_average_and_eval_exports_its_inputs()
    {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let iwae = ["--binarize", "dynamic", "--objective", "iwae", "--k", "5"];
        let (ok, stdout, err) = quick_train_with(&out, 4, 1000, &iwae);
        assert!(ok, "{err}");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            (&config["training"]["objective"], &config["training"]["k"]),
            (&"iwae".into(), &5.into())
        );
        // Per batch, log (1/k) Σ w ≥ (1/k) Σ log w (Jensen), so the bound is below recon + kl, its samples' average.
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let f = |k: &str| summary["final"][k].as_f64().unwrap();
        assert!(
            f("train_loss") < f("train_recon") + f("train_kl"),
            "{summary}"
        );

        let inputs = tmp.path().join("x.npy");
        let model = out.join("model.safetensors");
        let data = data_dir().to_str().unwrap();
        let args = [
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data-dir",
            data,
        ];
        let more = ["--iw-samples", "20", "--test-subset", "100", "--inputs-out"];
        let (ok, stdout, err) =
            vae_train(&[&args[..], &more, &[inputs.to_str().unwrap()]].concat());
        assert!(ok, "{err}");
        let eval: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert!(eval["test_nll_iw"].as_f64().unwrap().is_finite(), "{eval}");
        let x = candle_core::Tensor::read_npy(&inputs).unwrap();
        assert_eq!(x.dims(), &[100, 784]);
        let pixels = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            pixels.iter().all(|&p| p == 0.0 || p == 1.0),
            "binarised as trained"
        );
        assert!(pixels.contains(&1.0));

        refused(
            &[&args[..], &["--inputs-out", "/nonexistent/dir/x.npy"]].concat(),
            &["/nonexistent/dir/x.npy"],
        );
        let out_s = out.to_str().unwrap();
        refused(
            &["train", "--k", "5", "--out", out_s, "--data-dir", data],
            &["training.k = 5 needs objective = \"iwae\""],
        );
        refused(
            &[
                "train",
                "--objective",
                "iwae",
                "--k",
                "0",
                "--out",
                out_s,
                "--data-dir",
                data,
            ],
            &["training.k must be in 1..=5000"],
        );
    }

    #[test]
    fn eval_binarises_the_test_set_as_the_model_was_trained() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let (ok, _, err) = quick_train_with(&out, 4, 1000, &["--binarize", "dynamic"]);
        assert!(ok, "{err}");
        let model = out.join("model.safetensors");
        assert_eq!(
            Vae::load(&model, &Device::Cpu).unwrap().binarize(),
            Some("dynamic")
        );
        let eval = |extra: &[&str]| -> serde_json::Value {
            let base = [
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--test-subset",
                "2000",
            ];
            let data = ["--data-dir", data_dir().to_str().unwrap()];
            let (ok, stdout, err) = vae_train(&[&base[..], &data, extra].concat());
            assert!(ok, "{err}");
            serde_json::from_str(stdout.trim()).unwrap()
        };
        let (recorded, dynamic, grey) = (
            eval(&[]),
            eval(&["--binarize", "dynamic"]),
            eval(&["--binarize", "none"]),
        );
        assert_eq!(recorded["binarize"], "dynamic");
        assert_eq!(recorded["test_images"], 2000);
        assert_eq!(
            recorded, dynamic,
            "the recorded binarisation is the default"
        );
        assert_ne!(recorded["test_loss"], grey["test_loss"]);
        // Grey targets carry their own entropy in the BCE, so their reconstruction term is the larger.
        assert!(
            grey["test_recon"].as_f64() > recorded["test_recon"].as_f64(),
            "{grey} vs {recorded}"
        );
    }

    #[test]
    fn overwrite_replaces_an_earlier_run_and_sweeps_our_temporaries() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        // A 2-D run leaves manifold.png; a 4-D run over it must not keep it.
        let (ok, _, err) = quick_train(&out, 2, 1000);
        assert!(ok, "{err}");
        assert!(out.join("manifold.png").is_file());
        std::fs::write(out.join(".tmp-abandoned"), b"half a checkpoint").unwrap();
        let (ok, _, err) = quick_train(&out, 4, 1000);
        assert!(!ok && err.contains("--overwrite"), "{err}");
        let (ok, _, err) = quick_train_with(&out, 4, 1000, &["--overwrite"]);
        assert!(ok, "{err}");
        assert_eq!(
            file_names(&out),
            [
                "checkpoint.safetensors",
                "config.json",
                "curves.png",
                "metrics.jsonl",
                "model.safetensors",
                "reconstructions.png",
                "samples.png",
                "scatter.png"
            ]
        );
        let vae = Vae::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(vae.config().latent_dim, 4);
    }

    #[test]
    fn limits_and_causes_are_stated_once() {
        let tmp = tempfile::tempdir().unwrap();
        let absent = tmp.path().join("absent.safetensors");
        let (ok, _, err) = vae_train(&["eval", "--model", absent.to_str().unwrap()]);
        assert!(!ok);
        assert_eq!(err.matches("No such file").count(), 1, "{err}");
        // The documented bound on importance samples, enforced before anything loads.
        let (ok, _, err) = vae_train(&[
            "eval",
            "--model",
            absent.to_str().unwrap(),
            "--iw-samples",
            "100001",
        ]);
        assert!(
            !ok && err.contains("100001") && err.contains("0..=100000"),
            "{err}"
        );
    }

    #[test]
    fn train_eval_sample_reconstruct_through_the_binary() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let data = data_dir().to_str().unwrap();
        let (ok, stdout, err) = quick_train(&out, 4, 2000);
        assert!(ok, "{err}");
        let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let last: EpochMetrics = serde_json::from_value(summary["final"].clone()).unwrap();
        assert_eq!(summary["engine"], "fused");
        // The whole dataset is loaded even for a subset. Kept as bytes, this run peaks at about 70 MiB; with f32
        // pixels (and a second f32 copy in the batcher) it peaked at 419.
        let peak = summary["peak_rss_mib"].as_f64().unwrap();
        assert!((10.0..250.0).contains(&peak), "peak RSS {peak} MiB");
        let model = out.join("model.safetensors");

        let (ok, stdout, err) = vae_train(&[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data-dir",
            data,
            "--iw-samples",
            "10",
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["dataset"], "mnist");
        assert_eq!(v["test_images"], 10000);
        let loss = v["test_loss"].as_f64().unwrap();
        assert!(
            (loss - last.test_loss).abs() < 1.0,
            "{loss} vs {}",
            last.test_loss
        );
        assert!(
            (loss - v["test_recon"].as_f64().unwrap() - v["test_kl"].as_f64().unwrap()).abs()
                < 1e-3
        );
        // The importance-weighted bound is tighter than the ELBO.
        assert!(v["test_nll_iw"].as_f64().unwrap() < loss);

        let png = tmp.path().join("s.png");
        let (ok, _, err) = vae_train(&[
            "sample",
            "--model",
            model.to_str().unwrap(),
            "--n",
            "10",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        assert_eq!(
            image::open(&png).unwrap().to_luma8().dimensions(),
            (4 * 58 + 2, 3 * 58 + 2)
        );
        // A 2-D latent space also gets the manifold figure: 20×20 tiles.
        let out2 = tmp.path().join("run2d");
        let (ok, _, err) = quick_train(&out2, 2, 1000);
        assert!(ok, "{err}");
        assert_eq!(
            image::open(out2.join("manifold.png"))
                .unwrap()
                .to_luma8()
                .dimensions(),
            (20 * 58 + 2, 20 * 58 + 2)
        );
        assert!(
            !out.join("manifold.png").exists(),
            "only for 2-D latent spaces"
        );

        let png = tmp.path().join("r.png");
        let (ok, _, err) = vae_train(&[
            "reconstruct",
            "--model",
            model.to_str().unwrap(),
            "--data-dir",
            data,
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        assert_eq!(
            image::open(&png).unwrap().to_luma8().dimensions(),
            (8 * 58 + 2, 2 * 58 + 2)
        );
    }

    #[test]
    fn sigint_checkpoints_the_partial_epoch_and_resume_finishes_it_identically() {
        let tmp = tempfile::tempdir().unwrap();
        let data = data_dir().to_str().unwrap();
        let args = |out: &Path| -> Vec<String> {
            [
                "train",
                "--epochs",
                "5",
                "--hidden-dims",
                "64",
                "--latent-dim",
                "8",
                "--seed",
                "3",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "--data-dir".into(),
                data.into(),
                "--out".into(),
                out.display().to_string(),
            ])
            .collect()
        };
        let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
        let (ok, _, err) = vae_train(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{err}");

        let (code, rest) = signal_during_training(&args(&cut), "INT");
        assert_eq!(code, Some(130), "{rest}");
        assert!(rest.contains("--resume"), "{rest}");
        assert!(!cut.join("model.safetensors").exists());

        let mut resume = args(&cut);
        resume.push("--resume".into());
        let (ok, _, err) = vae_train(&resume.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{err}");
        let metrics = |dir: &Path| -> Vec<EpochMetrics> {
            std::fs::read_to_string(dir.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(numbers(&metrics(&cut)), numbers(&metrics(&whole)));
        assert_eq!(
            std::fs::read(cut.join("model.safetensors")).unwrap(),
            std::fs::read(whole.join("model.safetensors")).unwrap(),
            "the same model, byte for byte"
        );
    }

    /// Starts `vae-train` with `args` (a 5-epoch run), sends `kill -<signal>` once training has begun, and returns
    /// the exit code and what it printed after that.
    fn signal_during_training(args: &[String], signal: &str) -> (Option<i32>, String) {
        signals_during_training(args, &[signal])
    }

    /// As [`signal_during_training`], with one signal after another, 100 ms apart.
    fn signals_during_training(args: &[String], signals: &[&str]) -> (Option<i32>, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vae-train"))
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until training has started, then interrupt it within its first epoch.
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        while !seen.contains("training 5 epochs") {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            assert!(n > 0, "{seen}");
            seen.push_str(&line);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        for (i, signal) in signals.iter().enumerate() {
            if i > 0 {
                // Apart, so that the kernel does not merge two pending signals into one.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let kill = Command::new("kill")
                .args([format!("-{signal}"), child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
        }
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        (child.wait().unwrap().code(), rest)
    }

    /// What bash offers for the words typed so far (the last one being completed), with our completion script.
    fn bash_completes(words: &[&str]) -> Vec<String> {
        let script = r#"source <("$0" completions bash)
            COMP_WORDS=("vae-train" "$@"); COMP_CWORD=$#
            _vae__train vae-train "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\n' "${COMPREPLY[@]}""#;
        let out = Command::new("bash")
            .args(["-c", script, env!("CARGO_BIN_EXE_vae-train")])
            .args(words)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn bash_completes_subcommands_and_their_flags() {
        assert_eq!(bash_completes(&["tr"]), ["train", "traverse"]);
        assert_eq!(bash_completes(&["gen"]), ["generate"]);
        assert_eq!(bash_completes(&["generate", "--tem"]), ["--temperature"]);
        assert_eq!(bash_completes(&["train", "--ep"]), ["--epochs"]);
        assert_eq!(bash_completes(&["sample", "--n"]), ["--n"]);
        let engines = bash_completes(&["train", "--engine", ""]);
        assert_eq!(engines, ["auto", "autograd", "fused"]);
        for shell in ["zsh", "fish", "elvish", "powershell"] {
            let (code, script, err) = common::vae_train(&["completions", shell]);
            assert_eq!(code, Some(0), "{err}");
            for word in ["train", "epochs", "iw-samples", "completions"] {
                assert!(script.contains(word), "{shell}: {word}");
            }
        }
    }

    #[test]
    fn man_pages_cover_every_subcommand_and_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let (ok, _, err) = vae_train(&["man", "--out", tmp.path().to_str().unwrap()]);
        assert!(ok, "{err}");
        let mut pages: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        let expected = [
            "vae-train-completions.1",
            "vae-train-curves.1",
            "vae-train-download.1",
            "vae-train-encode.1",
            "vae-train-eval.1",
            "vae-train-export-images.1",
            "vae-train-export-web.1",
            "vae-train-generate.1",
            "vae-train-import.1",
            "vae-train-interpolate.1",
            "vae-train-preset.1",
            "vae-train-reconstruct.1",
            "vae-train-sample.1",
            "vae-train-scatter.1",
            "vae-train-serve.1",
            "vae-train-train.1",
            "vae-train-traverse.1",
            "vae-train.1",
        ];
        assert_eq!(pages, expected);
        let train = std::fs::read_to_string(tmp.path().join("vae-train-train.1")).unwrap();
        assert!(train.starts_with(".ie"), "roff");
        for flag in [
            "epochs",
            "resume",
            "overwrite",
            "hidden\\-dims",
            "dataset",
            "image\\-size",
            "strict",
        ] {
            assert!(train.contains(&format!("\\-\\-{flag}")), "{flag}");
        }
    }

    /// `download` of MNIST into `data` from the test data folder (a local source: no network).
    fn copy_mnist_into(data: &Path) -> Vec<String> {
        let (into, from) = (data.display().to_string(), data_dir().display().to_string());
        [
            "download",
            "--dataset",
            "mnist",
            "--data-dir",
            &into,
            "--from",
            &from,
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn download_names_and_replaces_a_bad_file_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let labels = tmp.path().join("mnist/t10k-labels-idx1-ubyte.gz");
        std::fs::create_dir_all(labels.parent().unwrap()).unwrap();
        std::fs::write(&labels, b"stale").unwrap();
        let args = copy_mnist_into(tmp.path());
        let (ok, _, err) = vae_train(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{err}");
        let stale_sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b"stale"))
        };
        let warning = format!(
            "{}: present but not the published file (sha256 {stale_sha}); replacing it",
            labels.display()
        );
        assert!(err.contains(&warning), "{err}");
        assert_eq!(
            std::fs::read(&labels).unwrap(),
            std::fs::read(data_dir().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap()
        );
    }

    #[test]
    fn a_disk_that_takes_no_more_is_named_and_nothing_half_written_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnist");
        std::fs::create_dir_all(&dir).unwrap();
        let images = dir.join("train-images-idx3-ubyte.gz");
        std::fs::write(&images, b"an earlier file").unwrap();
        // Without root a test cannot fill a disk; a file-size limit makes the same write fail (EFBIG rather than
        // ENOSPC). SIGXFSZ is ignored so that the write returns the error instead of killing the process.
        let out = Command::new("sh")
            .args([
                "-c",
                "trap '' XFSZ; ulimit -f 1000; exec \"$0\" \"$@\"",
                env!("CARGO_BIN_EXE_vae-train"),
            ])
            .args(copy_mnist_into(tmp.path()))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            2,
            "a warning for the earlier file, then the error: {err}"
        );
        assert!(
            lines[1].starts_with(&format!(
                "error: {}: no room to write train-images-idx3-ubyte.gz (File too large",
                dir.display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read(&images).unwrap(), b"an earlier file");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["train-images-idx3-ubyte.gz"], "no .part left");
    }

    #[test]
    fn a_second_sigint_exits_at_once_without_finishing_the_step() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        // Steps of two seconds or more here (20 000 images × two layers of 1000: 4·10¹¹ flops), so both signals
        // land inside the first one: the first asks for a stop after it, the second must not wait for it.
        let args = train_args(
            &[
                "--epochs",
                "5",
                "--batch-size",
                "20000",
                "--hidden-dims",
                "1000,1000",
            ],
            &out,
        );
        let (code, rest) = signals_during_training(&args, &["INT", "INT"]);
        assert_eq!(code, Some(130), "{rest}");
        assert!(!rest.contains("interrupted in epoch"), "{rest}");
        assert!(
            !out.join("checkpoint.safetensors").exists(),
            "the step was not finished, so nothing was checkpointed"
        );
    }

    /// `train FLAGS --data-dir <data> --out OUT`.
    fn train_args(flags: &[&str], out: &Path) -> Vec<String> {
        let data = data_dir().display().to_string();
        let tail = [
            "--data-dir".into(),
            data,
            "--out".into(),
            out.display().to_string(),
        ];
        std::iter::once("train".to_string())
            .chain(flags.iter().map(|s| s.to_string()))
            .chain(tail)
            .collect()
    }

    #[test]
    fn sigterm_also_checkpoints_and_exits_143() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let args = train_args(
            &["--epochs", "5", "--hidden-dims", "64", "--latent-dim", "8"],
            &out,
        );
        let (code, rest) = signal_during_training(&args, "TERM");
        assert_eq!(code, Some(143), "{rest}");
        assert!(rest.contains("--resume"), "{rest}");
        assert!(
            out.join("checkpoint.safetensors").is_file() && !out.join("model.safetensors").exists()
        );
    }
}

/// `VAE_PROFILE=1` and `VAE_GEMM`, through the binary.
mod profile {
    use super::*;
    use std::ffi::OsStr;

    /// One profiled epoch of 784-32-4 on 1280 images (10 batches of 128) with `gemm` forced (or measured when
    /// `None`): the run summary.
    fn profiled(gemm: Option<&str>) -> serde_json::Value {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("sgemm.json");
        let env = [
            ("VAE_PROFILE", Some(OsStr::new("1"))),
            ("VAE_GEMM_CACHE", Some(cache.as_os_str())),
            ("VAE_GEMM", gemm.map(OsStr::new)),
        ];
        let extra = ["--batch-size", "128", "--engine", "fused"];
        let (code, stdout, stderr) =
            common::quick_train_env(&tmp.path().join("run"), 4, 1280, &extra, &env);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str(stdout.trim()).unwrap()
    }

    #[test]
    fn a_profiled_epoch_accounts_for_its_time_and_names_every_product() {
        let run = profiled(None);
        let p = &run["profile"];
        let ms = |k: &str| p[k].as_f64().unwrap();
        assert_eq!(p["epochs"], 1);
        let parts: f64 = [
            "products_ms",
            "elementwise_ms",
            "adam_ms",
            "noise_ms",
            "data_ms",
            "other_ms",
        ]
        .iter()
        .map(|k| ms(k))
        .sum();
        let epoch = ms("epoch_ms");
        assert!(
            (parts - epoch).abs() < 0.01 * epoch,
            "parts {parts} vs epoch {epoch}"
        );
        // Four layers: four forward products and four weight gradients, and three input gradients (none into x),
        // each once per batch, with its FLOPs over its time. The first layer's two run on the images' nonzeros.
        let products = p["products"].as_array().unwrap();
        let named = |q: &serde_json::Value| match q["backend"].as_str().unwrap() {
            "sparse" => format!("sparse {}", q["shape"].as_str().unwrap()),
            _ => q["shape"].as_str().unwrap().to_string(),
        };
        let mut shapes: Vec<String> = products.iter().map(named).collect();
        shapes.sort();
        // Input gradients: out [128,784]·[784,32], decoder hidden [128,32]·[32,4], head [128,8]·[8,32].
        let want = [
            "NN 128x32x784",
            "NN 128x32x8",
            "NN 128x4x32",
            "NT 128x32x4",
            "NT 128x784x32",
            "NT 128x8x32",
            "TN 32x4x128",
            "TN 784x32x128",
            "TN 8x32x128",
            "sparse NN 128x32x784",
            "sparse TN 784x32x128",
        ];
        assert_eq!(shapes, want);
        for q in products {
            assert_eq!(q["calls"], 10.0, "{q}");
            let dims: Vec<f64> = q["shape"].as_str().unwrap()[3..]
                .split('x')
                .map(|d| d.parse().unwrap())
                .collect();
            let dense = 2.0 * dims.iter().product::<f64>();
            let flop = q["flop_per_call"].as_f64().unwrap();
            if q["backend"] == "sparse" {
                // MNIST's images are 19% nonzero.
                assert!(flop > 0.1 * dense && flop < 0.3 * dense, "{q}");
            } else {
                assert_eq!(flop, dense, "{q}");
            }
            let want = flop * 10.0 / 1e9 / (q["ms"].as_f64().unwrap() / 1e3);
            assert!(
                (q["gflop_per_s"].as_f64().unwrap() - want).abs() < 1e-6 * want.max(1.0),
                "{q}"
            );
        }
    }

    #[test]
    fn vae_gemm_forces_the_backend_of_every_product() {
        for backend in vae_train::gemm::Backend::available()
            .iter()
            .map(|b| b.name())
        {
            let run = profiled(Some(backend));
            let products = run["profile"]["products"].as_array().unwrap().clone();
            assert!(!products.is_empty());
            assert!(
                products
                    .iter()
                    .all(|q| q["backend"] == backend || q["backend"] == "sparse"),
                "{backend}: {products:?}"
            );
            assert!(
                run["gemm"].as_str().unwrap().contains("forced") || backend == "gemm",
                "{}",
                run["gemm"]
            );
        }
    }
}

/// The kernels OpenBLAS reports it chose as `vae-train` runs (`OPENBLAS_VERBOSE=2` prints each choice; the last
/// is the one that ran), and whether the arguments arrived whole.
#[cfg(all(feature = "blas", target_arch = "x86_64"))]
fn openblas_core_of_a_run(env: &[(&str, &str)]) -> (String, bool) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vae-train"))
        .args(["preset", "mnist", "--latent-dim", "7"])
        .env("OPENBLAS_VERBOSE", "2")
        .env_remove("OPENBLAS_CORETYPE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let core = stderr.lines().rev().find_map(|l| l.strip_prefix("Core: "));
    let args_whole = String::from_utf8_lossy(&out.stdout).contains("\"latent_dim\":7");
    (core.unwrap_or("(not reported)").to_string(), args_whole)
}

#[cfg(all(feature = "blas", target_arch = "x86_64"))]
#[test]
fn openblas_runs_kernels_the_cpu_has_where_it_does_not_know_the_cpu() {
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    if !avx2 {
        return;
    }
    let (core, args_whole) = openblas_core_of_a_run(&[]);
    assert_ne!(core, "Prescott", "OpenBLAS kept its generic kernels");
    assert!(args_whole, "the arguments did not reach the run");
    // Without AVX-512 (as `VAE_NO_AVX512` has it), a generic choice becomes Haswell, a known CPU's stays.
    let (core, _) = openblas_core_of_a_run(&[("VAE_NO_AVX512", "1")]);
    assert_ne!(core, "Prescott");
    // A core the user names is left alone.
    let (core, _) = openblas_core_of_a_run(&[("OPENBLAS_CORETYPE", "Prescott")]);
    assert_eq!(core, "Prescott");
}

#[test]
fn logs_written_to_a_file_or_pipe_have_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mnist-seed.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vae-train"))
        .args(["sample", "--n", "4", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(tmp.path().join("s.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("INFO") && stderr.contains("s.png"),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "colour codes in {stderr:?}");
}

#[test]
fn the_commands_that_read_test_images_need_only_the_test_files() {
    let tmp = tempfile::tempdir().unwrap();
    let only_test = tmp.path().join("data");
    std::fs::create_dir_all(only_test.join("mnist")).unwrap();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(
            data_dir().join("mnist").join(f),
            only_test.join("mnist").join(f),
        )
        .unwrap();
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mnist-seed.safetensors");
    let (model, dir) = (model.to_str().unwrap(), only_test.to_str().unwrap());
    let out = tmp.path().join("more.png");
    let (code, _, err) = common::vae_train(&[
        "generate",
        "--model",
        model,
        "--like",
        "3",
        "--n",
        "4",
        "--data-dir",
        dir,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_file());
    let run = tmp.path().join("run");
    let (code, _, err) = common::vae_train(&[
        "train",
        "--epochs",
        "1",
        "--data-dir",
        dir,
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("train-images-idx3-ubyte.gz: missing") && err.contains("vae-train download"),
        "{err}"
    );
}

#[test]
fn every_likelihood_trains_evaluates_and_draws_and_writes_format_2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir().to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["--likelihood", "gaussian"],
        &["--likelihood", "gaussian", "--sigma", "0.2"],
        &["--likelihood", "continuous-bernoulli"],
        &["--likelihood", "logistic"],
    ];
    for flags in cases {
        let out = tmp.path().join(flags.join("-"));
        let (code, _, err) = common::quick_train(&out, 4, 2000, flags);
        assert_eq!(code, Some(0), "{flags:?}: {err}");
        let model = out.join("model.safetensors");
        let vae = Vae::load(&model, &Device::Cpu).unwrap();
        assert_eq!(vae.config().likelihood.name(), flags[1]);
        let bytes = std::fs::read(&model).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata().as_ref().unwrap()["format"],
            "vae-candle/2",
            "{flags:?}"
        );

        let m = model.to_str().unwrap();
        let eval = [
            "eval",
            "--model",
            m,
            "--data-dir",
            data,
            "--test-subset",
            "300",
            "--iw-samples",
            "20",
        ];
        let (code, stdout, err) = common::vae_train(&eval);
        assert_eq!(code, Some(0), "{flags:?}: {err}");
        let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let (elbo, iw) = (
            json["test_loss"].as_f64().unwrap(),
            json["test_nll_iw"].as_f64().unwrap(),
        );
        assert!(
            elbo.is_finite() && iw.is_finite() && iw <= elbo + 1.0,
            "{flags:?}: {json}"
        );
        assert_eq!(json["likelihood"], flags[1]);
        // Bits per dimension for the 8-bit likelihood only: −log p(x) over 784 values, in bits.
        match flags[1] == "logistic" {
            true => {
                let bits = json["bits_per_dim"].as_f64().unwrap();
                assert!(
                    (bits - elbo / (784.0 * std::f64::consts::LN_2)).abs() < 1e-9,
                    "{json}"
                );
                assert!(bits > 0.0 && bits < 8.0, "{json}");
            }
            false => assert!(json.get("bits_per_dim").is_none(), "{json}"),
        }

        // Pictures show the distribution's mean, in [0, 1].
        let npy = out.join("samples.npy");
        let sample = [
            "sample",
            "--model",
            m,
            "--n",
            "16",
            "--out",
            npy.to_str().unwrap(),
        ];
        let (code, _, err) = common::vae_train(&sample);
        assert_eq!(code, Some(0), "{flags:?}: {err}");
        let values = candle_core::Tensor::read_npy(&npy).unwrap();
        assert_eq!(values.dims(), [16, 28, 28]);
        let values = values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "{flags:?}");

        let drawn = drawn_pixels(m, &out, &["sample", "--n", "16"]);
        assert_ne!(
            drawn, values,
            "{flags:?}: --sample-pixels shows draws, not the mean"
        );
        if flags[1] == "logistic" {
            let off_level = drawn
                .iter()
                .find(|v| ((*v * 255.0) - (*v * 255.0).round()).abs() > 1e-3);
            assert!(
                off_level.is_none(),
                "a logistic draw is an 8-bit level: {off_level:?}"
            );
        }
    }
}

/// `--sample-pixels` output of `command` on `model` as f32 values, checked in [0, 1] and the same for the same seed.
fn drawn_pixels(model: &str, dir: &Path, command: &[&str]) -> Vec<f32> {
    let read = |name: &str| {
        let npy = dir.join(name);
        let more = [
            "--sample-pixels",
            "--seed",
            "5",
            "--model",
            model,
            "--out",
            npy.to_str().unwrap(),
        ];
        let args: Vec<&str> = command.iter().chain(&more).copied().collect();
        let (code, _, err) = common::vae_train(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        std::fs::read(&npy).unwrap()
    };
    let (a, b) = (read("drawn-a.npy"), read("drawn-b.npy"));
    assert_eq!(a, b, "the same seed draws the same pixels");
    let values = candle_core::Tensor::read_npy(dir.join("drawn-a.npy")).unwrap();
    let values = values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    values
}

#[test]
fn a_bernoulli_model_keeps_format_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (code, _, err) = common::quick_train(&out, 4, 1000, &[]);
    assert_eq!(code, Some(0), "{err}");
    // Its drawn pixels are black or white, from the prior and from a class's posteriors alike.
    let model = out.join("model.safetensors");
    let m = model.to_str().unwrap();
    let data = data_dir().to_str().unwrap();
    let like_3 = ["generate", "--like", "3", "--n", "9", "--data-dir", data];
    for command in [&["sample", "--n", "9"][..], &like_3] {
        let drawn = drawn_pixels(m, &out, command);
        assert!(drawn.iter().all(|v| *v == 0.0 || *v == 1.0), "{command:?}");
        assert!(drawn.contains(&0.0) && drawn.contains(&1.0), "{command:?}");
    }
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = meta.metadata().clone().unwrap();
    assert_eq!(md["format"], "vae-candle/1");
    assert!(!md["config"].contains("sigma"), "{}", md["config"]);
}

/// The SHA-256 of the `mnist` preset's model after one epoch on the first 3000 images (seed 1, the `gemm` crate's
/// products), as the code before the other data sources wrote it (commit 95f784d, built and run on this project's
/// AVX-512 machine kind): `mnist` keeps its bytes.
const MNIST_MODEL_SHA256: &str = "babff0914b9bdd382290cd037761c0e32596a9dd585ac10a64e5b33c01fcbf57";

#[test]
fn an_mnist_model_has_the_bytes_it_had_before_the_other_data_sources() {
    // The gemm crate's AVX-512 kernels sum in another order than its AVX2 ones: the bytes hold per kernel.
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    if !avx512 {
        eprintln!("skipped: the committed hash was made by AVX-512 kernels, and this CPU has none");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let data = data_dir().to_str().unwrap();
    let args = [
        "train",
        "--preset",
        "mnist",
        "--epochs",
        "1",
        "--train-subset",
        "3000",
    ];
    let more = ["--data-dir", data, "--out", out.to_str().unwrap()];
    let gemm = Some(std::ffi::OsStr::new("gemm"));
    let (code, _, err) = common::vae_train_env(&[&args[..], &more].concat(), &[("VAE_GEMM", gemm)]);
    assert_eq!(code, Some(0), "{err}");
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(hash, MNIST_MODEL_SHA256);
}
