//! What a command may write and read, checked before any work: an output of a kind the command writes, that
//! replaces nothing but a file of its own kind, and inputs that are regular files (a FIFO would block the read).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The picture and array kinds a command writes, by extension, with the first bytes a file of that kind starts
/// with (a model, `.safetensors`, is recognised by loading it).
const KINDS: [(&str, &[u8]); 2] = [("png", b"\x89PNG\r\n\x1a\n"), ("npy", b"\x93NUMPY")];

/// Checks `path`, the output of `flag`, before anything is computed: it ends in one of `kinds` (`"png"`, `"npy"`,
/// `"safetensors"`), and where a file is there already it is a regular file of that kind (of any kind with
/// `force`, `--force`), so that a model, a checkpoint, a folder, a FIFO or a device is never replaced by a picture.
pub fn check_output(path: &Path, flag: &str, kinds: &[&str], force: bool) -> Result<()> {
    let shown = path.display();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !kinds.contains(&ext) {
        let names: Vec<String> = kinds.iter().map(|k| format!(".{k}")).collect();
        bail!(
            "{shown}: {flag} writes {}, by the file's extension",
            names.join(" or ")
        );
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{shown}: cannot check {flag}")),
    };
    if !meta.is_file() {
        bail!("{shown}: {flag} must be a regular file (or absent), and this is not one");
    }
    if force {
        return Ok(());
    }
    let magic = KINDS
        .iter()
        .find(|(k, _)| *k == ext)
        .map_or(&b""[..], |k| k.1);
    let mut start = vec![0u8; magic.len()];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut start));
    if ext == "safetensors" {
        if vae_model::Vae::load(path, &candle_core::Device::Cpu).is_err() {
            bail!("{shown}: holds something other than a model; {flag} would replace it (--force does)");
        }
    } else if meta.len() > 0 && (read.is_err() || start != magic) {
        bail!("{shown}: holds something other than a .{ext} file; {flag} would replace it (--force does)");
    }
    Ok(())
}

/// Two outputs of one command may not be one file.
pub fn check_distinct(a: &Path, a_flag: &str, b: &Path, b_flag: &str) -> Result<()> {
    // The folders resolved (links and `.` included), the names as given.
    let key = |p: &Path| {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (
            dir.canonicalize().ok(),
            p.file_name().map(|n| n.to_os_string()),
        )
    };
    let same = a == b || key(a) == key(b);
    if same {
        bail!("{}: {a_flag} and {b_flag} name the same file", a.display());
    }
    Ok(())
}

/// Checks `path`, an input of `flag`: where it exists, a regular file (a FIFO or a device would block or never end).
/// A missing file is left to the reader, which names it.
pub fn check_input(path: &Path, flag: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            bail!(
                "{}: {flag} must be a regular file, and this is not one",
                path.display()
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_replace_only_files_of_their_own_kind() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let png = at("a.png", b"\x89PNG\r\n\x1a\nrest");
        assert!(check_output(&png, "--out", &["png", "npy"], false).is_ok());
        assert!(check_output(&dir.path().join("new.npy"), "--out", &["png", "npy"], false).is_ok());
        let model_as_png = at("m.png", b"\x08\x00\x00\x00{}");
        let err = check_output(&model_as_png, "--out", &["png"], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.png") && err.contains("something other than a .png"),
            "{err}"
        );
        assert!(
            check_output(&model_as_png, "--out", &["png"], true).is_ok(),
            "--force"
        );
        let err =
            check_output(&dir.path().join("x.jpg"), "--out", &["png", "npy"], false).unwrap_err();
        assert!(err.to_string().contains("writes .png or .npy"), "{err}");
        let err = check_output(dir.path(), "--out", &["png", "npy"], false).unwrap_err();
        assert!(err.to_string().contains("writes .png or .npy"), "{err}");
        let folder = dir.path().join("folder.png");
        std::fs::create_dir(&folder).unwrap();
        let err = check_output(&folder, "--out", &["png"], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not one"), "{err}");
        let err = check_input(&folder, "--model").unwrap_err().to_string();
        assert!(err.contains("must be a regular file"), "{err}");
        let err = check_distinct(
            &png,
            "--out",
            &dir.path().join(".").join("a.png"),
            "--inputs-out",
        );
        assert!(err.is_err());
    }
}
