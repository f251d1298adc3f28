//! The IDX checks on small synthetic files written here, and each kind of bad input.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use vae_data::idx::{read_idx, IdxKind};
use vae_data::{load_dir, DataError, FILE_NAMES};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn images(n: u32, body: &[u8]) -> Vec<u8> {
    idx(2051, &[n, 2, 3], body)
}

fn labels(body: &[u8]) -> Vec<u8> {
    idx(2049, &[body.len() as u32], body)
}

/// Writes a complete small dataset (4 train and 2 test images of 2×3) and returns the folder.
fn write_set(dir: &Path, files: [Vec<u8>; 4]) {
    for (name, bytes) in FILE_NAMES.iter().zip(files) {
        std::fs::write(dir.join(name), gz(&bytes)).unwrap();
    }
}

fn good_files() -> [Vec<u8>; 4] {
    let train: Vec<u8> = (0..24).map(|i| (i * 10) as u8).collect();
    let test: Vec<u8> = vec![255; 12];
    [
        images(4, &train),
        labels(&[3, 1, 4, 1]),
        images(2, &test),
        labels(&[9, 0]),
    ]
}

fn err_of(r: Result<impl std::fmt::Debug, DataError>) -> String {
    let msg = r.unwrap_err().to_string();
    assert!(!msg.contains('\n'), "{msg}");
    msg
}

#[test]
fn a_good_synthetic_set_loads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), good_files());
    let d = load_dir(dir.path(), "synthetic").unwrap();
    assert_eq!(d.shape, [1, 2, 3]);
    assert_eq!(d.train_images.dims(), &[4, 6]);
    let px = d.train_images.to_vec2::<u8>().unwrap();
    assert_eq!(px[1][2], 80);
    assert_eq!(d.test_images.to_vec2::<u8>().unwrap()[1][5], 255);
    let unit = d.test_pixels(1, 1, &candle_core::Device::Cpu).unwrap();
    assert_eq!(unit.to_vec2::<f32>().unwrap()[0][5], 1.0);
    assert_eq!(
        d.first_test_images(9, &candle_core::Device::Cpu)
            .unwrap()
            .dims(),
        &[2, 6]
    );
    assert_eq!(d.train_labels.to_vec1::<u32>().unwrap(), vec![3, 1, 4, 1]);
    assert_eq!(d.test_labels.to_vec1::<u32>().unwrap(), vec![9, 0]);
    // The temporary decompressed copies are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
}

#[test]
fn wrong_magic_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = good_files();
    f[0] = idx(2049, &[4, 2, 3], &[0; 24]); // a labels magic on the images file
    write_set(dir.path(), f);
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(
        msg.contains("train-images-idx3-ubyte.gz") && msg.contains("wrong magic number 2049"),
        "{msg}"
    );
}

#[test]
fn truncated_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = good_files();
    f[2] = images(2, &[1; 11]);
    write_set(dir.path(), f);
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz")
            && msg.contains("truncated")
            && msg.contains("need 12"),
        "{msg}"
    );
}

#[test]
fn header_disagreeing_with_the_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = good_files();
    f[1] = idx(2049, &[3], &[3, 1, 4, 1]); // says 3 labels, holds 4
    write_set(dir.path(), f);
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("has more"),
        "{msg}"
    );
}

#[test]
fn a_header_claiming_four_billion_images_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.gz");
    std::fs::write(&path, gz(&idx(2051, &[4_000_000_000, 28, 28], &[0; 784]))).unwrap();
    let msg = err_of(read_idx(&path, IdxKind::Images));
    assert!(
        msg.contains("huge.gz") && msg.contains("4000000000"),
        "{msg}"
    );

    // Labels too, and the largest u32 in every dimension (whose product overflows u64).
    std::fs::write(&path, gz(&idx(2051, &[u32::MAX, u32::MAX, u32::MAX], &[]))).unwrap();
    err_of(read_idx(&path, IdxKind::Images));
}

#[test]
fn mismatched_image_and_label_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = good_files();
    f[3] = labels(&[9, 0, 1]);
    write_set(dir.path(), f);
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(
        msg.contains("t10k-labels-idx1-ubyte.gz") && msg.contains("3 labels for 2 images"),
        "{msg}"
    );
}

#[test]
fn labels_outside_zero_to_nine_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = good_files();
    f[1] = labels(&[3, 1, 12, 1]);
    write_set(dir.path(), f);
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(msg.contains("label 12 at index 2"), "{msg}");
}

#[test]
fn corrupt_gzip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), good_files());
    let p = dir.path().join(FILE_NAMES[0]);
    // Not gzip at all.
    std::fs::write(&p, b"plain text, no gzip header").unwrap();
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(
        msg.contains("train-images-idx3-ubyte.gz") && msg.contains("corrupt gzip"),
        "{msg}"
    );
    // A damaged deflate stream / CRC.
    let mut bytes = gz(&images(4, &(0..24).collect::<Vec<u8>>()));
    let n = bytes.len();
    bytes[n - 6] ^= 0xff; // inside the CRC32 trailer
    std::fs::write(&p, &bytes).unwrap();
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(msg.contains("corrupt gzip"), "{msg}");
    // A gzip cut short.
    std::fs::write(&p, &bytes[..n / 2]).unwrap();
    let msg = err_of(load_dir(dir.path(), "synthetic"));
    assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
}

#[test]
fn a_missing_file_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let msg = err_of(load_dir(dir.path(), "mnist"));
    assert!(
        msg.contains("train-images-idx3-ubyte.gz: missing")
            && msg.contains("vae-train download --dataset mnist"),
        "{msg}"
    );
}
