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
use super::{dylib, GemmShape};

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

/// Where `cargo xtask mkl`'s venv keeps the library: [`super::cache::cache_dir`]`/mkl/venv/lib`.
pub(super) fn venv_lib_dir() -> Option<PathBuf> {
    super::cache::cache_dir().map(|d| d.join("mkl").join("venv").join("lib"))
}

/// The first library that loads, on its sequential layer.
fn load() -> Option<Mkl> {
    let dirs: Vec<PathBuf> = venv_lib_dir().into_iter().collect();
    let paths = dylib::candidates("VAE_MKL", &NAMES, &dirs);
    // SAFETY: the paths hold MKL, whose initialisers only set the library up; `bind` is given MKL.
    unsafe { dylib::load_first(("VAE_MKL", "MKL"), paths, |lib| bind(lib)) }
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
