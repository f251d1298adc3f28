//! A picture of a digit made into the model's input the way MNIST was made (LeCun et al.): grey levels, white
//! on black, the ink's bounding box scaled to fit 20×20 (keeping its aspect ratio, anti-aliased), and placed in a
//! 28×28 field so that its centre of mass (in pixel indices) is at (14, 14).

use image::{imageops, GrayImage};

/// The side of the box the ink is fitted into.
const BOX: u32 = 20;
/// Grey levels (0-1, white ink) above which a pixel counts as ink for the bounding box.
const INK: f32 = 0.1;

/// The least span of grey levels in which a digit is looked for: a uniform picture has none.
const MIN_CONTRAST: f32 = 0.2;

/// The grey levels of a picture: its luminance, or, where its alpha varies (a digit drawn on transparency), the alpha
/// itself as the ink's coverage, light ink on dark.
pub fn grey_of(img: &image::DynamicImage) -> GrayImage {
    if img.color().has_alpha() {
        let rgba = img.to_rgba8();
        if rgba.pixels().any(|p| p[3] != 255) {
            let (w, h) = rgba.dimensions();
            return GrayImage::from_fn(w, h, |x, y| image::Luma([rgba.get_pixel(x, y)[3]]));
        }
    }
    img.to_luma8()
}

/// MNIST's preprocessing of a grey picture. Dark ink on a light background (a scan, a drawing) is inverted first,
/// judged by the border: MNIST's digits are white on black.
pub fn digitize(grey: &GrayImage) -> Result<Vec<f32>, String> {
    let (w, h) = grey.dimensions();
    let mut ink: Vec<f32> = grey.pixels().map(|p| p[0] as f32 / 255.0).collect();
    let (lo, hi) = ink
        .iter()
        .fold((1f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if hi - lo < MIN_CONTRAST {
        return Err(format!(
            "no digit found: the picture is blank (its grey levels span {:.2} of 1)",
            hi - lo
        ));
    }
    let border: Vec<f32> = (0..w * h)
        .filter(|i| {
            let (x, y) = (i % w, i / w);
            x == 0 || y == 0 || x == w - 1 || y == h - 1
        })
        .map(|i| ink[i as usize])
        .collect();
    if border.iter().sum::<f32>() / border.len() as f32 > 0.5 {
        ink.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    let inked = |i: usize| ink[i] > INK;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for i in (0..ink.len()).filter(|&i| inked(i)) {
        let (x, y) = (i as u32 % w, i as u32 / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    if x0 > x1 {
        return Err("no digit found: the picture is blank".into());
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let scale = BOX as f32 / bw.max(bh) as f32;
    let (nw, nh) = (
        ((bw as f32 * scale).round() as u32).max(1),
        ((bh as f32 * scale).round() as u32).max(1),
    );
    let cropped = GrayImage::from_fn(bw, bh, |x, y| {
        image::Luma([(ink[((y0 + y) * w + x0 + x) as usize] * 255.0).round() as u8])
    });
    let small = imageops::resize(&cropped, nw, nh, imageops::FilterType::Triangle);
    // Centre of mass of the fitted box, then the offset that puts it at pixel (14, 14), as in MNIST.
    let (mut m, mut mx, mut my) = (0f32, 0f32, 0f32);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p[0] as f32;
        (m, mx, my) = (m + v, mx + v * x as f32, my + v * y as f32);
    }
    let place = |c: f32, n: u32| ((14.0 - c).round() as i64).clamp(0, 28 - n as i64);
    let (ox, oy) = (place(mx / m.max(1e-6), nw), place(my / m.max(1e-6), nh));
    let mut out = vec![0f32; 28 * 28];
    for (x, y, p) in small.enumerate_pixels() {
        out[(oy as usize + y as usize) * 28 + ox as usize + x as usize] = p[0] as f32 / 255.0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    /// `$VAE_DATA_DIR`, else `data/` at the workspace root, as the product's own download fills it.
    fn tests_data_dir() -> std::path::PathBuf {
        std::env::var_os("VAE_DATA_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"))
    }

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
        let Ok(data) = crate::load(&tests_data_dir(), crate::Dataset::Mnist) else {
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
