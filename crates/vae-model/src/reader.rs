//! The checked reading of a safetensors file that [`Vae::load`](crate::Vae::load) and the trainer's checkpoints
//! share: its header and metadata first, then its tensors, each asked for by name and expected shape and handed
//! out only if it is f32 of that shape with finite values, then whatever was not asked for.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::{Error, Result};

/// A safetensors file whose header has been read: its metadata, and its tensors on demand.
///
/// It reads in the order a loader checks: [`new`](Self::new) parses the header alone (so that the metadata, a
/// format version or a config, can be checked before the tensor data is looked at), [`tensors`](Self::tensors)
/// then checks the whole file's layout, and [`CheckedTensors`] hands out tensors one by one.
///
/// ```
/// use candle_core::Device;
/// use vae_model::{SafetensorsReader, Vae, VaeConfig, VaeRng};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.safetensors");
/// let cfg = VaeConfig { hidden_dims: vec![8], latent_dim: 2, ..VaeConfig::mnist() };
/// let (vae, _) = Vae::init(&cfg, &mut VaeRng::seed_from(1), &Device::Cpu)?;
/// vae.save(&path)?;
///
/// let bytes = std::fs::read(&path)?;
/// let reader = SafetensorsReader::new(&path, &bytes)?;
/// assert_eq!(reader.metadata().unwrap()["format"], vae_model::FORMAT);
/// let tensors = reader.tensors()?;
/// let bias = tensors.tensor("decoder.out.bias", &[784])?;
/// assert_eq!(bias.dims(), &[784]);
/// // Asked for with another shape, it is refused, naming the file and the tensor.
/// let err = tensors.tensor("decoder.out.bias", &[10]).unwrap_err().to_string();
/// assert!(err.contains("model.safetensors: tensor `decoder.out.bias` has shape [784], expected [10]"));
/// // Every tensor that a list of expected names leaves out.
/// assert!(tensors.first_unexpected(&["decoder.out.bias"].into()).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SafetensorsReader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    metadata: Option<HashMap<String, String>>,
}

impl<'a> SafetensorsReader<'a> {
    /// Parses the header of `bytes`, the content of the file at `path` (which errors name). The error is the
    /// format's own, for the caller to say what the file failed to be.
    pub fn new(path: &'a Path, bytes: &'a [u8]) -> std::result::Result<Self, SafeTensorError> {
        let (_, meta) = SafeTensors::read_metadata(bytes)?;
        Ok(Self {
            path,
            bytes,
            metadata: meta.metadata().clone(),
        })
    }

    /// The file the bytes came from.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// The header's `__metadata__`, if it has one.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }

    /// The tensors, once the file's layout (every tensor's data within the file, none overlapping) is checked.
    pub fn tensors(&self) -> std::result::Result<CheckedTensors<'a>, SafeTensorError> {
        Ok(CheckedTensors {
            path: self.path,
            st: SafeTensors::deserialize(self.bytes)?,
        })
    }
}

/// The tensors of a [`SafetensorsReader`]'s file, each handed out checked.
pub struct CheckedTensors<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
}

impl CheckedTensors<'_> {
    /// The tensor `name` on the CPU, if the file holds it as f32 of `shape` with finite values; else what is
    /// wrong with it.
    pub fn check(&self, name: &str, shape: &[usize]) -> std::result::Result<Tensor, TensorProblem> {
        let view = self.st.tensor(name).map_err(|_| TensorProblem::Missing {
            name: name.to_string(),
        })?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(TensorProblem::Mismatch {
                name: name.to_string(),
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        let t = Tensor::from_raw_buffer(view.data(), DType::F32, shape, &Device::Cpu)?;
        if let Some((index, value)) = non_finite(&t)? {
            return Err(TensorProblem::NonFinite {
                name: name.to_string(),
                index,
                value,
            });
        }
        Ok(t)
    }

    /// [`check`](Self::check), a problem being an [`Error::Format`] that names the file and the tensor.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.check(name, shape).map_err(|problem| match problem {
            TensorProblem::Candle(e) => Error::Candle(e),
            problem => Error::Format {
                path: self.path.to_path_buf(),
                msg: problem.to_string(),
            },
        })
    }

    /// The name of a tensor in the file that `expected` does not hold, if there is one.
    pub fn first_unexpected(&self, expected: &BTreeSet<&str>) -> Option<String> {
        self.st
            .names()
            .into_iter()
            .find(|n| !expected.contains(n))
            .map(str::to_string)
    }
}

/// What is wrong with a tensor asked of [`CheckedTensors::check`]; its message names the tensor, not the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorProblem {
    /// The file has no tensor of that name.
    #[error("missing tensor `{name}`")]
    Missing {
        /// The tensor asked for.
        name: String,
    },
    /// Not f32, or not the expected shape (the message names the dtype if that is wrong, else the shape).
    #[error("{}", mismatch_message(name, *dtype, shape, expected))]
    Mismatch {
        /// The tensor.
        name: String,
        /// Its dtype in the file.
        dtype: Dtype,
        /// Its shape in the file.
        shape: Vec<usize>,
        /// The shape asked for.
        expected: Vec<usize>,
    },
    /// A NaN or an infinity.
    #[error("tensor `{name}` holds {value} at index {index}: a diverged or corrupt model")]
    NonFinite {
        /// The tensor.
        name: String,
        /// The flat index of the first non-finite value.
        index: usize,
        /// That value.
        value: f32,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn mismatch_message(name: &str, dtype: Dtype, shape: &[usize], expected: &[usize]) -> String {
    if dtype != Dtype::F32 {
        format!("tensor `{name}` has dtype {dtype:?}, expected F32")
    } else {
        format!("tensor `{name}` has shape {shape:?}, expected {expected:?}")
    }
}

/// The first non-finite value of an f32 tensor, if any, with its flat index.
pub fn first_non_finite(t: &Tensor) -> Result<Option<(usize, f32)>> {
    Ok(non_finite(t)?)
}

fn non_finite(t: &Tensor) -> candle_core::Result<Option<(usize, f32)>> {
    let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(v.into_iter().enumerate().find(|(_, x)| !x.is_finite()))
}
