//! What `--dataset` names: a built-in dataset, or a folder of pictures.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::{DataError, Dataset};

/// Where a run's examples come from, as `--dataset` and a preset's `dataset` spell it: `mnist`, `fashion-mnist`,
/// `folder:PATH` or `npy:PATH`.
///
/// ```
/// use vae_data::{DataSource, Dataset};
/// assert_eq!("mnist".parse::<DataSource>().unwrap(), DataSource::Builtin(Dataset::Mnist));
/// let folder: DataSource = "folder:shirts".parse().unwrap();
/// assert_eq!(folder.to_string(), "folder:shirts");
/// assert!("folder:".parse::<DataSource>().is_err());
/// assert_eq!("npy:table.npz".parse::<DataSource>().unwrap().to_string(), "npy:table.npz");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataSource {
    /// MNIST or Fashion-MNIST, downloaded and verified.
    Builtin(Dataset),
    /// An `ImageFolder` layout of PNG and JPEG files (see [`crate::load_folder`]).
    Folder(PathBuf),
    /// NumPy arrays, `.npy` or `.npz` (see [`crate::load_arrays`]).
    Arrays(PathBuf),
}

impl DataSource {
    /// The built-in dataset, if it is one.
    pub fn builtin(&self) -> Option<Dataset> {
        match self {
            DataSource::Builtin(d) => Some(*d),
            DataSource::Folder(_) | DataSource::Arrays(_) => None,
        }
    }
}

impl From<Dataset> for DataSource {
    fn from(d: Dataset) -> Self {
        DataSource::Builtin(d)
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Builtin(d) => f.write_str(d.name()),
            DataSource::Folder(p) => write!(f, "folder:{}", p.display()),
            DataSource::Arrays(p) => write!(f, "npy:{}", p.display()),
        }
    }
}

impl FromStr for DataSource {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        let unknown = || DataError::UnknownDataset(s.to_string());
        match (s.strip_prefix("folder:"), s.strip_prefix("npy:")) {
            (Some(""), _) | (_, Some("")) => Err(unknown()),
            (Some(path), _) => Ok(DataSource::Folder(PathBuf::from(path))),
            (_, Some(path)) => Ok(DataSource::Arrays(PathBuf::from(path))),
            (None, None) => s.parse().map(DataSource::Builtin),
        }
    }
}

impl TryFrom<String> for DataSource {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self, DataError> {
        s.parse()
    }
}

impl From<DataSource> for String {
    fn from(d: DataSource) -> String {
        d.to_string()
    }
}
