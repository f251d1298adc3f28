//! The chart commands: `scatter` (the test set's posterior means) and `curves` (a run's loss curves).

use anyhow::{Context, Result};
use vae_train::{charts, latent, metrics, rundir};

use super::args::{CurvesArgs, ScatterArgs};
use super::model::{model_and_data, test_set, write_chart};

/// `vae-train scatter`.
pub(super) fn scatter(a: ScatterArgs) -> Result<()> {
    vae_train::outputs::check_output(&a.out, "--out", &["png"], a.replace.force)?;
    let (vae, data, _) = model_and_data(&a.on)?;
    let test = test_set(&vae, &data, &a.on.model)?;
    write_chart(
        &a.out,
        &latent::scatter_figure(&vae, &test, &data.class_names)?,
    )
}

/// `vae-train curves`.
pub(super) fn curves(a: CurvesArgs) -> Result<()> {
    let path = a.run.join(rundir::files::METRICS);
    let history = metrics::read_metrics(&path)?;
    anyhow::ensure!(
        !history.is_empty(),
        "{}: no epochs recorded",
        path.display()
    );
    let out = a.out.unwrap_or_else(|| a.run.join(rundir::files::CURVES));
    vae_train::outputs::check_output(&out, "--out", &["png"], a.replace.force)?;
    let png = charts::curves_png(&history).with_context(|| path.display().to_string())?;
    write_chart(&out, &png)
}
