//! A picture of a digit made into the model's input the way MNIST was made (LeCun et al.): grey levels, white
//! on black, the ink's bounding box scaled to fit 20×20 (keeping its aspect ratio, anti-aliased), and placed in a
//! 28×28 field so that its centre of mass (in pixel indices) is at (14, 14).

use std::path::Path;

use anyhow::{Context, Result};
pub use vae_data::digitize::{digitize, grey_of};

/// Reads an image file (PNG or JPEG, any size, colour or grey) and returns its 28×28 pixels in [0, 1], row-major.
pub fn load(path: &Path) -> Result<Vec<f32>> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    // Checked against the header before anything is decoded: a small file may claim a huge picture.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE);
    limits.max_image_height = Some(MAX_PICTURE_SIDE);
    limits.max_alloc = Some(MAX_PICTURE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "{}: a picture may be at most {MAX_PICTURE_SIDE} × {MAX_PICTURE_SIDE} pixels ({} MB decoded)",
            path.display(),
            MAX_PICTURE_BYTES >> 20
        ),
        e => anyhow::Error::new(e).context(format!("{}: not a PNG or JPEG image", path.display())),
    })?;
    digitize(&grey_of(&img)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The widest and tallest picture read as a digit.
pub const MAX_PICTURE_SIDE: u32 = 10_000;
/// The most memory decoding a picture may take.
const MAX_PICTURE_BYTES: u64 = 512 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    #[test]
    fn a_uniform_picture_is_blank_and_alpha_is_ink() {
        let grey = GrayImage::from_pixel(40, 40, image::Luma([128]));
        let err = digitize(&grey).unwrap_err().to_string();
        assert!(err.contains("blank") && err.contains("span 0.00"), "{err}");
        // A black bar drawn on transparency: its alpha is the ink, in the middle of the 28×28 input.
        let rgba = image::RgbaImage::from_fn(40, 40, |x, _| match (18..22).contains(&x) {
            true => image::Rgba([0, 0, 0, 255]),
            false => image::Rgba([0, 0, 0, 0]),
        });
        let px = digitize(&grey_of(&image::DynamicImage::ImageRgba8(rgba))).unwrap();
        let column = |x: usize| (0..28).map(|y| px[y * 28 + x]).sum::<f32>();
        assert!(
            column(14) > 10.0 && column(2) == 0.0,
            "{} {}",
            column(14),
            column(2)
        );
        // An opaque picture is read by its luminance, as before.
        let opaque = image::RgbaImage::from_pixel(4, 4, image::Rgba([200, 200, 200, 255]));
        assert_eq!(
            grey_of(&image::DynamicImage::ImageRgba8(opaque)).get_pixel(0, 0)[0],
            200
        );
    }

    /// Where the ink of a 28×28 picture is: its bounding box and centre of mass.
    fn ink_box(px: &[f32]) -> ((usize, usize, usize, usize), (f32, f32)) {
        let (mut b, mut m, mut mx, mut my) = ((28, 28, 0, 0), 0f32, 0f32, 0f32);
        for (i, &v) in px.iter().enumerate() {
            let (x, y) = (i % 28, i / 28);
            if v > 0.5 {
                b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
            }
            (m, mx, my) = (m + v, mx + v * x as f32, my + v * y as f32);
        }
        (b, (mx / m, my / m))
    }

    #[test]
    fn a_bar_is_fitted_into_20_pixels_and_centred_by_its_mass() {
        // A white 40×80 bar on black, off centre in 200×100.
        let img = GrayImage::from_fn(200, 100, |x, y| {
            image::Luma([if (120..160).contains(&x) && (10..90).contains(&y) {
                255
            } else {
                0
            }])
        });
        let px = digitize(&img).unwrap();
        let ((x0, y0, x1, y1), (cx, cy)) = ink_box(&px);
        assert_eq!(
            (x1 - x0 + 1, y1 - y0 + 1),
            (10, 20),
            "aspect kept, long side 20"
        );
        assert!(
            (cx - 14.0).abs() <= 0.5 && (cy - 14.0).abs() <= 0.5,
            "centre of mass {cx}, {cy}"
        );
        // The same bar dark on light, and in colour, gives the same input.
        let inverted =
            GrayImage::from_fn(200, 100, |x, y| image::Luma([255 - img.get_pixel(x, y)[0]]));
        assert_eq!(digitize(&inverted).unwrap(), px);
        let blank = GrayImage::from_pixel(50, 50, image::Luma([255]));
        assert!(digitize(&blank).unwrap_err().to_string().contains("blank"));
    }

    #[test]
    fn an_mnist_digit_enlarged_comes_back_close_to_itself() {
        let Ok(data) = vae_data::load(&crate::tests_data_dir(), vae_data::Dataset::Mnist) else {
            panic!("the MNIST data (run `cargo xtask download`)");
        };
        let digits = data
            .first_test_images(20, &candle_core::Device::Cpu)
            .unwrap();
        for (k, px) in digits.to_vec2::<f32>().unwrap().iter().enumerate() {
            // 4× larger, dark on light as on paper.
            let big = GrayImage::from_fn(112, 112, |x, y| {
                image::Luma([255 - (px[(y / 4 * 28 + x / 4) as usize] * 255.0).round() as u8])
            });
            let back = digitize(&big).unwrap();
            let err: f32 = back.iter().zip(px).map(|(a, b)| (a - b).abs()).sum::<f32>() / 784.0;
            let dot: f32 = back.iter().zip(px).map(|(a, b)| a * b).sum();
            let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
            let cos = dot / (norm(&back) * norm(px));
            assert!(
                err < 0.04 && cos > 0.98,
                "test image {k}: mean |difference| {err}, cosine {cos}"
            );
        }
    }
}
