//! `vae-train train`.

use std::path::Path;

use anyhow::Result;
use vae_data::DownloadOptions;
use vae_train::{open_device, train, RunConfig, TrainOptions, TrainSummary};

use super::args::TrainArgs;

/// `vae-train train`.
pub(super) fn run(a: TrainArgs) -> Result<()> {
    let (preset, origin) = RunConfig::load_preset(&a.preset, &a.models_dir)?;
    let cfg = preset.apply(&a.overrides)?;
    let name = Path::new(&a.preset)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(a.preset.clone());
    let out_dir = a.out.unwrap_or_else(|| Path::new("runs").join(&name));
    let data_dir = a.common.data_dir();
    let device = open_device(a.common.device.device)?;
    if let (true, Some(d)) = (a.download, cfg.dataset.builtin()) {
        vae_data::download(d, &DownloadOptions::new(&data_dir))?;
    }
    tracing::info!(preset = %origin.display(), out = %out_dir.display(), "config {}", serde_json::to_string(&cfg)?);
    let opts = TrainOptions {
        data_dir,
        out_dir: out_dir.clone(),
        device,
        resume: a.resume,
        overwrite: a.overwrite,
        progress: true,
        interrupt: vae_train::Interrupt::on_signals()?,
        strict: a.strict,
        stop_after_steps: None,
    };
    let report = train(&cfg, &opts)?;
    tracing::info!(
        "the test −ELBO of each epoch draws its own ε for each test image; `vae-train eval` draws from its --seed, so \
         the two differ by that noise (about a tenth of a nat on the whole test set)"
    );
    // One summary line on stdout, for scripts.
    println!(
        "{}",
        serde_json::to_string(&TrainSummary::new(&out_dir, report))?
    );
    Ok(())
}
