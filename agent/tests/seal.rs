//! Privileged sealing tests through the agent: a clean run verifies against the head
//! it printed and its anchor file; a SIGKILL leaves the sealed segments valid and the
//! tail unsealed; a signing key others can read is refused.

mod common;

use common::*;
use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
};
use trail::verify::{parse_anchor, verify, Expect, Kind};

#[test]
fn a_clean_run_verifies_against_its_printed_head_anchor_and_long_term_key() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let key = d.join("team.key");
    let st = Command::new(AGENT)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let public = String::from_utf8_lossy(&st.stdout).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(d.join("team.key.pub"))
            .unwrap()
            .trim(),
        public
    );
    let anchor = d.join("anchor.txt");
    let run = record(
        &d,
        &[
            "--segment-events",
            "5",
            "--sign-key",
            key.to_str().unwrap(),
            "--anchor",
            anchor.to_str().unwrap(),
        ],
        &[WORKLOAD, "write:a:1", "write:b:2", "write:c:3"],
        &d,
    );
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let stderr = run.stderr();
    let head = stderr
        .lines()
        .find_map(|l| l.strip_prefix("groundtruth-agent: final seal, chain head "))
        .expect("the final head is printed")
        .to_string();
    assert!(stderr.contains("sealing with first key"), "{stderr}");
    assert!(stderr.contains("(certified by --sign-key)"), "{stderr}");
    let trail_dir = d.join("trail");
    let expect = Expect {
        head: Some(head),
        anchor: Some(parse_anchor(&std::fs::read_to_string(&anchor).unwrap()).unwrap()),
        pubkey: Some(trail::seal::parse_public_key(&public).unwrap()),
    };
    let r = verify(&trail_dir, &expect).unwrap();
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.segments_valid >= 3, "several segments: {r:#?}");
    assert_eq!(r.events as usize, run.events.len());
}

#[test]
fn sigkill_leaves_sealed_segments_valid_and_the_tail_unsealed() {
    if !privileged() {
        return;
    }
    // Killed at different moments: after the first seal, later, and mid-workload.
    for (n, after) in [1usize, 2, 5].into_iter().enumerate() {
        let tmp = tempdir();
        let d = tmp.path().canonicalize().unwrap();
        let out = d.join("trail");
        let workload = format!("loop:{}", 250 + 50 * n);
        let mut agent = Command::new(AGENT)
            .args(["record", "--segment-events", "100", "--out"])
            .arg(&out)
            .arg("--")
            .arg(WORKLOAD)
            .args([workload.as_str(), "sleep:10000"])
            .current_dir(&d)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(agent.stderr.take().unwrap()).lines();
        let mut sealed = 0;
        while sealed < after {
            let l = lines.next().expect("agent output").unwrap();
            if l.contains(": sealed segment-") {
                sealed += 1;
            }
        }
        // SAFETY: killing the agent we started.
        unsafe { libc::kill(agent.id() as i32, libc::SIGKILL) };
        agent.wait().unwrap();
        let r = verify(&out, &Expect::default()).unwrap();
        assert!(r.segments_valid as usize >= after, "{r:#?}");
        assert!(!r.complete);
        assert!(
            r.problems.iter().all(|p| p.kind == Kind::UnsealedTail),
            "only the tail is unsealed: {:#?}",
            r.problems
        );
        // The workload outlives the killed agent: stop it.
        let _ = Command::new("pkill")
            .args(["-f", &format!("gt-workload {workload} sleep:10000")])
            .status();
    }
}

#[test]
fn a_signing_key_others_can_read_is_refused() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let key = d.join("k");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(AGENT)
        .args(["record", "--sign-key"])
        .arg(&key)
        .arg("--out")
        .arg(d.join("trail"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("readable or writable by group or others"), "{e}");
}
