//! `groundtruth analyze` through the binary, on trails written with the trail writer:
//! exit codes, formats, mappings, expectations and bad input.

use serde_json::{json, Value};
use std::{path::Path, process::Command};
use trail::{
    event::{activity, class, direction, status},
    Actor, Endpoint, Event, Extra, FileRef, Network, RunInfo, TrailWriter, WriterOptions,
};

const BIN: &str = env!("CARGO_BIN_EXE_groundtruth");
const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn base(t: i64, class_uid: i32, name: &'static str, service: &str, pid: u32) -> Event {
    Event {
        time_ns: t,
        class_uid,
        activity_id: activity::OTHER,
        activity_name: name.into(),
        status_id: status::SUCCESS,
        actor: Actor {
            pid,
            tid: pid,
            name: service.into(),
            exe: Some(format!("/usr/bin/{service}").into()),
            ..Default::default()
        },
        groundtruth: Extra {
            service: service.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn file(t: i64, name: &'static str, service: &str, path: &str) -> Event {
    let mut e = base(t, class::FILE_SYSTEM_ACTIVITY, name, service, 100);
    e.file = Some(FileRef {
        path: Some(path.into()),
        ..Default::default()
    });
    e
}

fn write(t: i64, service: &str, path: &str, created: bool) -> [Event; 2] {
    let mut o = file(t, "Open", service, path);
    o.groundtruth.flags = Some(0o101);
    o.groundtruth.created = created;
    let mut c = file(t + MS, "Close", service, path);
    c.groundtruth.bytes_written = Some(10);
    c.groundtruth.bytes_read = Some(0);
    [o, c]
}

fn tcp(t: i64, service: &str, pid: u32, dir: i32) -> Event {
    let mut e = base(t, class::NETWORK_ACTIVITY, "Open", service, pid);
    e.network = Some(Box::new(Network {
        src: Some(Endpoint {
            ip: "127.0.0.1".into(),
            port: 40000,
        }),
        dst: Some(Endpoint {
            ip: "127.0.0.1".into(),
            port: 8081,
        }),
        protocol_name: "tcp".into(),
        direction_id: dir,
        ..Default::default()
    }));
    e.groundtruth.connection_id = Some(pid as u64);
    e
}

/// orders: creates /srv/orders/1.json, writes 2.json, renames 1 -> 1.done, deletes 2;
/// gateway connects to orders (8081), which accepts.
fn trail(dir: &Path) {
    trail_with_gaps(dir, None)
}

/// The test trail, optionally with events the kernel lost and other kernel gaps in its
/// footer.
fn trail_with_gaps(dir: &Path, gaps: Option<(u64, &[(&str, u64)])>) {
    let mut events = Vec::new();
    events.extend(write(T0, "orders", "/srv/orders/1.json", true));
    events.extend(write(T0 + 10 * MS, "orders", "/srv/orders/2.json", false));
    let mut r = file(T0 + 20 * MS, "Rename", "orders", "/srv/orders/1.json");
    r.file_result = Some(Box::new(FileRef {
        path: Some("/srv/orders/1.done".into()),
        ..Default::default()
    }));
    events.push(r);
    events.push(file(T0 + 30 * MS, "Delete", "orders", "/srv/orders/2.json"));
    events.push(tcp(T0 + 40 * MS, "gateway", 200, direction::OUTBOUND));
    events.push(tcp(T0 + 40 * MS + 5, "orders", 100, direction::INBOUND));
    let mut close = tcp(T0 + 50 * MS, "gateway", 200, direction::OUTBOUND);
    close.activity_name = "Close".into();
    close.groundtruth.bytes_written = Some(123);
    close.groundtruth.bytes_read = Some(45);
    events.push(close);
    std::fs::create_dir_all(dir).unwrap();
    let mut w = TrailWriter::create(
        dir,
        RunInfo {
            run_id: "analyze-test".into(),
            ..Default::default()
        },
        WriterOptions::default(),
    )
    .unwrap();
    for e in events {
        w.push(e).unwrap();
    }
    if let Some((lost, gaps)) = gaps {
        w.set_lost([(0u32, lost)].into_iter().collect());
        w.set_kernel_gaps(gaps.iter().map(|(k, n)| (k.to_string(), *n)).collect());
    }
    w.finish().unwrap();
}

fn ts(off_ms: i64) -> String {
    analysis::events::rfc3339(T0 + off_ms * MS)
}

/// A complete, truthful ECS log for orders.
fn orders_ecs() -> Vec<Value> {
    vec![
        json!({"@timestamp": ts(2), "event": {"action": "order-created", "category": ["file"]}, "file": {"path": "/srv/orders/1.json"}, "process": {"pid": 100}}),
        json!({"@timestamp": ts(12), "event": {"action": "order-updated", "category": ["file"]}, "file": {"path": "/srv/orders/2.json"}}),
        json!({"@timestamp": ts(21), "event": {"action": "order-archived-renamed"}, "file": {"path": "/srv/orders/1.done"}}),
        json!({"@timestamp": ts(31), "event": {"action": "order-deleted", "category": "file"}, "file": {"path": "/srv/orders/2.json"}}),
        json!({"@timestamp": ts(41), "event": {"action": "connection-accepted", "category": ["network"]}, "network": {"direction": "inbound"}, "destination": {"port": 8081}, "source": {"ip": "127.0.0.1"}}),
        json!({"@timestamp": ts(42), "event": {"action": "user-login"}}),
    ]
}

fn gateway_ecs() -> Vec<Value> {
    vec![
        json!({"@timestamp": ts(41), "event": {"action": "call"}, "destination": {"address": "orders", "port": 8081}}),
    ]
}

fn write_log(dir: &Path, name: &str, lines: &[Value]) -> String {
    let p = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

struct Case {
    _t: tempfile::TempDir,
    dir: std::path::PathBuf,
    trail: String,
}

fn case() -> Case {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    trail(&dir.join("trail"));
    Case {
        trail: dir.join("trail").to_str().unwrap().into(),
        dir,
        _t: t,
    }
}

fn json_run(c: &Case, orders: &[Value], extra: &[&str]) -> (Option<i32>, Value) {
    let o = write_log(&c.dir, "orders.jsonl", orders);
    let g = write_log(&c.dir, "gateway.jsonl", &gateway_ecs());
    let oa = format!("orders={o}");
    let ga = format!("gateway={g}");
    let mut args = vec![
        c.trail.as_str(),
        "--audit-log",
        &oa,
        "--audit-log",
        &ga,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, v)
}

fn kinds(v: &Value) -> Vec<(String, String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().into(),
                f["class"].as_str().unwrap().into(),
                f["resource"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn complete_logs_give_no_findings_and_exit_0() {
    let c = case();
    let (code, v) = json_run(&c, &orders_ecs(), &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["schema"], "groundtruth.analyze/1");
    assert_eq!(v["ok"], true);
    assert_eq!(v["trail"]["run_id"], "analyze-test");
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
    let cov: Vec<(String, String, u64, u64)> = v["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap().into(),
                c["class"].as_str().unwrap().into(),
                c["required"].as_u64().unwrap(),
                c["audited"].as_u64().unwrap(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, r, au| (a.to_string(), b.to_string(), r, au);
    assert_eq!(
        cov,
        [
            s("gateway", "network.connect", 1, 1),
            s("orders", "file.create", 1, 1),
            s("orders", "file.write", 1, 1),
            s("orders", "file.delete", 1, 1),
            s("orders", "file.rename", 1, 1),
            s("orders", "network.accept", 1, 1),
        ]
    );
    let log = &v["logs"][0];
    assert_eq!(
        (log["records"].as_u64(), log["ignored"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(v["skew"]["matched"], 6);
    assert_eq!(v["skew"]["max_abs_ns"], 1_000_000);
}

#[test]
fn a_missing_record_a_fabricated_one_and_a_wrong_path() {
    let c = case();
    let mut logs = orders_ecs();
    logs.remove(3); // the delete is not audited
    let (code, v) = json_run(&c, &logs, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        kinds(&v),
        [(
            "unaudited".into(),
            "file.delete".into(),
            "/srv/orders/2.json".into()
        )]
    );
    let f = &v["findings"][0];
    assert_eq!(f["evidence"]["kernel"]["pid"], 100);
    assert_eq!(f["evidence"]["kernel"]["executable"], "/usr/bin/orders");
    assert_eq!(
        f["rule"],
        "file changes outside system and temporary paths are audited"
    );

    let mut logs = orders_ecs();
    logs.push(json!({"@timestamp": ts(45), "event": {"action": "order-deleted"}, "file": {"path": "/srv/orders/3.json"}}));
    let (code, v) = json_run(&c, &logs, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        kinds(&v),
        [(
            "unsupported".into(),
            "file.delete".into(),
            "/srv/orders/3.json".into()
        )]
    );
    let f = &v["findings"][0];
    assert_eq!(f["evidence"]["record"]["line"], 7);
    // The record's line, read again from the log for the finding.
    assert_eq!(
        f["evidence"]["record"]["text"],
        logs.last().unwrap().to_string()
    );
    assert!(
        f["evidence"]["nearest_kernel_action"]
            .as_str()
            .unwrap()
            .contains("/srv/orders/2.json"),
        "{f}"
    );

    let mut logs = orders_ecs();
    logs[1]["file"]["path"] = json!("/srv/orders/two.json");
    let (_, v) = json_run(&c, &logs, &[]);
    assert_eq!(
        kinds(&v),
        [
            (
                "unaudited".into(),
                "file.write".into(),
                "/srv/orders/2.json".into()
            ),
            (
                "unsupported".into(),
                "file.write".into(),
                "/srv/orders/two.json".into()
            )
        ]
    );
}

#[test]
fn clock_skew_within_and_beyond_the_window() {
    let c = case();
    let shifted = |ms: i64| -> Vec<Value> {
        orders_ecs()
            .into_iter()
            .map(|mut l| {
                let t = trail_time(&l) + ms * MS;
                l["@timestamp"] = json!(analysis::events::rfc3339(t));
                l
            })
            .collect()
    };
    let (code, v) = json_run(&c, &shifted(1500), &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert!(v["skew"]["max_abs_ns"].as_i64().unwrap() >= 1_500_000_000);
    let (code, v) = json_run(&c, &shifted(3000), &[]);
    assert_eq!(code, Some(1));
    let k = kinds(&v);
    assert_eq!(k.iter().filter(|f| f.0 == "unaudited").count(), 5, "{k:?}");
    assert_eq!(
        k.iter().filter(|f| f.0 == "unsupported").count(),
        5,
        "{k:?}"
    );
    // A wider window takes them back.
    let (code, _) = json_run(&c, &shifted(3000), &["--window", "4s"]);
    assert_eq!(code, Some(0));
}

fn trail_time(l: &Value) -> i64 {
    let s = l["@timestamp"].as_str().unwrap();
    analysis::analyze::time::parse_rfc3339(s).unwrap()
}

#[test]
fn ocsf_and_custom_mappings() {
    let c = case();
    let ms = |off: i64| (T0 + off * MS) / MS;
    let ocsf = [
        json!({"time": ms(2), "class_uid": 1001, "activity_id": 1, "file": {"path": "/srv/orders/1.json"}}),
        json!({"time": ms(12), "class_uid": 1001, "activity_id": 3, "file": {"path": "/srv/orders/2.json"}}),
        json!({"time": ms(21), "class_uid": 1001, "activity_id": 5, "file": {"path": "/srv/orders/1.json"}, "file_result": {"path": "/srv/orders/1.done"}}),
        json!({"time": ms(31), "class_uid": 1001, "activity_id": 4, "file": {"path": "/srv/orders/2.json"}}),
        json!({"time": ms(41), "class_uid": 4001, "activity_id": 1, "connection_info": {"direction_id": 1}, "dst_endpoint": {"port": 8081}}),
    ];
    let (code, v) = json_run(&c, &ocsf, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["logs"][0]["mapping"], "ocsf");

    let mapping = c.dir.join("m.toml");
    std::fs::write(
        &mapping,
        r#"
[time]
field = "at"
format = "epoch_us"
[action]
field = "what"
[action.classes]
"file.create" = ["new-order"]
"file.write" = ["save"]
"file.rename" = ["archive"]
"file.delete" = ["purge"]
"network.accept" = ["incoming"]
[fields]
path = "obj"
old_path = "from"
local_port = "port"
"#,
    )
    .unwrap();
    let us = |off: i64| (T0 + off * MS) / 1000;
    let custom = [
        json!({"at": us(2), "what": "new-order", "obj": "/srv/orders/1.json"}),
        json!({"at": us(12), "what": "save", "obj": "/srv/orders/2.json"}),
        json!({"at": us(21), "what": "archive", "obj": "/srv/orders/1.done", "from": "/srv/orders/1.json"}),
        json!({"at": us(31), "what": "purge", "obj": "/srv/orders/2.json"}),
        json!({"at": us(41), "what": "incoming", "port": 8081}),
    ];
    let m = format!("orders={}", mapping.display());
    let (code, v) = json_run(&c, &custom, &["--mapping", &m]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["logs"][0]["mapping"], mapping.to_str().unwrap());
    // The wrong old name in the mapped rename.
    let mut bad = custom.to_vec();
    bad[2]["from"] = json!("/srv/orders/9.json");
    let (_, v) = json_run(&c, &bad, &["--mapping", &m]);
    let k = kinds(&v);
    assert_eq!(k.len(), 2, "{k:?}");
    assert_eq!(k[1].2, "/srv/orders/9.json -> /srv/orders/1.done");
}

#[test]
fn expectations_file_decides_what_is_required() {
    let c = case();
    let x = c.dir.join("expect.toml");
    std::fs::write(
        &x,
        r#"
[[rule]]
name = "order deletions are audited"
service = "orders"
classes = ["file.delete"]
paths = ["/srv/orders/*.json"]
"#,
    )
    .unwrap();
    // Only the delete is required now: a log with just the delete is complete...
    let logs = vec![orders_ecs()[3].clone()];
    let xs = x.to_str().unwrap();
    let (code, v) = json_run(&c, &logs, &["--expect", xs]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["rules"][0]["rule"], "order deletions are audited");
    assert_eq!(v["rules"][0]["required"], 1);
    // ... and without it, that rule's JUnit test case fails.
    let o = write_log(&c.dir, "orders.jsonl", &[]);
    let g = write_log(&c.dir, "gateway.jsonl", &gateway_ecs());
    let (code, out, _) = run(&[
        &c.trail,
        "--audit-log",
        &format!("orders={o}"),
        "--audit-log",
        &format!("gateway={g}"),
        "--expect",
        xs,
        "--format",
        "junit",
    ]);
    assert_eq!(code, Some(1));
    assert!(out.starts_with("<?xml"), "{out}");
    assert!(
        out.contains(r#"<testsuites name="groundtruth analyze" tests="3" failures="1">"#),
        "{out}"
    );
    assert!(
        out.contains(
            r#"<testcase classname="groundtruth.orders" name="order deletions are audited">"#
        ),
        "{out}"
    );
    assert!(out.contains(r#"<failure type="unaudited" message="1 unaudited (0/1 required actions audited)">UNAUDITED file.delete /srv/orders/2.json"#), "{out}");
}

#[test]
fn text_report_and_output_file() {
    let c = case();
    let mut logs = orders_ecs();
    logs.remove(3);
    let o = write_log(&c.dir, "orders.jsonl", &logs);
    let out_path = c.dir.join("report.txt");
    let (code, out, err) = run(&[
        &c.trail,
        "--audit-log",
        &format!("orders={o}"),
        "--output",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("1 findings (1 unaudited, 0 unsupported); report in"),
        "{err}"
    );
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        text.contains("== orders: 1 unaudited, 0 unsupported"),
        "{text}"
    );
    assert!(
        text.contains("  UNAUDITED file.delete /srv/orders/2.json"),
        "{text}"
    );
    assert!(
        text.contains("RESULT: 1 findings (1 unaudited, 0 unsupported)"),
        "{text}"
    );
    // gateway has no log: its connection is not analyzed, and that is said.
    assert!(!text.contains("== gateway"), "{text}");
    assert!(
        text.contains("not analyzed (no --audit-log): gateway (1 kernel actions)"),
        "{text}"
    );
}

#[test]
fn bad_input_is_exit_2_naming_file_and_line() {
    let c = case();
    let mut lines: Vec<String> = orders_ecs().iter().map(|l| l.to_string()).collect();
    lines.insert(
        2,
        "{\"@timestamp\": \"yesterday\", \"event\": {\"action\": \"write\"}}".into(),
    );
    let p = c.dir.join("bad.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let a = format!("orders={}", p.display());
    let (code, _, err) = run(&[&c.trail, "--audit-log", &a]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("{}:3: expected `@timestamp` to be an RFC 3339 time or an epoch number, found \"yesterday\"", p.display())),
        "{err}"
    );
    let (code, out, _) = run(&[&c.trail, "--audit-log", &a, "--skip-malformed"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 MALFORMED skipped"), "{out}");
    assert!(out.contains("malformed: "), "{out}");

    // Not a format it knows.
    let p2 = c.dir.join("plain.jsonl");
    std::fs::write(&p2, "{\"ts\": 1}\n").unwrap();
    let (code, _, err) = run(&[&c.trail, "--audit-log", &format!("orders={}", p2.display())]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("plain.jsonl:1: cannot tell the log's format"),
        "{err}"
    );
    for (args, want) in [
        (vec!["--audit-log", "orders"], "expected SERVICE=PATH"),
        (
            vec!["--audit-log", "orders=/nonexistent.jsonl"],
            "/nonexistent.jsonl",
        ),
        (vec!["--audit-log", &a, "--window", "2h"], "--window"),
        (
            vec!["--audit-log", &a, "--mapping", "/nonexistent.toml"],
            "--mapping /nonexistent.toml",
        ),
        (
            vec!["--audit-log", &a, "--expect", "/nonexistent.toml"],
            "/nonexistent.toml",
        ),
    ] {
        let mut full = vec![c.trail.as_str()];
        full.extend(args);
        let (code, _, err) = run(&full);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn a_trail_that_does_not_verify_is_refused() {
    let c = case();
    let seg = Path::new(&c.trail).join("segment-000000.parquet");
    let mut b = std::fs::read(&seg).unwrap();
    b[20] ^= 1;
    std::fs::write(&seg, b).unwrap();
    let o = write_log(&c.dir, "orders.jsonl", &orders_ecs());
    let a = format!("orders={o}");
    let (code, _, err) = run(&[&c.trail, "--audit-log", &a]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not verify"), "{err}");
    let (_, out, err) = run(&[
        &c.trail,
        "--audit-log",
        &a,
        "--no-verify",
        "--format",
        "json",
    ]);
    assert!(err.contains("NOT VERIFIED"), "{err}");
    // The flipped byte may or may not leave the file readable; if it is, it says so.
    if let Ok(v) = serde_json::from_str::<Value>(&out) {
        assert_eq!(v["trail"]["verification_skipped"], true);
    }
}

#[test]
fn a_log_read_from_a_pipe_loses_no_line_to_format_detection() {
    use std::io::Write as _;
    let c = case();
    let g = write_log(&c.dir, "gateway.jsonl", &gateway_ecs());
    let mut child = Command::new(BIN)
        .arg("analyze")
        .args([&c.trail, "--audit-log", "orders=/dev/stdin"])
        .args(["--audit-log", &format!("gateway={g}"), "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // With a fabricated record at the end, whose line a pipe's record keeps.
    let fabricated = json!({"@timestamp": ts(45), "event": {"action": "order-deleted"}, "file": {"path": "/srv/orders/3.json"}});
    let text: String = orders_ecs()
        .iter()
        .chain([&fabricated])
        .map(|l| format!("{l}\n"))
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(
        v["logs"][0]["records"], 6,
        "the first record, read to detect ECS, is kept"
    );
    assert_eq!(v["logs"][0]["lines"], 7);
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v:#}");
    let r = &v["findings"][0]["evidence"]["record"];
    assert_eq!(
        (&r["line"], &r["text"]),
        (&json!(7), &json!(fabricated.to_string()))
    );
}

#[test]
fn incomplete_kernel_evidence_is_reported_in_every_format() {
    let c = case();
    // The complete trail: no warning, empty gaps.
    let (_, v) = json_run(&c, &orders_ecs(), &[]);
    assert_eq!(v["trail"]["lost_events"], 0);
    assert_eq!(v["trail"]["kernel_gaps"], json!({}));
    let t = tempfile::tempdir().unwrap();
    trail_with_gaps(
        &t.path().join("trail"),
        Some((3, &[("program_runs_skipped_by_kernel", 2)])),
    );
    let gapped = Case {
        trail: t.path().join("trail").to_str().unwrap().into(),
        dir: t.path().to_path_buf(),
        _t: t,
    };
    let (code, v) = json_run(&gapped, &orders_ecs(), &[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["trail"]["lost_events"], 3);
    assert_eq!(
        v["trail"]["kernel_gaps"],
        json!({"program_runs_skipped_by_kernel": 2})
    );
    let o = write_log(&gapped.dir, "orders.jsonl", &orders_ecs());
    let oa = format!("orders={o}");
    for format in ["text", "junit"] {
        let (_, out, err) = run(&[&gapped.trail, "--audit-log", &oa, "--format", format]);
        assert!(
            out.contains("kernel evidence is incomplete (3 events lost (ring buffer full), program_runs_skipped_by_kernel 2)"),
            "{format}: {out} {err}"
        );
    }
    let (_, out, _) = run(&[&c.trail, "--audit-log", &oa]);
    assert!(!out.contains("incomplete"), "{out}");
}

#[test]
fn verify_names_the_kernel_gaps() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("trail");
    trail_with_gaps(&dir, Some((0, &[("fd_map_full", 5)])));
    let o = Command::new(BIN).arg("verify").arg(&dir).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("kernel gaps (not recorded by the kernel side): fd_map_full 5"),
        "{out}"
    );
}

#[test]
fn logfmt_logs_through_a_mapping() {
    let c = case();
    let mapping = c.dir.join("logfmt.toml");
    std::fs::write(
        &mapping,
        r#"
format = "logfmt"
[time]
field = "time"
[action]
field = "event"
[action.classes]
"file.create" = ["order.created"]
"file.write" = ["order.updated"]
"file.rename" = ["order.archived"]
"file.delete" = ["order.deleted"]
"network.accept" = ["request"]
[fields]
path = "file.path"
old_path = "file.from"
local_port = "port"
"#,
    )
    .unwrap();
    let lines = [
        format!(r#"time={} level=info event=order.created file.path=/srv/orders/1.json msg="new order""#, ts(2)),
        format!("time={} event=order.updated file.path=/srv/orders/2.json", ts(12)),
        format!("time={} event=order.archived file.path=/srv/orders/1.done file.from=/srv/orders/1.json", ts(21)),
        format!("time={} event=order.deleted file.path=/srv/orders/2.json", ts(31)),
        format!("time={} event=request port=8081 remote=127.0.0.1", ts(41)),
        format!("time={} event=user.login user=alice", ts(42)),
    ];
    let log = c.dir.join("orders.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let g = write_log(&c.dir, "gateway.jsonl", &gateway_ecs());
    let (oa, ga, m) = (
        format!("orders={}", log.display()),
        format!("gateway={g}"),
        format!("orders={}", mapping.display()),
    );
    let args = [
        c.trail.as_str(),
        "--audit-log",
        &oa,
        "--audit-log",
        &ga,
        "--mapping",
        &m,
    ];
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out} {err}");
    // One line broken: the error names the file, the line and what was expected.
    let mut broken = lines.to_vec();
    broken[3] = format!(
        r#"time={} event=order.deleted file.path="/srv/orders/2.json"#,
        ts(31)
    );
    std::fs::write(&log, broken.join("\n") + "\n").unwrap();
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:4: expected logfmt key=value pairs (a closing quote",
            log.display()
        )),
        "{err}"
    );
}
