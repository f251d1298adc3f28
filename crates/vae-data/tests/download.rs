//! Download against servers this test starts on 127.0.0.1: good fetches, bad bytes, fallbacks, retries, skips.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{data_dir, TestServer};
use vae_data::{download, sha256_file, DataError, Dataset, DownloadOptions, Outcome, Source};

fn opts(data_dir: &Path, mirrors: &[&str]) -> DownloadOptions {
    DownloadOptions {
        data_dir: data_dir.to_path_buf(),
        source: Source::Mirrors(mirrors.iter().map(|s| s.to_string()).collect()),
        timeout: Duration::from_secs(5),
        progress: false,
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn good_fetch_then_skip_when_already_verified() {
    let server = TestServer::serve_dir(data_dir());
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(tmp.path(), &[&server.base]);

    let report = download(Dataset::Mnist, &o).unwrap();
    assert_eq!(report.len(), 4);
    for (file, outcome) in &report {
        assert_eq!(
            *outcome,
            Outcome::Fetched(format!("{}mnist/{}", server.base, file.name))
        );
        assert_eq!(
            sha256_file(&tmp.path().join("mnist").join(file.name)).unwrap(),
            file.sha256
        );
    }
    assert_eq!(server.total_hits(), 4);
    let mut names = leftovers(&tmp.path().join("mnist"));
    names.sort();
    assert_eq!(
        names.len(),
        4,
        "only the four files, no temporaries: {names:?}"
    );

    let again = download(Dataset::Mnist, &o).unwrap();
    assert!(again.iter().all(|(_, o)| *o == Outcome::AlreadyVerified));
    assert_eq!(
        server.total_hits(),
        4,
        "verified files are not fetched again"
    );
}

#[test]
fn stale_partial_downloads_are_swept_and_live_ones_kept() {
    let server = TestServer::serve_dir(data_dir());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let (stale, live) = (
        dir.join(".train-images-idx3-ubyte.gz.a1b2c3.part"),
        dir.join(".t10k-images-idx3-ubyte.gz.d4e5f6.part"),
    );
    std::fs::write(&stale, b"interrupted").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    let two_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_minutes_ago)
        .unwrap();
    download(Dataset::Mnist, &opts(tmp.path(), &[&server.base])).unwrap();
    assert!(
        !stale.exists(),
        "an interrupted download's leftover is removed"
    );
    assert!(
        live.exists(),
        "one touched a moment ago may still be written by another download"
    );
}

#[test]
fn wrong_bytes_are_refused_and_nothing_is_left_behind() {
    let server = TestServer::start(|_, _| (200, b"definitely not MNIST".to_vec()));
    let tmp = tempfile::tempdir().unwrap();
    let err = download(Dataset::Mnist, &opts(tmp.path(), &[&server.base])).unwrap_err();
    let msg = err.to_string();
    let file = "train-images-idx3-ubyte.gz";
    assert!(msg.contains(file), "{msg}");
    assert!(
        msg.contains(&format!("{}mnist/{file}", server.base)),
        "{msg}"
    );
    assert!(
        msg.contains(Dataset::Mnist.files()[0].sha256),
        "expected hash missing: {msg}"
    );
    let actual = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"definitely not MNIST"))
    };
    assert!(msg.contains(&actual), "actual hash missing: {msg}");
    assert!(!msg.contains('\n'));
    assert!(
        leftovers(&tmp.path().join("mnist")).is_empty(),
        "left behind: {:?}",
        leftovers(&tmp.path().join("mnist"))
    );
    // A checksum failure is not retried on the same mirror.
    assert_eq!(server.hits(&format!("/mnist/{file}")), 1);
}

#[test]
fn a_bad_file_in_place_is_replaced_by_a_verified_one() {
    let server = TestServer::serve_dir(data_dir());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), b"stale").unwrap();
    download(Dataset::Mnist, &opts(tmp.path(), &[&server.base])).unwrap();
    assert_eq!(
        sha256_file(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap(),
        Dataset::Mnist.files()[3].sha256
    );
}

#[test]
fn not_found_falls_back_to_the_next_mirror() {
    let dead = TestServer::start(|_, _| (404, b"gone".to_vec()));
    let good = TestServer::serve_dir(data_dir());
    let tmp = tempfile::tempdir().unwrap();
    let report = download(Dataset::Mnist, &opts(tmp.path(), &[&dead.base, &good.base])).unwrap();
    for (file, outcome) in &report {
        assert_eq!(
            *outcome,
            Outcome::Fetched(format!("{}mnist/{}", good.base, file.name))
        );
        assert_eq!(
            dead.hits(&format!("/mnist/{}", file.name)),
            1,
            "a 404 is not retried"
        );
    }
}

#[test]
fn server_errors_are_retried_once() {
    let root = data_dir();
    // Every file fails with 503 the first time, then succeeds.
    let flaky = TestServer::start(move |path, n| {
        if n == 1 {
            (503, b"busy".to_vec())
        } else {
            (
                200,
                std::fs::read(root.join(path.trim_start_matches('/'))).unwrap(),
            )
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    download(Dataset::Mnist, &opts(tmp.path(), &[&flaky.base])).unwrap();
    assert_eq!(flaky.total_hits(), 8);

    // Always 500: two tries, then a one-line error naming the file and the status.
    let broken = TestServer::start(|_, _| (500, b"boom".to_vec()));
    let tmp = tempfile::tempdir().unwrap();
    let msg = download(Dataset::Mnist, &opts(tmp.path(), &[&broken.base]))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte.gz") && msg.contains("HTTP 500"),
        "{msg}"
    );
    assert_eq!(broken.total_hits(), 2);
}

#[test]
fn refused_connection_and_timeout_have_clear_errors() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let err = download(
        Dataset::Mnist,
        &opts(tmp.path(), &[&format!("http://127.0.0.1:{port}/")]),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::AllSourcesFailed { ref attempts, .. } if attempts.len() == 2));
    assert!(err.to_string().contains("cannot connect"), "{err}");

    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut o = opts(tmp.path(), &[&format!("http://{addr}/")]);
    o.timeout = Duration::from_millis(300);
    let err = download(Dataset::Mnist, &o).unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    drop(listener);
}

#[test]
fn local_folder_source_is_verified_too() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), &[]);
    o.source = Source::LocalDir(data_dir());
    let report = download(Dataset::FashionMnist, &o).unwrap();
    assert!(report.iter().all(|(_, o)| matches!(o, Outcome::Fetched(_))));

    // A folder with a wrong file is refused the same way.
    let bad = tempfile::tempdir().unwrap();
    for f in vae_data::FILE_NAMES {
        std::fs::write(bad.path().join(f), b"nope").unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let mut o = opts(out.path(), &[]);
    o.source = Source::LocalDir(bad.path().to_path_buf());
    let msg = download(Dataset::Mnist, &o).unwrap_err().to_string();
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(leftovers(&out.path().join("mnist")).is_empty());
}
