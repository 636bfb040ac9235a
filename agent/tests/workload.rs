//! The benchmark's workloads (`cargo xtask bench` runs them under the agent; no root
//! needed here): every operation it uses exists and prints its timing line.

use std::process::Command;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");

#[test]
fn the_benchmark_operations_run_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(WORKLOAD)
        .args(["loop:3", "tcploop:5", "bulk:2"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "loop: 3 iterations in ",
        "tcploop: 5 connections in ",
        "bulk: 2097152 bytes in ",
    ] {
        assert!(out.contains(want), "`{want}` missing from: {out}");
    }
}
