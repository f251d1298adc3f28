//! `vae-train import` on real PyTorch files (made by `tests/fixtures/torch/make_fixtures.py`, committed): each
//! layout's model, imported, computes what torch computed with it, and what is not a known VAE is refused in a line.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::torch;
use vae_model::{ScaleHead, Vae};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

fn npy(name: &str) -> Vec<Vec<f32>> {
    Tensor::read_npy(fixture(name)).unwrap().to_vec2().unwrap()
}

/// `vae-train import --from FROM --out OUT` with `extra` flags: exit code, stdout, stderr.
fn import(from: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let (from, out) = (from.to_str().unwrap(), out.to_str().unwrap());
    let args = ["import", "--from", from, "--out", out];
    common::vae_train(&[&args[..], extra].concat())
}

/// Imports `from` into `dir` through the CLI and loads the result.
fn imported(from: &Path, dir: &Path, extra: &[&str]) -> (Vae, String) {
    let name = from.file_name().unwrap().to_str().unwrap();
    let out = dir.join(format!("{name}.safetensors"));
    let (code, stdout, err) = import(from, &out, extra);
    assert_eq!(code, Some(0), "{err}");
    (Vae::load(&out, &Device::Cpu).unwrap(), stdout)
}

fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w).abs() <= 1e-5, "{what}: ours {g}, torch {w}");
    }
}

/// The model's mean, log σ² and decoding of the mean on the fixture inputs, against torch's.
fn matches_torch(vae: &Vae, name: &str, labels: Option<&Tensor>) {
    let x = Tensor::read_npy(fixture("x.npy")).unwrap();
    let (mu, logvar) = vae.encode(&x, labels).unwrap();
    assert_close(
        "mu",
        &mu.to_vec2().unwrap(),
        &npy(&format!("{name}-mu.npy")),
    );
    let scale = npy(&format!("{name}-scale.npy"));
    let want_logvar: Vec<Vec<f32>> = match vae.config().scale_head {
        // The teaching code's head is σ; its KL takes log σ².
        ScaleHead::Std => scale
            .iter()
            .map(|r| r.iter().map(|s| (s * s).ln()).collect())
            .collect(),
        ScaleHead::Logvar => scale,
    };
    assert_close("logvar", &logvar.to_vec2().unwrap(), &want_logvar);
    let recon = vae.decode_probs(&mu, labels).unwrap();
    assert_close(
        "recon",
        &recon.to_vec2().unwrap(),
        &npy(&format!("{name}-recon.npy")),
    );
}

#[test]
fn each_known_layout_imports_and_computes_what_torch_computed() {
    let tmp = tempfile::tempdir().unwrap();
    let (teaching, said) = imported(&fixture("teaching.pt"), tmp.path(), &[]);
    assert!(said.contains("teaching code"), "{said}");
    assert_eq!(teaching.config().scale_head, ScaleHead::Std);
    assert_eq!(
        (teaching.config().input_dim, teaching.config().latent_dim),
        (12, 3)
    );
    matches_torch(&teaching, "teaching", None);

    let (examples, said) = imported(&fixture("examples.pth"), tmp.path(), &[]);
    assert!(said.contains("pytorch/examples"), "{said}");
    assert_eq!(examples.config().scale_head, ScaleHead::Logvar);
    matches_torch(&examples, "examples", None);

    let (ours, _) = imported(
        &fixture("ours-tanh.pt"),
        tmp.path(),
        &["--activation", "tanh"],
    );
    assert_eq!(ours.config().hidden_dims, [6, 5]);
    matches_torch(&ours, "ours-tanh", None);

    let (cvae, _) = imported(
        &fixture("ours-conditional.pt"),
        tmp.path(),
        &["--activation", "tanh"],
    );
    assert!(cvae.config().conditional);
    let y = Tensor::read_npy(fixture("y.npy")).unwrap();
    matches_torch(&cvae, "ours-conditional", Some(&y));

    // Our own file imports as itself.
    let (back, _) = imported(&tmp.path().join("teaching.pt.safetensors"), tmp.path(), &[]);
    assert_eq!(back.config(), teaching.config());
}

#[test]
fn a_checkpoint_dict_and_any_archive_name_import_as_the_state_dict() {
    // torch.save({"epoch": 3, "model_state_dict": sd}), and sd under a 21-character archive name, whose zip64
    // record the zip crate's search for prepended data once took for a shifted archive.
    let tmp = tempfile::tempdir().unwrap();
    for file in ["teaching-checkpoint.pt", "teaching-archive-name.pt"] {
        let (vae, said) = imported(&fixture(file), tmp.path(), &[]);
        assert!(said.contains("teaching code"), "{file}: {said}");
        matches_torch(&vae, "teaching", None);
    }
}

#[test]
fn what_is_not_a_known_vae_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.safetensors");
    let refused = |from: &Path, needle: &str| {
        let (code, _, err) = import(from, &out, &[]);
        assert_eq!(code, Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{needle}: {err}"
        );
        assert!(!out.exists());
    };
    // Some other network: its names are listed with the layouts known.
    let other = tmp.path().join("resnet.safetensors");
    let t = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&[("conv1.weight", t.clone())].into_iter().collect(), &other)
        .unwrap();
    refused(
        &other,
        "tensors found: [\"conv1.weight\"]; layouts known: the teaching code's",
    );
    // A teaching file cut short, and one missing a layer.
    let bytes = std::fs::read(fixture("teaching.pt")).unwrap();
    let cut = tmp.path().join("cut.pt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(&cut, "cut.pt: not a PyTorch file");
    let partial = tmp.path().join("partial.safetensors");
    candle_core::safetensors::save(
        &[("img_2hid.weight", t.clone()), ("img_2hid.bias", t)]
            .into_iter()
            .collect(),
        &partial,
    )
    .unwrap();
    refused(&partial, "layout without `hid_2mu.weight`");
    refused(Path::new("nothing.pt"), "nothing.pt: no such file");
    // A known layout with a NaN weight: refused at import, not written for every later command to refuse.
    let good = tmp.path().join("good.safetensors");
    let (vae, _) = imported(
        &fixture("ours-tanh.pt"),
        tmp.path(),
        &["--activation", "tanh"],
    );
    let mut tensors: std::collections::HashMap<String, Tensor> =
        vae.named_tensors().into_iter().collect();
    let bias = tensors.get_mut("decoder.out.bias").unwrap();
    let mut v = bias.to_vec1::<f32>().unwrap();
    v[5] = f32::NAN;
    *bias = Tensor::new(v, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&tensors, &good).unwrap();
    refused(&good, "tensor `decoder.out.bias` holds NaN");
    refused(
        Path::new("model.onnx"),
        "expected a .pt, .pth or .safetensors file",
    );
}

#[test]
fn a_state_dict_reads_as_its_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = torch::pt_file(
        dir.path(),
        "archive",
        &torch::one_tensor(&[2, 3], 6),
        &[("0", torch::six_floats())],
    );
    let tensors = vae_train::import::pytorch::read(&path).unwrap();
    assert_eq!(tensors.len(), 1);
    assert_eq!(tensors[0].0, "w");
    let values = tensors[0].1.to_vec2::<f32>().unwrap();
    assert_eq!(values, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
}

#[test]
fn a_state_dict_under_either_checkpoint_key_is_found() {
    for key in ["state_dict", "model_state_dict"] {
        let pickle = torch::Pickle::new()
            .op(b"}(")
            .text("epoch")
            .int(3)
            .text(key)
            .op(b"}(")
            .text("w")
            .tensor("0", 6, &[2, 3], &[3, 1], 6)
            .op(b"uu")
            .stop();
        let dir = tempfile::tempdir().unwrap();
        let path = torch::pt_file(
            dir.path(),
            "archive",
            &pickle,
            &[("0", torch::six_floats())],
        );
        let tensors =
            vae_train::import::pytorch::read(&path).unwrap_or_else(|e| panic!("{key}: {e:#}"));
        assert_eq!(tensors[0].1.dims(), [2, 3], "{key}");
    }
}
