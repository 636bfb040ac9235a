//! Privileged network tests: loopback TCP over IPv4 and IPv6 with known byte counts,
//! a refused connect, and traffic of an untracked process that must not appear.

mod common;

use common::*;
use std::process::Command;
use trail::{event::direction, Event};

fn net<'a>(run: &'a Run, activity: &str) -> Vec<&'a Event> {
    run.events
        .iter()
        .filter(|e| e.class_uid == 4001 && e.activity_name == activity)
        .collect()
}

fn check_tcp(run: &Run, pid: u32, ip: &str, sent: u64, received: u64) {
    let listen: Vec<_> = net(run, "Listen")
        .into_iter()
        .filter(|e| e.network.as_ref().unwrap().dst.as_ref().unwrap().ip == ip)
        .collect();
    // The tcp operation's listener is the first on that address (refused: listens too).
    assert!(!listen.is_empty(), "no Listen on {ip}");
    let port = listen[0]
        .network
        .as_ref()
        .unwrap()
        .dst
        .as_ref()
        .unwrap()
        .port;
    let opens: Vec<_> = net(run, "Open")
        .into_iter()
        .filter(|e| e.network.as_ref().unwrap().dst.as_ref().unwrap().port == port)
        .collect();
    assert_eq!(opens.len(), 2, "client and server side: {opens:#?}");
    let client = opens
        .iter()
        .find(|e| e.actor.pid == pid)
        .expect("client open");
    let server = opens
        .iter()
        .find(|e| e.actor.pid != pid)
        .expect("server open");
    let (cn, sn) = (
        client.network.as_ref().unwrap(),
        server.network.as_ref().unwrap(),
    );
    assert_eq!(cn.direction_id, direction::OUTBOUND);
    assert_eq!(sn.direction_id, direction::INBOUND);
    // Same 4-tuple seen from both processes.
    assert_eq!((&cn.src, &cn.dst), (&sn.src, &sn.dst));
    assert_eq!(cn.src.as_ref().unwrap().ip, ip);
    assert_ne!(cn.src.as_ref().unwrap().port, 0);
    assert_eq!(cn.protocol_name, "tcp");
    // The server is the forked child of the workload.
    let fork = run
        .events
        .iter()
        .find(|e| e.activity_name == "Fork" && e.process.as_ref().unwrap().pid == server.actor.pid)
        .expect("server was forked by the workload");
    assert_eq!(fork.actor.pid, pid);

    for open in [client, server] {
        let id = open.groundtruth.connection_id.expect("connection id");
        let closes: Vec<_> = net(run, "Close")
            .into_iter()
            .filter(|e| e.groundtruth.connection_id == Some(id))
            .collect();
        assert_eq!(closes.len(), 1, "one close per side: {closes:#?}");
        let c = closes[0];
        assert_eq!(c.actor.pid, open.actor.pid, "attributed to the opener");
        let n = c.network.as_ref().unwrap();
        assert_eq!((&n.src, &n.dst), (&cn.src, &cn.dst));
        assert_eq!((n.bytes_out, n.bytes_in), (Some(sent), Some(received)));
        let (r, w) = if open.actor.pid == pid {
            (received, sent)
        } else {
            (sent, received)
        };
        assert_eq!(
            (c.groundtruth.bytes_read, c.groundtruth.bytes_written),
            (Some(r), Some(w))
        );
    }
}

#[test]
fn tcp_over_ipv4_and_ipv6_with_exact_bytes_and_a_refused_connect() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let ops = [
        "tcp:127.0.0.1:1000:2500",
        "tcp:__1:300:70000",
        "refused:127.0.0.1",
    ];
    let mut cmd = vec![WORKLOAD];
    cmd.extend(ops);
    let run = record(&d, &[], &cmd, &d);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    run.assert_in_window();
    let pid = run.workload_pid(&ops.join(" "));
    check_tcp(&run, pid, "127.0.0.1", 1000, 2500);
    check_tcp(&run, pid, "::1", 300, 70000);

    let refused = net(&run, "Refuse");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let r = refused[0];
    assert_eq!(
        (r.actor.pid, r.status_id, r.groundtruth.errno),
        (pid, 2, Some(111))
    );
    let n = r.network.as_ref().unwrap();
    let listens = net(&run, "Listen");
    let last_port = listens
        .last()
        .unwrap()
        .network
        .as_ref()
        .unwrap()
        .dst
        .as_ref()
        .unwrap()
        .port;
    assert_eq!(n.dst.as_ref().unwrap().port, last_port);
    assert_eq!(n.direction_id, direction::OUTBOUND);
    assert!(
        run.stderr().contains("network 1"),
        "summary counts network events: {}",
        run.stderr()
    );
}

#[test]
fn untracked_tcp_traffic_does_not_appear() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    // Untracked loopback connections run while the tracked command does its own.
    let noise = std::thread::spawn(|| {
        for _ in 0..20 {
            let st = Command::new(WORKLOAD)
                .arg("tcp:127.0.0.1:77:88")
                .status()
                .unwrap();
            assert!(st.success());
        }
    });
    let run = record(
        &d,
        &[],
        &[WORKLOAD, "sleep:300", "tcp:127.0.0.1:10:20", "sleep:300"],
        &d,
    );
    noise.join().unwrap();
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let tracked: std::collections::BTreeSet<u32> = run
        .events
        .iter()
        .filter(|e| e.class_uid == 1007)
        .flat_map(|e| [e.actor.pid, e.process.as_ref().unwrap().pid])
        .collect();
    let network: Vec<_> = run.events.iter().filter(|e| e.class_uid == 4001).collect();
    assert!(!network.is_empty());
    for e in &network {
        assert!(tracked.contains(&e.actor.pid), "untracked pid in {e:#?}");
        if let Some(b) = e.network.as_ref().unwrap().bytes_out {
            assert_eq!(b, 10, "only the tracked connection's bytes: {e:#?}");
        }
    }
    assert_eq!(net(&run, "Close").len(), 2);
}

fn traffic<'a>(run: &'a Run, ip: &str) -> Vec<&'a Event> {
    net(run, "Traffic")
        .into_iter()
        .filter(|e| e.network.as_ref().unwrap().dst.as_ref().unwrap().ip == ip)
        .collect()
}

#[test]
fn udp_flows_are_aggregated_in_the_kernel_with_exact_counts() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let ops = ["udp:127.0.0.1:100:200:3", "udp:__1:10:20:2"];
    let mut cmd = vec![WORKLOAD];
    cmd.extend(ops);
    let run = record(&d, &[], &cmd, &d);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let pid = run.workload_pid(&ops.join(" "));
    // Per socket: the client's flow to the server and the server's flow to the client,
    // reported once each when the sockets close. K sendto exchanges plus one
    // write/read over the connected socket.
    for (ip, n, m, k) in [("127.0.0.1", 100, 200, 4), ("::1", 10, 20, 3)] {
        let t = traffic(&run, ip);
        assert_eq!(t.len(), 2, "{t:#?}");
        for e in &t {
            assert_eq!(e.actor.pid, pid);
            assert_eq!(e.activity_id, 6);
            let x = e.network.as_ref().unwrap();
            assert_eq!(x.protocol_name, "udp");
            assert!(e.start_time_ns.unwrap() <= e.end_time_ns.unwrap());
            assert!(e.start_time_ns.unwrap() >= run.start && e.end_time_ns.unwrap() <= run.end);
            let counts = (x.packets_out, x.bytes_out, x.packets_in, x.bytes_in);
            if x.direction_id == direction::OUTBOUND {
                assert_eq!(
                    counts,
                    (Some(k), Some(k * n), Some(k), Some(k * m)),
                    "client: {e:#?}"
                );
            } else {
                assert_eq!(
                    counts,
                    (Some(k), Some(k * m), Some(k), Some(k * n)),
                    "server: {e:#?}"
                );
            }
        }
        let (a, b) = (
            t[0].network.as_ref().unwrap(),
            t[1].network.as_ref().unwrap(),
        );
        assert_eq!(
            (&a.src, &a.dst),
            (&b.dst, &b.src),
            "the two ends of one exchange"
        );
    }
    // Each exchange pairs into one UDP handoff, the client being the side that sent
    // first, with its bytes.
    let h: Vec<_> = analysis::handoffs::handoffs(&run.events)
        .into_iter()
        .filter(|h| h.protocol == "udp")
        .collect();
    assert_eq!(h.len(), 2, "{h:#?}");
    let v4 = h.iter().find(|h| h.client.ip == "127.0.0.1").unwrap();
    assert_eq!(
        (v4.bytes_to_server, v4.bytes_to_client),
        (Some(400), Some(800))
    );
    assert_eq!((v4.client.pid, v4.server.pid), (Some(pid), Some(pid)));
}

/// UDP sockets the recorded process did not create itself: one the command inherits
/// from whoever started the agent, and one that a child sharing its descriptor table
/// (clone with CLONE_FILES) created. The kernel programs skip looking at the sockets
/// of sends in processes known to hold no UDP or unix socket; these processes must not
/// be taken for such.
#[test]
fn udp_sockets_the_process_did_not_create_are_counted() {
    use std::os::fd::AsRawFd;
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let inherited = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fd = inherited.as_raw_fd();
    // SAFETY: clearing close-on-exec on our own socket, so that the agent and the
    // command it launches inherit it.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    // Separate recordings: a process with an inherited socket is treated as holding
    // sockets from the start, which would hide a miss of the clone's.
    let flows = |op: String, inherited: Option<std::net::UdpSocket>| {
        let dir = d.join(op.split(':').next().unwrap());
        std::fs::create_dir(&dir).unwrap();
        let run = record(&dir, &[], &[WORKLOAD, &op], &d);
        drop(inherited);
        assert!(run.out.status.success(), "agent failed: {}", run.stderr());
        let pid = run.workload_pid(&op);
        traffic(&run, "127.0.0.1")
            .into_iter()
            .filter(|e| e.actor.pid == pid)
            .map(|e| {
                let x = e.network.as_ref().unwrap();
                assert_eq!(x.dst.as_ref().unwrap().port, port, "{e:#?}");
                (x.packets_out, x.bytes_out)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        flows(
            format!("sendfd:{fd}:127.0.0.1:{port}:11:3"),
            Some(inherited)
        ),
        [(Some(3), Some(33))],
        "the inherited socket"
    );
    assert_eq!(
        flows(format!("clonefiles:127.0.0.1:{port}:13:2"), None),
        [(Some(2), Some(26))],
        "the socket the clone created"
    );
}

#[test]
fn long_udp_flows_are_reported_periodically_without_double_counting() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    // The same sockets exchange before and after a pause longer than the interval.
    let run = record(
        &d,
        &["--flow-report-interval", "0.5"],
        &[WORKLOAD, "udp:127.0.0.1:7:9:2:1500"],
        &d,
    );
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let t = traffic(&run, "127.0.0.1");
    let client: Vec<_> = t
        .iter()
        .filter(|e| e.network.as_ref().unwrap().direction_id == direction::OUTBOUND)
        .collect();
    assert!(
        client.len() >= 2,
        "a periodic report and a final one: {client:#?}"
    );
    let sum = |f: fn(&trail::Network) -> Option<u64>| -> u64 {
        client
            .iter()
            .map(|e| f(e.network.as_ref().unwrap()).unwrap())
            .sum()
    };
    // 2 sendto exchanges + 1 connected, 7 bytes out and 9 in each.
    assert_eq!(sum(|n| n.packets_out), 3);
    assert_eq!(sum(|n| n.bytes_out), 21);
    assert_eq!(sum(|n| n.bytes_in), 27);
    for w in client.windows(2) {
        assert!(
            w[0].end_time_ns <= w[1].start_time_ns,
            "reports do not overlap"
        );
    }
}

#[test]
fn unix_stream_sockets_with_path_abstract_name_peer_pid_and_bytes() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let sock = d.join("s.sock");
    let abs = format!("@gt-test-{}", std::process::id());
    let ops = [
        format!("unix:{}:100:300", sock.display()),
        format!("unix:{abs}:5:70000"),
    ];
    let mut cmd = vec![WORKLOAD];
    cmd.extend(ops.iter().map(String::as_str));
    let run = record(&d, &[], &cmd, &d);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let pid = run.workload_pid(&ops.join(" "));
    for (path, n, m) in [(sock.to_str().unwrap(), 100, 300), (abs.as_str(), 5, 70000)] {
        let of = |activity: &str| -> Vec<&Event> {
            net(&run, activity)
                .into_iter()
                .filter(|e| e.groundtruth.socket_path.as_deref() == Some(path))
                .collect()
        };
        let opens = of("Open");
        assert_eq!(opens.len(), 2, "{path}: {opens:#?}");
        let client = opens.iter().find(|e| e.actor.pid == pid).expect("client");
        let server = opens.iter().find(|e| e.actor.pid != pid).expect("server");
        assert_eq!(client.network.as_ref().unwrap().protocol_name, "unix");
        assert_eq!(
            client.network.as_ref().unwrap().direction_id,
            direction::OUTBOUND
        );
        assert_eq!(
            server.network.as_ref().unwrap().direction_id,
            direction::INBOUND
        );
        // The listener belongs to the parent (it listened before forking the server);
        // the server's peer is the client, the parent.
        assert_eq!(client.groundtruth.peer_pid, Some(pid));
        assert_eq!(server.groundtruth.peer_pid, Some(pid));
        let closes = of("Close");
        assert_eq!(closes.len(), 2, "{path}: {closes:#?}");
        for c in closes {
            let x = c.network.as_ref().unwrap();
            assert_eq!((x.bytes_out, x.bytes_in), (Some(n), Some(m)), "{c:#?}");
            let opened = if c.actor.pid == pid { client } else { server };
            assert_eq!(
                c.groundtruth.connection_id,
                opened.groundtruth.connection_id
            );
            // The server exits with the connection open: the kernel closed it.
            assert_eq!(c.groundtruth.implicit, c.actor.pid != pid, "{c:#?}");
        }
        // Paired into one handoff: client the workload, server its child, with bytes.
        let h: Vec<_> = analysis::handoffs::handoffs(&run.events)
            .into_iter()
            .filter(|h| h.path.as_deref() == Some(path))
            .collect();
        assert_eq!(h.len(), 1, "{h:#?}");
        assert_eq!(h[0].client.pid, Some(pid));
        assert_eq!(h[0].server.pid, Some(server.actor.pid));
        assert_eq!(
            (h[0].bytes_to_server, h[0].bytes_to_client),
            (Some(n), Some(m))
        );
    }
}

/// Non-blocking connects (their outcome arrives from the handshake, not the syscall),
/// a reset, and a connect that fails for lack of a route or answer.
#[test]
fn nonblocking_connects_resets_and_failures_carry_their_outcome() {
    if !privileged() {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().canonicalize().unwrap();
    let ops = [
        "nbtcp:127.0.0.1:10:20",
        "nbrefused:127.0.0.1",
        "reset:127.0.0.1",
        "unreachable",
    ];
    let mut cmd = vec![WORKLOAD];
    cmd.extend(ops);
    let run = record(&d, &[], &cmd, &d);
    assert!(run.out.status.success(), "agent failed: {}", run.stderr());
    let pid = run.workload_pid(&ops.join(" "));
    let stdout = String::from_utf8_lossy(&run.out.stdout);
    let errno: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("unreachable: errno "))
        .expect("the workload says which error it got")
        .parse()
        .unwrap();
    // Connect events of the workload process, in order: nbtcp's Open, nbrefused's
    // Refuse, reset's Open, unreachable's Fail.
    let connects: Vec<&Event> = run
        .events
        .iter()
        .filter(|e| {
            e.class_uid == 4001
                && e.actor.pid == pid
                && e.groundtruth.syscall.as_deref() == Some("connect")
        })
        .collect();
    let kinds: Vec<&str> = connects.iter().map(|e| &*e.activity_name).collect();
    assert_eq!(kinds, ["Open", "Refuse", "Open", "Fail"], "{connects:#?}");
    assert_eq!(connects[1].groundtruth.errno, Some(111));
    assert_eq!(connects[3].groundtruth.errno, Some(errno));
    let d3 = connects[3].network.as_ref().unwrap().dst.as_ref().unwrap();
    assert_eq!((d3.ip.as_str(), d3.port), ("2001:db8::1", 9));
    // The non-blocking connection carried its bytes.
    let first = connects[0].groundtruth.connection_id;
    let close = net(&run, "Close")
        .into_iter()
        .find(|e| e.groundtruth.connection_id == first)
        .expect("close of the non-blocking connection");
    let n = close.network.as_ref().unwrap();
    assert_eq!((n.bytes_out, n.bytes_in), (Some(10), Some(20)));
    // The reset: the client's end closes as Reset.
    let reset_id = connects[2].groundtruth.connection_id;
    let end = run
        .events
        .iter()
        .find(|e| {
            e.class_uid == 4001 && e.groundtruth.connection_id == reset_id && e.activity_id != 1
        })
        .expect("end of the reset connection");
    assert_eq!(&*end.activity_name, "Reset", "{end:#?}");
}
