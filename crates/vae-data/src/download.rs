//! Fetching a dataset's published files: mirrors or a local folder, SHA-256 verification, atomic placement.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{DataError, DataFile, Dataset, Result};

/// The environment variable that replaces the built-in mirror list with a base URL (or a comma-separated list).
pub const MIRROR_ENV: &str = "VAE_DATA_MIRROR";

/// Where files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The public mirrors of [`Dataset::builtin_mirrors`].
    BuiltIn,
    /// Base URLs tried in order; a file is fetched from `<base>/<dataset>/<file name>`.
    Mirrors(Vec<String>),
    /// A local folder holding `<dir>/<dataset>/<file name>` or `<dir>/<file name>`.
    LocalDir(PathBuf),
}

impl Source {
    /// `--mirror` if given, else `VAE_DATA_MIRROR` if set, else the built-in list.
    pub fn from_mirror_flag_or_env(mirror: Option<&str>) -> Source {
        let from_env = std::env::var(MIRROR_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty());
        match mirror.map(str::to_string).or(from_env) {
            Some(list) => Source::Mirrors(
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            None => Source::BuiltIn,
        }
    }

    fn candidates(&self, dataset: Dataset, file: &str) -> Vec<String> {
        match self {
            Source::BuiltIn => dataset
                .builtin_mirrors()
                .iter()
                .map(|m| format!("{m}{file}"))
                .collect(),
            Source::Mirrors(bases) => bases
                .iter()
                .map(|b| format!("{}/{}/{file}", b.trim_end_matches('/'), dataset.name()))
                .collect(),
            Source::LocalDir(dir) => {
                let nested = dir.join(dataset.name()).join(file);
                let flat = dir.join(file);
                let pick = if nested.exists() || !flat.exists() {
                    nested
                } else {
                    flat
                };
                vec![pick.display().to_string()]
            }
        }
    }
}

/// How to download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// The data directory; files land in `<data_dir>/<dataset>/`.
    pub data_dir: PathBuf,
    /// Where to get them.
    pub source: Source,
    /// Connect and read timeout per request.
    pub timeout: Duration,
    /// Draw progress bars (only honoured when stderr is a terminal).
    pub progress: bool,
}

impl DownloadOptions {
    /// Defaults: the given directory, mirrors from `VAE_DATA_MIRROR` or built in, 30 s timeouts, progress bars on.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            source: Source::from_mirror_flag_or_env(None),
            timeout: Duration::from_secs(30),
            progress: true,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was already there with the right checksum; nothing was fetched.
    AlreadyVerified,
    /// It was fetched from this URL (or copied from this path) and verified.
    Fetched(String),
}

/// The SHA-256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(DataError::io(path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(DataError::io(path))?;
    Ok(hex::encode(h.finalize()))
}

/// The folder a dataset's files live in.
pub fn dataset_dir(data_dir: &Path, dataset: Dataset) -> PathBuf {
    data_dir.join(dataset.name())
}

/// Checks that all the files of `dataset` are in `<data_dir>/<dataset>/` with their published SHA-256, fetching
/// nothing. The first problem is the error: a missing file, or one whose bytes are not the published ones.
pub fn verify(data_dir: &Path, dataset: Dataset) -> Result<()> {
    verify_files(data_dir, dataset, &dataset.files())
}

/// [`verify`] for the test split's files only ([`Dataset::test_files`]), for the commands that read nothing else.
pub fn verify_test(data_dir: &Path, dataset: Dataset) -> Result<()> {
    verify_files(data_dir, dataset, &dataset.test_files())
}

/// Checks `files` of `dataset` as [`verify`] describes.
fn verify_files(data_dir: &Path, dataset: Dataset, files: &[DataFile]) -> Result<()> {
    let dir = dataset_dir(data_dir, dataset);
    for file in files {
        let path = dir.join(file.name);
        if path.is_dir() {
            return Err(DataError::NotAFile { path });
        }
        if !path.is_file() {
            return Err(DataError::Missing {
                path,
                dataset: dataset.name().to_string(),
            });
        }
        let actual = sha256_file(&path)?;
        if actual != file.sha256 {
            return Err(DataError::Unverified {
                path,
                expected: file.sha256.into(),
                actual,
            });
        }
    }
    Ok(())
}

/// Makes sure all the files of `dataset` are in `<data_dir>/<dataset>/` with their published checksums, fetching
/// whatever is missing or wrong. Each file is written to a temporary file, verified, then renamed into place, so a
/// failed or interrupted download never leaves a bad file under the real name.
pub fn download(dataset: Dataset, opts: &DownloadOptions) -> Result<Vec<(DataFile, Outcome)>> {
    let dir = dataset_dir(&opts.data_dir, dataset);
    std::fs::create_dir_all(&dir).map_err(DataError::io(&dir))?;
    sweep_stale_parts(&dir);
    let agent = http::agent(opts.timeout);
    let mut report = Vec::new();
    for file in dataset.files() {
        let dest = dir.join(file.name);
        if dest.is_file() {
            let actual = sha256_file(&dest)?;
            if actual == file.sha256 {
                tracing::info!(file = %dest.display(), "already present and verified");
                report.push((file, Outcome::AlreadyVerified));
                continue;
            }
            tracing::warn!(
                "{}: present but not the published file (sha256 {actual}); replacing it",
                dest.display()
            );
        }
        let mut attempts = Vec::new();
        let mut fetched = None;
        'sources: for url in opts.source.candidates(dataset, file.name) {
            // One retry for failures that may be transient; a 4xx or a wrong checksum will not get better.
            for attempt in 0..2 {
                match fetch_verified(&agent, &url, &file, &dest, opts) {
                    Ok(()) => {
                        fetched = Some(url);
                        break 'sources;
                    }
                    Err(e @ DataError::NoRoom { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!("{e}");
                        let transient = matches!(
                            e,
                            DataError::Connect { .. }
                                | DataError::Timeout { .. }
                                | DataError::Transfer { .. }
                        ) || matches!(e, DataError::Http { status, .. } if status >= 500);
                        attempts.push(e.to_string());
                        if !transient || attempt == 1 {
                            break;
                        }
                    }
                }
            }
        }
        match fetched {
            Some(url) => report.push((file, Outcome::Fetched(url))),
            None => {
                return Err(DataError::AllSourcesFailed {
                    file: file.name.to_string(),
                    attempts,
                })
            }
        }
    }
    Ok(report)
}

/// Fetches `url` into a temporary file beside `dest`, hashing as it goes, and moves it into place only if the
/// hash is the one `file` names.
fn fetch_verified(
    agent: &http::Agent,
    url: &str,
    file: &DataFile,
    dest: &Path,
    opts: &DownloadOptions,
) -> Result<()> {
    let dir = dest.parent().expect("dest is inside the dataset dir");
    let prefix = format!(".{}.", file.name);
    let (_pending, mut tmp) = vae_model::Pending::create(|| {
        vae_model::temp_file_builder()
            .prefix(&prefix)
            .suffix(".part")
            .tempfile_in(dir)
    })
    .map_err(DataError::io(dir))?;
    let (mut reader, len): (Box<dyn Read>, Option<u64>) = match &opts.source {
        Source::LocalDir(_) => {
            let f = File::open(url).map_err(DataError::io(url))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        }
        _ => http::open(agent, url)?,
    };
    tracing::info!(%url, "fetching {}", file.name);
    let bar = progress_bar(opts.progress, len, file.name);
    let tmp_path = tmp.path().to_path_buf();
    let to = (&mut tmp, tmp_path.as_path());
    let actual = copy_hashing(&mut reader, to, url, (dir, file), bar.as_ref())?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if actual != file.sha256 {
        // Dropping `tmp` deletes it: the bad bytes never reach `dest`.
        return Err(DataError::Checksum {
            file: file.name.into(),
            url: url.into(),
            expected: file.sha256.into(),
            actual,
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| write_error(dir, file, tmp.path(), e))?;
    tmp.persist(dest).map_err(|e| DataError::Io {
        path: dest.to_path_buf(),
        error: e.error,
    })?;
    tracing::info!(file = %dest.display(), "verified sha256 {}", &file.sha256[..12]);
    Ok(())
}

/// Copies `reader` (the download of `url`) to `tmp`, the file at `tmp_path` in `dir`, advancing the progress bar;
/// returns the hex SHA-256 of what was copied.
fn copy_hashing(
    reader: &mut dyn Read,
    (tmp, tmp_path): (&mut impl Write, &Path),
    url: &str,
    (dir, file): (&Path, &DataFile),
    bar: Option<&indicatif::ProgressBar>,
) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                return Err(DataError::Timeout {
                    url: url.into(),
                    msg: e.to_string(),
                })
            }
            Err(e) => {
                return Err(DataError::Transfer {
                    url: url.into(),
                    msg: e.to_string(),
                })
            }
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| write_error(dir, file, tmp_path, e))?;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A failed write: a full disk is named as such (no other mirror can help), anything else by the file.
fn write_error(dir: &Path, file: &DataFile, tmp: &Path, error: std::io::Error) -> DataError {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    if matches!(error.kind(), StorageFull | QuotaExceeded | FileTooLarge) {
        DataError::NoRoom {
            dir: dir.to_path_buf(),
            file: file.name.to_string(),
            error,
        }
    } else {
        DataError::Io {
            path: tmp.to_path_buf(),
            error,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// The HTTP client, behind the `http` feature (on by default). Without it (a build that leaves out the TLS stack,
/// such as the macOS type-check on Linux) only `Source::LocalDir` works.
#[cfg(feature = "http")]
mod http {
    use std::io::Read;
    use std::time::Duration;

    use super::is_timeout;
    use crate::{DataError, Result};

    pub type Agent = ureq::Agent;

    pub fn agent(timeout: Duration) -> Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .build()
    }

    /// The response body and its announced length.
    pub fn open(agent: &Agent, url: &str) -> Result<(Box<dyn Read>, Option<u64>)> {
        let resp = agent.get(url).call().map_err(|e| http_error(url, e))?;
        let len = resp.header("Content-Length").and_then(|v| v.parse().ok());
        Ok((Box::new(resp.into_reader()), len))
    }

    fn http_error(url: &str, e: ureq::Error) -> DataError {
        match e {
            ureq::Error::Status(status, _) => DataError::Http {
                url: url.into(),
                status,
            },
            ureq::Error::Transport(t) => {
                let msg = t.to_string();
                let timed_out = std::error::Error::source(&t)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .is_some_and(is_timeout);
                match t.kind() {
                    _ if timed_out => DataError::Timeout {
                        url: url.into(),
                        msg,
                    },
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                        DataError::Connect {
                            url: url.into(),
                            msg,
                        }
                    }
                    _ => DataError::Transfer {
                        url: url.into(),
                        msg,
                    },
                }
            }
        }
    }
}

#[cfg(not(feature = "http"))]
mod http {
    use std::io::Read;
    use std::time::Duration;

    use crate::{DataError, Result};

    pub type Agent = ();

    pub fn agent(_timeout: Duration) -> Agent {}

    pub fn open(_agent: &Agent, url: &str) -> Result<(Box<dyn Read>, Option<u64>)> {
        Err(DataError::Transfer {
            url: url.into(),
            msg: "this build has no HTTP client (the `http` feature is off); use --from a local folder".into(),
        })
    }
}

fn progress_bar(enabled: bool, len: Option<u64>, name: &str) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .expect("static template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(name.to_string());
    Some(bar)
}

/// Removes `.part` files that interrupted downloads left. One still being written by another download is touched
/// every moment, so only those untouched for a minute go.
fn sweep_stale_parts(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        if name.starts_with('.') && name.ends_with(".part") && stale {
            let _ = std::fs::remove_file(entry.path());
            tracing::info!(
                "removed an interrupted download, {}",
                entry.path().display()
            );
        }
    }
}
