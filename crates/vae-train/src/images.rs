//! Decoded images as files: PNG grids (samples, test images above their reconstructions, the latent manifold),
//! or, by the file's extension, the probabilities themselves as `.npy`.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;

pub use vae_data::Shape;

/// Lays out `images [n, C·H·W]` as a `rows × cols` PNG grid (see [`vae_data::grid_png`]).
pub fn grid_png(images: &Tensor, rows: usize, cols: usize, shape: Shape) -> Result<Vec<u8>> {
    let px = images
        .to_device(&candle_core::Device::Cpu)?
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(vae_data::grid_png(&px, rows, cols, shape)?)
}

/// Writes a grid PNG atomically.
pub fn write_grid(
    path: &Path,
    images: &Tensor,
    rows: usize,
    cols: usize,
    shape: Shape,
) -> Result<()> {
    write_png(path, &grid_png(images, rows, cols, shape)?)
}

/// Writes PNG bytes atomically.
pub fn write_png(path: &Path, png: &[u8]) -> Result<()> {
    vae_model::write_atomic(path, png)
        .with_context(|| format!("{}: cannot write figure", path.display()))
}

/// Writes images `[n, C·H·W]` by the file's extension: `.png`, a grid of `rows × cols` tiles; `.npy`, the values
/// themselves as `[n, …dims]` f32 (what `numpy.load` reads), for use as data. `dims` is `[H, W]` for the square
/// grey models of the first format and `[C, H, W]` otherwise (see [`crate::inputs::npy_dims`]). Either way the
/// file is replaced only once it is whole.
pub fn write_images(
    path: &Path,
    images: &Tensor,
    rows: usize,
    cols: usize,
    dims: &[usize],
) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => {
            let shape = match *dims {
                [h, w] => [1, h, w],
                [c, h, w] => [c, h, w],
                _ => anyhow::bail!(
                    "{}: vectors of {dims:?} values are not pictures; write .npy",
                    path.display()
                ),
            };
            write_grid(path, images, rows, cols, shape)
        }
        Some("npy") => {
            let dims: Vec<usize> = std::iter::once(images.dim(0)?)
                .chain(dims.iter().copied())
                .collect();
            crate::npy::write_npy(path, &images.reshape(dims)?)
        }
        _ => anyhow::bail!(
            "{}: the output must end in .png (a picture) or .npy (the raw probabilities)",
            path.display()
        ),
    }
}

/// `originals [n, D]` in the top row and their `reconstructions [n, D]` below.
pub fn write_reconstructions(
    path: &Path,
    originals: &Tensor,
    reconstructions: &Tensor,
    shape: Shape,
) -> Result<()> {
    let n = originals.dim(0)?;
    let both = Tensor::cat(&[originals, reconstructions], 0)?;
    write_grid(path, &both, 2, n, shape)
}

/// The inverse CDF of N(0, 1) (Acklam's rational approximation, relative error < 1.2e-9), for `p` in (0, 1).
#[allow(clippy::excessive_precision)] // the published coefficients, verbatim
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// For a model with a 2-D latent space: the decoded images of an `n × n` grid of z whose coordinates are the
/// Gaussian quantiles of evenly spaced probabilities (Kingma & Welling's Figure 4), so each tile covers the same
/// prior mass. z₁ runs left to right, z₂ top to bottom.
pub fn write_manifold(path: &Path, vae: &vae_model::Vae, n: usize, shape: Shape) -> Result<()> {
    write_png(path, &manifold_png(vae, n, shape)?)
}

/// The PNG of [`write_manifold`]'s figure.
pub fn manifold_png(vae: &vae_model::Vae, n: usize, shape: Shape) -> Result<Vec<u8>> {
    anyhow::ensure!(
        vae.config().latent_dim == 2,
        "the manifold figure needs a 2-D latent space"
    );
    let q: Vec<f64> = (0..n)
        .map(|i| normal_quantile((i as f64 + 0.5) / n as f64))
        .collect();
    let z: Vec<f32> = q
        .iter()
        .flat_map(|&z2| q.iter().flat_map(move |&z1| [z1 as f32, z2 as f32]))
        .collect();
    let z = Tensor::from_vec(z, (n * n, 2), vae.device())?;
    grid_png(&vae.decode_probs(&z, None)?, n, n, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vae_data::GRID_PAD as PAD;

    #[test]
    fn grid_places_tiles_and_decodes_back() {
        let dev = candle_core::Device::Cpu;
        // Two 2×2 tiles: all white, then all black.
        let t = Tensor::new(&[[1f32, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], &dev).unwrap();
        let png = grid_png(&t, 1, 2, [1, 2, 2]).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        // 2×2 tiles are scaled ×28 to 56 pixels.
        assert_eq!(img.dimensions(), (2 * (56 + PAD) + PAD, 56 + 2 * PAD));
        assert_eq!(img.get_pixel(PAD, PAD).0[0], 255);
        assert_eq!(img.get_pixel(PAD + 55, PAD + 55).0[0], 255);
        assert_eq!(img.get_pixel(2 * PAD + 56, PAD).0[0], 0);
        assert_eq!(img.get_pixel(0, 0).0[0], 40);
    }

    #[test]
    fn colour_grids_read_channel_planes() {
        let dev = candle_core::Device::Cpu;
        // One 1×2 RGB tile: a red pixel, then a blue one, as planes R = [1, 0], G = [0, 0], B = [0, 1].
        let t = Tensor::new(&[[1f32, 0.0, 0.0, 0.0, 0.0, 1.0]], &dev).unwrap();
        let png = grid_png(&t, 1, 1, [3, 1, 2]).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (56 + 2 * PAD, 28 + 2 * PAD));
        assert_eq!(img.get_pixel(PAD, PAD).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(PAD + 28, PAD).0, [0, 0, 255]);
        assert_eq!(img.get_pixel(0, 0).0, [40, 40, 40]);
    }

    #[test]
    fn mnist_tiles_stay_at_twice_their_size() {
        let t =
            Tensor::zeros((1, 784), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let img = image::load_from_memory(&grid_png(&t, 1, 1, [1, 28, 28]).unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (56 + 2 * PAD, 56 + 2 * PAD));
    }

    #[test]
    fn normal_quantiles_match_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.025, -1.959963984540054),
            (0.8413447460685429, 1.0),
            (0.001, -3.090232306167813),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-8,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }
}
