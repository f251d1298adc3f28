//! OpenBLAS's kernels: which it runs, and running this program again with the CPU's own where OpenBLAS fell back to
//! its generic ones.

/// The kernels OpenBLAS runs (`None` without the `blas` feature).
pub fn openblas_core() -> Option<String> {
    #[cfg(feature = "blas")]
    return Some(super::openblas::corename());
    #[cfg(not(feature = "blas"))]
    None
}

/// OpenBLAS's kernels for this CPU where OpenBLAS did not know it and fell back to its generic SSE3 kernels
/// (`Prescott`, seven times slower; OpenBLAS 0.3.21 does so on Intel's family 6 model 207): `SkylakeX` with
/// AVX-512, `Haswell` with AVX2 and FMA. `None` where OpenBLAS knew the CPU or `OPENBLAS_CORETYPE` already names
/// the kernels.
pub fn openblas_core_to_pin() -> Option<&'static str> {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() || openblas_core()? != "Prescott" {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx512() {
            return Some("SkylakeX");
        }
        if crate::cpu::has_avx2() {
            return Some("Haswell");
        }
    }
    None
}

/// Where OpenBLAS fell back to its generic kernels on a CPU it does not know, runs this program again, with the same
/// arguments, under `OPENBLAS_CORETYPE` naming the kernels the CPU has ([`openblas_core_to_pin`]):
/// OpenBLAS reads the variable only as it loads, before `main`. Call it first thing in `main`; it returns when there
/// is nothing to pin (or the program cannot be run again, which leaves the generic kernels).
pub fn pin_openblas_kernels() {
    #[cfg(unix)]
    if let (Some(core), Ok(exe)) = (openblas_core_to_pin(), std::env::current_exe()) {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let mut again = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            again.arg0(arg0);
        }
        // `exec` returns only on failure.
        let _ = again.args(args).env("OPENBLAS_CORETYPE", core).exec();
    }
}
