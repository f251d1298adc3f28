//! The four model calls of the explorer (decode, encode, samples, interpolate): bodies, checks and answers.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vae_model::{latent, Vae, VaeRng};

/// A coordinate of z beyond ±10 prior standard deviations is refused as absurd.
pub const MAX_ABS_Z: f64 = 10.0;
/// Most images one call may ask for.
pub const MAX_IMAGES: usize = 100;
/// Largest side of a drawing.
pub const MAX_SIDE: usize = 1024;

/// Why a call gave no answer.
#[derive(Debug)]
pub enum CallError {
    /// The request is wrong (a 400): the message says which field and why.
    Bad(String),
    /// The model failed on a valid request (a 500).
    Internal(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bad(m) | Self::Internal(m) => f.write_str(m),
        }
    }
}

impl From<candle_core::Error> for CallError {
    fn from(e: candle_core::Error) -> Self {
        Self::Internal(e.to_string().replace('\n', " "))
    }
}

impl From<image::ImageError> for CallError {
    fn from(e: image::ImageError) -> Self {
        Self::Internal(format!("the PNG: {e}"))
    }
}

fn bad(msg: impl Into<String>) -> CallError {
    CallError::Bad(msg.into())
}

/// A model of pictures on the CPU, and the seed of its next "more like this".
pub struct Explorer {
    vae: Vae,
    /// The model's pictures' `[channels, height, width]`.
    shape: vae_data::Shape,
    /// Seeds for "more like this", so that each call draws new samples, reproducibly in order.
    draws: AtomicU64,
}

/// The body of `/api/decode`: a z, and a conditional model's class.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeRequest {
    z: Vec<f64>,
    label: Option<u32>,
}

/// The body of `/api/encode`: a drawing, `width × height` grey levels in [0, 1], row-major.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeRequest {
    width: usize,
    height: usize,
    pixels: Vec<f64>,
    label: Option<u32>,
}

/// The answer of `/api/encode`: the input as the model sees it, its posterior, and the decoding of the mean.
#[derive(Serialize)]
pub struct Encoded {
    input: Vec<f32>,
    mu: Vec<f32>,
    logvar: Vec<f32>,
    recon: Vec<f32>,
}

/// The body of `/api/samples`: an input (as `/api/encode` or `/api/test/{index}` gave it) and how many samples.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplesRequest {
    input: Vec<f64>,
    n: usize,
    label: Option<u32>,
    temperature: Option<f64>,
}

/// The body of `/api/interpolate`: two inputs and the steps of the path between them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterpolateRequest {
    from: Vec<f64>,
    to: Vec<f64>,
    steps: usize,
    labels: Option<[u32; 2]>,
    slerp: Option<bool>,
}

impl Explorer {
    /// The explorer of `vae`, loaded on the CPU; a model of vectors, which has no pictures, is refused.
    pub fn new(vae: Vae) -> Result<Self, String> {
        let cfg = vae.config();
        let Some(shape) = cfg.image_shape() else {
            return Err(format!(
                "the explorer draws pictures, and this model's examples are vectors of {} values",
                cfg.input_dim
            ));
        };
        if !vae.device().is_cpu() {
            return Err("the explorer runs its model on the CPU: load it there".into());
        }
        Ok(Self {
            vae,
            shape,
            draws: AtomicU64::new(1),
        })
    }

    /// The model.
    pub fn vae(&self) -> &Vae {
        &self.vae
    }

    /// The model's pictures' `[channels, height, width]`.
    pub fn shape(&self) -> vae_data::Shape {
        self.shape
    }

    /// Whether drawings can be encoded: the pad makes grey, square pictures.
    pub fn drawable(&self) -> bool {
        self.shape[0] == 1 && self.shape[1] == self.shape[2]
    }

    /// Answers `POST path` with the JSON `body`: PNG bytes, or `/api/encode`'s JSON.
    pub fn call(&self, path: &str, body: &str) -> Result<Vec<u8>, CallError> {
        let json = |e: serde_json::Error| bad(format!("bad JSON body: {e}"));
        match path {
            "/api/decode" => self.decode(serde_json::from_str(body).map_err(json)?),
            "/api/encode" => {
                let encoded = self.encode(serde_json::from_str(body).map_err(json)?)?;
                serde_json::to_vec(&encoded).map_err(|e| CallError::Internal(e.to_string()))
            }
            "/api/samples" => self.samples(serde_json::from_str(body).map_err(json)?),
            "/api/interpolate" => self.interpolate(serde_json::from_str(body).map_err(json)?),
            _ => Err(bad(format!("{path}: no such route"))),
        }
    }

    /// `/api/decode`: the decoded image (the mean of p(x|z)) as a PNG.
    pub fn decode(&self, req: DecodeRequest) -> Result<Vec<u8>, CallError> {
        let (z, labels) = (self.z(&req.z)?, self.labels(req.label, 1)?);
        let probs = self.vae.decode_probs(&z, labels.as_ref())?;
        self.png_row(&probs, 1)
    }

    /// The decoded image of a z, as values: what `/api/decode` draws.
    pub fn decode_values(&self, z: &[f64], label: Option<u32>) -> Result<Vec<f32>, CallError> {
        let (z, labels) = (self.z(z)?, self.labels(label, 1)?);
        Ok(row(&self.vae.decode_probs(&z, labels.as_ref())?)?)
    }

    /// `/api/encode`: a drawing made into the model's input as `generate --like` makes a picture file (see
    /// [`vae_data::picture_input`]), and what the model makes of it.
    pub fn encode(&self, req: EncodeRequest) -> Result<Encoded, CallError> {
        let (w, h) = (req.width, req.height);
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || req.pixels.len() != w * h {
            return Err(bad(format!(
                "a drawing is width × height grey levels, each side 1-{MAX_SIDE}: got {w} × {h} and {} values",
                req.pixels.len()
            )));
        }
        if req.pixels.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(bad("pixels: every value must be in [0, 1]"));
        }
        if !self.drawable() {
            return Err(bad(format!(
                "the drawing pad makes grey, square pictures, and this model takes {:?}",
                self.shape
            )));
        }
        let grey = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([(req.pixels[y as usize * w + x as usize] * 255.0).round() as u8])
        });
        let cfg = self.vae.config();
        let mnist = cfg.input_shape.is_none();
        let input = vae_data::picture_input(&grey.into(), self.shape, mnist)
            .map_err(|e| bad(format!("the drawing: {e}")))?;
        let x = Tensor::from_vec(input.clone(), (1, input.len()), &Device::Cpu)?;
        let labels = self.labels(req.label, 1)?;
        let (mu, logvar) = self.vae.encode(&x, labels.as_ref())?;
        let recon = self.vae.decode_probs(&mu, labels.as_ref())?;
        Ok(Encoded {
            input,
            mu: row(&mu)?,
            logvar: row(&logvar)?,
            recon: row(&recon)?,
        })
    }

    /// `/api/samples`: "more like this", `n` decoded posterior samples of an input, as a PNG row.
    pub fn samples(&self, req: SamplesRequest) -> Result<Vec<u8>, CallError> {
        let t = req.temperature.unwrap_or(1.0);
        if !(1..=MAX_IMAGES).contains(&req.n) || !(0.0..=10.0).contains(&t) {
            return Err(bad(format!(
                "n must be 1-{MAX_IMAGES} and temperature in [0, 10]"
            )));
        }
        let (x, labels) = (self.image("input", &req.input)?, self.labels(req.label, 1)?);
        let mut rng = VaeRng::seed_from(self.draws.fetch_add(1, Ordering::Relaxed));
        let images = latent::posterior_samples(&self.vae, &x, labels.as_ref(), req.n, t, &mut rng)?;
        self.png_row(&images, req.n)
    }

    /// `/api/interpolate`: decoded images along the path between two inputs' posterior means, as a PNG row.
    pub fn interpolate(&self, req: InterpolateRequest) -> Result<Vec<u8>, CallError> {
        if !(2..=50).contains(&req.steps) {
            return Err(bad("steps must be 2-50"));
        }
        let (a, b) = (self.image("from", &req.from)?, self.image("to", &req.to)?);
        let labels = match req.labels {
            Some([la, lb]) => match (self.labels(Some(la), 1)?, self.labels(Some(lb), 1)?) {
                (Some(la), Some(lb)) => Some(Tensor::cat(&[la, lb], 0)?),
                _ => None,
            },
            None => self.labels(None, 2)?,
        };
        let slerp = req.slerp.unwrap_or(false);
        let path = latent::interpolate(&self.vae, (&a, &b), labels.as_ref(), req.steps, slerp)?;
        self.png_row(&path, req.steps)
    }

    /// `images [n, input_dim]` as one row of tiles of the model's shape, the PNG answer of the image calls.
    fn png_row(&self, images: &Tensor, n: usize) -> Result<Vec<u8>, CallError> {
        Ok(vae_data::grid_png(&row(images)?, 1, n, self.shape)?)
    }

    /// Checks a z: the model's length, finite, within ±[`MAX_ABS_Z`].
    fn z(&self, z: &[f64]) -> Result<Tensor, CallError> {
        let d = self.vae.config().latent_dim;
        if z.len() != d {
            return Err(bad(format!(
                "z has {} values; this model's latent space has {d}",
                z.len()
            )));
        }
        if let Some(v) = z.iter().find(|v| !v.is_finite() || v.abs() > MAX_ABS_Z) {
            return Err(bad(format!(
                "z holds {v}; each value must be finite and within ±{MAX_ABS_Z}"
            )));
        }
        let z: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(z, (1, d), &Device::Cpu)?)
    }

    /// The labels of `n` rows for a conditional model (which needs `label`); `None` for a plain model (which
    /// refuses one rather than ignore it).
    fn labels(&self, label: Option<u32>, n: usize) -> Result<Option<Tensor>, CallError> {
        let classes = self.vae.config().label_dim();
        match (classes, label) {
            (0, None) => Ok(None),
            (0, Some(c)) => Err(bad(format!(
                "label {c}: this model is not conditional and takes no label"
            ))),
            (_, None) => Err(bad(format!(
                "this model is conditional: give a label 0-{}",
                classes - 1
            ))),
            (_, Some(c)) if c as usize >= classes => Err(bad(format!(
                "label {c}: the model's classes are 0-{}",
                classes - 1
            ))),
            (_, Some(c)) => Ok(Some(Tensor::full(c, n, &Device::Cpu)?)),
        }
    }

    /// Checks an image in the model's input layout: `input_dim` values in [0, 1].
    fn image(&self, what: &str, px: &[f64]) -> Result<Tensor, CallError> {
        let n = self.vae.config().input_dim;
        if px.len() != n {
            return Err(bad(format!(
                "{what} has {} values; the model's images have {n}",
                px.len()
            )));
        }
        if px.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(bad(format!("{what}: every value must be in [0, 1]")));
        }
        let px: Vec<f32> = px.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(px, (1, n), &Device::Cpu)?)
    }
}

fn row(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}
