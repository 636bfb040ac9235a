//! Launching the command under test so that it is tracked from its first instruction.
//!
//! The agent forks; the child blocks on a pipe until the agent has put its pid into the
//! kernel's tracking map, then drops privileges and execs. So the exec itself and
//! everything after it is seen. `std::process::Command` cannot do this: its `spawn`
//! waits for the exec to happen.

use anyhow::{bail, Context as _};
use std::{
    ffi::{CString, OsStr, OsString},
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::{Path, PathBuf},
};

/// The command could not be started (not found, not executable, could not drop
/// privileges): the agent exits 127, like a shell.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CannotStart(pub String);

/// Who the command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Where the choice came from, for the start-up message.
    pub source: &'static str,
}

/// `--user USER` (name or number), else the user who ran sudo, else the agent's own.
pub fn resolve_user(user: Option<&str>) -> anyhow::Result<RunAs> {
    if let Some(u) = user {
        if let Ok(uid) = u.parse::<u32>() {
            // SAFETY: getpwuid returns a pointer into static storage or null.
            let pw = unsafe { libc::getpwuid(uid) };
            let gid = if pw.is_null() {
                uid
            } else {
                unsafe { (*pw).pw_gid }
            };
            return Ok(RunAs {
                uid,
                gid,
                source: "--user",
            });
        }
        let name = CString::new(u).context("--user contains a NUL byte")?;
        // SAFETY: valid C string; result read immediately.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            bail!("--user {u}: no such user");
        }
        // SAFETY: non-null passwd entry.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        return Ok(RunAs {
            uid,
            gid,
            source: "--user",
        });
    }
    let env_id = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (env_id("SUDO_UID"), env_id("SUDO_GID")) {
        return Ok(RunAs {
            uid,
            gid,
            source: "SUDO_UID/SUDO_GID (the user who ran sudo)",
        });
    }
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    Ok(RunAs {
        uid,
        gid,
        source: "the agent's own user",
    })
}

/// Find `cmd` the way a shell would (PATH search unless it contains a slash).
pub fn find_program(cmd: &OsStr) -> anyhow::Result<PathBuf> {
    let p = Path::new(cmd);
    if cmd.as_bytes().contains(&b'/') {
        if p.exists() {
            return Ok(p.to_path_buf());
        }
        return Err(CannotStart(format!("{}: no such file", p.display())).into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(p);
        if let Ok(md) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(CannotStart(format!("{}: command not found in PATH", p.display())).into())
}

/// A forked child waiting for the go signal.
pub struct Pending {
    pub pid: i32,
    go_w: i32,
    err_r: i32,
}

impl Pending {
    /// Whether the command starts with a socket descriptor (one without close-on-exec,
    /// inherited from the agent's own caller): then the kernel programs must find out
    /// which kind of socket each of its sends and receives goes through
    /// (`agent_common::tracked::SOCKETS`). Unreadable /proc counts as yes.
    pub fn inherits_socket(&self) -> bool {
        inherits_socket(self.pid)
    }
}

/// See [`Pending::inherits_socket`].
fn inherits_socket(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    for entry in dir {
        let Ok(entry) = entry else {
            return true;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            // Closed since the listing.
            continue;
        };
        if !target.as_os_str().as_bytes().starts_with(b"socket:") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ));
        let cloexec = info
            .ok()
            .and_then(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| u64::from_str_radix(f.trim(), 8).ok())
            })
            .is_some_and(|f| f & libc::O_CLOEXEC as u64 != 0);
        if !cloexec {
            return true;
        }
    }
    false
}

fn cstr(s: OsString) -> anyhow::Result<CString> {
    CString::new(s.into_vec()).context("argument contains a NUL byte")
}

/// Fork a child that will exec `program` with `args` as `run_as` once released.
pub fn fork_waiting(program: &Path, args: &[OsString], run_as: &RunAs) -> anyhow::Result<Pending> {
    let prog = cstr(program.as_os_str().to_owned())?;
    let argv: Vec<CString> = args
        .iter()
        .cloned()
        .map(cstr)
        .collect::<anyhow::Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).context("environment contains a NUL byte")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());

    let mut go = [0i32; 2];
    let mut err = [0i32; 2];
    // SAFETY: pipe2 fills the arrays.
    unsafe {
        if libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) != 0
            || libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC) != 0
        {
            bail!("pipe2: {}", std::io::Error::last_os_error());
        }
    }
    let (uid, gid) = (run_as.uid, run_as.gid);
    // SAFETY: the child only calls async-signal-safe functions (read, write, setgroups,
    // setgid, setuid, execve, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        unsafe {
            libc::close(go[1]);
            libc::close(err[0]);
            let mut b = 0u8;
            let fail = |stage: u8| -> ! {
                let e = *libc::__errno_location();
                let msg = [stage, e as u8, (e >> 8) as u8, 0];
                libc::write(err[1], msg.as_ptr() as *const _, 4);
                libc::_exit(127)
            };
            if libc::read(go[0], &mut b as *mut u8 as *mut _, 1) != 1 {
                libc::_exit(127);
            }
            if libc::getuid() == 0 && (uid != 0 || gid != 0) {
                if libc::setgroups(0, std::ptr::null()) != 0 {
                    fail(1);
                }
                if libc::setgid(gid) != 0 {
                    fail(2);
                }
                if libc::setuid(uid) != 0 {
                    fail(3);
                }
            }
            libc::execve(prog.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            fail(4);
        }
    }
    // SAFETY: closing our copies of the child's ends.
    unsafe {
        libc::close(go[0]);
        libc::close(err[1]);
    }
    Ok(Pending {
        pid,
        go_w: go[1],
        err_r: err[0],
    })
}

impl Pending {
    /// Let the child go; returns an error if it could not exec.
    pub fn release(self) -> anyhow::Result<i32> {
        // SAFETY: our pipe ends, valid until closed here.
        unsafe {
            let b = 1u8;
            libc::write(self.go_w, &b as *const u8 as *const _, 1);
            libc::close(self.go_w);
            let mut msg = [0u8; 4];
            let n = libc::read(self.err_r, msg.as_mut_ptr() as *mut _, 4);
            libc::close(self.err_r);
            if n == 4 {
                let errno = msg[1] as i32 | (msg[2] as i32) << 8;
                let stage = match msg[0] {
                    1 => "setgroups",
                    2 => "setgid",
                    3 => "setuid",
                    _ => "execve",
                };
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
                return Err(CannotStart(format!(
                    "{stage} failed in the child: {}",
                    std::io::Error::from_raw_os_error(errno)
                ))
                .into());
            }
        }
        Ok(self.pid)
    }

    /// Kill the child before it ran anything (start-up failed after the fork).
    pub fn abort(self) {
        // SAFETY: our child and our pipe ends.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
            libc::close(self.go_w);
            libc::close(self.err_r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::inherits_socket;
    use std::os::{fd::AsRawFd, unix::process::CommandExt};

    /// `sleep` with only the descriptors 0-2 (null) and, when given, `sock` as 3.
    fn child_with(sock: Option<i32>, cloexec: bool) -> std::process::Child {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(s) = sock {
                    if libc::dup2(s, 3) != 3 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Explicitly: dup2 onto itself keeps the flag.
                    let flags = if cloexec { libc::FD_CLOEXEC } else { 0 };
                    libc::fcntl(3, libc::F_SETFD, flags);
                }
                // Whatever else the test process holds (a CI runner's sockets).
                let first = if sock.is_some() { 4 } else { 3 };
                libc::syscall(libc::SYS_close_range, first, u32::MAX, 0);
                Ok(())
            })
        };
        cmd.spawn().expect("spawn sleep")
    }

    #[test]
    fn a_socket_without_cloexec_is_inherited() {
        let sock = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        let cases = [
            (None, false, false),
            (Some(sock.as_raw_fd()), false, true),
            (Some(sock.as_raw_fd()), true, false),
        ];
        for (fd, cloexec, expected) in cases {
            let mut child = child_with(fd, cloexec);
            // The child runs `sleep` once /proc shows its new executable; before that
            // it may still hold the descriptors of the fork.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_link(format!("/proc/{}/exe", child.id()))
                .map_or(true, |e| !e.to_string_lossy().ends_with("/sleep"))
            {
                assert!(std::time::Instant::now() < deadline, "sleep did not start");
                std::thread::yield_now();
            }
            let got = inherits_socket(child.id() as i32);
            let _ = child.kill();
            let _ = child.wait();
            assert_eq!(got, expected, "socket {fd:?} cloexec {cloexec}");
        }
    }
}
