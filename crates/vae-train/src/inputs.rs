//! What a model can be given, checked once for the CLI and the explorer alike: a dataset whose images fit its
//! input, class labels in its range, test images by index, and picture files made into its input.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use vae_data::{Binarize, Dataset, MnistData};
use vae_model::{Vae, VaeConfig};

/// The side of a model's square images, or an error for an input that is not a square.
pub fn image_side(cfg: &VaeConfig) -> Result<usize> {
    let d = cfg.input_dim;
    let s = (d as f64).sqrt().round() as usize;
    ensure!(s * s == d, "input_dim {d} is not a square image");
    Ok(s)
}

/// `flag` if given, else the dataset the model's metadata names; `path` names the model in the error.
pub fn model_dataset(vae: &Vae, flag: Option<Dataset>, path: &Path) -> Result<Dataset> {
    match flag {
        Some(d) => Ok(d),
        None => vae.dataset().and_then(|d| d.parse().ok()).with_context(|| {
            format!(
                "{}: no known dataset in the metadata; pass --dataset",
                path.display()
            )
        }),
    }
}

/// `flag` if given, else the binarisation the model records (none for files without it).
pub fn recorded_binarize(vae: &Vae, flag: Option<Binarize>, path: &Path) -> Result<Binarize> {
    Ok(match (flag, vae.binarize()) {
        (Some(b), _) => b,
        (None, Some(name)) => name
            .parse()
            .with_context(|| format!("{}: metadata `binarize`", path.display()))?,
        (None, None) => Binarize::None,
    })
}

/// The model's input must be the dataset's images, and a conditional model's classes the dataset's.
pub fn ensure_fits(vae: &Vae, data: &MnistData, dataset: Dataset, path: &Path) -> Result<()> {
    let pixels = data.rows * data.cols;
    if pixels != vae.config().input_dim {
        bail!(
            "{}: model input_dim {} does not fit {dataset} images of {pixels} pixels",
            path.display(),
            vae.config().input_dim
        );
    }
    let (classes, labels) = (vae.config().label_dim(), dataset.class_names().len());
    if classes != 0 && classes != labels {
        bail!(
            "{}: a conditional model of {classes} classes does not fit {dataset}'s {labels}",
            path.display()
        );
    }
    Ok(())
}

/// Checks `class` against a conditional model's classes; the error reads after the flag or field that gave it.
pub fn check_class(cfg: &VaeConfig, class: u32) -> Result<()> {
    let classes = cfg.label_dim();
    ensure!(
        (class as usize) < classes,
        "the model's classes are 0-{}",
        classes.saturating_sub(1)
    );
    Ok(())
}

/// Checks a test-set index; the error reads after the flag or field that gave it.
pub fn check_test_index(data: &MnistData, index: usize) -> Result<()> {
    let n = data.test_images.dim(0)?;
    ensure!(
        index < n,
        "the test set has {n} images (0-{})",
        n.saturating_sub(1)
    );
    Ok(())
}

/// Test image `index` as `[1, input_dim]` on `device`, with its label `[1]`.
pub fn test_image(data: &MnistData, index: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    check_test_index(data, index)?;
    let labels = data.test_labels.narrow(0, index, 1)?.to_device(device)?;
    Ok((data.test_pixels(index, 1, device)?, labels))
}

/// A picture file made into the model's input, `[1, 784]`. A file has no label, so a conditional model, which
/// needs one, refuses it.
pub fn image_file(path: &Path, vae: &Vae) -> Result<Tensor> {
    ensure_digitizable(vae.config()).with_context(|| path.display().to_string())?;
    ensure!(
        !vae.config().conditional,
        "{}: a conditional model needs each image's label, which a file lacks; give a test-set digit or index",
        path.display()
    );
    crate::outputs::check_input(path, "a picture")?;
    let px = crate::digitize::load(path)?;
    Ok(Tensor::from_vec(px, (1, 784), vae.device())?)
}

/// Pictures are made into 28×28 inputs (see [`crate::digitize`]): the model must take those.
pub fn ensure_digitizable(cfg: &VaeConfig) -> Result<()> {
    ensure!(
        cfg.input_dim == 784,
        "pictures are made into 28×28 inputs, and this model takes {}",
        cfg.input_dim
    );
    Ok(())
}
