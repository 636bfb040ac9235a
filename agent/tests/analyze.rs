//! `groundtruth analyze` on a trail the kernel really recorded: two services (orders,
//! gateway) that audit everything they do in ECS; then the same logs with a record
//! missing, fabricated, with a wrong path, one of two writes unaudited, shifted in time,
//! and converted to OCSF and to a custom shape.

mod common;

use analysis::analyze::{self, audit::Mapping, report::Report, Class};
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/audited_service.py"
);

/// A directory outside /tmp (the default expectations leave temporary paths out),
/// removed at the end.
struct Outside(PathBuf);
impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Recorded {
    _tmp: tempfile::TempDir,
    _outside: Outside,
    trail: PathBuf,
    data: PathBuf,
    orders_log: Vec<Value>,
    gateway_log: Vec<Value>,
    scratch: PathBuf,
    /// The logs the services wrote (variants are written over them, so that they stay
    /// each service's own audit log, which is never required to be audited).
    logs: (PathBuf, PathBuf),
}

fn record_services(tag: &str) -> Recorded {
    let tmp = tempdir();
    let id = format!("{}-{tag}", std::process::id());
    let base = PathBuf::from(format!("/var/lib/groundtruth-test-analyze-{id}"));
    let _ = std::fs::remove_dir_all(&base);
    let data = base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("b.json"), "0").unwrap();
    let outside = Outside(base.clone());
    let port = std::env::temp_dir().join(format!("gt-analyze-{id}.port"));
    let _ = std::fs::remove_file(&port);
    // The gateway runs as a python named `gateway` (its comm), so it gets its own label.
    let gw = tmp.path().join("gateway");
    let python = PathBuf::from("/usr/bin/python3").canonicalize().unwrap();
    std::os::unix::fs::symlink(&python, &gw).unwrap();
    let (ol, gl) = (base.join("orders.jsonl"), base.join("gateway.jsonl"));
    let script = format!(
        "{gw} {f} gateway {gl} {p} & python3 {f} orders {d} {ol} {p}; wait",
        gw = gw.display(),
        f = FIXTURE,
        gl = gl.display(),
        ol = ol.display(),
        d = data.display(),
        p = port.display()
    );
    let run = record(
        tmp.path(),
        &["--service", "orders", "--service", "gateway=comm:gateway"],
        &["sh", "-c", &script],
        tmp.path(),
    );
    let _ = std::fs::remove_file(&port);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (orders_log, gateway_log) = (read(&ol), read(&gl));
    assert_eq!((orders_log.len(), gateway_log.len()), (6, 1));
    Recorded {
        trail: tmp.path().join("trail"),
        scratch: base,
        _tmp: tmp,
        _outside: outside,
        data,
        orders_log,
        gateway_log,
        logs: (ol, gl),
    }
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

impl Recorded {
    /// Analyze with these logs (written next to the service's own) and defaults.
    fn analyze(&self, orders: &[Value], mapping: Option<Mapping>, window_ns: i64) -> Report {
        let (o, g) = self.logs.clone();
        write_lines(&o, orders);
        write_lines(&g, &self.gateway_log);
        let opts = analyze::Options {
            dir: self.trail.clone(),
            logs: vec![("orders".into(), o, mapping), ("gateway".into(), g, None)],
            expect: None,
            window_ns,
            skip_malformed: false,
            verification_skipped: false,
            run_id: None,
        };
        analyze::analyze(&opts).unwrap()
    }

    fn path(&self, name: &str) -> String {
        self.data.join(name).to_str().unwrap().to_string()
    }
}

fn findings(r: &Report) -> Vec<(&'static str, Class, String)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.class, f.resource.clone()))
        .collect()
}

fn coverage(r: &Report, service: &str) -> Vec<(Class, u64, u64)> {
    r.coverage
        .iter()
        .filter(|c| c.service == service)
        .map(|c| (c.class, c.required, c.audited))
        .collect()
}

fn shift(lines: &[Value], ns: i64) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            let t = analyze::time::parse_rfc3339(l["@timestamp"].as_str().unwrap()).unwrap();
            l["@timestamp"] = json!(analysis::events::rfc3339(t + ns));
            l
        })
        .collect()
}

const W: i64 = 2_000_000_000;

#[test]
fn analyze_a_recorded_run_against_its_audit_logs() {
    if !privileged() {
        return;
    }
    let r = record_services("variants");
    let log = &r.orders_log;

    // Everything audited: nothing to report, and every action class was required.
    let rep = r.analyze(log, None, W);
    assert_eq!(findings(&rep), [], "{:#?}", rep.findings);
    assert_eq!(
        coverage(&rep, "orders"),
        [
            (Class::FileCreate, 1, 1),
            (Class::FileWrite, 2, 2),
            (Class::FileDelete, 1, 1),
            (Class::FileRename, 1, 1),
            (Class::NetAccept, 1, 1),
        ]
    );
    assert_eq!(coverage(&rep, "gateway"), [(Class::NetConnect, 1, 1)]);
    assert_eq!(rep.skew.matched, 7);
    assert!(
        rep.skew.max_abs_ns.unwrap() < W,
        "{:?}",
        rep.skew.max_abs_ns
    );

    // A missing record: exactly one unaudited, with the kernel's evidence.
    let mut v = log.clone();
    v.remove(5);
    let rep = r.analyze(&v, None, W);
    assert_eq!(
        findings(&rep),
        [("unaudited", Class::FileDelete, r.path("b.json"))]
    );
    let k = rep.findings[0].evidence.kernel.as_ref().unwrap();
    assert_eq!(k.pid, log[5]["process"]["pid"].as_u64().unwrap() as u32);
    assert!(
        k.executable.as_deref().unwrap().contains("python3"),
        "{k:?}"
    );

    // A fabricated record: exactly one unsupported.
    let mut v = log.clone();
    let mut fake = log[5].clone();
    fake["file"]["path"] = json!(r.path("c.json"));
    v.push(fake);
    let rep = r.analyze(&v, None, W);
    assert_eq!(
        findings(&rep),
        [("unsupported", Class::FileDelete, r.path("c.json"))]
    );
    assert!(rep.findings[0]
        .evidence
        .nearest_kernel_action
        .as_deref()
        .unwrap()
        .contains("b.json"));

    // The wrong path: the kernel's create is unaudited and the record unsupported.
    let mut v = log.clone();
    v[1]["file"]["path"] = json!(r.path("a.jsn"));
    let rep = r.analyze(&v, None, W);
    assert_eq!(
        findings(&rep),
        [
            ("unaudited", Class::FileCreate, r.path("a.json")),
            ("unsupported", Class::FileCreate, r.path("a.jsn")),
        ]
    );

    // Two writes, one record.
    let mut v = log.clone();
    v.remove(3);
    let rep = r.analyze(&v, None, W);
    assert_eq!(
        findings(&rep),
        [("unaudited", Class::FileWrite, r.path("b.json"))]
    );

    // Clock skew within the window, then beyond it.
    let rep = r.analyze(&shift(log, 1_500_000_000), None, W);
    assert_eq!(findings(&rep), []);
    assert!(rep.skew.max_abs_ns.unwrap() >= 1_400_000_000);
    let rep = r.analyze(&shift(log, 5 * W), None, W);
    assert_eq!(
        rep.findings
            .iter()
            .filter(|f| f.kind == "unaudited")
            .count(),
        6,
        "{:#?}",
        rep.findings
    );
    assert_eq!(
        rep.findings
            .iter()
            .filter(|f| f.kind == "unsupported")
            .count(),
        6
    );
}

#[test]
fn the_same_records_in_ocsf_and_in_a_custom_shape() {
    if !privileged() {
        return;
    }
    let r = record_services("mappings");
    let ms = |l: &Value| {
        analyze::time::parse_rfc3339(l["@timestamp"].as_str().unwrap()).unwrap() / 1_000_000
    };
    let activity = |a: &str| match a {
        "order-created" => 1,
        "order-updated" => 3,
        "order-deleted" => 4,
        "order-moved" => 5,
        other => panic!("{other}"),
    };
    let ocsf: Vec<Value> = r
        .orders_log
        .iter()
        .map(|l| match l["event"]["category"][0].as_str().unwrap() {
            "file" => json!({"time": ms(l), "class_uid": 1001,
                "activity_id": activity(l["event"]["action"].as_str().unwrap()),
                "file": {"path": l["file"]["path"]},
                "actor": {"process": {"pid": l["process"]["pid"]}}}),
            _ => json!({"time": ms(l), "class_uid": 4001, "activity_id": 1,
                "connection_info": {"direction_id": 1},
                "src_endpoint": {"ip": l["source"]["ip"], "port": l["source"]["port"]},
                "dst_endpoint": {"port": l["destination"]["port"]}}),
        })
        .collect();
    let rep = r.analyze(&ocsf, None, W);
    assert_eq!(rep.logs[0].mapping, "ocsf");
    assert_eq!(findings(&rep), [], "{:#?}", rep.findings);

    let mapping = r.scratch.join("mapping.toml");
    std::fs::write(
        &mapping,
        r#"
[time]
field = "when"
format = "epoch_ms"
[action]
field = "op"
[action.classes]
"file.create" = ["order-created"]
"file.write" = ["order-updated"]
"file.rename" = ["order-moved"]
"file.delete" = ["order-deleted"]
"network.accept" = ["connection-accepted"]
[fields]
path = "object"
peer_address = "peer"
pid = "pid"
"#,
    )
    .unwrap();
    let custom: Vec<Value> = r
        .orders_log
        .iter()
        .map(|l| {
            let mut o =
                json!({"when": ms(l), "op": l["event"]["action"], "pid": l["process"]["pid"]});
            if let Some(p) = l.get("file") {
                o["object"] = p["path"].clone();
            } else {
                o["peer"] = json!(format!(
                    "{}:{}",
                    l["source"]["ip"].as_str().unwrap(),
                    l["source"]["port"]
                ));
            }
            o
        })
        .collect();
    let m = Mapping::Custom(std::sync::Arc::new(
        analyze::audit::CustomMapping::load(&mapping).unwrap(),
    ));
    let rep = r.analyze(&custom, Some(m), W);
    assert_eq!(findings(&rep), [], "{:#?}", rep.findings);
    assert_eq!(coverage(&rep, "orders").len(), 5);
}
