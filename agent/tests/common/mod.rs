//! Helpers shared by the privileged integration tests.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{SystemTime, UNIX_EPOCH},
};
use trail::Event;

pub const AGENT: &str = env!("CARGO_BIN_EXE_groundtruth-agent");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_gt-workload");

pub fn privileged() -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("privileged test cannot run: not root (CI=true requires it; run `cargo xtask test` as root)");
    }
    eprintln!("skipped: needs root to load eBPF programs (run `sudo -E cargo xtask test`)");
    false
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

pub struct Run {
    pub out: Output,
    pub events: Vec<Event>,
    pub metadata: BTreeMap<String, String>,
    pub start: i64,
    pub end: i64,
}

impl Run {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// The pid of the process that exec'd gt-workload with exactly these arguments.
    pub fn workload_pid(&self, args: &str) -> u32 {
        let want = format!("{WORKLOAD} {args}");
        self.events
            .iter()
            .find(|e| {
                e.activity_name == "Launch" && e.actor.cmd_line.as_deref() == Some(want.as_str())
            })
            .unwrap_or_else(|| {
                panic!(
                    "no Launch of `{want}` in the trail; stderr:\n{}",
                    self.stderr()
                )
            })
            .actor
            .pid
    }

    pub fn file_events(&self, activity: &str, path: &Path) -> Vec<&Event> {
        let p = path.to_str().unwrap();
        self.events
            .iter()
            .filter(|e| e.activity_name == activity)
            .filter(|e| e.file.as_ref().and_then(|f| f.path.as_deref()) == Some(p))
            .collect()
    }

    pub fn one(&self, activity: &str, path: &Path) -> &Event {
        let v = self.file_events(activity, path);
        assert_eq!(
            v.len(),
            1,
            "expected one {activity} of {}, got {v:#?}\nstderr:\n{}",
            path.display(),
            self.stderr()
        );
        v[0]
    }

    pub fn assert_in_window(&self) {
        for e in &self.events {
            assert!(
                e.time_ns >= self.start && e.time_ns <= self.end,
                "event time {} outside the test window [{}, {}]: {e:?}",
                e.time_ns,
                self.start,
                self.end
            );
        }
    }
}

pub fn record(dir: &Path, extra: &[&str], cmd: &[&str], cwd: &Path) -> Run {
    let out_dir = dir.join("trail");
    let start = now_ns();
    let out = Command::new(AGENT)
        .arg("record")
        .arg("--out")
        .arg(&out_dir)
        .args(extra)
        .arg("--")
        .args(cmd)
        .current_dir(cwd)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .output()
        .expect("run groundtruth-agent");
    let end = now_ns();
    let segments = trail::read_trail(&out_dir).unwrap_or_else(|e| {
        panic!(
            "trail unreadable: {e}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let metadata = segments.last().unwrap().metadata.clone();
    let events = segments.into_iter().flat_map(|s| s.events).collect();
    Run {
        out,
        events,
        metadata,
        start,
        end,
    }
}

pub fn tempdir() -> tempfile::TempDir {
    // Under the target directory rather than /tmp: a real disk, and left out of
    // anything that cleans /tmp mid-test.
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tempfile::tempdir_in(base).unwrap()
}
