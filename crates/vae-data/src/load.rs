//! Loading a downloaded dataset into tensors, through candle-datasets.

use std::path::Path;

use candle_core::{DType, Tensor};

use crate::idx::{decompress_idx, IdxKind};
use crate::{dataset_dir, DataError, Dataset, Result, FILE_NAMES};

/// A dataset in memory, on the CPU: images `[N, rows·cols]` f32 in [0, 1] and labels `[N]` u32 in 0..=9.
#[derive(Debug, Clone)]
pub struct MnistData {
    /// Training images, `[60000, 784]` for MNIST.
    pub train_images: Tensor,
    /// Training labels.
    pub train_labels: Tensor,
    /// Test images, `[10000, 784]` for MNIST.
    pub test_images: Tensor,
    /// Test labels.
    pub test_labels: Tensor,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// Loads `<data_dir>/<dataset>/`.
pub fn load(data_dir: &Path, dataset: Dataset) -> Result<MnistData> {
    load_dir(&dataset_dir(data_dir, dataset), dataset.name())
}

/// Loads the four gzipped IDX files in `dir`. `name` is used in the hint of a "missing file" error.
///
/// Each file is checked and decompressed into a temporary folder (removed afterwards), which candle-datasets then
/// reads. Counts must agree between images and labels, and labels must be digits 0–9.
pub fn load_dir(dir: &Path, name: &str) -> Result<MnistData> {
    for f in FILE_NAMES {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(DataError::Missing {
                path: p,
                dataset: name.to_string(),
            });
        }
    }
    let tmp = tempfile::TempDir::new_in(dir)
        .or_else(|_| tempfile::tempdir())
        .map_err(DataError::io(dir))?;
    let mut dims = Vec::new();
    for f in FILE_NAMES {
        let kind = if f.contains("images") {
            IdxKind::Images
        } else {
            IdxKind::Labels
        };
        let raw = tmp.path().join(f.trim_end_matches(".gz"));
        dims.push(decompress_idx(&dir.join(f), &raw, kind)?);
    }
    for (images, labels) in [(0, 1), (2, 3)] {
        if dims[images][0] != dims[labels][0] {
            return Err(DataError::idx(
                dir.join(FILE_NAMES[labels]),
                format!(
                    "{} labels for {} images in {}",
                    dims[labels][0], dims[images][0], FILE_NAMES[images]
                ),
            ));
        }
    }
    if dims[0][1..] != dims[2][1..] {
        return Err(DataError::idx(
            dir.join(FILE_NAMES[2]),
            format!(
                "test images are {:?}, training images {:?}",
                &dims[2][1..],
                &dims[0][1..]
            ),
        ));
    }
    let ds = candle_datasets::vision::mnist::load_dir(tmp.path())?;
    let train_labels = checked_labels(&ds.train_labels, &dir.join(FILE_NAMES[1]))?;
    let test_labels = checked_labels(&ds.test_labels, &dir.join(FILE_NAMES[3]))?;
    Ok(MnistData {
        train_images: ds.train_images,
        train_labels,
        test_images: ds.test_images,
        test_labels,
        rows: dims[0][1],
        cols: dims[0][2],
    })
}

fn checked_labels(labels: &Tensor, path: &Path) -> Result<Tensor> {
    let v = labels.to_vec1::<u8>()?;
    if let Some(i) = v.iter().position(|&l| l > 9) {
        return Err(DataError::idx(
            path,
            format!("label {} at index {i} is not a class 0-9", v[i]),
        ));
    }
    Ok(labels.to_dtype(DType::U32)?)
}

/// How many of each label a label tensor holds: `counts[k]` is the number of `k`s, up to the largest label.
pub fn label_counts(labels: &Tensor) -> Result<Vec<usize>> {
    let labels = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let mut counts = vec![0usize; labels.iter().max().map_or(0, |&m| m as usize + 1)];
    for l in labels {
        counts[l as usize] += 1;
    }
    Ok(counts)
}
