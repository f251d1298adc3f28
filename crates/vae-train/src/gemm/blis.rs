//! BLIS's product (with its AMD Zen kernels), loaded as the program runs from `libblis.so.4` (nothing is linked at
//! build time), on one thread, split across ours through [`super::cblas`] as OpenBLAS's and MKL's are.
//!
//! It calls BLIS's own typed `bli_sgemm`, which takes strides, not BLIS's `cblas_sgemm`: that one goes through the
//! Fortran `sgemm_`, which the first BLAS loaded into the process answers, OpenBLAS where the `blas` feature linked
//! it.
//!
//! Where it looks, the first that loads winning: `VAE_BLIS` (the library or its folder, then only there; `0` turns
//! BLIS off), Debian's single-threaded build (`/usr/lib/<arch>-linux-gnu/blis-serial`, package `libblis4-serial`),
//! then the system's loader (`libblis.so.4`, `libblis.so`).

use std::ffi::{c_char, c_int, CStr};
use std::path::PathBuf;
use std::sync::OnceLock;

use super::cblas::Part;
use super::{dylib, GemmShape};

/// The library's names, newest first.
const NAMES: [&str; 2] = ["libblis.so.4", "libblis.so"];

/// `bli_sgemm`: `c = beta·c + alpha·op(a)·op(b)`, each matrix given by its row and column strides. Its `dim_t` and
/// `inc_t` are 64-bit integers (checked as it loads), its `trans_t` an `int`.
type BliSgemm = unsafe extern "C" fn(
    trans_a: c_int,
    trans_b: c_int,
    m: i64,
    n: i64,
    k: i64,
    alpha: *const f32,
    a: *const f32,
    rs_a: i64,
    cs_a: i64,
    b: *const f32,
    rs_b: i64,
    cs_b: i64,
    beta: *const f32,
    c: *mut f32,
    rs_c: i64,
    cs_c: i64,
);

/// BLIS's `BLIS_NO_TRANSPOSE`: the strides alone say how a matrix is laid out.
const NO_TRANSPOSE: c_int = 0;

/// The loaded library and what we call in it.
struct Blis {
    sgemm: BliSgemm,
    /// The version and the kernels BLIS chose for this CPU (`0.9.0 zen3`).
    version: String,
    _lib: libloading::Library,
}

fn blis() -> Option<&'static Blis> {
    static BLIS: OnceLock<Option<Blis>> = OnceLock::new();
    BLIS.get_or_init(load).as_ref()
}

/// Whether BLIS was found and loads.
pub fn available() -> bool {
    blis().is_some()
}

/// BLIS's version and the kernels it chose for this CPU (`None` where it did not load).
pub fn version() -> Option<&'static str> {
    blis().map(|b| b.version.as_str())
}

/// Whether BLIS runs AVX-512 kernels here (its `skx` and `knl` configurations).
pub fn runs_avx512() -> bool {
    version().is_some_and(|v| v.ends_with(" skx") || v.ends_with(" knl"))
}

/// [`super::sgemm`] on BLIS (the caller checked the slices, and that BLIS loaded).
pub fn sgemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    let blis = blis().expect("BLIS is chosen only where it loaded");
    // SAFETY: `split` hands `call` only parts whose pointers hold their blocks.
    super::cblas::split(
        |part| unsafe { call(blis.sgemm, part) },
        shape,
        a,
        b,
        c,
        acc,
    )
}

/// `bli_sgemm` on one part: a transposed operand is the same memory with its strides swapped.
///
/// # Safety
/// Each pointer must hold its block of the part's shape at its leading dimension.
unsafe fn call(f: BliSgemm, part: Part) {
    let strides = |transposed: bool, ld: usize| {
        let ld = ld as i64;
        if transposed {
            (1, ld)
        } else {
            (ld, 1)
        }
    };
    let Part {
        shape,
        a,
        b,
        c,
        acc,
    } = part;
    let (rs_a, cs_a) = strides(shape.a_transposed, a.1);
    let (rs_b, cs_b) = strides(shape.b_transposed, b.1);
    let (alpha, beta) = (1f32, if acc { 1f32 } else { 0.0 });
    let [m, n, k] = [shape.m, shape.n, shape.k].map(|d| d as i64);
    f(
        NO_TRANSPOSE,
        NO_TRANSPOSE,
        m,
        n,
        k,
        &alpha,
        a.0,
        rs_a,
        cs_a,
        b.0,
        rs_b,
        cs_b,
        &beta,
        c.0,
        c.1 as i64,
        1,
    )
}

/// The first library that loads, set to one thread.
fn load() -> Option<Blis> {
    let serial = PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/blis-serial",
        std::env::consts::ARCH
    ));
    let paths = dylib::candidates("VAE_BLIS", &NAMES, &[serial]);
    // SAFETY: the paths hold BLIS, whose initialisers only set the library up; `bind` is given BLIS.
    unsafe { dylib::load_first(("VAE_BLIS", "BLIS"), paths, |lib| bind(lib)) }
}

/// Checks BLIS's integers are 64-bit, sets it to one thread (a threaded build's own threads would take the cores
/// from ours) and finds `bli_sgemm`.
///
/// # Safety
/// `lib` must be BLIS's `libblis`.
unsafe fn bind(lib: libloading::Library) -> Result<Blis, String> {
    type IntSize = unsafe extern "C" fn() -> c_int;
    type SetThreads = unsafe extern "C" fn(i64);
    type Text = unsafe extern "C" fn() -> *const c_char;
    type ArchId = unsafe extern "C" fn() -> c_int;
    type ArchName = unsafe extern "C" fn(c_int) -> *const c_char;
    // Read as an `int`: the low half of the `gint_t` it returns, whatever its size.
    let int_size = symbol::<IntSize>(&lib, b"bli_info_get_int_type_size\0")?();
    if int_size != 64 {
        return Err(format!("its integers are {int_size}-bit, not 64"));
    }
    symbol::<SetThreads>(&lib, b"bli_thread_set_num_threads\0")?(1);
    let text = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
    let version = text(symbol::<Text>(&lib, b"bli_info_get_version_str\0")?());
    let arch = symbol::<ArchId>(&lib, b"bli_arch_query_id\0")?();
    let arch = text(symbol::<ArchName>(&lib, b"bli_arch_string\0")?(arch));
    let sgemm = symbol::<BliSgemm>(&lib, b"bli_sgemm\0")?;
    Ok(Blis {
        sgemm,
        version: format!("{version} {arch}"),
        _lib: lib,
    })
}

/// The function `name` in `lib`, as the type the caller names.
///
/// # Safety
/// `T` must be the function's type.
unsafe fn symbol<T: Copy>(lib: &libloading::Library, name: &[u8]) -> Result<T, String> {
    lib.get::<T>(name).map(|s| *s).map_err(|e| e.to_string())
}
