//! The JSON API of the explorer: what the server knows of its model, and the handlers that use it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use vae_model::{Vae, VaeConfig, VaeRng};

use super::ApiError;
use crate::{charts, eval, images, inputs, latent, metrics, rundir};

/// The largest request body accepted: a 512×512 drawing as JSON numbers fits.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// A coordinate of z beyond ±10 prior standard deviations is refused as absurd.
const MAX_ABS_Z: f64 = 10.0;
/// Most images one request may ask for.
const MAX_IMAGES: usize = 100;
/// Largest side of a drawing.
const MAX_SIDE: usize = 1024;
/// Test images whose posterior means the latent plane shows.
const PLANE_POINTS: usize = 2000;
/// Tiles per side of the latent plane's manifold.
const PLANE_GRID: usize = 20;

/// The model and what the page shows of it, computed once.
pub struct Explorer {
    vae: Vae,
    info: ModelInfo,
    /// The model's images' `[channels, height, width]`.
    shape: images::Shape,
    test: Option<vae_data::Data>,
    manifold_png: Option<Vec<u8>>,
    curves_png: Option<Vec<u8>>,
    /// The dataset's class names, which label the plane's dots (empty without the test set).
    label_names: Vec<String>,
    /// Seeds for "more like this", so that each request draws new samples, reproducibly in order.
    draws: AtomicU64,
}

/// What `GET /api/model` returns.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    config: VaeConfig,
    dataset: Option<String>,
    /// The model's images, which every image route answers in: grey (1 channel) or RGB (3), `height × width`.
    shape: ImageShape,
    /// Whether `/api/encode` takes drawings: the pad makes grey, square pictures (see [`inputs::ensure_drawable`]).
    pad: bool,
    /// Latent dimensions, most used first (by average KL on the test set; in index order without it).
    order: Vec<usize>,
    /// Average KL of each dimension on the test set, in nats (empty without the test set).
    kl_per_dim: Vec<f64>,
    /// Whether each dimension is inactive (average KL below 0.01 nats).
    inactive: Vec<bool>,
    /// The class names of a conditional model's labels (empty for a plain model).
    classes: Vec<String>,
    /// Whether `/api/plane` has a latent plane (a 2-D latent space).
    plane: bool,
    /// Whether `/api/curves.png` has the run's loss curves.
    curves: bool,
    /// Test images `/api/test/{index}` serves (0 without the dataset).
    test_images: usize,
    /// What the page says of the model's training.
    training: TrainingFacts,
}

/// The `[channels, height, width]` of a model's images, by name.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ImageShape {
    channels: usize,
    height: usize,
    width: usize,
}

impl From<images::Shape> for ImageShape {
    fn from([channels, height, width]: images::Shape) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }
}

/// The `[channels, height, width]` of the pictures of the model of `cfg`, read from `model`; a model of vectors,
/// which has none to draw, is refused.
fn picture_shape(cfg: &VaeConfig, model: &Path) -> anyhow::Result<images::Shape> {
    cfg.image_shape().with_context(|| {
        format!(
            "{}: the explorer draws pictures, and this model's examples are vectors of {} values",
            model.display(),
            cfg.input_dim
        )
    })
}

/// What "About this model" says of its training: from the run's `metrics.jsonl` beside the model, and the file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrainingFacts {
    /// Epochs trained (none without `metrics.jsonl`).
    epochs: Option<usize>,
    /// The last epoch's test −ELBO, in nats per image.
    final_test_loss: Option<f64>,
    /// Training images per second in the last epoch.
    images_per_s: Option<f64>,
    /// When the model file was written, in seconds since 1970-01-01 UTC.
    written_unix_s: Option<u64>,
}

impl TrainingFacts {
    /// The facts of the model file at `model` and the `history` of its run.
    fn new(model: &Path, history: &[metrics::EpochMetrics]) -> Self {
        let written = std::fs::metadata(model).and_then(|m| m.modified()).ok();
        let since_1970 = written.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let last = history.last();
        Self {
            epochs: last.map(|m| m.epoch),
            final_test_loss: last.map(|m| m.test_loss),
            images_per_s: last.map(|m| m.images_per_s),
            written_unix_s: since_1970.map(|d| d.as_secs()),
        }
    }
}

impl Explorer {
    /// The explorer of `vae` (moved to the CPU), read from the file `model`, with the test set when the dataset is
    /// at hand and the loss curves and training facts when the model's folder holds its run's `metrics.jsonl`.
    pub fn new(vae: Vae, data: Option<vae_data::Data>, model: &Path) -> anyhow::Result<Self> {
        let cfg = vae.config().clone();
        let shape = picture_shape(&cfg, model)?;
        let (order, kl_per_dim, inactive) = usage(&vae, data.as_ref())?;
        let label_names: Vec<String> = data.as_ref().map_or(Vec::new(), |d| d.class_names.clone());
        let classes = match (cfg.label_dim(), label_names.is_empty()) {
            (0, _) => Vec::new(),
            (_, false) => label_names.clone(),
            (n, true) => (0..n).map(|c| c.to_string()).collect(),
        };
        let plane = latent::has_plane(&cfg);
        let manifold_png = match plane {
            true => Some(images::manifold_png(&vae, PLANE_GRID, shape)?),
            false => None,
        };
        let history = run_history(model)?;
        let curves_png = match (!history.is_empty()).then(|| charts::curves_png(&history)) {
            Some(Err(e)) => {
                tracing::warn!("{}: no loss curves ({e:#})", model.display());
                None
            }
            drawn => drawn.transpose()?,
        };
        let info = ModelInfo {
            dataset: vae.dataset().map(str::to_string),
            shape: ImageShape::from(shape),
            pad: inputs::ensure_drawable(&cfg).is_ok(),
            config: cfg,
            order,
            kl_per_dim,
            inactive,
            classes,
            plane,
            curves: curves_png.is_some(),
            test_images: data.as_ref().map_or(0, |d| d.test_images.dims()[0]),
            training: TrainingFacts::new(model, &history),
        };
        Ok(Self {
            vae,
            info,
            shape,
            test: data,
            manifold_png,
            curves_png,
            label_names,
            draws: AtomicU64::new(1),
        })
    }

    /// `images [n, input_dim]` as one row of tiles of the model's shape (grey or RGB), the PNG answer of the image
    /// routes.
    fn png_row(&self, images: &Tensor, n: usize) -> Result<Response, ApiError> {
        let bytes = images::grid_png(images, 1, n, self.shape)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(png(bytes))
    }

    /// Checks a z from a request: the model's length, finite, within ±[`MAX_ABS_Z`].
    fn z(&self, z: &[f64]) -> Result<Tensor, ApiError> {
        let d = self.info.config.latent_dim;
        if z.len() != d {
            return Err(ApiError::bad(format!(
                "z has {} values; this model's latent space has {d}",
                z.len()
            )));
        }
        if let Some(v) = z.iter().find(|v| !v.is_finite() || v.abs() > MAX_ABS_Z) {
            return Err(ApiError::bad(format!(
                "z holds {v}; each value must be finite and within ±{MAX_ABS_Z}"
            )));
        }
        let z: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(z, (1, d), &Device::Cpu)?)
    }

    /// The labels of `n` rows for a conditional model (which needs `label`); `None` for a plain model (which
    /// refuses one rather than ignore it).
    fn labels(&self, label: Option<u32>, n: usize) -> Result<Option<Tensor>, ApiError> {
        let classes = self.info.config.label_dim();
        match (classes, label) {
            (0, None) => Ok(None),
            (0, Some(c)) => Err(ApiError::bad(format!(
                "label {c}: this model is not conditional and takes no label"
            ))),
            (_, None) => Err(ApiError::bad(format!(
                "this model is conditional: give a label 0-{}",
                classes - 1
            ))),
            (_, Some(c)) => {
                inputs::check_class(&self.info.config, c)
                    .map_err(|e| ApiError::bad(format!("label {c}: {e}")))?;
                Ok(Some(Tensor::full(c, n, &Device::Cpu)?))
            }
        }
    }

    /// Checks an image in the model's input layout: `input_dim` values in [0, 1].
    fn image(&self, what: &str, px: &[f64]) -> Result<Tensor, ApiError> {
        let n = self.info.config.input_dim;
        if px.len() != n {
            return Err(ApiError::bad(format!(
                "{what} has {} values; the model's images have {n}",
                px.len()
            )));
        }
        if px.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(ApiError::bad(format!(
                "{what}: every value must be in [0, 1]"
            )));
        }
        let px: Vec<f32> = px.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(px, (1, n), &Device::Cpu)?)
    }
}

/// The latent dimensions most used first (by average KL on `test`; in index order without it), each one's average KL
/// (empty without it), and whether each is inactive.
fn usage(
    vae: &Vae,
    test: Option<&vae_data::Data>,
) -> anyhow::Result<(Vec<usize>, Vec<f64>, Vec<bool>)> {
    let d = vae.config().latent_dim;
    let (mut order, mut kl_per_dim) = ((0..d).collect::<Vec<_>>(), Vec::new());
    if let Some(data) = test {
        let binarize = vae_data::Binarize::None;
        let test = eval::test_batcher(data, binarize, None, &Device::Cpu)?;
        (order, kl_per_dim) = latent::usage_order(vae, &test)?;
    }
    let inactive = (0..d)
        .map(|i| kl_per_dim.get(i).is_some_and(|&k| k < latent::INACTIVE_KL))
        .collect();
    Ok((order, kl_per_dim, inactive))
}

/// The epochs of the run whose folder holds `model`, from its `metrics.jsonl` (none when there is no such file).
fn run_history(model: &Path) -> anyhow::Result<Vec<metrics::EpochMetrics>> {
    let file = model.with_file_name(rundir::files::METRICS);
    match file.is_file() {
        true => metrics::read_metrics(&file),
        false => Ok(Vec::new()),
    }
}

/// A JSON body, read up to [`MAX_BODY_BYTES`], whose refusal is one line of JSON like every other error.
pub struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {MAX_BODY_BYTES} bytes"),
                )
            })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad(format!("bad JSON body: {e}")))
    }
}

/// Runs `f` on the blocking pool: model calls do not stall the server's other requests.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}"),
        )
    })?
}

fn png(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Bytes::from(bytes),
    )
        .into_response()
}

fn row(t: &Tensor) -> Result<Vec<f32>, ApiError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// `GET /api/model`.
pub(super) async fn model(State(ex): State<Arc<Explorer>>) -> Json<ModelInfo> {
    Json(ex.info.clone())
}

/// The body of `/api/decode`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecodeRequest {
    z: Vec<f64>,
    label: Option<u32>,
}

/// `POST /api/decode {z, label?}`: the decoded image as a PNG.
pub(super) async fn decode(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<DecodeRequest>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let (z, labels) = (ex.z(&req.z)?, ex.labels(req.label, 1)?);
        let probs = ex.vae.decode_probs(&z, labels.as_ref())?;
        ex.png_row(&probs, 1)
    })
    .await
}

/// The body of `/api/encode`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EncodeRequest {
    width: usize,
    height: usize,
    pixels: Vec<f64>,
    label: Option<u32>,
}

/// The answer of `/api/encode`: the input as the model sees it, its posterior, and the decoding of the mean.
#[derive(Serialize)]
pub(super) struct Encoded {
    input: Vec<f32>,
    mu: Vec<f32>,
    logvar: Vec<f32>,
    recon: Vec<f32>,
}

/// `POST /api/encode {width, height, pixels, label?}`: a drawing (grey levels in [0, 1], row-major) made into the
/// model's input as `generate --like` makes a picture file (see [`inputs::picture_values`]), and what the model
/// makes of it.
pub(super) async fn encode(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<EncodeRequest>,
) -> Result<Json<Encoded>, ApiError> {
    let (w, h) = (req.width, req.height);
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE || req.pixels.len() != w * h {
        return Err(ApiError::bad(format!(
            "a drawing is width × height grey levels, each side 1-{MAX_SIDE}: got {w} × {h} and {} values",
            req.pixels.len()
        )));
    }
    if req.pixels.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(ApiError::bad("pixels: every value must be in [0, 1]"));
    }
    inputs::ensure_drawable(&ex.info.config).map_err(|e| ApiError::bad(e.to_string()))?;
    blocking(move || {
        let grey = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([(req.pixels[y as usize * w + x as usize] * 255.0).round() as u8])
        });
        let file = DrawingFile::write(&grey)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let input = file.input(&ex.info.config).map_err(ApiError::bad)?;
        let x = Tensor::from_vec(input.clone(), (1, input.len()), &Device::Cpu)?;
        let labels = ex.labels(req.label, 1)?;
        let (mu, logvar) = ex.vae.encode(&x, labels.as_ref())?;
        let recon = ex.vae.decode_probs(&mu, labels.as_ref())?;
        Ok(Json(Encoded {
            input,
            mu: row(&mu)?,
            logvar: row(&logvar)?,
            recon: row(&recon)?,
        }))
    })
    .await
}

/// A drawing as a grey PNG in the temporary folder, for as long as [`inputs::picture_values`] reads it (the
/// preprocessing of `generate --like` reads files); removed when dropped.
struct DrawingFile(PathBuf);

impl DrawingFile {
    /// Writes `grey` to a new file of its own (never one already there).
    fn write(grey: &image::GrayImage) -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "vae-explorer-{}-{}.png",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let mut png = Vec::new();
        grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| format!("the drawing: {e}"))?;
        let mut file = std::fs::File::create_new(&path)
            .map_err(|e| format!("{}: cannot write the drawing ({e})", path.display()))?;
        let written = Self(path);
        std::io::Write::write_all(&mut file, &png)
            .map_err(|e| format!("{}: cannot write the drawing ({e})", written.0.display()))?;
        Ok(written)
    }

    /// The drawing as the input of a model of `cfg`; an error names "the drawing", not the temporary file.
    fn input(&self, cfg: &VaeConfig) -> Result<Vec<f32>, String> {
        inputs::picture_values(&self.0, cfg)
            .map_err(|e| format!("{e:#}").replace(&self.0.display().to_string(), "the drawing"))
    }
}

impl Drop for DrawingFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The body of `/api/samples`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SamplesRequest {
    input: Vec<f64>,
    n: usize,
    label: Option<u32>,
    temperature: Option<f64>,
}

/// `POST /api/samples {input, n, label?, temperature?}`: "more like this", `n` decoded posterior samples of an
/// input (as `/api/encode` returned it or `/api/test/{index}` gave it), as a PNG row.
pub(super) async fn samples(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<SamplesRequest>,
) -> Result<Response, ApiError> {
    let t = req.temperature.unwrap_or(1.0);
    if !(1..=MAX_IMAGES).contains(&req.n) || !(0.0..=10.0).contains(&t) {
        return Err(ApiError::bad(format!(
            "n must be 1-{MAX_IMAGES} and temperature in [0, 10]"
        )));
    }
    blocking(move || {
        let (x, labels) = (ex.image("input", &req.input)?, ex.labels(req.label, 1)?);
        let mut rng = VaeRng::seed_from(ex.draws.fetch_add(1, Ordering::Relaxed));
        let images = latent::posterior_samples(&ex.vae, &x, labels.as_ref(), req.n, t, &mut rng)?;
        ex.png_row(&images, req.n)
    })
    .await
}

/// The body of `/api/interpolate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InterpolateRequest {
    from: Vec<f64>,
    to: Vec<f64>,
    steps: usize,
    labels: Option<[u32; 2]>,
    slerp: Option<bool>,
}

/// `POST /api/interpolate {from, to, steps, labels?, slerp?}`: decoded images along the path between two inputs'
/// posterior means, as a PNG row.
pub(super) async fn interpolate(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<InterpolateRequest>,
) -> Result<Response, ApiError> {
    if !(2..=50).contains(&req.steps) {
        return Err(ApiError::bad("steps must be 2-50"));
    }
    blocking(move || {
        let (a, b) = (ex.image("from", &req.from)?, ex.image("to", &req.to)?);
        let labels = match req.labels {
            Some([la, lb]) => match (ex.labels(Some(la), 1)?, ex.labels(Some(lb), 1)?) {
                (Some(la), Some(lb)) => Some(Tensor::cat(&[la, lb], 0)?),
                _ => None,
            },
            None => ex.labels(None, 2)?,
        };
        let steps = req.steps;
        let path = latent::interpolate(
            &ex.vae,
            (&a, &b),
            labels.as_ref(),
            steps,
            req.slerp.unwrap_or(false),
        )?;
        ex.png_row(&path, steps)
    })
    .await
}

/// The answer of `/api/test/{index}`.
#[derive(Serialize)]
pub(super) struct TestImage {
    pixels: Vec<f32>,
    label: u32,
}

/// `GET /api/test/{index}`: a test image and its label.
pub(super) async fn test_image(
    State(ex): State<Arc<Explorer>>,
    index: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<TestImage>, ApiError> {
    // A path that does not decode (`%ff%fe` is no UTF-8) is refused in JSON like the rest, not in axum's plain text.
    let UrlPath(index) =
        index.map_err(|_| ApiError::bad("the index is not a valid UTF-8 path segment"))?;
    let Some(data) = &ex.test else {
        return Err(ApiError::bad(
            "the server has no test set (start it with the dataset at hand)",
        ));
    };
    // Digits only, without a sign or leading zeros: one index has one spelling.
    let canonical =
        index.bytes().all(|b| b.is_ascii_digit()) && (index == "0" || !index.starts_with('0'));
    let i: usize = index
        .parse()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| ApiError::bad(format!("{index:?} is not an index")))?;
    inputs::check_test_index(data, i).map_err(|e| ApiError::bad(format!("index {i}: {e}")))?;
    let pixels = row(&data.test_pixels(i, 1, &candle_core::Device::Cpu)?)?;
    let label = data
        .test_labels
        .narrow(0, i, 1)?
        .to_dtype(candle_core::DType::U32)?
        .to_vec1::<u32>()?[0];
    Ok(Json(TestImage { pixels, label }))
}

/// The answer of `/api/plane`: how the manifold of `/api/plane.png` is laid out, and the posterior means of test
/// images.
#[derive(Serialize)]
pub(super) struct Plane {
    /// Tiles per side of the manifold: tile (row i, column j) decodes z = (Φ⁻¹((j + ½)/grid), Φ⁻¹((i + ½)/grid)).
    grid: usize,
    /// `[z1, z2, label]` of the first test images.
    points: Vec<(f32, f32, u32)>,
    /// The labels' class names, for the dots' legend.
    names: Vec<String>,
}

/// The refusal of the plane's routes for a model without one.
fn no_plane() -> ApiError {
    ApiError::bad("the latent plane needs a plain model with a 2-D latent space")
}

/// `GET /api/plane.png`: the decoded manifold of a model with a 2-D latent space.
pub(super) async fn plane_png(State(ex): State<Arc<Explorer>>) -> Result<Response, ApiError> {
    ex.manifold_png.clone().map(png).ok_or_else(no_plane)
}

/// `GET /api/plane`: the layout of the manifold and where the test images' posterior means fall.
pub(super) async fn plane(State(ex): State<Arc<Explorer>>) -> Result<Json<Plane>, ApiError> {
    if ex.manifold_png.is_none() {
        return Err(no_plane());
    }
    let ex2 = ex.clone();
    let points = blocking(move || {
        let Some(data) = &ex2.test else {
            return Ok(Vec::new());
        };
        let n = PLANE_POINTS.min(ex2.info.test_images);
        let (mu, _) = ex2
            .vae
            .encode(&data.test_pixels(0, n, ex2.vae.device())?, None)?;
        let labels = data
            .test_labels
            .narrow(0, 0, n)?
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?;
        let mu = mu.to_vec2::<f32>()?;
        Ok(mu
            .iter()
            .zip(labels)
            .map(|(m, l)| (m[0], m[1], l))
            .collect())
    })
    .await?;
    Ok(Json(Plane {
        grid: PLANE_GRID,
        points,
        names: ex.label_names.clone(),
    }))
}

/// `GET /api/curves.png`: the run's loss curves, when the server was given the run directory.
pub(super) async fn curves(State(ex): State<Arc<Explorer>>) -> Result<Response, ApiError> {
    match &ex.curves_png {
        Some(bytes) => Ok(png(bytes.clone())),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no loss curves: the model's run directory has no metrics.jsonl".into(),
        )),
    }
}
