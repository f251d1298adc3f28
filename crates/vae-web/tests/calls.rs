//! The explorer's calls against the model they wrap: the same numbers as `Vae`'s own, byte-exact PNGs, and a
//! one-line refusal of every bad body.

use candle_core::{Device, Tensor};
use vae_model::{Vae, VaeConfig, VaeRng};
use vae_web::{CallError, Explorer};

fn model(cfg: VaeConfig) -> Vae {
    Vae::init(&cfg, &mut VaeRng::seed_from(7), &Device::Cpu)
        .unwrap()
        .0
}

fn mnist() -> Explorer {
    let cfg = VaeConfig {
        hidden_dims: vec![32],
        latent_dim: 3,
        ..VaeConfig::mnist()
    };
    Explorer::new(model(cfg)).unwrap()
}

fn bad(ex: &Explorer, path: &str, body: &str) -> String {
    match ex.call(path, body) {
        Err(CallError::Bad(m)) => {
            assert!(!m.contains('\n'), "{m}");
            m
        }
        other => panic!(
            "{path} {body}: not refused as bad: {:?}",
            other.map(|b| b.len())
        ),
    }
}

#[test]
fn decode_answers_the_decoders_mean_as_the_grid_png_of_it() {
    let ex = mnist();
    let z = [0.5f32, -1.0, 2.0];
    let probs = ex
        .vae()
        .decode_probs(&Tensor::new(&[z], &Device::Cpu).unwrap(), None)
        .unwrap();
    let values = probs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let png = ex.call("/api/decode", r#"{"z": [0.5, -1, 2]}"#).unwrap();
    assert_eq!(png, vae_data::grid_png(&values, 1, 1, [1, 28, 28]).unwrap());
    assert_eq!(ex.decode_values(&[0.5, -1.0, 2.0], None).unwrap(), values);
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (56 + 4, 56 + 4));
}

#[test]
fn encode_reads_a_drawing_as_generate_like_does_and_answers_the_posterior() {
    let ex = mnist();
    let (w, h) = (60usize, 40usize);
    let pixels: Vec<f64> = (0..w * h)
        .map(|i| if (i % w) / 10 == 2 { 1.0 } else { 0.0 })
        .collect();
    let body = serde_json::json!({ "width": w, "height": h, "pixels": pixels }).to_string();
    let answer: serde_json::Value =
        serde_json::from_slice(&ex.call("/api/encode", &body).unwrap()).unwrap();
    let grey = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
        image::Luma([(pixels[y as usize * w + x as usize] * 255.0) as u8])
    });
    let input = vae_data::picture_input(&grey.into(), [1, 28, 28], true).unwrap();
    let got: Vec<f32> = serde_json::from_value(answer["input"].clone()).unwrap();
    assert_eq!(got, input);
    let x = Tensor::from_vec(input, (1, 784), &Device::Cpu).unwrap();
    let (mu, _) = ex.vae().encode(&x, None).unwrap();
    let mu = mu.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got: Vec<f32> = serde_json::from_value(answer["mu"].clone()).unwrap();
    assert_eq!(got, mu);
}

#[test]
fn samples_are_new_each_call_and_the_same_in_order_for_a_new_explorer() {
    let (a, b) = (mnist(), mnist());
    let input: Vec<f64> = (0..784).map(|i| (i % 7) as f64 / 7.0).collect();
    let body = serde_json::json!({ "input": input, "n": 4 }).to_string();
    let first = a.call("/api/samples", &body).unwrap();
    let second = a.call("/api/samples", &body).unwrap();
    assert_ne!(first, second);
    assert_eq!(b.call("/api/samples", &body).unwrap(), first);
    let zero = serde_json::json!({ "input": input, "n": 2, "temperature": 0 }).to_string();
    let png = image::load_from_memory(&a.call("/api/samples", &zero).unwrap()).unwrap();
    let (w, h) = (png.width(), png.height());
    assert_eq!((w, h), (2 * 58 + 2, 60));
}

#[test]
fn every_bad_body_is_refused_in_one_line_that_names_the_field() {
    let ex = mnist();
    assert!(bad(&ex, "/api/decode", r#"{"z": [1, 2]}"#).contains("z has 2 values"));
    assert!(bad(&ex, "/api/decode", r#"{"z": [1, 2, 1e300]}"#).contains("within"));
    assert!(bad(&ex, "/api/decode", r#"{"z": [1, 2, 3], "label": 1}"#).contains("not conditional"));
    assert!(bad(&ex, "/api/decode", r#"{"z": [1, 2, 3], "x": 1}"#).contains("unknown field"));
    assert!(bad(&ex, "/api/decode", "{").contains("bad JSON body"));
    assert!(bad(&ex, "/api/nothing", "{}").contains("no such route"));
    let e = bad(
        &ex,
        "/api/encode",
        r#"{"width": 2, "height": 2, "pixels": [0, 0, 0]}"#,
    );
    assert!(e.contains("2 × 2 and 3 values"), "{e}");
    let e = bad(
        &ex,
        "/api/encode",
        r#"{"width": 1, "height": 1, "pixels": [2]}"#,
    );
    assert!(e.contains("[0, 1]"), "{e}");
    let e = bad(
        &ex,
        "/api/encode",
        r#"{"width": 2, "height": 2, "pixels": [0, 0, 0, 0]}"#,
    );
    assert!(e.contains("blank"), "{e}");
    assert!(bad(&ex, "/api/samples", r#"{"input": [0.5], "n": 1}"#).contains("input has 1 values"));
    assert!(bad(&ex, "/api/samples", r#"{"input": [], "n": 0}"#).contains("n must be"));
    let e = bad(
        &ex,
        "/api/interpolate",
        r#"{"from": [], "to": [], "steps": 1}"#,
    );
    assert!(e.contains("steps must be 2-50"), "{e}");
}

#[test]
fn a_conditional_model_needs_a_label_in_range_and_a_colour_model_refuses_drawings() {
    let cfg = VaeConfig {
        hidden_dims: vec![16],
        latent_dim: 2,
        conditional: true,
        ..VaeConfig::mnist()
    };
    let ex = Explorer::new(model(cfg)).unwrap();
    assert!(bad(&ex, "/api/decode", r#"{"z": [0, 0]}"#).contains("give a label 0-9"));
    assert!(bad(&ex, "/api/decode", r#"{"z": [0, 0], "label": 10}"#).contains("classes are 0-9"));
    let three = ex
        .call("/api/decode", r#"{"z": [0, 0], "label": 3}"#)
        .unwrap();
    assert_ne!(
        three,
        ex.call("/api/decode", r#"{"z": [0, 0], "label": 4}"#)
            .unwrap()
    );
    let colour = VaeConfig {
        input_dim: 3 * 8 * 8,
        input_shape: Some(vec![3, 8, 8]),
        hidden_dims: vec![16],
        latent_dim: 2,
        ..VaeConfig::mnist()
    };
    let ex = Explorer::new(model(colour)).unwrap();
    assert!(!ex.drawable());
    let e = bad(
        &ex,
        "/api/encode",
        r#"{"width": 1, "height": 1, "pixels": [1]}"#,
    );
    assert!(e.contains("grey, square pictures"), "{e}");
    let png =
        image::load_from_memory(&ex.call("/api/decode", r#"{"z": [0, 1]}"#).unwrap()).unwrap();
    assert_eq!(png.color(), image::ColorType::Rgb8);
}

#[test]
fn a_model_of_vectors_is_refused() {
    let cfg = VaeConfig {
        input_dim: 5,
        input_shape: Some(vec![5]),
        hidden_dims: vec![4],
        latent_dim: 2,
        ..VaeConfig::mnist()
    };
    let err = Explorer::new(model(cfg)).err().unwrap();
    assert!(err.contains("vectors of 5 values"), "{err}");
}
