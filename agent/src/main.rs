//! `groundtruth-agent`: the privileged capture side of groundtruth.

use agent::{
    record::{self, RecordOptions},
    scope::ServiceArg,
};
use clap::{Parser, Subcommand};
use std::{ffi::OsString, path::PathBuf, process::ExitCode};

/// The trail writer allocates and frees column buffers for every batch: mimalloc keeps
/// them cheap (glibc malloc spent about 15% of the agent's CPU per event on it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
EXIT STATUS:
  record exits with the command's own exit status (128+N if a signal N killed it),
  so it can wrap a test command in CI. Without a command (attached to running
  services) it exits 0 after a clean stop (SIGINT, SIGTERM or --duration).
  Agent failures use:
    2    usage error (bad option or selector)
    125  the agent itself failed (not root, kernel unsupported, output directory not
         empty, no such pid or cgroup, cannot load or attach programs, cannot write
         the trail)
    127  the command could not be started (not found, not executable)";

#[derive(Parser)]
#[command(
    name = "groundtruth-agent",
    version,
    about = "Record what a command really does, from the kernel, into a Parquet trail",
    long_about = "Record what a command really does, from the kernel, into a Parquet trail.\n\n\
        eBPF programs on syscall, scheduler and socket tracepoints see every process, \
        file and network action of the command's whole process tree (or of running \
        services selected with --service), independently of what the application \
        logs. Closed segments are hash-sealed and signed (docs/seal.md). Needs root \
        and a kernel with BTF (5.15 or later).",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a long-term Ed25519 key for --sign-key: the secret seed goes to FILE
    /// (mode 0400, refused if FILE exists), the public key to FILE.pub and stdout.
    ///
    /// Keep FILE.pub where verifiers can get it: `groundtruth verify DIR --pubkey FILE.pub`.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Launch CMD and record its process tree until it exits, and/or record running
    /// services selected with --service NAME=SELECTOR.
    ///
    /// Examples:
    ///   sudo groundtruth-agent record --out trail/ -- make test
    ///   sudo groundtruth-agent record --out trail/ --service api=cgroup:system.slice/api.service \
    ///        --service db=pid:4242 --duration 60
    ///   sudo groundtruth-agent record --out trail/ --service ci --service web=exe:/usr/sbin/nginx -- ./run-tests.sh
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Record {
        /// Directory for the trail; created if absent, refused if not empty.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Repeatable. `NAME` labels the launched command's events (the
        /// `groundtruth.service` column; default: the command's file name).
        /// `NAME=SELECTOR` records a service: `cgroup:PATH` (a cgroup v2 directory,
        /// absolute or relative to the cgroup2 mount, and its descendants), `pid:PID`
        /// (a running process and all its descendants), `exe:PATH` or `comm:NAME` (any
        /// process that execs that file / with that name from now on, also inside the
        /// launched command's tree). Selection happens in the kernel.
        #[arg(long, value_name = "NAME[=SELECTOR]", value_parser = agent::scope::parse_service)]
        service: Vec<agent::scope::ServiceArg>,
        /// Without a command: stop after this many seconds (default: until SIGINT or
        /// SIGTERM).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// UDP flows are reported when their socket closes, when their process exits,
        /// and every SECONDS while they last (each report covers what the flow carried
        /// since the previous one).
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        flow_report_interval: f64,
        /// Run CMD as this user (name or uid). Default under sudo: the user who ran
        /// sudo (SUDO_UID/SUDO_GID), never silently root.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Keep recording after CMD exits until every process of its tree has exited.
        #[arg(long)]
        wait_all: bool,
        /// Kernel ring buffer size in MiB (a power of two). Events that do not fit are
        /// counted as lost and reported, never silently dropped.
        #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = parse_ring)]
        ring_size: u32,
        /// Start a new Parquet segment after this many events...
        #[arg(long, value_name = "N", default_value_t = 4 << 20)]
        segment_events: usize,
        /// ... or this many MiB...
        #[arg(long, value_name = "MIB", default_value_t = 256)]
        segment_mib: u64,
        /// ... or this many seconds (each closed segment is sealed: docs/seal.md).
        #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
        segment_seconds: f64,
        /// Certify the run's first seal key with this long-term Ed25519 key (64 hex
        /// characters, as `groundtruth-agent keygen` writes; the file must be owned by
        /// root and readable by root only, or the agent refuses).
        #[arg(long, value_name = "FILE")]
        sign_key: Option<PathBuf>,
        /// Append the chain head to FILE at every seal (`RUN_ID SEQ HEAD` lines): an
        /// outside copy for `groundtruth verify --anchor FILE`.
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
        /// Measure the kernel programs' own CPU time while recording (the kernel's BPF
        /// run-time statistics, 5.8+; they add two clock reads to every program run)
        /// and print it at the end: runs and time of each program, and per recorded
        /// event. The programs run for every process's syscalls (an untracked one
        /// costs a map lookup), so the time is the system's, not the command's alone.
        #[arg(long)]
        bpf_stats: bool,
        /// The command and its arguments (after `--`); optional when services are
        /// selected with --service NAME=SELECTOR.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

fn parse_ring(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of MiB"))?;
    if n == 0 || !n.is_power_of_two() || n > 1024 {
        return Err(format!(
            "{n} MiB: the ring size must be a power of two between 1 and 1024"
        ));
    }
    Ok(n)
}

fn main() -> ExitCode {
    trail::alloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Keygen { out } => match keygen(&out) {
            Ok(public) => {
                println!("{public}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("groundtruth-agent: error: {e:#}");
                ExitCode::from(125)
            }
        },
        Cmd::Record {
            out,
            service,
            user,
            wait_all,
            ring_size,
            segment_events,
            segment_mib,
            segment_seconds,
            sign_key,
            anchor,
            bpf_stats,
            command,
            duration,
            flow_report_interval,
        } => {
            if !(flow_report_interval.is_finite() && flow_report_interval > 0.0) {
                eprintln!("groundtruth-agent: error: --flow-report-interval {flow_report_interval}: expected a positive number of seconds");
                return ExitCode::from(2);
            }
            let mut label = None;
            let mut selectors = Vec::new();
            for s in service {
                match s {
                    ServiceArg::Label(l) => {
                        if label.replace(l).is_some() {
                            eprintln!("groundtruth-agent: error: --service NAME (the command's label) given twice");
                            return ExitCode::from(2);
                        }
                    }
                    ServiceArg::Select { name, selector } => selectors.push((name, selector)),
                }
            }
            let duration = match duration {
                Some(d) if !(d.is_finite() && d > 0.0) => {
                    eprintln!("groundtruth-agent: error: --duration {d}: expected a positive number of seconds");
                    return ExitCode::from(2);
                }
                d => d.map(std::time::Duration::from_secs_f64),
            };
            let opts = RecordOptions {
                out,
                service: label,
                selectors,
                duration,
                flow_report_every: std::time::Duration::from_secs_f64(flow_report_interval),
                user,
                wait_all,
                ring_bytes: ring_size * 1024 * 1024,
                segment_rows: segment_events.max(1),
                segment_bytes: segment_mib.max(1) << 20,
                segment_age: if segment_seconds.is_finite() && segment_seconds > 0.0 {
                    std::time::Duration::from_secs_f64(segment_seconds)
                } else {
                    eprintln!("groundtruth-agent: error: --segment-seconds {segment_seconds}: expected a positive number");
                    return ExitCode::from(2);
                },
                sign_key,
                anchor,
                bpf_stats,
                command,
            };
            match record::record(opts) {
                Ok(summary) => {
                    if let Some(l) = summary.program_time_line() {
                        eprintln!("{l}");
                    }
                    eprintln!("{}", summary.line());
                    ExitCode::from(summary.exit_code.clamp(0, 255) as u8)
                }
                Err(e) => {
                    eprintln!("groundtruth-agent: error: {e:#}");
                    if e.downcast_ref::<agent::launch::CannotStart>().is_some() {
                        ExitCode::from(127)
                    } else {
                        ExitCode::from(125)
                    }
                }
            }
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let key = trail::seal::new_key().context("drawing a key")?;
    let public = trail::seal::hex(key.verifying_key().as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
    writeln!(f, "{}", trail::seal::hex(key.as_bytes()))?;
    f.sync_all()?;
    let pub_path = std::path::PathBuf::from(format!("{}.pub", out.display()));
    std::fs::write(&pub_path, format!("{public}\n"))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    eprintln!(
        "groundtruth-agent: secret key in {} (mode 0400), public key in {}",
        out.display(),
        pub_path.display()
    );
    Ok(public)
}
