//! What a model can be given, checked once for the CLI and the explorer alike: a dataset whose images fit its
//! input, class labels in its range, test images by index, and picture files made into its input.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use vae_data::{Binarize, Data};
use vae_model::{Vae, VaeConfig};

/// A model's images' `[channels, height, width]`, or an error for a model of vectors, which has no pictures.
pub fn image_shape(cfg: &VaeConfig) -> Result<[usize; 3]> {
    cfg.image_shape().with_context(|| {
        format!(
            "the model's examples are vectors of {} values, not images, so there is no picture to draw",
            cfg.input_dim
        )
    })
}

/// The per-example dimensions of a model's `.npy` outputs: `[H, W]` for the square grey models of the first format
/// (as they always were), else the model's `input_shape` (`[C, H, W]` or `[D]`).
pub fn npy_dims(cfg: &VaeConfig) -> Result<Vec<usize>> {
    match (&cfg.input_shape, cfg.image_shape()) {
        (Some(shape), _) => Ok(shape.clone()),
        (None, Some([_, h, w])) => Ok(vec![h, w]),
        (None, None) => Ok(vec![cfg.input_dim]),
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
pub fn ensure_fits(
    vae: &Vae,
    data: &Data,
    dataset: &vae_data::DataSource,
    path: &Path,
) -> Result<()> {
    let values = data.dim();
    if values != vae.config().input_dim {
        bail!(
            "{}: model input_dim {} does not fit {dataset}'s examples of {values} values ({:?})",
            path.display(),
            vae.config().input_dim,
            data.shape
        );
    }
    let (classes, labels) = (vae.config().label_dim(), data.class_names.len());
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
pub fn check_test_index(data: &Data, index: usize) -> Result<()> {
    let n = data.test_images.dim(0)?;
    ensure!(
        index < n,
        "the test set has {n} images (0-{})",
        n.saturating_sub(1)
    );
    Ok(())
}

/// Test image `index` as `[1, input_dim]` on `device`, with its label `[1]`.
pub fn test_image(data: &Data, index: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    check_test_index(data, index)?;
    let labels = data.test_labels.narrow(0, index, 1)?.to_device(device)?;
    Ok((data.test_pixels(index, 1, device)?, labels))
}

/// A picture file made into the model's input, `[1, input_dim]` (see [`picture_values`]). A file has no label, so a
/// conditional model, which needs one, refuses it.
pub fn image_file(path: &Path, vae: &Vae) -> Result<Tensor> {
    let cfg = vae.config();
    ensure!(
        !cfg.conditional,
        "{}: a conditional model needs each image's label, which a file lacks; give a test-set class or index",
        path.display()
    );
    crate::outputs::check_input(path, "a picture")?;
    let px = picture_values(path, cfg)?;
    Ok(Tensor::from_vec(px, (1, cfg.input_dim), vae.device())?)
}

/// The picture file at `path` as the `input_dim` values a model of `cfg` takes, as `generate --like` and the
/// explorer's drawing pad make it (see [`vae_data::picture_input`]): a 28×28 grey model's of format `/1` is
/// digitised as MNIST was made, any other square image model's read as its folder's pictures were.
pub fn picture_values(path: &Path, cfg: &VaeConfig) -> Result<Vec<f32>> {
    let shape = image_shape(cfg).with_context(|| path.display().to_string())?;
    let in_file = |e: String| anyhow::anyhow!("{}: {e}", path.display());
    let img = vae_data::decode_picture(path).map_err(in_file)?;
    vae_data::picture_input(&img, shape, cfg.input_shape.is_none()).map_err(in_file)
}

/// Drawings on the explorer's pad are grey pictures made into the model's input by [`picture_values`]: the model
/// must take grey, square pictures.
pub fn ensure_drawable(cfg: &VaeConfig) -> Result<()> {
    let shape = image_shape(cfg)?;
    ensure!(
        shape[0] == 1 && shape[1] == shape[2],
        "the drawing pad makes grey, square pictures, and this model takes {shape:?}"
    );
    Ok(())
}
