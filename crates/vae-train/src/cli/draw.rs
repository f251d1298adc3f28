//! The drawing commands: sample, generate, interpolate, traverse, reconstruct and encode.

use std::path::Path;

use anyhow::{Context, Result};
use vae_model::{Vae, VaeRng};
use vae_train::outputs::check_output;
use vae_train::{images, inputs, latent, npy};

use super::args::{
    EncodeArgs, GenerateArgs, InterpolateArgs, ReconstructArgs, SampleArgs, TraverseArgs,
};
use super::model::{load_model, model_and_data, test_set};

pub(super) fn sample(a: SampleArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    check_output(&a.out, "--out", &["png", "npy"], a.replace.force)?;
    let vae = load_model(&a.model, a.device.device)?;
    let classes = vae.config().label_dim();
    ensure_samples_fit(&vae, a.n.max(classes))?;
    let mut rng = VaeRng::seed_from(a.draw.seed);
    let (t, px) = (a.temperature, a.draw.pixels());
    let images = match (a.digit, classes) {
        (Some(d), 0) => anyhow::bail!(
            "--digit {d}: {} is not a conditional model (train one with `conditional = true`, e.g. the mnist-cvae preset)",
            a.model.display()
        ),
        (Some(d), _) => {
            inputs::check_class(vae.config(), d).with_context(|| format!("--digit {d}"))?;
            let labels = candle_core::Tensor::full(d, a.n, vae.device())?;
            latent::prior_samples(&vae, a.n, Some(&labels), t, px, &mut rng)?
        }
        (None, 0) => latent::prior_samples(&vae, a.n, None, t, px, &mut rng)?,
        (None, _) => {
            let per_class = a.n.div_ceil(classes);
            let labels = latent::class_rows(classes, per_class, vae.device())?;
            let images = latent::prior_samples(&vae, labels.dim(0)?, Some(&labels), t, px, &mut rng)?;
            let dims = inputs::npy_dims(vae.config())?;
            images::write_images(&a.out, &images, classes, per_class, &dims)?;
            tracing::info!("wrote {}: a row per class, 0 to {}", a.out.display(), classes - 1);
            return Ok(());
        }
    };
    write_square(&a.out, &images, &vae)
}

pub(super) fn generate(a: GenerateArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    check_output(&a.out, "--out", &["png", "npy"], a.replace.force)?;
    let (vae, data, _) = model_and_data(&a.on)?;
    ensure_samples_fit(&vae, a.n)?;
    let (examples, labels) = match like_class(&a.like, &data) {
        Some(digit) => {
            let classes = data.class_names.len();
            anyhow::ensure!(
                classes > 0,
                "--like {digit}: the dataset has no classes; give an image file"
            );
            anyhow::ensure!(
                (0..classes as i64).contains(&digit),
                "--like {digit}: the classes are 0-{} (or a class name: {}; or an image file)",
                classes.saturating_sub(1),
                data.class_names.join(", ")
            );
            let labels = data
                .test_labels
                .to_dtype(candle_core::DType::U32)?
                .to_vec1::<u32>()?;
            let of_digit: Vec<u32> = (0..labels.len() as u32)
                .filter(|&i| labels[i as usize] == digit as u32)
                .take(a.n)
                .collect();
            anyhow::ensure!(
                !of_digit.is_empty(),
                "--like {digit}: no test image has that label"
            );
            let idx = candle_core::Tensor::new(of_digit.as_slice(), &candle_core::Device::Cpu)?;
            let take = |t: &candle_core::Tensor| t.index_select(&idx, 0)?.to_device(vae.device());
            let images = vae_data::unit_pixels(&take(&data.test_images)?)?;
            (images, Some(take(&data.test_labels)?))
        }
        None if !Path::new(&a.like).exists() => anyhow::bail!(
            "--like {}: neither a class ({}) nor a picture file",
            a.like,
            data.class_names.join(", ")
        ),
        None => (inputs::image_file(Path::new(&a.like), &vae)?, None),
    };
    let mut rng = VaeRng::seed_from(a.draw.seed);
    let t = a.temperature;
    let (z, labels) = latent::posterior_z(&vae, &examples, labels.as_ref(), a.n, t, &mut rng)?;
    let images = latent::decode_pixels(&vae, &z, labels.as_ref(), a.draw.pixels(), &mut rng)?;
    write_square(&a.out, &images, &vae)
}

pub(super) fn interpolate(a: InterpolateArgs) -> Result<()> {
    check_output(&a.out, "--out", &["png", "npy"], a.replace.force)?;
    let (vae, data, _) = model_and_data(&a.on)?;
    let (from, from_label) = example(&data, &a.from, "--from", &vae)?;
    let (to, to_label) = example(&data, &a.to, "--to", &vae)?;
    // Both ends come with labels whenever the model is conditional (image files are refused there).
    let labels = match (from_label, to_label) {
        (Some(a), Some(b)) => Some(candle_core::Tensor::cat(&[a, b], 0)?),
        _ => None,
    };
    let steps = a.steps as usize;
    let images = latent::interpolate(&vae, (&from, &to), labels.as_ref(), steps, a.slerp)?;
    images::write_images(&a.out, &images, 1, steps, &inputs::npy_dims(vae.config())?)?;
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

pub(super) fn traverse(a: TraverseArgs) -> Result<()> {
    check_output(&a.out, "--out", &["png", "npy"], a.replace.force)?;
    let (vae, data, _) = model_and_data(&a.on)?;
    let (x, label) = inputs::test_image(&data, a.index, vae.device())
        .with_context(|| format!("--index {}", a.index))?;
    let test = test_set(&vae, &data, &a.on.model)?;
    let (mut order, kl_per_dim) = latent::usage_order(&vae, &test)?;
    order.truncate(a.dims.map_or(order.len(), |n| n as usize));
    let steps = a.steps as usize;
    let images = latent::traverse(&vae, &x, Some(&label), &order, a.range, steps)?;
    let kl: Vec<f64> = order.iter().map(|&d| kl_per_dim[d]).collect();
    match a.out.extension().is_some_and(|e| e == "npy") {
        true => images::write_images(
            &a.out,
            &images,
            order.len(),
            steps,
            &inputs::npy_dims(vae.config())?,
        )?,
        false => {
            let shape = inputs::image_shape(vae.config())?;
            let grid = images::grid_png(&images, order.len(), steps, shape)?;
            let names: Vec<String> = (order.iter().zip(&kl))
                .map(|(d, k)| format!("z{d}  KL {k:.2}"))
                .collect();
            images::write_png(&a.out, &vae_train::charts::label_rows(&grid, &names)?)?;
        }
    }
    let inactive: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&d| kl_per_dim[d] < latent::INACTIVE_KL)
        .collect();
    if !inactive.is_empty() {
        tracing::info!(
            "{} of the {} dimensions shown are inactive (average KL < {} nats), the last rows: {inactive:?}",
            inactive.len(),
            order.len(),
            latent::INACTIVE_KL
        );
    }
    // The dimensions in row order, each row's average KL, and the inactive ones.
    println!(
        "{}",
        serde_json::json!({ "out": a.out.display().to_string(), "dims": order, "kl": kl, "inactive": inactive })
    );
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

pub(super) fn reconstruct(a: ReconstructArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    check_output(&a.out, "--out", &["png", "npy"], a.replace.force)?;
    let (vae, data, _) = model_and_data(&a.on)?;
    ensure_test_images(&data, a.n)?;
    let originals = data.first_test_images(a.n, vae.device())?;
    let labels = data.test_labels.narrow(0, 0, originals.dim(0)?)?;
    let recon = vae.reconstruct(&originals, Some(&labels.to_device(vae.device())?))?;
    match a.out.extension().is_some_and(|e| e == "npy") {
        true => images::write_images(&a.out, &recon, 1, a.n, &inputs::npy_dims(vae.config())?)?,
        false => images::write_reconstructions(
            &a.out,
            &originals,
            &recon,
            inputs::image_shape(vae.config())?,
        )?,
    }
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

pub(super) fn encode(a: EncodeArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    check_output(&a.out, "--out", &["npy"], a.replace.force)?;
    if let Some(path) = &a.inputs_out {
        check_output(path, "--inputs-out", &["npy"], a.replace.force)?;
        vae_train::outputs::check_distinct(&a.out, "--out", path, "--inputs-out")?;
    }
    let (vae, data, _) = model_and_data(&a.on)?;
    ensure_test_images(&data, a.n)?;
    let originals = data.first_test_images(a.n, vae.device())?;
    let labels = data.test_labels.narrow(0, 0, originals.dim(0)?)?;
    let (mu, _) = vae.encode(&originals, Some(&labels.to_device(vae.device())?))?;
    npy::write_npy(&a.out, &mu)?;
    if let Some(path) = &a.inputs_out {
        npy::write_npy(path, &originals)?;
    }
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

/// `images` in a near-square grid (or as `.npy`), by the extension of `out`.
fn write_square(out: &Path, images: &candle_core::Tensor, vae: &Vae) -> Result<()> {
    let n = images.dim(0)?;
    let cols = grid_columns(n);
    images::write_images(
        out,
        images,
        n.div_ceil(cols),
        cols,
        &inputs::npy_dims(vae.config())?,
    )?;
    tracing::info!("wrote {}", out.display());
    Ok(())
}

/// `--like` as a class: its index, or the index of the class of that name (a folder `6-Shirt` that
/// `export-images` wrote is also `Shirt`); `None` for a picture file.
fn like_class(like: &str, data: &vae_data::Data) -> Option<i64> {
    let named = |(i, n): (usize, &String)| {
        n == like || n.split_once('-') == Some((i.to_string().as_str(), like))
    };
    let by_name = data.class_names.iter().enumerate().position(named);
    by_name.map(|i| i as i64).or_else(|| like.parse().ok())
}

/// Refuses an `--n` past the test set's images, rather than writing fewer without a word.
fn ensure_test_images(data: &vae_data::Data, n: usize) -> Result<()> {
    let have = data.test_images.dim(0)?;
    anyhow::ensure!(n <= have, "--n {n}: the test set has {have} images");
    Ok(())
}

/// The columns of a near-square grid of `n` tiles.
fn grid_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

/// Refuses an `--n` whose samples would not fit in memory: z, logits and probabilities of each, then the picture.
fn ensure_samples_fit(vae: &Vae, n: usize) -> Result<()> {
    let floats = n as u128 * (vae.config().input_dim + vae.config().latent_dim) as u128;
    vae_train::ensure_memory(16 * floats, &format!("--n {n}"))
}

/// `spec` as a test-set index, else as an image file; with the label of a test image.
fn example(
    data: &vae_data::Data,
    spec: &str,
    flag: &str,
    vae: &Vae,
) -> Result<(candle_core::Tensor, Option<candle_core::Tensor>)> {
    match spec.parse::<usize>() {
        Ok(index) => inputs::test_image(data, index, vae.device())
            .with_context(|| format!("{flag} {index}"))
            .map(|(x, y)| (x, Some(y))),
        Err(_) => Ok((inputs::image_file(Path::new(spec), vae)?, None)),
    }
}
