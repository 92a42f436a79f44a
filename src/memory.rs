//! What lifecycle-top's own process gives back to the kernel: the free memory that the
//! big, seldom work (a diagnosis reading every thread's wait) leaves in malloc's arenas.

/// Returns the free pages of every malloc arena to the kernel (glibc's `malloc_trim`; a
/// no-op on other allocators). Called after a diagnosis: at 10,000 threads one leaves ~3 MB
/// free but resident in the arenas, which the next one then stacks its own on top of (the
/// dashboard's peak RSS). Fixed mmap/trim thresholds give the same back on every free, but
/// then every refresh faults its buffers in again (+20 % CPU at 10,000 threads, measured);
/// once per diagnosis costs a few hundred page faults.
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; safe to call from any
    // thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
