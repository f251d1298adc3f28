//! CIFAR-10's binary version: the published `cifar-10-binary.tar.gz`, read in memory (nothing is extracted).
//!
//! Each batch file is a run of 3073-byte records: a label byte, then the red, green and blue planes of a 32×32
//! image, row by row: already the `[C, H, W]` order our examples use. `batches.meta.txt` names the classes, one
//! a line. Why not candle-datasets' reader of the extracted batches: `docs/data.md`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{DataError, Result};

/// Values per image: 3 planes of 32×32.
const IMAGE_BYTES: usize = 3 * 32 * 32;
/// A label byte, then the image.
const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// The folder the archive holds its files in.
const FOLDER: &str = "cifar-10-batches-bin";
/// The training batches, in order; then the test batch and the class names.
const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_BATCH: &str = "test_batch.bin";
const META: &str = "batches.meta.txt";
/// A member may hold at most this much: a real batch is 30.73 MB, so this bounds what a hostile archive can claim.
const MAX_MEMBER_BYTES: u64 = 64 << 20;

/// Examples and labels of one split, as the batches store them.
#[derive(Default)]
struct Split {
    images: Vec<u8>,
    labels: Vec<u32>,
}

/// The two splits and the class names of an archive: examples `[N, 3072]` u8, labels `[N]` u32.
pub(crate) struct Archive {
    pub train: (Tensor, Tensor),
    pub test: (Tensor, Tensor),
    pub class_names: Vec<String>,
}

/// Reads the archive at `path` as `vae_data::load_cifar_archive` describes.
pub(crate) fn read_archive(path: &Path, train: bool) -> Result<Archive> {
    let members = read_members(path, train)?;
    let take = |name: &str| -> Result<&Vec<u8>> {
        members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes)
            .ok_or_else(|| DataError::invalid(path, format!("no {FOLDER}/{name} in the archive")))
    };
    let class_names = class_names(path, take(META)?)?;
    let classes = class_names.len();
    let mut train_split = Split::default();
    if train {
        for name in TRAIN_BATCHES {
            records(path, name, take(name)?, classes, &mut train_split)?;
        }
    }
    let mut test_split = Split::default();
    records(
        path,
        TEST_BATCH,
        take(TEST_BATCH)?,
        classes,
        &mut test_split,
    )?;
    let empty = |what: &str| DataError::invalid(path, format!("the {what} batches hold no images"));
    if train && train_split.labels.is_empty() {
        return Err(empty("training"));
    }
    if test_split.labels.is_empty() {
        return Err(empty("test"));
    }
    Ok(Archive {
        train: tensors(train_split)?,
        test: tensors(test_split)?,
        class_names,
    })
}

/// The members this reader wants, by file name, read whole (each at most [`MAX_MEMBER_BYTES`]).
fn read_members(path: &Path, train: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let file = File::open(path).map_err(DataError::io(path))?;
    let gz = flate2::read::GzDecoder::new(BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let broken = |e: std::io::Error| {
        DataError::invalid(path, format!("not a readable .tar.gz archive ({e})"))
    };
    let mut members = Vec::new();
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let name = entry.path().map_err(broken)?.to_string_lossy().into_owned();
        let Some(file) = name.strip_prefix(&format!("{FOLDER}/")) else {
            continue;
        };
        let wanted = file == META || file == TEST_BATCH || (train && TRAIN_BATCHES.contains(&file));
        if !wanted || !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.size();
        if size > MAX_MEMBER_BYTES {
            let msg = format!(
                "{name} claims {size} bytes, more than a batch can hold ({MAX_MEMBER_BYTES})"
            );
            return Err(DataError::invalid(path, msg));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(broken)?;
        members.push((file.to_string(), bytes));
    }
    Ok(members)
}

/// The class names of `batches.meta.txt`: its non-empty lines, trimmed.
fn class_names(path: &Path, meta: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(meta)
        .map_err(|_| DataError::invalid(path, format!("{FOLDER}/{META} is not UTF-8 text")))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != 10 {
        let msg = format!(
            "{FOLDER}/{META} names {} classes, CIFAR-10 has 10",
            names.len()
        );
        return Err(DataError::invalid(path, msg));
    }
    Ok(names)
}

/// Appends the records of batch `name` to `split`, checking their length and labels.
fn records(path: &Path, name: &str, bytes: &[u8], classes: usize, split: &mut Split) -> Result<()> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        let msg = format!(
            "{FOLDER}/{name}: {} bytes is not a whole number of {RECORD_BYTES}-byte records",
            bytes.len()
        );
        return Err(DataError::invalid(path, msg));
    }
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0] as usize;
        if label >= classes {
            let msg = format!(
                "{FOLDER}/{name}: label {label} of record {i} is past the {classes} classes"
            );
            return Err(DataError::invalid(path, msg));
        }
        split.labels.push(label as u32);
        split.images.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// A split as tensors: examples `[N, 3072]` u8, labels `[N]` u32.
fn tensors(split: Split) -> Result<(Tensor, Tensor)> {
    let n = split.labels.len();
    let images = Tensor::from_vec(split.images, (n, IMAGE_BYTES), &Device::Cpu)?;
    let labels = Tensor::from_vec(split.labels, n, &Device::Cpu)?;
    Ok((images, labels))
}
