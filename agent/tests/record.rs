//! Privileged tests: the agent loads its programs into the running kernel and records
//! real workloads. They run as root through `cargo xtask test` (one test thread); when
//! not root they say so and skip, except under CI=true, where they fail.
//!
//! Assertions are exact: pids, paths, byte counts, activities, and that every time
//! falls inside the test's window. No fixed sleeps: the agent stops when the command
//! exits, after draining what is in flight.

mod common;

use common::*;
use std::{collections::BTreeMap, path::Path, process::Command};
use trail::{meta, Event};

#[test]
fn file_activity_is_recorded_exactly() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let work = d.join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::create_dir_all(d.join("other")).unwrap();
    let ops = [
        "write:a.txt:123".to_string(),
        "read:a.txt".into(),
        "chdir:sub".into(),
        "write:../rel.txt:7".into(),
        format!("openat:{}:n.txt:5", d.join("other").display()),
        "rename:../a.txt:../b.txt".into(),
        "unlink:../b.txt".into(),
        "missing:../nothere".into(),
        "mkdir:newdir".into(),
        "rmdir:newdir".into(),
        "write:twice.txt:1".into(),
        "write:twice.txt:2".into(),
    ];
    let mut cmd = vec![WORKLOAD];
    cmd.extend(ops.iter().map(String::as_str));
    let run = record(&d, &["--service", "files"], &cmd, &work);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    run.assert_in_window();
    let pid = run.workload_pid(&ops.join(" "));

    let a = work.join("a.txt");
    let open = run.file_events("Open", &a);
    assert_eq!(open.len(), 2, "open for write, then for read: {open:#?}");
    for e in &open {
        assert_eq!(e.actor.pid, pid);
        assert_eq!(&*e.groundtruth.service, "files");
        assert_eq!(e.groundtruth.errno, None);
        assert!(e.file.as_ref().unwrap().inode.is_some_and(|i| i > 0));
    }
    assert_eq!(
        open[0].file.as_ref().unwrap().path_requested.as_deref(),
        Some("a.txt")
    );
    let closes = run.file_events("Close", &a);
    assert_eq!(closes.len(), 2, "{closes:#?}");
    assert_eq!(
        (
            closes[0].groundtruth.bytes_read,
            closes[0].groundtruth.bytes_written
        ),
        (Some(0), Some(123))
    );
    assert_eq!(
        (
            closes[1].groundtruth.bytes_read,
            closes[1].groundtruth.bytes_written
        ),
        (Some(123), Some(0))
    );
    assert_eq!(
        closes[0].file.as_ref().unwrap().inode,
        open[0].file.as_ref().unwrap().inode
    );

    // Relative path with `..` after chdir: the real absolute path.
    let rel = run.one("Open", &work.join("rel.txt"));
    assert_eq!(
        rel.file.as_ref().unwrap().path_requested.as_deref(),
        Some("../rel.txt")
    );
    assert_eq!(
        run.one("Close", &work.join("rel.txt"))
            .groundtruth
            .bytes_written,
        Some(7)
    );

    // openat with a directory descriptor.
    let n = d.join("other/n.txt");
    assert_eq!(
        run.one("Open", &n).groundtruth.syscall.as_deref(),
        Some("openat")
    );
    assert_eq!(run.one("Close", &n).groundtruth.bytes_written, Some(5));

    let rename = run.one("Rename", &a);
    assert_eq!(
        rename.file_result.as_ref().unwrap().path.as_deref(),
        work.join("b.txt").to_str()
    );
    assert_eq!(rename.groundtruth.ret, Some(0));
    assert_eq!(run.one("Delete", &work.join("b.txt")).actor.pid, pid);

    let missing = run.one("Open", &work.join("nothere"));
    assert_eq!(missing.groundtruth.errno, Some(libc::ENOENT));
    assert_eq!(missing.status_id, trail::event::status::FAILURE);

    let newdir = work.join("sub/newdir");
    assert_eq!(run.one("Mkdir", &newdir).groundtruth.mode, Some(0o777));
    assert_eq!(run.one("Rmdir", &newdir).actor.pid, pid);

    // O_CREAT twice on one name: only the first open created the file.
    let twice = run.file_events("Open", &work.join("sub/twice.txt"));
    let created: Vec<bool> = twice.iter().map(|e| e.groundtruth.created).collect();
    assert_eq!(created, [true, false], "{twice:#?}");
    assert!(open[0].groundtruth.created && !open[1].groundtruth.created);
    assert_eq!(run.metadata[meta::LOST_TOTAL], "0");
    // Nothing else the kernel side could not record either (skipped runs, full maps).
    assert_eq!(run.metadata[meta::KERNEL_GAPS], "{}", "{}", run.stderr());
}

#[test]
fn process_tree_is_followed_including_daemons() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let script = format!("{WORKLOAD} write:x.txt:1 && {WORKLOAD} daemon:300:late.txt");
    let run = record(&d, &["--wait-all"], &["sh", "-c", &script], &d);
    assert!(run.out.status.success(), "{}", run.stderr());
    run.assert_in_window();
    let sh = run
        .events
        .iter()
        .find(|e| {
            e.activity_name == "Launch"
                && e.actor.cmd_line.as_deref() == Some(&format!("sh -c {script}"))
        })
        .expect("the shell's exec");
    let child = run.workload_pid("write:x.txt:1");
    let fork = run
        .events
        .iter()
        .find(|e| e.activity_name == "Fork" && e.process.as_ref().is_some_and(|p| p.pid == child))
        .expect("fork of the first child");
    assert_eq!(fork.actor.pid, sh.actor.pid);
    let exit = run
        .events
        .iter()
        .find(|e| e.activity_name == "Terminate" && e.actor.pid == child)
        .expect("child's exit");
    assert_eq!(exit.process.as_ref().unwrap().exit_code, Some(0));
    // The grandchild outlived its parent and the shell, and is still tracked.
    let late = run.one("Open", &d.join("late.txt"));
    let daemon_parent = run.workload_pid("daemon:300:late.txt");
    assert_ne!(late.actor.pid, daemon_parent);
    assert_eq!(
        run.one("Close", &d.join("late.txt"))
            .groundtruth
            .bytes_written,
        Some(1)
    );
    assert_eq!(
        run.stderr().matches("still running").count(),
        0,
        "{}",
        run.stderr()
    );
}

#[test]
fn without_wait_all_survivors_are_named() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let run = record(&d, &[], &[WORKLOAD, "daemon:1500:late.txt"], &d);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert!(run.stderr().contains("still running"), "{}", run.stderr());
    assert!(run.file_events("Open", &d.join("late.txt")).is_empty());
}

#[test]
fn untracked_processes_produce_nothing() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let noise_dir = d.join("noise");
    std::fs::create_dir(&noise_dir).unwrap();
    // Started before the agent, busy during the whole recording.
    let mut noise = Command::new(WORKLOAD)
        .args(["loop:100000"])
        .current_dir(&noise_dir)
        .spawn()
        .unwrap();
    let run = record(
        &d,
        &[],
        &[
            WORKLOAD,
            "write:mine.txt:3",
            "sleep:200",
            "write:mine2.txt:3",
        ],
        &d,
    );
    let _ = noise.kill();
    let _ = noise.wait();
    assert!(run.out.status.success(), "{}", run.stderr());
    let noise_path = noise_dir.to_str().unwrap();
    let leaked: Vec<&Event> = run
        .events
        .iter()
        .filter(|e| {
            e.actor.pid == noise.id()
                || e.file
                    .as_ref()
                    .and_then(|f| f.path.as_deref())
                    .is_some_and(|p| p.starts_with(noise_path))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "untracked activity recorded: {leaked:#?}"
    );
    run.one("Close", &d.join("mine2.txt"));
}

#[test]
fn exit_status_is_the_commands() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let run = record(&d, &[], &["sh", "-c", "exit 3"], &d);
    assert_eq!(run.out.status.code(), Some(3), "{}", run.stderr());
    let tmp2 = tempdir();
    let run = record(tmp2.path(), &[], &["sh", "-c", "kill -9 $$"], tmp2.path());
    assert_eq!(run.out.status.code(), Some(128 + 9), "{}", run.stderr());
    let term = run
        .events
        .iter()
        .find(|e| e.activity_name == "Terminate")
        .expect("exit event");
    assert_eq!(term.process.as_ref().unwrap().exit_signal, Some(9));
}

#[test]
fn bpf_stats_report_the_programs_time() {
    if !privileged() {
        return;
    }
    const LINE: &str = "groundtruth-agent: kernel programs while recording (--bpf-stats): ";
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let run = record(&d, &["--bpf-stats"], &[WORKLOAD, "loop:300"], &d);
    assert!(run.out.status.success(), "{}", run.stderr());
    let stderr = run.stderr();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(LINE))
        .unwrap_or_else(|| panic!("no --bpf-stats line:\n{stderr}"));
    // `NAME N runs T us (A ns a run)`: runs and time of one program.
    let prog = |name: &str| -> (u64, u64) {
        let at = line
            .find(&format!(" {name} "))
            .unwrap_or_else(|| panic!("{name} missing: {line}"));
        let w: Vec<&str> = line[at..].split_whitespace().collect();
        assert_eq!((w[2], w[4]), ("runs", "us"), "{line}");
        (w[1].parse().unwrap(), w[3].parse().unwrap())
    };
    // Every iteration is five syscalls (open, write, close, rename, unlink) of a
    // tracked process, and every syscall runs both programs.
    for p in ["sys_enter", "sys_exit"] {
        let (runs, us) = prog(p);
        assert!(runs >= 1500, "{p}: {runs} runs for 1500 syscalls: {line}");
        assert!(us > 0, "{p}: no time: {line}");
    }
    let total: u64 = line
        .strip_prefix("total ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total: {line}"));
    assert!(total >= prog("sys_exit").1 + prog("sys_enter").1, "{line}");
    // Not measured (nor printed) unless asked for.
    let tmp2 = tempdir();
    let run = record(tmp2.path(), &[], &[WORKLOAD, "loop:1"], tmp2.path());
    assert!(run.out.status.success(), "{}", run.stderr());
    assert!(!run.stderr().contains("--bpf-stats"), "{}", run.stderr());
}

#[test]
fn refuses_a_non_empty_output_directory() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    std::fs::write(tmp.path().join("keep"), b"x").unwrap();
    let out = Command::new(AGENT)
        .args(["record", "--out"])
        .arg(tmp.path())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert!(tmp.path().join("keep").exists());
}

#[test]
fn runs_the_command_as_the_sudo_user() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let out_dir = tmp.path().join("trail");
    let out = Command::new(AGENT)
        .args(["record", "--out"])
        .arg(&out_dir)
        .args(["--", WORKLOAD, "sleep:1"])
        .current_dir("/")
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Event> = trail::read_trail(&out_dir)
        .unwrap()
        .into_iter()
        .flat_map(|s| s.events)
        .collect();
    let launch = events
        .iter()
        .find(|e| e.activity_name == "Launch")
        .expect("exec event");
    assert_eq!((launch.actor.uid, launch.actor.gid), (65534, 65534));
}

#[test]
fn losses_are_counted_and_equal_the_sequence_gaps() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    // A 1 MiB ring buffer, and a flood while the agent is stopped (SIGSTOP): the
    // kernel must count what does not fit.
    let (go, done) = (d.join("go"), d.join("done"));
    let workload = [
        format!("waitfor:{}", go.display()),
        "loop:30000".to_string(),
        format!("write:{}:1", done.display()),
    ];
    let out_dir = d.join("trail");
    let start = now_ns();
    let mut agent = std::process::Command::new(AGENT)
        .args(["record", "--ring-size", "1", "--out"])
        .arg(&out_dir)
        .arg("--")
        .arg(WORKLOAD)
        .args(&workload)
        .current_dir(&d)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(agent.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        use std::io::BufRead;
        let mut l = String::new();
        assert!(
            stderr.read_line(&mut l).unwrap() > 0,
            "agent exited: {text}"
        );
        text.push_str(&l);
        if l.contains("recording service") {
            break;
        }
    }
    // SAFETY: signalling the agent we started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGSTOP) };
    std::fs::write(&go, "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flood did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: as above.
    unsafe { libc::kill(agent.id() as i32, libc::SIGCONT) };
    let status = agent.wait().unwrap();
    {
        use std::io::Read;
        stderr.read_to_string(&mut text).unwrap();
    }
    assert!(status.success(), "{text}");
    let segments = trail::read_trail(&out_dir).unwrap();
    let run = Run {
        out: std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: text.into_bytes(),
        },
        metadata: segments.last().unwrap().metadata.clone(),
        events: segments.into_iter().flat_map(|s| s.events).collect(),
        start,
        end: now_ns(),
    };
    assert!(run.out.status.success(), "{}", run.stderr());
    let lost: BTreeMap<String, u64> = serde_json::from_str(&run.metadata[meta::LOST]).unwrap();
    let produced: BTreeMap<String, u64> =
        serde_json::from_str(&run.metadata[meta::PRODUCED]).unwrap();
    let mut delivered: BTreeMap<String, u64> = BTreeMap::new();
    for e in &run.events {
        if e.groundtruth.cpu != u32::MAX {
            *delivered.entry(e.groundtruth.cpu.to_string()).or_default() += 1;
        }
    }
    let total_lost: u64 = lost.values().sum();
    assert!(
        total_lost > 0,
        "the flood should overflow a 1 MiB ring buffer; stderr:\n{}",
        run.stderr()
    );
    for (cpu, n) in &produced {
        let got = delivered.get(cpu).copied().unwrap_or(0);
        assert_eq!(
            n - got,
            lost.get(cpu).copied().unwrap_or(0),
            "cpu {cpu}: produced {n}, delivered {got}"
        );
    }
    assert!(
        run.stderr().contains(&format!("lost {total_lost}")),
        "{}",
        run.stderr()
    );
}

/// Bytes through descriptors the process did not get from open(): shell redirection
/// (open, dup2 to 1, close, write), a dup2 that is later replaced, a descriptor
/// inherited across fork, and in-kernel copies (cat may use copy_file_range).
#[test]
fn bytes_through_dup_inherited_and_copied_descriptors_are_counted() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let script = format!(
        "echo hello > out.txt; echo more >> out.txt; cat out.txt > copy.txt; {WORKLOAD} dup:a.txt:11:9 inherit:b.txt:7"
    );
    let run = record(&d, &[], &["sh", "-c", &script], &d);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    run.assert_in_window();
    let closes = |name: &str| run.file_events("Close", &d.join(name));
    let written = |name: &str| -> u64 {
        closes(name)
            .iter()
            .map(|e| e.groundtruth.bytes_written.unwrap())
            .sum()
    };
    let read = |name: &str| -> u64 {
        closes(name)
            .iter()
            .map(|e| e.groundtruth.bytes_read.unwrap())
            .sum()
    };
    assert_eq!(written("out.txt"), 11, "{:#?}", closes("out.txt"));
    assert_eq!(read("out.txt"), 11, "cat read it: {:#?}", closes("out.txt"));
    assert_eq!(written("copy.txt"), 11, "{:#?}", closes("copy.txt"));

    // dup:a.txt:11:9 — the original descriptor closes with nothing, descriptor 9 is
    // acquired, and closes implicitly (replaced by dup2 of /dev/null) with 11 bytes.
    let pid = run.workload_pid("dup:a.txt:11:9 inherit:b.txt:7");
    let a = closes("a.txt");
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_eq!(
        (a[0].groundtruth.bytes_written, a[0].groundtruth.implicit),
        (Some(0), false)
    );
    assert_eq!(
        (
            a[1].groundtruth.fd,
            a[1].groundtruth.bytes_written,
            a[1].groundtruth.implicit
        ),
        (Some(9), Some(11), true)
    );
    let acq = run.one("Acquire", &d.join("a.txt"));
    assert_eq!((acq.actor.pid, acq.groundtruth.fd), (pid, Some(9)));
    assert!(acq.file.as_ref().unwrap().inode.is_some_and(|i| i > 0));
    let null: Vec<u64> = run
        .file_events("Close", Path::new("/dev/null"))
        .iter()
        .filter(|e| e.actor.pid == pid)
        .map(|e| e.groundtruth.bytes_written.unwrap())
        .collect();
    assert_eq!(
        null,
        [0, 5],
        "the bytes after dup2 over fd 9 went to /dev/null"
    );

    // inherit:b.txt:7 — the child's writes through the inherited descriptor.
    let b = closes("b.txt");
    assert_eq!(b.len(), 2, "{b:#?}");
    let child = b
        .iter()
        .find(|e| e.actor.pid != pid)
        .expect("child's close");
    assert_eq!(
        (child.groundtruth.bytes_written, child.groundtruth.implicit),
        (Some(7), true)
    );
    let parent = b
        .iter()
        .find(|e| e.actor.pid == pid)
        .expect("parent's close");
    assert_eq!(parent.groundtruth.bytes_written, Some(0));
    assert_eq!(
        run.one("Acquire", &d.join("b.txt")).actor.pid,
        child.actor.pid
    );
}
