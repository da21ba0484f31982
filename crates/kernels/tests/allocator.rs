//! `retain_freed_memory`: after it, a freed tensor-sized buffer is handed out again by the next
//! allocation of its size, where glibc's default maps fresh pages for it (and the kernel zeroes them).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_freed_buffer_is_reused_by_the_next_allocation() {
    let malloc_in_environment = ftcal_kernels::allocator::set_by_environment();
    assert_eq!(
        ftcal_kernels::allocator::retain_freed_memory(),
        !malloc_in_environment,
        "it sets malloc's thresholds unless the environment does"
    );
    if malloc_in_environment {
        return;
    }
    // 24 MiB: by default above glibc's mmap threshold, so that the first comes from a mapping of its own.
    let addresses: Vec<usize> = (0..3)
        .map(|_| {
            let buffer = std::hint::black_box(vec![1u8; 24 << 20]);
            buffer.as_ptr() as usize
        })
        .collect();
    assert!(
        addresses.windows(2).all(|pair| pair[0] == pair[1]),
        "each 24 MiB buffer came from a new place ({addresses:x?}): freed memory was not kept"
    );
}
