//! The CUDA toolkit for `--device cuda` builds: the system's when `nvcc` is found, else NVIDIA's pip wheels of a
//! pinned version in a cache folder, assembled into a CUDA root that cudarc and candle-kernels accept.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{cache_dir, cargo, status, stdout};

/// The toolkit wheels' version. cudarc 0.19 knows CUDA up to 13.4, and its build script panics on newer ones (the
/// newest wheels are 13.5), so it is pinned.
pub const WHEEL_VERSION: &str = "13.0.3";

/// The libraries a `cuda` build links: the driver, then what candle asks cudarc for.
const LINKED: [(&str, &str); 5] = [
    ("cuda", "driver"),
    ("nvrtc", "nvrtc"),
    ("curand", "curand"),
    ("cublas", "cublas"),
    ("cublasLt", "cublaslt"),
];

/// What the build will link against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The machine's driver and the real libraries: a binary that runs on this machine's GPU.
    Run,
    /// Stub libraries whose every function fails: a compile-and-link check on a machine without a GPU.
    Check,
}

/// A toolkit ready to build with.
pub struct Toolkit {
    root: PathBuf,
    compute_cap: String,
    /// Where the wheel toolkit's shared libraries are, for the binary to find them at run time.
    rpath: Option<PathBuf>,
}

impl Toolkit {
    /// The system toolkit when `nvcc` is on the PATH (or in `$CUDA_HOME/bin`), else the pinned wheels, installed
    /// into the cache folder the first time. Says which.
    pub fn find_or_install(link: Link, compute_cap: Option<&str>) -> Result<Self> {
        let compute_cap = match compute_cap {
            Some(c) => c.replace('.', ""),
            None if link == Link::Check => "80".into(),
            None => detect_compute_cap()?,
        };
        if let Some(root) = system_root() {
            eprintln!(
                "cuda: using the system toolkit at {} (compute capability {compute_cap})",
                root.display()
            );
            return Ok(Self {
                root,
                compute_cap,
                rpath: None,
            });
        }
        let cache = cache_dir()?.join(format!("cuda-{WHEEL_VERSION}"));
        let site = install_wheels(&cache, link)?;
        let root = cache.join(match link {
            Link::Run => "root",
            Link::Check => "root-stubs",
        });
        assemble_root(&root, &site, link)?;
        eprintln!(
            "cuda: no nvcc found, so using CUDA {WHEEL_VERSION} from pip wheels, assembled at {} (compute capability \
             {compute_cap}{})",
            root.display(),
            if link == Link::Check { "; stub libraries, so the binaries build but do not run" } else { "" }
        );
        let rpath = (link == Link::Run).then(|| root.join("lib64"));
        Ok(Self {
            root,
            compute_cap,
            rpath,
        })
    }

    /// Sets what the build scripts of cudarc and candle-kernels read, and the run-time library path.
    pub fn apply(&self, cmd: &mut Command) {
        let bin = self.root.join("bin");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin.clone()];
        paths.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(paths).expect("PATH entries"))
            .env("NVCC", bin.join("nvcc"))
            .env("CUDA_ROOT", &self.root)
            .env("CUDA_HOME", &self.root)
            .env("CUDA_COMPUTE_CAP", &self.compute_cap);
        if let Some(lib) = &self.rpath {
            let flags = format!("-C link-arg=-Wl,-rpath,{}", lib.display());
            cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", flags);
        }
    }
}

/// The root of the system toolkit, if `nvcc` is on the PATH or under `$CUDA_HOME`/`$CUDA_PATH`.
fn system_root() -> Option<PathBuf> {
    let from_env = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|root| PathBuf::from(root).join("bin"));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_env
        .chain(on_path)
        .chain([PathBuf::from("/usr/local/cuda/bin")])
        .map(|bin| bin.join("nvcc"))
        .find(|nvcc| nvcc.is_file())
        .and_then(|nvcc| nvcc.canonicalize().ok())
        .and_then(|nvcc| Some(nvcc.parent()?.parent()?.to_path_buf()))
        .filter(|root| !root.starts_with(cache_dir().unwrap_or_default()))
}

/// The compute capability of GPU 0, from `nvidia-smi` (`9.0` → `90`).
fn detect_compute_cap() -> Result<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .context("nvidia-smi did not answer: is there an NVIDIA GPU and driver? Pass --compute-cap (e.g. 90) to build anyway")?;
    let cap = String::from_utf8_lossy(&out.stdout);
    let cap = cap
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .replace('.', "");
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_digit()) {
        bail!("nvidia-smi reported compute capability {cap:?}; pass --compute-cap");
    }
    Ok(cap)
}

/// A venv in `cache` holding the wheels a build needs (made once); returns its `site-packages/nvidia`.
fn install_wheels(cache: &Path, link: Link) -> Result<PathBuf> {
    let extras = match link {
        Link::Check => "nvcc,cccl,cudart",
        Link::Run => "nvcc,cccl,cudart,cublas,curand,nvrtc",
    };
    let venv = cache.join("venv");
    let done = venv.join(format!(".installed-{}", extras.replace(',', "-")));
    if !done.exists() {
        std::fs::create_dir_all(cache)
            .with_context(|| format!("{}: cannot create", cache.display()))?;
        if !venv.join("bin/pip").exists() {
            status(Command::new("python3").args(["-m", "venv"]).arg(&venv))
                .context("making a venv for the CUDA wheels needs python3 with venv")?;
        }
        let spec = format!("cuda-toolkit[{extras}]=={WHEEL_VERSION}");
        status(Command::new(venv.join("bin/pip")).args(["install", "--quiet", &spec]))?;
        std::fs::write(&done, "")?;
    }
    let site = stdout(Command::new(venv.join("bin/python")).args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    ]))?;
    Ok(PathBuf::from(site.trim()).join("nvidia"))
}

/// `root/{bin,include,nvvm}` from the wheels, and `root/lib64` with the unversioned library names the linker looks
/// for; the driver is the machine's (`Run`) or a stub (`Check`), as are the other linked libraries for `Check`.
fn assemble_root(root: &Path, site: &Path, link: Link) -> Result<()> {
    let cu = site.join("cu13");
    if root.exists() {
        std::fs::remove_dir_all(root)
            .with_context(|| format!("{}: cannot remove", root.display()))?;
    }
    let lib64 = root.join("lib64");
    std::fs::create_dir_all(&lib64)?;
    for dir in ["bin", "include", "nvvm"] {
        std::os::unix::fs::symlink(cu.join(dir), root.join(dir))?;
    }
    // Every wheel's `lib` folder (cu13 holds most; a package may keep its own).
    let mut libs = Vec::new();
    for dir in std::fs::read_dir(site).with_context(|| format!("{}", site.display()))? {
        if let Ok(entries) = std::fs::read_dir(dir?.path().join("lib")) {
            libs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    for path in libs {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Some((stem, _)) = name.split_once(".so") {
            if lib64.join(&name).exists() {
                continue;
            }
            std::os::unix::fs::symlink(&path, lib64.join(&name))?;
            if name != format!("{stem}.so") && !lib64.join(format!("{stem}.so")).exists() {
                std::os::unix::fs::symlink(&path, lib64.join(format!("{stem}.so")))?;
            }
        }
    }
    match link {
        Link::Run => {
            let driver = find_driver().context(
                "no NVIDIA driver (libcuda.so.1) on this machine; `cargo xtask check-gpu` builds without one",
            )?;
            std::os::unix::fs::symlink(driver, lib64.join("libcuda.so"))?;
        }
        Link::Check => write_stubs(&lib64)?,
    }
    Ok(())
}

/// The driver library, as the dynamic loader knows it.
fn find_driver() -> Option<PathBuf> {
    let out = Command::new("ldconfig").arg("-p").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("libcuda.so.1 "))
        .filter_map(|l| l.split("=>").nth(1))
        .map(|p| PathBuf::from(p.trim()))
        .find(|p| p.exists())
}

/// One shared library per linked name, defining every function cudarc declares for it, each returning an error
/// (34 is CUDA_ERROR_STUB_LIBRARY). The names come from cudarc's own bindings, so they follow its version.
fn write_stubs(lib64: &Path) -> Result<()> {
    let cudarc = cudarc_src()?;
    for (lib, module) in LINKED {
        let bindings = cudarc.join(module).join("sys/mod.rs");
        let text = std::fs::read_to_string(&bindings)
            .with_context(|| format!("{}: cannot read", bindings.display()))?;
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("fn "))
            .filter_map(|l| l.split_once('(').map(|(name, _)| name))
            .filter(|name| belongs_to(name, lib))
            .collect();
        names.sort_unstable();
        names.dedup();
        let c: String = names
            .iter()
            .map(|n| format!("int {n}(void) {{ return 34; }}\n"))
            .collect();
        let src = lib64.join(format!("stub-{lib}.c"));
        std::fs::write(&src, c)?;
        let so = lib64.join(format!("lib{lib}.so"));
        status(
            Command::new("cc")
                .args(["-shared", "-fPIC", "-o"])
                .arg(&so)
                .arg(format!("-Wl,-soname,lib{lib}.so"))
                .arg(&src),
        )?;
    }
    Ok(())
}

/// Whether a function declared in cudarc's bindings is exported by `lib` (the driver's start with `cu`, then an
/// upper-case letter).
fn belongs_to(name: &str, lib: &str) -> bool {
    match lib {
        "cuda" => name.starts_with("cu") && name[2..].starts_with(|c: char| c.is_ascii_uppercase()),
        "cublas" => name.starts_with("cublas") && !name.starts_with("cublasLt"),
        other => name.starts_with(other),
    }
}

/// cudarc's `src/` folder, as cargo resolved it for the `cuda` feature.
fn cudarc_src() -> Result<PathBuf> {
    let meta = stdout(cargo().args([
        "metadata",
        "--format-version",
        "1",
        "--features",
        "vae-train/cuda",
    ]))?;
    let meta: serde_json::Value = serde_json::from_str(&meta)?;
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "cudarc")
        .and_then(|p| p["manifest_path"].as_str())
        .context("cargo metadata lists no cudarc for the cuda feature")?;
    Ok(Path::new(manifest).with_file_name("src"))
}
