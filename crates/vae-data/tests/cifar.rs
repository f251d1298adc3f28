//! CIFAR-10's reader on small archives this test writes in the published layout (`cifar-10-batches-bin/` with five
//! training batches, a test batch and `batches.meta.txt`), hostile ones, and the download's checksum.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::TestServer;
use vae_data::{download, load_cifar_archive, DataError, Dataset, DownloadOptions, Source};

const NAMES: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

/// Record `i` of a batch: label `i % 10`, then 3072 bytes that differ per record and per plane.
fn record(batch: u8, i: usize) -> Vec<u8> {
    let mut r = vec![(i % 10) as u8];
    r.extend((0..3072).map(|k| (k as u8) ^ (i as u8).wrapping_mul(31) ^ batch.wrapping_mul(7)));
    r
}

fn batch(batch: u8, n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| record(batch, i)).collect()
}

/// A `.tar.gz` of `members` (name under `cifar-10-batches-bin/`, bytes), as the published archive holds them.
fn archive(path: &Path, members: &[(&str, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let full = format!("cifar-10-batches-bin/{name}");
        tar.append_data(&mut header, full, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// The five training batches of 3 records each, a test batch of 4 and the class names.
fn members() -> Members {
    let mut m: Vec<(&str, Vec<u8>)> = vec![("batches.meta.txt", NAMES.as_bytes().to_vec())];
    for (b, name) in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin"]
        .into_iter()
        .chain(["data_batch_4.bin", "data_batch_5.bin"])
        .enumerate()
    {
        m.push((name, batch(b as u8 + 1, 3)));
    }
    m.push(("test_batch.bin", batch(0, 4)));
    m.push(("readme.html", b"<p>ignored</p>".to_vec()));
    m
}

/// An archive's members: a name under `cifar-10-batches-bin/` and its bytes.
type Members = Vec<(&'static str, Vec<u8>)>;

fn without(name: &str) -> Members {
    members().into_iter().filter(|(n, _)| *n != name).collect()
}

fn with(name: &'static str, bytes: Vec<u8>) -> Members {
    let mut m = without(name);
    m.push((name, bytes));
    m
}

#[test]
fn the_batches_are_read_byte_for_byte_in_order_with_the_meta_files_names() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar.tar.gz");
    archive(&path, &members());
    let data = load_cifar_archive(&path, true).unwrap();
    assert_eq!(data.shape, vec![3, 32, 32]);
    assert_eq!(
        data.class_names,
        Dataset::Cifar10.class_names().map(String::from).to_vec()
    );
    assert_eq!(data.train_images.dims(), &[15, 3072]);
    assert_eq!(data.test_images.dims(), &[4, 3072]);
    let train: Vec<Vec<u8>> = data.train_images.to_vec2().unwrap();
    let labels: Vec<u32> = data.train_labels.to_vec1().unwrap();
    for (k, (image, label)) in train.iter().zip(&labels).enumerate() {
        let (b, i) = (k / 3 + 1, k % 3);
        assert_eq!(
            image.as_slice(),
            &record(b as u8, i)[1..],
            "training image {k}"
        );
        assert_eq!(*label, (i % 10) as u32);
    }
    let test: Vec<Vec<u8>> = data.test_images.to_vec2().unwrap();
    assert_eq!(test[3].as_slice(), &record(0, 3)[1..]);
    assert_eq!(data.test_labels.to_vec1::<u32>().unwrap(), vec![0, 1, 2, 3]);

    // The test split alone: nothing of the training batches is kept.
    let only_test = load_cifar_archive(&path, false).unwrap();
    assert_eq!(only_test.train_images.dim(0).unwrap(), 0);
    assert_eq!(only_test.test_images.to_vec2::<u8>().unwrap(), test);
}

/// Each broken archive is refused in one line that names the file and says what is wrong.
#[test]
fn broken_archives_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut wrong_label = batch(3, 3);
    wrong_label[3073] = 10;
    let cases: Vec<(&str, Members, &str)> = vec![
        (
            "no-test",
            without("test_batch.bin"),
            "no cifar-10-batches-bin/test_batch.bin",
        ),
        (
            "no-meta",
            without("batches.meta.txt"),
            "no cifar-10-batches-bin/batches.meta.txt",
        ),
        (
            "short",
            with("data_batch_2.bin", batch(2, 2)[..6000].to_vec()),
            "not a whole number of 3073-byte records",
        ),
        (
            "label",
            with("data_batch_3.bin", wrong_label),
            "label 10 of record 1 is past the 10 classes",
        ),
        (
            "names",
            with("batches.meta.txt", b"cat\ndog\n".to_vec()),
            "names 2 classes, CIFAR-10 has 10",
        ),
        (
            "empty",
            with("test_batch.bin", Vec::new()),
            "the test batches hold no images",
        ),
    ];
    for (name, members, expected) in cases {
        let path = tmp.path().join(format!("{name}.tar.gz"));
        archive(&path, &members);
        let msg = load_cifar_archive(&path, true).unwrap_err().to_string();
        assert!(
            msg.contains(expected) && msg.contains(&*path.to_string_lossy()),
            "{name}: {msg}"
        );
        assert!(!msg.contains('\n'), "{name}: {msg}");
    }
}

#[test]
fn a_truncated_archive_and_a_member_claiming_a_gigabyte_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.tar.gz");
    archive(&whole, &members());
    let bytes = std::fs::read(&whole).unwrap();
    let cut = tmp.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_cifar_archive(&cut, true).unwrap_err().to_string();
    assert!(msg.contains("not a readable .tar.gz archive"), "{msg}");

    // A header that claims 1 GiB, followed by a few bytes: refused from the header, nothing allocated.
    let mut header = tar::Header::new_gnu();
    header
        .set_path("cifar-10-batches-bin/test_batch.bin")
        .unwrap();
    header.set_size(1 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    let bomb = tmp.path().join("bomb.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&bomb).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(header.as_bytes()).unwrap();
    gz.write_all(&[0u8; 4096]).unwrap();
    gz.finish().unwrap();
    let msg = load_cifar_archive(&bomb, true).unwrap_err().to_string();
    assert!(msg.contains("claims 1073741824 bytes"), "{msg}");

    let msg = load_cifar_archive(&tmp.path().join("absent.tar.gz"), true)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("absent.tar.gz"), "{msg}");
}

/// The download checks CIFAR-10's archive against its published SHA-256 as it does MNIST's files: an archive of the
/// right layout but other bytes is not kept, and one placed by hand is refused when loaded.
#[test]
fn an_archive_that_is_not_the_published_one_is_refused() {
    let served = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(served.path().join("cifar10")).unwrap();
    let fake = served.path().join("cifar10/cifar-10-binary.tar.gz");
    archive(&fake, &members());
    let server = TestServer::serve_dir(served.path().to_path_buf());
    let out = tempfile::tempdir().unwrap();
    let opts = DownloadOptions {
        data_dir: out.path().to_path_buf(),
        source: Source::Mirrors(vec![server.base.clone()]),
        timeout: Duration::from_secs(5),
        progress: false,
    };
    let msg = download(Dataset::Cifar10, &opts).unwrap_err().to_string();
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains(Dataset::Cifar10.files()[0].sha256), "{msg}");
    assert_eq!(server.hits("/cifar10/cifar-10-binary.tar.gz"), 1);
    let left: Vec<_> = std::fs::read_dir(out.path().join("cifar10"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Placed by hand, it loads through load_cifar_archive, but not through load, which checks the bytes.
    std::fs::copy(&fake, out.path().join("cifar10/cifar-10-binary.tar.gz")).unwrap();
    let err = vae_data::load(out.path(), Dataset::Cifar10).unwrap_err();
    assert!(matches!(err, DataError::Unverified { .. }), "{err}");
    assert!(vae_data::load_test(out.path(), Dataset::Cifar10).is_err());
    std::fs::remove_file(out.path().join("cifar10/cifar-10-binary.tar.gz")).unwrap();
    let msg = vae_data::load(out.path(), Dataset::Cifar10)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("vae-train download --dataset cifar10"),
        "{msg}"
    );
}
