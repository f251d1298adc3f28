//! `checkpoint.safetensors`: weights, Adam moments and step, epoch, RNG position and the run config, written
//! atomically every epoch so `--resume` continues exactly where the run stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use vae_model::{CheckedTensors, RngState, SafetensorsReader, TensorProblem, Vae, VaeRng};

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
    let reader = SafetensorsReader::new(path, &bytes)
        .map_err(|e| anyhow!("{}: not a checkpoint ({e})", path.display()))?;
    let md = Metadata {
        path,
        map: reader.metadata().cloned().unwrap_or_default(),
    };
    md.check_run(cfg)?;
    let rng = md.rng()?;
    if let Some(want) = md.map.get("tensors_sha256") {
        let got = data_sha256(&bytes);
        if &got != want {
            bail!(
                "{}: corrupt checkpoint (tensor data sha256 {got}, written as {want})",
                path.display()
            );
        }
    }
    let (model, moments) = read_tensors(&reader, cfg, device)?;
    let partial = match md.map.get("partial") {
        Some(p) => Some(
            serde_json::from_str(p)
                .with_context(|| format!("{}: bad `partial`", path.display()))?,
        ),
        None => None,
    };
    Ok(Checkpoint {
        partial,
        epoch: md.num("epoch")? as usize,
        rng,
        model,
        adam: AdamState {
            step: md.num("step")? as u64,
            moments,
        },
    })
}

/// A checkpoint's metadata (empty if it has none), and the file, for errors.
struct Metadata<'a> {
    path: &'a Path,
    map: HashMap<String, String>,
}

impl Metadata<'_> {
    fn get(&self, k: &str) -> Result<&String> {
        self.map.get(k).ok_or_else(|| {
            anyhow!(
                "{}: not a checkpoint (no `{k}` in metadata)",
                self.path.display()
            )
        })
    }

    fn num(&self, k: &str) -> Result<u128> {
        self.get(k)?
            .parse()
            .map_err(|_| anyhow!("{}: bad `{k}`", self.path.display()))
    }

    /// The format is a checkpoint's, and the config one that `cfg` may resume.
    fn check_run(&self, cfg: &RunConfig) -> Result<()> {
        let path = self.path;
        if self.get("format")? != CHECKPOINT_FORMAT {
            bail!(
                "{}: unknown checkpoint format {:?} (expected {CHECKPOINT_FORMAT:?})",
                path.display(),
                self.get("format")?
            );
        }
        let saved: RunConfig = serde_json::from_str(self.get("config")?)
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
        Ok(())
    }

    /// The RNG's position.
    fn rng(&self) -> Result<RngState> {
        let seed: [u8; 32] = hex::decode(self.get("rng_seed")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow!("{}: bad `rng_seed`", self.path.display()))?;
        Ok(RngState {
            seed,
            stream: self.num("rng_stream")? as u64,
            word_pos: self.num("rng_word_pos")?,
        })
    }
}

/// The model, on `device`, and the Adam moments, in parameter order: every tensor checked, and none other in the
/// file.
fn read_tensors(
    reader: &SafetensorsReader,
    cfg: &RunConfig,
    device: &Device,
) -> Result<(Vae, Vec<(Tensor, Tensor)>)> {
    let path = reader.path();
    let tensors = reader
        .tensors()
        .map_err(|e| anyhow!("{}: corrupt checkpoint ({e})", path.display()))?;
    let mut names = Vec::new();
    let mut take = |name: String, shape: &[usize]| -> Result<Tensor> {
        let t = checked(&tensors, path, &name, shape)?;
        names.push(name);
        Ok(t)
    };
    let mut params = HashMap::new();
    let mut moments = Vec::new();
    for (name, shape) in cfg.model.parameter_shapes() {
        params.insert(name.clone(), take(format!("model.{name}"), &shape)?);
        let m = take(format!("adam.m.{name}"), &shape)?;
        moments.push((m, take(format!("adam.v.{name}"), &shape)?));
    }
    let expected: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    if let Some(extra) = tensors.first_unexpected(&expected) {
        bail!("{}: unexpected tensor `{extra}`", path.display());
    }
    let params = params
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(device)?)))
        .collect::<Result<_>>()?;
    let mut model = Vae::from_tensors(&cfg.model, params, device)?;
    model.set_dataset(cfg.dataset.to_string());
    Ok((model, moments))
}

/// The tensor `name`, if it is f32 of `shape` with finite values; else an error naming the file and the tensor.
fn checked(tensors: &CheckedTensors, path: &Path, name: &str, shape: &[usize]) -> Result<Tensor> {
    tensors.check(name, shape).map_err(|problem| match problem {
        TensorProblem::Missing { .. } => anyhow!("{}: missing tensor `{name}`", path.display()),
        TensorProblem::Mismatch {
            dtype, shape: got, ..
        } => anyhow!(
            "{}: tensor `{name}` is {dtype:?} {got:?}, expected F32 {shape:?}",
            path.display()
        ),
        TensorProblem::NonFinite { index, value, .. } => anyhow!(
            "{}: tensor `{name}` holds {value} at index {index}",
            path.display()
        ),
        TensorProblem::Candle(e) => e.into(),
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
