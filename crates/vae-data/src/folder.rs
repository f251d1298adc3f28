//! `folder:PATH`: PNG and JPEG files in torchvision's `ImageFolder` layout, made into examples of one shape and
//! cached.
//!
//! Class subfolders are labels, named by the folder (sorted); a folder of pictures alone is unlabelled.
//! `PATH/train/` and `PATH/test/` give the split; otherwise a seeded share of the examples is held out. Each picture
//! is converted to the channels asked (grey ↔ RGB, alpha dropped), its shorter side resized to the image size and
//! the centre cropped; pictures of exactly that size keep their bytes. Decoding runs on all cores, once: the result
//! is cached under the data directory, keyed by the files' names, sizes and modification times and the settings.

mod cache;
mod export;
mod picture;
mod scan;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rayon::prelude::*;

pub use export::{ensure_empty_folder, export_folder, ExportSplit};
pub use picture::{decode_picture, picture_bytes, read_picture, MAX_SIDE};

use crate::{Data, DataError, Result};

/// How a folder's pictures become examples, as a preset's `[data]` and the flags give it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderOptions {
    /// The examples' side; absent, the shorter side of the first picture.
    pub image_size: Option<usize>,
    /// 1 (grey) or 3 (RGB); absent, those of the first picture.
    pub channels: Option<usize>,
    /// The share held out for testing where the folder has no `train/` and `test/`.
    pub test_fraction: f64,
    /// Seed of the held-out share's draw.
    pub seed: u64,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self {
            image_size: None,
            channels: None,
            test_fraction: 0.1,
            seed: 1,
        }
    }
}

/// The images of a folder, split and labelled, with the options resolved (`image_size` and `channels` set).
#[derive(Debug, Clone)]
pub struct FolderData {
    /// The examples.
    pub data: Data,
    /// The options with every size filled in: what a model file records to find the same examples again.
    pub options: FolderOptions,
}

/// Loads `root` as the module describes: from the cache in `cache_dir` when it holds these files with these
/// settings, else by decoding every picture (and caching the result). Unreadable pictures are skipped, their count
/// and first names logged; `strict` refuses the folder at the first instead.
pub fn load_folder(
    root: &Path,
    options: &FolderOptions,
    cache_dir: &Path,
    strict: bool,
) -> Result<FolderData> {
    check_options(root, options)?;
    let scan = scan::scan(root)?;
    let first = &scan.files[0].path;
    let (size, channels) = match (options.image_size, options.channels) {
        (Some(s), Some(c)) => (s, c),
        (s, c) => {
            let (side, grey) = picture::header(first).map_err(|m| DataError::invalid(first, m))?;
            (s.unwrap_or(side), c.unwrap_or(if grey { 1 } else { 3 }))
        }
    };
    let options = FolderOptions {
        image_size: Some(size),
        channels: Some(channels),
        ..options.clone()
    };
    let (decoded, cached) = match cache::read(cache_dir, &scan, size, channels)? {
        Some(d) => (d, true),
        None => (decode(&scan, size, channels)?, false),
    };
    decoded.report(root, strict)?;
    let data = split(root, &scan, &decoded, &options, vec![channels, size, size])?;
    // Only a folder that is used is cached: a refused one leaves the data directory as it was.
    if !cached {
        cache::write(cache_dir, &scan, size, channels, &decoded)?;
    }
    Ok(FolderData { data, options })
}

fn check_options(root: &Path, o: &FolderOptions) -> Result<()> {
    let bad = |msg: String| Err(DataError::invalid(root, msg));
    if !(o.test_fraction > 0.0 && o.test_fraction < 1.0) {
        return bad(format!(
            "--test-fraction is {}; it must be in (0, 1)",
            o.test_fraction
        ));
    }
    if let Some(c) = o.channels.filter(|c| *c != 1 && *c != 3) {
        return bad(format!(
            "--channels is {c}; pictures have 1 (grey) or 3 (RGB)"
        ));
    }
    if let Some(s) = o
        .image_size
        .filter(|s| !(1..=MAX_SIDE as usize).contains(s))
    {
        return bad(format!("--image-size is {s}; it must be in 1-{MAX_SIDE}"));
    }
    Ok(())
}

/// Every picture decoded, in scan order: the examples of those that could be read, and what went wrong with the
/// others.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// `[kept, C·H·W]` bytes, row-major.
    pixels: Vec<u8>,
    /// Index into the scan of each kept example.
    kept: Vec<usize>,
    /// `file: problem` of each picture skipped.
    skipped: Vec<String>,
    /// How many were skipped (`skipped` may hold only the first few of a cached run).
    skipped_count: usize,
}

/// How many skipped pictures a message names.
const NAMED_SKIPS: usize = 5;

impl Decoded {
    fn report(&self, root: &Path, strict: bool) -> Result<()> {
        if self.skipped_count == 0 {
            return Ok(());
        }
        let first = self.skipped.first().cloned().unwrap_or_default();
        if strict {
            return Err(DataError::invalid(
                root,
                format!("{first} (--strict refuses an unreadable picture)"),
            ));
        }
        if self.kept.is_empty() {
            return Err(DataError::invalid(
                root,
                format!(
                    "none of its {} pictures could be read; first: {first}",
                    self.skipped_count
                ),
            ));
        }
        tracing::warn!(
            "{}: skipped {} unreadable pictures: {}",
            root.display(),
            self.skipped_count,
            self.skipped.join("; ")
        );
        Ok(())
    }
}

fn decode(scan: &scan::Scan, size: usize, channels: usize) -> Result<Decoded> {
    let started = std::time::Instant::now();
    let results: Vec<std::result::Result<Vec<u8>, String>> = scan
        .files
        .par_iter()
        .map(|f| read_picture(&f.path, size, channels))
        .collect();
    let dim = channels * size * size;
    let mut d = Decoded {
        pixels: Vec::with_capacity(results.len() * dim),
        kept: Vec::with_capacity(results.len()),
        skipped: Vec::new(),
        skipped_count: 0,
    };
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(px) => {
                d.pixels.extend_from_slice(&px);
                d.kept.push(i);
            }
            Err(msg) => {
                if d.skipped.len() < NAMED_SKIPS {
                    d.skipped
                        .push(format!("{}: {msg}", scan.files[i].path.display()));
                }
                d.skipped_count += 1;
            }
        }
    }
    tracing::info!(
        "decoded {} pictures in {:.1} s",
        scan.files.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(d)
}

/// The kept examples as train and test tensors: by `train/` and `test/` where the folder has them, else a seeded
/// draw of `test_fraction` of them (rounded, at least one each side).
fn split(
    root: &Path,
    scan: &scan::Scan,
    d: &Decoded,
    options: &FolderOptions,
    shape: Vec<usize>,
) -> Result<Data> {
    let n = d.kept.len();
    let in_test: Vec<bool> = match scan.has_split {
        true => d.kept.iter().map(|&i| scan.files[i].test).collect(),
        false => held_out(n, options.test_fraction, options.seed),
    };
    let n_test = in_test.iter().filter(|t| **t).count();
    if n_test == 0 || n_test == n {
        let (side, how) = match n_test {
            0 => ("test", "no example"),
            _ => ("training", "no example"),
        };
        let why = match scan.has_split {
            true => format!("its {side} folder has no readable picture"),
            false => format!(
                "--test-fraction {} of {n} examples leaves {how} for the {side} split",
                options.test_fraction
            ),
        };
        return Err(DataError::invalid(root, why));
    }
    let dim: usize = shape.iter().product();
    let labels: Vec<u32> = d.kept.iter().map(|&i| scan.files[i].label).collect();
    let part = |test: bool| -> Result<(Tensor, Tensor)> {
        let rows: Vec<usize> = (0..n).filter(|&r| in_test[r] == test).collect();
        let mut px = Vec::with_capacity(rows.len() * dim);
        rows.iter()
            .for_each(|&r| px.extend_from_slice(&d.pixels[r * dim..(r + 1) * dim]));
        let ls: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
        let count = rows.len();
        Ok((
            Tensor::from_vec(px, (count, dim), &Device::Cpu)?,
            Tensor::from_vec(ls, count, &Device::Cpu)?,
        ))
    };
    let (train_images, train_labels) = part(false)?;
    let (test_images, test_labels) = part(true)?;
    Ok(Data {
        train_images,
        train_labels,
        test_images,
        test_labels,
        shape,
        class_names: scan.class_names.clone(),
    })
}

/// Which of `n` examples are held out for testing: `fraction` of them (rounded), drawn from `seed`.
pub(crate) fn held_out(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let n_test = ((n as f64 * fraction).round() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut vae_model::VaeRng::seed_from(seed));
    let mut test = vec![false; n];
    order[..n_test].iter().for_each(|&i| test[i] = true);
    test
}

/// The cache folder under a data directory.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache")
}
