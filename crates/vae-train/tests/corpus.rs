//! The bad-input corpus: every hostile file or flag we know of, generated here (nothing binary is committed), run
//! through the `vae-train` binary. Each must end in exactly one `error:` line naming the problem, a non-zero exit,
//! no panic, and no change to the data or run folders.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The product's data directory, with MNIST and Fashion-MNIST verified (`cargo xtask test` fills it).
fn data_dir() -> PathBuf {
    let dir = std::env::var_os("VAE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"));
    for d in vae_data::Dataset::ALL {
        if let Err(e) = vae_data::verify(&dir, d) {
            panic!("{e}\n(run `cargo xtask download --dataset all`, or `cargo xtask test`, which does)");
        }
    }
    dir
}

fn vae_train(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vae-train"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("VAE_DATA_MIRROR")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Every file and folder under `dir` with its size and modification time (our run lock, `.lock`, excepted: taking
/// it writes the taker's pid).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name() == ".lock" {
                continue;
            }
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            } else {
                out.insert(p, (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

/// A private data folder: the real files hard-linked (never written through), `edit` applied to `mnist/`.
fn data_variant(root: &Path, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = root.join(name);
    let src = data_dir();
    for dataset in ["mnist", "fashion-mnist"] {
        std::fs::create_dir_all(dir.join(dataset)).unwrap();
        for f in vae_data::FILE_NAMES {
            std::fs::hard_link(src.join(dataset).join(f), dir.join(dataset).join(f)).unwrap();
        }
    }
    edit(&dir.join("mnist"));
    dir
}

/// Replaces `path` (a hard link) by a file of its own holding `bytes`.
fn replace(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One case: what to run, and what its one error line must say.
struct Case {
    name: &'static str,
    args: Vec<String>,
    needles: Vec<String>,
}

fn case(name: &'static str, args: &[&str], needles: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn every_bad_input_gets_one_clear_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = data_dir();
    let d = data.to_str().unwrap();

    // A small good run, whose model and checkpoint the broken variants start from.
    let good = root.join("good");
    let (code, _, err) = vae_train(&[
        "train",
        "--hidden-dims",
        "16",
        "--latent-dim",
        "4",
        "--epochs",
        "2",
        "--train-subset",
        "2000",
        "--data-dir",
        d,
        "--out",
        good.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let model = good.join("model.safetensors");
    let model_bytes = std::fs::read(&model).unwrap();
    let ckpt_bytes = std::fs::read(good.join("checkpoint.safetensors")).unwrap();

    // Data folders with one thing wrong each.
    let truncated = data_variant(root, "truncated", |m| {
        let f = m.join("train-labels-idx1-ubyte.gz");
        let b = std::fs::read(&f).unwrap();
        replace(&f, &b[..b.len() / 2]);
    });
    let regzipped = data_variant(root, "regzipped", |m| {
        let f = m.join("t10k-labels-idx1-ubyte.gz");
        let raw = gunzip(&f);
        replace(&f, &gzip(&raw, 1));
    });
    let edited = data_variant(root, "edited", |m| {
        let f = m.join("train-images-idx3-ubyte.gz");
        let mut raw = gunzip(&f);
        raw[16..16 + 784 * 1000]
            .iter_mut()
            .for_each(|p| *p = 255 - *p);
        replace(&f, &gzip(&raw, 6));
    });
    let fashion = data_variant(root, "fashion", |m| {
        for f in vae_data::FILE_NAMES {
            let b = std::fs::read(m.join("../fashion-mnist").join(f)).unwrap();
            replace(&m.join(f), &b);
        }
    });
    let dir_in_place = data_variant(root, "dir-in-place", |m| {
        let f = m.join("t10k-images-idx3-ubyte.gz");
        std::fs::remove_file(&f).unwrap();
        std::fs::create_dir(&f).unwrap();
    });
    let missing = data_variant(root, "missing", |m| {
        std::fs::remove_file(m.join("train-images-idx3-ubyte.gz")).unwrap();
    });

    // Models and checkpoints with one thing wrong each.
    let nan_model = root.join("nan.safetensors");
    {
        let vae = vae_model::Vae::load(&model, &candle_core::Device::Cpu).unwrap();
        let mut tensors: Vec<(String, candle_core::Tensor)> = vae.named_tensors();
        let w = tensors
            .iter_mut()
            .find(|(n, _)| n == "decoder.out.bias")
            .unwrap();
        let mut v = w.1.to_vec1::<f32>().unwrap();
        v[3] = f32::NAN;
        w.1 = candle_core::Tensor::new(v, &candle_core::Device::Cpu).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&model_bytes).unwrap();
        let md = meta.metadata().clone().unwrap();
        std::fs::write(
            &nan_model,
            safetensors::serialize(tensors, Some(md)).unwrap(),
        )
        .unwrap();
    }
    let cut_model = root.join("cut.safetensors");
    std::fs::write(&cut_model, &model_bytes[..model_bytes.len() / 3]).unwrap();
    let text_model = root.join("notes.txt");
    std::fs::write(&text_model, "not a model").unwrap();
    let narrow_model = root.join("narrow.safetensors");
    {
        let cfg = vae_model::VaeConfig {
            input_dim: 100,
            hidden_dims: vec![8],
            latent_dim: 2,
            ..vae_model::VaeConfig::mnist()
        };
        let mut rng = vae_model::VaeRng::seed_from(1);
        let (mut vae, _) = vae_model::Vae::init(&cfg, &mut rng, &candle_core::Device::Cpu).unwrap();
        vae.set_dataset("mnist");
        vae.save(&narrow_model).unwrap();
    }
    let run_with = |name: &str, ckpt: &[u8]| -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "metrics.jsonl"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("checkpoint.safetensors"), ckpt).unwrap();
        dir
    };
    let mut flipped = ckpt_bytes.clone();
    let n = flipped.len();
    flipped[n - 4000..n - 3000].fill(0xFF);
    let corrupt_run = run_with("corrupt-run", &flipped);
    let done_run = run_with("done-run", &ckpt_bytes);

    // Presets with one thing wrong each.
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mnist.toml"),
    )
    .unwrap();
    let typed = root.join("typed.toml");
    std::fs::write(&typed, base.replace("epochs = 10", "epochs = \"ten\"")).unwrap();
    let syntax = root.join("syntax.toml");
    std::fs::write(&syntax, base.replace("lr = 1e-3", "lr = = 1e-3")).unwrap();
    let epochs_line = base.lines().position(|l| l.starts_with("epochs")).unwrap() + 1;
    let lr_line = base.lines().position(|l| l.starts_with("lr")).unwrap() + 1;

    // A run directory that another process (this test) holds.
    let locked = root.join("locked");
    let _held = vae_train::rundir::RunDir::acquire(&locked).unwrap();

    let p = |p: &Path| p.to_str().unwrap().to_string();
    let s = |v: &PathBuf| p(v);
    let fresh = p(&root.join("fresh"));
    let train = |data: &PathBuf| {
        vec![
            "train".to_string(),
            "--data-dir".into(),
            s(data),
            "--out".into(),
            fresh.clone(),
        ]
    };
    let mut cases = vec![
        Case {
            name: "truncated data file",
            args: train(&truncated),
            needles: vec![
                "train-labels-idx1-ubyte.gz".into(),
                "not the published file".into(),
            ],
        },
        Case {
            name: "re-gzipped data file",
            args: train(&regzipped),
            needles: vec![
                "t10k-labels-idx1-ubyte.gz".into(),
                "not the published file".into(),
            ],
        },
        Case {
            name: "1000 images changed",
            args: train(&edited),
            needles: vec![
                "train-images-idx3-ubyte.gz".into(),
                "not the published file".into(),
            ],
        },
        Case {
            name: "Fashion-MNIST under mnist/",
            args: train(&fashion),
            needles: vec![
                "mnist/train-images-idx3-ubyte.gz".into(),
                "not the published file".into(),
            ],
        },
        Case {
            name: "a directory in place of a file",
            args: train(&dir_in_place),
            needles: vec!["t10k-images-idx3-ubyte.gz".into(), "is a directory".into()],
        },
        Case {
            name: "a missing data file",
            args: train(&missing),
            needles: vec!["train-images-idx3-ubyte.gz".into(), "missing".into()],
        },
        case(
            "NaN in a model",
            &["eval", "--model", &p(&nan_model), "--data-dir", d],
            &["nan.safetensors", "`decoder.out.bias` holds NaN"],
        ),
        case(
            "a truncated model",
            &[
                "sample",
                "--model",
                &p(&cut_model),
                "--out",
                &p(&root.join("s.png")),
            ],
            &["cut.safetensors"],
        ),
        case(
            "a text file as model",
            &[
                "reconstruct",
                "--model",
                &p(&text_model),
                "--out",
                &p(&root.join("r.png")),
                "--data-dir",
                d,
            ],
            &["notes.txt", "not a safetensors file"],
        ),
        case(
            "a model for other images",
            &[
                "reconstruct",
                "--model",
                &p(&narrow_model),
                "--out",
                &p(&root.join("r.png")),
                "--data-dir",
                d,
            ],
            &["narrow.safetensors", "input_dim 100", "does not fit"],
        ),
        case(
            "a corrupt checkpoint",
            &[
                "train",
                "--hidden-dims",
                "16",
                "--latent-dim",
                "4",
                "--epochs",
                "3",
                "--train-subset",
                "2000",
                "--resume",
                "--data-dir",
                d,
                "--out",
                &p(&corrupt_run),
            ],
            &["checkpoint.safetensors", "corrupt checkpoint"],
        ),
        case(
            "a checkpoint of another config",
            &[
                "train",
                "--epochs",
                "3",
                "--resume",
                "--data-dir",
                d,
                "--out",
                &p(&done_run),
            ],
            &["different config"],
        ),
        case(
            "resume to fewer epochs",
            &[
                "train",
                "--hidden-dims",
                "16",
                "--latent-dim",
                "4",
                "--epochs",
                "1",
                "--train-subset",
                "2000",
                "--resume",
                "--data-dir",
                d,
                "--out",
                &p(&done_run),
            ],
            &["2 epochs done", "greater than 2"],
        ),
        case(
            "a finished run without --resume",
            &[
                "train",
                "--hidden-dims",
                "16",
                "--latent-dim",
                "4",
                "--epochs",
                "2",
                "--train-subset",
                "2000",
                "--data-dir",
                d,
                "--out",
                &p(&good),
            ],
            &["holds a run already", "--overwrite"],
        ),
        case(
            "a run directory in use",
            &["train", "--data-dir", d, "--out", &p(&locked)],
            &[
                "another training run",
                &format!("pid {}", std::process::id()),
            ],
        ),
        case(
            "a preset type error",
            &[
                "train",
                "--preset",
                &p(&typed),
                "--data-dir",
                d,
                "--out",
                &fresh,
            ],
            &[
                "typed.toml",
                &format!("`training.epochs`, line {epochs_line}"),
            ],
        ),
        case(
            "a preset syntax error",
            &[
                "train",
                "--preset",
                &p(&syntax),
                "--data-dir",
                d,
                "--out",
                &fresh,
            ],
            &["syntax.toml", &format!("line {lr_line}")],
        ),
        case(
            "a missing preset file",
            &[
                "train",
                "--preset",
                &p(&root.join("nope.toml")),
                "--out",
                &fresh,
            ],
            &["nope.toml: cannot read preset"],
        ),
        case(
            "sample --n u64::MAX",
            &[
                "sample",
                "--model",
                &p(&model),
                "--n",
                "18446744073709551615",
                "--out",
                &p(&root.join("s.png")),
            ],
            &["--n 18446744073709551615", "memory"],
        ),
        case(
            "sample --n 1e8",
            &[
                "sample",
                "--model",
                &p(&model),
                "--n",
                "100000000",
                "--out",
                &p(&root.join("s.png")),
            ],
            &["memory"],
        ),
        case(
            "a batch larger than the data",
            &[
                "train",
                "--batch-size",
                "18446744073709551615",
                "--data-dir",
                d,
                "--out",
                &fresh,
            ],
            &["batch_size 18446744073709551615", "60000 training images"],
        ),
        case(
            "a billion hidden units",
            &[
                "train",
                "--hidden-dims",
                "1000000000",
                "--data-dir",
                d,
                "--out",
                &fresh,
            ],
            &["parameters"],
        ),
        case(
            "a 1e8-wide latent",
            &[
                "train",
                "--latent-dim",
                "100000000",
                "--data-dir",
                d,
                "--out",
                &fresh,
            ],
            &["parameters"],
        ),
        case(
            "a learning rate that diverges",
            &[
                "train",
                "--lr",
                "0.99",
                "--epochs",
                "1",
                "--data-dir",
                d,
                "--out",
                &fresh,
            ],
            &["loss became"],
        ),
    ];
    let watched = [root.to_path_buf(), data.clone()];
    for c in cases.drain(..) {
        let before: Vec<_> = watched.iter().map(|w| snapshot(w)).collect();
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let (code, _, err) = vae_train(&args);
        assert_eq!(code, Some(1), "{}: {err}", c.name);
        assert!(!err.contains("panicked"), "{}: {err}", c.name);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{}: {err}", c.name);
        assert!(lines[0].starts_with("error: "), "{}: {err}", c.name);
        for n in &c.needles {
            assert!(
                lines[0].contains(n.as_str()),
                "{}: `{n}` not in {err}",
                c.name
            );
        }
        // A refused run may leave only its own (empty) run directory and lock behind.
        let _ = std::fs::remove_dir_all(&fresh);
        let after: Vec<_> = watched.iter().map(|w| snapshot(w)).collect();
        assert_eq!(before, after, "{}: files changed", c.name);
    }
}
