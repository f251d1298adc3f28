//! `vae-train serve`: the latent explorer, one local page and the small JSON API it uses.
//!
//! The page (`assets/explorer/`, plain HTML, CSS and JS compiled into the binary) moves through the latent space,
//! encodes what the user draws, and morphs one digit into another. Every request is validated before it reaches
//! the model; a bad one gets a 4xx whose body is one line of JSON, `{"error": "..."}`. No request names a file:
//! the model, the test set and the run's curves are read once, at start-up. Model calls run on Tokio's blocking
//! pool, so requests are served in parallel.

mod api;
mod conn;
mod site;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use vae_model::Vae;

pub use api::{Explorer, MAX_BODY_BYTES};
pub use conn::Limits;
pub use site::{check_out, export_site, has_module, SITE_TEST_IMAGES};

/// The page and its assets, as they ship in the repository.
const INDEX_HTML: &str = include_str!("../../assets/explorer/index.html");
const EXPLORER_JS: &str = include_str!("../../assets/explorer/explorer.js");
const EXPLORER_CSS: &str = include_str!("../../assets/explorer/explorer.css");

/// A request the API refuses: its status and a one-line reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1 }).to_string();
        (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

impl From<vae_data::DataError> for ApiError {
    fn from(e: vae_data::DataError) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<vae_web::CallError> for ApiError {
    fn from(e: vae_web::CallError) -> Self {
        match e {
            vae_web::CallError::Bad(m) => Self::bad(m),
            vae_web::CallError::Internal(m) => Self(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

impl From<candle_core::Error> for ApiError {
    fn from(e: candle_core::Error) -> Self {
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().replace('\n', " "),
        )
    }
}

/// The routes: the page, its assets, and the API under `/api/`.
pub fn router(explorer: Arc<Explorer>) -> Router {
    let asset = |mime: &'static str, body: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, mime)], body) })
    };
    Router::new()
        .route("/", asset("text/html; charset=utf-8", INDEX_HTML))
        .route(
            "/explorer.js",
            asset("text/javascript; charset=utf-8", EXPLORER_JS),
        )
        .route(
            "/explorer.css",
            asset("text/css; charset=utf-8", EXPLORER_CSS),
        )
        .route(
            "/site.json",
            asset("application/json", r#"{"backend": "server"}"#),
        )
        .route("/api/model", get(api::model))
        .route("/api/decode", post(api::decode))
        .route("/api/encode", post(api::encode))
        .route("/api/samples", post(api::samples))
        .route("/api/interpolate", post(api::interpolate))
        .route("/api/test/{index}", get(api::test_image))
        .route("/api/plane", get(api::plane))
        .route("/api/plane.png", get(api::plane_png))
        .route("/api/curves.png", get(api::curves))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route".into(),
            )
        })
        .with_state(explorer)
}

/// Serves `vae`, read from the file `model`, on `addr` within `limits` until Ctrl-C; `ready` gets the bound address
/// (port 0 picks a free one).
pub fn serve(
    vae: Vae,
    data: Option<vae_data::Data>,
    model: &std::path::Path,
    (addr, limits): (SocketAddr, Limits),
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let explorer = Arc::new(Explorer::new(vae, data, model)?);
    // Model calls run on the blocking pool: as many threads as cores, not Tokio's 512, so that a burst of large
    // requests neither oversubscribes the CPU nor leaves hundreds of threads' allocator arenas holding memory.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cores)
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        ready(listener.local_addr()?);
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        conn::serve(listener, router(explorer), limits, stop).await;
        Ok(())
    })
}
