//! Building events in the per-CPU scratch buffer and handing them to the ring buffer.
//!
//! The kernel side never blocks: when the ring buffer is full the event is counted in
//! `STATS[LOST]` and its sequence number is consumed anyway, so the gap is visible.

use agent_common::{
    stat, str_flag, str_kind, EventBuf, RawEvent, StrRef, COMM_LEN, DATA_CAP, MAX_DEPTH, NAME_CAP,
    RAW_EVENT_SIZE, USER_PATH_CAP,
};
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
    generated::{bpf_get_current_comm, bpf_probe_read_kernel_str, bpf_probe_read_user_str},
};

use crate::{
    kernel::{self, off, read},
    maps::{count, EVENTS, SCRATCH, SEQ},
};

/// Unread bytes in the ring buffer from which a submit wakes the agent. Below it events
/// are submitted without a wakeup and the agent collects them on its poll timeout: one
/// wakeup per event (the ring buffer's default when the reader keeps up) costs the traced
/// process an interrupt per syscall. Set by the agent before load; 0 wakes on every event.
#[unsafe(no_mangle)]
pub static WAKE_BYTES: u64 = 0;

/// Largest position in the data area; positions stay below `DATA_CAP` so that masking
/// with `DATA_CAP - 1` never changes them.
const POS_MAX: usize = DATA_CAP - 1;

/// An event under construction. The write cursor lives in the scratch map's memory
/// (`ev.data_len`, accessed with volatile loads and stores) rather than in a register:
/// the verifier does not track values in map memory, so the states of different paths
/// through the path walk converge and the walk verifies in linear time. Kept in a
/// register, the cursor's exact range differs per path and verification explodes.
pub struct Ev {
    pub buf: &'static mut EventBuf,
}

/// Which scratch buffer a program builds its events in (see `maps::SCRATCH`).
pub mod slot {
    pub const SYS_EXIT: u32 = 0;
    pub const SYS_ENTER: u32 = 1;
    /// The scheduler and cgroup tracepoints (not preemptible, not in softirq).
    pub const SCHED: u32 = 2;
    /// `inet_sock_set_state`, which also fires in softirq.
    pub const SOCK: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Start an event for the current task, in the scratch buffer of `slot`.
#[inline(always)]
pub fn begin(op: u32, service: u32, task: u64, slot: u32) -> Option<Ev> {
    let ptr = SCRATCH.get_ptr_mut(slot)?;
    // SAFETY: per-CPU scratch; programs do not nest on one CPU.
    let buf = unsafe { &mut *ptr };
    zero_event(&mut buf.ev);
    let h = &mut buf.ev.header;
    h.op = op;
    // SAFETY: helpers without preconditions.
    unsafe {
        h.cpu = bpf_get_smp_processor_id();
        h.boot_ns = bpf_ktime_get_boot_ns();
        h.cgroup_id = bpf_get_current_cgroup_id();
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    let uid_gid = bpf_get_current_uid_gid();
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.service = service;
    h.ppid = kernel::ppid(task);
    // SAFETY: the helper writes at most COMM_LEN bytes (zeros on failure).
    unsafe { bpf_get_current_comm(h.comm.as_mut_ptr().cast(), COMM_LEN as u32) };
    buf.ev.fd = -1;
    let mut ev = Ev { buf };
    ev.set_pos(0);
    Some(ev)
}

/// Start an event on behalf of a socket's owner (the current task may be anyone).
#[inline(always)]
pub fn begin_owner(op: u32, o: &agent_common::SockOwner, slot: u32) -> Option<Ev> {
    let ptr = SCRATCH.get_ptr_mut(slot)?;
    // SAFETY: per-CPU scratch; programs do not nest on one CPU.
    let buf = unsafe { &mut *ptr };
    zero_event(&mut buf.ev);
    let h = &mut buf.ev.header;
    h.op = op;
    // SAFETY: helpers without preconditions.
    unsafe {
        h.cpu = bpf_get_smp_processor_id();
        h.boot_ns = bpf_ktime_get_boot_ns();
    }
    h.cgroup_id = o.cgroup_id;
    h.pid = o.tgid;
    h.tid = o.tid;
    h.uid = o.uid;
    h.gid = o.gid;
    h.service = o.service;
    h.ppid = o.ppid;
    h.comm = o.comm;
    buf.ev.fd = -1;
    let mut ev = Ev { buf };
    ev.set_pos(0);
    Some(ev)
}

/// The owner record of the current task, for [`begin_owner`] later.
#[inline(always)]
pub fn owner_here(service: u32, task: u64, flags: u32) -> agent_common::SockOwner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let mut owner = agent_common::SockOwner {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ppid: kernel::ppid(task),
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        service,
        // SAFETY: helper without preconditions.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: [0; COMM_LEN],
        flags,
        pending_connect: 0,
    };
    // SAFETY: the helper writes at most COMM_LEN bytes (zeros on failure).
    unsafe { bpf_get_current_comm(owner.comm.as_mut_ptr().cast(), COMM_LEN as u32) };
    owner
}

/// Zero an event with explicit 8-byte stores. `RawEvent::default()` became a call to
/// the `memset` subprogram, a byte loop that older verifiers (6.1) walk again at every
/// call site on every path: it alone pushed programs over the 1 million instructions.
#[inline(always)]
fn zero_event(ev: &mut RawEvent) {
    let p = ev as *mut RawEvent as *mut u64;
    let mut i = 0;
    while i < RAW_EVENT_SIZE / 8 {
        // SAFETY: RawEvent is plain integers, its size a multiple of 8 (asserted in
        // agent-common), and the scratch buffer 8-byte aligned.
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
        i += 1;
    }
}

impl Ev {
    /// Both ends of a socket into `slot`.
    #[inline(always)]
    pub fn net(&mut self, slot: usize, a: &agent_common::NetAddrs) {
        let start = self.pos() & POS_MAX;
        // SAFETY: start < DATA_CAP and the slack after the data area is larger than
        // NetAddrs, so the write stays inside the scratch buffer.
        unsafe {
            core::ptr::write_unaligned(
                self.buf.data.as_mut_ptr().add(start) as *mut agent_common::NetAddrs,
                *a,
            );
        }
        self.set_pos(start + agent_common::NET_ADDRS_SIZE);
        self.set(slot, start, str_kind::NET, 0);
    }

    #[inline(always)]
    fn pos(&self) -> usize {
        // SAFETY: reading a field of the scratch buffer.
        unsafe { core::ptr::read_volatile(&self.buf.ev.data_len) as usize }
    }

    #[inline(always)]
    fn set_pos(&mut self, pos: usize) {
        // SAFETY: writing a field of the scratch buffer.
        unsafe { core::ptr::write_volatile(&mut self.buf.ev.data_len, pos as u32) }
    }

    #[inline(always)]
    fn set(&mut self, slot: usize, start: usize, kind: u8, flags: u8) {
        let len = self.pos().saturating_sub(start);
        if slot < self.buf.ev.strs.len() {
            self.buf.ev.strs[slot] = StrRef {
                off: start as u16,
                len: len as u16,
                kind,
                flags,
                _pad: 0,
            };
        }
    }

    /// Copy a NUL-terminated string from the process's memory into `slot`.
    /// Returns the first byte (to tell absolute paths from relative ones), or 0.
    #[inline(always)]
    pub fn user_str(&mut self, slot: usize, ptr: u64) -> u8 {
        let start = self.pos();
        let o = start & POS_MAX;
        let mut flags = 0;
        let mut first = 0;
        // SAFETY: the helper checks the user address; the destination is inside the
        // scratch buffer because o < DATA_CAP and DATA_SLACK >= USER_PATH_CAP.
        let dst = self.buf.data[o..o + USER_PATH_CAP].as_mut_ptr();
        let r =
            unsafe { bpf_probe_read_user_str(dst.cast(), USER_PATH_CAP as u32, ptr as *const _) };
        match r {
            n if n > 1 => {
                let mut len = n as usize - 1;
                if len >= USER_PATH_CAP - 1 {
                    flags |= str_flag::TRUNCATED;
                }
                if start + len > POS_MAX {
                    len = POS_MAX - start;
                    flags |= str_flag::TRUNCATED;
                }
                first = self.buf.data[o];
                self.set_pos(start + len);
            }
            0 | 1 => {}
            _ => {
                flags |= str_flag::READ_ERROR;
                count(stat::READ_ERRORS);
            }
        }
        self.set(slot, start, str_kind::RAW, flags);
        first
    }

    /// Walk from `dentry` on mount `vfsmnt` up to the root of the mount namespace,
    /// writing the components leaf first into `slot`.
    #[inline(always)]
    pub fn path(&mut self, slot: usize, vfsmnt: u64, dentry: u64) {
        let start = self.pos();
        let mut flags = str_flag::TRUNCATED;
        let mnt_off = off!(mount_mnt);
        let mut mount = vfsmnt.wrapping_sub(mnt_off);
        let mut mnt_root: u64 = read(vfsmnt, off!(vfsmount_mnt_root)).unwrap_or(0);
        let mut d = dentry;
        let mut i = 0;
        while i < MAX_DEPTH {
            i += 1;
            let Ok((parent, name)) = parent_and_name(d) else {
                flags |= str_flag::READ_ERROR;
                break;
            };
            if d == mnt_root {
                // Top of this mount: continue from where it is mounted, unless it is the
                // namespace's root mount (its parent is itself).
                let Ok(mparent) = read::<u64>(mount, off!(mount_mnt_parent)) else {
                    flags |= str_flag::READ_ERROR;
                    break;
                };
                if mparent == mount || mparent == 0 {
                    flags &= !str_flag::TRUNCATED;
                    break;
                }
                let Ok(mp) = read::<u64>(mount, off!(mount_mnt_mountpoint)) else {
                    flags |= str_flag::READ_ERROR;
                    break;
                };
                d = mp;
                mount = mparent;
                mnt_root = read(mparent + mnt_off, off!(vfsmount_mnt_root)).unwrap_or(0);
                continue;
            }
            if d == parent {
                // Root of a filesystem that is not mounted here (pipe, socket, anon
                // inode, detached mount): keep its name and stop.
                flags &= !str_flag::TRUNCATED;
                self.component(name);
                break;
            }
            if self.pos() + NAME_CAP > POS_MAX {
                break;
            }
            self.component(name);
            d = parent;
        }
        self.set(slot, start, str_kind::COMPONENTS, flags);
    }

    /// Append the NUL-terminated name at `name` (a dentry's `d_name.name`).
    #[inline(always)]
    fn component(&mut self, name: u64) {
        if name == 0 {
            return;
        }
        let pos = self.pos();
        let o = pos & POS_MAX;
        // SAFETY: kernel string read with a bounded destination inside the buffer.
        let dst = self.buf.data[o..o + NAME_CAP].as_mut_ptr();
        let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), NAME_CAP as u32, name as *const _) };
        if n > 0 && pos + n as usize <= POS_MAX {
            self.set_pos(pos + n as usize);
        }
    }

    /// Raw bytes from the process's memory (argv), at most `ARGV_CAP`.
    #[inline(always)]
    pub fn user_bytes(&mut self, slot: usize, kind: u8, ptr: u64, len: u64) {
        self.copy::<{ agent_common::ARGV_CAP }, false>(slot, kind, ptr, len)
    }

    /// Raw bytes from kernel memory, at most `NAME_CAP`.
    #[inline(always)]
    pub fn kernel_bytes(&mut self, slot: usize, kind: u8, ptr: u64, len: u64) {
        self.copy::<NAME_CAP, true>(slot, kind, ptr, len)
    }

    /// `len` bytes at `ptr` (user or kernel memory) into `slot`, at most `CAP - 1` (a
    /// power of two no larger than the slack after the data area).
    #[inline(always)]
    fn copy<const CAP: usize, const KERNEL: bool>(
        &mut self,
        slot: usize,
        kind: u8,
        ptr: u64,
        len: u64,
    ) {
        // Mask first and test the masked value: if the test came first, the compiler
        // would drop the mask as redundant and the verifier could not bound the write.
        let start = self.pos() & POS_MAX;
        let mut flags = 0;
        let mut n = len as usize;
        if n >= CAP {
            n = CAP - 1;
            flags |= str_flag::TRUNCATED;
        }
        n &= CAP - 1;
        if start + n > POS_MAX {
            n = 0;
            flags |= str_flag::TRUNCATED;
        }
        // Once more, through a volatile read the compiler cannot see through: older
        // verifiers (6.1) lose the bound of a value spilled across the checks above.
        // SAFETY: reading a local.
        let n = unsafe { core::ptr::read_volatile(&n) } & (CAP - 1);
        if n > 0 {
            // SAFETY: start < DATA_CAP, inside the buffer.
            let dst = unsafe { self.buf.data.as_mut_ptr().add(start) } as *mut _;
            // SAFETY: bounded read into the buffer (start < DATA_CAP, n < CAP <= slack);
            // the helpers check the source address: a bad one is an error, not a fault.
            let r = unsafe {
                if KERNEL {
                    aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                        dst,
                        n as u32,
                        ptr as *const _,
                    )
                } else {
                    aya_ebpf::helpers::generated::bpf_probe_read_user(
                        dst,
                        n as u32,
                        ptr as *const _,
                    )
                }
            };
            if r < 0 {
                flags |= str_flag::READ_ERROR;
                count(stat::READ_ERRORS);
            } else {
                self.set_pos(start + n);
            }
        }
        self.set(slot, start, kind, flags);
    }

    /// Number the event and hand it to userspace.
    #[inline(always)]
    pub fn submit(self) {
        let Some(seq) = SEQ.get_ptr_mut(0) else {
            return;
        };
        // SAFETY: per-CPU slot. Not an atomic fetch-add: the BPF target is built for
        // the generic CPU, which has none. Two programs interleaved on one CPU could
        // take the same number only if one is interrupted between these two
        // instructions (see docs/kernels.md).
        unsafe {
            self.buf.ev.header.seq = *seq;
            *seq += 1;
        }
        let dl = self.pos() & POS_MAX;
        self.buf.ev.data_len = dl as u32;
        let size = RAW_EVENT_SIZE + dl;
        // SAFETY: size <= size_of::<EventBuf>() since dl < DATA_CAP.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.buf as *const EventBuf as *const u8, size) };
        // SAFETY: a .rodata constant set at load.
        let wake = unsafe { core::ptr::read_volatile(&WAKE_BYTES) };
        let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wake {
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        };
        let r = match EVENTS.output::<[u8]>(bytes, flags as u64) {
            Ok(()) => 0,
            Err(e) => e,
        };
        if r < 0 {
            count(stat::LOST);
        }
    }
}

/// A dentry's `d_parent` and `d_name.name`. In every kernel so far the name pointer
/// follows the parent within 24 bytes (`d_parent`, then `struct qstr d_name { hash_len;
/// name }`): one read instead of two on the walk's hottest path.
#[inline(always)]
fn parent_and_name(d: u64) -> Result<(u64, u64), i64> {
    let (parent_off, name_off) = (off!(dentry_d_parent), off!(dentry_d_name_name));
    if name_off == parent_off + 16 {
        let span: [u64; 3] = read(d, parent_off)?;
        return Ok((span[0], span[2]));
    }
    if name_off == parent_off + 8 {
        let span: [u64; 2] = read(d, parent_off)?;
        return Ok((span[0], span[1]));
    }
    let parent = read::<u64>(d, parent_off)?;
    Ok((parent, read::<u64>(d, name_off).unwrap_or(0)))
}
