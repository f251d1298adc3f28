use std::path::PathBuf;

/// Everything that can go wrong getting or reading a dataset. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A local file could not be read, written or renamed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, and deliberately not a `source()`, so a chain prints it once).
        error: std::io::Error,
    },
    /// The data directory's disk would not take a file (full, over quota or over a size limit). Another source
    /// cannot help, so the download stops here; nothing half-written is left.
    #[error("{}: no room to write {file} ({error}); free some space and download again", dir.display())]
    NoRoom {
        /// The dataset directory.
        dir: PathBuf,
        /// The file being written.
        file: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The bytes fetched do not have the published SHA-256; nothing was kept.
    #[error("{file}: checksum mismatch for {url}: expected sha256 {expected}, got {actual}")]
    Checksum {
        /// The file name.
        file: String,
        /// Where the bytes came from.
        url: String,
        /// The published hash.
        expected: String,
        /// The hash of what arrived.
        actual: String,
    },
    /// The server answered with an HTTP error status.
    #[error("{url}: HTTP {status}")]
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// No connection could be made (refused, unreachable, DNS).
    #[error("{url}: cannot connect ({msg})")]
    Connect {
        /// The URL.
        url: String,
        /// The reason.
        msg: String,
    },
    /// The server stopped answering.
    #[error("{url}: timed out ({msg})")]
    Timeout {
        /// The URL.
        url: String,
        /// The reason.
        msg: String,
    },
    /// Any other transfer failure.
    #[error("{url}: transfer failed ({msg})")]
    Transfer {
        /// The URL.
        url: String,
        /// The reason.
        msg: String,
    },
    /// Every source was tried for a file and each failed.
    #[error("{file}: every source failed: {}", attempts.join("; "))]
    AllSourcesFailed {
        /// The file name.
        file: String,
        /// One line per failed attempt.
        attempts: Vec<String>,
    },
    /// The IDX content is malformed.
    #[error("{}: {msg}", path.display())]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A dataset file is not there; the message says how to get it.
    #[error("{}: missing; run `vae-train download --dataset {dataset}` (--mirror URL or --from DIR to fetch it elsewhere), or `vae-train train --download`", path.display())]
    Missing {
        /// The expected file.
        path: PathBuf,
        /// The dataset it belongs to.
        dataset: String,
    },
    /// A file in the data directory is not the published one.
    #[error("{}: not the published file (sha256 {actual}, expected {expected}); `vae-train download` or `vae-train train --download` replaces it", path.display())]
    Unverified {
        /// The file.
        path: PathBuf,
        /// The published hash.
        expected: String,
        /// Its hash.
        actual: String,
    },
    /// A directory stands where a dataset file should be.
    #[error("{}: is a directory, expected the dataset's published file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A folder, picture or cache whose content cannot be used.
    #[error("{}: {msg}", path.display())]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A dataset name that is not one of [`crate::Dataset::ALL`], `folder:PATH` or `npy:PATH`.
    #[error(
        "unknown dataset `{0}` (expected mnist, fashion-mnist, cifar10, folder:PATH or npy:PATH)"
    )]
    UnknownDataset(String),
    /// A binarisation name that is not `none`, `static` or `dynamic`.
    #[error("unknown binarisation `{0}` (expected none, static or dynamic)")]
    UnknownBinarize(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
        let path = path.into();
        move |error| DataError::Io { path, error }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> DataError {
        DataError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn idx(path: impl Into<PathBuf>, msg: impl Into<String>) -> DataError {
        DataError::Idx {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
