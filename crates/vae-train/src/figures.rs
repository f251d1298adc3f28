//! The PNG figures: a grid of prior samples, and test digits above their reconstructions.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;
use image::{GrayImage, Luma};

const PAD: u32 = 2;
const SCALE: u32 = 2;

/// Lays out `images [n, h·w]` (values in [0, 1]) as a `rows × cols` grid, each tile scaled ×2 with a 2-pixel
/// border, and encodes it as PNG.
pub fn grid_png(images: &Tensor, rows: usize, cols: usize, h: usize, w: usize) -> Result<Vec<u8>> {
    let px = images
        .to_device(&candle_core::Device::Cpu)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2::<f32>()?;
    let (tw, th) = (w as u32 * SCALE, h as u32 * SCALE);
    let width = cols as u32 * (tw + PAD) + PAD;
    let height = rows as u32 * (th + PAD) + PAD;
    let mut img = GrayImage::from_pixel(width, height, Luma([40]));
    for (k, tile) in px.iter().enumerate().take(rows * cols) {
        let (r, c) = ((k / cols) as u32, (k % cols) as u32);
        let (x0, y0) = (PAD + c * (tw + PAD), PAD + r * (th + PAD));
        for y in 0..th {
            for x in 0..tw {
                let v = tile[(y / SCALE) as usize * w + (x / SCALE) as usize];
                img.put_pixel(
                    x0 + x,
                    y0 + y,
                    Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8]),
                );
            }
        }
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(bytes)
}

/// Writes a grid PNG atomically.
pub fn write_grid(
    path: &Path,
    images: &Tensor,
    rows: usize,
    cols: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    let png = grid_png(images, rows, cols, h, w)?;
    vae_model::write_atomic(path, &png)
        .with_context(|| format!("{}: cannot write figure", path.display()))
}

/// `originals [n, D]` in the top row and their `reconstructions [n, D]` below.
pub fn write_reconstructions(
    path: &Path,
    originals: &Tensor,
    reconstructions: &Tensor,
    h: usize,
    w: usize,
) -> Result<()> {
    let n = originals.dim(0)?;
    let both = Tensor::cat(&[originals, reconstructions], 0)?;
    write_grid(path, &both, 2, n, h, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_tiles_and_decodes_back() {
        let dev = candle_core::Device::Cpu;
        // Two 2×2 tiles: all white, then all black.
        let t = Tensor::new(&[[1f32, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], &dev).unwrap();
        let png = grid_png(&t, 1, 2, 2, 2).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (2 * (4 + PAD) + PAD, 4 + 2 * PAD));
        assert_eq!(img.get_pixel(PAD, PAD).0[0], 255);
        assert_eq!(img.get_pixel(PAD + 3, PAD + 3).0[0], 255);
        assert_eq!(img.get_pixel(2 * PAD + 4, PAD).0[0], 0);
        assert_eq!(img.get_pixel(0, 0).0[0], 40);
    }
}
