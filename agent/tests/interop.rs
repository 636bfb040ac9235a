//! Interoperability: a trail recorded here is read by DuckDB and pyarrow, the tools
//! analysts use. Every SQL statement documented in docs/schema.md runs in DuckDB and
//! must return exactly what groundtruth's own reader says; pyarrow reads every segment,
//! and every column it sees must be documented; the footer metadata is visible through
//! DuckDB's `parquet_kv_metadata`.
//!
//! Needs root (it records) and the Python environment `cargo xtask setup` prepares
//! (target/pyenv with duckdb and pyarrow). Under CI=true a missing environment fails.

mod common;

use common::*;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::Command,
};
use trail::meta;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> Option<PathBuf> {
    let py = std::env::var_os("GT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/pyenv/bin/python"));
    if py.exists() {
        return Some(py);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing: `cargo xtask setup` creates it (CI=true requires it)",
            py.display()
        );
    }
    eprintln!(
        "skipped: {} is missing (run `cargo xtask setup`)",
        py.display()
    );
    None
}

fn rows(q: &Value) -> Vec<Vec<Value>> {
    serde_json::from_value(q["rows"].clone()).unwrap()
}

#[test]
fn documented_queries_run_in_duckdb_and_pyarrow_reads_every_segment() {
    if !privileged() {
        return;
    }
    let Some(py) = python() else {
        return;
    };
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let ops = ["write:a.txt:123", "missing:nothere", "rename:a.txt:b.txt"];
    let mut cmd = vec![WORKLOAD];
    cmd.extend(ops);
    // Small segments so that the queries read several files.
    let run = record(&d, &["--segment-events", "4"], &cmd, &d);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let pid = run.workload_pid(&ops.join(" "));
    let trail = d.join("trail");

    let out = Command::new(&py)
        .arg(workspace().join("agent/tests/interop/check_trail.py"))
        .arg(&trail)
        .arg(workspace().join("docs/schema.md"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "check_trail.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(
        queries.len(),
        5,
        "docs/schema.md has a query this test does not check (or lost one): {queries:#?}"
    );

    // 1. What each process wrote: exactly the one write, as the reader sees it.
    let writes: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.activity_name == "Close" && e.groundtruth.bytes_written > Some(0))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let a = d.join("a.txt");
    assert_eq!(
        rows(&queries[0]),
        vec![vec![
            Value::from(pid),
            Value::from("gt-workload"),
            Value::from(a.to_str().unwrap()),
            Value::from(123),
        ]]
    );

    // 2. Command lines: the workload's, with its arguments.
    let launches = rows(&queries[1]);
    let want = format!("{WORKLOAD} {}", ops.join(" "));
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0][1], Value::from(pid));
    assert_eq!(launches[0][2], Value::from(want));

    // 3. Failed opens by errno: the same counts as the reader.
    let mut by_errno = std::collections::BTreeMap::<i64, i64>::new();
    for e in &run.events {
        if e.activity_name == "Open" && e.status_id == 2 {
            *by_errno
                .entry(e.groundtruth.errno.unwrap() as i64)
                .or_default() += 1;
        }
    }
    assert!(by_errno.get(&2).is_some_and(|n| *n >= 1), "{by_errno:?}");
    let mut got: Vec<(i64, i64)> = rows(&queries[2])
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, by_errno.into_iter().collect::<Vec<_>>());

    // 4. The rename, both names.
    assert_eq!(
        rows(&queries[3]),
        vec![vec![
            Value::from(pid),
            Value::from(a.to_str().unwrap()),
            Value::from(d.join("b.txt").to_str().unwrap()),
        ]]
    );

    // 5. Footer metadata of every segment through DuckDB: run id and event counts.
    let kv = rows(&queries[4]);
    let segments = trail::segment_paths(&trail).unwrap();
    assert!(
        segments.len() >= 2,
        "expected several segments: {segments:?}"
    );
    let mut events_total = 0;
    for seg in &segments {
        let name = seg.to_str().unwrap();
        let get = |k: &str| -> Option<String> {
            kv.iter()
                .find(|r| r[0] == name && r[1] == k)
                .map(|r| r[2].as_str().unwrap().to_string())
        };
        assert_eq!(
            get(meta::RUN_ID).as_deref(),
            Some(run.metadata[meta::RUN_ID].as_str())
        );
        events_total += get(meta::EVENTS).unwrap().parse::<usize>().unwrap();
    }
    assert_eq!(events_total, run.events.len());

    // pyarrow: every segment, every row, every column documented.
    let pa = &report["pyarrow"];
    assert_eq!(pa["segments"], Value::from(segments.len()));
    assert_eq!(pa["rows"], Value::from(run.events.len()));
    assert_eq!(
        pa["undocumented"],
        Value::Array(vec![]),
        "columns missing from docs/schema.md"
    );
    assert!(pa["leaves"].as_array().unwrap().len() > 40);
    eprintln!("read with {}", report["versions"]);
}
