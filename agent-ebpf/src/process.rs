//! Process events from scheduler raw tracepoints.
//!
//! - `sched_process_fork(struct task_struct *parent, struct task_struct *child)`:
//!   a new process (not a thread) of a tracked parent becomes tracked, in the kernel,
//!   before it runs.
//! - `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
//!   executable path from `bprm->file`, argv from the new `mm`, cwd from `fs->pwd`.
//! - `sched_process_exit(struct task_struct *p, ...)`: emitted once per process, by the
//!   last thread (`signal->live` reached zero), with `task->exit_code` (wait status).

use agent_common::{op, str_kind, tracked, ExeKey};
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::{
    event::{self, slot},
    kernel::{self, off, read},
    maps::{self, count, CGROUPS, COMMS, EXES, TRACKED},
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
    let Some(mut value) = maps::tracking(parent_tgid) else {
        return Ok(());
    };
    let service = value & tracked::SERVICE;
    let child: u64 = ctx.arg(1);
    let child_tgid: u32 = read(child, off!(task_tgid))?;
    let child_pid: u32 = read(child, off!(task_pid))?;
    if child_tgid != child_pid {
        // A new thread: its process is already tracked.
        return Ok(());
    }
    if value & tracked::SOCKETS == 0 {
        // A process sharing its parent's descriptor table (clone with CLONE_FILES, not
        // a thread): a socket either of them creates is the other's too.
        let parent: u64 = ctx.arg(0);
        let shared = read::<u64>(parent, off!(task_files))
            .is_ok_and(|p| p != 0 && read::<u64>(child, off!(task_files)) == Ok(p));
        if shared {
            value |= tracked::SOCKETS;
            maps::mark_sockets(parent_tgid);
        }
    }
    if TRACKED.insert(&child_tgid, &value, 0).is_err() {
        count(agent_common::stat::TRACK_FULL);
    }
    let task = kernel::current_task();
    let Some(ev) = event::begin(op::FORK, service, task, slot::SCHED) else {
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
    let task = kernel::current_task();
    let bprm: u64 = ctx.arg(2);
    let file = read::<u64>(bprm, off!(bprm_file)).unwrap_or(0);
    let (ino, dev) = if file != 0 {
        kernel::file_ino_dev(file)
    } else {
        (0, 0)
    };
    // A process that execs a selected executable, or takes a selected name, belongs
    // to that service from now on, whether it was tracked before or not.
    let mut value = maps::tracking(tgid);
    // SAFETY: plain map value reads.
    let selected = unsafe {
        match EXES.get(&ExeKey { dev, ino }) {
            Some(s) => Some(*s),
            None => aya_ebpf::helpers::bpf_get_current_comm()
                .ok()
                .and_then(|c| COMMS.get(&c).copied()),
        }
    };
    if let Some(s) = selected {
        let new = match value {
            Some(v) if v & tracked::SERVICE == s => v,
            Some(v) => s | (v & tracked::SOCKETS),
            // A process tracked only from now on has descriptors opened untracked:
            // any of them may be a UDP or unix socket.
            None => s | tracked::SOCKETS,
        };
        if value != Some(new) && TRACKED.insert(&tgid, &new, 0).is_err() {
            count(agent_common::stat::TRACK_FULL);
        }
        value = Some(new);
    }
    let Some(service) = value.map(|v| v & tracked::SERVICE) else {
        return Ok(());
    };
    let Some(mut ev) = event::begin(op::EXEC, service, task, slot::SCHED) else {
        return Ok(());
    };
    // Slot 0: the executable, as the kernel opened it.
    if file != 0 {
        if let Ok((mnt, dentry)) = kernel::file_path(file) {
            ev.path(0, mnt, dentry);
        }
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
    if let Some(ev) = event::begin(op::EXIT, service, task, slot::SCHED) {
        ev.buf.ev.ret = code as i64;
        ev.submit();
    }
    let _ = TRACKED.remove(&tgid);
    Ok(())
}

/// `cgroup_attach_task(struct cgroup *dst, const char *path, struct task_struct *task,
/// bool threadgroup)`: a process moved into a selected cgroup v2 (or a descendant of
/// one) becomes tracked with that cgroup's service.
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: RawTracePointContext) -> i32 {
    let _ = try_attach(&ctx);
    0
}

fn try_attach(ctx: &RawTracePointContext) -> Result<(), i64> {
    if !kernel::ready() {
        return Ok(());
    }
    let mut cgrp: u64 = ctx.arg(0);
    let task: u64 = ctx.arg(2);
    let root: u64 = read(cgrp, off!(cgroup_root))?;
    let hierarchy: i32 = read(root, off!(cgroup_root_hierarchy_id))?;
    if hierarchy != 0 {
        // A cgroup v1 hierarchy: its ids are not the v2 ids selectors use.
        return Ok(());
    }
    let mut i = 0;
    while i < 16 && cgrp != 0 {
        let kn: u64 = read(cgrp, off!(cgroup_kn))?;
        let id: u64 = read(kn, off!(kernfs_node_id))?;
        // SAFETY: plain map value read.
        if let Some(service) = unsafe { CGROUPS.get(&id) }.copied() {
            let tgid: u32 = read(task, off!(task_tgid))?;
            // Its descriptors were opened before it was tracked (see exec).
            if TRACKED
                .insert(&tgid, &(service | tracked::SOCKETS), 0)
                .is_err()
            {
                count(agent_common::stat::TRACK_FULL);
            }
            return Ok(());
        }
        let css: u64 = read(cgrp, off!(cgroup_parent_css)).unwrap_or(0);
        cgrp = if css == 0 {
            0
        } else {
            read(css, off!(css_cgroup)).unwrap_or(0)
        };
        i += 1;
    }
    Ok(())
}
