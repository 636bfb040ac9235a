//! Process events from scheduler raw tracepoints.
//!
//! - `sched_process_fork(struct task_struct *parent, struct task_struct *child)`:
//!   a new process (not a thread) of a tracked parent becomes tracked, in the kernel,
//!   before it runs.
//! - `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
//!   executable path from `bprm->file`, argv from the new `mm`, cwd from `fs->pwd`.
//! - `sched_process_exit(struct task_struct *p, ...)`: emitted once per process, by the
//!   last thread (`signal->live` reached zero), with `task->exit_code` (wait status).

use agent_common::{op, str_kind};
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::{
    event,
    kernel::{self, off, read},
    maps::{self, count, TRACKED},
};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    if !kernel::ready() {
        return Ok(());
    }
    let parent_tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(service) = maps::tracked(parent_tgid) else {
        return Ok(());
    };
    let child: u64 = ctx.arg(1);
    let child_tgid: u32 = read(child, off!(task_tgid))?;
    let child_pid: u32 = read(child, off!(task_pid))?;
    if child_tgid != child_pid {
        // A new thread: its process is already tracked.
        return Ok(());
    }
    if TRACKED.insert(&child_tgid, &service, 0).is_err() {
        count(agent_common::stat::TRACK_FULL);
    }
    let task = kernel::current_task();
    let Some(ev) = event::begin(op::FORK, service, task) else {
        return Ok(());
    };
    ev.buf.ev.arg_a = child_tgid as u64;
    ev.buf.ev.arg_b = child_pid as u64;
    ev.submit();
    Ok(())
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Result<(), i64> {
    if !kernel::ready() {
        return Ok(());
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(service) = maps::tracked(tgid) else {
        return Ok(());
    };
    let task = kernel::current_task();
    let bprm: u64 = ctx.arg(2);
    let Some(mut ev) = event::begin(op::EXEC, service, task) else {
        return Ok(());
    };
    // Slot 0: the executable, as the kernel opened it.
    if let Ok(file) = read::<u64>(bprm, off!(bprm_file)) {
        if let Ok((mnt, dentry)) = kernel::file_path(file) {
            ev.path(0, mnt, dentry);
        }
        let (ino, dev) = kernel::file_ino_dev(file);
        ev.buf.ev.inode = ino;
        ev.buf.ev.dev = dev;
    }
    // Slot 1: argv from the new image's stack.
    if let Ok(mm) = read::<u64>(task, off!(task_mm)) {
        let start: u64 = read(mm, off!(mm_arg_start)).unwrap_or(0);
        let end: u64 = read(mm, off!(mm_arg_end)).unwrap_or(0);
        if end > start {
            ev.user_bytes(1, str_kind::ARGV, start, end - start);
        }
    }
    // Slot 2: working directory.
    if let Ok((mnt, dentry)) = kernel::cwd(task) {
        ev.path(2, mnt, dentry);
    }
    ev.submit();
    Ok(())
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    let _ = try_exit();
    0
}

fn try_exit() -> Result<(), i64> {
    if !kernel::ready() {
        return Ok(());
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(service) = maps::tracked(tgid) else {
        return Ok(());
    };
    let task = kernel::current_task();
    let signal: u64 = read(task, off!(task_signal))?;
    let live: i32 = read(signal, off!(signal_live))?;
    if live != 0 {
        // Another thread of the process is still alive; the last one reports.
        return Ok(());
    }
    let code: i32 = read(task, off!(task_exit_code)).unwrap_or(0);
    if let Some(ev) = event::begin(op::EXIT, service, task) {
        ev.buf.ev.ret = code as i64;
        ev.submit();
    }
    let _ = TRACKED.remove(&tgid);
    Ok(())
}
