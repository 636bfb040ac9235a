//! `groundtruth`: the unprivileged side. Reads trails written by groundtruth-agent.

use analysis::{analyze, events, handoffs, verify};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::{io::Write, path::PathBuf, process::ExitCode};

const EXIT_CODES: &str = "\
EXIT STATUS:
  0  success (verify: everything verifies)
  1  the trail does not verify, or could not be read (missing, not a trail, corrupt)
  2  usage error (bad arguments, unreadable --pubkey or --anchor file)
analyze:
  0  every required kernel action is audited and every audit record is backed by the kernel
  1  there are findings (unaudited actions or unsupported records)
  2  usage or input error (bad arguments, unreadable or malformed log, bad mapping or
     expectations file, a trail that does not verify)";

const ANALYZE_HELP: &str = "EXAMPLES:
  groundtruth analyze trail/ --audit-log orders=orders/audit.jsonl --audit-log gateway=gw.jsonl
  groundtruth analyze trail/ --audit-log app=app.log --mapping app=app-mapping.toml \
      --expect expectations.toml --format junit --output analyze.xml

AUDIT LOGS are read line by line. Built-in mappings (JSON Lines): ECS (`@timestamp`, `event.action`,
`file.path`, `destination.ip`/`port`, `process.pid`) and OCSF (`time`, `class_uid`,
`activity_id`, `file.path`, `dst_endpoint`, `actor.process.pid`), detected from the first
record; any other JSON shape, or logfmt lines (key=value), with a TOML mapping file
(--mapping; format in docs/analysis.md).

WITHOUT --expect, these must be audited: file creates, writes, deletes and renames outside
system and temporary paths (/tmp, /var/tmp, /run, /usr, /lib*, /bin, /sbin, /boot,
/var/cache), and TCP connections between recorded services. Never required: /proc, /sys,
/dev, shared libraries, locale files, each service's own audit log.

EXIT STATUS:
  0  every required kernel action is audited and every audit record is backed by the kernel
  1  there are findings (unaudited actions or unsupported records)
  2  usage or input error (bad arguments, unreadable or malformed log, bad mapping or
     expectations file, a trail that does not verify)";

#[derive(Parser)]
#[command(
    name = "groundtruth",
    version,
    about = "Read groundtruth trails: verify them, print what the kernel saw, pair the handoffs between services",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One aligned line per event, for people.
    Table,
    /// One JSON object per line, in the shape of the trail's schema.
    Jsonl,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the events of a trail, in the order they were recorded.
    ///
    /// Example: groundtruth events trail/ --format jsonl | jq 'select(.class_uid == 1001)'
    #[command(after_help = EXIT_CODES)]
    Events {
        /// Trail directory written by `groundtruth-agent record --out DIR`.
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Keep process events and only the file events whose path is under PATH
        /// (hides the loader's libraries, locale files, ...).
        #[arg(long, value_name = "PATH")]
        under: Option<PathBuf>,
        /// Print the trail even if it does not verify (the output says so).
        #[arg(long)]
        no_verify: bool,
    },
    /// Check a trail against its seals (exit 0 only if everything verifies).
    ///
    /// Checks every file's hash, the chain, the signatures and key succession, and that
    /// nothing is missing, extra, reordered, from another run or cut off. Prints a line
    /// per problem (named by file and segment), then a summary.
    ///
    /// Without --pubkey, --expect-head or --anchor the trail is only checked against
    /// itself: someone who rewrote it whole with new keys would pass. Hold it against
    /// something kept outside: the long-term public key (--sign-key at recording), or
    /// the chain head the agent printed (a CI log) or appended to its --anchor file.
    ///
    /// Example: groundtruth verify trail/ --anchor ci-anchor.txt --pubkey team.pub
    #[command(after_help = EXIT_CODES)]
    Verify {
        dir: PathBuf,
        /// Long-term public key (64 hex characters in FILE) that must have certified
        /// the run's first key.
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// The chain head the log must end with.
        #[arg(long, value_name = "HEX", conflicts_with = "anchor")]
        expect_head: Option<String>,
        /// An anchor file written by `groundtruth-agent --anchor`: every head it kept
        /// for this run must be in the log, the last one at its end.
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: VerifyFormat,
    },
    /// Compare a trail with the services' audit logs.
    ///
    /// Kernel events are folded into actions (one write of a file from open to close, one
    /// rename, one delete, one TCP connection, one exec); each action that must be
    /// audited is matched to at most one audit record of the same service, class and
    /// resource within --window. Findings: `unaudited` (the kernel saw it, no record
    /// says so) and `unsupported` (a record claims what the kernel never saw).
    #[command(after_help = ANALYZE_HELP)]
    Analyze {
        /// Trail directory written by `groundtruth-agent record --out DIR`.
        dir: PathBuf,
        /// An audit log written by a service (repeatable): the service label as in the
        /// trail, and the JSON Lines file.
        #[arg(long = "audit-log", value_name = "SERVICE=PATH", required = true)]
        audit_log: Vec<String>,
        /// How to read the logs: `ecs`, `ocsf` or a TOML mapping file, for every log, or
        /// `SERVICE=ecs|ocsf|FILE` for one service's logs (repeatable). Default: detect.
        #[arg(long, value_name = "MAPPING")]
        mapping: Vec<String>,
        /// Expectations file (TOML): which kernel actions require a record. Default: the
        /// built-in rules below.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
        /// How far apart a record and its action may be in time (2s, 500ms, 1.5s).
        #[arg(long, default_value = "2s", value_name = "DURATION")]
        window: String,
        #[arg(long, value_enum, default_value = "text")]
        format: AnalyzeFormat,
        /// Write the report to FILE instead of stdout (a one-line result still goes to
        /// stderr).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Count and report malformed log lines instead of stopping at the first.
        #[arg(long)]
        skip_malformed: bool,
        /// Analyze the trail even if it does not verify (the report says so).
        #[arg(long)]
        no_verify: bool,
    },
    /// Print the connections between services, paired from both ends.
    ///
    /// TCP connections (same 4-tuple), unix stream connections (same address, the
    /// server's peer pid is the client) and UDP exchanges (flows with swapped ends),
    /// summed per (client, server, port or socket address).
    ///
    /// `table` sums per pair of services; `jsonl` lists every connection with both
    /// identities (service, pid, process name, address); `dot` is a Graphviz service
    /// graph (render with `dot -Tsvg`). A side that was not recorded is named by its
    /// address.
    ///
    /// Example: groundtruth handoffs trail/ --format dot | dot -Tsvg > services.svg
    #[command(after_help = EXIT_CODES)]
    Handoffs {
        /// Trail directory written by `groundtruth-agent record --out DIR`.
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: HandoffFormat,
        /// Read the trail even if it does not verify (the output says so).
        #[arg(long)]
        no_verify: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AnalyzeFormat {
    /// Findings grouped by service, coverage and skew, for people.
    Text,
    /// One JSON object (schema `groundtruth.analyze/1`, docs/analysis.md).
    Json,
    /// JUnit XML: a test case per service and expectation rule.
    Junit,
}

#[derive(Clone, Copy, ValueEnum)]
enum VerifyFormat {
    /// A line per problem, then a summary.
    Text,
    /// One JSON object: problems and summary.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum HandoffFormat {
    /// Connections and bytes per (client service, server service, port).
    Table,
    /// One JSON object per connection, with both ends.
    Jsonl,
    /// A Graphviz digraph of the services.
    Dot,
}

fn finish(r: std::io::Result<()>, out: &mut impl Write) -> anyhow::Result<()> {
    match r.and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// Verification before reading: refuse a trail that does not verify, unless told not
/// to verify (then say so on stderr). The run id, when verified.
fn verified(dir: &std::path::Path, no_verify: bool) -> anyhow::Result<Option<String>> {
    if no_verify {
        eprintln!("groundtruth: NOT VERIFIED (--no-verify): this output may come from a trail that was changed");
        return Ok(None);
    }
    let report = trail::verify::verify(dir, &trail::verify::Expect::default())
        .with_context(|| format!("verifying {}", dir.display()))?;
    if !report.ok() {
        for p in &report.problems {
            eprintln!("groundtruth: {}", verify::problem_line(p));
        }
        anyhow::bail!(
            "{} does not verify ({} problems above); `groundtruth verify {}` explains, --no-verify reads it anyway",
            dir.display(),
            report.problems.len(),
            dir.display()
        );
    }
    Ok(report.run_id)
}

fn mapping_of(v: &str) -> Result<analyze::audit::Mapping, Usage> {
    Ok(match v {
        "ecs" => analyze::audit::Mapping::Ecs,
        "ocsf" => analyze::audit::Mapping::Ocsf,
        file => analyze::audit::Mapping::Custom(std::sync::Arc::new(
            analyze::audit::CustomMapping::load(std::path::Path::new(file))
                .map_err(|e| Usage(format!("--mapping {e}")))?,
        )),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_analyze(
    dir: PathBuf,
    audit_log: Vec<String>,
    mapping: Vec<String>,
    expect: Option<PathBuf>,
    window: String,
    format: AnalyzeFormat,
    output: Option<PathBuf>,
    skip_malformed: bool,
    no_verify: bool,
) -> anyhow::Result<()> {
    let window_ns =
        analyze::time::parse_duration(&window).map_err(|e| Usage(format!("--window {e}")))?;
    if window_ns <= 0 {
        return Err(Usage("--window must be greater than zero".into()).into());
    }
    let mut all = None;
    let mut per_service = std::collections::HashMap::new();
    for m in &mapping {
        match m.split_once('=') {
            Some((svc, v)) if !svc.contains('/') => {
                per_service.insert(svc.to_string(), mapping_of(v)?);
            }
            _ => all = Some(mapping_of(m)?),
        }
    }
    let mut logs = Vec::new();
    for a in &audit_log {
        let (svc, path) = a
            .split_once('=')
            .filter(|(s, p)| !s.is_empty() && !p.is_empty())
            .ok_or_else(|| Usage(format!("--audit-log `{a}`: expected SERVICE=PATH")))?;
        let m = per_service.get(svc).cloned().or_else(|| all.clone());
        logs.push((svc.to_string(), PathBuf::from(path), m));
    }
    for svc in per_service.keys() {
        if !logs.iter().any(|l| &l.0 == svc) {
            return Err(Usage(format!(
                "--mapping {svc}=...: no --audit-log for service `{svc}`"
            ))
            .into());
        }
    }
    // A trail that does not verify is an input error here (exit status 2).
    let run_id = verified(&dir, no_verify).map_err(|e| Usage(format!("{e:#}")))?;
    let opts = analyze::Options {
        dir,
        logs,
        expect,
        window_ns,
        skip_malformed,
        verification_skipped: no_verify,
        run_id,
    };
    let report = analyze::analyze(&opts).map_err(Usage)?;
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        let mut out = out;
        match format {
            AnalyzeFormat::Text => analyze::report::print_text(&mut out, &report),
            AnalyzeFormat::Json => analyze::report::print_json(&mut out, &report),
            AnalyzeFormat::Junit => analyze::report::print_junit(&mut out, &report),
        }
    };
    match &output {
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| Usage(format!("--output {}: {e}", p.display())))?;
            let mut w = std::io::BufWriter::new(f);
            write(&mut w)
                .and_then(|_| w.flush())
                .map_err(|e| Usage(format!("--output {}: {e}", p.display())))?;
            let ua = report
                .findings
                .iter()
                .filter(|f| f.kind == "unaudited")
                .count();
            eprintln!(
                "groundtruth: {} findings ({ua} unaudited, {} unsupported); report in {}",
                report.findings.len(),
                report.findings.len() - ua,
                p.display()
            );
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let r = write(&mut out);
            finish(r, &mut out)?;
        }
    }
    if !report.ok {
        return Err(Reported("findings").into());
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Analyze {
            dir,
            audit_log,
            mapping,
            expect,
            window,
            format,
            output,
            skip_malformed,
            no_verify,
        } => run_analyze(
            dir,
            audit_log,
            mapping,
            expect,
            window,
            format,
            output,
            skip_malformed,
            no_verify,
        ),
        Cmd::Verify {
            dir,
            pubkey,
            expect_head,
            anchor,
            format,
        } => {
            let mut expect = trail::verify::Expect {
                head: expect_head,
                ..Default::default()
            };
            if let Some(p) = pubkey {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Usage(format!("--pubkey {}: {e}", p.display())))?;
                expect.pubkey = Some(
                    trail::seal::parse_public_key(&text)
                        .map_err(|e| Usage(format!("--pubkey {}: {e}", p.display())))?,
                );
            }
            if let Some(a) = anchor {
                let text = std::fs::read_to_string(&a)
                    .map_err(|e| Usage(format!("--anchor {}: {e}", a.display())))?;
                expect.anchor = Some(
                    trail::verify::parse_anchor(&text)
                        .map_err(|e| Usage(format!("--anchor {}: {e}", a.display())))?,
                );
            }
            let report = trail::verify::verify(&dir, &expect)
                .with_context(|| format!("reading {}", dir.display()))?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let r = match format {
                VerifyFormat::Text => verify::print_text(&mut out, &dir, &report),
                VerifyFormat::Json => serde_json::to_writer_pretty(&mut out, &report)
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
            };
            finish(r, &mut out)?;
            if !report.ok() {
                return Err(Reported("the trail does not verify").into());
            }
            Ok(())
        }
        Cmd::Handoffs {
            dir,
            format,
            no_verify,
        } => {
            verified(&dir, no_verify)?;
            // Only network events make handoffs: memory holds those, not the trail.
            let mut events = Vec::new();
            for e in trail::stream_events(&dir)
                .with_context(|| format!("reading trail {}", dir.display()))?
            {
                let e = e.with_context(|| format!("reading trail {}", dir.display()))?;
                if e.class_uid == trail::event::class::NETWORK_ACTIVITY {
                    events.push(e);
                }
            }
            let h = handoffs::handoffs(&events);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let r = match format {
                HandoffFormat::Table => handoffs::print_table(&mut out, &handoffs::pairs(&h)),
                HandoffFormat::Jsonl => handoffs::print_jsonl(&mut out, &h),
                HandoffFormat::Dot => handoffs::print_dot(&mut out, &handoffs::pairs(&h)),
            };
            finish(r, &mut out)
        }
        Cmd::Events {
            dir,
            format,
            under,
            no_verify,
        } => {
            verified(&dir, no_verify)?;
            let stream = trail::stream_events(&dir)
                .with_context(|| format!("reading trail {}", dir.display()))?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            // Streamed in chunks: memory holds a chunk, not the trail.
            let mut chunk = Vec::with_capacity(4096);
            let mut r = match format {
                Format::Table => events::print_table_header(&mut out),
                Format::Jsonl => Ok(()),
            };
            let mut events = stream.peekable();
            while r.is_ok() && events.peek().is_some() {
                chunk.clear();
                for e in events.by_ref().take(4096) {
                    let e = e.with_context(|| format!("reading trail {}", dir.display()))?;
                    if under.as_ref().is_none_or(|u| events::is_under(&e, u)) {
                        chunk.push(e);
                    }
                }
                r = match format {
                    Format::Table => events::print_table_rows(&mut out, &chunk),
                    Format::Jsonl => events::print_jsonl(&mut out, &chunk),
                };
            }
            finish(r, &mut out)
        }
    }
}

/// A usage error found after parsing (exit status 2).
#[derive(Debug)]
struct Usage(String);
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// A negative outcome already printed (`verify`: problems; `analyze`: findings): exit
/// status 1, nothing more to say.
#[derive(Debug)]
struct Reported(&'static str);
impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Reported {}

fn main() -> ExitCode {
    trail::alloc::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::from(1),
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("groundtruth: error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("groundtruth: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
