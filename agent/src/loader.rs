//! Loading the kernel programs and attaching them.

use agent_common::syscalls::{self, FILE_SYSTEM_TRACEPOINTS_DIR};
use anyhow::{bail, Context as _};
use aya::{
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use std::path::Path;

/// The compiled kernel programs (built by build.rs).
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

pub struct LoadOptions {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
}

pub struct Loaded {
    pub ebpf: Ebpf,
    /// What was attached, for the start-up report.
    pub attached: Vec<String>,
    /// Tracepoints this kernel does not have (their syscalls cannot be seen).
    pub missing: Vec<String>,
}

fn ensure_tracefs() -> anyhow::Result<()> {
    if Path::new(FILE_SYSTEM_TRACEPOINTS_DIR).exists() {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: plain mount(2) call with valid C strings.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        bail!(
            "tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {}; \
             mount it with `mount -t tracefs tracefs /sys/kernel/tracing`",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
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

fn tracepoint_exists(name: &str) -> bool {
    Path::new(FILE_SYSTEM_TRACEPOINTS_DIR).join(name).exists()
}

pub fn load(opts: &LoadOptions) -> anyhow::Result<Loaded> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("groundtruth-agent must run as root (it loads eBPF programs); try `sudo groundtruth-agent ...`");
    }
    ensure_tracefs()?;
    raise_memlock();
    let btf = crate::btf::Btf::from_sys_fs()?;
    let offsets =
        crate::btf::kernel_offsets(&btf).context("reading kernel structure offsets from BTF")?;
    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &offsets, true)
        .map_max_entries("EVENTS", opts.ring_bytes)
        .load(PROGRAMS)
        .context("loading the kernel programs")?;
    let mut attached = Vec::new();
    let mut missing = Vec::new();

    for name in [
        "sched_process_fork",
        "sched_process_exec",
        "sched_process_exit",
    ] {
        let prog: &mut RawTracePoint = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()?;
        prog.load()
            .with_context(|| format!("verifier rejected {name}"))?;
        prog.attach(name)
            .with_context(|| format!("attaching raw tracepoint {name}"))?;
        attached.push(format!("raw_tp/{name}"));
    }

    let mut attach_syscalls = |prog: &str, names: &[&str], which: &str| -> anyhow::Result<()> {
        let p: &mut TracePoint = ebpf
            .program_mut(prog)
            .with_context(|| format!("program {prog} missing from the object"))?
            .try_into()?;
        p.load()
            .with_context(|| format!("verifier rejected {prog}"))?;
        let mut n = 0;
        for name in names {
            let tp = format!("sys_{which}_{name}");
            if !tracepoint_exists(&tp) {
                missing.push(tp);
                continue;
            }
            p.attach("syscalls", &tp)
                .with_context(|| format!("attaching syscalls/{tp}"))?;
            n += 1;
        }
        attached.push(format!("{prog} on {n} syscalls/sys_{which}_* tracepoints"));
        Ok(())
    };
    let file: Vec<&str> = syscalls::FILE_SYSCALLS
        .iter()
        .filter_map(|&n| syscalls::spec(n).map(|s| s.name))
        .collect();
    attach_syscalls("sys_enter_file", &file, "enter")?;
    attach_syscalls("sys_exit_file", &file, "exit")?;
    attach_syscalls("sys_enter_close", &["close"], "enter")?;
    let io: Vec<&str> = syscalls::READ_SYSCALLS
        .iter()
        .chain(syscalls::WRITE_SYSCALLS.iter())
        .map(|(n, _)| *n)
        .collect();
    attach_syscalls("sys_enter_io", &io, "enter")?;
    attach_syscalls("sys_exit_io", &io, "exit")?;
    Ok(Loaded {
        ebpf,
        attached,
        missing,
    })
}
