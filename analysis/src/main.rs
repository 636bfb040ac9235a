//! `groundtruth`: the unprivileged side. Reads trails written by groundtruth-agent.

use analysis::{events, handoffs};
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::{io::Write, path::PathBuf, process::ExitCode};

const EXIT_CODES: &str = "\
EXIT STATUS:
  0  success
  1  the trail could not be read (missing, not a trail, corrupt)
  2  usage error (bad arguments)";

#[derive(Parser)]
#[command(
    name = "groundtruth",
    version,
    about = "Read groundtruth trails: what the kernel saw a command do",
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
    },
    /// Print the connections between services: each TCP connection paired from its
    /// client's and its server's events, summed per (client, server, port).
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
    },
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Handoffs { dir, format } => {
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
        Cmd::Events { dir, format, under } => {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("groundtruth: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
