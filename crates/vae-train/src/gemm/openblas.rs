//! OpenBLAS's `cblas_sgemm`, through [`super::cblas`], and the kernels it chose for the CPU.

// Linked for its libopenblas.
extern crate openblas_src as _;

use super::GemmShape;

extern "C" {
    fn openblas_set_num_threads(n: std::ffi::c_int);
    fn openblas_get_corename() -> *const std::ffi::c_char;
    fn cblas_sgemm(
        layout: std::ffi::c_int,
        trans_a: std::ffi::c_int,
        trans_b: std::ffi::c_int,
        m: std::ffi::c_int,
        n: std::ffi::c_int,
        k: std::ffi::c_int,
        alpha: f32,
        a: *const f32,
        lda: std::ffi::c_int,
        b: *const f32,
        ldb: std::ffi::c_int,
        beta: f32,
        c: *mut f32,
        ldc: std::ffi::c_int,
    );
}

/// The kernels OpenBLAS chose when it loaded (`Haswell`, `SkylakeX`, …; `Prescott`, its generic SSE3 ones, for a
/// CPU it does not know).
pub fn corename() -> String {
    // SAFETY: OpenBLAS returns a static NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(openblas_get_corename()) };
    name.to_string_lossy().into_owned()
}

/// [`super::sgemm`] on OpenBLAS, on one thread of its own (the caller checked the slices).
pub fn sgemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], acc: bool) {
    static ONE_THREAD: std::sync::Once = std::sync::Once::new();
    // SAFETY: sets a count; called before any product of ours runs.
    ONE_THREAD.call_once(|| unsafe { openblas_set_num_threads(1) });
    super::cblas::sgemm(cblas_sgemm, shape, a, b, c, acc)
}
