//! `cargo xtask vm-test [--kernel VERSION]...`: boot Debian kernels in QEMU (TCG) with the
//! agent in the initramfs, record a scripted workload in each, and check what the trail
//! holds, per kernel (docs/kernels.md).
//!
//! Kernels come from Debian's archive through a private apt configuration in
//! target/vm-cache (nothing on the host is upgraded; the host's /etc/apt is untouched),
//! and only their /boot is extracted; downloads are cached between runs. The initramfs
//! holds busybox (static), the release binaries and the shared libraries they need, and
//! an /init that records the workload, prints the trail's events as JSON Lines between
//! markers, verifies the trail and powers off. The checks run here, on the console
//! output.
//!
//! `cargo xtask test` runs it on 6.12 and 7.3. 6.1's verifier still refuses `sys_exit`
//! (too many instructions to verify: docs/kernels.md).

use crate::{cargo, root_dir, run, setup};
use anyhow::{bail, Context as _};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The kernels the matrix knows: (short name, apt target release).
const KERNELS: &[(&str, &str)] = &[
    ("6.1", "bookworm-security"),
    ("6.12", "bookworm-backports"),
    ("7.3", "trixie-backports"),
];

const SOURCES: &str = "\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian trixie main
deb http://deb.debian.org/debian trixie-backports main
";

/// trixie is only ever used on request (-t): nothing from it is picked by default.
const PIN: &str = "\
Package: *
Pin: release n=trixie
Pin-Priority: 1

Package: *
Pin: release n=trixie-backports
Pin-Priority: 1
";

/// The workload the guest records, and the /init around it.
const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null
echo "GT-VM kernel $(cat /proc/sys/kernel/osrelease)"
mkdir -p /work/sub /work/other
cd /work
GT_VERIFIER_STATS=1 /bin/groundtruth-agent record --out /tmp/trail --service vm -- /bin/sh -c \
  '/bin/gt-workload write:a.txt:123 chdir:sub write:../rel.txt:7 openat:/work/other:n.txt:5 rename:../a.txt:../b.txt unlink:../b.txt' \
  > /tmp/agent.out 2> /tmp/agent.err
echo "GT-VM agent-exit $?"
echo "GT-VM-STDERR-BEGIN"
cat /tmp/agent.err
echo "GT-VM-STDERR-END"
echo "GT-VM-EVENTS-BEGIN"
/bin/groundtruth events /tmp/trail --format jsonl --no-verify 2>/dev/null
echo "GT-VM-EVENTS-END"
/bin/groundtruth verify /tmp/trail > /dev/null 2>&1
echo "GT-VM verify-exit $?"
# The network workload, recorded on its own. Since 7.2 the kernel runs syscall
# tracepoint programs preemptibly and skips a run that would nest in a preempted one
# (the agent reports each skip; docs/kernels.md). An attempt that reports skips is
# repeated with the agent and the workload under SCHED_FIFO at one priority (neither
# preempts the other, or itself, inside a program), up to 3 attempts in all. The
# preemption model is printed for the record.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
sched=""
for n in 1 2 3; do
  echo "GT-VM preempt $(cat /sys/kernel/debug/sched/preempt 2>/dev/null) ${sched:-default}"
  ${sched:+/bin/gt-workload fifo exec} /bin/groundtruth-agent record --out /tmp/net$n --service vm -- \
    /bin/gt-workload $sched tcp:127.0.0.1:1000:2500 tcp:__1:300:700 udp:127.0.0.1:100:200:3 unix:@gtvm:11:22 \
    > /dev/null 2> /tmp/net$n.err
  rc=$?
  echo "GT-VM-NET-BEGIN $n"
  echo "GT-VM net-exit $rc"
  sed 's/^/GT-VM net-stderr /' /tmp/net$n.err
  /bin/groundtruth events /tmp/net$n --format jsonl --no-verify 2>/dev/null
  echo "GT-VM-NET-END $n"
  grep -q "the kernel skipped" /tmp/net$n.err || break
  sched=fifo
done
poweroff -f
"#;

fn cache() -> PathBuf {
    root_dir().join("target/vm-cache")
}

/// apt with the private configuration.
fn apt(tool: &str) -> anyhow::Result<Command> {
    let dir = cache().join("apt");
    for d in [
        "lists/partial",
        "cache/archives/partial",
        "etc/preferences.d",
    ] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::write(dir.join("etc/sources.list"), SOURCES)?;
    std::fs::write(dir.join("etc/preferences.d/pin"), PIN)?;
    let conf = dir.join("apt.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "Dir::Etc::sourcelist \"{d}/etc/sources.list\";\n\
             Dir::Etc::sourceparts \"/nonexistent\";\n\
             Dir::Etc::preferencesparts \"{d}/etc/preferences.d\";\n\
             Dir::State::Lists \"{d}/lists\";\n\
             Dir::Cache \"{d}/cache\";\n\
             APT::Sandbox::User \"root\";\n"
        ),
    )?;
    let mut c = Command::new(tool);
    c.env("APT_CONFIG", conf)
        .env("DEBIAN_FRONTEND", "noninteractive");
    Ok(c)
}

fn apt_update_once() -> anyhow::Result<()> {
    let stamp = cache().join("apt/updated");
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() < 24 * 3600));
    if !fresh {
        run(apt("apt-get")?.args(["update", "-qq"]))?;
        std::fs::write(&stamp, "")?;
    }
    Ok(())
}

/// QEMU 10 from bookworm-backports (bookworm's 7.2 would remove qemu-utils 10) and a
/// static busybox for the initramfs.
fn host_tools() -> anyhow::Result<()> {
    setup::apt_install(&["busybox-static".into()])?;
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    apt_update_once()?;
    run(apt("apt-get")?.args([
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "-t",
        "bookworm-backports",
        "qemu-system-x86",
    ]))
}

/// The kernel image of `release` (downloaded once, only /boot extracted).
fn kernel_image(short: &str, release: &str) -> anyhow::Result<PathBuf> {
    let dir = cache().join("kernels").join(short);
    // /boot/vmlinuz-VERSION, or (7.x packages) /usr/lib/modules/VERSION/vmlinuz.
    let found = |dir: &Path| -> Option<PathBuf> {
        let boot = std::fs::read_dir(dir.join("boot")).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
        });
        boot.or_else(|| {
            std::fs::read_dir(dir.join("usr/lib/modules"))
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("vmlinuz")))
                .find(|p| p.exists())
        })
    };
    if let Some(k) = found(&dir) {
        return Ok(k);
    }
    apt_update_once()?;
    let deps = apt("apt-cache")?
        .args(["depends", "-t", release, "linux-image-amd64"])
        .output()?;
    let text = String::from_utf8_lossy(&deps.stdout);
    let pkg = text
        .split_whitespace()
        .find(|w| {
            w.starts_with("linux-image-") && w.ends_with("-amd64") && *w != "linux-image-amd64"
        })
        .with_context(|| format!("no linux-image package for {release}: {text}"))?
        .to_string();
    // Newer Debian kernels keep the image in a linux-binary-* package.
    let mut pkgs = vec![pkg.clone()];
    let deps = apt("apt-cache")?
        .args(["depends", "-t", release, &pkg])
        .output()?;
    pkgs.extend(
        String::from_utf8_lossy(&deps.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with("linux-binary-"))
            .map(str::to_string),
    );
    let debs = cache().join("debs");
    std::fs::create_dir_all(&debs)?;
    std::fs::create_dir_all(&dir)?;
    for p in &pkgs {
        run(apt("apt-get")?
            .args(["download", "-qq", "-t", release, p])
            .current_dir(&debs))?;
        let deb = std::fs::read_dir(&debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{p}_")))
            })
            .with_context(|| format!("{p} was not downloaded into {}", debs.display()))?;
        // Only the kernel image (a package without one extracts nothing).
        let script = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/*' './usr/lib/modules/*/vmlinuz' 2>/dev/null; true",
            deb.display(),
            dir.display()
        );
        run(Command::new("sh").args(["-c", &script]))?;
    }
    found(&dir).with_context(|| format!("no vmlinuz in {pkgs:?}"))
}

/// The shared libraries a binary needs (from ldd).
fn libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

fn initramfs(out: &Path) -> anyhow::Result<PathBuf> {
    let root = out.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "proc", "sys", "dev", "tmp", "work"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let busybox = Path::new("/bin/busybox");
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for a in [
        "sh", "mount", "mkdir", "cat", "echo", "poweroff", "ip", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a))?;
    }
    let release = root_dir().join("target/release");
    let mut libs = Vec::new();
    for b in ["groundtruth-agent", "groundtruth", "gt-workload"] {
        std::fs::copy(release.join(b), root.join("bin").join(b))?;
        libs.extend(libraries(&release.join(b))?);
    }
    libs.sort();
    libs.dedup();
    for l in libs {
        let dst = root.join(l.strip_prefix("/")?);
        std::fs::create_dir_all(dst.parent().unwrap())?;
        std::fs::copy(&l, &dst)?;
    }
    std::fs::write(root.join("init"), INIT)?;
    run(Command::new("chmod").arg("755").arg(root.join("init")))?;
    run(Command::new("mknod")
        .args(["-m", "600"])
        .arg(root.join("dev/console"))
        .args(["c", "5", "1"]))?;
    run(Command::new("mknod")
        .args(["-m", "666"])
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"]))?;
    let img = out.join("initramfs.cpio.gz");
    let script = format!(
        "cd '{}' && find . | busybox cpio -H newc -o 2>/dev/null | gzip -1 > '{}'",
        root.display(),
        img.display()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    Ok(img)
}

/// One kernel's console output, and what was checked in it.
struct Outcome {
    kernel: String,
    checks: Vec<(String, Result<(), String>)>,
    /// The program the verifier processed most instructions for, and how many.
    verifier: Option<(String, u64)>,
}

/// From the agent's `GT_VERIFIER_STATS` lines: the program closest to the verifier's
/// limit.
fn largest_verification(console: &str) -> Option<(String, u64)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("verifier processed ")?.1;
            let (n, prog) = rest.split_once(" instructions for ")?;
            Some((prog.trim().to_string(), n.parse().ok()?))
        })
        .max_by_key(|(_, n)| *n)
}

fn between<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let s = text.find(begin)? + begin.len();
    let e = s + text[s..].find(end)?;
    Some(&text[s..e])
}

fn value_after(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
}

/// The checks on a guest's console output.
fn check(console: &str) -> Vec<(String, Result<(), String>)> {
    let mut checks = Vec::new();
    let mut c = |name: &str, r: Result<(), String>| checks.push((name.to_string(), r));
    let agent = value_after(console, "GT-VM agent-exit ");
    let stderr = between(console, "GT-VM-STDERR-BEGIN", "GT-VM-STDERR-END").unwrap_or("");
    c(
        "the agent loads, records and exits 0",
        match agent.as_deref() {
            Some("0") => Ok(()),
            Some(code) => {
                // The agent's error line, and the verifier's own reason: the log line
                // just before its "verification time" summary.
                let lines: Vec<&str> = stderr.lines().collect();
                let error = lines
                    .iter()
                    .find(|l| l.contains("error"))
                    .copied()
                    .unwrap_or("");
                let reason = lines
                    .iter()
                    .position(|l| l.starts_with("verification time"))
                    .and_then(|i| i.checked_sub(1))
                    .map(|i| lines[i])
                    .filter(|r| !error.contains(r))
                    .map(|r| format!(" [verifier: {r}]"))
                    .unwrap_or_default();
                Err(format!(
                    "exit {code}: {}{reason}",
                    error.chars().take(300).collect::<String>()
                ))
            }
            None => Err("no exit status on the console (the guest did not get that far)".into()),
        },
    );
    let events: Vec<serde_json::Value> = between(console, "GT-VM-EVENTS-BEGIN", "GT-VM-EVENTS-END")
        .unwrap_or("")
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect();
    let find = |activity: &str, path: &str| {
        events
            .iter()
            .filter(|e| e["activity_name"] == activity && e["file"]["path"] == path)
            .cloned()
            .collect::<Vec<_>>()
    };
    let one_close = |path: &str, bytes: u64| -> Result<(), String> {
        let v = find("Close", path);
        match v.as_slice() {
            [e] if e["groundtruth"]["bytes_written"] == bytes => Ok(()),
            [e] => Err(format!("wrote {} bytes", e["groundtruth"]["bytes_written"])),
            v => Err(format!("{} Close events of {path}", v.len())),
        }
    };
    c(
        "create + write: 123 bytes closed on /work/a.txt",
        one_close("/work/a.txt", 123),
    );
    c(
        "relative path after chdir: /work/rel.txt, 7 bytes",
        one_close("/work/rel.txt", 7),
    );
    c(
        "openat with a directory descriptor: /work/other/n.txt, 5 bytes",
        one_close("/work/other/n.txt", 5),
    );
    c(
        "rename /work/a.txt -> /work/b.txt",
        match find("Rename", "/work/a.txt").as_slice() {
            [e] if e["file_result"]["path"] == "/work/b.txt" => Ok(()),
            v => Err(format!("{} Rename events", v.len())),
        },
    );
    c(
        "unlink /work/b.txt",
        match find("Delete", "/work/b.txt").len() {
            1 => Ok(()),
            n => Err(format!("{n} Delete events")),
        },
    );
    c(
        "exec chain: sh, then gt-workload",
        if events.iter().any(|e| {
            e["activity_name"] == "Launch"
                && e["process"]["exe"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/gt-workload"))
        }) {
            Ok(())
        } else {
            Err("no Launch of gt-workload".into())
        },
    );
    c(
        "the sealed trail verifies",
        match value_after(console, "GT-VM verify-exit ").as_deref() {
            Some("0") => Ok(()),
            other => Err(format!("verify exit {other:?}")),
        },
    );
    checks.extend(network_checks(console));
    checks
}

/// The network recording's checks, on the first attempt whose agent reported no
/// skipped program runs; and that no attempt lost events silently.
fn network_checks(console: &str) -> Vec<(String, Result<(), String>)> {
    let mut attempts = Vec::new();
    let mut rest = console;
    while let Some(body) = between(rest, "GT-VM-NET-BEGIN ", "GT-VM-NET-END ") {
        let skipped = body.lines().any(|l| l.contains("the kernel skipped"));
        let exit = value_after(body, "GT-VM net-exit ");
        let events: Vec<serde_json::Value> = body
            .lines()
            .filter_map(|l| serde_json::from_str(l.trim()).ok())
            .collect();
        let checks = net_checks(&events);
        attempts.push((skipped, exit, checks));
        rest = &rest[rest.find("GT-VM-NET-END ").map_or(rest.len(), |i| i + 1)..];
    }
    let mut out = Vec::new();
    let mut c = |name: &str, r: Result<(), String>| out.push((name.to_string(), r));
    if attempts.is_empty() {
        c(
            "network workload recorded",
            Err("no network attempt on the console".into()),
        );
        return out;
    }
    let n = attempts.len();
    let silent: Vec<usize> = attempts
        .iter()
        .enumerate()
        .filter(|(_, (skipped, _, checks))| !skipped && checks.iter().any(|(_, r)| r.is_err()))
        .map(|(i, _)| i + 1)
        .collect();
    let clean = attempts.iter().position(|(skipped, _, _)| !skipped);
    c(
        "network: an attempt without kernel-skipped program runs (at most 3)",
        match clean {
            Some(_) => Ok(()),
            None => Err(format!("all {n} attempts reported skipped runs")),
        },
    );
    c(
        "network: every attempt that missed events reported the kernel's skipped runs",
        if silent.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "attempt(s) {silent:?} missed events and reported nothing"
            ))
        },
    );
    let (_, exit, checks) = attempts.swap_remove(clean.unwrap_or(n - 1));
    c(
        "network: the agent records and exits 0",
        match exit.as_deref() {
            Some("0") => Ok(()),
            other => Err(format!("exit {other:?}")),
        },
    );
    out.extend(checks);
    out
}

/// TCP over IPv4 and IPv6, UDP and a unix socket, as `gt-workload` ran them.
fn net_checks(events: &[serde_json::Value]) -> Vec<(String, Result<(), String>)> {
    let mut checks = Vec::new();
    let mut c = |name: &str, r: Result<(), String>| checks.push((name.to_string(), r));
    let net = |proto: &str, activity: &str| {
        events
            .iter()
            .filter(|e| {
                e["class_uid"] == 4001
                    && e["activity_name"] == activity
                    && e["network"]["protocol_name"] == proto
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    for (ip, out, inn) in [("127.0.0.1", 1000, 2500), ("::1", 300, 700)] {
        c(
            &format!("TCP over {ip}: both ends' Open, {out} bytes out and {inn} back at Close"),
            {
                let opens = net("tcp", "Open")
                    .into_iter()
                    .filter(|e| e["network"]["dst"]["ip"] == ip)
                    .count();
                let closes = net("tcp", "Close")
                    .into_iter()
                    .filter(|e| {
                        e["network"]["dst"]["ip"] == ip
                            && e["network"]["bytes_out"] == out
                            && e["network"]["bytes_in"] == inn
                    })
                    .count();
                if opens == 2 && closes >= 1 {
                    Ok(())
                } else {
                    Err(format!("{opens} Opens, {closes} Closes with those bytes"))
                }
            },
        );
    }
    c(
        "UDP over 127.0.0.1: the client's flow, 4 datagrams and 400 bytes out, 800 back",
        if net("udp", "Traffic").iter().any(|e| {
            let n = &e["network"];
            n["dst"]["ip"] == "127.0.0.1"
                && n["direction_id"] == 2
                && n["packets_out"] == 4
                && n["bytes_out"] == 400
                && n["bytes_in"] == 800
        }) {
            Ok(())
        } else {
            Err(format!(
                "{} udp Traffic rows, none with those counts",
                net("udp", "Traffic").len()
            ))
        },
    );
    c(
        "unix socket @gtvm: both ends' Open",
        match net("unix", "Open")
            .iter()
            .filter(|e| e["groundtruth"]["socket_path"] == "@gtvm")
            .count()
        {
            2 => Ok(()),
            n => Err(format!("{n} unix Opens on @gtvm")),
        },
    );
    checks
}

pub fn vm_test(args: &[String]) -> anyhow::Result<()> {
    let mut wanted: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => wanted.push(it.next().context("--kernel VERSION")?.clone()),
            other => bail!(
                "unknown vm-test option `{other}` (--kernel VERSION, repeatable: {})",
                KERNELS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    if wanted.is_empty() {
        wanted = vec!["6.1".into(), "6.12".into(), "7.3".into()];
    }
    if !crate::is_root() {
        bail!("vm-test installs QEMU and downloads kernels: run it as root");
    }
    setup::setup()?;
    host_tools()?;
    run(cargo().args(["build", "--release", "-p", "agent", "-p", "analysis"]))?;
    let out = cache().join("run");
    std::fs::create_dir_all(&out)?;
    let img = initramfs(&out)?;
    let mut outcomes = Vec::new();
    for k in &wanted {
        let Some(&(short, release)) = KERNELS.iter().find(|x| x.0 == k) else {
            bail!(
                "unknown kernel `{k}` (known: {})",
                KERNELS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
            );
        };
        let vmlinuz = kernel_image(short, release)?;
        eprintln!(
            "xtask: booting {} in QEMU (TCG; about a minute)",
            vmlinuz.display()
        );
        let log = out.join(format!("console-{short}.log"));
        let status = Command::new("timeout")
            .arg("900")
            .arg("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-m", "1G", "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-kernel"])
            .arg(&vmlinuz)
            .arg("-initrd")
            .arg(&img)
            .args(["-append", "console=ttyS0 panic=-1 quiet"])
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::process::Stdio::null())
            .status()?;
        let console = String::from_utf8_lossy(&std::fs::read(&log)?).into_owned();
        let mut checks = check(&console);
        if !status.success() {
            checks.push(("QEMU exits cleanly".into(), Err(format!("{status}"))));
        }
        outcomes.push(Outcome {
            kernel: value_after(&console, "GT-VM kernel ").unwrap_or_else(|| short.to_string()),
            checks,
            verifier: largest_verification(&console),
        });
    }
    let mut failed = 0;
    for o in &outcomes {
        println!("\n== kernel {} ==", o.kernel);
        if let Some((prog, n)) = &o.verifier {
            println!(
                "  info  largest verification: {prog}, {n} of the verifier's 1000000 instructions"
            );
        }
        for (name, r) in &o.checks {
            match r {
                Ok(()) => println!("  pass  {name}"),
                Err(e) => {
                    failed += 1;
                    println!("  FAIL  {name}: {e}");
                }
            }
        }
    }
    println!("\nconsole logs in {}", out.display());
    if failed > 0 {
        bail!("{failed} checks failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_a_console() {
        let ok = r#"GT-VM kernel 6.18.0
GT-VM agent-exit 0
GT-VM-STDERR-BEGIN
GT-VM-STDERR-END
GT-VM-EVENTS-BEGIN
{"activity_name":"Close","file":{"path":"/work/a.txt"},"groundtruth":{"bytes_written":123}}
{"activity_name":"Close","file":{"path":"/work/rel.txt"},"groundtruth":{"bytes_written":7}}
{"activity_name":"Close","file":{"path":"/work/other/n.txt"},"groundtruth":{"bytes_written":5}}
{"activity_name":"Rename","file":{"path":"/work/a.txt"},"file_result":{"path":"/work/b.txt"}}
{"activity_name":"Delete","file":{"path":"/work/b.txt"}}
{"activity_name":"Launch","process":{"exe":"/bin/gt-workload"}}
GT-VM-EVENTS-END
GT-VM verify-exit 0
GT-VM-NET-BEGIN 1
GT-VM net-exit 0
{"class_uid":4001,"activity_name":"Open","network":{"protocol_name":"tcp","dst":{"ip":"127.0.0.1"}}}
{"class_uid":4001,"activity_name":"Open","network":{"protocol_name":"tcp","dst":{"ip":"127.0.0.1"}}}
{"class_uid":4001,"activity_name":"Close","network":{"protocol_name":"tcp","dst":{"ip":"127.0.0.1"},"bytes_out":1000,"bytes_in":2500}}
{"class_uid":4001,"activity_name":"Open","network":{"protocol_name":"tcp","dst":{"ip":"::1"}}}
{"class_uid":4001,"activity_name":"Open","network":{"protocol_name":"tcp","dst":{"ip":"::1"}}}
{"class_uid":4001,"activity_name":"Close","network":{"protocol_name":"tcp","dst":{"ip":"::1"},"bytes_out":300,"bytes_in":700}}
{"class_uid":4001,"activity_name":"Traffic","network":{"protocol_name":"udp","dst":{"ip":"127.0.0.1"},"direction_id":2,"packets_out":4,"bytes_out":400,"bytes_in":800}}
{"class_uid":4001,"activity_name":"Open","network":{"protocol_name":"unix"},"groundtruth":{"socket_path":"@gtvm"}}
{"class_uid":4001,"activity_name":"Open","network":{"protocol_name":"unix"},"groundtruth":{"socket_path":"@gtvm"}}
GT-VM-NET-END 1
"#;
        let c = check(ok);
        assert!(c.iter().all(|(_, r)| r.is_ok()), "{:?}", c);
        assert!(c.iter().any(|(n, _)| n.starts_with("UDP")), "{:?}", c);
        // An attempt that lost its unix Opens and said so, then a complete one: passes.
        let (head, net) = ok.split_once("GT-VM-NET-BEGIN 1\n").unwrap();
        let lossy: String = net
            .lines()
            .filter(|l| !l.contains("@gtvm"))
            .map(|l| format!("{l}\n"))
            .collect();
        let warned = lossy.replacen(
            "GT-VM net-exit 0\n",
            "GT-VM net-exit 0\nGT-VM net-stderr groundtruth-agent: warning: the kernel skipped 1 run(s) of sys_exit\n",
            1,
        );
        let retried = format!(
            "{head}GT-VM-NET-BEGIN 1\n{warned}GT-VM-NET-BEGIN 2\n{}",
            net.replace("GT-VM-NET-END 1", "GT-VM-NET-END 2")
        );
        let c = check(&retried);
        assert!(c.iter().all(|(_, r)| r.is_ok()), "{:?}", c);
        // The same loss without the agent saying so fails, and names the attempt.
        let c = check(&format!("{head}GT-VM-NET-BEGIN 1\n{lossy}"));
        let failed: Vec<_> = c.iter().filter(|(_, r)| r.is_err()).collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(
            failed[0].1.as_ref().unwrap_err().contains("[1]"),
            "{failed:?}"
        );
        assert!(failed[1].0.starts_with("unix"), "{failed:?}");
        let refused = "GT-VM kernel 6.12\nGT-VM agent-exit 125\nGT-VM-STDERR-BEGIN\n\
                       groundtruth-agent: error: verifier rejected sys_exit: E2BIG\n\
                       BPF program is too large. Processed 1000001 insn\n\
                       verification time 27765039 usec\n\
                       GT-VM-STDERR-END\nGT-VM-EVENTS-BEGIN\nGT-VM-EVENTS-END\nGT-VM verify-exit 1\n";
        let c = check(refused);
        let e = c[0].1.as_ref().unwrap_err();
        assert!(e.contains("verifier rejected sys_exit"), "{e}");
        assert!(e.contains("[verifier: BPF program is too large."), "{e}");
        assert_eq!(c.iter().filter(|(_, r)| r.is_err()).count(), c.len());
    }
}
