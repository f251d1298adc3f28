//! The bad-input corpus: every hostile file or flag we know of, generated here (nothing binary is committed), run
//! through the `vae-train` binary. Each must end in exactly one `error:` line naming the problem, a non-zero exit,
//! no panic, and no change to the data or run folders.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod common;
use common::{data_dir, vae_train};

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

/// A PNG whose header claims `w × h` 8-bit grey pixels, with a few bytes of image data: decoding it whole would take
/// `w·h` bytes.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(kind);
        png.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend(crc.sum().to_be_bytes());
    };
    let header: Vec<u8> = [w.to_be_bytes(), h.to_be_bytes()].concat();
    chunk(b"IHDR", &[&header[..], &[8, 0, 0, 0, 0]].concat());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0u8; 64]).unwrap();
    chunk(b"IDAT", &z.finish().unwrap());
    chunk(b"IEND", &[]);
    png
}

#[test]
fn every_bad_input_gets_one_clear_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = data_dir().to_path_buf();
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
    // A model of 12 inputs, as an imported tabular VAE would be: no image to draw.
    let vector_model = root.join("vector.safetensors");
    {
        let cfg = vae_model::VaeConfig {
            input_dim: 12,
            hidden_dims: vec![6],
            latent_dim: 3,
            ..vae_model::VaeConfig::mnist()
        };
        let (vae, _) = vae_model::Vae::init(
            &cfg,
            &mut vae_model::VaeRng::seed_from(1),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        vae.save(&vector_model).unwrap();
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
    let conv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mnist-conv.toml"),
    )
    .unwrap();
    let conv_stride0 = root.join("conv-stride0.toml");
    std::fs::write(&conv_stride0, conv.replace("stride = 2", "stride = 0")).unwrap();
    let conv_kernel40 = root.join("conv-kernel40.toml");
    std::fs::write(&conv_kernel40, conv.replace("kernel = 4", "kernel = 40")).unwrap();
    let epochs_line = base.lines().position(|l| l.starts_with("epochs")).unwrap() + 1;
    let lr_line = base.lines().position(|l| l.starts_with("lr")).unwrap() + 1;

    // Outputs that must not replace what is there, and inputs that are not regular files.
    let model_png = root.join("m.png");
    std::fs::copy(&model, &model_png).unwrap();
    let fifo = |name: &str| {
        let p = root.join(name);
        let made = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", p.display());
        p
    };
    let (fifo_png, fifo_model) = (fifo("fifo.png"), fifo("fifo.safetensors"));
    let huge_run = root.join("huge-run");
    std::fs::create_dir_all(&huge_run).unwrap();
    let huge = |e: usize, v: f64| {
        format!(
            "{{\"epoch\":{e},\"train_loss\":{v:e},\"train_recon\":1,\"train_kl\":1,\"test_loss\":{:e},\"test_recon\":1,\"test_kl\":1,\"epoch_s\":1,\"images_per_s\":1}}\n",
            -v
        )
    };
    std::fs::write(
        huge_run.join("metrics.jsonl"),
        huge(1, 1e308) + &huge(2, 1e308),
    )
    .unwrap();

    let huge_png = root.join("huge.png");
    std::fs::write(&huge_png, png_claiming(20_000, 20_000)).unwrap();

    // A run directory that another process (this test) holds.
    let locked = root.join("locked");
    let _held = vae_train::rundir::RunDir::acquire(&locked).unwrap();

    // Each case's command line, with `{name}` standing for the paths above; `{small}` is the good run's model.
    let paths: Vec<(&str, PathBuf)> = vec![
        ("{data}", data.clone()),
        ("{fresh}", root.join("fresh")),
        ("{good}", good.clone()),
        ("{model}", model.clone()),
        ("{truncated}", truncated),
        ("{regzipped}", regzipped),
        ("{edited}", edited),
        ("{fashion}", fashion),
        ("{dir_in_place}", dir_in_place),
        ("{missing}", missing),
        ("{nan}", nan_model),
        ("{cut}", cut_model),
        ("{text}", text_model),
        ("{narrow}", narrow_model),
        ("{vector}", vector_model),
        ("{corrupt_run}", corrupt_run),
        ("{done_run}", done_run),
        ("{typed}", typed),
        ("{conv_stride0}", conv_stride0),
        ("{conv_kernel40}", conv_kernel40),
        ("{syntax}", syntax),
        ("{nope}", root.join("nope.toml")),
        ("{locked}", locked),
        ("{png}", root.join("out.png")),
        ("{jpg}", root.join("out.jpg")),
        ("{same}", root.join("same.npy")),
        ("{model_png}", model_png),
        ("{fifo_png}", fifo_png),
        ("{fifo_model}", fifo_model),
        ("{huge_run}", huge_run),
        ("{huge_png}", huge_png),
    ];
    let mut paths = paths;
    paths.extend(picture_folders(&root.join("pictures")));
    paths.extend(bad_arrays_and_archives(&root.join("arrays")));
    // A data directory outside the watched ones, for a refusal that comes once the folder is read (and cached).
    let elsewhere = tempfile::tempdir().unwrap();
    paths.push(("{elsewhere}", elsewhere.path().to_path_buf()));
    let small = "--hidden-dims 16 --latent-dim 4 --train-subset 2000";
    let argv = |template: &str| -> Vec<String> {
        let template = template.replace("{small}", small);
        template
            .split_whitespace()
            .map(|t| match paths.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => v.display().to_string(),
                None => t.to_string(),
            })
            .collect()
    };
    let pid = format!("pid {}", std::process::id());
    let epochs_at = format!("`training.epochs`, line {epochs_line}");
    let lr_at = format!("line {lr_line}");
    let unpublished = "not the published file";
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        ("truncated data file", "train --data-dir {truncated} --out {fresh}", vec!["train-labels-idx1-ubyte.gz", unpublished]),
        ("re-gzipped data file", "train --data-dir {regzipped} --out {fresh}", vec!["t10k-labels-idx1-ubyte.gz", unpublished]),
        ("1000 images changed", "train --data-dir {edited} --out {fresh}", vec!["train-images-idx3-ubyte.gz", unpublished]),
        ("Fashion-MNIST under mnist/", "train --data-dir {fashion} --out {fresh}", vec!["mnist/train-images-idx3-ubyte.gz", unpublished]),
        ("a directory in place of a file", "train --data-dir {dir_in_place} --out {fresh}", vec!["t10k-images-idx3-ubyte.gz", "is a directory"]),
        ("a missing data file", "train --data-dir {missing} --out {fresh}", vec!["train-images-idx3-ubyte.gz", "missing"]),
        ("NaN in a model", "eval --model {nan} --data-dir {data}", vec!["nan.safetensors", "`decoder.out.bias` holds NaN"]),
        ("a truncated model", "sample --model {cut} --out {png}", vec!["cut.safetensors"]),
        ("a text file as model", "reconstruct --model {text} --out {png} --data-dir {data}", vec!["notes.txt", "not a safetensors file"]),
        ("a model for other images", "reconstruct --model {narrow} --out {png} --data-dir {data}", vec!["narrow.safetensors", "input_dim 100", "does not fit"]),
        ("a corrupt checkpoint", "train {small} --epochs 3 --resume --data-dir {data} --out {corrupt_run}", vec!["checkpoint.safetensors", "corrupt checkpoint"]),
        ("a checkpoint of another config", "train --epochs 3 --resume --data-dir {data} --out {done_run}", vec!["different config"]),
        ("resume to fewer epochs", "train {small} --epochs 1 --resume --data-dir {data} --out {done_run}", vec!["2 epochs done", "greater than 2"]),
        ("a finished run without --resume", "train {small} --epochs 2 --data-dir {data} --out {good}", vec!["holds a run already", "--overwrite"]),
        ("a run directory in use", "train --data-dir {data} --out {locked}", vec!["another training run", &pid]),
        ("a preset type error", "train --preset {typed} --data-dir {data} --out {fresh}", vec!["typed.toml", &epochs_at]),
        ("a preset syntax error", "train --preset {syntax} --data-dir {data} --out {fresh}", vec!["syntax.toml", &lr_at]),
        ("a missing preset file", "train --preset {nope} --out {fresh}", vec!["nope.toml: cannot read preset"]),
        ("sample --n u64::MAX", "sample --model {model} --n 18446744073709551615 --out {png}", vec!["--n 18446744073709551615", "memory"]),
        ("sample --n 1e8", "sample --model {model} --n 100000000 --out {png}", vec!["memory"]),
        ("a batch larger than the data", "train --batch-size 18446744073709551615 --data-dir {data} --out {fresh}", vec!["batch_size 18446744073709551615", "60000 training images"]),
        ("a billion hidden units", "train --hidden-dims 1000000000 --data-dir {data} --out {fresh}", vec!["parameters"]),
        ("a 1e8-wide latent", "train --latent-dim 100000000 --data-dir {data} --out {fresh}", vec!["parameters"]),
        ("reconstruct over a model", "reconstruct --model {model} --out {model} --data-dir {data}", vec!["model.safetensors", "--out writes .png or .npy"]),
        ("reconstruct into a .jpg", "reconstruct --model {model} --out {jpg} --data-dir {data}", vec!["out.jpg", "--out writes .png or .npy"]),
        ("a model named .png as --out", "sample --model {model} --out {model_png}", vec!["m.png", "something other than a .png"]),
        ("eval --inputs-out over a model", "eval --model {model} --inputs-out {model} --data-dir {data}", vec!["--inputs-out writes .npy"]),
        ("encode's two outputs one file", "encode --model {model} --out {same} --inputs-out {same} --data-dir {data}", vec!["same.npy", "--out and --inputs-out name the same file"]),
        ("a FIFO as --out", "sample --model {model} --out {fifo_png}", vec!["fifo.png", "must be a regular file"]),
        ("a FIFO as --model", "sample --model {fifo_model} --out {png}", vec!["fifo.safetensors", "must be a regular file"]),
        ("a FIFO as a picture", "generate --model {model} --like {fifo_png} --out {png} --data-dir {data}", vec!["fifo.png", "must be a regular file"]),
        ("a device as --out", "sample --model {model} --out /dev/null", vec!["/dev/null", "--out writes .png or .npy"]),
        ("reconstruct past the test set", "reconstruct --model {model} --n 20000 --out {png} --data-dir {data}", vec!["--n 20000", "the test set has 10000 images"]),
        ("encode past the test set", "encode --model {model} --n 20000 --out {same} --data-dir {data}", vec!["--n 20000", "the test set has 10000 images"]),
        ("a PNG claiming 20000²", "generate --model {model} --like {huge_png} --out {png} --data-dir {data}", vec!["huge.png", "past the limit of 8192 per side"]),
        ("curves of ±1e308", "curves --run {huge_run} --out {png}", vec!["metrics.jsonl", "too large to draw"]),
        ("serve a model of 12 inputs", "serve --model {vector} --bind 127.0.0.1:0 --dataset mnist --data-dir {data}", vec!["vector.safetensors", "input_dim 12 does not fit"]),
        ("sample a model of 12 inputs", "sample --model {vector} --out {png}", vec!["vectors of [12] values are not pictures"]),
        ("an empty picture folder", "train --dataset {f_empty} --data-dir {data} --out {fresh}", vec!["empty", "no pictures (.png, .jpg, .jpeg) and no class folders"]),
        ("a folder of no pictures", "train --dataset {f_texts} --data-dir {data} --out {fresh}", vec!["texts", "no pictures"]),
        ("a missing picture folder", "train --dataset {f_missing} --data-dir {data} --out {fresh}", vec!["no-such-folder", "No such file"]),
        ("a class folder of no pictures", "train --dataset {f_hollow} --data-dir {data} --out {fresh}", vec!["hollow/emu", "class folder has no pictures"]),
        ("a decompression bomb alone", "train --dataset {f_bomb} --data-dir {data} --out {fresh}", vec!["big.png", "30000×30000", "limit of 8192"]),
        ("a truncated picture with --strict", "train --strict --dataset {f_cut} --data-dir {data} --out {fresh}", vec!["zz-cut.png", "--strict"]),
        ("a picture that is text, with --strict", "train --strict --dataset {f_text_png} --data-dir {data} --out {fresh}", vec!["zz-text.png", "--strict"]),
        ("a test split of zero", "train --test-fraction 0.001 --dataset {f_ok} --data-dir {data} --out {fresh}", vec!["ok", "leaves no example for the test split"]),
        ("a test class train/ lacks", "train --dataset {f_split} --data-dir {data} --out {fresh}", vec!["test/emu", "not among train/'s classes"]),
        ("--channels 2", "train --channels 2 --dataset {f_ok} --data-dir {data} --out {fresh}", vec!["data.channels must be 1 (grey) or 3 (RGB), got 2"]),
        ("--image-size on MNIST", "train --image-size 32 --data-dir {data} --out {fresh}", vec!["applies to folder: datasets, not mnist"]),
        ("a conditional model of an unlabelled folder", "train --preset mnist-cvae --dataset {f_flat} --data-dir {elsewhere} --out {fresh}", vec!["flat", "needs examples of at least 2 classes"]),
        ("an array of f64", "train --dataset {n_f64} --data-dir {data} --out {fresh}", vec!["f64.npz", "x_train", "dtype f8 is not read"]),
        ("an array of rank 1", "train --dataset {n_rank1} --data-dir {data} --out {fresh}", vec!["rank1.npz", "expected [N, D], [N, H, W] or [N, H, W, C]"]),
        ("an array holding NaN", "train --dataset {n_nan} --data-dir {data} --out {fresh}", vec!["nan.npz", "x_train", "NaN"]),
        ("labels and examples that differ in count", "train --dataset {n_count} --data-dir {data} --out {fresh}", vec!["count.npz", "y_train: 2 labels for 4 examples"]),
        ("a label past the classes", "train --dataset {n_past} --data-dir {data} --out {fresh}", vec!["past.npz", "label 10000 at index 2"]),
        ("an array test split of zero", "train --dataset {n_empty} --data-dir {data} --out {fresh}", vec!["empty-test.npz", "the test split has no examples"]),
        ("CIFAR-10 not downloaded", "train --dataset cifar10 --data-dir {no_cifar} --out {fresh}", vec!["cifar10/cifar-10-binary.tar.gz", "missing", "vae-train download --dataset cifar10"]),
        ("a CIFAR-10 archive that is not the published one", "train --dataset cifar10 --data-dir {fake_cifar} --out {fresh}", vec!["cifar-10-binary.tar.gz", unpublished]),
        ("export-images into a full folder", "export-images --dataset mnist --out {good} --data-dir {data}", vec!["good", "not empty"]),
        ("the fused engine on a Gaussian decoder", "train --engine fused --likelihood gaussian --data-dir {data} --out {fresh}", vec!["fused engine does not support a decoder other than the Bernoulli", "--engine autograd"]),
        ("the fused engine on a conv model", "train --engine fused --preset mnist-conv --data-dir {data} --out {fresh}", vec!["fused engine does not support convolutions", "--engine autograd"]),
        ("a conv stride of 0", "train --preset {conv_stride0} --data-dir {data} --out {fresh}", vec!["conv-stride0.toml", "conv.stride is 0"]),
        ("a conv kernel larger than the images", "train --preset {conv_kernel40} --data-dir {data} --out {fresh}", vec!["conv-kernel40.toml", "encoder.conv.0", "kernel 40 is larger than its input 28×28"]),
        ("a conv stack that reduces the images to nothing", "train --preset mnist-conv --dataset {f_ok} --image-size 2 --data-dir {elsewhere} --out {fresh}", vec!["encoder.conv.1", "reduces the 2×2 images to nothing"]),
        ("a σ without a Gaussian", "train --sigma 0.1 --data-dir {data} --out {fresh}", vec!["sigma is set but the likelihood is bernoulli"]),
        ("a σ of zero", "train --likelihood gaussian --sigma 0 --data-dir {data} --out {fresh}", vec!["sigma is 0", "positive and finite"]),
        ("a learning rate that diverges", "train --lr 0.99 --epochs 1 --data-dir {data} --out {fresh}", vec!["loss became"]),
    ];
    let fresh = root.join("fresh");
    let watched = [root.to_path_buf(), data.clone()];
    for (name, template, needles) in cases {
        let before: Vec<_> = watched.iter().map(|w| snapshot(w)).collect();
        let args = argv(template);
        let (code, _, err) = vae_train(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(lines[0].starts_with("error: "), "{name}: {err}");
        for n in needles {
            assert!(lines[0].contains(n), "{name}: `{n}` not in {err}");
        }
        // A refused run leaves no run directory behind.
        assert!(!fresh.exists(), "{name}: {} left behind", fresh.display());
        let after: Vec<_> = watched.iter().map(|w| snapshot(w)).collect();
        assert!(before == after, "{name}: files changed");
    }
}

/// Folders of pictures with one thing wrong each, as `folder:PATH` placeholders: 12 good 6×6 grey pictures in two
/// classes beside the flaw.
fn picture_folders(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let good = |dir: &Path| {
        for (c, class) in ["a", "b"].iter().enumerate() {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for i in 0..6u8 {
                let img = image::GrayImage::from_pixel(6, 6, image::Luma([c as u8 * 100 + i]));
                img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
            }
        }
    };
    let folder = |name: &str, make: &dyn Fn(&Path)| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        make(&dir);
        PathBuf::from(format!("folder:{}", dir.display()))
    };
    let first_png = root.join("first.png");
    std::fs::create_dir_all(root).unwrap();
    image::GrayImage::new(6, 6).save(&first_png).unwrap();
    vec![
        ("{f_empty}", folder("empty", &|_| {})),
        (
            "{f_texts}",
            folder("texts", &|d| {
                std::fs::write(d.join("notes.txt"), "hi").unwrap()
            }),
        ),
        (
            "{f_missing}",
            PathBuf::from(format!("folder:{}", root.join("no-such-folder").display())),
        ),
        (
            "{f_hollow}",
            folder("hollow", &|d| {
                good(d);
                std::fs::create_dir(d.join("emu")).unwrap();
            }),
        ),
        (
            "{f_bomb}",
            folder("bomb", &|d| {
                std::fs::write(d.join("big.png"), png_claiming(30_000, 30_000)).unwrap()
            }),
        ),
        (
            "{f_cut}",
            folder("cut", &|d| {
                good(d);
                let bytes = std::fs::read(&first_png).unwrap();
                std::fs::write(d.join("a/zz-cut.png"), &bytes[..bytes.len() / 2]).unwrap();
            }),
        ),
        (
            "{f_text_png}",
            folder("text-png", &|d| {
                good(d);
                std::fs::write(d.join("b/zz-text.png"), "not a picture").unwrap();
            }),
        ),
        ("{f_ok}", folder("ok", &|d| good(d))),
        (
            "{f_flat}",
            folder("flat", &|d| {
                for i in 0..12 {
                    std::fs::copy(&first_png, d.join(format!("{i}.png"))).unwrap();
                }
            }),
        ),
        (
            "{f_split}",
            folder("split", &|d| {
                good(&d.join("train"));
                good(&d.join("test"));
                std::fs::create_dir_all(d.join("test/emu")).unwrap();
                std::fs::copy(&first_png, d.join("test/emu/x.png")).unwrap();
            }),
        ),
    ]
}

/// NumPy arrays with one thing wrong each, as `npy:PATH` placeholders, and data directories with no CIFAR-10 archive
/// and with one that is not the published file.
fn bad_arrays_and_archives(root: &Path) -> Vec<(&'static str, PathBuf)> {
    use candle_core::{DType, Device, Tensor};
    std::fs::create_dir_all(root.join("fake/cifar10")).unwrap();
    std::fs::create_dir_all(root.join("none")).unwrap();
    std::fs::write(
        root.join("fake/cifar10/cifar-10-binary.tar.gz"),
        b"not CIFAR",
    )
    .unwrap();
    let x = |n: usize| {
        Tensor::arange(0f32, (n * 3) as f32, &Device::Cpu)
            .unwrap()
            .reshape((n, 3))
            .unwrap()
    };
    let y = |v: &[i64]| Tensor::new(v, &Device::Cpu).unwrap();
    let nan = Tensor::new(&[[0f32, f32::NAN, 1.0], [0.5, 0.5, 0.5]], &Device::Cpu).unwrap();
    let f64 = x(4).to_dtype(DType::F64).unwrap();
    let rank1 = x(4).flatten_all().unwrap();
    // (placeholder, file name, the named arrays it holds)
    type ArrayFile = (&'static str, &'static str, Vec<(&'static str, Tensor)>);
    let files: [ArrayFile; 6] = [
        (
            "{n_f64}",
            "f64.npz",
            vec![("x_train", f64), ("x_test", x(2))],
        ),
        (
            "{n_rank1}",
            "rank1.npz",
            vec![("x_train", rank1), ("x_test", x(2))],
        ),
        (
            "{n_nan}",
            "nan.npz",
            vec![("x_train", nan), ("x_test", x(2))],
        ),
        (
            "{n_count}",
            "count.npz",
            vec![
                ("x_train", x(4)),
                ("x_test", x(2)),
                ("y_train", y(&[0, 1])),
                ("y_test", y(&[0, 1])),
            ],
        ),
        (
            "{n_past}",
            "past.npz",
            vec![
                ("x_train", x(4)),
                ("x_test", x(2)),
                ("y_train", y(&[0, 1, 10000, 1])),
                ("y_test", y(&[0, 1])),
            ],
        ),
        (
            "{n_empty}",
            "empty-test.npz",
            vec![("x_train", x(4)), ("x_test", x(0))],
        ),
    ];
    let mut paths = vec![
        ("{no_cifar}", root.join("none")),
        ("{fake_cifar}", root.join("fake")),
    ];
    for (key, name, arrays) in files {
        let path = root.join(name);
        let named: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (*n, t)).collect();
        Tensor::write_npz(&named, &path).unwrap();
        paths.push((key, PathBuf::from(format!("npy:{}", path.display()))));
    }
    paths
}

#[test]
fn hostile_pytorch_files_are_refused_in_one_line_without_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("imported.safetensors");
    for (name, file, needle) in common::torch::hostile_files(tmp.path()) {
        let (code, _, err) = vae_train(&[
            "import",
            "--from",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(1), "{name}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains("archive.pt"),
            "{name}: {err}"
        );
        assert!(lines[0].contains(needle), "{name}: `{needle}` not in {err}");
        assert!(!out.exists(), "{name}: wrote {}", out.display());
    }
}

fn shipped_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mnist-seed.safetensors")
}

#[test]
fn force_replaces_an_output_that_holds_another_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let model_png = tmp.path().join("m.png");
    let model = shipped_model();
    std::fs::copy(&model, &model_png).unwrap();
    let args = [
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--n",
        "4",
        "--out",
        model_png.to_str().unwrap(),
    ];
    let (code, _, err) = vae_train(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--force does"), "{err}");
    let (code, _, err) = vae_train(&[&args[..], &["--force"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(std::fs::read(&model_png)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn a_signal_during_an_output_write_leaves_no_temporary_file() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("inputs.npy");
    let temporary = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
    };
    for sig in ["TERM", "INT", "HUP"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vae-train"))
            .args(["encode", "--n", "10000", "--model"])
            .arg(shipped_model())
            .arg("--out")
            .arg(tmp.path().join("means.npy"))
            .arg("--inputs-out")
            .arg(&out)
            .args(["--data-dir", data_dir().to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The signal goes as soon as a temporary file shows, while its 31 MB are being written.
        let started = std::time::Instant::now();
        while !temporary() && child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed().as_secs() < 60,
                "no output within a minute"
            );
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let pid = child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status();
        let status = child.wait().unwrap();
        assert!(!temporary(), "SIG{sig} ({status:?}) left a temporary file");
        if status.success() {
            // Finished before the signal: then the output is whole.
            let t = candle_core::Tensor::read_npy(&out).unwrap();
            assert_eq!(t.dims(), [10000, 784]);
        } else {
            assert!(
                status.code().is_some_and(|c| c > 128) || status.signal().is_some(),
                "{status:?}"
            );
        }
        let _ = std::fs::remove_file(&out);
    }
}
