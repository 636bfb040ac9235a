//! `groundtruth-agent record`: launch a command, follow its process tree in the kernel,
//! and write every event into a trail.

use crate::{
    decode::Decoder,
    launch,
    loader::{self, LoadOptions},
    scope,
};
use agent_common::{stat, ExeKey, FdKey, FdState, Flow, FlowKey, UnixConn};
use anyhow::{bail, Context as _};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::OsString,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};
use trail::{
    event::{activity, class},
    RunInfo, TrailWriter, WriterOptions,
};

pub struct RecordOptions {
    pub out: PathBuf,
    /// Label of the launched command.
    pub service: Option<String>,
    /// Services selected by cgroup, pid, executable or name.
    pub selectors: Vec<(String, scope::Selector)>,
    /// Stop after this long (only without a command).
    pub duration: Option<Duration>,
    /// How often UDP flows that are still going are reported.
    pub flow_report_every: Duration,
    pub user: Option<String>,
    pub wait_all: bool,
    pub ring_bytes: u32,
    pub segment_rows: usize,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// Long-term key certifying the run's first seal key.
    pub sign_key: Option<PathBuf>,
    /// File the chain head is appended to at every seal.
    pub anchor: Option<PathBuf>,
    /// Measure and print the kernel programs' CPU time (`--bpf-stats`).
    pub bpf_stats: bool,
    pub command: Vec<OsString>,
}

/// What a run produced, also printed as the summary line.
#[derive(Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub per_class: BTreeMap<&'static str, u64>,
    /// Events the kernel could not deliver (ring buffer full), per CPU.
    pub lost: BTreeMap<u32, u64>,
    pub malformed: u64,
    /// Other kernel-side problems by name (read errors, map full, ...).
    pub kernel_stats: BTreeMap<&'static str, u64>,
    pub files: Vec<PathBuf>,
    /// The chain head after the final seal.
    pub head: String,
    pub still_running: Vec<(u32, String)>,
    pub exit_code: i32,
    /// CPU time the agent itself used (user + system), ns, in all.
    pub agent_cpu_ns: u64,
    /// Of that, loading and attaching the kernel programs (mostly the kernel's verifier).
    pub agent_load_cpu_ns: u64,
    /// With `--bpf-stats`: (program, run time ns, runs) while recording.
    pub program_time: Option<Vec<(&'static str, u64, u64)>>,
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// With `--wait-all`, how often the processes waited for are checked for having exited
/// without an exit event.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores into an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Wall clock minus boot clock, sampled several times keeping the tightest pair.
fn boot_to_wall() -> i64 {
    let mut best = (i64::MAX, 0);
    for _ in 0..5 {
        let a = clock_ns(libc::CLOCK_REALTIME);
        let b = clock_ns(libc::CLOCK_BOOTTIME);
        let c = clock_ns(libc::CLOCK_REALTIME);
        if c - a < best.0 {
            best = (c - a, (a + (c - a) / 2) - b);
        }
    }
    best.1
}

fn uname() -> (String, String) {
    // SAFETY: zeroed utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut u) };
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.nodename), s(&u.release))
}

/// A random 128-bit run id (hex): it ties every seal and footer to this run.
fn run_id() -> anyhow::Result<String> {
    let b = trail::seal::random_bytes::<16>().context("drawing the run id")?;
    Ok(trail::seal::hex(&b))
}

fn prepare_out(out: &PathBuf) -> anyhow::Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                bail!(
                    "{}: directory is not empty; groundtruth-agent never writes into an existing trail (choose a new --out)",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{}: exists and is not a directory", out.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", out.display())),
    }
}

fn take<T>(ebpf: &mut aya::Ebpf, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<aya::maps::Map>,
    <T as TryFrom<aya::maps::Map>>::Error: std::error::Error + Send + Sync + 'static,
{
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} missing"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

fn per_cpu(map: &PerCpuArray<MapData, u64>, idx: u32) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    if let Ok(vals) = map.get(&idx, 0) {
        for (cpu, v) in vals.iter().enumerate() {
            if *v != 0 {
                out.insert(cpu as u32, *v);
            }
        }
    }
    out
}

fn class_name(class_uid: i32) -> &'static str {
    match class_uid {
        class::PROCESS_ACTIVITY => "process",
        class::FILE_SYSTEM_ACTIVITY => "file",
        class::NETWORK_ACTIVITY => "network",
        _ => "other",
    }
}

/// (program, run time ns, runs) of every attached program, as the kernel counts them.
fn program_run_stats(ebpf: &aya::Ebpf) -> Vec<(&'static str, u64, u64)> {
    loader::PROGRAMS_LOADED
        .iter()
        .map(|p| {
            let (ns, runs) = loader::run_stats(ebpf, p).unwrap_or((0, 0));
            (*p, ns, runs)
        })
        .collect()
}

/// CPU time (user + system) this process has used so far, ns.
fn self_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn exit_code_of(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

pub fn record(opts: RecordOptions) -> anyhow::Result<Summary> {
    if opts.command.is_empty() && opts.selectors.is_empty() {
        bail!(
            "nothing to record: give a command (`groundtruth-agent record --out DIR -- CMD ...`) \
             or services to attach to (`--service NAME=pid:PID`, `cgroup:PATH`, `exe:PATH`, `comm:NAME`)"
        );
    }
    if !opts.command.is_empty() && opts.duration.is_some() {
        bail!("--duration applies when attaching to running services (no command); a command is recorded until it exits");
    }
    let launch = match opts.command.first() {
        Some(cmd0) => {
            let program = launch::find_program(cmd0)?;
            let run_as = launch::resolve_user(opts.user.as_deref())?;
            let label = opts.service.clone().unwrap_or_else(|| {
                program
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "cmd".into())
            });
            Some((program, run_as, label))
        }
        None => {
            if opts.service.is_some() {
                bail!("--service NAME (without =SELECTOR) labels a launched command, and no command was given");
            }
            None
        }
    };
    let mut services: Vec<String> = launch.iter().map(|l| l.2.clone()).collect();
    let scope = scope::resolve(&opts.selectors, &mut services)?;
    prepare_out(&opts.out)?;

    let mut loaded = loader::load(&LoadOptions {
        ring_bytes: opts.ring_bytes,
    })?;
    let load_cpu_ns = self_cpu_ns();
    for a in &loaded.attached {
        eprintln!("groundtruth-agent: attached {a}");
    }
    // Enabled for as long as the descriptor is open; the counts since loading (stats
    // may already be on system-wide) are taken out at the end.
    let program_stats = if opts.bpf_stats {
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| {
            anyhow::anyhow!(
                "--bpf-stats: enabling the kernel's BPF run-time statistics: {e} (kernel 5.8 or later)"
            )
        })?;
        Some((fd, program_run_stats(&loaded.ebpf)))
    } else {
        None
    };
    let ebpf = &mut loaded.ebpf;
    let mut ring: RingBuf<MapData> = take(ebpf, "EVENTS")?;
    let mut tracked: BpfHashMap<MapData, u32, u32> = take(ebpf, "TRACKED")?;
    let fds: BpfHashMap<MapData, FdKey, FdState> = take(ebpf, "FDS")?;
    let flows: BpfHashMap<MapData, FlowKey, Flow> = take(ebpf, "FLOWS")?;
    let unix: BpfHashMap<MapData, u64, UnixConn> = take(ebpf, "UNIX_SOCKS")?;
    let stats: PerCpuArray<MapData, u64> = take(ebpf, "STATS")?;
    let seq: PerCpuArray<MapData, u64> = take(ebpf, "SEQ")?;
    {
        let mut cgroups: BpfHashMap<&mut MapData, u64, u32> =
            BpfHashMap::try_from(ebpf.map_mut("CGROUPS").context("map CGROUPS missing")?)?;
        for (id, svc) in &scope.cgroups {
            cgroups.insert(id, svc, 0).context("cgroup selector map")?;
        }
    }
    {
        let mut exes: BpfHashMap<&mut MapData, ExeKey, u32> =
            BpfHashMap::try_from(ebpf.map_mut("EXES").context("map EXES missing")?)?;
        for (k, svc) in &scope.exes {
            exes.insert(k, svc, 0).context("exe selector map")?;
        }
    }
    {
        let mut comms: BpfHashMap<&mut MapData, [u8; agent_common::COMM_LEN], u32> =
            BpfHashMap::try_from(ebpf.map_mut("COMMS").context("map COMMS missing")?)?;
        for (k, svc) in &scope.comms {
            comms.insert(k, svc, 0).context("comm selector map")?;
        }
    }

    let (host, kernel) = uname();
    let run = RunInfo {
        run_id: run_id()?,
        host,
        kernel,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let wopts = WriterOptions {
        segment_rows: opts.segment_rows,
        segment_bytes: opts.segment_bytes,
        segment_age: opts.segment_age,
        ..Default::default()
    };
    let long_term = match &opts.sign_key {
        Some(p) => Some(trail::seal::read_signing_key(p).map_err(|e| {
            anyhow::anyhow!("--sign-key {e}; the agent refuses a signing key others can read")
        })?),
        None => None,
    };
    let writer = TrailWriter::create_sealed(
        &opts.out,
        run,
        wopts,
        trail::SealOptions {
            long_term,
            anchor: opts.anchor.clone(),
        },
    )?;
    eprintln!(
        "groundtruth-agent: sealing with first key {}{}",
        writer.first_key(),
        if opts.sign_key.is_some() {
            " (certified by --sign-key)"
        } else {
            ""
        }
    );
    let mut decoder = Decoder::new(boot_to_wall(), services.clone());
    install_signal_handlers();

    // Running processes of selected services: tracked from here on; what /proc says
    // about their command line stands in for the exec the trail did not see.
    // Those that exited between the selection's scan and their entry in the kernel map
    // (a cgroup's short-lived children, mostly): no exit event will come for them, so
    // they are not waited for, and their entries go (a later process given the same
    // pid must not inherit them).
    let mut gone = BTreeSet::new();
    for (pid, svc) in &scope.pids {
        // Their descriptors were opened untracked: any may be a UDP or unix socket.
        tracked
            .insert(pid, svc | agent_common::tracked::SOCKETS, 0)
            .with_context(|| format!("adding pid {pid} to the kernel tracking map"))?;
        if scope::exited(*pid) {
            let _ = tracked.remove(pid);
            gone.insert(*pid);
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| {
            b.split(|c| *c == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        decoder.seed(*pid, cmd, exe);
    }
    for line in &scope.report {
        eprintln!("groundtruth-agent: {line}");
    }
    if !gone.is_empty() {
        let pids: Vec<String> = gone.iter().map(u32::to_string).collect();
        eprintln!(
            "groundtruth-agent: {} selected process{} exited before tracking began: {}",
            gone.len(),
            if gone.len() == 1 { "" } else { "es" },
            pids.join(", ")
        );
    }

    let child = match launch {
        Some((program, run_as, label)) => {
            let pending = launch::fork_waiting(&program, &opts.command, &run_as)?;
            let value = if pending.inherits_socket() {
                agent_common::tracked::SOCKETS
            } else {
                0
            };
            if let Err(e) = tracked.insert(pending.pid as u32, value, 0) {
                pending.abort();
                return Err(e).context("adding the command to the kernel tracking map");
            }
            eprintln!(
                "groundtruth-agent: recording service `{label}`: {} as uid {} gid {} ({}), pid {}",
                program.display(),
                run_as.uid,
                run_as.gid,
                run_as.source,
                pending.pid
            );
            Some(pending.release()?)
        }
        None => {
            eprintln!(
                "groundtruth-agent: recording until SIGINT/SIGTERM{}",
                opts.duration
                    .map(|d| format!(" or {} s", d.as_secs_f64()))
                    .unwrap_or_default()
            );
            None
        }
    };
    let started = Instant::now();
    let mut last_flow_report = Instant::now();
    let mut last_prune = Instant::now();

    let mut sink = Sink {
        decoder,
        writer,
        fds,
        flows,
        unix,
        flows_reported: HashMap::new(),
        summary: Summary::default(),
        live: child
            .map(|c| c as u32)
            .into_iter()
            .chain(scope.pids.keys().copied().filter(|p| !gone.contains(p)))
            .collect(),
        names: BTreeMap::new(),
    };
    let mut child_status: Option<i32> = None;
    let mut stop_at: Option<Instant> = None;
    let mut forwarded = false;
    let fd = ring.as_raw_fd();

    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, loader::POLL_MS) };
        while let Some(item) = ring.next() {
            sink.handle(&item)?;
        }
        sink.writer.tick()?;
        for (name, head) in sink.writer.take_sealed() {
            eprintln!("groundtruth-agent: sealed {name}, chain head {head}");
        }
        if let (Some(child), None) = (child, child_status) {
            let mut status = 0;
            // SAFETY: waiting for our own child without blocking.
            let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
            if r == child {
                child_status = Some(status);
            }
        }
        let sig = SIGNAL.load(Ordering::SeqCst);
        if sig != 0 && !forwarded {
            forwarded = true;
            match child {
                Some(child) => {
                    eprintln!(
                        "groundtruth-agent: signal {sig}: stopping (forwarded to the command)"
                    );
                    if child_status.is_none() {
                        // SAFETY: signalling our own child.
                        unsafe { libc::kill(child, sig) };
                    }
                    stop_at = Some(Instant::now() + Duration::from_secs(5));
                }
                None => {
                    eprintln!("groundtruth-agent: signal {sig}: stopping");
                    stop_at = Some(Instant::now());
                }
            }
        }
        if child.is_none() && opts.duration.is_some_and(|d| started.elapsed() >= d) {
            stop_at.get_or_insert_with(Instant::now);
        }
        // Waiting for the tree: a process whose exit event cannot come (lost with a full
        // ring buffer, which is counted) must not keep the recording open forever. One
        // that exited since the ring was read goes too: its event is read next.
        if opts.wait_all && child_status.is_some() && last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            sink.live.retain(|&p| !scope::exited(p));
        }
        let done = match child_status {
            Some(_) if !opts.wait_all || sink.live.is_empty() || stop_at.is_some() => true,
            _ => stop_at.is_some_and(|t| Instant::now() >= t),
        };
        if done {
            // Every event of an exited process is already in the ring buffer; one
            // more pass takes what arrived since the last read.
            while let Some(item) = ring.next() {
                sink.handle(&item)?;
            }
            sink.report_flows(|_| true, true)?;
            break;
        }
        if last_flow_report.elapsed() >= opts.flow_report_every {
            last_flow_report = Instant::now();
            sink.report_flows(|_| true, false)?;
        }
    }
    let Sink {
        mut writer,
        mut summary,
        live,
        names,
        ..
    } = sink;

    if let Some((fd, before)) = program_stats {
        let after = program_run_stats(&loaded.ebpf);
        drop(fd);
        summary.program_time = Some(
            after
                .iter()
                .zip(&before)
                .map(|(a, b)| (a.0, a.1.saturating_sub(b.1), a.2.saturating_sub(b.2)))
                .collect(),
        );
    }
    summary.lost = per_cpu(&stats, stat::LOST);
    // Written into the footer: per CPU, produced - delivered rows = lost.
    let produced = per_cpu(&seq, 0);
    for (name, idx) in [
        ("read_errors", stat::READ_ERRORS),
        ("compat_syscalls_not_decoded", stat::COMPAT_SYSCALLS),
        ("fd_map_full", stat::FD_FULL),
        ("track_map_full", stat::TRACK_FULL),
        ("sock_map_full", stat::SOCK_FULL),
        ("udp_flow_map_full", stat::FLOW_FULL),
        ("mmsg_messages_beyond_8_not_in_flows", stat::MMSG_BEYOND_8),
        ("sys_exit_tail_calls_failed", stat::TAIL_CALL_FAILED),
    ] {
        let n: u64 = per_cpu(&stats, idx).values().sum();
        if n > 0 {
            summary.kernel_stats.insert(name, n);
        }
    }
    // Program runs the kernel skipped (another BPF program was running on that CPU):
    // whatever those runs would have recorded was never produced.
    let mut skipped = 0;
    for prog in loader::PROGRAMS_LOADED {
        let n = loader::recursion_misses(&loaded.ebpf, prog).unwrap_or(0);
        if n > 0 {
            eprintln!(
                "groundtruth-agent: warning: the kernel skipped {n} run(s) of {prog} (another \
                 run of it was active on that CPU): what they would have recorded is missing"
            );
        }
        skipped += n;
    }
    if skipped > 0 {
        summary
            .kernel_stats
            .insert("program_runs_skipped_by_kernel", skipped);
    }
    writer.set_kernel_gaps(
        summary
            .kernel_stats
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    );
    writer.set_lost(summary.lost.clone());
    writer.set_produced(produced);
    let fin = writer.finish()?;
    for (name, head) in &fin.sealed {
        eprintln!("groundtruth-agent: sealed {name}, chain head {head}");
    }
    eprintln!("groundtruth-agent: final seal, chain head {}", fin.head);
    summary.files = fin.files;
    summary.head = fin.head;
    summary.still_running = live
        .iter()
        .filter(|p| Some(**p) != child.map(|c| c as u32) || child_status.is_none())
        .map(|p| (*p, names.get(p).cloned().unwrap_or_default()))
        .collect();
    summary.agent_cpu_ns = self_cpu_ns();
    summary.agent_load_cpu_ns = load_cpu_ns;
    summary.exit_code = match (child, child_status) {
        (_, Some(s)) => exit_code_of(s),
        (Some(_), None) => 128 + SIGNAL.load(Ordering::SeqCst),
        // Attached to running services: a requested stop is a clean one.
        (None, _) => 0,
    };
    Ok(summary)
}

impl Summary {
    /// With `--bpf-stats`: the kernel programs' time while recording, as one line.
    pub fn program_time_line(&self) -> Option<String> {
        let p = self.program_time.as_ref()?;
        let (ns, runs) = p.iter().fold((0u64, 0u64), |(t, n), x| (t + x.1, n + x.2));
        let each: Vec<String> = p
            .iter()
            .filter(|x| x.2 > 0)
            .map(|(name, t, n)| format!("{name} {n} runs {} us ({} ns a run)", t / 1000, t / n))
            .collect();
        Some(format!(
            "groundtruth-agent: kernel programs while recording (--bpf-stats): total {} us in \
             {runs} runs, {} ns per recorded event; {}",
            ns / 1000,
            ns / self.events.max(1),
            each.join(", ")
        ))
    }

    pub fn line(&self) -> String {
        let classes: Vec<String> = ["process", "file", "network"]
            .iter()
            .map(|c| format!("{c} {}", self.per_class.get(c).copied().unwrap_or(0)))
            .collect();
        let lost: u64 = self.lost.values().sum();
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let mut s = format!(
            "groundtruth-agent: {} events ({}), lost {}, {} file{}: {}",
            self.events,
            classes.join(", "),
            lost,
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            files.join(" ")
        );
        if lost > 0 {
            let per: Vec<String> = self
                .lost
                .iter()
                .map(|(c, n)| format!("cpu{c}={n}"))
                .collect();
            s.push_str(&format!(
                " [lost per CPU: {}; ring buffer full, see --ring-size]",
                per.join(" ")
            ));
        }
        if !self.head.is_empty() {
            s.push_str(&format!(", chain head {}", self.head));
        }
        s.push_str(&format!(
            ", agent cpu {} ms (loading {} ms)",
            self.agent_cpu_ns / 1_000_000,
            self.agent_load_cpu_ns / 1_000_000
        ));
        if self.malformed > 0 {
            s.push_str(&format!(", {} malformed records", self.malformed));
        }
        for (k, v) in &self.kernel_stats {
            s.push_str(&format!(", {k} {v}"));
        }
        if !self.still_running.is_empty() {
            let p: Vec<String> = self
                .still_running
                .iter()
                .map(|(pid, n)| format!("{pid} ({n})"))
                .collect();
            s.push_str(&format!(
                "; still running, not followed further: {}",
                p.join(", ")
            ));
        }
        s
    }
}

/// The keys of a kernel hash map that the kernel may be changing meanwhile. Walking
/// it fails (or starts over) when the key last returned was deleted in between; then
/// the walk is repeated, a few times at most, and the keys seen are merged.
fn map_keys<K, V>(map: &BpfHashMap<MapData, K, V>) -> Vec<K>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod,
{
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for _ in 0..5 {
        let mut clean = true;
        for k in map.keys() {
            match k {
                Ok(k) => {
                    if seen.insert(k) {
                        out.push(k);
                    }
                }
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
        if clean {
            break;
        }
    }
    out
}

/// Where decoded events go, with the state the record loop keeps about them.
struct Sink {
    decoder: Decoder,
    writer: TrailWriter,
    fds: BpfHashMap<MapData, FdKey, FdState>,
    flows: BpfHashMap<MapData, FlowKey, Flow>,
    unix: BpfHashMap<MapData, u64, UnixConn>,
    /// What each UDP flow had when last reported (periodic reports give the rest).
    flows_reported: HashMap<FlowKey, Flow>,
    summary: Summary,
    /// Tracked processes not seen exiting yet.
    live: BTreeSet<u32>,
    /// `comm` of tracked processes, for naming those still running at the end.
    names: BTreeMap<u32, String>,
}

impl Sink {
    /// Report the UDP flows `pick` selects: what they carried since their last report.
    /// `done`: the flows ended (socket closed, process exited, recording over) and are
    /// removed from the kernel map.
    fn report_flows(&mut self, pick: impl Fn(&FlowKey) -> bool, done: bool) -> anyhow::Result<()> {
        let keys: Vec<FlowKey> = map_keys(&self.flows)
            .into_iter()
            .filter(|k| pick(k))
            .collect();
        for key in keys {
            let Ok(flow) = self.flows.get(&key, 0) else {
                continue;
            };
            if done {
                let _ = self.flows.remove(&key);
            }
            let prev = if done {
                self.flows_reported.remove(&key)
            } else {
                self.flows_reported.insert(key, flow)
            };
            let moved = |f: &Flow| f.datagrams_in + f.datagrams_out;
            if prev.as_ref().map_or(0, moved) == moved(&flow) {
                continue;
            }
            let ev = self.decoder.udp_flow(&key, &flow, prev.as_ref());
            self.push(ev)?;
        }
        Ok(())
    }

    fn push(&mut self, ev: trail::Event) -> anyhow::Result<()> {
        *self
            .summary
            .per_class
            .entry(class_name(ev.class_uid))
            .or_default() += 1;
        self.summary.events += 1;
        self.writer.push(ev)?;
        Ok(())
    }

    fn handle(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        // The UDP-close marker is not an event: look at the kind before decoding, so that
        // ordinary records are parsed once.
        if crate::decode::op_of(bytes) == Some(agent_common::op::NET_UDP_CLOSE) {
            if let Ok(rec) = crate::decode::parse(bytes) {
                let sk = rec.ev.arg_b;
                return self.report_flows(|k| k.sk == sk, true);
            }
        }
        let ev = match self.decoder.decode(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                self.summary.malformed += 1;
                if self.summary.malformed <= 5 {
                    eprintln!("groundtruth-agent: malformed kernel record ({e}); counted");
                }
                return Ok(());
            }
        };
        let is_process = ev.class_uid == class::PROCESS_ACTIVITY;
        if is_process && ev.activity_id != activity::PROCESS_TERMINATE {
            // Launch and Fork are where a process's name is set or first seen.
            let pid = ev.process.as_ref().map_or(ev.actor.pid, |p| p.pid);
            self.names.insert(pid, ev.actor.name.to_string());
        }
        if is_process && ev.activity_name == "Fork" {
            if let Some(p) = &ev.process {
                self.live.insert(p.pid);
            }
        }
        let exit =
            (is_process && ev.activity_id == activity::PROCESS_TERMINATE).then(|| ev.clone());
        self.push(ev)?;
        if let Some(exit) = exit {
            let pid = exit.actor.pid;
            self.live.remove(&pid);
            // Its sockets are closed: its UDP flows are complete, and its unix
            // connections still open were closed by the kernel.
            self.report_flows(|k| k.tgid == pid, true)?;
            for sk in map_keys(&self.unix) {
                let Ok(c) = self.unix.get(&sk, 0) else {
                    continue;
                };
                if c.owner.tgid != pid {
                    continue;
                }
                let _ = self.unix.remove(&sk);
                let ev = self.decoder.unix_exit_close(&exit, sk, &c);
                self.push(ev)?;
            }
            // Descriptors the kernel closed at exit: report the bytes it counted.
            for o in self.decoder.open_fds(pid) {
                let key = FdKey {
                    pid: o.pid,
                    fd: o.fd,
                };
                let st = self.fds.get(&key, 0).unwrap_or_default();
                let _ = self.fds.remove(&key);
                let c = self.decoder.implicit_close(
                    &exit,
                    o.fd,
                    st.bytes_read,
                    st.bytes_written,
                    st.inode,
                    st.dev,
                );
                self.push(c)?;
            }
        }
        Ok(())
    }
}
