//! `checkpoint.safetensors`: weights, Adam moments and step, epoch, RNG position and the run config, written
//! atomically every epoch so `--resume` continues exactly where the run stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use vae_model::{RngState, Vae, VaeRng};

use serde::{Deserialize, Serialize};

use crate::eval::ElboSums;
use crate::{AdamState, RunConfig};

/// The `format` value of a checkpoint.
pub const CHECKPOINT_FORMAT: &str = "vae-candle-checkpoint/1";

/// What a checkpoint restores, checked against the run it resumes.
#[derive(Debug)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epoch: usize,
    /// The run's RNG, positioned after the last completed epoch.
    pub rng: RngState,
    /// The model's parameters, on the training device.
    pub model: Vae,
    /// The optimiser's step count and moments, in parameter order.
    pub adam: AdamState,
    /// Where an interrupted epoch stopped; `rng` is then the RNG at that epoch's start.
    pub partial: Option<Partial>,
}

/// How far an interrupted epoch got, so that resuming replays its draws and continues bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Batches (steps) done in the epoch.
    pub batches: usize,
    /// Their loss sums.
    pub sums: ElboSums,
    /// Seconds of training they took.
    pub secs: f64,
}

/// Writes a checkpoint (temp file, fsync, rename): `model.<name>` and `adam.{m,v}.<name>` tensors. `epoch` is the
/// number of epochs completed; with `partial`, `rng` is the RNG at the start of the interrupted epoch.
pub fn save(
    path: &Path,
    cfg: &RunConfig,
    epoch: usize,
    model: &Vae,
    adam: &AdamState,
    rng: &VaeRng,
    partial: Option<&Partial>,
) -> Result<()> {
    let state = rng.state();
    let mut md = BTreeMap::new();
    md.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    md.insert("config".to_string(), serde_json::to_string(cfg)?);
    md.insert("epoch".to_string(), epoch.to_string());
    md.insert("step".to_string(), adam.step.to_string());
    md.insert("rng_seed".to_string(), hex::encode(state.seed));
    md.insert("rng_stream".to_string(), state.stream.to_string());
    md.insert("rng_word_pos".to_string(), state.word_pos.to_string());
    if let Some(p) = partial {
        md.insert("partial".to_string(), serde_json::to_string(p)?);
    }
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let params = model.named_tensors();
    for ((name, t), (m, v)) in params.into_iter().zip(&adam.moments) {
        tensors.push((format!("adam.m.{name}"), m.to_device(&Device::Cpu)?));
        tensors.push((format!("adam.v.{name}"), v.to_device(&Device::Cpu)?));
        tensors.push((format!("model.{name}"), t.to_device(&Device::Cpu)?));
    }
    // The checksum covers the tensor data, so it is written over a placeholder of its own length once the data is
    // laid out: the header keeps its length and the data does not move.
    let placeholder = "0".repeat(64);
    md.insert("tensors_sha256".into(), placeholder.clone());
    let mut bytes = vae_model::safetensors_bytes(tensors, &md)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let sum = data_sha256(&bytes);
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let at = bytes[..header_end]
        .windows(64)
        .position(|w| w == placeholder.as_bytes())
        .expect("the placeholder is in the header");
    bytes[at..at + 64].copy_from_slice(sum.as_bytes());
    vae_model::write_atomic(path, &bytes)
        .with_context(|| format!("{}: cannot write checkpoint", path.display()))
}

/// Reads the checkpoint of a run of `cfg` onto `device`, checking everything before anything is used: the format, that it was
/// written under the same config (only the epoch count may differ), and that every tensor the model and its
/// optimiser need is there with its shape and dtype. Every problem is one error naming the file.
pub fn load(path: &Path, cfg: &RunConfig, device: &Device) -> Result<Checkpoint> {
    if !path.is_file() {
        bail!(
            "{}: no checkpoint to resume from (train without --resume first)",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: not a checkpoint ({e})", path.display()))?;
    let md = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        md.get(k).ok_or_else(|| {
            anyhow!(
                "{}: not a checkpoint (no `{k}` in metadata)",
                path.display()
            )
        })
    };
    if get("format")? != CHECKPOINT_FORMAT {
        bail!(
            "{}: unknown checkpoint format {:?} (expected {CHECKPOINT_FORMAT:?})",
            path.display(),
            get("format")?
        );
    }
    let saved: RunConfig = serde_json::from_str(get("config")?)
        .with_context(|| format!("{}: bad config", path.display()))?;
    if !cfg.resumable_from(&saved) {
        bail!(
            "{}: the checkpoint was written with a different config; resume with the same preset and flags \
             (only --epochs may change), or use another --out. checkpoint: {} now: {}",
            path.display(),
            serde_json::to_string(&saved)?,
            serde_json::to_string(cfg)?
        );
    }
    let num = |k: &str| -> Result<u128> {
        get(k)?
            .parse()
            .map_err(|_| anyhow!("{}: bad `{k}`", path.display()))
    };
    let seed: [u8; 32] = hex::decode(get("rng_seed")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{}: bad `rng_seed`", path.display()))?;
    let rng = RngState {
        seed,
        stream: num("rng_stream")? as u64,
        word_pos: num("rng_word_pos")?,
    };
    if let Some(want) = md.get("tensors_sha256") {
        let got = data_sha256(&bytes);
        if &got != want {
            bail!(
                "{}: corrupt checkpoint (tensor data sha256 {got}, written as {want})",
                path.display()
            );
        }
    }
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| anyhow!("{}: corrupt checkpoint ({e})", path.display()))?;
    let mut take = |name: String, shape: &[usize]| -> Result<Tensor> {
        let t = tensors
            .remove(&name)
            .ok_or_else(|| anyhow!("{}: missing tensor `{name}`", path.display()))?;
        if t.dtype() != DType::F32 || t.dims() != shape {
            bail!(
                "{}: tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                path.display(),
                t.dtype(),
                t.dims()
            );
        }
        if let Some((i, x)) = vae_model::first_non_finite(&t)? {
            bail!("{}: tensor `{name}` holds {x} at index {i}", path.display());
        }
        Ok(t)
    };
    let mut params = HashMap::new();
    let mut moments = Vec::new();
    for (name, shape) in cfg.model.parameter_shapes() {
        params.insert(name.clone(), take(format!("model.{name}"), &shape)?);
        let m = take(format!("adam.m.{name}"), &shape)?;
        moments.push((m, take(format!("adam.v.{name}"), &shape)?));
    }
    if let Some(extra) = tensors.keys().next() {
        bail!("{}: unexpected tensor `{extra}`", path.display());
    }
    let params = params
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(device)?)))
        .collect::<Result<_>>()?;
    let mut model = Vae::from_tensors(&cfg.model, params, device)?;
    model.set_dataset(cfg.dataset.name());
    let partial = match md.get("partial") {
        Some(p) => Some(
            serde_json::from_str(p)
                .with_context(|| format!("{}: bad `partial`", path.display()))?,
        ),
        None => None,
    };
    Ok(Checkpoint {
        partial,
        epoch: num("epoch")? as usize,
        rng,
        model,
        adam: AdamState {
            step: num("step")? as u64,
            moments,
        },
    })
}

/// SHA-256 of a safetensors file's tensor data (everything after the header), as hex.
fn data_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let n = bytes.get(..8).map_or(0, |b| {
        u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
    });
    let data = bytes.get(8usize.saturating_add(n)..).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(data))
}
