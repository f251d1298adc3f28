//! `vae-train serve`: the explorer page on a local port.

use anyhow::Result;
use vae_train::{inputs, DeviceKind};

use super::args::ServeArgs;
use super::model::load_model;

/// `vae-train serve`.
pub(super) fn run(a: ServeArgs) -> Result<()> {
    let vae = load_model(&a.model, DeviceKind::Cpu)?;
    // The test set orders the sliders and feeds the test-image picker; the page works without it.
    let data = match vae_train::data::model_source(&vae, a.dataset.as_ref(), &a.model) {
        Ok(source) => {
            match vae_train::data::load_for_model(&vae, &source, &a.data.data_dir(), &a.model) {
                Ok(data) => {
                    inputs::ensure_fits(&vae, &data, &source, &a.model)?;
                    Some(data)
                }
                Err(e) => {
                    tracing::warn!("no test set ({e:#}): sliders in index order, no test images");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!("{e:#}: sliders in index order, no test images");
            None
        }
    };
    if !a.bind.ip().is_loopback() {
        tracing::warn!(
            "listening on {}: anyone who can reach this machine can use the explorer",
            a.bind
        );
    }
    let limits = vae_train::serve::Limits {
        max_connections: a.max_connections as usize,
        timeout: std::time::Duration::from_secs(a.timeout.into()),
        ..Default::default()
    };
    vae_train::serve::serve(vae, data, &a.model, (a.bind, limits), |addr| {
        println!("http://{addr}/");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
}
