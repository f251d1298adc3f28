//! The JSON API of the explorer: what the server knows of its model, and the handlers that use it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use candle_core::{Device, Tensor};
use serde::{de::DeserializeOwned, Serialize};
use vae_model::{Vae, VaeConfig};

use super::ApiError;
use crate::{charts, eval, images, inputs, latent, metrics, rundir};

/// The largest request body accepted: a 512×512 drawing as JSON numbers fits.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Test images whose posterior means the latent plane shows.
const PLANE_POINTS: usize = 2000;
/// Tiles per side of the latent plane's manifold.
const PLANE_GRID: usize = 20;

/// The model and what the page shows of it, computed once.
pub struct Explorer {
    /// The model, and its calls.
    calls: vae_web::Explorer,
    info: ModelInfo,
    test: Option<vae_data::Data>,
    manifold_png: Option<Vec<u8>>,
    curves_png: Option<Vec<u8>>,
    /// The dataset's class names, which label the plane's dots (empty without the test set).
    label_names: Vec<String>,
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
    pub(super) test_images: usize,
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
        let calls =
            vae_web::Explorer::new(vae).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        Ok(Self {
            calls,
            info,
            test: data,
            manifold_png,
            curves_png,
            label_names,
        })
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

/// `POST /api/decode {z, label?}`: the decoded image as a PNG.
pub(super) async fn decode(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<vae_web::DecodeRequest>,
) -> Result<Response, ApiError> {
    blocking(move || Ok(png(ex.calls.decode(req)?))).await
}

/// `POST /api/encode {width, height, pixels, label?}`: a drawing (grey levels in [0, 1], row-major) made into the
/// model's input as `generate --like` makes a picture file, and what the model makes of it.
pub(super) async fn encode(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<vae_web::EncodeRequest>,
) -> Result<Json<vae_web::Encoded>, ApiError> {
    blocking(move || Ok(Json(ex.calls.encode(req)?))).await
}

/// `POST /api/samples {input, n, label?, temperature?}`: "more like this", `n` decoded posterior samples of an
/// input (as `/api/encode` returned it or `/api/test/{index}` gave it), as a PNG row.
pub(super) async fn samples(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<vae_web::SamplesRequest>,
) -> Result<Response, ApiError> {
    blocking(move || Ok(png(ex.calls.samples(req)?))).await
}

/// `POST /api/interpolate {from, to, steps, labels?, slerp?}`: decoded images along the path between two inputs'
/// posterior means, as a PNG row.
pub(super) async fn interpolate(
    State(ex): State<Arc<Explorer>>,
    ApiJson(req): ApiJson<vae_web::InterpolateRequest>,
) -> Result<Response, ApiError> {
    blocking(move || Ok(png(ex.calls.interpolate(req)?))).await
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
    Ok(Json(test_image_of(data, i)?))
}

/// Test image `i` of `data`, once checked.
pub(super) fn test_image_of(data: &vae_data::Data, i: usize) -> Result<TestImage, ApiError> {
    let pixels = row(&data.test_pixels(i, 1, &candle_core::Device::Cpu)?)?;
    let label = data
        .test_labels
        .narrow(0, i, 1)?
        .to_dtype(candle_core::DType::U32)?
        .to_vec1::<u32>()?[0];
    Ok(TestImage { pixels, label })
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
    blocking(move || ex2.plane_layout()).await.map(Json)
}

impl Explorer {
    /// The answer of `/api/plane`.
    pub(super) fn plane_layout(&self) -> Result<Plane, ApiError> {
        let points = match &self.test {
            None => Vec::new(),
            Some(data) => {
                let n = PLANE_POINTS.min(self.info.test_images);
                let (mu, _) = self
                    .calls
                    .vae()
                    .encode(&data.test_pixels(0, n, &Device::Cpu)?, None)?;
                let labels = data
                    .test_labels
                    .narrow(0, 0, n)?
                    .to_dtype(candle_core::DType::U32)?
                    .to_vec1::<u32>()?;
                let mu = mu.to_vec2::<f32>()?;
                mu.iter()
                    .zip(labels)
                    .map(|(m, l)| (m[0], m[1], l))
                    .collect()
            }
        };
        Ok(Plane {
            grid: PLANE_GRID,
            points,
            names: self.label_names.clone(),
        })
    }

    /// What `/api/model` answers.
    pub(super) fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The test set, when the explorer has it.
    pub(super) fn test(&self) -> Option<&vae_data::Data> {
        self.test.as_ref()
    }

    /// `/api/plane.png` and `/api/curves.png`, where the model has them.
    pub(super) fn pngs(&self) -> [Option<&[u8]>; 2] {
        [self.manifold_png.as_deref(), self.curves_png.as_deref()]
    }
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
