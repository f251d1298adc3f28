//! Finding a folder's pictures and their classes, without opening any.

use std::path::{Path, PathBuf};

use crate::{DataError, Result};

/// The extensions read as pictures (any case).
pub(crate) const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// One picture file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: PathBuf,
    /// Its path below the root, `/`-separated: what the cache key names.
    pub relative: String,
    pub label: u32,
    /// Under `test/` of a folder with a `train/` and `test/`.
    pub test: bool,
    pub bytes: u64,
    pub mtime_ns: u128,
}

/// A folder's pictures in a fixed order (split, file name, then class) and its classes.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    pub files: Vec<Entry>,
    /// Sorted class folder names; empty for a folder of pictures alone.
    pub class_names: Vec<String>,
    /// Whether the folder has `train/` and `test/`.
    pub has_split: bool,
}

/// Lists `root` (see the module of [`crate::load_folder`]); an empty folder, one without pictures and a class
/// folder without pictures are refused, naming the folder.
pub(crate) fn scan(root: &Path) -> Result<Scan> {
    let meta = std::fs::metadata(root).map_err(DataError::io(root))?;
    if !meta.is_dir() {
        return Err(DataError::invalid(
            root,
            "not a folder (folder:PATH names a folder of pictures)",
        ));
    }
    let (train_dir, test_dir) = (root.join("train"), root.join("test"));
    let has_split = train_dir.is_dir() && test_dir.is_dir();
    let mut files = Vec::new();
    let class_names = match has_split {
        true => {
            let classes = image_folder(root, &train_dir, false, None, &mut files)?;
            image_folder(root, &test_dir, true, Some(&classes), &mut files)?;
            classes
        }
        false => image_folder(root, root, false, None, &mut files)?,
    };
    // Within each split, by file name before class: a folder that `export_folder` wrote (files named by their
    // index) reads back in the dataset's own order, so it trains to the same model.
    files.sort_by(|a, b| {
        (a.test, file_name(&a.path), a.label).cmp(&(b.test, file_name(&b.path), b.label))
    });
    Ok(Scan {
        files,
        class_names,
        has_split,
    })
}

/// Appends the pictures of one `ImageFolder` (class subfolders, or pictures alone) and returns its class names.
/// `classes` are the training folder's, which a test folder's must be among.
fn image_folder(
    root: &Path,
    dir: &Path,
    test: bool,
    classes: Option<&[String]>,
    files: &mut Vec<Entry>,
) -> Result<Vec<String>> {
    let (subdirs, pictures) = list(dir)?;
    if subdirs.is_empty() {
        if pictures.is_empty() {
            return Err(DataError::invalid(
                dir,
                "no pictures (.png, .jpg, .jpeg) and no class folders in it",
            ));
        }
        if classes.is_some_and(|c| !c.is_empty()) {
            return Err(DataError::invalid(
                dir,
                "has pictures alone but train/ has class folders",
            ));
        }
        for p in pictures {
            files.push(entry(root, p, 0, test)?);
        }
        return Ok(Vec::new());
    }
    let names: Vec<String> = subdirs.iter().map(|d| file_name(d)).collect();
    let known = classes
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| names.clone());
    for (d, name) in subdirs.iter().zip(&names) {
        let Some(label) = known.iter().position(|k| k == name) else {
            return Err(DataError::invalid(
                d,
                format!("class `{name}` is not among train/'s classes"),
            ));
        };
        let (_, pictures) = list(d)?;
        if pictures.is_empty() {
            return Err(DataError::invalid(
                d,
                "class folder has no pictures (.png, .jpg, .jpeg)",
            ));
        }
        for p in pictures {
            files.push(entry(root, p, label as u32, test)?);
        }
    }
    if !pictures.is_empty() {
        tracing::info!(
            "{}: {} pictures beside the class folders are not in any class; ignored",
            dir.display(),
            pictures.len()
        );
    }
    Ok(known)
}

/// The subfolders (not hidden) and picture files of `dir`, each sorted by name.
fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut subdirs, mut pictures, mut others) = (Vec::new(), Vec::new(), 0usize);
    for item in std::fs::read_dir(dir).map_err(DataError::io(dir))? {
        let path = item.map_err(DataError::io(dir))?.path();
        if file_name(&path).starts_with('.') {
            continue;
        }
        if path.is_dir() {
            subdirs.push(path);
        } else if is_picture(&path) {
            pictures.push(path);
        } else {
            others += 1;
        }
    }
    if others > 0 {
        tracing::info!(
            "{}: ignored {others} files that are not .png, .jpg or .jpeg",
            dir.display()
        );
    }
    subdirs.sort();
    pictures.sort();
    Ok((subdirs, pictures))
}

fn is_picture(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn entry(root: &Path, path: PathBuf, label: u32, test: bool) -> Result<Entry> {
    let meta = std::fs::metadata(&path).map_err(DataError::io(&path))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let relative = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .to_string_lossy()
        .replace('\\', "/");
    Ok(Entry {
        path,
        relative,
        label,
        test,
        bytes: meta.len(),
        mtime_ns,
    })
}
