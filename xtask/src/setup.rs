//! `cargo xtask setup`: idempotent installation of what the build needs, and kernel checks.

use crate::{is_root, run};
use anyhow::{bail, Context as _};
use std::{path::Path, process::Command};

const BPF_LINKER_VERSION: &str = "0.13.0";

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// LLVM major version of the nightly toolchain (bpf-linker must match it).
fn nightly_llvm_major() -> anyhow::Result<u32> {
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"])).context(
        "the nightly Rust toolchain is not installed (the kernel programs need it): \
         run `rustup toolchain install nightly --component rust-src`",
    )?;
    let line = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` printed no LLVM version")?;
    line.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .context("unparsable LLVM version")
}

/// The LLVM major the installed bpf-linker is linked against, if it runs.
fn bpf_linker_llvm() -> Option<u32> {
    let path = output(Command::new("sh").args(["-c", "command -v bpf-linker"]))?;
    let path = path.trim();
    let ver = output(Command::new(path).arg("--version"))?;
    if !ver.contains(BPF_LINKER_VERSION) {
        return None;
    }
    let ldd = output(Command::new("ldd").arg(path))?;
    ldd.split("libLLVM.so.")
        .nth(1)?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

pub fn apt_install(pkgs: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&String> = pkgs.iter().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}: run `sudo apt-get install -y {}`",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn check_kernel() -> anyhow::Result<()> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux): groundtruth needs CONFIG_DEBUG_INFO_BTF=y");
    }
    if !Path::new("/sys/kernel/tracing/events").exists() {
        if is_root() {
            run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
                .context("mounting tracefs")?;
        } else {
            eprintln!("xtask: note: tracefs is not mounted at /sys/kernel/tracing (the agent uses raw tracepoints and does not need it; the benchmark's bpftrace baseline does): mount it as root");
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mountinfo.lines().find(|l| l.contains(" - cgroup2 ")) {
        Some(l) => {
            let mnt = l.split(' ').nth(4).unwrap_or("?");
            eprintln!("xtask: kernel: BTF present, tracefs mounted, cgroup v2 at {mnt}");
        }
        None => {
            eprintln!("xtask: note: no cgroup v2 mount found (needed later for cgroup scoping)")
        }
    }
    Ok(())
}

/// Python packages the interoperability tests read trails with (pinned).
const PYTHON_PACKAGES: [&str; 2] = ["duckdb==2.0.1", "pyarrow==26.0.1"];

/// The virtual environment with [`PYTHON_PACKAGES`], under the target directory.
pub fn python_env_dir() -> std::path::PathBuf {
    crate::root_dir().join("target/pyenv")
}

/// Create the virtual environment, or bring its packages to the pinned versions.
fn python_env() -> anyhow::Result<()> {
    let dir = python_env_dir();
    let py = dir.join("bin/python");
    let pinned_present = || {
        let check = format!(
            "import importlib.metadata as m, sys; sys.exit(0 if all(m.version(p.split('==')[0]) == p.split('==')[1] for p in {:?}) else 1)",
            PYTHON_PACKAGES
        );
        Command::new(&py)
            .args(["-c", &check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if pinned_present() {
        return Ok(());
    }
    if !py.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir)).context(
            "creating the Python virtual environment (needs python3 with the venv module)",
        )?;
    }
    run(Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES))
    .context("installing duckdb and pyarrow from PyPI into target/pyenv")?;
    if !pinned_present() {
        bail!(
            "{} still lacks {PYTHON_PACKAGES:?} after pip install",
            dir.display()
        );
    }
    eprintln!("xtask: Python environment ready at {}", dir.display());
    Ok(())
}

pub fn setup() -> anyhow::Result<()> {
    let major = nightly_llvm_major()?;
    // rust-src for -Z build-std=core (idempotent and quick when present).
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    match bpf_linker_llvm() {
        Some(m) if m == major => {}
        found => {
            if let Some(m) = found {
                eprintln!("xtask: bpf-linker is built for LLVM {m} but the nightly uses LLVM {major}: rebuilding it");
            }
            apt_install(&[
                format!("llvm-{major}-dev"),
                format!("libpolly-{major}-dev"),
                "libzstd-dev".into(),
                "zlib1g-dev".into(),
            ])?;
            run(Command::new("cargo")
                .args([
                    "install",
                    "--locked",
                    "--force",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                ])
                .args([
                    "--no-default-features",
                    "--features",
                    &format!("llvm-{major}"),
                ])
                .env("LLVM_PREFIX", format!("/usr/lib/llvm-{major}")))?;
            if bpf_linker_llvm() != Some(major) {
                bail!("bpf-linker was installed but does not link LLVM {major}; is ~/.cargo/bin first in PATH?");
            }
        }
    }
    check_kernel()?;
    // Test tools: graphviz renders `groundtruth handoffs --format dot` in the tests.
    apt_install(&["graphviz".into()])?;
    python_env()?;
    eprintln!("xtask: setup complete (nightly LLVM {major}, bpf-linker {BPF_LINKER_VERSION})");
    Ok(())
}
