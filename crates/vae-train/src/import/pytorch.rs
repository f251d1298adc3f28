//! A PyTorch file (`torch.save`: a zip holding `<archive>/data.pkl` and one `<archive>/data/<key>` entry per
//! storage) read so that no file can take the process down.
//!
//! Candle's unpickler builds the objects, after our walk over its opcodes (`scan.rs`) has bounded their depth and
//! number; the rest is ours, because Candle's `read_pth_tensor_info` indexes tuples without checking their length (a panic on a
//! short `_rebuild_tensor_v2`), allocates whatever shape a file declares, and gives up on a checkpoint whose
//! `state_dict` sits under any key but the first one it tries. Upstream should check those lengths and shapes too.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Layout, Tensor};
use zip::read::{ArchiveOffset, Config};
use zip::ZipArchive;

/// The most bytes of weights (and of pickle) one file may hold: far above any VAE, far below the machine.
pub const MAX_BYTES: u64 = 1 << 30;

/// The keys of a checkpoint dict under which a `state_dict` is looked for, in order.
const STATE_DICT_KEYS: [&str; 2] = ["state_dict", "model_state_dict"];

/// Where one tensor's values are: its storage entry in the zip, and how to read them from it.
struct TensorEntry {
    name: String,
    dtype: DType,
    layout: Layout,
    storage: String,
    storage_len: usize,
}

/// Every tensor of the `state_dict` in the PyTorch file at `path`, by name; any failure is one line.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // torch.save never prepends data; a known offset of 0 also avoids the zip crate's search for one, which
    // misreads some valid archives.
    let config = Config {
        archive_offset: ArchiveOffset::Known(0),
    };
    let mut zip = ZipArchive::with_config(config, BufReader::new(file))
        .or_else(|_| ZipArchive::new(BufReader::new(File::open(path)?)))
        .context("not a PyTorch file (a zip of pickles)")?;
    let pickle_name = pickle_entry(&zip)?;
    let archive = pickle_name
        .strip_suffix("data.pkl")
        .unwrap_or("")
        .to_string();
    let pickle = read_entry(&mut zip, &pickle_name, None)?;
    super::scan::scan(&pickle).map_err(|e| anyhow::anyhow!("{pickle_name}: {e}"))?;
    let mut stack = Stack::empty();
    let found = stack
        .read_loop(&mut pickle.as_slice())
        .and_then(|()| stack.finalize())
        .and_then(|root| entries(root, &archive))
        .map_err(|e| anyhow::anyhow!("{pickle_name}: {}", one_line(&e.to_string())))?;
    found
        .into_iter()
        .map(|entry| Ok((entry.name.clone(), tensor(&mut zip, &entry)?)))
        .collect()
}

/// The name of the archive's one `data.pkl`.
fn pickle_entry(zip: &ZipArchive<BufReader<File>>) -> Result<String> {
    let mut found = zip
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"));
    let name = found
        .next()
        .context("no data.pkl in the archive")?
        .to_string();
    ensure!(
        found.next().is_none(),
        "more than one data.pkl in the archive"
    );
    Ok(name)
}

/// The bytes of entry `name`, at most `want` of them where given (else the whole entry), within [`MAX_BYTES`].
fn read_entry(
    zip: &mut ZipArchive<BufReader<File>>,
    name: &str,
    want: Option<u64>,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .with_context(|| format!("the archive has no `{name}`"))?;
    let size = entry.size();
    let want = want.unwrap_or(size);
    ensure!(
        want <= size,
        "`{name}` holds {size} bytes where the pickle says {want}"
    );
    ensure!(
        want <= MAX_BYTES,
        "`{name}` declares {want} bytes; at most {MAX_BYTES} are read"
    );
    // Grown as the bytes arrive, so a size the entry only claims is never allocated.
    let mut bytes = Vec::new();
    entry
        .take(want)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read `{name}`"))?;
    ensure!(
        bytes.len() as u64 == want,
        "`{name}` ends after {} of its {want} bytes",
        bytes.len()
    );
    Ok(bytes)
}

/// The tensors of the pickled object: a `state_dict`, or a checkpoint dict holding one.
fn entries(root: Object, archive: &str) -> candle_core::Result<Vec<TensorEntry>> {
    let root = match root {
        // A scripted module's pickle wraps its dict in a `__torch__.Module` build.
        Object::Build { callable, args } => match *callable {
            Object::Reduce { callable, .. } if is_class(&callable, "__torch__", "Module") => *args,
            other => Object::Build {
                callable: Box::new(other),
                args,
            },
        },
        other => other,
    };
    let Object::Dict(items) = root else {
        candle_core::bail!("the pickle holds no dict of tensors")
    };
    let found = tensors_of(&items, archive)?;
    if !found.is_empty() {
        return Ok(found);
    }
    for key in STATE_DICT_KEYS {
        let inner = items
            .iter()
            .find(|(k, _)| matches!(k, Object::Unicode(s) if s == key));
        if let Some((_, Object::Dict(inner))) = inner {
            return tensors_of(inner, archive);
        }
    }
    candle_core::bail!(
        "no tensors in the file's dict, nor under `state_dict` or `model_state_dict`"
    )
}

/// The tensors among a dict's values; other values (numbers, nested dicts) are left out.
fn tensors_of(items: &[(Object, Object)], archive: &str) -> candle_core::Result<Vec<TensorEntry>> {
    let mut found = Vec::new();
    for (key, value) in items {
        let Object::Unicode(name) = key else { continue };
        let Some(args) = rebuild_args(value) else {
            continue;
        };
        let entry = tensor_entry(name, args, archive)
            .map_err(|e| candle_core::Error::Msg(format!("tensor `{name}`: {e}")))?;
        found.push(entry);
    }
    Ok(found)
}

/// The arguments of `_rebuild_tensor_v2` in a tensor's pickled form, through a parameter or a subclass wrapper.
fn rebuild_args(value: &Object) -> Option<&[Object]> {
    let Object::Reduce { callable, args } = value else {
        return None;
    };
    let Object::Tuple(args) = args.as_ref() else {
        return None;
    };
    if is_class(callable, "torch._utils", "_rebuild_tensor_v2") {
        return Some(args);
    }
    if is_class(callable, "torch._utils", "_rebuild_parameter") {
        return rebuild_args(args.first()?);
    }
    if is_class(callable, "torch._tensor", "_rebuild_from_type_v2") {
        // (func, new_type, args, state): the tensor is `func(*args)`.
        return match (args.first(), args.get(2)) {
            (Some(func), Some(Object::Tuple(inner)))
                if is_class(func, "torch._utils", "_rebuild_tensor_v2") =>
            {
                Some(inner)
            }
            _ => None,
        };
    }
    None
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` checked into where the values are.
fn tensor_entry(name: &str, args: &[Object], archive: &str) -> Result<TensorEntry, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!(
            "_rebuild_tensor_v2 with {} arguments, not 4 or more",
            args.len()
        ));
    };
    let Object::PersistentLoad(storage) = storage else {
        return Err("its storage is not a persistent id".into());
    };
    // ("storage", <class FloatStorage>, key, location, numel)
    let Object::Tuple(storage) = storage.as_ref() else {
        return Err("its storage id is not a tuple".into());
    };
    let [_, Object::Class { class_name, .. }, Object::Unicode(key), _, numel, ..] =
        storage.as_slice()
    else {
        return Err("its storage id is not (\"storage\", class, key, location, size)".into());
    };
    let dtype = match class_name.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "LongStorage" => DType::I64,
        other => return Err(format!("storage type {other} is not read")),
    };
    let (dims, strides) = (usizes(size)?, usizes(stride)?);
    let (offset, storage_len) = (usize_of(offset)?, usize_of(numel)?);
    let layout = checked_layout(&dims, &strides, offset, storage_len, dtype)?;
    Ok(TensorEntry {
        name: name.to_string(),
        dtype,
        layout,
        storage: format!("{archive}data/{key}"),
        storage_len,
    })
}

/// The layout of a contiguous (C or Fortran order) tensor that lies inside its storage of `storage_len` values.
fn checked_layout(
    dims: &[usize],
    strides: &[usize],
    offset: usize,
    storage_len: usize,
    dtype: DType,
) -> Result<Layout, String> {
    if dims.len() != strides.len() {
        return Err(format!("{} dims but {} strides", dims.len(), strides.len()));
    }
    let numel = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("its shape overflows")?;
    let bytes = storage_len
        .checked_mul(dtype.size_in_bytes())
        .ok_or("its storage size overflows")?;
    if bytes as u64 > MAX_BYTES {
        return Err(format!(
            "its storage declares {bytes} bytes; at most {MAX_BYTES} are read"
        ));
    }
    if offset
        .checked_add(numel)
        .is_none_or(|end| end > storage_len)
    {
        return Err(format!(
            "shape {dims:?} at offset {offset} runs past its storage of {storage_len} values"
        ));
    }
    let layout = Layout::new(
        dims.into(),
        strides.to_vec(),
        offset * dtype.size_in_bytes(),
    );
    if !layout.is_contiguous() && !layout.is_fortran_contiguous() {
        return Err(format!(
            "strides {strides:?} of shape {dims:?} are not contiguous"
        ));
    }
    Ok(layout)
}

/// The tensor `entry` describes, read from its storage entry.
fn tensor(zip: &mut ZipArchive<BufReader<File>>, entry: &TensorEntry) -> Result<Tensor> {
    let size = entry.dtype.size_in_bytes();
    let bytes = read_entry(zip, &entry.storage, Some((entry.storage_len * size) as u64))
        .with_context(|| format!("tensor `{}`", entry.name))?;
    let dims = entry.layout.dims();
    let start = entry.layout.start_offset();
    let values = &bytes[start..start + entry.layout.shape().elem_count() * size];
    if dims.len() > 1 && !entry.layout.is_contiguous() {
        // Fortran order: the reversed shape in C order, transposed back.
        let reversed: Vec<usize> = dims.iter().rev().copied().collect();
        let t = Tensor::from_raw_buffer(values, entry.dtype, &reversed, &Device::Cpu)?;
        let order: Vec<usize> = (0..dims.len()).rev().collect();
        return Ok(t.permute(order)?.contiguous()?);
    }
    Ok(Tensor::from_raw_buffer(
        values,
        entry.dtype,
        dims,
        &Device::Cpu,
    )?)
}

fn is_class(obj: &Object, module: &str, class: &str) -> bool {
    matches!(obj, Object::Class { module_name, class_name } if module_name == module && class_name == class)
}

fn usize_of(obj: &Object) -> Result<usize, String> {
    let v = match obj {
        Object::Int(v) => *v as i64,
        Object::Long(v) => *v,
        other => return Err(format!("{} where a size belongs", kind(other))),
    };
    usize::try_from(v).map_err(|_| format!("a negative size {v}"))
}

fn usizes(obj: &Object) -> Result<Vec<usize>, String> {
    match obj {
        Object::Tuple(items) | Object::List(items) => items.iter().map(usize_of).collect(),
        other => Err(format!("{} where a shape belongs", kind(other))),
    }
}

/// A short name for an object's kind, for errors (never its contents, which can be huge).
fn kind(obj: &Object) -> &'static str {
    match obj {
        Object::Int(_) | Object::Long(_) => "an integer",
        Object::Float(_) => "a float",
        Object::Unicode(_) => "a string",
        Object::Tuple(_) | Object::List(_) => "a sequence",
        Object::Dict(_) => "a dict",
        _ => "an object",
    }
}

/// The first line of Candle's message, at most 200 characters (it can print a whole object).
fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    match line.chars().count() > 200 {
        true => format!("{}…", line.chars().take(200).collect::<String>()),
        false => line.to_string(),
    }
}
