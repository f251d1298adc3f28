//! The on-disk format: safetensors with `state_dict` names and the config in the metadata.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use crate::reader::SafetensorsReader;
use crate::{Error, Result, Vae, VaeConfig};
use candle_core::{DType, Device, Tensor};

/// The `format` of a model of the first format's kind (a Bernoulli decoder): what every such model is written as,
/// so that it keeps its bytes.
pub const FORMAT: &str = "vae-candle/1";

/// The `format` of a model the first format cannot describe (another likelihood, its `sigma`).
pub const FORMAT_V2: &str = "vae-candle/2";

/// The format `cfg` is written in: [`FORMAT`] for a dense Bernoulli model of square grey images (no `input_shape`)
/// with ReLU or tanh, what the first format describes; else [`FORMAT_V2`].
pub fn format_of(cfg: &VaeConfig) -> &'static str {
    use crate::{Activation, Likelihood};
    let first_activation = matches!(cfg.activation, Activation::Relu | Activation::Tanh);
    match (cfg.likelihood, &cfg.input_shape, &cfg.conv) {
        (Likelihood::Bernoulli, None, None) if first_activation => FORMAT,
        _ => FORMAT_V2,
    }
}

/// Writes `bytes` to `path` so that `path` holds either its old content or all of the new, never a part: a temporary
/// file in the same directory, fsync, then rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (_pending, mut tmp) = Pending::create(|| temp_file_builder().tempfile_in(dir))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temporary-file builder whose files get the mode a plain `File::create` gives (0666 less the umask), not
/// tempfile's private 0600, which the rename would otherwise keep.
pub fn temp_file_builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(".tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b
}

/// Temporary files being written now, for [`remove_pending`] to delete when a signal ends the process (which
/// runs no destructor).
static PENDING: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A temporary file (or folder) named for [`remove_pending`] from its creation until this guard is dropped (after the rename
/// that publishes it, or its removal).
pub struct Pending(std::path::PathBuf);

impl Pending {
    /// Makes a temporary file or folder with `make` and names it as being written, both under the registry's lock:
    /// a signal that comes while it is made waits, and then sees it.
    ///
    /// Bind the result as `let (_pending, tmp)`, so that `tmp` (which deletes an unpublished file) drops first.
    pub fn create<T: AsRef<Path>>(
        make: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<(Self, T)> {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let made = make()?;
        let path = made.as_ref().to_path_buf();
        pending.push(path.clone());
        Ok((Self(path), made))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pending.iter().position(|p| *p == self.0) {
            pending.swap_remove(i);
        }
    }
}

/// Removes every temporary file (or folder) still being written: what a signal handler does before it exits.
///
/// The registry stays locked afterwards, so that no other thread starts a temporary file before the process exits:
/// call it only on the way out.
pub fn remove_pending() {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    for path in pending.iter() {
        match path.is_dir() {
            true => drop(std::fs::remove_dir_all(path)),
            false => drop(std::fs::remove_file(path)),
        }
    }
    std::mem::forget(pending);
}

/// Safetensors bytes whose header is in a fixed order (keys sorted), so that the same tensors and metadata are
/// always the same bytes. (`safetensors::serialize` takes the metadata as a `HashMap` and writes it in that map's
/// random order.)
pub fn safetensors_bytes(
    tensors: Vec<(String, Tensor)>,
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<u8>, safetensors::SafeTensorError> {
    let md: HashMap<String, String> = metadata.clone().into_iter().collect();
    let mut bytes = safetensors::serialize(tensors, Some(md))?;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote valid JSON");
    let mut sorted = BTreeMap::new();
    for (key, value) in header {
        // Nested objects (`__metadata__`, each tensor's entry) sorted too.
        let value = match value {
            serde_json::Value::Object(o) => {
                serde_json::to_value(o.into_iter().collect::<BTreeMap<_, _>>()).expect("JSON")
            }
            v => v,
        };
        sorted.insert(key, value);
    }
    let text = serde_json::to_vec(&sorted).expect("JSON");
    // The same entries in another order: the same length, so the data offsets stand; padding as safetensors pads.
    assert!(text.len() <= n, "re-ordered header is no longer");
    bytes[8..8 + text.len()].copy_from_slice(&text);
    bytes[8 + text.len()..8 + n].fill(b' ');
    Ok(bytes)
}

fn format_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl Vae {
    /// Saves the weights as f32 safetensors, with `format`, `config`, `dataset` and (when recorded) `binarize` and
    /// `data` in the metadata. The write is
    /// atomic, so a crash never leaves a half-written model in place of a good one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), format_of(self.config()).to_string());
        metadata.insert(
            "config".to_string(),
            serde_json::to_string(self.config()).expect("config serialises"),
        );
        metadata.insert(
            "dataset".to_string(),
            self.dataset().unwrap_or("unknown").to_string(),
        );
        if let Some(b) = self.binarize() {
            metadata.insert("binarize".to_string(), b.to_string());
        }
        if let Some(d) = self.data_options() {
            metadata.insert("data".to_string(), d.to_string());
        }
        let tensors = self
            .named_tensors()
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)))
            .collect::<Result<Vec<_>>>()?;
        let bytes =
            safetensors_bytes(tensors, &metadata).map_err(|e| format_error(path, e.to_string()))?;
        write_atomic(path, &bytes).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Loads a model saved by [`Vae::save`], rebuilding it from the file's metadata alone.
    ///
    /// Everything is checked before a model is built: the format version, the config, and that the tensors are
    /// exactly those of the config (none missing, none extra) with the right shapes, dtype f32 and finite values.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Vae> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes(path, &bytes, device)
    }

    /// Loads a model from the bytes of a file [`Vae::save`] wrote, checked as [`Vae::load`] checks a file; errors
    /// name `path`, where the bytes came from (a browser's download, say).
    pub fn from_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<Vae> {
        let (tensors, config, md) = parse(path, bytes)?;
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let vae = Vae::from_tensors(&config, tensors, device)?;
        let mut vae = vae.with_provenance(md.get("dataset").cloned(), md.get("binarize").cloned());
        if let Some(d) = md.get("data") {
            vae.set_data_options(d.clone());
        }
        Ok(vae)
    }
}

/// The tensors, the config, and the whole metadata.
type Parsed = (HashMap<String, Tensor>, VaeConfig, HashMap<String, String>);

fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let reader = SafetensorsReader::new(path, bytes)
        .map_err(|e| format_error(path, format!("not a safetensors file ({e})")))?;
    let md = reader
        .metadata()
        .ok_or_else(|| format_error(path, "no __metadata__: not a vae-candle model"))?;
    let config = checked_config(path, md)?;
    let st = reader
        .tensors()
        .map_err(|e| format_error(path, format!("corrupt safetensors ({e})")))?;
    let expected = config.parameter_shapes();
    let expected_names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = st.first_unexpected(&expected_names) {
        return Err(format_error(
            path,
            format!("unexpected tensor `{extra}` for this config"),
        ));
    }
    let tensors = expected
        .iter()
        .map(|(name, shape)| Ok((name.clone(), st.tensor(name, shape)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    Ok((tensors, config, md.clone()))
}

/// The model's config from the metadata, once the format version is this build's and the config is valid.
fn checked_config(path: &Path, md: &HashMap<String, String>) -> Result<VaeConfig> {
    let format = md
        .get("format")
        .ok_or_else(|| format_error(path, "no `format` in metadata: not a vae-candle model"))?;
    if format != FORMAT && format != FORMAT_V2 {
        return Err(format_error(
            path,
            format!(
                "unknown format version {format:?} (this build reads {FORMAT:?} and {FORMAT_V2:?})"
            ),
        ));
    }
    let config_json = md
        .get("config")
        .ok_or_else(|| format_error(path, "no `config` in metadata"))?;
    let config: VaeConfig = serde_json::from_str(config_json)
        .map_err(|e| format_error(path, format!("bad `config` in metadata: {e}")))?;
    config
        .validate()
        .map_err(|e| format_error(path, e.to_string()))?;
    if format != format_of(&config) {
        let (want, likelihood) = (format_of(&config), config.likelihood.name());
        let shape = match &config.input_shape {
            Some(s) => format!(" of input_shape {s:?}"),
            None => String::new(),
        };
        return Err(format_error(
            path,
            format!("a {likelihood} decoder{shape} is format {want:?}, not {format:?}"),
        ));
    }
    Ok(config)
}
