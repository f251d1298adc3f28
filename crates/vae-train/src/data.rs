//! The examples a run or a command reads, from any [`DataSource`], and the model config they imply.

use std::path::Path;

use anyhow::{bail, Context, Result};
use vae_data::{Data, DataSource, FolderOptions};
use vae_model::Vae;

use crate::RunConfig;

/// A run's data and its config resolved against it: for a folder or arrays, the examples' shape
/// (`model.input_dim`, `model.input_shape`), a conditional model's classes and every `[data]` field, filled in
/// from what was read.
pub fn load_for_run(cfg: &RunConfig, data_dir: &Path, strict: bool) -> Result<(RunConfig, Data)> {
    let mut cfg = cfg.clone();
    let (data, path) = match &cfg.dataset {
        // MNIST's layout is what a preset's model takes as it is (format /1, no input_shape): same bytes as ever.
        DataSource::Builtin(d) if d.is_idx() => {
            return Ok((cfg.clone(), vae_data::load(data_dir, *d)?))
        }
        DataSource::Builtin(d) => {
            let data = vae_data::load(data_dir, *d)?;
            take_shape(&mut cfg, &data);
            cfg.validate()?;
            return Ok((cfg, data));
        }
        DataSource::Folder(p) => {
            let cache = vae_data::cache_dir(data_dir);
            let read = vae_data::load_folder(p, &folder_options(&cfg), &cache, strict)?;
            cfg.data.image_size = read.options.image_size;
            cfg.data.channels = read.options.channels;
            (read.data, p.clone())
        }
        DataSource::Arrays(p) => {
            let data = vae_data::load_arrays(p, test_fraction(&cfg), cfg.training.seed)?;
            (data, p.clone())
        }
    };
    cfg.data.test_fraction = Some(test_fraction(&cfg));
    take_shape(&mut cfg, &data);
    if cfg.model.conditional {
        let classes = data.class_names.len();
        if classes < 2 {
            bail!(
                "{}: a conditional model needs examples of at least 2 classes (class folders, or y_train and y_test), and this data has {classes}",
                path.display()
            );
        }
        cfg.model.num_classes = Some(classes);
    }
    cfg.validate()?;
    Ok((cfg, data))
}

/// The model's input becomes the examples' shape.
fn take_shape(cfg: &mut RunConfig, data: &Data) {
    cfg.model.input_dim = data.dim();
    cfg.model.input_shape = Some(data.shape.clone());
}

fn test_fraction(cfg: &RunConfig) -> f64 {
    cfg.data
        .test_fraction
        .unwrap_or(FolderOptions::default().test_fraction)
}

/// What a model file records of how its folder was read (its `data` metadata), for [`load_for_model`].
pub fn recorded_options(cfg: &RunConfig) -> Option<String> {
    cfg.dataset
        .builtin()
        .is_none()
        .then(|| serde_json::to_string(&folder_options(cfg)).expect("options serialise"))
}

/// A folder's reading options from a run's config; the split is drawn from the run's seed.
fn folder_options(cfg: &RunConfig) -> FolderOptions {
    FolderOptions {
        image_size: cfg.data.image_size,
        channels: cfg.data.channels,
        test_fraction: test_fraction(cfg),
        seed: cfg.training.seed,
    }
}

/// The dataset a model reads: `flag` if given, else the one its metadata names; `path` names the model.
pub fn model_source(vae: &Vae, flag: Option<&DataSource>, path: &Path) -> Result<DataSource> {
    match flag {
        Some(d) => Ok(d.clone()),
        None => vae.dataset().and_then(|d| d.parse().ok()).with_context(|| {
            format!(
                "{}: no known dataset in the metadata; pass --dataset",
                path.display()
            )
        }),
    }
}

/// The test split of `source` as the model at `path` was trained on it: a built-in dataset's test files, or the
/// folder read with the image size, channels and split its metadata records (else the model's own shape).
pub fn load_for_model(
    vae: &Vae,
    source: &DataSource,
    data_dir: &Path,
    path: &Path,
) -> Result<Data> {
    let mut options: FolderOptions = match vae.data_options() {
        Some(json) => serde_json::from_str(json)
            .with_context(|| format!("{}: metadata `data`", path.display()))?,
        None => FolderOptions::default(),
    };
    let folder = match source {
        DataSource::Builtin(d) => return Ok(vae_data::load_test(data_dir, *d)?),
        DataSource::Arrays(p) => {
            return Ok(vae_data::load_arrays(
                p,
                options.test_fraction,
                options.seed,
            )?)
        }
        DataSource::Folder(p) => p,
    };
    if let Some([c, h, _]) = vae.config().image_shape() {
        options.image_size = options.image_size.or(Some(h));
        options.channels = options.channels.or(Some(c));
    }
    let read = vae_data::load_folder(folder, &options, &vae_data::cache_dir(data_dir), false)?;
    Ok(read.data)
}
