//! Pictures in and out of a model: one picture made into a model's input (as `generate --like` and the explorer's
//! drawing pad make it), and decoded images laid out as a PNG grid.

use image::{DynamicImage, ImageBuffer, Pixel};

use crate::digitize::{digitize, grey_of};
use crate::folder::picture_bytes;

/// An example's `[channels, height, width]` as a picture: 1 channel grey, 3 RGB, channel planes one after another.
pub type Shape = [usize; 3];

/// The border around and between a grid's tiles, in pixels.
pub const GRID_PAD: u32 = 2;
/// A grid's tiles are at least this many pixels on their longer side (a whole multiple of the image's).
const TILE_MIN: usize = 56;

/// `img` as the input of a model of pictures of `shape`, values in [0, 1]: with `mnist`, a 28×28 grey model of
/// format `/1` digitised as MNIST was made (see [`digitize`]); otherwise read as a folder's pictures are (resized,
/// centre-cropped, converted to the model's channels; see [`crate::read_picture`]). The error says what is wrong.
///
/// ```
/// let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(40, 40, |x, _| image::Luma([x as u8 * 6])));
/// let px = vae_data::picture_input(&img, [1, 8, 8], false).unwrap();
/// assert_eq!(px.len(), 64);
/// assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
/// ```
pub fn picture_input(img: &DynamicImage, shape: Shape, mnist: bool) -> Result<Vec<f32>, String> {
    match (shape, mnist) {
        ([1, 28, 28], true) => digitize(&grey_of(img)),
        ([c, h, w], _) if h == w => Ok(picture_bytes(img.clone(), h, c)
            .into_iter()
            .map(crate::unit_grey)
            .collect()),
        ([_, h, w], _) => Err(format!("the model's pictures are {h}×{w}, not square")),
    }
}

/// Lays out `images`, `n` rows of `C·H·W` values in [0, 1] (`shape` each), as a `rows × cols` grid with a
/// [`GRID_PAD`]-pixel border, each tile scaled by a whole factor to at least 56 pixels on its longer side (×2 for
/// 28×28, ×7 for 8×8), and encodes it as a grey or RGB PNG.
pub fn grid_png(
    images: &[f32],
    rows: usize,
    cols: usize,
    shape: Shape,
) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    let out = &mut std::io::Cursor::new(&mut bytes);
    match shape[0] {
        1 => draw_grid::<image::Luma<u8>>(images, rows, cols, shape)
            .write_to(out, image::ImageFormat::Png)?,
        _ => draw_grid::<image::Rgb<u8>>(images, rows, cols, shape)
            .write_to(out, image::ImageFormat::Png)?,
    }
    Ok(bytes)
}

fn draw_grid<P: Pixel<Subpixel = u8>>(
    px: &[f32],
    rows: usize,
    cols: usize,
    [channels, h, w]: Shape,
) -> ImageBuffer<P, Vec<u8>> {
    let scale = TILE_MIN.div_ceil(h.max(w).max(1)).max(1) as u32;
    let (tw, th) = (w as u32 * scale, h as u32 * scale);
    let width = cols as u32 * (tw + GRID_PAD) + GRID_PAD;
    let height = rows as u32 * (th + GRID_PAD) + GRID_PAD;
    let mut img =
        ImageBuffer::<P, Vec<u8>>::from_pixel(width, height, *P::from_slice(&[40; 3][..channels]));
    let level = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let size = (channels * h * w).max(1);
    for (k, tile) in px.chunks(size).enumerate().take(rows * cols) {
        let (r, c) = ((k / cols) as u32, (k % cols) as u32);
        let (x0, y0) = (
            GRID_PAD + c * (tw + GRID_PAD),
            GRID_PAD + r * (th + GRID_PAD),
        );
        for y in 0..th {
            for x in 0..tw {
                let at = (y / scale) as usize * w + (x / scale) as usize;
                let mut v = [0u8; 3];
                (0..channels).for_each(|ch| v[ch] = level(tile[ch * h * w + at]));
                img.put_pixel(x0 + x, y0 + y, *P::from_slice(&v[..channels]));
            }
        }
    }
    img
}
