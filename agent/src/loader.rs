//! Loading the kernel programs and attaching them.

use anyhow::{bail, Context as _};
use aya::{maps::ProgramArray, programs::RawTracePoint, Ebpf, EbpfLoader};

/// The compiled kernel programs (built by build.rs).
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

pub struct LoadOptions {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
}

/// Unread bytes at which the kernel wakes the agent: an eighth of the ring. Below that
/// the agent drains on its poll timeout ([`POLL_MS`]), so a busy workload pays for a
/// wakeup every few thousand events instead of one per event, and the ring still has
/// seven eighths free when the agent is woken.
pub fn wake_bytes(ring_bytes: u32) -> u64 {
    u64::from(ring_bytes / 8)
}

/// How often the agent drains the ring buffer when no wakeup came, in milliseconds.
pub const POLL_MS: i32 = 20;

/// The attachments, detached together when dropped, one thread each: detaching can wait
/// for an RCU grace period in the kernel, and these waits then overlap. (With one
/// tracepoint per syscall, ~80 attachments, serial detaching took 5 s here; the raw
/// syscall tracepoints brought that down to five attachments.)
pub struct Links(Vec<Box<dyn Send>>);

impl Drop for Links {
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.0);
        std::thread::scope(|s| {
            for link in links {
                // If no thread can be started, the closure and with it the link is
                // dropped right here instead.
                let _ = std::thread::Builder::new().spawn_scoped(s, move || drop(link));
            }
        });
    }
}

pub struct Loaded {
    /// Declared before `ebpf`: fields drop in order, so links go before their programs.
    pub links: Links,
    pub ebpf: Ebpf,
    /// What was attached, for the start-up report.
    pub attached: Vec<String>,
}

fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        // Kernels >= 5.11 charge BPF memory to the memory cgroup: not fatal.
        eprintln!(
            "groundtruth-agent: note: could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

pub fn load(opts: &LoadOptions) -> anyhow::Result<Loaded> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("groundtruth-agent must run as root (it loads eBPF programs); try `sudo groundtruth-agent ...`");
    }
    raise_memlock();
    let btf = crate::btf::Btf::from_sys_fs()?;
    let offsets =
        crate::btf::kernel_offsets(&btf).context("reading kernel structure offsets from BTF")?;
    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &offsets, true)
        .override_global("WAKE_BYTES", &wake_bytes(opts.ring_bytes), true)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .load(PROGRAMS)
        .context("loading the kernel programs")?;
    let mut attached = Vec::new();
    let mut links: Vec<Box<dyn Send>> = Vec::new();

    // The parts `sys_exit` tail-calls (one per syscall group, each verified on its
    // own), loaded and put into its program array before anything is attached.
    let mut parts = Vec::new();
    for (i, prog) in SYS_EXIT_PARTS.iter().enumerate() {
        let p = load_raw(&mut ebpf, prog)?;
        parts.push((i as u32, p.fd()?.try_clone()?));
    }
    let mut array: ProgramArray<_> = ebpf
        .map_mut("SYS_EXIT_PARTS")
        .context("map SYS_EXIT_PARTS missing from the object")?
        .try_into()?;
    for (i, fd) in &parts {
        array
            .set(*i, fd, 0)
            .with_context(|| format!("setting sys_exit part {i}"))?;
    }

    // Scheduler tracepoints for the process tree, then the two raw syscall tracepoints
    // that every file, close and read/write syscall goes through.
    // Each program is named after the raw tracepoint it attaches to.
    for prog in PROGRAMS_LOADED {
        let tracepoint = prog;
        let p = load_raw(&mut ebpf, prog)?;
        let id = p
            .attach(tracepoint)
            .with_context(|| format!("attaching raw tracepoint {tracepoint}"))?;
        links.push(Box::new(p.take_link(id)?));
        attached.push(format!("raw_tp/{tracepoint}"));
    }
    if std::env::var_os("GT_VERIFIER_STATS").is_some() {
        for prog in SYS_EXIT_PARTS.iter().chain(PROGRAMS_LOADED.iter()) {
            if let Some(n) = verified_insns(&ebpf, prog) {
                eprintln!("groundtruth-agent: verifier processed {n} instructions for {prog}");
            }
        }
    }
    Ok(Loaded {
        links: Links(links),
        ebpf,
        attached,
    })
}

/// Load the raw tracepoint program `prog` of the object (verified here), not attached.
fn load_raw<'a>(ebpf: &'a mut Ebpf, prog: &str) -> anyhow::Result<&'a mut RawTracePoint> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(prog)
        .with_context(|| format!("program {prog} missing from the object"))?
        .try_into()?;
    p.load()
        .with_context(|| format!("verifier rejected {prog}"))?;
    Ok(p)
}

/// Runs of `prog` the kernel skipped because another BPF program was already running on
/// that CPU (`bpf_prog_info.recursion_misses`, 5.12+): events that were never produced,
/// so they are not in the lost counts. `None` when the kernel does not say.
pub fn recursion_misses(ebpf: &Ebpf, prog: &str) -> Option<u64> {
    prog_info(ebpf, prog).map(|i| i.recursion_misses)
}

/// Time the kernel spent running `prog` and its runs (`bpf_prog_info.run_time_ns`,
/// `run_cnt`): counted only while BPF run-time statistics are enabled. A tail call's
/// time is its caller's (`sys_exit`'s parts count as `sys_exit`).
pub fn run_stats(ebpf: &Ebpf, prog: &str) -> Option<(u64, u64)> {
    prog_info(ebpf, prog).map(|i| (i.run_time_ns, i.run_cnt))
}

/// Instructions the verifier processed to accept `prog` (`bpf_prog_info.verified_insns`,
/// 5.16+; its limit is 1 million): how close a program is to being refused.
pub fn verified_insns(ebpf: &Ebpf, prog: &str) -> Option<u32> {
    prog_info(ebpf, prog).map(|i| i.verified_insns)
}

fn prog_info(ebpf: &Ebpf, prog: &str) -> Option<aya_obj::generated::bpf_prog_info> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let fd = ebpf.program(prog)?.fd().ok()?.as_fd().as_raw_fd();
    // SAFETY: zeroed plain-integer struct; the kernel fills at most `info_len` bytes.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = Attr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: bpf(2) with a valid attr of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    (r == 0).then_some(info)
}

/// Every program the agent loads, named after the raw tracepoint it attaches to.
/// The programs `sys_exit` tail-calls, in the order of their index in `SYS_EXIT_PARTS`
/// (agent-ebpf's `file::part`). Loaded, not attached.
pub const SYS_EXIT_PARTS: [&str; 6] = [
    "sys_exit_io",
    "sys_exit_udp",
    "sys_exit_connect",
    "sys_exit_accept",
    "sys_exit_bind",
    "sys_exit_path",
];

pub const PROGRAMS_LOADED: [&str; 9] = [
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
    "sys_enter",
    "sys_exit",
    "inet_sock_set_state",
    "tcp_receive_reset",
    "tcp_send_reset",
    "cgroup_attach_task",
];
