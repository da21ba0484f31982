//! glibc's malloc, set for tensors. By default it serves each allocation above 128 KiB (raised
//! dynamically, up to 32 MiB) with its own `mmap` and returns it at `free`, and it gives the top of
//! the heap back to the system beyond 128 KiB free. A training step frees and reallocates the same
//! activation and gradient buffers every step, so every step faulted them in again, and the kernel
//! zeroed each page first: 11 % of a ViT-S/16 step went to `clear_page` and page faults, and the
//! quickstart model's step is 8–17 % faster without them (BENCHMARKS.md). With both thresholds fixed
//! high, the freed buffers stay in the heap and the next step reuses them.

/// The largest allocation served from the heap rather than its own mapping: glibc's ceiling.
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory at the heap's top kept rather than given back to the system.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Sets glibc's malloc to keep freed memory for reuse, unless the environment already sets its
/// thresholds (`GLIBC_TUNABLES=glibc.malloc.…`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
/// which then win). Call it once at the start of a program; returns whether it changed the settings.
/// Elsewhere than Linux with glibc it does nothing.
pub fn retain_freed_memory() -> bool {
    !set_by_environment() && set_thresholds()
}

/// Whether the environment sets malloc's thresholds itself.
pub fn set_by_environment() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|value| value.contains("glibc.malloc."))
        || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes malloc's parameters; it is thread-safe and takes plain integers.
    // Setting either threshold also turns off glibc's dynamic adjustment of both, which is the point.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    let _ = (MMAP_THRESHOLD, TRIM_THRESHOLD);
    false
}
