//! Intel MKL's `cblas_sgemm`, loaded as the program runs from `libmkl_rt` (nothing is linked at build time), on MKL's
//! sequential layer, through [`super::cblas`]: the threads are ours, as OpenBLAS's are.
//!
//! Where it looks, the first that loads winning: `VAE_MKL` (the library or its folder, then only there; `0` turns
//! MKL off), the venv `cargo xtask mkl` fills ([`super::cache::cache_dir`]`/mkl/venv/lib`), then the system's loader
//! (`libmkl_rt.so.3`, `.so.2`, `.so`).

use std::ffi::{c_char, c_int};
use std::path::PathBuf;
use std::sync::OnceLock;

use super::cblas::Sgemm;
use super::GemmShape;

/// MKL's threading layer that runs on the calling thread (`MKL_THREADING_SEQUENTIAL`).
const SEQUENTIAL: c_int = 1;

/// The library's names, newest first.
const NAMES: [&str; 3] = ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"];

/// The loaded library and what we call in it.
struct Mkl {
    sgemm: Sgemm,
    version: String,
    _lib: libloading::Library,
}

fn mkl() -> Option<&'static Mkl> {
    static MKL: OnceLock<Option<Mkl>> = OnceLock::new();
    MKL.get_or_init(load).as_ref()
}

/// Whether MKL was found and loads.
pub fn available() -> bool {
    mkl().is_some()
}

/// MKL's version, as it names itself (`None` where it did not load).
pub fn version() -> Option<&'static str> {
    mkl().map(|m| m.version.as_str())
}

/// [`super::sgemm`] on MKL (the caller checked the slices, and that MKL loaded).
pub fn sgemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    let mkl = mkl().expect("MKL is chosen only where it loaded");
    super::cblas::sgemm(mkl.sgemm, shape, a, b, c, acc)
}

/// The libraries to try, in order.
fn candidates() -> Vec<PathBuf> {
    if let Some(named) = std::env::var_os("VAE_MKL") {
        let named = PathBuf::from(named);
        return match named.as_os_str() {
            s if s == "0" => Vec::new(),
            _ if named.is_dir() => NAMES.map(|n| named.join(n)).into(),
            _ => vec![named],
        };
    }
    let in_cache = venv_lib_dir()
        .into_iter()
        .flat_map(|d| NAMES.map(|n| d.join(n)));
    in_cache.chain(NAMES.map(PathBuf::from)).collect()
}

/// Where `cargo xtask mkl`'s venv keeps the library: [`super::cache::cache_dir`]`/mkl/venv/lib`.
pub(super) fn venv_lib_dir() -> Option<PathBuf> {
    super::cache::cache_dir().map(|d| d.join("mkl").join("venv").join("lib"))
}

/// The first candidate that loads, on its sequential layer; a warning where `VAE_MKL` named one that does not.
fn load() -> Option<Mkl> {
    for path in candidates() {
        // SAFETY: loading runs MKL's initialisers, which only set the library up.
        let Ok(lib) = (unsafe { libloading::Library::new(&path) }) else {
            continue;
        };
        // SAFETY: the symbols are MKL's, with these C signatures.
        match unsafe { bind(lib) } {
            Ok(mkl) => {
                tracing::debug!("MKL {} from {}", mkl.version, path.display());
                return Some(mkl);
            }
            Err(e) => tracing::warn!("{}: not a usable MKL ({e})", path.display()),
        }
    }
    if let Some(named) = std::env::var_os("VAE_MKL").filter(|v| v != "0") {
        tracing::warn!(
            "VAE_MKL={}: no MKL library loads there",
            named.to_string_lossy()
        );
    }
    None
}

/// Sets MKL's sequential layer (before any other call, as MKL requires) and finds `cblas_sgemm`.
///
/// # Safety
/// `lib` must be MKL's `libmkl_rt`.
unsafe fn bind(lib: libloading::Library) -> Result<Mkl, libloading::Error> {
    type SetLayer = unsafe extern "C" fn(c_int) -> c_int;
    type Version = unsafe extern "C" fn(*mut c_char, c_int);
    let set_layer = *lib.get::<SetLayer>(b"MKL_Set_Threading_Layer\0")?;
    set_layer(SEQUENTIAL);
    let version_string = *lib.get::<Version>(b"MKL_Get_Version_String\0")?;
    let mut buf = [0 as c_char; 256];
    version_string(buf.as_mut_ptr(), buf.len() as c_int - 1);
    let version = std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy();
    let sgemm = *lib.get::<Sgemm>(b"cblas_sgemm\0")?;
    Ok(Mkl {
        sgemm,
        version: version.trim().to_string(),
        _lib: lib,
    })
}
