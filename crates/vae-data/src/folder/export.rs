//! A dataset written out as a folder of PNG files in the layout [`crate::load_folder`] reads.

use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageEncoder};
use rayon::prelude::*;

use crate::{Data, DataError, Result};

/// Which examples [`export_folder`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportSplit {
    /// The training examples, as class folders directly under the output.
    Train,
    /// The test examples, as class folders directly under the output.
    Test,
    /// Both, under `train/` and `test/`, so the folder reads back with the same split.
    Both,
}

/// Writes `data`'s examples as PNG files `OUT[/train|/test]/<class>/<index>.png` (one folder per class, named
/// `<label>-<name>` so that sorted names keep the labels' order, or `<label>` where the name is the label; no class
/// folders for unlabelled data). The files are written into a temporary folder beside `out`, which is renamed to
/// `out` once whole; `out` must not exist or be empty. Returns how many pictures were written.
pub fn export_folder(data: &Data, out: &Path, split: ExportSplit) -> Result<usize> {
    ensure_empty_folder(out)?;
    if data.image_shape().is_none() {
        return Err(DataError::invalid(
            out,
            format!(
                "the examples are vectors of {:?} values, not pictures",
                data.shape
            ),
        ));
    }
    let name = out
        .file_name()
        .map_or("export".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_all(data, &tmp, split).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    if out.exists() {
        std::fs::remove_dir(out).map_err(DataError::io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        DataError::io(out)(e)
    })?;
    Ok(written)
}

/// Refuses an `out` that is a file or a folder with anything in it: what [`export_folder`] checks first, for a
/// caller to check before it loads anything.
pub fn ensure_empty_folder(out: &Path) -> Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(out) {
        if entries.next().is_some() {
            return Err(DataError::invalid(
                out,
                "not empty; export into a new or empty folder",
            ));
        }
    } else if out.exists() {
        return Err(DataError::invalid(out, "is not a folder"));
    }
    Ok(())
}

fn write_all(data: &Data, tmp: &Path, split: ExportSplit) -> Result<usize> {
    let shape = data.image_shape().expect("checked by export_folder");
    let parts: Vec<(PathBuf, &candle_core::Tensor, &candle_core::Tensor)> = match split {
        ExportSplit::Train => vec![(tmp.to_path_buf(), &data.train_images, &data.train_labels)],
        ExportSplit::Test => vec![(tmp.to_path_buf(), &data.test_images, &data.test_labels)],
        ExportSplit::Both => vec![
            (tmp.join("train"), &data.train_images, &data.train_labels),
            (tmp.join("test"), &data.test_images, &data.test_labels),
        ],
    };
    let mut written = 0;
    for (dir, images, labels) in parts {
        let images = images.to_dtype(candle_core::DType::U8)?.to_vec2::<u8>()?;
        let labels = labels.to_vec1::<u32>()?;
        let folders = class_folders(&dir, &data.class_names);
        // Only the classes this split has: a class folder without pictures is a folder the reader refuses.
        let mut present: Vec<u32> = labels.clone();
        present.sort_unstable();
        present.dedup();
        for f in present
            .iter()
            .filter_map(|&l| folders.get(l as usize))
            .chain([&dir])
        {
            std::fs::create_dir_all(f).map_err(DataError::io(f))?;
        }
        images
            .par_iter()
            .zip(&labels)
            .enumerate()
            .try_for_each(|(i, (px, &label))| {
                let folder = folders.get(label as usize).unwrap_or(&dir);
                write_png(&folder.join(format!("{i:05}.png")), px, shape)
            })?;
        written += images.len();
    }
    Ok(written)
}

/// One folder per class under `dir`, by label.
fn class_folders(dir: &Path, names: &[String]) -> Vec<PathBuf> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let clean: String = name
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            match *name == i.to_string() {
                true => dir.join(name),
                false => dir.join(format!("{i}-{clean}")),
            }
        })
        .collect()
}

/// One example (`[C, H, W]` planes) as a grey or RGB PNG.
fn write_png(path: &Path, px: &[u8], [c, h, w]: [usize; 3]) -> Result<()> {
    let (bytes, colour) = match c {
        1 => (px.to_vec(), ExtendedColorType::L8),
        _ => {
            let plane = h * w;
            let rgb = (0..plane)
                .flat_map(|i| (0..3).map(move |ch| px[ch * plane + i]))
                .collect();
            (rgb, ExtendedColorType::Rgb8)
        }
    };
    let file = std::fs::File::create(path).map_err(DataError::io(path))?;
    image::codecs::png::PngEncoder::new(std::io::BufWriter::new(file))
        .write_image(&bytes, w as u32, h as u32, colour)
        .map_err(|e| DataError::invalid(path, e.to_string()))
}
