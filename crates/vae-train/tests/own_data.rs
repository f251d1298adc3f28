//! Your own data end to end: a dataset exported as pictures trains to the model of its IDX files, a colour folder
//! trains and draws in colour, a table of numbers trains without pictures, and the MNIST path keeps its bytes.

use std::path::Path;

mod common;

use candle_core::Device;
use common::{data_dir, vae_train};
use sha2::{Digest, Sha256};
use vae_model::{Vae, VaeConfig, VaeRng};

fn ok(args: &[&str]) -> String {
    let (code, stdout, err) = vae_train(args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    stdout
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// A safetensors file's tensors (name, bytes), sorted, and its metadata.
type Contents = (
    Vec<(String, Vec<u8>)>,
    std::collections::HashMap<String, String>,
);

/// The tensors of a safetensors file, by name, and its metadata.
fn tensors_and_metadata(path: &Path) -> Contents {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    tensors.sort();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    (tensors, meta.metadata().clone().unwrap())
}

#[test]
fn fashion_mnist_exported_as_pictures_trains_to_the_model_of_its_idx_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir().to_str().unwrap();
    let pictures = tmp.path().join("fashion");
    let p = pictures.to_str().unwrap();
    ok(&[
        "export-images",
        "--dataset",
        "fashion-mnist",
        "--out",
        p,
        "--data-dir",
        data,
    ]);
    let count = |dir: &str| walk(&pictures.join(dir));
    assert_eq!((count("train"), count("test")), (60000, 10000));
    // Named by index, in folders by label and name: Fashion-MNIST's first test image is an ankle boot.
    assert!(pictures.join("test/9-Ankle_boot/00000.png").is_file());

    // The same preset, seed and epochs on the IDX files and on the pictures (whose cache goes to a data directory
    // of their own).
    let common = [
        "--preset",
        "fashion-mnist",
        "--epochs",
        "1",
        "--hidden-dims",
        "100",
    ];
    let (idx_run, folder_run) = (tmp.path().join("idx"), tmp.path().join("folder"));
    let cache_dir = tmp.path().join("cache-data");
    let idx = json(&ok(&[
        &["train"][..],
        &common,
        &["--data-dir", data, "--out", idx_run.to_str().unwrap()],
    ]
    .concat()));
    let folder_flags = [
        "--dataset",
        &format!("folder:{p}"),
        "--data-dir",
        cache_dir.to_str().unwrap(),
    ];
    let out = ["--out", folder_run.to_str().unwrap()];
    let folder = json(&ok(&[&["train"][..], &common, &folder_flags, &out].concat()));
    let loss = |j: &serde_json::Value| j["final"]["test_loss"].as_f64().unwrap();
    assert!(
        (loss(&idx) - loss(&folder)).abs() < 0.5,
        "{} vs {}",
        loss(&idx),
        loss(&folder)
    );
    // In fact the same examples in the same order: the same weights, bit for bit; the metadata says where from.
    let (a, a_meta) = tensors_and_metadata(&idx_run.join("model.safetensors"));
    let (b, b_meta) = tensors_and_metadata(&folder_run.join("model.safetensors"));
    assert!(a == b, "the folder's model differs from the IDX files'");
    assert_eq!(
        (a_meta["format"].as_str(), b_meta["format"].as_str()),
        ("vae-candle/1", "vae-candle/2")
    );
    assert_eq!(b_meta["dataset"], format!("folder:{p}"));
    let config: serde_json::Value = serde_json::from_str(&b_meta["config"]).unwrap();
    assert_eq!(config["input_shape"], serde_json::json!([1, 28, 28]));
    let cached: Vec<_> = std::fs::read_dir(cache_dir.join("cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);

    // eval reads the folder again (from the cache) by the model's metadata, and gives the IDX files' figure.
    let m = folder_run.join("model.safetensors");
    let m = m.to_str().unwrap();
    let on_folder = json(&ok(&[
        "eval",
        "--model",
        m,
        "--data-dir",
        cache_dir.to_str().unwrap(),
    ]));
    let on_idx = json(&ok(&[
        "eval",
        "--model",
        m,
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data,
    ]));
    assert_eq!(on_folder["test_loss"], on_idx["test_loss"]);
    assert_eq!(on_folder["dataset"], format!("folder:{p}"));
    // The exported class folder `6-Shirt` is also the class `Shirt`.
    let out = tmp.path().join("shirts.png");
    let cache = cache_dir.to_str().unwrap();
    let like = [
        "generate",
        "--model",
        m,
        "--like",
        "Shirt",
        "--n",
        "4",
        "--data-dir",
        cache,
    ];
    ok(&[&like[..], &["--out", out.to_str().unwrap()]].concat());
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p)
            } else {
                1
            }
        })
        .sum()
}

/// 600 MNIST test digits as 30×30 RGB pictures in three class folders, each digit's ink tinted by its class.
fn colour_digits(root: &Path) {
    let mnist = vae_data::load_test(data_dir(), vae_data::Dataset::Mnist).unwrap();
    let px = mnist
        .test_images
        .narrow(0, 0, 600)
        .unwrap()
        .to_vec2::<u8>()
        .unwrap();
    let labels = mnist
        .test_labels
        .narrow(0, 0, 600)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let names = ["red", "green", "blue"];
    for (i, (digit, label)) in px.iter().zip(labels).enumerate() {
        let class = label as usize % 3;
        let img = image::RgbImage::from_fn(30, 30, |x, y| {
            let v = match (x.checked_sub(1), y.checked_sub(1)) {
                (Some(x), Some(y)) if x < 28 && y < 28 => digit[(y * 28 + x) as usize],
                _ => 0,
            };
            let mut rgb = [v / 4; 3];
            rgb[class] = v;
            image::Rgb(rgb)
        });
        let dir = root.join(names[class]);
        std::fs::create_dir_all(&dir).unwrap();
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
}

#[test]
fn a_colour_folder_trains_and_every_figure_is_drawn_in_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tinted");
    colour_digits(&root);
    let (run, cache) = (tmp.path().join("run"), tmp.path().join("data"));
    let cache = cache.to_str().unwrap();
    let dataset = format!("folder:{}", root.display());
    let flags = [
        "--image-size",
        "16",
        "--channels",
        "3",
        "--hidden-dims",
        "64",
        "--latent-dim",
        "4",
    ];
    let train = [
        &[
            "train",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--dataset",
            &dataset,
        ][..],
        &flags,
    ];
    let summary = json(&ok(&[
        &train.concat()[..],
        &["--data-dir", cache, "--out", run.to_str().unwrap()],
    ]
    .concat()));
    assert!(summary["final"]["test_loss"].as_f64().unwrap().is_finite());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["input_dim"], 768);
    assert_eq!(
        config["model"]["input_shape"],
        serde_json::json!([3, 16, 16])
    );
    assert_eq!(
        config["data"],
        serde_json::json!({"image_size": 16, "channels": 3, "test_fraction": 0.1})
    );
    // The run's figures are RGB, 16×16 tiles drawn ×4.
    let samples = image::open(run.join("samples.png")).unwrap();
    assert_eq!(samples.color(), image::ColorType::Rgb8);
    assert_eq!(samples.width(), 8 * (64 + 2) + 2);
    let m = run.join("model.safetensors");
    let m = m.to_str().unwrap();
    let vae = Vae::load(m, &Device::Cpu).unwrap();
    assert_eq!(vae.config().image_shape(), Some([3, 16, 16]));

    let out = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    ok(&["sample", "--model", m, "--n", "4", "--out", &out("s.npy")]);
    let npy = std::fs::read(out("s.npy")).unwrap();
    let header = String::from_utf8_lossy(&npy[..128]);
    assert!(header.contains("(4,3,16,16,)"), "{header}");
    ok(&[
        "reconstruct",
        "--model",
        m,
        "--n",
        "4",
        "--data-dir",
        cache,
        "--out",
        &out("r.png"),
    ]);
    assert_eq!(
        image::open(out("r.png")).unwrap().color(),
        image::ColorType::Rgb8
    );
    // More like a class, by name and by index, and like a picture file (resized as the folder's were).
    for like in [
        "green",
        "1",
        root.join("blue")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .to_str()
            .unwrap(),
    ] {
        ok(&[
            "generate",
            "--model",
            m,
            "--like",
            like,
            "--n",
            "4",
            "--data-dir",
            cache,
            "--out",
            &out("g.png"),
        ]);
    }
    let (code, _, err) = vae_train(&[
        "generate",
        "--model",
        m,
        "--like",
        "3",
        "--data-dir",
        cache,
        "--out",
        &out("g.png"),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--like 3: the classes are 0-2 (or a class name: blue, green, red"),
        "{err}"
    );
    let purple = [
        "generate",
        "--model",
        m,
        "--like",
        "purple",
        "--data-dir",
        cache,
    ];
    let (code, _, err) = vae_train(&[&purple[..], &["--out", &out("g.png")]].concat());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--like purple: neither a class (blue, green, red) nor a picture file"),
        "{err}"
    );
    ok(&[
        "interpolate",
        "--model",
        m,
        "--from",
        "0",
        "--to",
        "1",
        "--data-dir",
        cache,
        "--out",
        &out("i.png"),
    ]);
    ok(&[
        "traverse",
        "--model",
        m,
        "--data-dir",
        cache,
        "--out",
        &out("t.png"),
    ]);
    ok(&[
        "scatter",
        "--model",
        m,
        "--data-dir",
        cache,
        "--out",
        &out("sc.png"),
    ]);
    let eval = json(&ok(&["eval", "--model", m, "--data-dir", cache]));
    assert_eq!(eval["test_images"], 60);
}

#[test]
fn an_mnist_model_starts_from_the_same_bytes_and_reads_the_same_data() {
    // A trained model's bytes depend on the sgemm kernel the machine picks, so what is pinned is what training
    // starts from: the initialised model as saved (format, metadata, tensor order, the seeded draws) and the
    // examples as loaded. `fashion_mnist_exported_as_pictures_…` shows the folder path trains to the same bits.
    let tmp = tempfile::tempdir().unwrap();
    let (mut vae, _) =
        Vae::init(&VaeConfig::mnist(), &mut VaeRng::seed_from(1), &Device::Cpu).unwrap();
    vae.set_dataset("mnist");
    vae.set_binarize("none");
    let path = tmp.path().join("m.safetensors");
    vae.save(&path).unwrap();
    let sha = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    assert_eq!(
        sha(&std::fs::read(&path).unwrap()),
        "31903b92897afdaf614032fd7c1aad149152cd3dd37093464edb75757ff8a7bf"
    );
    let mnist = vae_data::load(data_dir(), vae_data::Dataset::Mnist).unwrap();
    let px = mnist
        .train_images
        .flatten_all()
        .unwrap()
        .to_vec1::<u8>()
        .unwrap();
    let labels: Vec<u8> = mnist
        .train_labels
        .to_vec1::<u32>()
        .unwrap()
        .into_iter()
        .map(|l| l as u8)
        .collect();
    assert_eq!(
        (sha(&px), sha(&labels)),
        (
            "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757".to_string(),
            "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13".to_string()
        )
    );
}

#[test]
fn a_table_of_numbers_trains_and_draws_no_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    // Three clusters in 16 dimensions, labelled by cluster.
    let mut rng = VaeRng::seed_from(5);
    let noise = rng.normal_vec(1200 * 16);
    let rows: Vec<f32> = (0..1200 * 16)
        .map(|i| ((i / 16) % 3) as f32 * 2.0 + noise[i] * 0.3)
        .collect();
    let y: Vec<i64> = (0..1200).map(|r| (r % 3) as i64).collect();
    let x = candle_core::Tensor::from_vec(rows, (1200, 16), &Device::Cpu).unwrap();
    let y = candle_core::Tensor::from_vec(y, 1200, &Device::Cpu).unwrap();
    let (xtr, xte) = (
        x.narrow(0, 0, 1000).unwrap(),
        x.narrow(0, 1000, 200).unwrap(),
    );
    let (ytr, yte) = (
        y.narrow(0, 0, 1000).unwrap(),
        y.narrow(0, 1000, 200).unwrap(),
    );
    let table = tmp.path().join("table.npz");
    candle_core::Tensor::write_npz(
        &[
            ("x_train", &xtr),
            ("x_test", &xte),
            ("y_train", &ytr),
            ("y_test", &yte),
        ],
        &table,
    )
    .unwrap();
    let dataset = format!("npy:{}", table.display());
    let run = tmp.path().join("run");
    let args = [
        "train",
        "--dataset",
        &dataset,
        "--likelihood",
        "gaussian",
        "--hidden-dims",
        "32",
        "--latent-dim",
        "2",
    ];
    let summary = json(&ok(&[
        &args[..],
        &[
            "--epochs",
            "20",
            "--batch-size",
            "50",
            "--out",
            run.to_str().unwrap(),
        ],
    ]
    .concat()));
    let files: Vec<&str> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "config.json",
            "checkpoint.safetensors",
            "metrics.jsonl",
            "model.safetensors",
            "curves.png",
            "scatter.png"
        ]
    );
    assert!(!run.join("samples.png").exists());
    let m = run.join("model.safetensors");
    let m = m.to_str().unwrap();
    let vae = Vae::load(m, &Device::Cpu).unwrap();
    assert_eq!(vae.config().input_shape, Some(vec![16]));
    let out = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    ok(&["sample", "--model", m, "--n", "5", "--out", &out("s.npy")]);
    let header = String::from_utf8_lossy(&std::fs::read(out("s.npy")).unwrap()[..100]).into_owned();
    assert!(header.contains("(5,16,)"), "{header}");
    let (code, _, err) = vae_train(&["sample", "--model", m, "--out", &out("s.png")]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("vectors of [16] values are not pictures"),
        "{err}"
    );
    ok(&[
        "generate",
        "--model",
        m,
        "--like",
        "2",
        "--n",
        "4",
        "--out",
        &out("g.npy"),
    ]);
    ok(&["scatter", "--model", m, "--out", &out("sc.png")]);
    // One Gaussian per column, fitted to the whole table, scores 16 · ½ ln(2πe (0.3² + 8/3)) = 30.9 nats; a model
    // that found the clusters approaches 16 · ½ ln(2πe 0.3²) + ln 3 = 4.5.
    let eval = json(&ok(&["eval", "--model", m]));
    assert_eq!(eval["test_images"], 200);
    assert!(eval["test_loss"].as_f64().unwrap() < 20.0, "{eval}");
}
