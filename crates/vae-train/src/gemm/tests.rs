//! The backends against a naive product, the thread scopes, the cache and the shape keys.

use std::sync::Mutex;

use super::cache::with_locked_cache;
use super::scope::{scoped, side_by_side, Scope, SCOPE};
use super::*;

fn shape(ta: bool, tb: bool, m: usize, n: usize, k: usize) -> GemmShape {
    GemmShape {
        a_transposed: ta,
        b_transposed: tb,
        m,
        n,
        k,
    }
}

fn naive(ta: bool, tb: bool, m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                let x = if ta { a[p * m + i] } else { a[i * k + p] };
                let y = if tb { b[j * k + p] } else { b[p * n + j] };
                s += x as f64 * y as f64;
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

/// `op(a)·op(b)` on `backend` (and through [`sgemm`]'s choice) against the naive product, then accumulated.
fn check(m: usize, n: usize, k: usize, tol: f32) {
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 113) as f32 / 57.0 - 1.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104729) % 97) as f32 / 49.0 - 1.0)
        .collect();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let expect = naive(ta, tb, m, n, k, &a, &b);
        let close = |c: &[f32], times: f32, what: &str| {
            for (x, y) in c.iter().zip(&expect) {
                let y = times * y;
                assert!(
                    (x - y).abs() < tol * (1.0 + y.abs()),
                    "{what} {m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                );
            }
        };
        for backend in Backend::available() {
            let mut c = vec![1f32; m * n];
            run(backend, shape(ta, tb, m, n, k), &a, &b, &mut c, false);
            close(&c, 1.0, backend.name());
            run(backend, shape(ta, tb, m, n, k), &a, &b, &mut c, true);
            close(&c, 2.0, backend.name());
        }
        let mut c = vec![1f32; m * n];
        sgemm(shape(ta, tb, m, n, k), &a, &b, &mut c, false);
        close(&c, 1.0, "sgemm");
    }
}

#[test]
fn every_backend_and_transpose_matches_the_naive_product() {
    check(37, 23, 71, 1e-4); // odd sizes exercise the kernels' edges
}

#[test]
fn every_backend_matches_the_naive_product_on_tall_shapes() {
    // The estimator's and IWAE training's thousands of rows, in m and then in k.
    check(1027, 5, 7, 1e-3);
    check(6, 5, 1033, 1e-3);
}

#[test]
fn every_backend_matches_the_naive_product_when_split_across_threads() {
    // Above SPLIT_MACS, split by rows (m ≥ n) and by columns, into blocks that are not multiples of 16.
    const { assert!(251 * 97 * 353 >= SPLIT_MACS) };
    check(251, 97, 353, 1e-3);
    check(97, 251, 353, 1e-3);
}

#[test]
fn side_by_side_runs_both_parts_in_the_callers_scope_and_notes_a_trials_shapes() {
    let (one, two) = (shape(false, true, 3, 4, 5), shape(true, false, 6, 7, 8));
    let trial = Scope {
        backend: Backend::Gemm,
        trial: true,
        shapes: vec![one],
    };
    SCOPE.with_borrow_mut(|s| *s = Some(trial));
    let seen = Mutex::new(Vec::new());
    // With two threads or more, each part waits for the other, so they run on different threads.
    let both = std::sync::Barrier::new(rayon::current_num_threads().min(2));
    let note = |shape| {
        both.wait();
        seen.lock().unwrap().push(scoped(shape));
    };
    side_by_side(SPLIT_MACS, || note(one), || note(two));
    assert_eq!(*seen.lock().unwrap(), [Some((Backend::Gemm, true)); 2]);
    let after = SCOPE.with_borrow_mut(|s| s.take()).unwrap();
    assert_eq!((after.backend, after.trial), (Backend::Gemm, true));
    assert_eq!(
        after.shapes,
        [one, two],
        "each shape once, the pair's noted in the caller's scope"
    );
    // The pool's threads are left with no scope of their own.
    let left = rayon::broadcast(|_| SCOPE.with_borrow(|s| s.is_some()));
    assert!(left.iter().all(|&s| !s));
    // Outside a scope, and below the threshold, both parts still run.
    seen.lock().unwrap().clear();
    let note = |shape| seen.lock().unwrap().push(scoped(shape));
    side_by_side(0, || note(one), || note(two));
    assert_eq!(*seen.lock().unwrap(), [None, None]);
}

#[test]
fn the_cache_keeps_the_first_choice_and_replaces_a_file_that_is_not_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("sgemm.json");
    let put = |b: Backend| {
        with_locked_cache(&path, |c| {
            let mine = c.entry("cpu".into()).or_default();
            let kept = *mine.entry("NT 1x2x3".into()).or_insert(b);
            (kept, true)
        })
        .unwrap()
    };
    assert_eq!(put(Backend::Gemm), Backend::Gemm);
    assert_eq!(
        put(Backend::OpenBlas),
        Backend::Gemm,
        "a later run reads the first choice"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        serde_json::json!({ "cpu": { "NT 1x2x3": "gemm" } })
    );
    std::fs::write(&path, b"{ not json").unwrap();
    assert_eq!(put(Backend::OpenBlas), Backend::OpenBlas);
    assert!(std::fs::read_to_string(&path).unwrap().contains("openblas"));
}

#[test]
fn shape_keys_name_the_transposes_and_sizes() {
    assert_eq!(
        shape(false, true, 128, 400, 784).to_string(),
        "NT 128x400x784"
    );
    assert_eq!(
        shape(true, false, 400, 784, 128).to_string(),
        "TN 400x784x128"
    );
}

#[test]
fn shape_keys_parse_back_and_malformed_ones_are_refused() {
    for s in [
        shape(false, true, 128, 400, 784),
        shape(true, true, 1, 0, 5000),
    ] {
        assert_eq!(s.to_string().parse::<GemmShape>(), Ok(s));
    }
    for bad in [
        "",
        "NT",
        "NT 128x400",
        "NT 128x400x784x2",
        "XT 1x2x3",
        "NTN 1x2x3",
        "N 1x2x3",
        "NT 1x-2x3",
        "NT 1x2x",
    ] {
        let err = bad.parse::<GemmShape>().unwrap_err().to_string();
        assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
    }
}

/// Where `VAE_MKL` names a library, or `cargo xtask mkl`'s venv holds one, MKL is among the backends, so the
/// naive-product checks above run on it too; `VAE_MKL=0` leaves it out.
#[cfg(feature = "mkl")]
#[test]
fn an_mkl_that_is_there_is_a_backend_and_vae_mkl_0_turns_it_off() {
    let named = std::env::var_os("VAE_MKL");
    let venv = mkl::venv_lib_dir().map(|d| d.join("libmkl_rt.so.3"));
    let installed = venv.is_some_and(|lib| lib.exists());
    let has_mkl = Backend::available().contains(&Backend::Mkl);
    match &named {
        Some(v) if v == "0" => assert!(!has_mkl, "VAE_MKL=0, yet MKL loaded"),
        Some(_) => assert!(has_mkl, "VAE_MKL={named:?} names no MKL that loads"),
        None if installed => assert!(
            has_mkl,
            "cargo xtask mkl's library is there but did not load"
        ),
        None => {}
    }
    if has_mkl {
        assert!(mkl_version().is_some_and(|v| v.contains("Math Kernel Library")));
    }
}

/// On a CPU with AVX-512 beside AVX2 and FMA (as `std` detects it), the `gemm` crate's AVX2 kernels are a backend of
/// their own, so the naive-product checks above run on them too; `VAE_NO_AVX512` leaves out the crate's AVX-512
/// choice and MKL, and some backend always remains.
#[test]
fn the_gemm_crates_avx2_kernels_are_a_backend_where_the_cpu_also_has_avx512() {
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    assert_eq!(gemm_crate::avx2_is_a_second_choice(), avx512);
    let with_avx512 = Backend::offered(true, false);
    assert_eq!(
        &with_avx512[with_avx512.len() - 2..],
        [Backend::GemmAvx2, Backend::Gemm]
    );
    let without = Backend::offered(true, true);
    assert!(without.contains(&Backend::GemmAvx2));
    assert!(!without.contains(&Backend::Gemm) && !without.contains(&Backend::Mkl));
    for no_avx512 in [false, true] {
        assert_eq!(
            Backend::offered(false, no_avx512).last(),
            Some(&Backend::Gemm)
        );
        assert!(!Backend::offered(false, no_avx512).contains(&Backend::GemmAvx2));
    }
    assert_eq!(
        serde_json::to_string(&Backend::GemmAvx2).unwrap(),
        "\"gemm-avx2\""
    );
}

/// Where `VAE_BLIS` names a library, or Debian's `libblis4-serial` is installed, BLIS is among the backends, so the
/// naive-product checks above run on it too; `VAE_BLIS=0` leaves it out.
#[cfg(feature = "blis")]
#[test]
fn a_blis_that_is_there_is_a_backend_and_vae_blis_0_turns_it_off() {
    let named = std::env::var_os("VAE_BLIS");
    let debian = format!(
        "/usr/lib/{}-linux-gnu/blis-serial/libblis.so.4",
        std::env::consts::ARCH
    );
    let installed = std::path::Path::new(&debian).exists();
    let has_blis = Backend::available().contains(&Backend::Blis)
        || (std::env::var_os("VAE_NO_AVX512").is_some() && blis_version().is_some());
    match &named {
        Some(v) if v == "0" => assert!(!has_blis, "VAE_BLIS=0, yet BLIS loaded"),
        Some(_) => assert!(has_blis, "VAE_BLIS={named:?} names no BLIS that loads"),
        None if installed => assert!(has_blis, "{debian} is there but did not load"),
        None => {}
    }
    if has_blis {
        // `0.9.0 zen3`: a version, then the kernels BLIS chose.
        let version = blis_version().unwrap();
        assert!(version.starts_with(|c: char| c.is_ascii_digit()) && version.contains(' '));
    }
}
