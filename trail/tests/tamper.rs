//! The tamper suite: real sealed trails (written by the trail writer, as the agent
//! does), changed the ways an attacker or an accident would, and what `verify` says.

use std::path::{Path, PathBuf};
use trail::{
    event::{class, Event, Extra},
    seal::{self, Record},
    verify::{verify, Expect, Kind},
    RunInfo, SealOptions, TrailWriter, WriterOptions,
};

fn event(i: u64) -> Event {
    Event {
        time_ns: 1_800_000_000_000_000_000 + i as i64,
        class_uid: class::FILE_SYSTEM_ACTIVITY,
        activity_name: "Open".into(),
        actor: trail::Actor {
            pid: 42,
            name: "t".into(),
            ..Default::default()
        },
        groundtruth: Extra {
            sequence: i,
            service: "svc".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A trail of `segments` segments of 10 rows each, sealed and finished.
fn trail(dir: &Path, run: &str, segments: u64, seal: SealOptions) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let opts = WriterOptions {
        batch_rows: 10,
        segment_rows: 10,
        zstd_level: 1,
        ..Default::default()
    };
    let run = RunInfo {
        run_id: run.into(),
        ..Default::default()
    };
    let mut w = TrailWriter::create_sealed(dir, run, opts, seal).unwrap();
    for i in 0..segments * 10 {
        w.push(event(i)).unwrap();
    }
    w.finish().unwrap().head
}

fn kinds(dir: &Path, expect: &Expect) -> Vec<(Kind, Option<u32>)> {
    verify(dir, expect)
        .unwrap()
        .problems
        .iter()
        .map(|p| (p.kind, p.segment))
        .collect()
}

fn seg(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("segment-{i:06}.parquet"))
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at(b.len());
    b[i] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn an_untouched_trail_verifies_with_its_totals() {
    let t = tempfile::tempdir().unwrap();
    let head = trail(t.path(), "run-a", 3, SealOptions::default());
    let r = verify(t.path(), &Expect::default()).unwrap();
    assert!(r.ok(), "{:#?}", r.problems);
    assert_eq!((r.segments_valid, r.segments_total, r.events), (3, 3, 30));
    assert!(r.complete);
    assert_eq!(r.head.as_deref(), Some(head.as_str()));
    assert!(!r.anchored);
    let with_head = Expect {
        head: Some(head),
        ..Default::default()
    };
    assert!(verify(t.path(), &with_head).unwrap().ok());
}

#[test]
fn a_flipped_byte_anywhere_in_a_segment_is_a_hash_mismatch_of_that_segment() {
    // Data pages (just after the leading magic), the footer metadata (near the end),
    // and the trailing magic.
    type Place = (&'static str, fn(usize) -> usize);
    let places: [Place; 4] = [
        ("data page", |_| 8),
        ("middle", |n| n / 2),
        ("footer", |n| n - 40),
        ("trailing magic", |n| n - 1),
    ];
    for (what, at) in places {
        let t = tempfile::tempdir().unwrap();
        trail(t.path(), "run-a", 3, SealOptions::default());
        flip(&seg(t.path(), 1), at);
        assert_eq!(
            kinds(t.path(), &Expect::default()),
            [(Kind::HashMismatch, Some(1))],
            "{what}"
        );
    }
}

#[test]
fn truncated_deleted_duplicated_and_swapped_segments() {
    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    let p = seg(t.path(), 2);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    assert_eq!(
        kinds(t.path(), &Expect::default()),
        [(Kind::HashMismatch, Some(2))]
    );

    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    std::fs::remove_file(seg(t.path(), 1)).unwrap();
    assert_eq!(
        kinds(t.path(), &Expect::default()),
        [(Kind::Missing, Some(1))]
    );

    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    std::fs::copy(seg(t.path(), 1), seg(t.path(), 3)).unwrap();
    assert_eq!(
        kinds(t.path(), &Expect::default()),
        [(Kind::UnexpectedFile, None)]
    );

    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    let tmp = t.path().join("x");
    std::fs::rename(seg(t.path(), 0), &tmp).unwrap();
    std::fs::rename(seg(t.path(), 1), seg(t.path(), 0)).unwrap();
    std::fs::rename(&tmp, seg(t.path(), 1)).unwrap();
    assert_eq!(
        kinds(t.path(), &Expect::default()),
        [(Kind::HashMismatch, Some(0)), (Kind::HashMismatch, Some(1))]
    );
}

#[test]
fn a_segment_replayed_from_another_run_is_named_as_such() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    trail(a.path(), "run-a", 3, SealOptions::default());
    trail(b.path(), "run-b", 3, SealOptions::default());
    std::fs::copy(seg(b.path(), 1), seg(a.path(), 1)).unwrap();
    let r = verify(a.path(), &Expect::default()).unwrap();
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
    assert_eq!(r.problems[0].kind, Kind::ForeignRun);
    assert!(r.problems[0].detail.contains("run-b"));
    // A whole seal log from another run in place of this one's.
    std::fs::copy(
        b.path().join(seal::SEALS_FILE),
        a.path().join(seal::SEALS_FILE),
    )
    .unwrap();
    let k = kinds(a.path(), &Expect::default());
    assert!(
        k.contains(&(Kind::ForeignRun, Some(0))) || k.contains(&(Kind::HashMismatch, Some(0))),
        "{k:?}"
    );
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(seal::SEALS_FILE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, l: &[String]) {
    std::fs::write(dir.join(seal::SEALS_FILE), l.join("\n") + "\n").unwrap();
}

#[test]
fn a_changed_or_cut_seal_log() {
    // A byte of a seal record changed: its signature fails and the next record's
    // `prev` no longer matches.
    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    let mut l = lines(t.path());
    l[2] = l[2].replacen("\"rows\":10", "\"rows\":11", 1);
    write_lines(t.path(), &l);
    let k = kinds(t.path(), &Expect::default());
    assert!(k.contains(&(Kind::SignatureInvalid, Some(1))), "{k:?}");
    assert!(k.contains(&(Kind::ChainBroken, Some(2))), "{k:?}");

    // The last records removed (the last segment's seal and the final seal): an
    // unsealed tail, and against the anchor kept outside, a cut-off log.
    let t = tempfile::tempdir().unwrap();
    let anchor = t.path().join("anchor.txt");
    std::fs::create_dir_all(t.path().join("trail")).unwrap();
    let dir = t.path().join("trail");
    trail(
        &dir,
        "run-a",
        3,
        SealOptions {
            anchor: Some(anchor.clone()),
            ..Default::default()
        },
    );
    let full = trail::verify::parse_anchor(&std::fs::read_to_string(&anchor).unwrap()).unwrap();
    let with_anchor = Expect {
        anchor: Some(full),
        ..Default::default()
    };
    assert!(verify(&dir, &with_anchor).unwrap().ok());
    let l = lines(&dir);
    write_lines(&dir, &l[..l.len() - 2]);
    let k = kinds(&dir, &Expect::default());
    assert_eq!(
        k,
        [(Kind::UnsealedTail, Some(2)), (Kind::UnsealedTail, None)],
        "without the anchor, it looks like a crash"
    );
    let k = kinds(&dir, &with_anchor);
    assert!(
        k.contains(&(Kind::HeadMismatch, None)),
        "the anchor proves the cut: {k:?}"
    );

    // Records reordered.
    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    let mut l = lines(t.path());
    l.swap(1, 2);
    write_lines(t.path(), &l);
    let k = kinds(t.path(), &Expect::default());
    assert!(k.iter().any(|(k, _)| *k == Kind::OutOfOrder), "{k:?}");
    assert!(k.iter().any(|(k, _)| *k == Kind::ChainBroken), "{k:?}");
}

#[test]
fn resealing_with_new_keys_after_a_change_is_detected() {
    // The attacker changes segment 1, then rewrites its seal and every later one with
    // keys of their own, keeping the chain consistent. The genesis record committed
    // the first key, whose private half the writer erased: record 1's signature
    // cannot be made to verify.
    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    flip(&seg(t.path(), 1), |n| n / 2);
    let l = lines(t.path());
    let mut recs: Vec<Record> = l.iter().map(|x| serde_json::from_str(x).unwrap()).collect();
    let mut prev = seal::sha256(l[0].as_bytes());
    let bytes = std::fs::read(seg(t.path(), 1)).unwrap();
    let mut out = vec![l[0].clone()];
    let mut key = seal::new_key().unwrap();
    for r in recs.iter_mut().skip(1) {
        if let Some(s) = r.body.segment.as_mut() {
            if s.index == 1 {
                s.sha256 = seal::hex(&seal::sha256(&bytes));
            }
        }
        r.body.prev = seal::hex(&prev);
        let next = seal::new_key().unwrap();
        r.body.next_key = seal::hex(next.verifying_key().as_bytes());
        use ed25519_dalek::Signer;
        r.sig = seal::hex(&key.sign(&r.body.signed_bytes()).to_bytes());
        key = next;
        let line = serde_json::to_string(r).unwrap();
        prev = seal::sha256(line.as_bytes());
        out.push(line);
    }
    write_lines(t.path(), &out);
    let k = kinds(t.path(), &Expect::default());
    assert_eq!(
        k,
        [(Kind::SignatureInvalid, Some(0))],
        "only the first forged record fails"
    );
}

#[test]
fn a_crash_leaves_sealed_segments_valid_and_the_tail_unsealed() {
    let t = tempfile::tempdir().unwrap();
    // Batches of 5: the third segment is open, with a batch in it, when it "crashes".
    let opts = WriterOptions {
        batch_rows: 5,
        segment_rows: 10,
        zstd_level: 1,
        ..Default::default()
    };
    let run = RunInfo {
        run_id: "run-a".into(),
        ..Default::default()
    };
    let mut w = TrailWriter::create(t.path(), run, opts).unwrap();
    for i in 0..25 {
        w.push(event(i)).unwrap();
    }
    // No finish(): as if the agent were killed with the third segment half written.
    drop(w);
    let r = verify(t.path(), &Expect::default()).unwrap();
    assert_eq!((r.segments_valid, r.events, r.complete), (2, 20, false));
    assert!(
        r.problems.iter().all(|p| p.kind == Kind::UnsealedTail),
        "{:#?}",
        r.problems
    );
    assert!(r
        .problems
        .iter()
        .any(|p| p.file.as_deref().is_some_and(|f| f.ends_with(".partial"))));
}

#[test]
fn a_long_term_key_certifies_the_first_key() {
    let t = tempfile::tempdir().unwrap();
    let long = seal::new_key().unwrap();
    let public = long.verifying_key();
    trail(
        t.path(),
        "run-a",
        2,
        SealOptions {
            long_term: Some(long),
            ..Default::default()
        },
    );
    let ok = Expect {
        pubkey: Some(public),
        ..Default::default()
    };
    let r = verify(t.path(), &ok).unwrap();
    assert!(r.ok() && r.anchored, "{:#?}", r.problems);
    let other = Expect {
        pubkey: Some(seal::new_key().unwrap().verifying_key()),
        ..Default::default()
    };
    assert_eq!(kinds(t.path(), &other), [(Kind::NotCertified, None)]);
    // An uncertified trail against a key.
    let u = tempfile::tempdir().unwrap();
    trail(u.path(), "run-b", 1, SealOptions::default());
    assert_eq!(kinds(u.path(), &ok), [(Kind::NotCertified, None)]);
}

#[test]
fn a_flipped_byte_anywhere_in_the_seal_log_is_detected() {
    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 2, SealOptions::default());
    let log = std::fs::read(t.path().join(seal::SEALS_FILE)).unwrap();
    // Every 7th byte position (the whole log would be slow), each flipped alone.
    for i in (0..log.len()).step_by(7) {
        let mut b = log.clone();
        b[i] ^= 0x01;
        std::fs::write(t.path().join(seal::SEALS_FILE), &b).unwrap();
        let r = verify(t.path(), &Expect::default()).unwrap();
        assert!(
            !r.ok(),
            "byte {i} ({:?}) flipped went unnoticed",
            log[i] as char
        );
    }
}

#[test]
fn a_swapped_key_and_a_rollback_to_an_earlier_head() {
    // next_key of record 1 replaced with the attacker's: record 1's signature no longer
    // verifies (the key is signed), and neither does record 2's.
    let t = tempfile::tempdir().unwrap();
    trail(t.path(), "run-a", 3, SealOptions::default());
    let mut l = lines(t.path());
    let mut r1: Record = serde_json::from_str(&l[1]).unwrap();
    r1.body.next_key = seal::hex(seal::new_key().unwrap().verifying_key().as_bytes());
    l[1] = serde_json::to_string(&r1).unwrap();
    write_lines(t.path(), &l);
    let k = kinds(t.path(), &Expect::default());
    assert!(k.contains(&(Kind::SignatureInvalid, Some(0))), "{k:?}");
    assert!(k.contains(&(Kind::SignatureInvalid, Some(1))), "{k:?}");

    // Rolled back: the trail as it was two seals earlier (its last segments and seals
    // removed, a final seal absent), held against the head the CI log kept.
    let t = tempfile::tempdir().unwrap();
    let head = trail(t.path(), "run-a", 3, SealOptions::default());
    let l = lines(t.path());
    write_lines(t.path(), &l[..l.len() - 2]);
    std::fs::remove_file(seg(t.path(), 2)).unwrap();
    let r = verify(
        t.path(),
        &Expect {
            head: Some(head),
            ..Default::default()
        },
    )
    .unwrap();
    let p = r
        .problems
        .iter()
        .find(|p| p.kind == Kind::HeadMismatch)
        .expect("head mismatch");
    assert!(p.detail.contains("not in this log"), "{}", p.detail);
}

#[test]
fn hundreds_of_clean_trails_of_random_sizes_verify_without_false_alarms() {
    // A small deterministic generator: no dependency, reproducible failures.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for n in 0..200 {
        let t = tempfile::tempdir().unwrap();
        let events = next() % 60;
        let opts = WriterOptions {
            batch_rows: 1 + (next() % 9) as usize,
            segment_rows: 1 + (next() % 25) as usize,
            zstd_level: 1,
            ..Default::default()
        };
        let run = RunInfo {
            run_id: format!("prop-{n}"),
            ..Default::default()
        };
        let mut w = TrailWriter::create(t.path(), run, opts.clone()).unwrap();
        for i in 0..events {
            w.push(event(i)).unwrap();
        }
        let head = w.finish().unwrap().head;
        let r = verify(
            t.path(),
            &Expect {
                head: Some(head),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            r.ok() && r.events == events,
            "trail {n} ({events} events, {opts:?}): {:#?}",
            r.problems
        );
    }
}

#[test]
fn an_idle_recording_seals_its_events_once_they_are_older_than_the_segment_age() {
    let t = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        segment_age: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    let run = RunInfo {
        run_id: "idle".into(),
        ..Default::default()
    };
    let mut w = TrailWriter::create(t.path(), run, opts).unwrap();
    w.push(event(0)).unwrap();
    w.push(event(1)).unwrap();
    // Far fewer events than a batch: only the age can seal them. Poll until it does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.take_sealed().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never sealed");
        std::thread::sleep(std::time::Duration::from_millis(10));
        w.tick().unwrap();
    }
    let r = verify(t.path(), &Expect::default()).unwrap();
    assert_eq!((r.segments_valid, r.events), (1, 2), "{:#?}", r.problems);
    drop(w);
}
