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
