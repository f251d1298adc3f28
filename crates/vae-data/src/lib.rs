//! MNIST-style datasets for the VAE: download with SHA-256 verification, checked loading (the IDX files are
//! decoded in memory), and seeded mini-batches.
//!
//! The `http` feature (on by default) brings the HTTP client for mirrors; without it, [`download`] copies from a
//! local folder only ([`Source::LocalDir`]).
//!
//! ```no_run
//! use vae_data::{download, load, Dataset, DownloadOptions};
//! let opts = DownloadOptions::new("data"); // honours VAE_DATA_MIRROR
//! download(Dataset::Mnist, &opts)?;
//! let data = load("data".as_ref(), Dataset::Mnist)?;
//! assert_eq!(data.train_images.dims(), &[60000, 784]);
//! # Ok::<(), vae_data::DataError>(())
//! ```

#![warn(missing_docs)]

mod batch;
mod dataset;
mod download;
mod error;
pub mod idx;
mod load;

pub use batch::{Batch, Batcher, Batches, Binarize};
pub use dataset::{DataFile, Dataset, FILE_NAMES};
pub use download::{
    dataset_dir, download, sha256_file, verify, verify_test, DownloadOptions, Outcome, Source,
    MIRROR_ENV,
};
pub use error::{DataError, Result};
pub use load::{load, load_dir, load_test, unit_grey, unit_pixels, MnistData};
