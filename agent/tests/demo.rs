//! The demo's shop (demo/shop.py) recorded for real: `cargo xtask demo` promises that
//! `groundtruth analyze` names exactly its two planted bugs, and every connection
//! between the three services pairs up.

mod common;

use analysis::analyze::{self, Class};
use common::*;

#[test]
fn the_shop_demo_finds_exactly_its_two_planted_bugs() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let shop = tmp.path().join("shop");
    std::fs::create_dir_all(&shop).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/shop.py");
    let shop_s = shop.to_str().unwrap().to_string();
    let run = record(
        tmp.path(),
        &[
            "--service",
            "driver",
            "--service",
            "gateway=comm:gt-gateway",
            "--service",
            "orders=comm:gt-orders",
            "--service",
            "storage=comm:gt-storage",
        ],
        &["python3", script, "driver", &shop_s, "4"],
        tmp.path(),
    );
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let logs = shop.join("data/logs");
    let opts = analyze::Options {
        dir: tmp.path().join("trail"),
        logs: ["gateway", "orders", "storage"]
            .iter()
            .map(|s| (s.to_string(), logs.join(format!("{s}.jsonl")), None))
            .collect(),
        expect: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/expectations.toml").into()),
        window_ns: 2_000_000_000,
        skip_malformed: false,
        verification_skipped: false,
        run_id: None,
    };
    let rep = analyze::analyze(&opts).unwrap();
    let data = shop.canonicalize().unwrap().join("data");
    let p = |rel: &str| -> String { data.join(rel).to_str().unwrap().to_string() };
    let found: Vec<(&str, String, Class, String)> = rep
        .findings
        .iter()
        .map(|f| (f.kind, f.service.clone(), f.class, f.resource.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "unsupported",
                "orders".into(),
                Class::FileWrite,
                p("invoices/invoice-2.pdf")
            ),
            (
                "unaudited",
                "storage".into(),
                Class::FileDelete,
                p("orders/order-3.json")
            ),
        ],
        "{:#?}",
        rep.findings
    );
    // Four orders: gateway accepts 4 and connects 4 times, orders accepts 4 and
    // connects 4, storage accepts 4; all audited.
    let cov = |svc: &str, class: Class| {
        rep.coverage
            .iter()
            .find(|c| c.service == svc && c.class == class)
            .map(|c| (c.required, c.audited))
    };
    assert_eq!(cov("gateway", Class::NetConnect), Some((4, 4)));
    assert_eq!(cov("orders", Class::NetAccept), Some((4, 4)));
    assert_eq!(cov("orders", Class::NetConnect), Some((4, 4)));
    assert_eq!(cov("storage", Class::NetAccept), Some((4, 4)));
    assert_eq!(cov("orders", Class::FileCreate), Some((4, 4)));
    assert_eq!(cov("storage", Class::FileDelete), Some((4, 3)));
    assert_eq!(cov("storage", Class::FileRename), Some((4, 4)));
}
