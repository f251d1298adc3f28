//! `npy:PATH`: arrays saved by NumPy, `.npy` (one array of examples) or `.npz` (`x_train`, `x_test` and optional
//! `y_train`, `y_test`), read by candle-core once their headers are checked.
//!
//! `[N, D]` arrays are vectors (tabular data), `[N, H, W]` grey images and `[N, H, W, C]` images of 1 or 3
//! channels (made channel-first); u8 or f32. Labels are integers from 0, their classes named by number. A single
//! `.npy` has no labels, and a seeded `test_fraction` of it is held out.

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Data, DataError, Result};

/// The most bytes one array may hold: a header claiming more is refused before anything is allocated.
pub const MAX_ARRAY_BYTES: u64 = 16 << 30;

/// The most classes labels may name.
pub const MAX_CLASSES: usize = 10_000;

/// What an array's header says: its element type (as NumPy spells it) and shape.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    descr: String,
    shape: Vec<usize>,
}

/// Reads `path` (see the module) into examples split for training and testing; a `.npy` is split by
/// `test_fraction` drawn from `seed`.
pub fn load_arrays(path: &Path, test_fraction: f64, seed: u64) -> Result<Data> {
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let (train, test, labels) = match is_npz {
        true => read_npz(path)?,
        false => split_npy(path, test_fraction, seed)?,
    };
    let (train_images, shape) = examples(path, &train, "x_train")?;
    let (test_images, test_shape) = examples(path, &test, "x_test")?;
    if shape != test_shape {
        return Err(DataError::invalid(
            path,
            format!("x_test examples are {test_shape:?}, x_train's {shape:?}"),
        ));
    }
    for (name, t) in [("training", &train_images), ("test", &test_images)] {
        if t.dim(0)? == 0 {
            return Err(DataError::invalid(
                path,
                format!("the {name} split has no examples"),
            ));
        }
    }
    let (train_labels, test_labels, classes) = match labels {
        Some((a, b)) => {
            let (a, b) = (
                checked_labels(path, &a, "y_train", &train_images)?,
                checked_labels(path, &b, "y_test", &test_images)?,
            );
            let classes = a.iter().chain(&b).max().map_or(0, |m| *m as usize + 1);
            (a, b, classes)
        }
        None => (
            vec![0; train_images.dim(0)?],
            vec![0; test_images.dim(0)?],
            0,
        ),
    };
    let (n_train, n_test) = (train_labels.len(), test_labels.len());
    Ok(Data {
        train_images,
        train_labels: Tensor::from_vec(train_labels, n_train, &Device::Cpu)?,
        test_images,
        test_labels: Tensor::from_vec(test_labels, n_test, &Device::Cpu)?,
        shape,
        class_names: (0..classes).map(|c| c.to_string()).collect(),
    })
}

type Split = (Tensor, Tensor, Option<(Tensor, Tensor)>);

/// A single `.npy`'s examples, `test_fraction` of them held out by a draw from `seed`; no labels.
fn split_npy(path: &Path, test_fraction: f64, seed: u64) -> Result<Split> {
    let x = read_checked_npy(path)?;
    let n = x.dim(0)?;
    let in_test = crate::folder::held_out(n, test_fraction, seed);
    let pick = |test: bool| -> Result<Tensor> {
        let rows: Vec<u32> = (0..n as u32)
            .filter(|&r| in_test[r as usize] == test)
            .collect();
        let idx = Tensor::new(rows.as_slice(), &Device::Cpu)?;
        Ok(x.index_select(&idx, 0)?)
    };
    Ok((pick(false)?, pick(true)?, None))
}

fn read_npz(path: &Path) -> Result<Split> {
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| DataError::invalid(path, format!("not an .npz ({e})")))?;
    let mut present = Vec::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| DataError::invalid(path, format!("entry {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| DataError::invalid(path, format!("entry {i}: {e}")))?;
        let name = name.trim_end_matches(".npy").to_string();
        let declared = entry.size();
        let header = read_header(entry, path, &name)?;
        check_size(path, &name, &header, declared)?;
        present.push(name);
    }
    let has = |n: &str| present.iter().any(|p| p == n);
    for needed in ["x_train", "x_test"] {
        if !has(needed) {
            return Err(DataError::invalid(
                path,
                format!("no `{needed}` array (it holds {})", present.join(", ")),
            ));
        }
    }
    let names: Vec<&str> = match (has("y_train"), has("y_test")) {
        (true, true) => vec!["x_train", "x_test", "y_train", "y_test"],
        (false, false) => vec!["x_train", "x_test"],
        _ => {
            return Err(DataError::invalid(
                path,
                "has one of y_train and y_test; give both or neither",
            ))
        }
    };
    let mut arrays = Tensor::read_npz_by_name(path, &names)
        .map_err(|e| DataError::invalid(path, e.to_string()))?
        .into_iter();
    let mut next = || arrays.next().expect("one array per name");
    let (x_train, x_test) = (next(), next());
    let labels = (names.len() == 4).then(|| (next(), next()));
    Ok((x_train, x_test, labels))
}

/// A `.npy` whose header is checked against the file's size before candle-core reads it.
fn read_checked_npy(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let size = file.metadata().map_err(DataError::io(path))?.len();
    let header = read_header(file, path, "the array")?;
    check_size(path, "the array", &header, size)?;
    Tensor::read_npy(path).map_err(|e| DataError::invalid(path, e.to_string()))
}

fn read_header(mut r: impl Read, path: &Path, name: &str) -> Result<Header> {
    let bad = |msg: String| DataError::invalid(path, format!("{name}: {msg}"));
    let mut magic = [0u8; 10];
    r.read_exact(&mut magic)
        .map_err(|_| bad("too short for an .npy header".into()))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy array (no \\x93NUMPY magic)".into()));
    }
    let len = match magic[6] {
        1 => u16::from_le_bytes([magic[8], magic[9]]) as usize,
        2 | 3 => {
            let mut more = [0u8; 2];
            r.read_exact(&mut more)
                .map_err(|_| bad("truncated header".into()))?;
            u32::from_le_bytes([magic[8], magic[9], more[0], more[1]]) as usize
        }
        v => return Err(bad(format!(".npy version {v} is not 1, 2 or 3"))),
    };
    if len > 1 << 20 {
        return Err(bad(format!("a header of {len} bytes")));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|_| bad("truncated header".into()))?;
    parse_header(&String::from_utf8_lossy(&text)).map_err(bad)
}

/// The `descr` and `shape` of a header like `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`, parsed
/// as candle-core parses it (its top-level commas, its last key winning), so that the sizes checked are those
/// candle-core then allocates.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let text = text.trim_matches(|c: char| c == '{' || c == '}' || c == ',' || c.is_whitespace());
    let (mut parts, mut start, mut depth) = (Vec::new(), 0usize, 0i64);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    let mut map = std::collections::HashMap::new();
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let [key, value] = part.split(':').collect::<Vec<_>>()[..] else {
            return Err(format!("unreadable header entry `{part}`"));
        };
        let trim = |s: &str| {
            s.trim_matches(|c: char| c == '\'' || c.is_whitespace())
                .to_string()
        };
        map.insert(trim(key), trim(value));
    }
    if map.get("fortran_order").is_some_and(|v| v != "False") {
        return Err("Fortran order is not read; save with np.ascontiguousarray".into());
    }
    let descr = map.get("descr").ok_or("no descr in the header")?.clone();
    let dims = map.get("shape").ok_or("no shape in the header")?;
    let dims = dims.trim_matches(|c: char| c == '(' || c == ')' || c == ',');
    let shape = match dims.is_empty() {
        true => Vec::new(),
        false => dims
            .split(',')
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("shape entry `{}` is not a size", d.trim()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
    };
    Ok(Header { descr, shape })
}

/// The element size of the dtypes read, refusing the others by name.
fn item_size(descr: &str) -> std::result::Result<u64, String> {
    if descr.starts_with('>') {
        return Err(format!(
            "dtype {descr} is big-endian; save as little-endian"
        ));
    }
    match descr.trim_matches(|c: char| c == '=' || c == '<' || c == '|') {
        "B" | "u1" => Ok(1),
        "f" | "f4" | "i" | "i4" | "I" | "u4" => Ok(4),
        "q" | "i8" => Ok(8),
        other => Err(format!(
            "dtype {other} is not read (save examples as uint8 or float32, labels as int64)"
        )),
    }
}

fn check_size(path: &Path, name: &str, h: &Header, available: u64) -> Result<()> {
    let bad = |msg: String| Err(DataError::invalid(path, format!("{name}: {msg}")));
    let item = match item_size(&h.descr) {
        Ok(i) => i,
        Err(m) => return bad(m),
    };
    let bytes = h
        .shape
        .iter()
        .try_fold(item, |a, &d| a.checked_mul(d as u64));
    match bytes {
        Some(b) if b > MAX_ARRAY_BYTES => bad(format!(
            "shape {:?} is {b} bytes, past the limit of {MAX_ARRAY_BYTES}",
            h.shape
        )),
        Some(b) if b > available => bad(format!(
            "shape {:?} needs {b} bytes and the file holds {available}",
            h.shape
        )),
        Some(_) => Ok(()),
        None => bad(format!("shape {:?} overflows", h.shape)),
    }
}

/// `x` as rows of examples (u8, or finite f32) and the example's shape: `[D]`, or `[C, H, W]`.
fn examples(path: &Path, x: &Tensor, name: &str) -> Result<(Tensor, Vec<usize>)> {
    let bad = |msg: String| Err(DataError::invalid(path, format!("{name}: {msg}")));
    let x = match x.dtype() {
        DType::U8 | DType::F32 => x.clone(),
        other => return bad(format!("dtype {other:?}; examples are uint8 or float32")),
    };
    let (x, shape) = match *x.dims() {
        [_, d] => (x, vec![d]),
        [_, h, w] => (x, vec![1, h, w]),
        [_, h, w, c] if c == 1 || c == 3 => (x.permute((0, 3, 1, 2))?.contiguous()?, vec![c, h, w]),
        [_, _, _, c] => return bad(format!("{c} channels; images have 1 or 3")),
        ref dims => {
            return bad(format!(
                "shape {dims:?}; expected [N, D], [N, H, W] or [N, H, W, C]"
            ))
        }
    };
    let n = x.dim(0)?;
    let x = x.reshape((n, shape.iter().product::<usize>()))?;
    if x.dtype() == DType::F32 {
        let values = x.flatten_all()?.to_vec1::<f32>()?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            let d = x.dim(1)?;
            return bad(format!(
                "value {} at example {}, position {} is not finite",
                values[i],
                i / d,
                i % d
            ));
        }
    }
    Ok((x, shape))
}

fn checked_labels(path: &Path, y: &Tensor, name: &str, x: &Tensor) -> Result<Vec<u32>> {
    let bad = |msg: String| Err(DataError::invalid(path, format!("{name}: {msg}")));
    if y.rank() != 1 {
        return bad(format!(
            "shape {:?}; labels are one integer per example",
            y.dims()
        ));
    }
    let values: Vec<i64> = match y.dtype() {
        DType::U8 | DType::U32 | DType::I32 | DType::I64 => y.to_dtype(DType::I64)?.to_vec1()?,
        other => return bad(format!("dtype {other:?}; labels are integers")),
    };
    let n = x.dim(0)?;
    if values.len() != n {
        return bad(format!("{} labels for {n} examples", values.len()));
    }
    match values
        .iter()
        .position(|&v| !(0..MAX_CLASSES as i64).contains(&v))
    {
        Some(i) => bad(format!(
            "label {} at index {i} is not a class 0-{}",
            values[i],
            MAX_CLASSES - 1
        )),
        None => Ok(values.into_iter().map(|v| v as u32).collect()),
    }
}
