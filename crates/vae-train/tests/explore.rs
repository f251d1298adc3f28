//! `generate`, `interpolate`, `traverse` and `sample` judged by what they draw: a digit classifier of the test's own
//! (784-256-10, trained here on the MNIST training set) reads the decoded images. Also the `.npy` layout, the same
//! bytes for the same seed, and one-line refusals of bad input.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Linear, Module, Optimizer};
use common::data_dir;
use vae_model::VaeRng;

fn vae_train(args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = common::vae_train(args);
    (code == Some(0), stdout, stderr)
}

/// A 784-256-10 ReLU classifier, trained for 3 epochs of Adam on the training set.
struct Classifier {
    hidden: Linear,
    out: Linear,
}

impl Classifier {
    fn train(data: &vae_data::Data) -> Self {
        let dev = Device::Cpu;
        // Initialised from our seeded generator (PyTorch's default, U(±1/√fan_in)), so the fixture is the same
        // every run: Candle's own initialisers draw from an unseeded generator.
        let mut rng = VaeRng::seed_from(7);
        let mut vars = Vec::new();
        let mut layer = |fan_in: usize, fan_out: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let w = Var::from_tensor(&rng.uniform((fan_out, fan_in), -bound, bound, &dev).unwrap())
                .unwrap();
            let b = Var::from_tensor(&rng.uniform(fan_out, -bound, bound, &dev).unwrap()).unwrap();
            vars.extend([w.clone(), b.clone()]);
            Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
        };
        let model = Self {
            hidden: layer(784, 256),
            out: layer(256, 10),
        };
        let params = candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = candle_nn::AdamW::new(vars, params).unwrap();
        let labels = data.train_labels.to_dtype(DType::U32).unwrap();
        let batcher = vae_data::Batcher::new(&data.train_images, &labels, 128, &dev).unwrap();
        for _ in 0..3 {
            for batch in batcher.epoch(&mut rng) {
                let (x, y) = batch.tensors().unwrap();
                let loss = candle_nn::loss::cross_entropy(&model.logits(&x), &y).unwrap();
                opt.backward_step(&loss).unwrap();
            }
        }
        model
    }

    fn logits(&self, x: &Tensor) -> Tensor {
        let h = self.hidden.forward(x).unwrap().relu().unwrap();
        self.out.forward(&h).unwrap()
    }

    /// The predicted digit of each row of `x [n, 784]`.
    fn classify(&self, x: &Tensor) -> Vec<u32> {
        let x = x.reshape((x.dim(0).unwrap(), 784)).unwrap();
        self.logits(&x)
            .argmax(D::Minus1)
            .unwrap()
            .to_vec1()
            .unwrap()
    }
}

fn test_labels(data: &vae_data::Data) -> Vec<u32> {
    data.test_labels
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn a_classifier_reads_generated_digits_as_the_digit_asked_for_and_paths_as_their_ends() {
    let data = vae_data::load(data_dir(), vae_data::Dataset::Mnist).unwrap();
    let classifier = Classifier::train(&data);
    let labels = test_labels(&data);
    let predicted = classifier.classify(&vae_data::unit_pixels(&data.test_images).unwrap());
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    assert!(
        correct >= 9600,
        "the classifier itself: {correct} of 10000 test images"
    );

    let tmp = tempfile::tempdir().unwrap();
    let model = trained("mnist", &tmp.path().join("run"), &[]);
    let dir = data_dir().to_str().unwrap();
    let mut shares = Vec::new();
    for digit in 0..10u32 {
        let out = tmp.path().join(format!("like-{digit}.npy"));
        let d = digit.to_string();
        let args = [
            "generate",
            "--model",
            &model,
            "--like",
            &d,
            "--n",
            "100",
            "--data-dir",
            dir,
        ];
        let (ok, _, err) = vae_train(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
        assert!(ok, "{err}");
        let images = Tensor::read_npy(&out).unwrap();
        assert_eq!(images.dims(), &[100, 28, 28]);
        let predicted = classifier.classify(&images);
        shares.push(predicted.iter().filter(|&&p| p == digit).count());
    }
    eprintln!("generate --like 0..9, % classified as asked: {shares:?} (classifier: {correct} of 10000 test images)");
    assert!(shares.iter().all(|&s| s >= 85), "% per digit: {shares:?}");

    // A photo-like picture: the first test digit (a 7), 4× larger, dark ink on white, in colour, as JPEG.
    let seven = data
        .first_test_images(1, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(labels[0], 7);
    let photo = image::RgbImage::from_fn(112, 112, |x, y| {
        let v = 255 - (seven[(y / 4 * 28 + x / 4) as usize] * 255.0) as u8;
        image::Rgb([v, v, v.saturating_sub(20)])
    });
    let file = tmp.path().join("seven.jpg");
    photo.save(&file).unwrap();
    let out = tmp.path().join("like-file.npy");
    let args = [
        "generate",
        "--model",
        &model,
        "--like",
        file.to_str().unwrap(),
        "--n",
        "100",
    ];
    let (ok, _, err) = vae_train(
        &[
            &args[..],
            &["--data-dir", dir, "--out", out.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let read_as_7 = classifier
        .classify(&Tensor::read_npy(&out).unwrap())
        .iter()
        .filter(|&&p| p == 7)
        .count();
    assert!(
        read_as_7 >= 85,
        "generate --like seven.jpg: {read_as_7}% read as 7"
    );

    // Paths from each of the first ten test 3s to each of the first ten test 8s: one model's reconstruction of a
    // single sloppy 3 may read as an 8, so the test asks it of nine pairs in ten.
    let of = |d: u32| {
        labels
            .iter()
            .enumerate()
            .filter(move |(_, &l)| l == d)
            .map(|(i, _)| i.to_string())
    };
    let mut ends = Vec::new();
    for (three, eight) in of(3).zip(of(8)).take(10) {
        let out = tmp.path().join("path.npy");
        let args = [
            "interpolate",
            "--model",
            &model,
            "--from",
            &three,
            "--to",
            &eight,
            "--data-dir",
            dir,
        ];
        let (ok, _, err) = vae_train(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
        assert!(ok, "{err}");
        let frames = classifier.classify(&Tensor::read_npy(&out).unwrap());
        assert_eq!(frames.len(), 10);
        ends.push((frames[0], frames[9]));
    }
    eprintln!("interpolate 3 -> 8, first and last frames read as: {ends:?}");
    assert!(
        ends.iter().filter(|&&e| e == (3, 8)).count() >= 9,
        "{ends:?}"
    );
}

/// A preset (a name or a `.toml` path) trained into `dir`, with `extra` flags.
fn trained(preset: &str, dir: &Path, extra: &[&str]) -> String {
    let (data, out) = (data_dir().to_str().unwrap(), dir.to_str().unwrap());
    let args = [
        "train",
        "--preset",
        preset,
        "--data-dir",
        data,
        "--out",
        out,
    ];
    let (ok, _, err) = vae_train(&[&args[..], extra].concat());
    assert!(ok, "{err}");
    dir.join("model.safetensors").display().to_string()
}

/// Of 100 prior samples under each digit at `temperature`, how many (so the %) the classifier reads as that digit.
fn conditional_shares(
    classifier: &Classifier,
    model: &str,
    temperature: f64,
    dir: &Path,
) -> Vec<usize> {
    (0..10u32)
        .map(|digit| {
            let out = dir.join(format!("digit-{digit}.npy"));
            let (d, t) = (digit.to_string(), temperature.to_string());
            let args = [
                "sample",
                "--model",
                model,
                "--digit",
                &d,
                "--n",
                "100",
                "--temperature",
                &t,
            ];
            let (ok, _, err) = vae_train(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
            assert!(ok, "{err}");
            let images = Tensor::read_npy(&out).unwrap();
            assert_eq!(images.dims(), &[100, 28, 28]);
            classifier
                .classify(&images)
                .iter()
                .filter(|&&p| p == digit)
                .count()
        })
        .collect()
}

fn mean(shares: &[usize]) -> f64 {
    shares.iter().sum::<usize>() as f64 / shares.len() as f64
}

#[test]
fn a_conditional_model_draws_the_digit_it_is_given() {
    let data = vae_data::load(data_dir(), vae_data::Dataset::Mnist).unwrap();
    let classifier = Classifier::train(&data);
    let tmp = tempfile::tempdir().unwrap();
    let model = trained("mnist-cvae", &tmp.path().join("cvae"), &[]);
    let cool = conditional_shares(&classifier, &model, 0.5, tmp.path());
    let warm = conditional_shares(&classifier, &model, 1.0, tmp.path());
    eprintln!(
        "mnist-cvae, % read as the digit asked for: T=0.5 {cool:?}; T=1 {warm:?} (mean {})",
        mean(&warm)
    );
    assert!(cool.iter().all(|&s| s >= 95), "T=0.5: {cool:?}");
    // The plain CVAE (a 20-D latent) averages 71% at T=1; the preset's 4-D latent is meant to beat it.
    assert!(mean(&warm) > 71.0, "T=1: {warm:?}");
}

/// A model of the smallest kind, trained for one epoch on 1000 images.
fn small_model(dir: &Path) -> String {
    let (code, _, err) = common::quick_train(dir, 3, 1000, &[]);
    assert_eq!(code, Some(0), "{err}");
    dir.join("model.safetensors").display().to_string()
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_npy_holds_the_probabilities_of_the_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let model = small_model(&tmp.path().join("run"));
    let dir = data_dir().to_str().unwrap();
    let run = |cmd: &[&str], file: &str| -> Vec<u8> {
        let out = tmp.path().join(file);
        let base = ["--model", &model, "--out", out.to_str().unwrap()];
        let args: Vec<&str> = cmd.iter().copied().chain(base).collect();
        let (ok, _, err) = vae_train(&args);
        assert!(ok, "{args:?}: {err}");
        std::fs::read(out).unwrap()
    };
    let like4 = |seed| {
        [
            "generate",
            "--like",
            "4",
            "--n",
            "12",
            "--seed",
            seed,
            "--data-dir",
            dir,
        ]
    };
    for cmd in [
        &like4("5")[..],
        &["sample", "--n", "12", "--seed", "5", "--temperature", "0.7"],
        &[
            "interpolate",
            "--from",
            "0",
            "--to",
            "1",
            "--steps",
            "6",
            "--slerp",
            "--data-dir",
            dir,
        ],
        &[
            "traverse",
            "--index",
            "2",
            "--steps",
            "5",
            "--dims",
            "2",
            "--data-dir",
            dir,
        ],
    ] {
        for ext in ["png", "npy"] {
            let (a, b) = (run(cmd, &format!("a.{ext}")), run(cmd, &format!("b.{ext}")));
            assert!(a == b, "{cmd:?} .{ext}: two runs with one seed differ");
        }
        let probs = Tensor::read_npy(tmp.path().join("a.npy")).unwrap();
        let (n, h, w) = probs.dims3().unwrap();
        if cmd[0] == "traverse" {
            assert_eq!(n, 2 * 5, "two dimensions of five steps");
        }
        assert_eq!((h, w), (28, 28), "{cmd:?}");
        let values = probs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            values.iter().all(|v| (0.0..=1.0).contains(v)),
            "{cmd:?}: probabilities"
        );
        // The picture shows those probabilities: tile k's top-left pixel (after the 2-pixel border, ×2 scale), right
        // of the row labels of a traversal.
        let png = image::open(tmp.path().join("a.png")).unwrap().to_luma8();
        let left = if cmd[0] == "traverse" { 150 } else { 0 };
        let cols = (png.width() - left - 2) / (2 * 28 + 2);
        for k in [0, n - 1] {
            let (r, c) = (k as u32 / cols, k as u32 % cols);
            let px = png.get_pixel(left + 2 + c * 58 + 2 * 14, 2 + r * 58 + 2 * 14)[0];
            let want = (values[k * 784 + 14 * 28 + 14] * 255.0).round() as u8;
            assert_eq!(px, want, "{cmd:?}: tile {k}");
        }
    }
    // Different seeds, different samples.
    assert!(run(&like4("6"), "c.npy") != run(&like4("5"), "d.npy"));

    // The charts: the test set's posterior means, and the run's curves (which `train` also wrote itself).
    let scatter = run(&["scatter", "--data-dir", dir], "scatter.png");
    assert_eq!(
        scatter,
        run(&["scatter", "--data-dir", dir], "scatter2.png")
    );
    let run_dir = tmp.path().join("run");
    assert_eq!(scatter, std::fs::read(run_dir.join("scatter.png")).unwrap());
    let out = tmp.path().join("curves.png");
    let (ok, _, err) = vae_train(&[
        "curves",
        "--run",
        run_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(run_dir.join("curves.png")).unwrap()
    );
    assert_eq!(
        image::open(&out).unwrap().to_rgb8().dimensions(),
        (1500, 450)
    );
}

#[test]
fn bad_requests_get_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = small_model(&tmp.path().join("run"));
    let dir = data_dir().to_str().unwrap();
    let out = tmp.path().join("x.png");
    let out = out.to_str().unwrap();
    let refused_by = |model: &str, args: &[&str], needle: &str| {
        let base = ["--model", model, "--out", out];
        let args: Vec<&str> = args.iter().copied().chain(base).collect();
        let (ok, _, err) = vae_train(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!Path::new(out).exists(), "{args:?} wrote {out}");
    };
    let refused = |args: &[&str], needle: &str| refused_by(&model, args, needle);
    refused(
        &["generate", "--like", "10", "--data-dir", dir],
        "--like 10: the classes are 0-9",
    );
    refused(
        &["generate", "--like", "3", "--n", "0", "--data-dir", dir],
        "--n must be at least 1",
    );
    refused(
        &[
            "generate",
            "--like",
            "3",
            "--temperature",
            "-1",
            "--data-dir",
            dir,
        ],
        "-1 is not in [0, 100]",
    );
    refused(
        &[
            "generate",
            "--like",
            "3",
            "--n",
            "1000000000000",
            "--data-dir",
            dir,
        ],
        "--n 1000000000000",
    );
    refused(
        &[
            "interpolate",
            "--from",
            "0",
            "--to",
            "10000",
            "--data-dir",
            dir,
        ],
        "--to 10000: the test set has 10000 images",
    );
    refused(
        &[
            "interpolate",
            "--from",
            "0",
            "--to",
            "1",
            "--steps",
            "1",
            "--data-dir",
            dir,
        ],
        "--steps",
    );
    refused(
        &["traverse", "--index", "99999", "--data-dir", dir],
        "--index 99999",
    );
    refused(
        &["traverse", "--range", "0", "--data-dir", dir],
        "0 is not in (0, 100]",
    );
    refused(&["sample", "--n", "0"], "--n must be at least 1");
    refused(&["sample", "--digit", "3"], "is not a conditional model");
    let npy = tmp.path().join("s.npy");
    let (ok, _, err) = vae_train(&[
        "scatter",
        "--model",
        &model,
        "--data-dir",
        dir,
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("s.npy: --out writes .png"), "{err}");
    let (ok, _, err) = vae_train(&[
        "curves",
        "--run",
        tmp.path().to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(!ok && err.contains("no epochs recorded"), "{err}");
    let not_image = tmp.path().join("notes.png");
    std::fs::write(&not_image, b"not a picture").unwrap();
    let blank = tmp.path().join("blank.png");
    image::GrayImage::from_pixel(40, 30, image::Luma([255]))
        .save(&blank)
        .unwrap();
    let (np, bl) = (not_image.to_str().unwrap(), blank.to_str().unwrap());
    refused(
        &["generate", "--like", np, "--data-dir", dir],
        "notes.png: not a PNG or JPEG image",
    );
    refused(
        &["generate", "--like", bl, "--data-dir", dir],
        "the picture is blank",
    );
    refused(
        &[
            "interpolate",
            "--from",
            "nofile.png",
            "--to",
            "1",
            "--data-dir",
            dir,
        ],
        "nofile.png: cannot open",
    );
    // A conditional model: no class past its last, no picture file (it has no label).
    let (code, _, err) = common::quick_train(
        &tmp.path().join("cvae"),
        3,
        1000,
        &["--preset", "mnist-cvae"],
    );
    assert_eq!(code, Some(0), "{err}");
    let cvae = tmp.path().join("cvae/model.safetensors");
    let cvae = cvae.to_str().unwrap();
    refused_by(
        cvae,
        &["sample", "--digit", "10"],
        "--digit 10: the model's classes are 0-9",
    );
    refused_by(
        cvae,
        &["generate", "--like", bl, "--data-dir", dir],
        "blank.png: a conditional model needs each image's label",
    );
    // Without --digit, a row per class: 25 asked for, 3 of each of the 10 classes; the same seed, the same bytes.
    let rows: Vec<Vec<u8>> = ["rows.npy", "again.npy"]
        .iter()
        .map(|name| {
            let out = tmp.path().join(name);
            let args = ["sample", "--model", cvae, "--n", "25", "--out"];
            let (ok, _, err) = vae_train(&[&args[..], &[out.to_str().unwrap()]].concat());
            assert!(ok, "{err}");
            assert_eq!(Tensor::read_npy(&out).unwrap().dims(), &[30, 28, 28]);
            std::fs::read(&out).unwrap()
        })
        .collect();
    assert_eq!(rows[0], rows[1], "same seed, same bytes");

    let jpg = tmp.path().join("x.jpg");
    let (ok, _, err) = vae_train(&["sample", "--model", &model, "--out", jpg.to_str().unwrap()]);
    assert!(
        !ok && err.contains("writes .png or .npy") && err.contains("x.jpg"),
        "{err}"
    );
    assert!(!jpg.exists());
}
