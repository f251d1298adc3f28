//! The model that ships in `models/`: the file is the one its card describes, and it scores what the card says.

mod common;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The value of the card's table row `| {row} | value |`.
fn card_value(card: &str, row: &str) -> String {
    card.lines()
        .find_map(|l| l.strip_prefix(&format!("| {row} | ")))
        .and_then(|rest| rest.strip_suffix(" |"))
        .unwrap_or_else(|| panic!("the card has no row `{row}`"))
        .to_string()
}

#[test]
fn the_shipped_model_is_the_file_of_its_card_and_scores_what_the_card_says() {
    let (model, card) = (
        models().join("mnist-seed.safetensors"),
        models().join("mnist-seed.md"),
    );
    let card = std::fs::read_to_string(card).unwrap();
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&model).unwrap()));
    assert!(
        card.contains(&format!("SHA-256 of the file: `{sha}`")),
        "the card does not name {sha}"
    );

    let data = common::data_dir().to_str().unwrap();
    let (code, stdout, err) = common::vae_train(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let eval: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let got = eval["test_loss"].as_f64().unwrap();
    let want: f64 = card_value(&card, "test −ELBO").parse().unwrap();
    // Another BLAS rounds the products differently; the noise draws are seeded.
    assert!((got - want).abs() < 0.02, "eval {got} vs the card's {want}");

    // It samples with nothing else at hand: no data, no run directory.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s.npy");
    let args = [
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--n",
        "4",
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, _, err) = common::vae_train(&args);
    assert_eq!(code, Some(0), "{err}");
}
