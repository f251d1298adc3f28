//! Datasets for the VAE: MNIST, Fashion-MNIST and CIFAR-10 (download with SHA-256 verification, checked loading of
//! the IDX files and of CIFAR-10's archive in memory), folders of pictures of any size ([`load_folder`], decoded once and cached), NumPy arrays
//! ([`load_arrays`]), and seeded mini-batches.
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

mod arrays;
mod batch;
mod cifar;
mod dataset;
pub mod digitize;
mod download;
mod error;
mod folder;
pub mod idx;
mod load;
mod pictures;
mod source;

pub use arrays::{load_arrays, MAX_ARRAY_BYTES, MAX_CLASSES};
pub use batch::{Batch, Batcher, Batches, Binarize};
pub use dataset::{DataFile, Dataset, FILE_NAMES};
pub use download::{
    dataset_dir, download, sha256_file, verify, verify_test, DownloadOptions, Outcome, Source,
    MIRROR_ENV,
};
pub use error::{DataError, Result};
pub use folder::{
    cache_dir, decode_picture, ensure_empty_folder, export_folder, load_folder, read_picture,
    ExportSplit, FolderData, FolderOptions, MAX_SIDE,
};
pub use load::{load, load_cifar_archive, load_dir, load_test, unit_grey, unit_pixels, Data};
pub use pictures::{grid_png, picture_input, Shape, GRID_PAD};
pub use source::DataSource;
