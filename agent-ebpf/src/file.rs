//! File events from the raw syscall tracepoints.
//!
//! Two programs cover every syscall: `sys_exit` (raw tracepoint `sys_exit(struct pt_regs
//! *regs, long ret)`, which tail-calls one program per syscall group, `sys_exit_*`)
//! builds file events and counts read/write bytes, `sys_enter`
//! (`sys_enter(struct pt_regs *regs, long id)`) handles `close()`, which must be seen
//! before the descriptor is gone. For any process, `sys_enter` first compares the
//! syscall number and `sys_exit` first looks the process up in `TRACKED`; untracked
//! processes cost no more than that. The syscall number and arguments are read at exit
//! from the saved user registers (`orig_ax`, di, si, dx, r10, r8, r9: the syscall ABI
//! leaves them unchanged), so no per-thread state is kept between entry and exit.
//! Offsets of those registers and of `thread_info.status` come from BTF like every other.
//!
//! Paths: a successful open (and the f* calls) is resolved from the descriptor's
//! `struct file` (the path the kernel actually opened). Path arguments are copied as
//! given, and when relative, the directory they are relative to (cwd or dirfd) is
//! resolved from its dentry, so userspace can join them into an absolute path.
//!
//! Bytes: every successful open by a tracked process creates an `FDS` entry; read/write
//! returns add to it; `close()` reports and removes it.
//!
//! Syscalls through the 32-bit table (`TS_COMPAT`: 32-bit programs, `int 0x80`) have
//! other numbers and are not decoded: they are counted in `stat::COMPAT_SYSCALLS`.

use agent_common::{
    ev_flag, op, stat,
    syscalls::{self, nr, Spec, CWD, NONE, NO_BASE},
    tracked, FdKey, FdState, FileInfo,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use crate::{
    event::{self, slot, Ev},
    kernel::{self, off, read},
    maps::{self, count, FDS, FILES, SYS_EXIT_ARGS, SYS_EXIT_PARTS},
};

const AT_FDCWD: i32 = -100;

/// A syscall's number and arguments, read from its saved user registers.
#[derive(Clone, Copy)]
struct Call {
    nr: u64,
    args: [u64; 6],
}

#[inline(always)]
fn ids() -> (u32, u32) {
    let v = bpf_get_current_pid_tgid();
    ((v >> 32) as u32, v as u32)
}

/// Argument `i` of the syscall whose registers are at `regs`.
#[inline(always)]
fn reg_arg(regs: u64, i: usize) -> u64 {
    let o = match i {
        0 => off!(regs_args[0]),
        1 => off!(regs_args[1]),
        2 => off!(regs_args[2]),
        3 => off!(regs_args[3]),
        4 => off!(regs_args[4]),
        _ => off!(regs_args[5]),
    };
    read::<u64>(regs, o).unwrap_or(0)
}

/// The syscall number and its first three arguments of the registers at `regs`: one
/// read where `pt_regs` has them side by side (x86_64: dx, si, di, orig_ax), else four.
#[inline(always)]
fn nr_and_args(regs: u64) -> Result<(u64, [u64; 3]), i64> {
    let (o0, o1, o2, on) = (
        off!(regs_args[0]),
        off!(regs_args[1]),
        off!(regs_args[2]),
        off!(regs_nr),
    );
    if o1 == o2 + 8 && o0 == o1 + 8 && on == o0 + 8 {
        let v: [u64; 4] = read(regs, o2)?;
        Ok((v[3], [v[2], v[1], v[0]]))
    } else {
        Ok((
            read(regs, on)?,
            [reg_arg(regs, 0), reg_arg(regs, 1), reg_arg(regs, 2)],
        ))
    }
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let id: u64 = ctx.arg(1);
    if id != nr::CLOSE {
        return 0;
    }
    let (tgid, _) = ids();
    let Some(value) = maps::tracking(tgid) else {
        return 0;
    };
    if !kernel::ready() {
        return 0;
    }
    let service = value & tracked::SERVICE;
    let task = kernel::current_task();
    if kernel::compat_syscall(task) {
        // ia32 number 3 is read(); sys_exit counts it.
        return 0;
    }
    let fd = reg_arg(ctx.arg(0), 0) as u32;
    let key = FdKey { pid: tgid, fd };
    let cur = kernel::fd_file(task, fd as u64).unwrap_or(0);
    // SAFETY: copied out before removal.
    if let Some(st) = (unsafe { FDS.get(&key) }).copied() {
        let _ = FDS.remove(&key);
        // A state for another file: the descriptor was replaced (dup2 over it) after
        // its last use, and that replacement closed the old file implicitly.
        if st.file == cur {
            emit_close(&key, &st, service, task, nr::CLOSE as u32, slot::SYS_ENTER);
        } else {
            emit_close(&key, &st, service, task, 0, slot::SYS_ENTER);
        }
    }
    // No UDP or unix socket in this process: whether `cur` is a file or a (TCP) socket,
    // all that can be left is to forget a file (a socket's address is not among them).
    let sock = if value & tracked::SOCKETS != 0 {
        kernel::file_sock(cur)
    } else {
        Err(0)
    };
    match sock {
        // A UDP socket: the agent reports its flows; a unix one: its connection; TCP
        // reports itself (inet_sock_set_state).
        Ok(sk) => {
            let (family, ty) = kernel::sock_family_type(sk);
            let class = kernel::classify(family, ty);
            if class == kernel::SockClass::UnixStream {
                crate::unix::closed(sk, cur);
            } else if class == kernel::SockClass::Udp {
                if let Some(ev) = event::begin(op::NET_UDP_CLOSE, service, task, slot::SYS_ENTER) {
                    ev.buf.ev.arg_b = sk;
                    ev.buf.ev.fd = fd as i32;
                    ev.submit();
                }
            }
        }
        // The last reference to a file a tracked process opened: forget the file.
        Err(_) => {
            if cur != 0 && kernel::file_refs(cur).is_ok_and(|r| r <= 1) {
                let _ = FILES.remove(&cur);
            }
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

/// `sys_exit` only dispatches: for a tracked process it finds the syscall's group and
/// tail-calls that group's program (`SYS_EXIT_PARTS`). Each part is verified on its own,
/// within the verifier's per-program budget (one program handling every group was over
/// the 1 million instructions that 6.1's verifier processes).
fn try_sys_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let (tgid, _) = ids();
    let Some(value) = maps::tracking(tgid) else {
        return Ok(());
    };
    if !kernel::ready() {
        return Ok(());
    }
    let service = value & tracked::SERVICE;
    let sockets = value & tracked::SOCKETS != 0;
    let regs: u64 = ctx.arg(0);
    let (n, args) = nr_and_args(regs)?;
    let part = if is_io(n) || is_transfer(n) {
        part::IO
    } else if crate::udp::is_udp_syscall(n) {
        if !sockets {
            // No UDP or unix socket in this process: TCP counts its own bytes.
            return Ok(());
        }
        part::UDP
    } else if gives_descriptor(n) {
        if !sockets {
            note_descriptor(tgid, n, args, ctx.arg(1));
        }
        return Ok(());
    } else if n == nr::CONNECT {
        part::CONNECT
    } else if n == nr::ACCEPT || n == nr::ACCEPT4 {
        part::ACCEPT
    } else if crate::net::is_net(n) {
        part::BIND
    } else if syscalls::spec(n).is_some() {
        part::PATH
    } else {
        return Ok(());
    };
    if kernel::compat_syscall(kernel::current_task()) {
        count(stat::COMPAT_SYSCALLS);
        return Ok(());
    }
    // The part reads these back: the run of `sys_exit` and its tail call cannot
    // interleave with another run of it on this CPU (the kernel skips such a run).
    if let Some(a) = SYS_EXIT_ARGS.get_ptr_mut(0) {
        // SAFETY: per-CPU value, see above.
        unsafe {
            *a = ExitArgs {
                n,
                service,
                sockets,
                args,
            }
        };
    }
    // SAFETY: a tail call with this program's own context; returns only on failure.
    unsafe { SYS_EXIT_PARTS.tail_call(ctx, part) };
    count(stat::TAIL_CALL_FAILED);
    Ok(())
}

/// Indices in `SYS_EXIT_PARTS`; the agent fills them with the programs named
/// `sys_exit_<group>`.
pub mod part {
    pub const IO: u32 = 0;
    pub const UDP: u32 = 1;
    pub const CONNECT: u32 = 2;
    pub const ACCEPT: u32 = 3;
    /// bind and listen.
    pub const BIND: u32 = 4;
    pub const PATH: u32 = 5;
    pub const COUNT: u32 = 6;
}

/// What `sys_exit` found, for its tail-called part.
#[derive(Clone, Copy)]
pub struct ExitArgs {
    n: u64,
    service: u32,
    /// [`tracked::SOCKETS`]: the process may hold UDP or unix sockets.
    sockets: bool,
    /// The syscall's first three arguments (the others: [`reg_arg`]).
    args: [u64; 3],
}

/// Syscalls that may give a process a UDP or unix socket without it being one a
/// tracked process created with socket(): see [`tracked::SOCKETS`].
#[inline(always)]
fn gives_descriptor(n: u64) -> bool {
    matches!(
        n,
        nr::SOCKET | nr::SOCKETPAIR | nr::PIDFD_GETFD | nr::IO_URING_SETUP
    )
}

/// One of [`gives_descriptor`] returned in a process without [`tracked::SOCKETS`]:
/// set it unless the call created a TCP socket (or failed).
#[inline(always)]
fn note_descriptor(tgid: u32, n: u64, args: [u64; 3], ret: i64) {
    if ret < 0 {
        return;
    }
    if n == nr::SOCKET {
        let family = args[0] as u16;
        // SOCK_TYPE_MASK: the type without SOCK_NONBLOCK and SOCK_CLOEXEC.
        let ty = (args[1] & 0xf) as u16;
        if kernel::classify(family, ty) == kernel::SockClass::Tcp {
            return;
        }
    }
    maps::mark_sockets(tgid);
}

/// The syscall number and service `sys_exit` stored for this run.
#[inline(always)]
fn exit_args() -> Option<ExitArgs> {
    // SAFETY: per-CPU value written by this run's `sys_exit`.
    SYS_EXIT_ARGS.get_ptr(0).map(|a| unsafe { *a })
}

/// read/write family and sendfile/splice/copy_file_range: bytes per descriptor.
#[raw_tracepoint]
pub fn sys_exit_io(ctx: RawTracePointContext) -> i32 {
    let Some(ExitArgs {
        n,
        service,
        sockets,
        args,
    }) = exit_args()
    else {
        return 0;
    };
    let ret: i64 = ctx.arg(1);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    // (descriptor, written?) pairs: read/write use one; sendfile(out, in, ..),
    // splice and copy_file_range(in, .., out, ..) move bytes from one to another.
    let (first, second) = if is_io(n) {
        (pack(args[0], is_write(n)), NO_FD)
    } else if n == nr::SENDFILE {
        (pack(args[1], false), pack(args[0], true))
    } else {
        (pack(args[0], false), pack(args[2], true))
    };
    account(first, bytes, n, service, sockets);
    if second != NO_FD {
        account(second, bytes, n, service, sockets);
    }
    0
}

/// sendto/recvfrom/sendmsg/recvmsg and the mmsg calls: UDP flows.
#[raw_tracepoint]
pub fn sys_exit_udp(ctx: RawTracePointContext) -> i32 {
    let Some(ExitArgs {
        n, service, args, ..
    }) = exit_args()
    else {
        return 0;
    };
    let regs: u64 = ctx.arg(0);
    crate::udp::udp_exit(
        (n << 32) | (args[0] & 0xffff_ffff),
        args[1],
        reg_arg(regs, 4),
        ctx.arg(1),
        service,
    );
    0
}

/// connect (TCP and unix).
#[raw_tracepoint]
pub fn sys_exit_connect(ctx: RawTracePointContext) -> i32 {
    let Some(ExitArgs { service, args, .. }) = exit_args() else {
        return 0;
    };
    crate::net::connect_exit(args[0], args[1], ctx.arg(1), service);
    0
}

/// accept and accept4 (TCP and unix).
#[raw_tracepoint]
pub fn sys_exit_accept(ctx: RawTracePointContext) -> i32 {
    let Some(ExitArgs { n, service, .. }) = exit_args() else {
        return 0;
    };
    crate::net::accept_exit(n, ctx.arg(1), service);
    0
}

/// bind and listen.
#[raw_tracepoint]
pub fn sys_exit_bind(ctx: RawTracePointContext) -> i32 {
    let Some(ExitArgs {
        n, service, args, ..
    }) = exit_args()
    else {
        return 0;
    };
    crate::net::bind_exit(n, args[0], ctx.arg(1), service);
    0
}

/// The open family, rename, unlink, mkdir, chmod, ...: events with paths.
#[raw_tracepoint]
pub fn sys_exit_path(ctx: RawTracePointContext) -> i32 {
    let Some(ExitArgs { n, service, .. }) = exit_args() else {
        return 0;
    };
    let (tgid, _) = ids();
    path_syscall_exit(
        n,
        ctx.arg(0),
        ctx.arg(1),
        ((tgid as u64) << 32) | service as u64,
        kernel::current_task(),
    );
    0
}

/// The path and descriptor syscalls (open family, rename, unlink, ...): out of line, so
/// that its large frame is not added to those of `account`, `net_exit` and `udp_exit`
/// on one call chain (kernels before 6.14 cap a chain's combined stack at 512 bytes).
#[inline(never)]
fn path_syscall_exit(n: u64, regs: u64, ret: i64, tgid_service: u64, task: u64) {
    let _ = try_path_syscall_exit(n, regs, ret, tgid_service, task);
}

#[inline(always)]
fn try_path_syscall_exit(
    n: u64,
    regs: u64,
    ret: i64,
    tgid_service: u64,
    task: u64,
) -> Result<(), i64> {
    let (tgid, service) = ((tgid_service >> 32) as u32, tgid_service as u32);
    let Some(spec) = syscalls::spec(n) else {
        return Ok(());
    };
    // (`sys_exit` checked that the call is not a 32-bit one.)
    let Some(ExitArgs { args, .. }) = exit_args() else {
        return Ok(());
    };
    let p = Call {
        nr: n,
        args: [
            args[0],
            args[1],
            args[2],
            reg_arg(regs, 3),
            reg_arg(regs, 4),
            reg_arg(regs, 5),
        ],
    };
    if spec.op == op::OPEN {
        return open_exit(&spec, &p, ret, tgid, service, task);
    }

    let Some(mut ev) = event::begin(spec.op, service, task, slot::SYS_EXIT) else {
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
    let mut base = NO_DIR;
    if spec.path1.path != NONE {
        base = path_arg(
            &mut ev,
            &p,
            task,
            0,
            spec.path1.dirfd,
            spec.path1.path,
            NO_DIR,
        );
    }
    if spec.path2.path != NONE {
        path_arg(
            &mut ev,
            &p,
            task,
            2,
            spec.path2.dirfd,
            spec.path2.path,
            base,
        );
    }
    ev.submit();
    Ok(())
}

#[inline(always)]
fn arg(p: &Call, i: i8) -> u64 {
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

/// Syscall number, flags, mode/length/uid, gid and result.
#[inline(always)]
fn fill_args(ev: &mut Ev, spec: &Spec, p: &Call, ret: i64) {
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

/// No base directory resolved (an absolute path, or none).
const NO_DIR: (u64, u64) = (0, 0);

/// Copy a path argument into `slot` and, when relative, resolve its base directory into
/// `slot + 1`. `prev` is the directory already resolved into slot 1 (the first path of
/// a rename or link): when this path is relative to the same one (`mv a b` in the
/// current directory), slot `slot + 1` refers to the same bytes instead of walking it
/// again. Returns the directory it resolved.
#[inline(always)]
fn path_arg(
    ev: &mut Ev,
    p: &Call,
    task: u64,
    slot: usize,
    dirfd_arg: i8,
    path_arg: i8,
    prev: (u64, u64),
) -> (u64, u64) {
    let first = ev.user_str(slot, arg(p, path_arg));
    if dirfd_arg == NO_BASE || first == b'/' {
        return NO_DIR;
    }
    let base = if dirfd_arg == CWD || arg(p, dirfd_arg) as i32 == AT_FDCWD {
        kernel::cwd(task)
    } else {
        let dirfd = arg(p, dirfd_arg) as i32;
        if dirfd < 0 {
            return NO_DIR;
        }
        kernel::fd_file(task, dirfd as u64).and_then(kernel::file_path)
    };
    let Ok((mnt, dentry)) = base else {
        return NO_DIR;
    };
    if prev != NO_DIR && prev == (mnt, dentry) && slot == 2 {
        ev.buf.ev.strs[3] = ev.buf.ev.strs[1];
    } else {
        ev.path(slot + 1, mnt, dentry);
    }
    (mnt, dentry)
}

fn open_exit(
    spec: &Spec,
    p: &Call,
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
            emit_close(&key, &old, service, task, 0, slot::SYS_EXIT);
        }
        let state = FdState {
            bytes_read: 0,
            bytes_written: 0,
            inode: ino,
            dev,
            file,
        };
        if FDS.insert(&key, &state, 0).is_err() {
            count(stat::FD_FULL);
        }
        if file != 0 {
            let _ = FILES.insert(&file, &FileInfo { inode: ino, dev }, 0);
        }
    }
    let Some(mut ev) = event::begin(op::OPEN, service, task, slot::SYS_EXIT) else {
        return Ok(());
    };
    fill_args(&mut ev, spec, p, ret);
    if ev.buf.ev.flags & syscalls::O_CREAT != 0 && file != 0 && kernel::file_created(file) {
        ev.buf.ev.ev_flags |= ev_flag::CREATED;
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
        path_arg(
            &mut ev,
            p,
            task,
            0,
            spec.path1.dirfd,
            spec.path1.path,
            NO_DIR,
        );
    }
    ev.submit();
    Ok(())
}

/// The Close of a descriptor: by `close()` (`syscall`), or, with `syscall` 0, one the
/// kernel closed implicitly (dup2 over it, exec's O_CLOEXEC, close_range).
#[inline(always)]
fn emit_close(key: &FdKey, st: &FdState, service: u32, task: u64, syscall: u32, slot: u32) {
    if let Some(ev) = event::begin(op::CLOSE, service, task, slot) {
        let e = &mut ev.buf.ev;
        e.syscall = syscall;
        e.ev_flags = if syscall == 0 {
            ev_flag::IMPLICIT_CLOSE
        } else {
            0
        };
        e.fd = key.fd as i32;
        e.bytes_read = st.bytes_read;
        e.bytes_written = st.bytes_written;
        e.inode = st.inode;
        e.dev = st.dev;
        ev.submit();
    }
}

#[inline(always)]
fn is_write(n: u64) -> bool {
    matches!(
        n,
        nr::WRITE | nr::PWRITE64 | nr::WRITEV | nr::PWRITEV | nr::PWRITEV2
    )
}

#[inline(always)]
fn is_transfer(n: u64) -> bool {
    matches!(n, nr::SENDFILE | nr::SPLICE | nr::COPY_FILE_RANGE)
}

#[inline(always)]
fn is_io(n: u64) -> bool {
    is_write(n)
        || matches!(
            n,
            nr::READ | nr::PREAD64 | nr::READV | nr::PREADV | nr::PREADV2
        )
}

/// A descriptor and whether bytes were written to it, in one register.
#[inline(always)]
fn pack(fd: u64, write: bool) -> u64 {
    (fd & 0xffff_ffff) | ((write as u64) << 32)
}
const NO_FD: u64 = u64::MAX;

/// Add a read/write result to the bytes of its descriptor. A descriptor without state
/// whose file a tracked process opened (dup, fork inheritance, SCM_RIGHTS) is acquired
/// here: reported once, then counted like an opened one. Other descriptors are looked
/// at as sockets only when the process may hold UDP or unix ones (`sockets`).
/// Out of line (called twice for transfers): a BPF-to-BPF call with at most five
/// arguments, verified once per call site instead of being inlined.
#[inline(never)]
fn account(fd_write: u64, bytes: u64, n: u64, service: u32, sockets: bool) {
    let fd = fd_write as u32;
    let write = fd_write >> 32 != 0;
    let (tgid, _) = ids();
    let task = kernel::current_task();
    let key = FdKey { pid: tgid, fd };
    let cur = kernel::fd_file(task, fd as u64).unwrap_or(0);
    if let Some(st) = FDS.get_ptr_mut(&key) {
        // SAFETY: the map value stays valid during the program.
        let known = unsafe { (*st).file };
        if known == cur {
            if bytes > 0 {
                // SAFETY: as above; threads of one process may add concurrently, hence
                // the atomic add.
                unsafe {
                    let field = if write {
                        &raw mut (*st).bytes_written
                    } else {
                        &raw mut (*st).bytes_read
                    };
                    atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, bytes);
                }
            }
            return;
        }
        // The descriptor number now refers to another file (dup2 over it): the old
        // one was closed by the kernel; report it before looking at the new one.
        // SAFETY: copied out before removal.
        let old = unsafe { *st };
        let _ = FDS.remove(&key);
        emit_close(&key, &old, service, task, 0, slot::SYS_EXIT);
    }
    if cur == 0 {
        return;
    }
    // SAFETY: copied out immediately.
    // SAFETY: copied out immediately.
    let info = unsafe { FILES.get(&cur) }.copied();
    let (ino, dev) = if info.is_some() {
        kernel::file_ino_dev(cur)
    } else {
        (0, 0)
    };
    let known = match info {
        Some(info) if info.inode == ino && info.dev == dev => true,
        Some(_) => {
            // The address now belongs to another file: the entry is stale.
            let _ = FILES.remove(&cur);
            false
        }
        None => false,
    };
    if !known {
        // Not a file a tracked process opened: a unix connection's bytes, or a
        // connected UDP socket's datagram?
        // (TCP counts its own bytes: nothing to do for it.)
        if bytes > 0 && sockets {
            if let Ok(sk) = kernel::file_sock(cur) {
                let (family, ty) = kernel::sock_family_type(sk);
                let class = kernel::classify(family, ty);
                if class == kernel::SockClass::UnixStream {
                    crate::unix::add_bytes(sk, bytes, write);
                } else if class == kernel::SockClass::Udp {
                    crate::udp::flow_add(sk, 0, bytes, crate::udp::dg(1, write), service);
                }
            }
        }
        return;
    }
    let mut state = FdState {
        bytes_read: 0,
        bytes_written: 0,
        inode: ino,
        dev,
        file: cur,
    };
    if write {
        state.bytes_written = bytes;
    } else {
        state.bytes_read = bytes;
    }
    if FDS.insert(&key, &state, 0).is_err() {
        count(stat::FD_FULL);
        return;
    }
    emit_acquire(fd, n, service, cur);
}

/// The Acquire event of a descriptor (kept out of line: the path walk is large, and
/// `account` is inlined at three call sites).
#[inline(never)]
fn emit_acquire(fd: u32, n: u64, service: u32, file: u64) {
    let task = kernel::current_task();
    let (ino, dev) = kernel::file_ino_dev(file);
    if let Some(mut ev) = event::begin(op::ACQUIRE, service, task, slot::SYS_EXIT) {
        let e = &mut ev.buf.ev;
        e.syscall = n as u32;
        e.fd = fd as i32;
        e.inode = ino;
        e.dev = dev;
        if let Ok((mnt, dentry)) = kernel::file_path(file) {
            ev.path(2, mnt, dentry);
        }
        ev.submit();
    }
}
