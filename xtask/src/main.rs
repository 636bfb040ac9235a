//! `cargo xtask setup|demo|test|bench`: everything groundtruth needs, from a fresh clone.
//!
//! - setup: installs the build prerequisites idempotently (apt packages, the nightly's
//!   rust-src, bpf-linker built against the nightly's LLVM major) and checks the kernel.
//! - test: setup, then every test of the workspace, the privileged ones included, on one
//!   thread (they load programs into the kernel).
//! - demo: setup, build, record the built-in scenario and show what the trail holds.
//! - bench: the benchmarks of docs/benchmarks.md (not a test: prints ratios).

mod bench;
mod setup;

use anyhow::{bail, Context as _};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run a command, echoing it, failing with its status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed: {status}", show(cmd));
    }
    Ok(())
}

pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root_dir());
    c
}

fn test() -> anyhow::Result<()> {
    setup::setup()?;
    if !is_root() {
        eprintln!(
            "xtask: note: not root: the privileged tests (which load eBPF programs) will skip; \
             run `sudo -E cargo xtask test` to include them"
        );
    }
    // Default members: the eBPF crate only builds for the BPF target (agent/build.rs).
    run(cargo().args(["build", "--all-targets"]))?;
    run(cargo().args(["test", "--", "--test-threads=1"]))
}

fn demo() -> anyhow::Result<()> {
    setup::setup()?;
    if !is_root() {
        bail!("the demo records with eBPF and needs root: run `sudo -E cargo xtask demo`");
    }
    run(cargo().args(["build", "-p", "agent", "-p", "analysis"]))?;
    let root = root_dir();
    let bin = root.join("target/debug");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let out = root.join("demo-output").join(format!("run-{stamp}"));
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    let trail = out.join("trail");
    // The storage service is a copy of the workload helper under its own name, selected
    // by its executable.
    let storage = out.join("storage");
    std::fs::copy(bin.join("gt-workload"), &storage)?;
    eprintln!("\n== recording demo/scenario.sh under groundtruth-agent ==");
    let status = Command::new(bin.join("groundtruth-agent"))
        .arg("record")
        .arg("--out")
        .arg(&trail)
        .args(["--service", "demo", "--service"])
        .arg(format!("storage=exe:{}", storage.display()))
        .arg("--")
        .arg("sh")
        .arg(root.join("demo/scenario.sh"))
        .env("GT_WORKLOAD", bin.join("gt-workload"))
        .env("GT_STORAGE", &storage)
        .current_dir(&work)
        .status()?;
    if !status.success() {
        bail!("recording failed: {status}");
    }
    eprintln!("\n== verifying the sealed trail ==");
    run(Command::new(bin.join("groundtruth"))
        .arg("verify")
        .arg(&trail))?;
    eprintln!("\n== what the kernel saw in the scenario's working directory ==");
    run(Command::new(bin.join("groundtruth"))
        .arg("events")
        .arg(&trail)
        .arg("--under")
        .arg(&work))?;
    eprintln!("\n== handoffs between services (both ends of each connection) ==");
    run(Command::new(bin.join("groundtruth"))
        .arg("handoffs")
        .arg(&trail))?;
    println!(
        "\nThe trail is in {} (Parquet; `groundtruth events {}` prints all of it).",
        trail.display(),
        trail.display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("setup") => setup::setup(),
        Some("test") => test(),
        Some("demo") => demo(),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|test|demo|bench>\n\
                 \x20 setup  install build prerequisites (idempotent) and check the kernel\n\
                 \x20 test   run every test, the privileged ones included (as root)\n\
                 \x20 demo   record the built-in scenario and show the trail (as root)\n\
                 \x20 bench  run the benchmarks and write docs/benchmarks.md (as root)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
