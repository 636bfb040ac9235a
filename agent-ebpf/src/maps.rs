//! Maps shared by the programs. Sizes are defaults; the agent may resize before load.

use agent_common::{
    tracked, EventBuf, ExeKey, FdKey, FdState, FileInfo, Flow, FlowKey, SockOwner, UnixConn,
    COMM_LEN,
};
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};

/// Events to userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Tracked processes: tgid -> service index and flags (`agent_common::tracked`).
#[map]
pub static TRACKED: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// Descriptors opened by tracked processes and the bytes that went through them.
#[map]
pub static FDS: HashMap<FdKey, FdState> = HashMap::with_max_entries(131072, 0);

/// Open files (`struct file` addresses) that tracked processes opened. Entries go when
/// a close() drops the last reference; files released otherwise (exit, dup2 over the
/// last descriptor) stay until evicted (LRU). The inode is checked before a match is
/// trusted, so a reused address cannot be mistaken for the old file.
#[map]
pub static FILES: LruHashMap<u64, FileInfo> = LruHashMap::with_max_entries(131072, 0);

/// TCP sockets tracked processes connected or accepted (`struct sock` address), with
/// their owner: the state change to CLOSE, in whatever context it happens, is reported
/// as the owner's.
#[map]
pub static SOCKS: HashMap<u64, SockOwner> = HashMap::with_max_entries(65536, 0);

/// UDP flows of tracked processes, aggregated per (socket, process, remote address).
/// The agent reads and removes them when the socket is closed, when the process
/// exits, periodically, and at the end.
#[map]
pub static FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(65536, 0);

/// Unix stream sockets tracked processes connected or accepted, with their bytes.
#[map]
pub static UNIX_SOCKS: HashMap<u64, UnixConn> = HashMap::with_max_entries(65536, 0);

/// Service selectors (`--service NAME=...`), consulted only at exec and at cgroup
/// migration, never per syscall: cgroup v2 id, executable, and process name -> service.
#[map]
pub static CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(1024, 0);
#[map]
pub static EXES: HashMap<ExeKey, u32> = HashMap::with_max_entries(1024, 0);
#[map]
pub static COMMS: HashMap<[u8; COMM_LEN], u32> = HashMap::with_max_entries(1024, 0);

/// Events under construction (too large for the 512-byte stack): per CPU, one per
/// [`crate::event::slot`], because programs of different slots can interleave on one
/// CPU (a softirq interrupts any program; since 7.2 the syscall tracepoints' programs
/// run preemptibly) and must not build into the same buffer. One program never
/// interleaves with itself: the kernel skips such a run (and the agent reports it).
#[map]
pub static SCRATCH: PerCpuArray<EventBuf> =
    PerCpuArray::with_max_entries(crate::event::slot::COUNT, 0);

/// A new UDP flow under construction per CPU (off the stack: `flow_add` is called from
/// `account`, and before 6.14 a call chain's frames must fit 512 bytes together).
#[map]
pub static FLOW_SCRATCH: PerCpuArray<agent_common::Flow> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU event sequence number.
#[map]
pub static SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `agent_common::stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(agent_common::stat::COUNT, 0);

#[inline(always)]
pub fn count(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot; atomic because programs can interleave on one CPU
        // (softirqs, preemptible syscall tracepoints on 7.2+).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
    }
}

/// Service index of the current process, if it is tracked.
#[inline(always)]
pub fn tracked(tgid: u32) -> Option<u32> {
    tracking(tgid).map(|v| v & tracked::SERVICE)
}

/// The `TRACKED` value of a process: its service index and [`tracked::SOCKETS`].
#[inline(always)]
pub fn tracking(tgid: u32) -> Option<u32> {
    // SAFETY: plain u32 value, read once.
    unsafe { TRACKED.get(&tgid).copied() }
}

/// Set [`tracked::SOCKETS`] on a tracked process. A plain store: the other writers of
/// the value (fork reads it, exec rewrites it after the process's other threads are
/// gone) cannot lose the bit.
#[inline(always)]
pub fn mark_sockets(tgid: u32) {
    if let Some(v) = TRACKED.get_ptr_mut(&tgid) {
        // SAFETY: the map value stays valid during the program.
        unsafe { *v |= tracked::SOCKETS };
    }
}

/// The parts of `sys_exit`, one program per syscall group (`file::part`), filled by the
/// agent after load.
#[map]
pub static SYS_EXIT_PARTS: ProgramArray =
    ProgramArray::with_max_entries(crate::file::part::COUNT, 0);

/// The syscall number and service `sys_exit` found, for the part it tail-calls.
#[map]
pub static SYS_EXIT_ARGS: PerCpuArray<crate::file::ExitArgs> = PerCpuArray::with_max_entries(1, 0);
