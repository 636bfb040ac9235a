//! `groundtruth verify` and verify-first reading, through the binary: exit codes and
//! what is printed.

use std::{path::Path, process::Command};
use trail::{event::Event, RunInfo, TrailWriter, WriterOptions};

const BIN: &str = env!("CARGO_BIN_EXE_groundtruth");

fn make(dir: &Path) {
    let opts = WriterOptions {
        batch_rows: 5,
        segment_rows: 5,
        ..Default::default()
    };
    let run = RunInfo {
        run_id: "cli".into(),
        ..Default::default()
    };
    let mut w = TrailWriter::create(dir, run, opts).unwrap();
    for i in 0..12 {
        w.push(Event {
            time_ns: 1_800_000_000_000_000_000 + i,
            activity_name: "Open".into(),
            ..Default::default()
        })
        .unwrap();
    }
    w.finish().unwrap();
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn verify_exit_codes_and_reading_refuses_a_changed_trail() {
    let t = tempfile::tempdir().unwrap();
    make(t.path());
    let dir = t.path().to_str().unwrap();
    let (code, out, _) = run(&["verify", dir]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("VERIFIED — segments valid 3/3, events 12"),
        "{out}"
    );
    assert!(out.contains("checked against itself only"), "{out}");
    let (code, out, _) = run(&["verify", dir, "--format", "json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["segments_valid"], 3);

    // A flipped byte in segment 1.
    let p = t.path().join("segment-000001.parquet");
    let mut b = std::fs::read(&p).unwrap();
    b[10] ^= 1;
    std::fs::write(&p, b).unwrap();
    let (code, out, _) = run(&["verify", dir]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("segment-000001.parquet (segment 1): hash mismatch"),
        "{out}"
    );
    assert!(out.contains("NOT VERIFIED — segments valid 2/3"), "{out}");

    // Reading refuses it, unless told not to verify.
    let (code, _, err) = run(&["events", dir]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not verify"), "{err}");
    let (code, out, err) = run(&["events", dir, "--no-verify"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("NOT VERIFIED (--no-verify)"), "{err}");
    assert!(out.lines().count() > 1);
    let (code, _, _) = run(&["handoffs", dir]);
    assert_eq!(code, Some(1));

    // Usage errors: 2.
    let (code, _, err) = run(&["verify", dir, "--pubkey", "/nonexistent/key.pub"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, _) = run(&["verify", dir, "--format", "yaml"]);
    assert_eq!(code, Some(2));
}
