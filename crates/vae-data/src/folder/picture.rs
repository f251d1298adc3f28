//! One picture file made into an example: decoded under a size limit, converted, resized and cropped.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageReader, Limits};

/// The largest side read, in pixels: a bigger picture (a decompression bomb among them) is refused from its header,
/// before any decoding.
pub const MAX_SIDE: u32 = 8192;

/// The most memory one decode may take.
const MAX_ALLOC: u64 = 512 << 20;

/// A reader of `path` by its content (not its name), under the size limits.
fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, String> {
    let mut reader = unlimited(path)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    Ok(reader)
}

/// For the header alone, whose sizes [`check_side`] judges with a message of its own.
fn unlimited(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, String> {
    let mut reader = ImageReader::open(path)
        .map_err(|e| format!("cannot open ({e})"))?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader.no_limits();
    Ok(reader)
}

/// The shorter side of a picture and whether it is grey, from its header alone.
pub(crate) fn header(path: &Path) -> Result<(usize, bool), String> {
    let decoder = unlimited(path)?.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    check_side(w, h)?;
    Ok((w.min(h) as usize, !decoder.color_type().has_color()))
}

fn check_side(w: u32, h: u32) -> Result<(), String> {
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!(
            "{w}×{h} pixels is past the limit of {MAX_SIDE} per side; refused before decoding"
        ));
    }
    if w == 0 || h == 0 {
        return Err(format!("{w}×{h} pixels holds no picture"));
    }
    Ok(())
}

/// The picture at `path` as `channels × size × size` bytes, channel planes one after another: converted to grey
/// (1) or RGB (3) with any alpha dropped, its shorter side resized to `size` (a triangle filter) and the centre
/// cropped. A picture already `size × size` keeps its bytes. The error says what is wrong with the file.
///
/// ```no_run
/// let px = vae_data::read_picture("shirt.png".as_ref(), 28, 1).unwrap();
/// assert_eq!(px.len(), 28 * 28);
/// ```
pub fn read_picture(path: &Path, size: usize, channels: usize) -> Result<Vec<u8>, String> {
    Ok(picture_bytes(decode_picture(path)?, size, channels))
}

/// The picture at `path` (PNG or JPEG, by its content), decoded under the size limits: a side past [`MAX_SIDE`] is
/// refused from the header, before any decoding. The error says what is wrong with the file.
pub fn decode_picture(path: &Path) -> Result<DynamicImage, String> {
    let not_picture = |e: image::ImageError| format!("not a PNG or JPEG image ({e})");
    let (w, h) = unlimited(path)?.into_dimensions().map_err(not_picture)?;
    check_side(w, h)?;
    reader(path)?.decode().map_err(not_picture)
}

/// A decoded picture as `channels × size × size` bytes, as [`read_picture`] makes a file's.
pub fn picture_bytes(img: DynamicImage, size: usize, channels: usize) -> Vec<u8> {
    let img = match channels {
        1 => DynamicImage::ImageLuma8(img.to_luma8()),
        _ => DynamicImage::ImageRgb8(img.to_rgb8()),
    };
    let img = fit(img, size as u32);
    match channels {
        1 => img.to_luma8().into_raw(),
        _ => planar(&img.to_rgb8().into_raw(), size * size),
    }
}

/// Shorter side to `size`, then the centre `size × size`.
fn fit(img: DynamicImage, size: u32) -> DynamicImage {
    let (w, h) = img.dimensions();
    if (w, h) == (size, size) {
        return img;
    }
    let scale = size as f64 / w.min(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).max(size);
    let nh = ((h as f64 * scale).round() as u32).max(size);
    let img = img.resize_exact(nw, nh, FilterType::Triangle);
    img.crop_imm((nw - size) / 2, (nh - size) / 2, size, size)
}

/// Interleaved RGB (`HWC`) as three planes (`CHW`), the layout of the examples.
fn planar(rgb: &[u8], pixels: usize) -> Vec<u8> {
    let mut out = vec![0u8; rgb.len()];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * pixels + i] = px[c];
        }
    }
    out
}
