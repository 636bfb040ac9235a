//! groundtruth's kernel programs.
//!
//! Only processes in the `TRACKED` map (keyed by thread group id) produce events; for any
//! other process every program returns after one map lookup. Tracking propagates at fork
//! in the kernel, so a tracked process's descendants are tracked from their first
//! instruction.
//!
//! Module layout mirrors the agent's decoder: `process` (fork/exec/exit) and `file`
//! (file syscalls, descriptor byte counts, close). `kernel` reads kernel structures using
//! offsets the agent read from the running kernel's BTF; `event` builds events.
#![no_std]
#![no_main]
// Atomic add on map values (the BPF target's core has no AtomicU64::fetch_add).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod event;
mod file;
mod kernel;
mod maps;
mod net;
mod process;
mod udp;
mod unix;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program; the verifier rejects any path that gets here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
