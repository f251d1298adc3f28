//! Charts with axes and legends: the loss curves of a run, and the test set's posterior means coloured by label.
//!
//! Drawn by plotters into an RGB buffer, with DejaVu Sans built into the binary (so no system font is needed), and
//! encoded as PNG here.

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::metrics::EpochMetrics;

const FONT: &str = "sans-serif";

/// Registers the built-in font with plotters, once.
fn font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = DONE.get_or_init(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
    });
    anyhow::ensure!(*ok, "the built-in font could not be loaded");
    Ok(())
}

/// Draws with `draw` on a `width × height` canvas and returns the PNG.
fn render(
    width: u32,
    height: u32,
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    font()?;
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(root.clone())?;
        root.present().map_err(plot_error)?;
    }
    let img = image::RgbImage::from_raw(width, height, rgb).context("canvas size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e}")
}

/// The loss curves of a run: −ELBO (or the training objective), reconstruction and KL, train and test, per epoch,
/// in nats per image, as three panels side by side.
pub fn curves_png(history: &[EpochMetrics]) -> Result<Vec<u8>> {
    anyhow::ensure!(!history.is_empty(), "no epochs to plot");
    type Pick = fn(&EpochMetrics) -> (f64, f64);
    let panels: [(&str, Pick); 3] = [
        ("loss (-ELBO)", |m| (m.train_loss, m.test_loss)),
        ("reconstruction (BCE)", |m| (m.train_recon, m.test_recon)),
        ("KL", |m| (m.train_kl, m.test_kl)),
    ];
    render(1500, 450, |root| {
        for (area, (title, pick)) in root.split_evenly((1, 3)).into_iter().zip(panels) {
            let train: Vec<(f64, f64)> = history
                .iter()
                .map(|m| (m.epoch as f64, pick(m).0))
                .collect();
            let test: Vec<(f64, f64)> = history
                .iter()
                .map(|m| (m.epoch as f64, pick(m).1))
                .collect();
            panel(
                &area,
                title,
                &[("train", &train, BLUE), ("test", &test, RED)],
            )?;
        }
        Ok(())
    })
}

/// A named line of `(epoch, value)` points in a colour.
type Line<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// One panel: lines over epochs with a legend, labelled at whole epochs (at most ten labels), its scale set by the
/// epochs after the first when there are three or more (the first's loss, far above the rest, would flatten them);
/// a value above the scale is drawn at its top edge, and the caption says so.
fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    lines: &[Line],
) -> Result<()> {
    let last = lines
        .iter()
        .flat_map(|(_, l, _)| l.iter())
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let (lo, hi) = drawable_range(title, lines, last >= 3.0)?;
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let top = hi + pad;
    let clipped = lines.iter().any(|(_, l, _)| l.iter().any(|p| p.1 > top));
    let caption = match clipped {
        true => format!("{title} (epoch 1 above the scale)"),
        false => title.to_string(),
    };
    let last = last as u32;
    let epochs = 1..last.max(2);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(epochs, (lo - pad)..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(last.clamp(2, 10) as usize)
        .y_desc("nats per image")
        .label_style((FONT, 14))
        .draw()
        .map_err(plot_error)?;
    for &(name, points, color) in lines {
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(e, v)| (e as u32, v.min(top))),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// [`value_range`], refused where it spans more than a chart can draw: a span past f64 (losses of ±1e308) would
/// leave plotters looking for ticks forever.
fn drawable_range(title: &str, lines: &[Line], skip_first: bool) -> Result<(f64, f64)> {
    let (lo, hi) = value_range(lines, skip_first);
    anyhow::ensure!(
        (hi - lo).is_finite() && hi.abs() < 1e15 && lo.abs() < 1e15,
        "{title}: values from {lo:e} to {hi:e} are too large to draw"
    );
    Ok((lo, hi))
}

/// The lowest and highest finite value of `lines`, leaving out each line's first point when `skip_first`; `(0, 1)`
/// when there is none.
fn value_range(lines: &[Line], skip_first: bool) -> (f64, f64) {
    let values = lines
        .iter()
        .flat_map(|(_, l, _)| l.iter().skip(usize::from(skip_first)))
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// The PNG `grid`, a grid of `labels.len()` rows of tiles, with each row's label to its left.
pub fn label_rows(grid: &[u8], labels: &[String]) -> Result<Vec<u8>> {
    font()?;
    anyhow::ensure!(!labels.is_empty(), "no rows to label");
    let grid = image::load_from_memory(grid)?.to_luma8();
    let (label_w, (grid_w, height)) = (150, grid.dimensions());
    let width = label_w + grid_w;
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let row = height as f64 / labels.len() as f64;
        for (i, label) in labels.iter().enumerate() {
            let y = (row * (i as f64 + 0.5)) as i32 - 8;
            let text = Text::new(label.as_str(), (8, y), (FONT, 16));
            root.draw(&text).map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    for (x, y, p) in grid.enumerate_pixels() {
        let at = ((y * width + label_w + x) * 3) as usize;
        rgb[at..at + 3].fill(p.0[0]);
    }
    let img = image::RgbImage::from_raw(width, height, rgb).context("canvas size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

/// Ten distinguishable colours, one per class (Tableau 10).
const CLASS_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of class `label` in [`scatter_png`].
#[cfg(test)]
fn class_colour(label: u32) -> [u8; 3] {
    let c = CLASS_COLOURS[label as usize % 10];
    [c.0, c.1, c.2]
}

/// Points coloured by their class, with a legend of `class_names` and labelled axes.
pub fn scatter_png(
    points: &[(f64, f64)],
    labels: &[u32],
    class_names: &[String],
    axes: (&str, &str),
    title: &str,
) -> Result<Vec<u8>> {
    anyhow::ensure!(!points.is_empty(), "no points to plot");
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = points
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        let pad = ((hi - lo) * 0.05).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    render(900, 800, |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(range(|p| p.0), range(|p| p.1))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(axes.0)
            .y_desc(axes.1)
            .label_style((FONT, 14))
            .draw()
            .map_err(plot_error)?;
        for (class, name) in class_names.iter().enumerate() {
            let colour = CLASS_COLOURS[class % 10];
            let mine = points
                .iter()
                .zip(labels)
                .filter(|(_, &l)| l as usize == class);
            chart
                .draw_series(mine.map(|(&p, _)| Circle::new(p, 2, colour.filled())))
                .map_err(plot_error)?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .label_font((FONT, 14))
            .draw()
            .map_err(plot_error)?;
        Ok(())
    })
}

/// The first two principal components of the rows of `x [n, d]`: the projections of the centred rows on the two
/// directions of largest variance (power iteration with deflation on the covariance, in f64). With `d = 2` the rows
/// are returned as they are.
pub fn principal_plane(x: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let d = x.first().map_or(0, Vec::len);
    if d <= 2 {
        return x
            .iter()
            .map(|r| (r[0], r.get(1).copied().unwrap_or(0.0)))
            .collect();
    }
    let n = x.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let mut cov = vec![vec![0f64; d]; d];
    for r in x {
        for i in 0..d {
            let ci = r[i] - mean[i];
            for j in 0..d {
                cov[i][j] += ci * (r[j] - mean[j]) / n;
            }
        }
    }
    let first = top_eigenvector(&cov);
    let lambda: f64 = (0..d)
        .map(|i| first[i] * (0..d).map(|j| cov[i][j] * first[j]).sum::<f64>())
        .sum();
    for i in 0..d {
        for j in 0..d {
            cov[i][j] -= lambda * first[i] * first[j];
        }
    }
    let second = top_eigenvector(&cov);
    let project = |r: &Vec<f64>, v: &[f64]| (0..d).map(|j| (r[j] - mean[j]) * v[j]).sum::<f64>();
    x.iter()
        .map(|r| (project(r, &first), project(r, &second)))
        .collect()
}

/// The unit eigenvector of the largest eigenvalue of a symmetric positive semi-definite matrix, with its largest
/// component positive (so the picture does not flip from run to run).
fn top_eigenvector(m: &[Vec<f64>]) -> Vec<f64> {
    let d = m.len();
    // A start with a component along every direction.
    let mut v: Vec<f64> = (0..d).map(|i| 1.0 + 0.1 * i as f64).collect();
    for _ in 0..500 {
        let w: Vec<f64> = (0..d)
            .map(|i| (0..d).map(|j| m[i][j] * v[j]).sum())
            .collect();
        let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        v = w.iter().map(|a| a / norm).collect();
    }
    let big = v
        .iter()
        .copied()
        .fold(0.0, |a: f64, b| if b.abs() > a.abs() { b } else { a });
    v.iter().map(|a| if big < 0.0 { -a } else { *a }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_plane_finds_the_directions_of_largest_variance() {
        // Over a full period these three are uncorrelated with mean 0: variances 50, 4.5 and 0.005, along
        // (1, 1, 0)/√2, z and (1, −1, 0)/√2, around the centre (5, −2, 1).
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let t = |i: usize| 2.0 * std::f64::consts::PI * i as f64 / 200.0;
        let (a, b, c) = (
            |i| 10.0 * t(i).cos(),
            |i| 3.0 * t(i).sin(),
            |i| 0.1 * (2.0 * t(i)).cos(),
        );
        let x: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                vec![
                    5.0 + (a(i) + c(i)) * s,
                    -2.0 + (a(i) - c(i)) * s,
                    1.0 + b(i),
                ]
            })
            .collect();
        let plane = principal_plane(&x);
        let (sa, sb) = (
            plane[0].0.signum() * a(0).signum(),
            plane[50].1.signum() * b(50).signum(),
        );
        for (i, (p, q)) in plane.iter().enumerate() {
            assert!((p - sa * a(i)).abs() < 1e-6, "{i}: {p} vs {}", a(i));
            assert!((q - sb * b(i)).abs() < 1e-6, "{i}: {q} vs {}", b(i));
        }
        // Two dimensions are drawn as they are.
        let flat = vec![vec![1.0, 2.0], vec![3.0, -4.0]];
        assert_eq!(principal_plane(&flat), vec![(1.0, 2.0), (3.0, -4.0)]);
    }

    #[test]
    fn labelled_rows_keep_the_grid_to_the_right_of_their_labels() {
        let grid = image::GrayImage::from_fn(60, 40, |x, y| image::Luma([(x + y) as u8]));
        let mut png = Vec::new();
        grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let out = label_rows(&png, &["z3  KL 1.20".into(), "z0  KL 0.00".into()]).unwrap();
        let out = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(out.dimensions(), (210, 40));
        for (x, y, p) in grid.enumerate_pixels() {
            assert_eq!(out.get_pixel(150 + x, y).0, [p.0[0]; 3]);
        }
        // Some ink in the label column of each row, none in its last pixels.
        for rows in [0..20, 20..40] {
            let ink = rows.flat_map(|y| (0..150).map(move |x| (x, y)));
            let ink = ink
                .filter(|&(x, y)| out.get_pixel(x, y).0 != [255; 3])
                .count();
            assert!(ink > 20, "{ink} dark pixels");
        }
    }

    #[test]
    fn the_scale_leaves_out_the_first_epoch_when_asked() {
        let train = [(1.0, 160.0), (2.0, 110.0), (3.0, 105.0)];
        let test = [(1.0, 130.0), (2.0, 108.0), (3.0, f64::NAN)];
        let lines: [Line; 2] = [("train", &train, BLUE), ("test", &test, RED)];
        assert_eq!(value_range(&lines, true), (105.0, 110.0));
        assert_eq!(value_range(&lines, false), (105.0, 160.0));
        assert_eq!(value_range(&[], true), (0.0, 1.0));
    }

    #[test]
    fn charts_render_as_png_of_their_size() {
        let m = |epoch: usize, v: f64| EpochMetrics {
            epoch,
            train_loss: v,
            train_recon: v - 20.0,
            train_kl: 20.0,
            test_loss: v + 1.0,
            test_recon: v - 19.0,
            test_kl: 20.0,
            epoch_s: 1.0,
            images_per_s: 1.0,
        };
        let png = curves_png(&[m(1, 150.0), m(2, 120.0), m(3, 110.0)]).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1500, 450));
        // The train line is drawn in blue and the test line in red.
        let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
        assert!(has([0, 0, 255]) && has([255, 0, 0]));
        let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let points: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, (i * i) as f64)).collect();
        let labels: Vec<u32> = (0..100).map(|i| i % 10).collect();
        let png = scatter_png(&points, &labels, &names, ("z1", "z2"), "test").unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 800));
        assert!(
            (0..10).all(|l| img.pixels().any(|p| p.0 == class_colour(l))),
            "every class is drawn"
        );
        assert!(curves_png(&[]).is_err());
    }
}
