//! Which processes are recorded, under which service label: `--service NAME` for the
//! launched command, `--service NAME=SELECTOR` for services selected by cgroup, pid,
//! executable or process name.
//!
//! Selectors are resolved here into kernel map entries. Existing processes (in a
//! cgroup, a pid and its descendants) are added to the tracking map at start; from then
//! on the kernel follows forks, execs of a selected executable or name, and migrations
//! into a selected cgroup. Nothing is filtered per syscall in userspace.

use agent_common::{ExeKey, COMM_LEN};
use anyhow::{bail, Context as _};
use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A cgroup v2 directory (absolute, or relative to the cgroup2 mount) and its
    /// descendants.
    Cgroup(PathBuf),
    /// An existing process and its descendants, present and future.
    Pid(u32),
    /// Any process that execs this file from now on.
    Exe(PathBuf),
    /// Any process that execs with this name (`comm`, at most 15 bytes) from now on.
    Comm(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceArg {
    /// `--service NAME`: the label of the launched command.
    Label(String),
    /// `--service NAME=KIND:VALUE`.
    Select { name: String, selector: Selector },
}

pub const SELECTOR_HELP: &str =
    "NAME labels the launched command; NAME=cgroup:PATH, NAME=pid:PID, NAME=exe:PATH or NAME=comm:NAME select a service";

/// Parse one `--service` value.
pub fn parse_service(s: &str) -> Result<ServiceArg, String> {
    let Some((name, sel)) = s.split_once('=') else {
        if s.is_empty() {
            return Err("empty service name".into());
        }
        return Ok(ServiceArg::Label(s.to_string()));
    };
    if name.is_empty() {
        return Err(format!("`{s}`: the service name before `=` is empty"));
    }
    let (kind, value) = sel.split_once(':').ok_or_else(|| {
        format!("`{s}`: expected NAME=KIND:VALUE with KIND cgroup, pid, exe or comm")
    })?;
    if value.is_empty() {
        return Err(format!("`{s}`: nothing after `{kind}:`"));
    }
    let selector = match kind {
        "cgroup" => Selector::Cgroup(value.into()),
        "pid" => Selector::Pid(
            value
                .parse()
                .map_err(|_| format!("`{s}`: `{value}` is not a process id"))?,
        ),
        "exe" => Selector::Exe(value.into()),
        "comm" => {
            if value.len() >= COMM_LEN {
                return Err(format!(
                    "`{s}`: process names are at most {} bytes (the kernel's comm)",
                    COMM_LEN - 1
                ));
            }
            Selector::Comm(value.into())
        }
        other => {
            return Err(format!(
                "`{s}`: unknown selector `{other}` (cgroup, pid, exe or comm)"
            ))
        }
    };
    Ok(ServiceArg::Select {
        name: name.to_string(),
        selector,
    })
}

/// Map entries for the kernel, and what to tell the user.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Existing processes to track now: pid -> service index.
    pub pids: BTreeMap<u32, u32>,
    pub cgroups: Vec<(u64, u32)>,
    pub exes: Vec<(ExeKey, u32)>,
    pub comms: Vec<([u8; COMM_LEN], u32)>,
    /// One line per selector, for the start-up report.
    pub report: Vec<String>,
}

/// Whether process `pid` has exited: it is gone from /proc, or it is a zombie (its
/// exit is over, only its parent's wait is left) with no other thread still running.
pub fn exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the name, which is in parentheses and may hold any byte.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    match state {
        Some('Z' | 'X') => {
            std::fs::read_dir(format!("/proc/{pid}/task")).map_or(true, |d| d.count() <= 1)
        }
        _ => false,
    }
}

/// The cgroup v2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    info.lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .context("no cgroup v2 filesystem is mounted (cgroup: selectors need one)")
}

/// Kernel encoding of a device number (`MKDEV`), as `super_block.s_dev` holds it.
pub fn kernel_dev(dev: u64) -> u64 {
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    (major << 20) | minor
}

/// Parent pid of every process, from /proc.
fn parents() -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may contain spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            out.insert(pid, ppid);
        }
    }
    out
}

fn descendants(root: u32, parents: &BTreeMap<u32, u32>) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = [root].into();
    loop {
        let before = set.len();
        for (pid, ppid) in parents {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Resolve selectors; `services` gets each new service name, and selector entries
/// refer to their index in it.
pub fn resolve(
    args: &[(String, Selector)],
    services: &mut Vec<String>,
) -> anyhow::Result<Resolved> {
    let mut r = Resolved::default();
    let mut parents_cache = None;
    for (name, sel) in args {
        let idx = match services.iter().position(|s| s == name) {
            Some(i) => i,
            None => {
                services.push(name.clone());
                services.len() - 1
            }
        } as u32;
        match sel {
            Selector::Pid(pid) => {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    bail!("service `{name}`: pid:{pid}: no such process");
                }
                let parents = parents_cache.get_or_insert_with(parents);
                let set = descendants(*pid, parents);
                r.report.push(format!(
                    "service `{name}`: pid {pid} and its descendants ({} processes now)",
                    set.len()
                ));
                for p in set {
                    r.pids.insert(p, idx);
                }
            }
            Selector::Cgroup(path) => {
                let mount = cgroup2_mount()?;
                let dir = if path.starts_with(&mount) {
                    path.clone()
                } else {
                    mount.join(path.strip_prefix("/").unwrap_or(path))
                };
                let md = std::fs::metadata(&dir).with_context(|| {
                    format!(
                        "service `{name}`: cgroup {}: not a cgroup v2 directory (cgroup v2 is mounted at {})",
                        dir.display(),
                        mount.display()
                    )
                })?;
                if !md.is_dir() || !dir.join("cgroup.procs").exists() {
                    bail!(
                        "service `{name}`: {} is not a cgroup v2 directory (no cgroup.procs)",
                        dir.display()
                    );
                }
                // The cgroup v2 id is the inode number of its directory.
                r.cgroups.push((md.ino(), idx));
                let mut n = 0;
                let mut stack = vec![dir.clone()];
                while let Some(d) = stack.pop() {
                    if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                        for p in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                            r.pids.insert(p, idx);
                            n += 1;
                        }
                    }
                    if let Ok(rd) = std::fs::read_dir(&d) {
                        stack.extend(
                            rd.flatten()
                                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                                .map(|e| e.path()),
                        );
                    }
                }
                r.report.push(format!(
                    "service `{name}`: cgroup {} (id {}) and its descendants ({n} processes now)",
                    dir.display(),
                    md.ino()
                ));
            }
            Selector::Exe(path) => {
                let real = std::fs::canonicalize(path)
                    .with_context(|| format!("service `{name}`: exe:{}", path.display()))?;
                let md = std::fs::metadata(&real)?;
                r.exes.push((
                    ExeKey {
                        dev: kernel_dev(md.dev()),
                        ino: md.ino(),
                    },
                    idx,
                ));
                r.report.push(format!(
                    "service `{name}`: processes that exec {} from now on",
                    real.display()
                ));
            }
            Selector::Comm(comm) => {
                let mut key = [0u8; COMM_LEN];
                key[..comm.len()].copy_from_slice(comm.as_bytes());
                r.comms.push((key, idx));
                r.report.push(format!(
                    "service `{name}`: processes that exec with the name `{comm}` from now on"
                ));
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_arguments_parse_with_clear_errors() {
        assert_eq!(parse_service("web"), Ok(ServiceArg::Label("web".into())));
        assert_eq!(
            parse_service("db=pid:42"),
            Ok(ServiceArg::Select {
                name: "db".into(),
                selector: Selector::Pid(42)
            })
        );
        assert_eq!(
            parse_service("api=cgroup:system.slice/api.service"),
            Ok(ServiceArg::Select {
                name: "api".into(),
                selector: Selector::Cgroup("system.slice/api.service".into())
            })
        );
        assert!(parse_service("x=pid:abc")
            .unwrap_err()
            .contains("not a process id"));
        assert!(parse_service("x=port:80")
            .unwrap_err()
            .contains("unknown selector"));
        assert!(parse_service("=pid:1").unwrap_err().contains("empty"));
        assert!(parse_service("x=comm:averyveryverylongname")
            .unwrap_err()
            .contains("15"));
        assert!(parse_service("x=exe").unwrap_err().contains("KIND:VALUE"));
    }

    #[test]
    fn pid_selector_takes_existing_descendants() {
        let parents: BTreeMap<u32, u32> = [(10, 1), (11, 10), (12, 11), (13, 1)].into();
        assert_eq!(descendants(10, &parents), [10, 11, 12].into());
    }

    #[test]
    fn exited_is_true_for_zombies_and_reaped_processes_only() {
        assert!(!exited(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it has run (polled, not slept for).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !exited(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "pid {pid} never exited"
            );
            std::thread::yield_now();
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(stat.contains(") Z "), "{stat}");
        child.wait().unwrap();
        assert!(exited(pid));
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(!exited(sleeper.id()));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn own_pid_resolves_with_its_descendants() {
        let mut services = vec!["cmd".to_string()];
        let me = std::process::id();
        let r = resolve(&[("me".into(), Selector::Pid(me))], &mut services).unwrap();
        assert_eq!(services, ["cmd", "me"]);
        assert_eq!(r.pids.get(&me), Some(&1));
        let err = resolve(&[("x".into(), Selector::Pid(u32::MAX - 1))], &mut services)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such process"), "{err}");
    }
}
