//! groundtruth-agent: loads the kernel programs, launches the command under test,
//! decodes kernel events and writes the trail.
//!
//! - [`btf`]: kernel structure offsets from the running kernel's BTF.
//! - [`loader`]: load and attach the programs.
//! - [`launch`]: fork the command so it is tracked from its first instruction.
//! - [`decode`]: defensive decoding of ring buffer records into trail events.
//! - [`record`]: the record loop and its summary.

pub mod btf;
pub mod decode;
pub mod launch;
pub mod loader;
pub mod record;
pub mod scope;

/// Keep freed memory in the process instead of returning it to the kernel: the trail
/// writer allocates and frees large column buffers for every batch, and with glibc's
/// defaults each of them was a fresh mmap whose pages faulted in again (a fifth of the
/// agent's CPU per event went to page faults).
pub fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
