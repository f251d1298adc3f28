//! Loading a downloaded dataset into tensors, decoded in memory.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::idx::{read_idx, Idx, IdxKind};
use crate::{dataset_dir, DataError, Dataset, Result, FILE_NAMES};

/// The class names of an IDX folder of unknown origin: its labels' digits.
fn digit_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// A dataset in memory, on the CPU: examples `[N, C·H·W]` as the files store them (u8 levels 0-255, a quarter of
/// the memory of f32; channel planes one after another) and labels `[N]` u32 below the number of classes.
/// [`unit_grey`] is what a model sees of a byte; [`Data::test_pixels`] and the [`crate::Batcher`] make f32 rows
/// from the bytes as they are needed.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training examples, `[60000, 784]` u8 for MNIST.
    pub train_images: Tensor,
    /// Training labels (all 0 where the data has no classes).
    pub train_labels: Tensor,
    /// Test examples, `[10000, 784]` u8 for MNIST.
    pub test_images: Tensor,
    /// Test labels.
    pub test_labels: Tensor,
    /// An example's shape: `[channels, height, width]` for images, `[D]` for vectors.
    pub shape: Vec<usize>,
    /// What each label means, by label; empty for data without classes.
    pub class_names: Vec<String>,
}

impl Data {
    /// Values per example, `C·H·W` (or `D`).
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// The examples' `[channels, height, width]`, or `None` for vectors.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        match self.shape[..] {
            [c, h, w] => Some([c, h, w]),
            _ => None,
        }
    }

    /// The first `n` test images (fewer if there are fewer), f32 in [0, 1], `[n, rows·cols]` on `device`.
    pub fn first_test_images(&self, n: usize, device: &Device) -> Result<Tensor> {
        let n = n.min(self.test_images.dim(0)?);
        self.test_pixels(0, n, device)
    }

    /// Test images `start..start + n`, f32 in [0, 1], `[n, rows·cols]` on `device`.
    pub fn test_pixels(&self, start: usize, n: usize, device: &Device) -> Result<Tensor> {
        unit_pixels(&self.test_images.narrow(0, start, n)?)?
            .to_device(device)
            .map_err(Into::into)
    }
}

/// A grey level as the models see it: `byte / 255` in f32 (0 → 0.0, 255 → exactly 1.0). The one definition of
/// that conversion: [`unit_pixels`] and the [`crate::Batcher`] give the same bits.
///
/// ```
/// assert_eq!(vae_data::unit_grey(0), 0.0);
/// assert_eq!(vae_data::unit_grey(255), 1.0);
/// assert!((vae_data::unit_grey(51) - 0.2).abs() < 1e-7);
/// ```
pub fn unit_grey(byte: u8) -> f32 {
    // Multiplying by the f32 reciprocal is what Candle's `t / 255.0` does, so both paths agree bit for bit.
    byte as f32 * (1.0f64 / 255.0) as f32
}

/// u8 grey levels (any shape) as f32 in [0, 1], by [`unit_grey`]; an f32 tensor is returned as it is.
pub fn unit_pixels(images: &Tensor) -> Result<Tensor> {
    if images.dtype() != DType::U8 {
        return Ok(images.to_dtype(DType::F32)?);
    }
    Ok((images.to_dtype(DType::F32)? / 255.0)?)
}

/// Loads `<data_dir>/<dataset>/`, after checking each file against its published SHA-256 (see [`crate::verify`]).
pub fn load(data_dir: &Path, dataset: Dataset) -> Result<Data> {
    crate::verify(data_dir, dataset)?;
    if !dataset.is_idx() {
        return load_cifar_archive(&archive_path(data_dir, dataset), true);
    }
    let mut data = load_dir(&dataset_dir(data_dir, dataset), dataset.name())?;
    data.class_names = dataset.class_names().map(String::from).to_vec();
    Ok(data)
}

/// Loads the test split of `<data_dir>/<dataset>/` only, after checking its two files (see [`crate::verify_test`]):
/// the training split of the answer is empty, so that the commands that read test images need nothing else.
pub fn load_test(data_dir: &Path, dataset: Dataset) -> Result<Data> {
    crate::verify_test(data_dir, dataset)?;
    if !dataset.is_idx() {
        return load_cifar_archive(&archive_path(data_dir, dataset), false);
    }
    let dir = dataset_dir(data_dir, dataset);
    let images = read_idx(&dir.join(FILE_NAMES[2]), IdxKind::Images)?;
    let labels = read_idx(&dir.join(FILE_NAMES[3]), IdxKind::Labels)?;
    if images.dims[0] != labels.dims[0] {
        let (n, m) = (labels.dims[0], images.dims[0]);
        let msg = format!("{n} labels for {m} images in {}", FILE_NAMES[2]);
        return Err(DataError::idx(dir.join(FILE_NAMES[3]), msg));
    }
    let (rows, cols) = (images.dims[1], images.dims[2]);
    Ok(Data {
        train_images: Tensor::zeros((0, rows * cols), DType::U8, &Device::Cpu)?,
        train_labels: Tensor::zeros(0, DType::U32, &Device::Cpu)?,
        test_images: pixels(images, rows * cols)?,
        test_labels: checked_labels(labels, &dir.join(FILE_NAMES[3]))?,
        shape: vec![1, rows, cols],
        class_names: dataset.class_names().map(String::from).to_vec(),
    })
}

/// Reads a CIFAR-10 binary archive at `path` (the published one, or any `.tar.gz` of the same layout with batches
/// of any whole number of records) into examples `[N, 3072]` u8 of shape `[3, 32, 32]`, labels below the number
/// of class names in `batches.meta.txt`. With `train` false the training batches are skipped (the split is
/// empty), for the commands that read the test set only. The checksum is [`load`]'s business, not this.
///
/// ```no_run
/// let data = vae_data::load_cifar_archive("data/cifar10/cifar-10-binary.tar.gz".as_ref(), true)?;
/// assert_eq!(data.shape, vec![3, 32, 32]);
/// assert_eq!(data.class_names[0], "airplane");
/// # Ok::<(), vae_data::DataError>(())
/// ```
pub fn load_cifar_archive(path: &Path, train: bool) -> Result<Data> {
    let archive = crate::cifar::read_archive(path, train)?;
    Ok(Data {
        train_images: archive.train.0,
        train_labels: archive.train.1,
        test_images: archive.test.0,
        test_labels: archive.test.1,
        shape: vec![3, 32, 32],
        class_names: archive.class_names,
    })
}

/// The one file of a dataset that is an archive (CIFAR-10's).
fn archive_path(data_dir: &Path, dataset: Dataset) -> std::path::PathBuf {
    dataset_dir(data_dir, dataset).join(dataset.files()[0].name)
}

/// Loads the four gzipped IDX files in `dir`. `name` is used in the hint of a "missing file" error.
///
/// Each file is checked and decompressed in memory (nothing is written to disk), exactly as candle-datasets' MNIST
/// reader would turn it into tensors. Counts must agree between images and labels, and labels must be digits 0–9.
pub fn load_dir(dir: &Path, name: &str) -> Result<Data> {
    for f in FILE_NAMES {
        let p = dir.join(f);
        if p.is_dir() {
            return Err(DataError::NotAFile { path: p });
        }
        if !p.is_file() {
            return Err(DataError::Missing {
                path: p,
                dataset: name.to_string(),
            });
        }
    }
    let mut files = Vec::with_capacity(4);
    for f in FILE_NAMES {
        let kind = if f.contains("images") {
            IdxKind::Images
        } else {
            IdxKind::Labels
        };
        files.push(read_idx(&dir.join(f), kind)?);
    }
    let dims: Vec<&[usize]> = files.iter().map(|f| f.dims.as_slice()).collect();
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
    let (rows, cols) = (dims[0][1], dims[0][2]);
    let mut files = files.into_iter();
    let mut next = || files.next().expect("four files");
    let train_images = pixels(next(), rows * cols)?;
    let train_labels = checked_labels(next(), &dir.join(FILE_NAMES[1]))?;
    let test_images = pixels(next(), rows * cols)?;
    let test_labels = checked_labels(next(), &dir.join(FILE_NAMES[3]))?;
    Ok(Data {
        train_images,
        train_labels,
        test_images,
        test_labels,
        shape: vec![1, rows, cols],
        class_names: digit_names(),
    })
}

/// Grey levels as stored, u8 `[count, pixels]`.
fn pixels(file: Idx, pixels: usize) -> Result<Tensor> {
    let count = file.dims[0];
    Ok(Tensor::from_vec(file.data, (count, pixels), &Device::Cpu)?)
}

fn checked_labels(file: Idx, path: &Path) -> Result<Tensor> {
    let v = file.data;
    if let Some(i) = v.iter().position(|&l| l > 9) {
        return Err(DataError::idx(
            path,
            format!("label {} at index {i} is not a class 0-9", v[i]),
        ));
    }
    let labels: Vec<u32> = v.into_iter().map(u32::from).collect();
    let n = labels.len();
    Ok(Tensor::from_vec(labels, n, &Device::Cpu)?)
}
