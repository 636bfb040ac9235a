//! `cargo xtask pgo`: `groundtruth` built with profile-guided optimisation.
//!
//! Three steps, the two builds in target directories of their own so that the ordinary
//! release build in `target/release` is never touched: an instrumented build
//! (`target/pgo-gen`) runs a training workload and writes raw profiles; `llvm-profdata`
//! (rustup's `llvm-tools` component, installed here when missing) merges them; the
//! optimised build (`target/pgo`) reads the merged profile. The training workload is a
//! synthetic trail of its own (300 000 events at 5 000 events/s, not the benchmark's
//! trails) analysed with every report format and verified, so that the profile covers
//! the whole command.

use crate::{cargo, root_dir, run};
use anyhow::{bail, Context as _};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Events of the training trail, and their rate (events per second).
const TRAINING_EVENTS: u64 = 300_000;
const TRAINING_RATE: u64 = 5_000;

/// Where the optimised `groundtruth` is built (its `release` directory).
pub fn bin_dir() -> PathBuf {
    root_dir().join("target/pgo/release")
}

fn rustc_output(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("rustc")
        .args(args)
        .current_dir(root_dir())
        .output()
        .context("running rustc")?;
    if !out.status.success() {
        bail!("`rustc {}` failed: {}", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `llvm-profdata` of the toolchain that builds the workspace (its LLVM must be the
/// one that wrote the profiles), installed with rustup when it is missing.
fn llvm_profdata() -> anyhow::Result<PathBuf> {
    let sysroot = rustc_output(&["--print", "sysroot"])?;
    let host = rustc_output(&["--print", "host-tuple"])?;
    let tool = Path::new(&sysroot).join(format!("lib/rustlib/{host}/bin/llvm-profdata"));
    if !tool.exists() {
        run(Command::new("rustup")
            .args(["component", "add", "llvm-tools"])
            .current_dir(root_dir()))
        .context("installing rustup's llvm-tools component (llvm-profdata) for the PGO build")?;
    }
    if !tool.exists() {
        bail!(
            "{} is still missing after `rustup component add llvm-tools`",
            tool.display()
        );
    }
    Ok(tool)
}

/// Run a training command, which must exit with `expected` (analyze exits 1 on
/// findings, which the training trail has planted; verify 0 on a valid trail).
fn train(cmd: &mut Command, expected: i32) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", crate::show(cmd)))?;
    match out.status.code() {
        Some(c) if c == expected => Ok(()),
        _ => bail!(
            "training run `{}` failed ({}): {}",
            crate::show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `cargo build --release` of `groundtruth` into `target_dir` with `rustflags`.
fn build_groundtruth(target_dir: &Path, rustflags: &str) -> anyhow::Result<()> {
    run(cargo()
        .args([
            "build",
            "--release",
            "-p",
            "analysis",
            "--bin",
            "groundtruth",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", rustflags))
}

/// Build `target/pgo/release/groundtruth`; returns its directory.
pub fn build() -> anyhow::Result<PathBuf> {
    let profdata = llvm_profdata()?;
    let root = root_dir();
    let gen_dir = root.join("target/pgo-gen");
    let raw = gen_dir.join("profiles");
    let _ = std::fs::remove_dir_all(&raw);
    // The synthetic trail generator, built normally.
    run(cargo().args(["build", "--release", "-p", "analysis", "--example", "synth"]))?;
    build_groundtruth(&gen_dir, &format!("-Cprofile-generate={}", raw.display()))?;
    // Profiles of the build scripts that ran during that build are not wanted.
    let _ = std::fs::remove_dir_all(&raw);

    let data = gen_dir.join("training");
    let _ = std::fs::remove_dir_all(&data);
    run(Command::new(root.join("target/release/examples/synth"))
        .arg(&data)
        .arg(TRAINING_EVENTS.to_string())
        .arg(TRAINING_RATE.to_string()))?;
    let gt = gen_dir.join("release/groundtruth");
    let trail = data.join("trail");
    eprintln!(
        "xtask: training the instrumented groundtruth on {}",
        data.display()
    );
    train(Command::new(&gt).arg("verify").arg(&trail), 0)?;
    for format in ["json", "text", "junit"] {
        let mut cmd = Command::new(&gt);
        cmd.arg("analyze").arg(&trail).arg("--format").arg(format);
        for s in 0..4 {
            cmd.arg("--audit-log").arg(format!(
                "svc{s}={}",
                data.join(format!("logs/svc{s}.jsonl")).display()
            ));
        }
        train(&mut cmd, 1)?;
    }
    let merged = gen_dir.join("groundtruth.profdata");
    run(Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .arg(&raw))?;
    let _ = std::fs::remove_dir_all(&data);

    // Cargo rebuilds when RUSTFLAGS change, not when the file they name does: the
    // profile is used under a name made from its content, so that a new profile
    // rebuilds every crate with it (and an unchanged one rebuilds nothing).
    let bytes = std::fs::read(&merged).with_context(|| format!("reading {}", merged.display()))?;
    // std's hasher with its fixed keys tells profiles apart (not a security hash).
    let mut hash = std::hash::DefaultHasher::new();
    std::hash::Hasher::write(&mut hash, &bytes);
    let named = gen_dir.join(format!(
        "groundtruth-{:016x}.profdata",
        std::hash::Hasher::finish(&hash)
    ));
    std::fs::rename(&merged, &named)?;
    // Earlier runs' profiles (about 20 MB each) go.
    for e in std::fs::read_dir(&gen_dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("groundtruth-") && name.ends_with(".profdata") && e.path() != named {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let out_dir = root.join("target/pgo");
    build_groundtruth(&out_dir, &format!("-Cprofile-use={}", named.display()))?;
    let bin = bin_dir();
    eprintln!(
        "xtask: built {} (profile-guided; the ordinary build stays in target/release)",
        bin.join("groundtruth").display()
    );
    Ok(bin)
}
