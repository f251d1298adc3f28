//! Finding a library loaded as the program runs (MKL, BLIS): where a variable names one, there only; else in the
//! folders we know of, then through the system's loader.

use std::path::PathBuf;

/// The paths to try for a library called one of `names`, in order: where `var` is set, only the library or folder
/// it names (`0`: none); else each name in each of `dirs`, then each bare name, which the system's loader looks up.
pub fn candidates(var: &str, names: &[&str], dirs: &[PathBuf]) -> Vec<PathBuf> {
    if let Some(named) = std::env::var_os(var) {
        let named = PathBuf::from(named);
        return match named.as_os_str() {
            s if s == "0" => Vec::new(),
            _ if named.is_dir() => names.iter().map(|n| named.join(n)).collect(),
            _ => vec![named],
        };
    }
    let in_dirs = dirs.iter().flat_map(|d| names.iter().map(|n| d.join(n)));
    in_dirs.chain(names.iter().map(PathBuf::from)).collect()
}

/// The first of `paths` that loads and that `bind` accepts, logged as `what`; a warning for each that loads but is
/// refused, and where `var` named a library and none loads.
///
/// # Safety
/// Loading a library runs its initialisers: each of `paths` must be a library whose initialisers are sound to run.
pub unsafe fn load_first<T, E: std::fmt::Display>(
    (var, what): (&str, &str),
    paths: Vec<PathBuf>,
    bind: impl Fn(libloading::Library) -> Result<T, E>,
) -> Option<T> {
    for path in paths {
        let Ok(lib) = libloading::Library::new(&path) else {
            continue;
        };
        match bind(lib) {
            Ok(loaded) => {
                tracing::debug!("{what} from {}", path.display());
                return Some(loaded);
            }
            Err(e) => tracing::warn!("{}: not a usable {what} ({e})", path.display()),
        }
    }
    if let Some(named) = std::env::var_os(var).filter(|v| v != "0") {
        let named = named.to_string_lossy();
        tracing::warn!("{var}={named}: no {what} library loads there");
    }
    None
}
