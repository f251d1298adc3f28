//! The real MNIST and Fashion-MNIST files, served from the product's data directory on 127.0.0.1 and fetched through
//! `VAE_DATA_MIRROR`, then loaded and checked against the published counts.

mod common;

use candle_core::Tensor;
use common::{data_dir, TestServer};
use vae_data::{download, load, Dataset, DownloadOptions, Source, MIRROR_ENV};

/// How many of each label a label tensor holds: `counts[k]` is the number of `k`s, up to the largest label.
fn label_counts(labels: &Tensor) -> candle_core::Result<Vec<usize>> {
    let labels = labels.to_vec1::<u32>()?;
    let mut counts = vec![0usize; labels.iter().max().map_or(0, |&m| m as usize + 1)];
    for l in labels {
        counts[l as usize] += 1;
    }
    Ok(counts)
}

const MNIST_TRAIN: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

#[test]
fn both_datasets_download_through_the_mirror_variable_and_load_with_published_counts() {
    let server = TestServer::serve_dir(data_dir());
    // The only test in this binary, so setting the variable races with nothing.
    std::env::set_var(MIRROR_ENV, &server.base);
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = DownloadOptions::new(tmp.path());
    assert_eq!(opts.source, Source::Mirrors(vec![server.base.clone()]));
    opts.progress = false;

    for dataset in Dataset::IDX {
        download(dataset, &opts).unwrap();
        let d = load(tmp.path(), dataset).unwrap();
        assert_eq!(d.shape, [1, 28, 28]);
        assert_eq!(d.train_images.dims(), &[60000, 784]);
        assert_eq!(d.test_images.dims(), &[10000, 784]);
        for images in [&d.train_images, &d.test_images] {
            let lo = images.min_all().unwrap().to_scalar::<u8>().unwrap();
            let hi = images.max_all().unwrap().to_scalar::<u8>().unwrap();
            assert_eq!((lo, hi), (0, 255), "{dataset}");
        }
        let (train, test) = (
            label_counts(&d.train_labels).unwrap(),
            label_counts(&d.test_labels).unwrap(),
        );
        match dataset {
            Dataset::Mnist => {
                assert_eq!(train, MNIST_TRAIN);
                assert_eq!(test, MNIST_TEST);
            }
            Dataset::FashionMnist => {
                assert_eq!(train, [6000; 10]);
                assert_eq!(test, [1000; 10]);
            }
            Dataset::Cifar10 => unreachable!("not one of Dataset::IDX"),
        }
    }
    assert_eq!(server.total_hits(), 8);
    std::env::remove_var(MIRROR_ENV);
}
