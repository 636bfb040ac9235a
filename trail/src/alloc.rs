//! Allocator settings for the binaries that use mimalloc (`groundtruth-agent`, its
//! pipeline example, `groundtruth`).

use std::ffi::{c_int, c_long};

extern "C" {
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h; the Rust
/// binding names no constant for it). The test below checks its default.
const PURGE_DELAY: c_int = 15;

/// Keep freed memory instead of returning it to the kernel (by default mimalloc purges
/// memory freed for a second). The trail writer frees its page and compression buffers
/// after every batch and allocates them again for the next one, and `analyze` its
/// record batches and matcher items: the kernel faulted in and zeroed fresh (huge)
/// pages for them again and again. Measured: 7% less agent CPU per event on short
/// connections; `analyze` of 1M events 3 900 -> 480 page faults, 0.3 s less system
/// time. About 10-20 MiB more resident memory (the buffers stay mapped).
pub fn keep_freed_memory() {
    // SAFETY: plain calls into mimalloc's option table, valid at any time.
    unsafe { mi_option_set(PURGE_DELAY, -1) };
}

/// The current purge delay in ms (-1: never), for tests and diagnostics.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: as above.
    unsafe { mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    #[global_allocator]
    static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

    #[test]
    fn purge_delay_is_the_option_we_set() {
        // mimalloc 3's default purge delay is 1000 ms (src/options.c): a different
        // value here means the option index moved (another mimalloc version) and
        // would set something else.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(super::purge_delay_ms(), 1000);
        }
        super::keep_freed_memory();
        assert_eq!(super::purge_delay_ms(), -1);
    }
}
