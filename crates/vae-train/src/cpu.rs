//! What the CPU offers the hand-written kernels, checked once.

/// Elements an element-wise kernel hands each thread at a time: large enough that waking a thread pays (a 128-image
/// batch of logits is six of them), a multiple of the BCE's 4096-element blocks.
pub const PARALLEL_CHUNK: usize = 1 << 14;

/// Whether to take the AVX-512 paths: the CPU has them and `VAE_NO_AVX512` is not set (it forces the AVX2 paths,
/// as on a CPU without AVX-512). Checked once.
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && has_avx2()
            && std::env::var_os("VAE_NO_AVX512").is_none()
    })
}

/// Whether the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Keeps freed buffers of up to 32 MiB in the heap for the next step, where glibc would unmap each from a few
/// hundred KiB up and fault fresh zeroed pages in for the next: an autograd step allocates its activations and
/// gradients anew, and a conv model's are megabytes each (a tenth of its step went to page faults).
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: `mallopt` only sets allocator parameters; 32 MiB is glibc's largest mmap threshold on 64 bits.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        });
    }
}

/// Spins of Candle's element-wise workers before they sleep, where Candle's own default is 25 000.
const CANDLE_SPIN_LIMIT: &str = "2000";

/// Lets Candle's element-wise workers sleep sooner after each op, unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set:
/// an autograd step alternates Candle's element-wise ops with our products on the rayon pool, and on a few cores a
/// worker spinning for the next op takes the core a product needs. Candle reads the variable once, when its pool
/// starts, so call this first thing in `main`, before any thread exists.
pub fn shorten_candle_spin() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT);
    }
}

/// Runs `f` on a thread of rayon's pool (this one, if it is one): a training step, or a batch's evaluation. A
/// model's products and conv layers split over the pool they run in; called from outside it, this thread would
/// sleep through each of them while the pool's threads ran it, and those threads' spinning down after each took the
/// cores from the work in between.
pub(crate) fn on_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match rayon::current_thread_index() {
        Some(_) => f(),
        None => rayon::scope(|_| f()),
    }
}
