//! gt-workload: performs an exact, scripted sequence of file and process operations.
//! Used by groundtruth's privileged tests, the demo and the benchmark, so that what the
//! kernel should have seen is known syscall by syscall.
//!
//! Each argument is one operation, `op:arg:arg`:
//!   write:PATH:N        open(O_CREAT|O_WRONLY|O_TRUNC), write N bytes, close
//!   read:PATH           open, read to the end, close
//!   chdir:DIR           change directory
//!   fifo                run this process (and the children it forks afterwards) under
//!                       SCHED_FIFO priority 10: no fair-class task preempts it in the
//!                       kernel (the kernel matrix uses it, docs/kernels.md)
//!   openat:DIR:NAME:N   open DIR, openat(dirfd, NAME, create), write N bytes, close both
//!   rename:A:B  unlink:P  mkdir:P  rmdir:P
//!   missing:P           open a path that must not exist (fails with ENOENT)
//!   daemon:MS:PATH      double fork; the grandchild waits MS ms, then writes PATH (1 byte)
//!   loop:N              N times: write f.tmp (64 B), rename to g.tmp, unlink g.tmp;
//!                       prints `loop: N iterations in T ns` (the benchmark reads it)
//!   dup:PATH:N:FD       open PATH (create), dup2 it to FD, close the original, write N
//!                       bytes to FD, then dup2 /dev/null over FD, write 5 bytes, close FD
//!   inherit:PATH:N      open PATH (create), fork; the child writes N bytes to the
//!                       inherited descriptor and exits without closing it; the parent
//!                       waits and closes its descriptor
//!   tcp:ADDR:N:M        listen on ADDR (127.0.0.1 or ::1) port 0, fork a server child
//!                       that accepts one connection, reads N bytes, writes M bytes and
//!                       closes; the parent connects, writes N, reads M, closes, waits
//!   refused:ADDR        connect to a port nothing listens on (expects ECONNREFUSED)
//!   udp:ADDR:N:M:K[:MS] two UDP sockets on ADDR: the client sends K datagrams of N
//!                       bytes with sendto, the server answers each with M bytes; then
//!                       (after MS ms) the client connects and does one write of N,
//!                       one read of M
//!   unix:PATH:N:M       listen on a unix stream socket at PATH (`@name`: abstract), fork
//!                       a server child that accepts, reads N bytes, writes M bytes and
//!                       exits without closing; the parent connects, writes N, reads M,
//!                       closes, waits
//!   serve:ADDR:FILE:N:M listen on ADDR port 0, write the port to FILE, accept one
//!                       connection, read N bytes, write M bytes, close
//!   connect:ADDR:FILE:N:M  wait (up to 10 s) for FILE, connect to ADDR at that port,
//!                       write N bytes, read M bytes, close
//!   nbtcp:ADDR:N:M      as tcp, with a non-blocking connect (std's connect_timeout)
//!   nbrefused:ADDR      a non-blocking connect to a port nothing listens on
//!   reset:ADDR          the server child accepts and closes with SO_LINGER 0 (a reset);
//!                       the client reads and expects ECONNRESET or end of stream
//!   unreachable         a connect to [2001:db8::1]:9 (the documentation prefix) with one
//!                       SYN retry: fails with ETIMEDOUT, ENETUNREACH or EHOSTUNREACH
//!   tcploop:N           N short loopback TCP connections (connect, send 100 B, receive
//!                       100 B, close) to a server thread; prints `tcploop: N
//!                       connections in T ns`
//!   bulk:MIB            one loopback TCP connection carrying MIB MiB to a server
//!                       thread; prints `bulk: B bytes in T ns`
//!   sendfd:FD:ADDR:PORT:N:K  send K datagrams of N bytes with sendto on the inherited
//!                       UDP socket FD to ADDR:PORT (the socket stays open)
//!   clonefiles:ADDR:PORT:N:K  clone a child that shares this process's descriptor
//!                       table (CLONE_FILES, not a thread); the child creates a UDP
//!                       socket and exits with its descriptor number; this process then
//!                       sends K datagrams of N bytes with sendto on it to ADDR:PORT
//!   waitfor:PATH        wait (up to 60 s) until PATH exists
//!   exec CMD [ARGS...]  replace this process with CMD (the arguments after `exec` are
//!                       CMD's, not operations); `fifo exec CMD` runs CMD under SCHED_FIFO
//!   sleep:MS
use std::{
    ffi::CString,
    io::{Read, Write},
    os::unix::ffi::OsStrExt,
    path::Path,
};

fn cs(p: &str) -> CString {
    CString::new(Path::new(p).as_os_str().as_bytes()).expect("no NUL in paths")
}

fn write_file(path: &str, n: usize) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&vec![b'x'; n])?;
    Ok(())
}

/// Fork a child that runs `f` and exits, 0 if it succeeded, without running the
/// parent's destructors. Called while the program is single-threaded.
fn fork_child(f: impl FnOnce() -> std::io::Result<()>) -> libc::pid_t {
    // SAFETY: fork in a single-threaded program; the child only runs `f` and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = f().is_ok();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

/// Wait for a child of [`fork_child`].
fn wait_child(pid: libc::pid_t, op: &str) -> Result<(), String> {
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if st != 0 {
        return Err(format!("{op}: the server child failed ({st})"));
    }
    Ok(())
}

/// `k` datagrams of `n` bytes with sendto on the UDP socket `fd`, which stays open.
fn send_datagrams(fd: i32, to: std::net::SocketAddr, n: usize, k: usize) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `fd` is a UDP socket this process holds; given back below.
    let sock = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    let sent = (0..k).try_for_each(|_| sock.send_to(&vec![b'd'; n], to).map(|_| ()));
    let _ = sock.into_raw_fd();
    sent
}

/// The server's side of an exchange: read `n` bytes, answer `m`.
fn serve_exchange(c: &mut (impl Read + Write), n: usize, m: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; n];
    c.read_exact(&mut buf)?;
    c.write_all(&vec![b's'; m])
}

/// The client's side: send `n` bytes, read the `m` of the answer.
fn client_exchange(c: &mut (impl Read + Write), n: usize, m: usize) -> std::io::Result<()> {
    c.write_all(&vec![b'c'; n])?;
    let mut buf = vec![0u8; m];
    c.read_exact(&mut buf)
}

fn run(op: &str) -> Result<(), String> {
    let parts: Vec<&str> = op.split(':').collect();
    let num = |i: usize| -> Result<usize, String> {
        parts
            .get(i)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("{op}: argument {i} must be a number"))
    };
    let arg = |i: usize| -> Result<&str, String> {
        parts
            .get(i)
            .copied()
            .ok_or(format!("{op}: missing argument {i}"))
    };
    let io = |r: std::io::Result<()>| r.map_err(|e| format!("{op}: {e}"));
    // An IP address argument; `_` stands for `:` (an IPv6 address in a `:`-separated op).
    let ip = |i: usize| -> Result<std::net::IpAddr, String> {
        arg(i)?
            .replace('_', ":")
            .parse()
            .map_err(|e| format!("{op}: address: {e}"))
    };
    match parts[0] {
        "write" => io(write_file(arg(1)?, num(2)?)),
        "read" => io(std::fs::read(arg(1)?).map(|_| ())),
        "chdir" => io(std::env::set_current_dir(arg(1)?)),
        "fifo" => {
            let p = libc::sched_param { sched_priority: 10 };
            // SAFETY: valid sched_param; pid 0 is this process.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
                return Err(format!("{op}: {}", std::io::Error::last_os_error()));
            }
            Ok(())
        }
        "openat" => {
            let dir = std::fs::File::open(arg(1)?).map_err(|e| format!("{op}: {e}"))?;
            use std::os::fd::AsRawFd;
            let name = cs(arg(2)?);
            // SAFETY: valid descriptor and C string.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                    0o644,
                )
            };
            if fd < 0 {
                return Err(format!("{op}: {}", std::io::Error::last_os_error()));
            }
            let buf = vec![b'y'; num(3)?];
            // SAFETY: valid fd and buffer.
            unsafe {
                libc::write(fd, buf.as_ptr() as *const _, buf.len());
                libc::close(fd);
            }
            Ok(())
        }
        "rename" => io(std::fs::rename(arg(1)?, arg(2)?)),
        "unlink" => io(std::fs::remove_file(arg(1)?)),
        "mkdir" => io(std::fs::create_dir(arg(1)?)),
        "rmdir" => io(std::fs::remove_dir(arg(1)?)),
        "missing" => match std::fs::File::open(arg(1)?) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => Err(format!("{op}: expected ENOENT, got {other:?}")),
        },
        "dup" => {
            let path = cs(arg(1)?);
            let n = num(2)?;
            let target = num(3)? as i32;
            let err = || format!("{op}: {}", std::io::Error::last_os_error());
            // SAFETY: plain descriptor syscalls on descriptors this function owns.
            unsafe {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                    0o644,
                );
                if fd < 0 || libc::dup2(fd, target) < 0 {
                    return Err(err());
                }
                libc::close(fd);
                let buf = vec![b'd'; n];
                if libc::write(target, buf.as_ptr() as *const _, n) != n as isize {
                    return Err(err());
                }
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                if null < 0 || libc::dup2(null, target) < 0 {
                    return Err(err());
                }
                libc::close(null);
                if libc::write(target, b"nnnnn".as_ptr() as *const _, 5) != 5 {
                    return Err(err());
                }
                libc::close(target);
            }
            Ok(())
        }
        "inherit" => {
            let path = cs(arg(1)?);
            let n = num(2)?;
            // SAFETY: fork in a single-threaded program; the child only writes and exits.
            unsafe {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                    0o644,
                );
                if fd < 0 {
                    return Err(format!("{op}: {}", std::io::Error::last_os_error()));
                }
                let pid = libc::fork();
                if pid == 0 {
                    let buf = vec![b'i'; n];
                    let ok = libc::write(fd, buf.as_ptr() as *const _, n) == n as isize;
                    libc::_exit(if ok { 0 } else { 1 });
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
                libc::close(fd);
                if st != 0 {
                    return Err(format!("{op}: the child failed to write"));
                }
            }
            Ok(())
        }
        "tcp" => {
            let addr = ip(1)?;
            let (n, m) = (num(2)?, num(3)?);
            let listener =
                std::net::TcpListener::bind((addr, 0)).map_err(|e| format!("{op}: {e}"))?;
            let port = listener
                .local_addr()
                .map_err(|e| format!("{op}: {e}"))?
                .port();
            let pid = fork_child(|| serve_exchange(&mut listener.accept()?.0, n, m));
            drop(listener);
            let result = std::net::TcpStream::connect((addr, port))
                .and_then(|mut c| client_exchange(&mut c, n, m));
            let served = wait_child(pid, op);
            result.map_err(|e| format!("{op}: {e}"))?;
            served
        }
        "sendfd" => {
            let fd = num(1)? as i32;
            let to = std::net::SocketAddr::new(ip(2)?, num(3)? as u16);
            send_datagrams(fd, to, num(4)?, num(5)?).map_err(|x| format!("{op}: {x}"))
        }
        "clonefiles" => {
            let to = std::net::SocketAddr::new(ip(1)?, num(2)? as u16);
            // SAFETY: clone without CLONE_VM behaves like fork (a copy of the memory);
            // the child only creates a socket and exits without running destructors.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    libc::CLONE_FILES | libc::SIGCHLD,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            if pid < 0 {
                return Err(format!("{op}: clone: {}", std::io::Error::last_os_error()));
            }
            if pid == 0 {
                use std::os::fd::IntoRawFd;
                let fd = std::net::UdpSocket::bind((to.ip(), 0)).map_or(0, |s| s.into_raw_fd());
                // SAFETY: leaving the child without running the parent's destructors.
                unsafe { libc::_exit(fd) };
            }
            let mut st = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) };
            let fd = libc::WEXITSTATUS(st);
            if !libc::WIFEXITED(st) || fd == 0 {
                return Err(format!("{op}: the child created no socket ({st})"));
            }
            send_datagrams(fd, to, num(3)?, num(4)?).map_err(|x| format!("{op}: {x}"))
        }
        "udp" => {
            use std::os::fd::AsRawFd;
            let addr = ip(1)?;
            let (n, m, k) = (num(2)?, num(3)?, num(4)?);
            let e = |x: std::io::Error| format!("{op}: {x}");
            let server = std::net::UdpSocket::bind((addr, 0)).map_err(e)?;
            let client = std::net::UdpSocket::bind((addr, 0)).map_err(e)?;
            let to = server.local_addr().map_err(e)?;
            let mut buf = vec![0u8; n.max(m) + 1];
            let exchange = |send: &dyn Fn() -> std::io::Result<()>,
                            recv: &dyn Fn(&mut [u8]) -> std::io::Result<usize>,
                            buf: &mut [u8]|
             -> Result<(), String> {
                send().map_err(e)?;
                let (got, from) = server.recv_from(buf).map_err(e)?;
                if got != n {
                    return Err(format!("{op}: server got {got} bytes"));
                }
                server.send_to(&vec![b'r'; m], from).map_err(e)?;
                let got = recv(buf).map_err(e)?;
                if got != m {
                    return Err(format!("{op}: client got {got} bytes"));
                }
                Ok(())
            };
            for _ in 0..k {
                exchange(
                    &|| client.send_to(&vec![b'q'; n], to).map(|_| ()),
                    &|b| client.recv_from(b).map(|r| r.0),
                    &mut buf,
                )?;
            }
            if let Some(ms) = parts.get(5).and_then(|p| p.parse().ok()) {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            client.connect(to).map_err(e)?;
            let fd = client.as_raw_fd();
            exchange(
                &|| {
                    let q = vec![b'q'; n];
                    // SAFETY: valid descriptor and buffer.
                    let w = unsafe { libc::write(fd, q.as_ptr() as *const _, n) };
                    if w == n as isize {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                },
                &|b| {
                    // SAFETY: valid descriptor and buffer.
                    let r = unsafe { libc::read(fd, b.as_mut_ptr() as *mut _, b.len()) };
                    if r < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(r as usize)
                    }
                },
                &mut buf,
            )?;
            Ok(())
        }
        "unix" => {
            use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
            let path = arg(1)?;
            let (n, m) = (num(2)?, num(3)?);
            let e = |x: std::io::Error| format!("{op}: {x}");
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes()).map_err(e)?
                }
                None => SocketAddr::from_pathname(path).map_err(e)?,
            };
            let listener = UnixListener::bind_addr(&addr).map_err(e)?;
            let pid = fork_child(|| {
                let (mut c, _) = listener.accept()?;
                serve_exchange(&mut c, n, m)?;
                // Exits with the connection open: the kernel closes it.
                std::mem::forget(c);
                Ok(())
            });
            let result =
                UnixStream::connect_addr(&addr).and_then(|mut c| client_exchange(&mut c, n, m));
            let served = wait_child(pid, op);
            drop(listener);
            if !path.starts_with('@') {
                let _ = std::fs::remove_file(path);
            }
            result.map_err(e)?;
            served
        }
        "tcploop" => {
            let n = num(1)?;
            let e = |x: std::io::Error| format!("{op}: {x}");
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(e)?;
            let addr = listener.local_addr().map_err(e)?;
            let server = std::thread::spawn(move || -> std::io::Result<()> {
                for _ in 0..n {
                    serve_exchange(&mut listener.accept()?.0, 100, 100)?;
                }
                Ok(())
            });
            let t = std::time::Instant::now();
            for _ in 0..n {
                let mut c = std::net::TcpStream::connect(addr).map_err(e)?;
                client_exchange(&mut c, 100, 100).map_err(e)?;
            }
            let elapsed = t.elapsed().as_nanos();
            server
                .join()
                .map_err(|_| format!("{op}: server thread panicked"))?
                .map_err(e)?;
            println!("tcploop: {n} connections in {elapsed} ns");
            Ok(())
        }
        "bulk" => {
            let total = num(1)? << 20;
            let e = |x: std::io::Error| format!("{op}: {x}");
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(e)?;
            let addr = listener.local_addr().map_err(e)?;
            let server = std::thread::spawn(move || -> std::io::Result<usize> {
                let (mut c, _) = listener.accept()?;
                let mut buf = vec![0u8; 1 << 20];
                let mut got = 0;
                loop {
                    match c.read(&mut buf)? {
                        0 => return Ok(got),
                        k => got += k,
                    }
                }
            });
            let chunk = vec![b'b'; 1 << 20];
            let t = std::time::Instant::now();
            let mut c = std::net::TcpStream::connect(addr).map_err(e)?;
            let mut sent = 0;
            while sent < total {
                c.write_all(&chunk).map_err(e)?;
                sent += chunk.len();
            }
            drop(c);
            let got = server
                .join()
                .map_err(|_| format!("{op}: server thread panicked"))?
                .map_err(e)?;
            let elapsed = t.elapsed().as_nanos();
            if got != total {
                return Err(format!("{op}: server received {got} of {total} bytes"));
            }
            println!("bulk: {total} bytes in {elapsed} ns");
            Ok(())
        }
        "serve" => {
            let addr = ip(1)?;
            let file = arg(2)?;
            let (n, m) = (num(3)?, num(4)?);
            let e = |x: std::io::Error| format!("{op}: {x}");
            let listener = std::net::TcpListener::bind((addr, 0)).map_err(e)?;
            let port = listener.local_addr().map_err(e)?.port();
            let tmp = format!("{file}.tmp");
            std::fs::write(&tmp, port.to_string()).map_err(e)?;
            std::fs::rename(&tmp, file).map_err(e)?;
            let (mut c, _) = listener.accept().map_err(e)?;
            serve_exchange(&mut c, n, m).map_err(e)
        }
        "connect" => {
            let addr = ip(1)?;
            let file = arg(2)?;
            let (n, m) = (num(3)?, num(4)?);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let port: u16 = loop {
                if let Ok(p) = std::fs::read_to_string(file) {
                    break p
                        .trim()
                        .parse()
                        .map_err(|_| format!("{op}: bad port file"))?;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("{op}: {file} did not appear within 10 s"));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            };
            let e = |x: std::io::Error| format!("{op}: {x}");
            let mut c = std::net::TcpStream::connect((addr, port)).map_err(e)?;
            client_exchange(&mut c, n, m).map_err(e)
        }
        "nbtcp" | "reset" => {
            let addr = ip(1)?;
            let reset = parts[0] == "reset";
            let (n, m) = if reset { (0, 0) } else { (num(2)?, num(3)?) };
            let e = |x: std::io::Error| format!("{op}: {x}");
            let listener = std::net::TcpListener::bind((addr, 0)).map_err(e)?;
            let to = listener.local_addr().map_err(e)?;
            let pid = fork_child(|| {
                let (mut c, _) = listener.accept()?;
                if !reset {
                    return serve_exchange(&mut c, n, m);
                }
                use std::os::fd::AsRawFd;
                let l = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: valid socket and option; closing it then sends a reset.
                unsafe {
                    libc::setsockopt(
                        c.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &l as *const _ as *const _,
                        std::mem::size_of::<libc::linger>() as u32,
                    )
                };
                Ok(())
            });
            drop(listener);
            let result = (|| -> Result<(), String> {
                let c =
                    std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5));
                let mut c = match c {
                    // The reset can arrive before the connect's poll returns: the
                    // handshake completed, and the socket's error is then the reset.
                    Err(x) if reset && x.kind() == std::io::ErrorKind::ConnectionReset => {
                        return Ok(())
                    }
                    c => c.map_err(e)?,
                };
                if reset {
                    let mut b = [0u8; 1];
                    return match c.read(&mut b) {
                        Ok(0) => Ok(()),
                        Err(x) if x.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
                        other => Err(format!("{op}: expected a reset, got {other:?}")),
                    };
                }
                client_exchange(&mut c, n, m).map_err(e)
            })();
            let served = wait_child(pid, op);
            result?;
            served
        }
        "nbrefused" => {
            let addr = ip(1)?;
            let to = std::net::TcpListener::bind((addr, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("{op}: {e}"))?;
            match std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
                other => Err(format!("{op}: expected ECONNREFUSED, got {other:?}")),
            }
        }
        "unreachable" => {
            // SAFETY: plain socket calls on a descriptor this block owns.
            unsafe {
                let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
                if fd < 0 {
                    return Err(format!("{op}: {}", std::io::Error::last_os_error()));
                }
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_SYNCNT,
                    &one as *const _ as *const _,
                    4,
                );
                let mut addr = [0u8; 16];
                addr[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                addr[15] = 1;
                let sa = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as u16,
                    sin6_port: 9u16.to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr { s6_addr: addr },
                    sin6_scope_id: 0,
                };
                let r = libc::connect(
                    fd,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as u32,
                );
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                match (r, err.raw_os_error()) {
                    (-1, Some(n @ (libc::ETIMEDOUT | libc::ENETUNREACH | libc::EHOSTUNREACH))) => {
                        println!("unreachable: errno {n}");
                        Ok(())
                    }
                    _ => Err(format!("{op}: expected a failure, got {r} ({err})")),
                }
            }
        }
        "refused" => {
            let addr = ip(1)?;
            // A port that was free a moment ago: bind, note it, close.
            let port = std::net::TcpListener::bind((addr, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("{op}: {e}"))?
                .port();
            match std::net::TcpStream::connect((addr, port)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
                other => Err(format!("{op}: expected ECONNREFUSED, got {other:?}")),
            }
        }
        "daemon" => {
            let ms = num(1)? as u64;
            let path = arg(2)?.to_string();
            // SAFETY: fork in a single-threaded program; children only sleep, write, exit.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    if libc::fork() == 0 {
                        libc::setsid();
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                        let _ = write_file(&path, 1);
                        libc::_exit(0);
                    }
                    libc::_exit(0);
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
            Ok(())
        }
        "loop" => {
            let n = num(1)?;
            let t = std::time::Instant::now();
            for _ in 0..n {
                io(write_file("f.tmp", 64))?;
                io(std::fs::rename("f.tmp", "g.tmp"))?;
                io(std::fs::remove_file("g.tmp"))?;
            }
            println!("loop: {n} iterations in {} ns", t.elapsed().as_nanos());
            Ok(())
        }
        "waitfor" => {
            let path = arg(1)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !std::path::Path::new(path).exists() {
                if std::time::Instant::now() > deadline {
                    return Err(format!("{op}: {path} did not appear within 60 s"));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(())
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(num(1)? as u64));
            Ok(())
        }
        other => Err(format!(
            "unknown operation `{other}` (see the source's header for the list)"
        )),
    }
}

/// `exec CMD [ARGS...]`: replace this process with CMD, keeping what the operations
/// before it set (`fifo`'s scheduling policy, inherited by CMD's children too).
fn exec(cmd: &[String]) -> ! {
    let Some(program) = cmd.first() else {
        eprintln!("gt-workload: exec: expected a command after it");
        std::process::exit(1);
    };
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new(program).args(&cmd[1..]).exec();
    eprintln!("gt-workload: exec {program}: {e}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for (i, op) in args.iter().enumerate() {
        if op == "exec" {
            exec(&args[i + 1..]);
        }
        if let Err(e) = run(op) {
            eprintln!("gt-workload: {e}");
            std::process::exit(1);
        }
    }
}
