//! The commands about data and presets: `download`, `export-images` and `preset`.

use anyhow::Result;
use vae_data::{DataSource, Dataset, DownloadOptions, ExportSplit, Source};
use vae_train::RunConfig;

use super::args::{DownloadArgs, ExportImagesArgs, PresetArgs, SplitArg};

/// `vae-train download`.
pub(super) fn download(a: DownloadArgs) -> Result<()> {
    let data_dir = a.data.data_dir();
    let mut opts = DownloadOptions::new(&data_dir);
    opts.source = match a.from {
        Some(dir) => Source::LocalDir(dir),
        None => Source::from_mirror_flag_or_env(a.mirror.as_deref()),
    };
    for d in parse_datasets(&a.dataset)? {
        let report = vae_data::download(d, &opts)?;
        let fetched = report
            .iter()
            .filter(|(_, o)| matches!(o, vae_data::Outcome::Fetched(_)))
            .count();
        tracing::info!(
            "{d}: {} files verified in {} ({fetched} fetched)",
            report.len(),
            vae_data::dataset_dir(&data_dir, d).display()
        );
    }
    Ok(())
}

/// `--dataset`: one dataset, or `all`.
fn parse_datasets(s: &str) -> Result<Vec<Dataset>> {
    if s == "all" {
        return Ok(Dataset::ALL.to_vec());
    }
    Ok(vec![s
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}, or all"))?])
}

/// `vae-train preset`: the preset resolved with any overrides, as the JSON of `config.json`.
pub(super) fn preset(a: PresetArgs) -> Result<()> {
    let (preset, _) = RunConfig::load_preset(&a.name, &a.models_dir)?;
    let preset = preset.apply(&a.overrides)?;
    match a.layers {
        true => print!("{}", preset.model.plan()),
        false => println!("{}", serde_json::to_string(&preset)?),
    }
    Ok(())
}

/// `vae-train export-images`.
pub(super) fn export_images(a: ExportImagesArgs) -> Result<()> {
    vae_data::ensure_empty_folder(&a.out)?;
    let data_dir = a.data.data_dir();
    let data = match &a.dataset {
        DataSource::Builtin(d) => vae_data::load(&data_dir, *d)?,
        DataSource::Folder(p) => {
            let options = vae_data::FolderOptions::default();
            vae_data::load_folder(p, &options, &vae_data::cache_dir(&data_dir), false)?.data
        }
        DataSource::Arrays(p) => {
            let options = vae_data::FolderOptions::default();
            vae_data::load_arrays(p, options.test_fraction, options.seed)?
        }
    };
    let split = match a.split {
        SplitArg::Train => ExportSplit::Train,
        SplitArg::Test => ExportSplit::Test,
        SplitArg::Both => ExportSplit::Both,
    };
    let n = vae_data::export_folder(&data, &a.out, split)?;
    tracing::info!(
        "wrote {n} pictures of {} into {}",
        a.dataset,
        a.out.display()
    );
    Ok(())
}
