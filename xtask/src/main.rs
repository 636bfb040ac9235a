//! `cargo xtask setup|demo|test|bench`: everything groundtruth needs, from a fresh clone.
//!
//! - setup: installs the build prerequisites idempotently (apt packages, the nightly's
//!   rust-src, bpf-linker built against the nightly's LLVM major) and checks the kernel.
//! - test: setup, then every test of the workspace, the privileged ones included, on one
//!   thread (they load programs into the kernel).
//! - demo: setup, build, record the three-service shop (demo/shop.py), verify, show the
//!   handoffs and the analysis that names its two planted audit gaps.
//! - bench: the benchmarks of docs/benchmarks.md (not a test: prints ratios).
//! - pgo: `groundtruth` built with profile-guided optimisation, in target/pgo/release.

mod bench;
mod pgo;
mod setup;
mod vm;

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
    run(cargo().args(["test", "--", "--test-threads=1"]))?;
    // The kernel matrix: the same capture checks on three Debian kernels in QEMU
    // (docs/kernels.md).
    if is_root() {
        vm::vm_test(&[
            "--kernel".into(),
            "6.1".into(),
            "--kernel".into(),
            "6.12".into(),
            "--kernel".into(),
            "7.3".into(),
        ])
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("the kernel matrix needs root (CI=true): run `cargo xtask test` as root")
    } else {
        eprintln!("xtask: note: not root: the kernel matrix in QEMU (vm-test) skipped");
        Ok(())
    }
}

/// The two findings the demo's shop plants (demo/shop.py): (kind, class, path suffix).
const DEMO_FINDINGS: [(&str, &str, &str); 2] = [
    ("unsupported", "file.write", "/data/invoices/invoice-2.pdf"),
    ("unaudited", "file.delete", "/data/orders/order-3.json"),
];

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
    let shop = out.join("shop");
    std::fs::create_dir_all(&shop)?;
    let trail = out.join("trail");
    let gt = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = Command::new(bin.join("groundtruth"));
        for a in args {
            c.arg(a);
        }
        c
    };
    eprintln!("\n== recording demo/shop.py (gateway, orders, storage over loopback HTTP) under groundtruth-agent ==");
    let status = Command::new(bin.join("groundtruth-agent"))
        .arg("record")
        .arg("--out")
        .arg(&trail)
        .args(["--service", "driver"])
        .args(["--service", "gateway=comm:gt-gateway"])
        .args(["--service", "orders=comm:gt-orders"])
        .args(["--service", "storage=comm:gt-storage"])
        .arg("--")
        .arg("python3")
        .arg(root.join("demo/shop.py"))
        .arg("driver")
        .arg(&shop)
        .arg("4")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&out)
        .status()?;
    if !status.success() {
        bail!("recording failed: {status}");
    }
    eprintln!("\n== verifying the sealed trail ==");
    run(&mut gt(&[&"verify", &trail]))?;
    eprintln!("\n== handoffs between services (both ends of each connection) ==");
    run(&mut gt(&[&"handoffs", &trail]))?;
    let logs = shop.join("data/logs");
    let analyze = |format: &str, file: &str| -> anyhow::Result<std::process::Output> {
        let mut c = gt(&[&"analyze", &trail]);
        for s in ["gateway", "orders", "storage"] {
            c.arg("--audit-log")
                .arg(format!("{s}={}", logs.join(format!("{s}.jsonl")).display()));
        }
        c.arg("--expect").arg(root.join("demo/expectations.toml"));
        c.args(["--format", format])
            .arg("--output")
            .arg(out.join(file));
        let o = c.output()?;
        // Exit status 1 means findings, which the demo plants.
        if o.status.code() != Some(1) {
            bail!(
                "groundtruth analyze exited with {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(o)
    };
    analyze("text", "analyze.txt")?;
    analyze("junit", "analyze.xml")?;
    analyze("json", "analyze.json")?;
    eprintln!("\n== groundtruth analyze: the kernel's trail against the services' audit logs ==");
    print!("{}", std::fs::read_to_string(out.join("analyze.txt"))?);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analyze.json"))?)?;
    let found: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| {
                    let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                    (s("kind"), s("class"), s("resource"))
                })
                .collect()
        })
        .unwrap_or_default();
    let planted = DEMO_FINDINGS.iter().all(|(k, c, p)| {
        found
            .iter()
            .any(|f| f.0 == *k && f.1 == *c && f.2.ends_with(p))
    });
    if found.len() != DEMO_FINDINGS.len() || !planted {
        bail!("the demo plants exactly {DEMO_FINDINGS:?}, but analyze reported {found:?}");
    }
    let t = trail.display();
    println!(
        "\nThe demo's two planted bugs are the two findings above. Everything is in {}:\n\
         trail/ (sealed Parquet), shop/data/logs/ (the audit logs), analyze.txt, analyze.json,\n\
         analyze.xml (JUnit).\n\nTry the trail in DuckDB (the duckdb CLI, or duckdb.sql(\"...\").show() in target/pyenv/bin/python):\n\
         \n  -- what each service did, by class of event\n  \
         SELECT groundtruth.service, activity_name, count(*) FROM read_parquet('{t}/segment-*.parquet') GROUP BY ALL ORDER BY ALL;\n\
         \n  -- every file the shop's services wrote, with bytes\n  \
         SELECT time, groundtruth.service, file.path, groundtruth.bytes_written FROM read_parquet('{t}/segment-*.parquet')\n  \
         WHERE activity_name = 'Close' AND groundtruth.bytes_written > 0 AND file.path LIKE '%/shop/data/%' ORDER BY time;\n\
         \n  -- the TCP connections: who connected to whom, and the bytes each way\n  \
         SELECT groundtruth.service, src_endpoint.port AS client_port, dst_endpoint.port AS server_port, traffic.bytes_out, traffic.bytes_in\n  \
         FROM read_parquet('{t}/segment-*.parquet') WHERE class_uid = 4001 AND activity_name = 'Close' ORDER BY time;",
        out.display()
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
        Some("pgo") => pgo::build().map(|_| ()),
        Some("vm-test") => vm::vm_test(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|test|demo|bench|pgo|vm-test>\n\
                 \x20 setup  install build prerequisites (idempotent) and check the kernel\n\
                 \x20 test   run every test, the privileged ones included (as root)\n\
                 \x20 demo   record the built-in three-service shop, verify it, analyze its audit logs (as root)\n\
                 \x20 bench  run the benchmarks and write docs/benchmarks.md (as root)\n\
                 \x20 pgo    build groundtruth with profile-guided optimisation into target/pgo/release\n\
                 \x20 vm-test [--kernel 6.1|6.12|7.3]...  boot Debian kernels in QEMU, check capture in each (as root)"
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
