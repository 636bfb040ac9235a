//! `groundtruth`: the unprivileged side. Reads trails written by groundtruth-agent.

use analysis::{events, handoffs, verify};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::{io::Write, path::PathBuf, process::ExitCode};

const EXIT_CODES: &str = "\
EXIT STATUS:
  0  success (verify: everything verifies)
  1  the trail does not verify, or could not be read (missing, not a trail, corrupt)
  2  usage error (bad arguments, unreadable --pubkey or --anchor file)";

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
/// to verify (then say so on stderr).
fn verified(dir: &std::path::Path, no_verify: bool) -> anyhow::Result<()> {
    if no_verify {
        eprintln!("groundtruth: NOT VERIFIED (--no-verify): this output may come from a trail that was changed");
        return Ok(());
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
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
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
                return Err(NotVerified.into());
            }
            Ok(())
        }
        Cmd::Handoffs {
            dir,
            format,
            no_verify,
        } => {
            verified(&dir, no_verify)?;
            let events: Vec<trail::Event> = trail::read_trail(&dir)
                .with_context(|| format!("reading trail {}", dir.display()))?
                .into_iter()
                .flat_map(|s| s.events)
                .collect();
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
            let segments = trail::read_trail(&dir)
                .with_context(|| format!("reading trail {}", dir.display()))?;
            let mut events: Vec<trail::Event> =
                segments.into_iter().flat_map(|s| s.events).collect();
            if let Some(under) = under {
                events.retain(|e| events::is_under(e, &under));
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let r = match format {
                Format::Table => events::print_table(&mut out, &events),
                Format::Jsonl => events::print_jsonl(&mut out, &events),
            };
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

/// `verify` found problems; they are printed already (exit status 1).
#[derive(Debug)]
struct NotVerified;
impl std::fmt::Display for NotVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the trail does not verify")
    }
}
impl std::error::Error for NotVerified {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<NotVerified>().is_some() => ExitCode::from(1),
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
