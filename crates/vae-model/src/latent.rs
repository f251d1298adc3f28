//! What a trained model is for, in latent space: more images like a given one, and paths between two images.
//!
//! Images are rows `[n, input_dim]` in [0, 1]; what comes back is decoded pixel probabilities in the same layout.
//! `labels` are the class of each image (u32 `[n]`), read by a conditional model only (see [`Vae::label_input`]).

use candle_core::{Result, Tensor};

use crate::{Vae, VaeRng};

/// `n` images decoded from z ~ q(z|x) of the examples `x [m, input_dim]`, with the posterior's standard deviation
/// scaled by `temperature` (0 decodes the posterior means). Sample `i` comes from example `i mod m`, so each
/// example gets `n / m` samples, in turn.
///
/// # Shapes
/// `x [m, input_dim]`, `labels [m]` → `[n, input_dim]`.
pub fn posterior_samples(
    vae: &Vae,
    x: &Tensor,
    labels: Option<&Tensor>,
    n: usize,
    temperature: f64,
    rng: &mut VaeRng,
) -> Result<Tensor> {
    let (z, labels) = posterior_z(vae, x, labels, n, temperature, rng)?;
    vae.decode_probs(&z, labels.as_ref())
}

/// The z of [`posterior_samples`] and the label of each, before decoding.
///
/// # Shapes
/// `x [m, input_dim]`, `labels [m]` → `[n, latent_dim]`, `[n]`.
pub fn posterior_z(
    vae: &Vae,
    x: &Tensor,
    labels: Option<&Tensor>,
    n: usize,
    temperature: f64,
    rng: &mut VaeRng,
) -> Result<(Tensor, Option<Tensor>)> {
    let (mu, logvar) = vae.encode(x, labels)?;
    let m = x.dim(0)? as u32;
    let rows: Vec<u32> = (0..n as u32).map(|i| i % m).collect();
    let rows = Tensor::new(rows.as_slice(), x.device())?;
    let (mu, logvar) = (mu.index_select(&rows, 0)?, logvar.index_select(&rows, 0)?);
    let labels = labels.map(|l| l.index_select(&rows, 0)).transpose()?;
    let eps = (vae.noise(n, rng)? * temperature)?;
    Ok((Vae::reparameterize(&mu, &logvar, &eps)?, labels))
}

/// `steps` images decoded along the path between the posterior means of `a` and `b` (each `[1, input_dim]`): the
/// straight line, or with `slerp` the great circle (Shoemake's spherical interpolation, which keeps the norm of z
/// near the prior's typical shell instead of cutting through its low-density centre). The first image decodes
/// a's mean and the last b's. For a conditional model, `labels [2]` are a's and b's classes, and the label input
/// blends from one to the other along the path.
pub fn interpolate(
    vae: &Vae,
    (a, b): (&Tensor, &Tensor),
    labels: Option<&Tensor>,
    steps: usize,
    slerp: bool,
) -> Result<Tensor> {
    let ends = vae.label_input(labels)?;
    let end = |i: usize| ends.as_ref().map(|y| y.narrow(0, i, 1)).transpose();
    let (za, _) = vae.encode(a, end(0)?.as_ref())?;
    let (zb, _) = vae.encode(b, end(1)?.as_ref())?;
    let weights = path_weights(&za, &zb, steps, slerp)?;
    let w = |i: usize| Tensor::new(&[weights[i]], a.device())?.to_dtype(za.dtype());
    let z: Vec<Tensor> = (0..steps)
        .map(|i| za.broadcast_mul(&w(2 * i)?)? + zb.broadcast_mul(&w(2 * i + 1)?)?)
        .collect::<Result<_>>()?;
    let blend = match ends {
        Some(y) => {
            let t = |i: usize| i as f64 / (steps.max(2) - 1) as f64;
            let rows: Vec<Tensor> = (0..steps)
                .map(|i| (y.narrow(0, 0, 1)? * (1.0 - t(i)))? + (y.narrow(0, 1, 1)? * t(i))?)
                .collect::<Result<_>>()?;
            Some(Tensor::cat(&rows, 0)?)
        }
        None => None,
    };
    vae.decode_probs(&Tensor::cat(&z, 0)?, blend.as_ref())
}

/// The coefficients `(wa, wb)` of each step, flattened, so that step i is `wa·za + wb·zb`.
fn path_weights(za: &Tensor, zb: &Tensor, steps: usize, slerp: bool) -> Result<Vec<f32>> {
    let t = |i: usize| {
        if steps == 1 {
            0.0
        } else {
            i as f64 / (steps - 1) as f64
        }
    };
    let angle = if slerp {
        let (a, b) = (vector(za)?, vector(zb)?);
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        (dot / (norm(&a) * norm(&b)).max(f64::MIN_POSITIVE))
            .clamp(-1.0, 1.0)
            .acos()
    } else {
        0.0
    };
    Ok((0..steps)
        .flat_map(|i| {
            let t = t(i);
            // Nearly parallel means: the great circle is the line; nearly opposite ones have no one great circle
            // (sin θ ≈ 0 would blow the weights up), so the line too.
            if angle < 1e-6 || std::f64::consts::PI - angle < 1e-6 {
                [(1.0 - t) as f32, t as f32]
            } else {
                let s = angle.sin();
                [
                    (((1.0 - t) * angle).sin() / s) as f32,
                    ((t * angle).sin() / s) as f32,
                ]
            }
        })
        .collect())
}

/// The values of `z`, flattened, as f64.
pub fn vector(z: &Tensor) -> Result<Vec<f64>> {
    z.flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn slerp_weights_keep_the_norm_between_orthogonal_unit_vectors() {
        let dev = Device::Cpu;
        let za = Tensor::new(&[[1f32, 0.0]], &dev).unwrap();
        let zb = Tensor::new(&[[0f32, 1.0]], &dev).unwrap();
        let w = path_weights(&za, &zb, 5, true).unwrap();
        for i in 0..5 {
            let (wa, wb) = (w[2 * i] as f64, w[2 * i + 1] as f64);
            // Along the quarter circle: (cos θ, sin θ) with θ = t·π/2.
            let theta = i as f64 / 4.0 * std::f64::consts::FRAC_PI_2;
            assert!(
                (wa - theta.cos()).abs() < 1e-6 && (wb - theta.sin()).abs() < 1e-6,
                "{i}: {wa} {wb}"
            );
        }
        let lerp = path_weights(&za, &zb, 5, false).unwrap();
        assert_eq!(&lerp[4..6], &[0.5, 0.5]);
    }

    #[test]
    fn slerp_between_opposite_means_falls_back_to_the_line() {
        let dev = Device::Cpu;
        let za = Tensor::new(&[[1.5f32]], &dev).unwrap();
        let zb = Tensor::new(&[[-1.5f32]], &dev).unwrap();
        let w = path_weights(&za, &zb, 5, true).unwrap();
        assert_eq!(w, path_weights(&za, &zb, 5, false).unwrap());
        assert_eq!(&w[4..6], &[0.5, 0.5]);
    }
}
