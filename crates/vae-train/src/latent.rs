//! What a trained model is for: more images like a given one, paths between two images, and what each latent
//! dimension does.
//!
//! Every function here takes images as rows `[n, input_dim]` in [0, 1] and returns decoded pixel probabilities in
//! the same layout, so the figures and the `.npy` files show exactly what the decoder gives. `labels` are the class
//! of each image (u32 `[n]`), read by a conditional model only (see [`Vae::label_input`]).

use candle_core::{Result, Tensor};
pub use vae_model::latent::{interpolate, posterior_samples, posterior_z};
use vae_model::{Vae, VaeRng};

/// Average KL below which a latent dimension counts as inactive (unused by the model), in nats.
pub const INACTIVE_KL: f64 = 0.01;

/// What a decoded image shows: the mean of p(x | z) (what every figure shows), or one draw from it
/// (`--sample-pixels`: a Bernoulli decoder's black-and-white pixels, a logistic's 8-bit levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pixels {
    /// The distribution's mean.
    #[default]
    Mean,
    /// One draw from the distribution, by the run's generator.
    Drawn,
}

/// z `[n, latent_dim]` decoded under `labels [n]` (a conditional model's), each image showing `pixels`.
pub fn decode_pixels(
    vae: &Vae,
    z: &Tensor,
    labels: Option<&Tensor>,
    pixels: Pixels,
    rng: &mut VaeRng,
) -> Result<Tensor> {
    match pixels {
        Pixels::Mean => vae.decode_probs(z, labels),
        Pixels::Drawn => vae.decode_sample(z, labels, rng),
    }
}

/// `n` images from the prior with its standard deviation scaled by `temperature`: z ~ N(0, temperature² I)
/// (decoded under `labels [n]`, for a conditional model), each showing `pixels`.
pub fn prior_samples(
    vae: &Vae,
    n: usize,
    labels: Option<&Tensor>,
    temperature: f64,
    pixels: Pixels,
    rng: &mut VaeRng,
) -> Result<Tensor> {
    let z = (vae.noise(n, rng)? * temperature)?;
    decode_pixels(vae, &z, labels, pixels, rng)
}

/// Labels for one row per class: `per_class` copies of class 0, then of class 1, and so on up to `classes − 1`.
pub fn class_rows(
    classes: usize,
    per_class: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let labels: Vec<u32> = (0..classes as u32)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    Tensor::new(labels.as_slice(), device)
}

/// A latent traversal: for each dimension, in the order given, `steps` images decoded from the posterior mean of
/// `x [1, input_dim]` with that one coordinate moved evenly from `−range·σ` to `+range·σ` around it (σ = 1, the
/// prior's). Rows follow `order`.
///
/// # Shapes
/// `x [1, input_dim]`, `label [1]` → `[order.len() · steps, input_dim]`.
pub fn traverse(
    vae: &Vae,
    x: &Tensor,
    label: Option<&Tensor>,
    order: &[usize],
    range: f64,
    steps: usize,
) -> Result<Tensor> {
    let (mu, _) = vae.encode(x, label)?;
    let base = vae_model::latent::vector(&mu)?;
    let offset = |s: usize| {
        if steps == 1 {
            0.0
        } else {
            -range + 2.0 * range * s as f64 / (steps - 1) as f64
        }
    };
    let mut z = Vec::with_capacity(order.len() * steps * base.len());
    for &dim in order {
        for s in 0..steps {
            z.extend(
                base.iter()
                    .enumerate()
                    .map(|(j, &v)| (if j == dim { v + offset(s) } else { v }) as f32),
            );
        }
    }
    let rows = order.len() * steps;
    let z = Tensor::from_vec(z, (rows, base.len()), x.device())?.to_dtype(mu.dtype())?;
    let labels = label.map(|l| l.repeat(rows)).transpose()?;
    vae.decode_probs(&z, labels.as_ref())
}

/// The posterior means of every image of `data` (in order) and their labels.
pub fn posterior_means(vae: &Vae, data: &vae_data::Batcher) -> Result<(Vec<Vec<f64>>, Vec<u32>)> {
    let (mut means, mut labels) = (Vec::new(), Vec::new());
    for batch in data.in_order(&mut VaeRng::seed_from(0)) {
        let (x, y) = batch.tensors().map_err(candle_core::Error::wrap)?;
        let (mu, _) = vae.encode(&x, Some(&y))?;
        means.extend(mu.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?);
        labels.extend(y.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?);
    }
    Ok((means, labels))
}

/// The scatter figure of the posterior means of `data`: the 2-D latent itself, or a wider one's first two
/// principal components, said so in the title.
pub fn scatter_figure(
    vae: &Vae,
    data: &vae_data::Batcher,
    class_names: &[String],
) -> anyhow::Result<Vec<u8>> {
    let (means, labels) = posterior_means(vae, data)?;
    let d = vae.config().latent_dim;
    let (axes, title) = if d <= 2 {
        (
            ("z1", "z2"),
            format!("posterior means of {} test images", means.len()),
        )
    } else {
        (
            ("principal component 1", "principal component 2"),
            format!(
                "{} test posterior means: first 2 principal components of the {d}-D latent",
                means.len()
            ),
        )
    };
    crate::charts::scatter_png(
        &crate::charts::principal_plane(&means),
        &labels,
        class_names,
        axes,
        &title,
    )
}

/// The latent dimensions, most used first, with each one's average KL on `test` (seeded, so the order is the
/// same every time).
pub fn usage_order(vae: &Vae, test: &vae_data::Batcher) -> anyhow::Result<(Vec<usize>, Vec<f64>)> {
    let usage = crate::eval::latent_usage(vae, test, &mut vae_model::VaeRng::seed_from(0))?;
    Ok((by_usage(&usage.kl_per_dim), usage.kl_per_dim))
}

/// Whether a model has a latent plane to draw: a plain model with a 2-D latent space (a conditional model's
/// plane holds the style within each class, which no single manifold shows).
pub fn has_plane(cfg: &vae_model::VaeConfig) -> bool {
    cfg.latent_dim == 2 && !cfg.conditional
}

/// The latent dimensions ordered by their average KL, the most used first (ties by index).
pub fn by_usage(kl_per_dim: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kl_per_dim.len()).collect();
    order.sort_by(|&a, &b| kl_per_dim[b].total_cmp(&kl_per_dim[a]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use vae_model::VaeConfig;

    use super::*;

    /// The squared distance of each row of `a` to the same row of `b`, summed over columns.
    fn row_distances(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
        (a - b)?.sqr()?.sum(candle_core::D::Minus1)?.to_vec1()
    }

    fn model() -> Vae {
        model_of(false)
    }

    fn model_of(conditional: bool) -> Vae {
        let cfg = VaeConfig {
            input_dim: 12,
            hidden_dims: vec![10],
            latent_dim: 3,
            conditional,
            ..VaeConfig::mnist()
        };
        Vae::init(&cfg, &mut VaeRng::seed_from(3), &Device::Cpu)
            .unwrap()
            .0
    }

    fn images(n: usize, seed: u64) -> Tensor {
        VaeRng::seed_from(seed)
            .uniform((n, 12), 0.0, 1.0, &Device::Cpu)
            .unwrap()
    }

    #[test]
    fn temperature_zero_decodes_the_posterior_means_in_turn() {
        let (vae, x) = (model(), images(2, 1));
        let got = posterior_samples(&vae, &x, None, 5, 0.0, &mut VaeRng::seed_from(0)).unwrap();
        let (mu, _) = vae.encode(&x, None).unwrap();
        let means = vae.decode_probs(&mu, None).unwrap();
        for i in 0..5 {
            let d = row_distances(
                &got.narrow(0, i, 1).unwrap(),
                &means.narrow(0, i % 2, 1).unwrap(),
            )
            .unwrap();
            assert!(d[0] < 1e-12, "sample {i}: {d:?}");
        }
        // At temperature 1 they differ from the means, and the same seed gives the same samples.
        let a = posterior_samples(&vae, &x, None, 4, 1.0, &mut VaeRng::seed_from(9)).unwrap();
        let b = posterior_samples(&vae, &x, None, 4, 1.0, &mut VaeRng::seed_from(9)).unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        let d =
            row_distances(&a.narrow(0, 0, 1).unwrap(), &means.narrow(0, 0, 1).unwrap()).unwrap();
        assert!(d[0] > 1e-6, "{d:?}");
    }

    #[test]
    fn paths_start_and_end_at_the_two_posterior_means() {
        for conditional in [false, true] {
            path_ends(conditional);
        }
    }

    /// For a conditional model, a 3 and an 8: each end is decoded under its own label.
    fn path_ends(conditional: bool) {
        let vae = model_of(conditional);
        let (a, b) = (images(1, 4), images(1, 5));
        let dev = Device::Cpu;
        let labels = Tensor::new(&[3u32, 8], &dev).unwrap();
        let (la, lb) = (
            labels.narrow(0, 0, 1).unwrap(),
            labels.narrow(0, 1, 1).unwrap(),
        );
        let ends = |t: &Tensor, steps: usize| {
            (
                t.narrow(0, 0, 1).unwrap(),
                t.narrow(0, steps - 1, 1).unwrap(),
            )
        };
        let (mua, _) = vae.encode(&a, Some(&la)).unwrap();
        let (mub, _) = vae.encode(&b, Some(&lb)).unwrap();
        let (da, db) = (
            vae.decode_probs(&mua, Some(&la)).unwrap(),
            vae.decode_probs(&mub, Some(&lb)).unwrap(),
        );
        for slerp in [false, true] {
            let path = interpolate(&vae, (&a, &b), Some(&labels), 7, slerp).unwrap();
            assert_eq!(path.dims(), &[7, 12]);
            let (first, last) = ends(&path, 7);
            assert!(
                row_distances(&first, &da).unwrap()[0] < 1e-10,
                "slerp {slerp}"
            );
            assert!(
                row_distances(&last, &db).unwrap()[0] < 1e-10,
                "slerp {slerp}"
            );
        }
    }

    #[test]
    fn a_traversal_moves_one_coordinate_per_row_in_the_given_order() {
        let vae = model();
        let x = images(1, 6);
        let got = traverse(&vae, &x, None, &[2, 0], 3.0, 5).unwrap();
        assert_eq!(got.dims(), &[10, 12]);
        let (mu, _) = vae.encode(&x, None).unwrap();
        let mut z = mu.to_vec2::<f32>().unwrap()[0].clone();
        z[2] -= 3.0; // row 0, step 0: dimension 2 at −3
        let z = Tensor::from_vec(z, (1, 3), &Device::Cpu).unwrap();
        let want = vae.decode_probs(&z, None).unwrap();
        assert!(row_distances(&got.narrow(0, 0, 1).unwrap(), &want).unwrap()[0] < 1e-10);
        let mid = vae.decode_probs(&mu, None).unwrap(); // step 2 of each row is the mean itself
        for row in [2, 7] {
            assert!(
                row_distances(&got.narrow(0, row, 1).unwrap(), &mid).unwrap()[0] < 1e-10,
                "{row}"
            );
        }
        assert_eq!(by_usage(&[0.5, 0.0, 2.0, 0.5]), vec![2, 0, 3, 1]);
    }
}
