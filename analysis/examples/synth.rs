//! A synthetic recorded run and its audit logs, for `cargo xtask bench`:
//!
//!   synth OUT EVENTS [EVENTS_PER_SECOND]
//!
//! writes OUT/trail (a sealed trail of EVENTS events: four services that each create,
//! write, rename and delete order files and read a library, at EVENTS_PER_SECOND,
//! default 20000) and OUT/logs/svcN.jsonl (ECS audit records of every create, rename
//! and delete, a few milliseconds after the kernel's event; one delete in 1000 left
//! out, and one fabricated record per 1000 orders). Prints `unaudited=N
//! unsupported=M actions=K records=R events=E`: what `groundtruth analyze` must find.

use std::io::Write;
use trail::{
    event::{activity, class, status},
    Actor, Event, Extra, FileRef, RunInfo, TrailWriter, WriterOptions,
};

const SERVICES: usize = 4;
const T0: i64 = 1_800_000_000_000_000_000;

fn ev(t: i64, name: &'static str, svc: &std::sync::Arc<str>, pid: u32, path: &str) -> Event {
    Event {
        time_ns: t,
        class_uid: class::FILE_SYSTEM_ACTIVITY,
        activity_id: activity::OTHER,
        activity_name: name.into(),
        status_id: status::SUCCESS,
        actor: Actor {
            pid,
            tid: pid,
            name: svc.clone(),
            exe: Some("/usr/bin/orders".into()),
            ..Default::default()
        },
        file: Some(FileRef {
            path: Some(path.to_string()),
            ..Default::default()
        }),
        groundtruth: Extra {
            service: svc.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn audit(log: &mut impl Write, at: i64, action: &str, path: &str, pid: u32) {
    writeln!(
        log,
        r#"{{"@timestamp":"{}","event":{{"action":"{action}","category":["file"]}},"file":{{"path":"{path}"}},"process":{{"pid":{pid}}}}}"#,
        analysis::events::rfc3339(at)
    )
    .unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(out), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: synth OUT EVENTS [EVENTS_PER_SECOND]");
        std::process::exit(2);
    };
    let rate: i64 = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(20_000);
    let out = std::path::PathBuf::from(out);
    let tdir = out.join("trail");
    let ldir = out.join("logs");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::create_dir_all(&ldir).unwrap();
    let mut w = TrailWriter::create(
        &tdir,
        RunInfo {
            run_id: "synth".into(),
            ..Default::default()
        },
        WriterOptions {
            segment_bytes: 64 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<std::sync::Arc<str>> = (0..SERVICES).map(|i| format!("svc{i}").into()).collect();
    let mut logs: Vec<std::io::BufWriter<std::fs::File>> = (0..SERVICES)
        .map(|i| {
            std::io::BufWriter::new(
                std::fs::File::create(ldir.join(format!("svc{i}.jsonl"))).unwrap(),
            )
        })
        .collect();
    let step = 1_000_000_000 / rate;
    let (mut t, mut events, mut i) = (T0, 0u64, 0u64);
    let (mut unaudited, mut unsupported, mut actions, mut records) = (0u64, 0u64, 0u64, 0u64);
    let lib = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    while events < n {
        let s = (i % SERVICES as u64) as usize;
        let svc = &names[s];
        let pid = 1000 + s as u32;
        let dir = format!("/srv/{svc}/orders");
        let file = format!("{dir}/{i}.json");
        let done = format!("{dir}/{i}.done");
        // create + write
        let mut o = ev(t, "Open", svc, pid, &file);
        o.groundtruth.flags = Some(0o101);
        o.groundtruth.created = true;
        w.push(o).unwrap();
        t += step;
        let mut c = ev(t, "Close", svc, pid, &file);
        c.groundtruth.bytes_written = Some(64);
        c.groundtruth.bytes_read = Some(0);
        w.push(c).unwrap();
        let created_at = t;
        t += step;
        // a library read (an action nobody must audit)
        w.push(ev(t, "Open", svc, pid, lib)).unwrap();
        t += step;
        let mut c = ev(t, "Close", svc, pid, lib);
        c.groundtruth.bytes_read = Some(832);
        c.groundtruth.bytes_written = Some(0);
        w.push(c).unwrap();
        t += step;
        // rename, delete
        let mut r = ev(t, "Rename", svc, pid, &file);
        r.file_result = Some(Box::new(FileRef {
            path: Some(done.clone()),
            ..Default::default()
        }));
        w.push(r).unwrap();
        let renamed_at = t;
        t += step;
        w.push(ev(t, "Delete", svc, pid, &done)).unwrap();
        let deleted_at = t;
        t += step;
        events += 6;
        actions += 4;
        let log = &mut logs[s];
        audit(log, created_at + 3_000_000, "order-created", &file, pid);
        audit(log, renamed_at + 3_000_000, "order-moved", &done, pid);
        records += 2;
        if i % 1000 == 999 {
            unaudited += 1;
        } else {
            audit(log, deleted_at + 3_000_000, "order-deleted", &done, pid);
            records += 1;
        }
        if i % 1000 == 500 {
            let never = format!("{dir}/never-{i}.json");
            audit(log, deleted_at + 4_000_000, "order-deleted", &never, pid);
            unsupported += 1;
            records += 1;
        }
        i += 1;
    }
    for l in &mut logs {
        l.flush().unwrap();
    }
    w.finish().unwrap();
    println!(
        "unaudited={unaudited} unsupported={unsupported} actions={actions} records={records} events={events}"
    );
}
