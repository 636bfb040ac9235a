//! File events from syscall tracepoints.
//!
//! `sys_enter_file` is attached to the entry tracepoint of every syscall in
//! `agent_common::syscalls::FILE_SYSCALLS` and saves the arguments of tracked threads;
//! `sys_exit_file` (their exit tracepoints) builds the event with the result. Both see
//! the record `struct trace_event_raw_sys_enter { u64 common; long id; unsigned long
//! args[6]; }` / `sys_exit { u64 common; long id; long ret; }`.
//!
//! Paths: a successful open (and the f* calls) is resolved from the descriptor's
//! `struct file` (the path the kernel actually opened). Path arguments are copied as
//! given, and when relative, the directory they are relative to (cwd or dirfd) is
//! resolved from its dentry, so userspace can join them into an absolute path.
//!
//! Bytes: every successful open by a tracked process creates an `FDS` entry; read/write
//! returns add to it (`sys_*_io`); `close()` reports and removes it.

use agent_common::{
    ev_flag, op, stat,
    syscalls::{self, nr, Spec, CWD, NONE, NO_BASE},
    FdKey, FdState, Pending,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use crate::{
    event::{self, Ev},
    kernel,
    maps::{self, count, FDS, IO_PENDING, PENDING},
};

const AT_FDCWD: i32 = -100;
const ARGS: usize = 16;
const RET: usize = 16;
/// `int __syscall_nr` (4 bytes, then 4 bytes of padding that are not zeroed: reading
/// 8 bytes here gives garbage numbers).
const NR: usize = 8;

#[inline(always)]
fn ids() -> (u32, u32) {
    let v = bpf_get_current_pid_tgid();
    ((v >> 32) as u32, v as u32)
}

#[tracepoint]
pub fn sys_enter_file(ctx: TracePointContext) -> i32 {
    let (tgid, tid) = ids();
    if maps::tracked(tgid).is_none() {
        return 0;
    }
    let mut p = Pending::default();
    // SAFETY: offsets within the sys_enter record.
    unsafe {
        p.nr = ctx
            .read_at::<i32>(NR)
            .map(|n| n as u32 as u64)
            .unwrap_or(u64::MAX);
        let mut i = 0;
        while i < 6 {
            p.args[i] = ctx.read_at::<u64>(ARGS + 8 * i).unwrap_or(0);
            i += 1;
        }
    }
    if PENDING.insert(&tid, &p, 0).is_err() {
        count(stat::PENDING_FULL);
    }
    0
}

#[inline(always)]
fn arg(p: &Pending, i: i8) -> u64 {
    match i {
        0 => p.args[0],
        1 => p.args[1],
        2 => p.args[2],
        3 => p.args[3],
        4 => p.args[4],
        5 => p.args[5],
        _ => 0,
    }
}

#[tracepoint]
pub fn sys_exit_file(ctx: TracePointContext) -> i32 {
    let _ = try_exit_file(&ctx);
    0
}

fn try_exit_file(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, tid) = ids();
    // SAFETY: the saved entry is copied out before removal.
    let Some(p) = (unsafe { PENDING.get(&tid) }).copied() else {
        if maps::tracked(tgid).is_some() {
            count(stat::ORPHAN_EXITS);
        }
        return Ok(());
    };
    let _ = PENDING.remove(&tid);
    if !kernel::ready() {
        return Ok(());
    }
    let Some(service) = maps::tracked(tgid) else {
        return Ok(());
    };
    // SAFETY: offset within the sys_exit record.
    let ret: i64 = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(0);
    let Some(spec) = syscalls::spec(p.nr) else {
        count(stat::UNKNOWN_SYSCALL);
        return Ok(());
    };
    let task = kernel::current_task();

    if spec.op == op::OPEN {
        return open_exit(&spec, &p, ret, tgid, service, task);
    }

    let Some(mut ev) = event::begin(spec.op, service, task) else {
        return Ok(());
    };
    fill_args(&mut ev, &spec, &p, ret);
    if spec.fd_arg != NONE {
        let fd = arg(&p, spec.fd_arg) as u32 as u64;
        ev.buf.ev.fd = fd as i32;
        if let Ok(file) = kernel::fd_file(task, fd) {
            if let Ok((mnt, dentry)) = kernel::file_path(file) {
                ev.path(2, mnt, dentry);
            }
            let (ino, dev) = kernel::file_ino_dev(file);
            ev.buf.ev.inode = ino;
            ev.buf.ev.dev = dev;
        }
    }
    if spec.path1.path != NONE {
        path_arg(&mut ev, &p, task, 0, spec.path1.dirfd, spec.path1.path);
    }
    if spec.path2.path != NONE {
        path_arg(&mut ev, &p, task, 2, spec.path2.dirfd, spec.path2.path);
    }
    ev.submit();
    Ok(())
}

/// Syscall number, flags, mode/length/uid, gid and result.
#[inline(always)]
fn fill_args(ev: &mut Ev, spec: &Spec, p: &Pending, ret: i64) {
    let e = &mut ev.buf.ev;
    e.syscall = p.nr as u32;
    e.ret = ret;
    e.flags = spec.fixed_flags;
    if spec.flags_arg != NONE {
        e.flags |= arg(p, spec.flags_arg);
    }
    if spec.a_arg != NONE {
        e.arg_a = arg(p, spec.a_arg);
    }
    if spec.b_arg != NONE {
        e.arg_b = arg(p, spec.b_arg);
    }
    if spec.open_how_arg != NONE {
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        let how = arg(p, spec.open_how_arg);
        // SAFETY: user reads are checked by the helper.
        unsafe {
            e.flags = bpf_probe_read_user(how as *const u64).unwrap_or(0);
            e.arg_a = bpf_probe_read_user((how + 8) as *const u64).unwrap_or(0);
        }
    }
}

/// Copy a path argument into `slot` and, when relative, resolve its base directory into
/// `slot + 1`.
#[inline(always)]
fn path_arg(ev: &mut Ev, p: &Pending, task: u64, slot: usize, dirfd_arg: i8, path_arg: i8) {
    let first = ev.user_str(slot, arg(p, path_arg));
    if dirfd_arg == NO_BASE || first == b'/' {
        return;
    }
    let base = if dirfd_arg == CWD || arg(p, dirfd_arg) as i32 == AT_FDCWD {
        kernel::cwd(task)
    } else {
        let dirfd = arg(p, dirfd_arg) as i32;
        if dirfd < 0 {
            return;
        }
        kernel::fd_file(task, dirfd as u64).and_then(kernel::file_path)
    };
    if let Ok((mnt, dentry)) = base {
        ev.path(slot + 1, mnt, dentry);
    }
}

fn open_exit(
    spec: &Spec,
    p: &Pending,
    ret: i64,
    tgid: u32,
    service: u32,
    task: u64,
) -> Result<(), i64> {
    let mut file = 0;
    let (mut ino, mut dev) = (0, 0);
    if ret >= 0 {
        if let Ok(f) = kernel::fd_file(task, ret as u64) {
            file = f;
            (ino, dev) = kernel::file_ino_dev(f);
        }
        let key = FdKey {
            pid: tgid,
            fd: ret as u32,
        };
        // A descriptor number we still count was closed without close() (exec closed an
        // O_CLOEXEC descriptor, dup2, close_range): report that close before reuse.
        // SAFETY: copied out immediately.
        if let Some(old) = unsafe { FDS.get(&key) }.copied() {
            emit_close(&key, &old, service, task, ev_flag::IMPLICIT_CLOSE, 0);
        }
        let state = FdState {
            bytes_read: 0,
            bytes_written: 0,
            inode: ino,
            dev,
        };
        if FDS.insert(&key, &state, 0).is_err() {
            count(stat::FD_FULL);
        }
    }
    let Some(mut ev) = event::begin(op::OPEN, service, task) else {
        return Ok(());
    };
    fill_args(&mut ev, spec, p, ret);
    if ev.buf.ev.flags & syscalls::O_CREAT != 0 && ret >= 0 {
        ev.buf.ev.ev_flags |= ev_flag::CREATE_REQUESTED;
    }
    if ret >= 0 {
        ev.buf.ev.fd = ret as i32;
        ev.buf.ev.inode = ino;
        ev.buf.ev.dev = dev;
        // The path as asked (slot 0) and as the kernel resolved it (slot 2).
        ev.user_str(0, arg(p, spec.path1.path));
        if let Ok((mnt, dentry)) = kernel::file_path(file) {
            ev.path(2, mnt, dentry);
        }
    } else {
        path_arg(&mut ev, p, task, 0, spec.path1.dirfd, spec.path1.path);
    }
    ev.submit();
    Ok(())
}

#[inline(always)]
fn emit_close(key: &FdKey, st: &FdState, service: u32, task: u64, flags: u32, syscall: u32) {
    if let Some(ev) = event::begin(op::CLOSE, service, task) {
        let e = &mut ev.buf.ev;
        e.syscall = syscall;
        e.ev_flags = flags;
        e.fd = key.fd as i32;
        e.bytes_read = st.bytes_read;
        e.bytes_written = st.bytes_written;
        e.inode = st.inode;
        e.dev = st.dev;
        ev.submit();
    }
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> i32 {
    let (tgid, _) = ids();
    let Some(service) = maps::tracked(tgid) else {
        return 0;
    };
    // SAFETY: offset within the sys_enter record.
    let fd = unsafe { ctx.read_at::<u64>(ARGS) }.unwrap_or(u64::MAX) as u32;
    let key = FdKey { pid: tgid, fd };
    // SAFETY: copied out before removal.
    let Some(st) = (unsafe { FDS.get(&key) }).copied() else {
        return 0;
    };
    let _ = FDS.remove(&key);
    emit_close(
        &key,
        &st,
        service,
        kernel::current_task(),
        0,
        nr::CLOSE as u32,
    );
    0
}

#[inline(always)]
fn is_write(n: u64) -> bool {
    matches!(
        n,
        nr::WRITE | nr::PWRITE64 | nr::WRITEV | nr::PWRITEV | nr::PWRITEV2
    )
}

#[tracepoint]
pub fn sys_enter_io(ctx: TracePointContext) -> i32 {
    let (tgid, tid) = ids();
    if maps::tracked(tgid).is_none() {
        return 0;
    }
    // SAFETY: offsets within the sys_enter record.
    let (n, fd) = unsafe {
        (
            ctx.read_at::<i32>(NR)
                .map(|n| n as u32 as u64)
                .unwrap_or(u64::MAX),
            ctx.read_at::<u64>(ARGS).unwrap_or(u64::MAX) as u32,
        )
    };
    let key = FdKey { pid: tgid, fd };
    if FDS.get_ptr(&key).is_none() {
        return 0;
    }
    let v = fd as u64 | ((is_write(n) as u64) << 32);
    if IO_PENDING.insert(&tid, &v, 0).is_err() {
        count(stat::PENDING_FULL);
    }
    0
}

#[tracepoint]
pub fn sys_exit_io(ctx: TracePointContext) -> i32 {
    let (tgid, tid) = ids();
    // SAFETY: copied out before removal.
    let Some(v) = (unsafe { IO_PENDING.get(&tid) }).copied() else {
        return 0;
    };
    let _ = IO_PENDING.remove(&tid);
    // SAFETY: offset within the sys_exit record.
    let ret = unsafe { ctx.read_at::<i64>(RET) }.unwrap_or(0);
    if ret <= 0 {
        return 0;
    }
    let key = FdKey {
        pid: tgid,
        fd: v as u32,
    };
    if let Some(st) = FDS.get_ptr_mut(&key) {
        // SAFETY: the map value stays valid during the program; threads of one process
        // may add concurrently, hence the atomic add.
        unsafe {
            let field = if v >> 32 != 0 {
                &raw mut (*st).bytes_written
            } else {
                &raw mut (*st).bytes_read
            };
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, ret as u64);
        }
    }
    0
}
