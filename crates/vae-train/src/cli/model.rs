//! What several commands open and write: the model, its test set, a chart.

use std::path::Path;

use anyhow::Result;
use vae_data::DataSource;
use vae_model::Vae;
use vae_train::{eval, images, inputs, open_device, DeviceKind};

use super::args::ModelOnData;

/// The model at `path`, on the device of `--device`.
pub(super) fn load_model(path: &Path, kind: DeviceKind) -> Result<Vae> {
    vae_train::outputs::check_input(path, "--model")?;
    let device = open_device(kind)?;
    Ok(Vae::load(path, &device)?)
}

/// The model and the test split of the dataset it was trained on (or `--dataset`), checked to fit each other.
pub(super) fn model_and_data(on: &ModelOnData) -> Result<(Vae, vae_data::Data, DataSource)> {
    let vae = load_model(&on.model, on.common.device.device)?;
    let source = vae_train::data::model_source(&vae, on.dataset.as_ref(), &on.model)?;
    let data = vae_train::data::load_for_model(&vae, &source, &on.common.data_dir(), &on.model)?;
    inputs::ensure_fits(&vae, &data, &source, &on.model)?;
    Ok((vae, data, source))
}

/// The whole test set, binarised as the model was trained.
pub(super) fn test_set(vae: &Vae, data: &vae_data::Data, path: &Path) -> Result<vae_data::Batcher> {
    let binarize = inputs::recorded_binarize(vae, None, path)?;
    Ok(eval::test_batcher(data, binarize, None, vae.device())?)
}

/// A chart's PNG at `out`, which must end in `.png`.
pub(super) fn write_chart(out: &Path, png: &[u8]) -> Result<()> {
    anyhow::ensure!(
        out.extension().is_some_and(|e| e == "png"),
        "{}: a chart is written as .png",
        out.display()
    );
    images::write_png(out, png)?;
    tracing::info!("wrote {}", out.display());
    Ok(())
}
