//! `vae-train serve`, the explorer page on a local port, and `vae-train export-web`, the same page as a static site.

use std::path::Path;

use anyhow::{bail, Context, Result};
use vae_model::Vae;
use vae_train::{inputs, DeviceKind};

use super::args::{DataDir, ExportWebArgs, ServeArgs};
use super::model::load_model;
use vae_data::DataSource;

/// `vae-train serve`.
pub(super) fn run(a: ServeArgs) -> Result<()> {
    let vae = load_model(&a.model, DeviceKind::Cpu)?;
    let data = test_set(&vae, a.dataset.as_ref(), &a.data, &a.model)?
        .inspect_err(|e| tracing::warn!("{e:#}: sliders in index order, no test images"))
        .ok();
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

/// `vae-train export-web`.
pub(super) fn export_web(a: ExportWebArgs) -> Result<()> {
    vae_train::serve::check_out(&a.out, a.overwrite)?;
    if let (Ok(model), Ok(out)) = (a.model.canonicalize(), a.out.canonicalize()) {
        anyhow::ensure!(
            !model.starts_with(&out),
            "{}: the model is inside --out {}, which the site would replace; export elsewhere",
            a.model.display(),
            a.out.display()
        );
    }
    let vae = load_model(&a.model, DeviceKind::Cpu)?;
    let bytes = std::fs::read(&a.model).with_context(|| a.model.display().to_string())?;
    let data = match test_set(&vae, a.dataset.as_ref(), &a.data, &a.model)? {
        Ok(data) => Some(data),
        Err(e) if a.no_test_set => {
            tracing::warn!("{e:#}: sliders in index order, no test images");
            None
        }
        Err(e) => {
            bail!("{e:#}: the site would have no test images (give --no-test-set to publish it so)")
        }
    };
    let explorer = vae_train::serve::Explorer::new(vae, data, &a.model)?;
    let n = vae_train::serve::export_site(&explorer, &bytes, &a.out, a.overwrite)?;
    tracing::info!(
        "wrote {n} files into {}: serve the folder (python3 -m http.server -d {}) and open it",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// The test set, which orders the sliders and feeds the test-image picker, or why there is none (the page works
/// without it); a test set that does not fit the model is an error.
fn test_set(
    vae: &Vae,
    dataset: Option<&DataSource>,
    dir: &DataDir,
    model: &Path,
) -> Result<Result<vae_data::Data>> {
    let source = match vae_train::data::model_source(vae, dataset, model) {
        Ok(source) => source,
        Err(e) => return Ok(Err(e)),
    };
    match vae_train::data::load_for_model(vae, &source, &dir.data_dir(), model) {
        Ok(data) => {
            inputs::ensure_fits(vae, &data, &source, model)?;
            Ok(Ok(data))
        }
        Err(e) => Ok(Err(e.context("no test set"))),
    }
}
