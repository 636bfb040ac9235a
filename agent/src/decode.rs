//! Decoding ring buffer records into trail events.
//!
//! Kernel bytes are untrusted input: every length and offset is checked, strings are
//! decoded lossily, unknown kinds are errors the caller counts. Nothing here panics on
//! any input (see the tests, which feed truncated and random records).
//!
//! The decoder also keeps what the kernel does not repeat in every event: the command
//! line and executable of each process (from its exec, inherited at fork) and the path
//! of each open descriptor (for close events).

use agent_common::{
    ev_flag, op, str_flag, str_kind, syscalls, NetAddrs, RawEvent, StrRef, MAX_STRS,
    NET_ADDRS_SIZE, RAW_EVENT_SIZE,
};
use rustc_hash::FxHashMap as HashMap;
use trail::event::{activity, class, direction, status, Shared};
use trail::{Actor, Endpoint, Event, Extra, FileRef, Network, TargetProcess};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is shorter than the fixed event layout.
    #[error("record of {0} bytes is shorter than an event ({RAW_EVENT_SIZE} bytes)")]
    Short(usize),
    /// The record claims more string data than it carries.
    #[error("record declares {declared} bytes of string data but carries {present}")]
    DataLen { declared: usize, present: usize },
    /// A string slot points outside the string data.
    #[error("string slot {slot} ({off}+{len}) is outside the {data} bytes of string data")]
    StrOutOfBounds {
        slot: usize,
        off: usize,
        len: usize,
        data: usize,
    },
    /// A network record without its addresses.
    #[error("network event kind {0} carries no address block")]
    MissingAddress(u32),
    /// The event kind is not one this agent knows.
    #[error("unknown event kind {0}")]
    UnknownOp(u32),
}

/// Text form of an address as the kernel stores it. IPv4 by hand: through `Display`
/// (a formatter per octet, and a string grown as it is written) it was an eighth of
/// the agent's CPU on a connection-heavy workload.
fn ip_text(family: u16, b: &[u8; 16]) -> String {
    match family {
        AF_INET => {
            let mut s = String::with_capacity(15);
            for (i, &octet) in b[..4].iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if octet >= 100 {
                    s.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    s.push(char::from(b'0' + octet / 10 % 10));
                }
                s.push(char::from(b'0' + octet % 10));
            }
            s
        }
        AF_INET6 => {
            use std::fmt::Write;
            let mut s = String::with_capacity(39);
            let _ = write!(s, "{}", std::net::Ipv6Addr::from(*b));
            s
        }
        _ => String::new(),
    }
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const ECONNREFUSED: i64 = 111;

/// A record split into its fixed part and its string data.
pub struct Record<'a> {
    pub ev: RawEvent,
    pub data: &'a [u8],
}

/// The kind of a record (`EventHeader::op`, its first field), without parsing the rest.
pub fn op_of(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?))
}

pub fn parse(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < RAW_EVENT_SIZE {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: RawEvent is repr(C) made of integers only, so every bit pattern is a valid
    // value; the length was checked; read_unaligned makes no alignment assumption.
    let ev: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const RawEvent) };
    let rest = &bytes[RAW_EVENT_SIZE..];
    let declared = ev.data_len as usize;
    if declared > rest.len() {
        return Err(DecodeError::DataLen {
            declared,
            present: rest.len(),
        });
    }
    let data = &rest[..declared];
    for (slot, s) in ev.strs.iter().enumerate() {
        if s.kind != str_kind::NONE && s.off as usize + s.len as usize > data.len() {
            return Err(DecodeError::StrOutOfBounds {
                slot,
                off: s.off as usize,
                len: s.len as usize,
                data: data.len(),
            });
        }
    }
    Ok(Record { ev, data })
}

impl Record<'_> {
    fn slot(&self, i: usize) -> Option<(&[u8], StrRef)> {
        let s = *self.ev.strs.get(i)?;
        if s.kind == str_kind::NONE || i >= MAX_STRS {
            return None;
        }
        let b = self
            .data
            .get(s.off as usize..s.off as usize + s.len as usize)?;
        Some((b, s))
    }

    /// A kernel-resolved path (components leaf first) as an absolute path.
    fn components(&self, i: usize) -> Option<(String, bool)> {
        let (b, s) = self.slot(i)?;
        if s.kind != str_kind::COMPONENTS {
            return None;
        }
        let mut path = String::with_capacity(b.len() + 1);
        // Checked as UTF-8 once, not per component (NUL is ASCII: splitting valid text
        // at NULs gives valid text); names that are not UTF-8 are converted lossily.
        let utf8 = std::str::from_utf8(b).is_ok();
        for p in b.rsplit(|&c| c == 0) {
            if p.is_empty() || p == b"/" {
                continue;
            }
            path.push('/');
            if utf8 {
                // SAFETY: `b` is UTF-8 and `p` a part of it between NULs (ASCII), so
                // `p` is UTF-8 too.
                path.push_str(unsafe { std::str::from_utf8_unchecked(p) });
            } else {
                path.push_str(&String::from_utf8_lossy(p));
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        Some((
            path,
            s.flags & (str_flag::TRUNCATED | str_flag::READ_ERROR) != 0,
        ))
    }

    /// Both ends of a socket (slot `i`, kind NET).
    fn net(&self, i: usize) -> Option<NetAddrs> {
        let (b, s) = self.slot(i)?;
        if s.kind != str_kind::NET || b.len() != NET_ADDRS_SIZE {
            return None;
        }
        // SAFETY: NetAddrs is repr(C) integers only; the length was checked.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const NetAddrs) })
    }

    /// A unix socket address (slot `i`): a path, or `@name` for an abstract one.
    fn unix_path(&self, i: usize) -> Option<String> {
        let (b, s) = self.slot(i)?;
        if s.kind != str_kind::UNIX_PATH {
            return None;
        }
        Some(match b.split_first() {
            // Abstract: the name is every byte after the leading NUL.
            Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
            _ => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).into_owned()
            }
        })
    }

    fn raw(&self, i: usize) -> Option<(String, bool)> {
        let (b, s) = self.slot(i)?;
        if s.kind != str_kind::RAW {
            return None;
        }
        Some((String::from_utf8_lossy(b).into_owned(), s.flags != 0))
    }

    /// A path argument (slot `i`) joined with its base directory (slot `i + 1`), the
    /// directory's text taken from `dirs` when it is the one last resolved.
    fn path_arg(&self, i: usize, dirs: &mut DirCache) -> Option<FileRef> {
        let (requested, req_trunc) = self.raw(i)?;
        let base = self
            .slot(i + 1)
            .filter(|(_, s)| s.kind == str_kind::COMPONENTS);
        let (path, trunc) = if requested.starts_with('/') {
            (Some(normalize(&requested)), req_trunc)
        } else if let Some((raw, s)) = base {
            let dir = dirs.get(raw, s, || self.components(i + 1));
            let mut joined = String::with_capacity(dir.path.len() + 1 + requested.len());
            joined.push_str(&dir.path);
            if !joined.ends_with('/') {
                joined.push('/');
            }
            joined.push_str(&requested);
            // A normal directory and one plain name make a normal path: no need to look.
            let plain = !matches!(requested.as_str(), "" | "." | "..") && !requested.contains('/');
            let path = if dir.normal && plain {
                joined
            } else {
                normalize_owned(joined)
            };
            (Some(path), req_trunc || dir.truncated)
        } else {
            (None, true)
        };
        Some(FileRef {
            path,
            path_requested: Some(requested),
            path_truncated: trunc,
            ..Default::default()
        })
    }
}

/// The base directory last joined with a relative path (a process's working directory
/// from one event to the next, mostly): its kernel bytes and its text, so that a run of
/// relative paths in one directory converts the directory once.
#[derive(Default)]
pub struct DirCache {
    raw: Vec<u8>,
    flags: u8,
    path: String,
    truncated: bool,
    /// Whether `path` is lexically normal ([`trail::is_normal_path`]).
    normal: bool,
}

impl DirCache {
    /// The directory whose kernel bytes are `raw` (flags from `s`), converted by
    /// `convert` unless it is the one held.
    fn get(
        &mut self,
        raw: &[u8],
        s: StrRef,
        convert: impl FnOnce() -> Option<(String, bool)>,
    ) -> &DirCache {
        if self.raw != raw || self.flags != s.flags || self.path.is_empty() {
            let (path, truncated) = convert().unwrap_or_else(|| ("/".to_string(), true));
            self.raw.clear();
            self.raw.extend_from_slice(raw);
            self.flags = s.flags;
            self.normal = trail::is_normal_path(&path);
            self.path = path;
            self.truncated = truncated;
        }
        self
    }
}

/// Lexical normalisation of an absolute path: `.` and empty components dropped, `..`
/// removes the previous component (never above `/`).
pub fn normalize(path: &str) -> String {
    if trail::is_normal_path(path) {
        return path.to_string();
    }
    normalized(path)
}

/// [`normalize`] of an owned path, returned as it is when already normal.
pub fn normalize_owned(path: String) -> String {
    if trail::is_normal_path(&path) {
        return path;
    }
    normalized(&path)
}

fn normalized(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = String::with_capacity(path.len());
    for c in &out {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn argv_to_cmdline(b: &[u8]) -> String {
    let parts: Vec<String> = b
        .split(|&c| c == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    parts.join(" ")
}

fn comm(c: &[u8]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

#[derive(Clone, Debug, Default)]
struct Proc {
    cmd_line: Option<Shared>,
    exe: Option<Shared>,
    /// The last `comm` seen for the process and its text, shared by its events.
    comm: Option<([u8; agent_common::COMM_LEN], Shared)>,
}

/// Descriptors still counted by the kernel for a process, to be flushed at its exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFd {
    pub pid: u32,
    pub fd: u32,
}

/// Turns records into events, keeping per-process and per-descriptor state.
pub struct Decoder {
    /// Wall clock minus boot clock, ns.
    pub boot_to_wall_ns: i64,
    services: Vec<Shared>,
    procs: HashMap<u32, Proc>,
    fds: HashMap<(u32, u32), FileRef>,
    /// Events produced by the agent itself (implicit closes at exit) get this CPU value
    /// and their own sequence.
    agent_seq: u64,
    /// Open connections: kernel socket address -> connection id. The address itself is
    /// never written (it would leak kernel layout into the trail).
    connections: HashMap<u64, (u64, NetAddrs, Option<String>)>,
    /// Recently exited processes (at most [`EXITED_KEPT`], oldest dropped first).
    exited: HashMap<u32, Proc>,
    exited_order: std::collections::VecDeque<u32>,
    next_connection: u64,
    /// The base directory last joined with a relative path.
    dirs: DirCache,
}

/// How many exited processes the decoder remembers for rows that arrive after the exit.
const EXITED_KEPT: usize = 4096;

/// CPU value of events synthesized by the agent from kernel state.
pub const AGENT_CPU: u32 = u32::MAX;

impl Decoder {
    pub fn new(boot_to_wall_ns: i64, services: Vec<String>) -> Self {
        Self {
            boot_to_wall_ns,
            services: services.into_iter().map(Shared::from).collect(),
            procs: HashMap::default(),
            fds: HashMap::default(),
            agent_seq: 0,
            connections: HashMap::default(),
            exited: HashMap::default(),
            exited_order: std::collections::VecDeque::new(),
            next_connection: 0,
            dirs: DirCache::default(),
        }
    }

    /// A network record.
    fn network(&mut self, rec: &Record) -> Result<Event, DecodeError> {
        let r = rec.ev;
        let h = r.header;
        let mut a = rec.net(0).ok_or(DecodeError::MissingAddress(h.op))?;
        let sk = r.arg_b;
        let known = if h.op == op::NET_CLOSE {
            self.connections.remove(&sk)
        } else {
            None
        };
        if let Some((_, opened, _)) = &known {
            let opened = *opened;
            // At CLOSE the kernel has already released the local port: the ends are
            // those the connection was opened with.
            a = opened;
        }
        let reset = r.ev_flags & (ev_flag::RESET_RECEIVED | ev_flag::RESET_SENT) != 0;
        let (act, name) = match h.op {
            op::NET_CONNECT if r.ret == 0 => (activity::NET_OPEN, "Open"),
            op::NET_CONNECT if r.ret == -ECONNREFUSED => (activity::NET_REFUSE, "Refuse"),
            op::NET_CONNECT => (activity::NET_FAIL, "Fail"),
            op::NET_ACCEPT => (activity::NET_OPEN, "Open"),
            op::NET_CLOSE if reset => (activity::NET_RESET, "Reset"),
            op::NET_CLOSE => (activity::NET_CLOSE, "Close"),
            op::NET_LISTEN => (activity::NET_LISTEN, "Listen"),
            _ => (activity::OTHER, "Bind"),
        };
        let mut e = self.base(&r, class::NETWORK_ACTIVITY, act, name);
        let local = Endpoint {
            ip: ip_text(a.family, &a.local),
            port: a.local_port,
        };
        let remote = Endpoint {
            ip: ip_text(a.family, &a.remote),
            port: a.remote_port,
        };
        let dir = if r.ev_flags & ev_flag::INBOUND != 0 {
            direction::INBOUND
        } else if r.ev_flags & ev_flag::OUTBOUND != 0 {
            direction::OUTBOUND
        } else {
            direction::UNKNOWN
        };
        let unbound = local.port == 0;
        let unix = a.family == AF_UNIX;
        let (src, dst) = match h.op {
            _ if unix => (None, None),
            op::NET_LISTEN | op::NET_BIND => (None, Some(local)),
            // A connect that failed has no local end any more.
            op::NET_CONNECT if r.ret < 0 && unbound => (None, Some(remote)),
            _ if dir == direction::INBOUND => (Some(remote), Some(local)),
            _ => (Some(local), Some(remote)),
        };
        let mut net = Network {
            src,
            dst,
            protocol_name: match a.protocol {
                _ if unix => "unix".into(),
                6 => "tcp".into(),
                17 => "udp".into(),
                p => format!("ip-proto-{p}").into(),
            },
            direction_id: dir,
            ..Default::default()
        };
        match h.op {
            op::NET_CLOSE => {
                // received = bytes_read, sent (acknowledged) = bytes_written.
                let (rx, tx) = (r.bytes_read, r.bytes_written);
                (net.bytes_out, net.bytes_in) = if dir == direction::INBOUND {
                    (Some(rx), Some(tx))
                } else {
                    (Some(tx), Some(rx))
                };
                e.groundtruth.bytes_read = Some(rx);
                e.groundtruth.bytes_written = Some(tx);
                e.groundtruth.connection_id = Some(match &known {
                    Some((id, _, _)) => *id,
                    None => self.new_connection(),
                });
            }
            op::NET_CONNECT | op::NET_ACCEPT => {
                let id = self.new_connection();
                if r.ret >= 0 {
                    self.connections.insert(sk, (id, a, rec.unix_path(1)));
                }
                e.groundtruth.connection_id = Some(id);
                e.groundtruth.ret = Some(r.ret);
                e.groundtruth.errno = (r.ret < 0).then_some((-r.ret) as i32);
            }
            _ => {
                e.groundtruth.ret = Some(r.ret);
                e.groundtruth.errno = (r.ret < 0).then_some((-r.ret) as i32);
            }
        }
        e.groundtruth.fd = (r.fd >= 0).then_some(r.fd);
        if unix {
            e.groundtruth.implicit = r.ev_flags & ev_flag::IMPLICIT_CLOSE != 0;
            e.groundtruth.socket_path = rec.unix_path(1).or_else(|| known.and_then(|k| k.2));
            e.groundtruth.peer_pid = (r.arg_a != 0).then_some(r.arg_a as u32);
        }
        e.network = Some(Box::new(net));
        Ok(e)
    }

    /// A Traffic event for what a UDP flow carried since `since` (the counts last
    /// reported for it, zero the first time). Synthesized by the agent from the
    /// kernel's `FLOWS` map, so it gets the agent's CPU and sequence.
    pub fn udp_flow(
        &mut self,
        key: &agent_common::FlowKey,
        flow: &agent_common::Flow,
        since: Option<&agent_common::Flow>,
    ) -> Event {
        let o = &flow.owner;
        let offset = self.boot_to_wall_ns;
        let wall = |ns: u64| (ns as i64).saturating_add(offset);
        let (d_out, b_out, d_in, b_in, start) = match since {
            Some(p) => (
                flow.datagrams_out.saturating_sub(p.datagrams_out),
                flow.bytes_out.saturating_sub(p.bytes_out),
                flow.datagrams_in.saturating_sub(p.datagrams_in),
                flow.bytes_in.saturating_sub(p.bytes_in),
                p.last_ns,
            ),
            None => (
                flow.datagrams_out,
                flow.bytes_out,
                flow.datagrams_in,
                flow.bytes_in,
                flow.first_ns,
            ),
        };
        let (name, cmd_line, exe) = self.identity(o.tgid, &o.comm);
        self.agent_seq += 1;
        Event {
            time_ns: wall(flow.last_ns),
            class_uid: class::NETWORK_ACTIVITY,
            activity_id: activity::NET_TRAFFIC,
            activity_name: "Traffic".into(),
            status_id: status::SUCCESS,
            actor: Actor {
                pid: o.tgid,
                tid: o.tid,
                uid: o.uid,
                gid: o.gid,
                name,
                cmd_line,
                exe,
                ppid: o.ppid,
            },
            network: Some(Box::new(Network {
                // The recorded process's end is the source.
                src: Some(Endpoint {
                    ip: ip_text(key.family, &flow.local),
                    port: flow.local_port,
                }),
                dst: Some(Endpoint {
                    ip: ip_text(key.family, &key.remote),
                    port: key.remote_port,
                }),
                protocol_name: "udp".into(),
                direction_id: if flow.first_out != 0 {
                    direction::OUTBOUND
                } else {
                    direction::INBOUND
                },
                bytes_out: Some(b_out),
                bytes_in: Some(b_in),
                packets_out: Some(d_out),
                packets_in: Some(d_in),
            })),
            start_time_ns: Some(wall(start)),
            end_time_ns: Some(wall(flow.last_ns)),
            groundtruth: Extra {
                cpu: AGENT_CPU,
                sequence: self.agent_seq - 1,
                cgroup_id: o.cgroup_id,
                service: self.service(o.service),
                bytes_read: Some(b_in),
                bytes_written: Some(b_out),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The Close of a unix connection whose owner exited with descriptors of it still
    /// open (the kernel closed them): reported at the owner's exit, as implicit.
    pub fn unix_exit_close(&mut self, exit: &Event, sk: u64, c: &agent_common::UnixConn) -> Event {
        let known = self.connections.remove(&sk);
        let inbound = c.owner.flags & ev_flag::INBOUND != 0;
        self.agent_seq += 1;
        let (bytes_out, bytes_in) = if inbound {
            (c.bytes_in, c.bytes_out)
        } else {
            (c.bytes_out, c.bytes_in)
        };
        Event {
            time_ns: exit.time_ns,
            class_uid: class::NETWORK_ACTIVITY,
            activity_id: activity::NET_CLOSE,
            activity_name: "Close".into(),
            status_id: status::SUCCESS,
            actor: exit.actor.clone(),
            network: Some(Box::new(Network {
                protocol_name: "unix".into(),
                direction_id: if inbound {
                    direction::INBOUND
                } else {
                    direction::OUTBOUND
                },
                bytes_out: Some(bytes_out),
                bytes_in: Some(bytes_in),
                ..Default::default()
            })),
            groundtruth: Extra {
                cpu: AGENT_CPU,
                sequence: self.agent_seq - 1,
                cgroup_id: exit.groundtruth.cgroup_id,
                service: exit.groundtruth.service.clone(),
                fd: Some(c.fd),
                bytes_read: Some(c.bytes_in),
                bytes_written: Some(c.bytes_out),
                implicit: true,
                connection_id: known.as_ref().map(|k| k.0),
                socket_path: known.and_then(|k| k.2),
                peer_pid: (c.peer_pid != 0).then_some(c.peer_pid),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn new_connection(&mut self) -> u64 {
        self.next_connection += 1;
        self.next_connection
    }

    /// What is known of a process that was running before recording started (its exec
    /// is not in the trail): command line and executable as /proc showed them.
    pub fn seed(&mut self, pid: u32, cmd_line: Option<String>, exe: Option<String>) {
        let p = self.procs.entry(pid).or_default();
        p.cmd_line = cmd_line.map(Into::into);
        p.exe = exe.map(Into::into);
    }

    /// Descriptors of `pid` opened in the trail and not closed yet.
    pub fn open_fds(&self, pid: u32) -> Vec<OpenFd> {
        let mut v: Vec<OpenFd> = self
            .fds
            .keys()
            .filter(|(p, _)| *p == pid)
            .map(|&(pid, fd)| OpenFd { pid, fd })
            .collect();
        v.sort_by_key(|o| o.fd);
        v
    }

    fn service(&self, i: u32) -> Shared {
        self.services
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("service#{i}").into())
    }

    /// A process's name (`comm`, as shared text made once per name change), command
    /// line and executable, with one lookup: running, else recently exited (rows after
    /// its exit do not resurrect it as a running one), else a new running entry.
    fn identity(
        &mut self,
        pid: u32,
        c: &[u8; agent_common::COMM_LEN],
    ) -> (Shared, Option<Shared>, Option<Shared>) {
        let p = match self.procs.entry(pid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match self.exited.get_mut(&pid) {
                Some(p) => p,
                None => v.insert(Proc::default()),
            },
        };
        let name = match &p.comm {
            Some((bytes, text)) if bytes == c => text.clone(),
            _ => {
                let text: Shared = comm(c).into();
                p.comm = Some((*c, text.clone()));
                text
            }
        };
        (name, p.cmd_line.clone(), p.exe.clone())
    }

    fn base(
        &mut self,
        r: &RawEvent,
        class_uid: i32,
        activity_id: i32,
        name: &'static str,
    ) -> Event {
        let h = &r.header;
        let (name_text, cmd_line, exe) = self.identity(h.pid, &h.comm);
        let failed = r.ret < 0 && h.op != op::EXIT;
        Event {
            time_ns: (h.boot_ns as i64).saturating_add(self.boot_to_wall_ns),
            class_uid,
            activity_id,
            activity_name: name.into(),
            status_id: if failed {
                status::FAILURE
            } else {
                status::SUCCESS
            },
            actor: Actor {
                pid: h.pid,
                tid: h.tid,
                uid: h.uid,
                gid: h.gid,
                name: name_text,
                cmd_line,
                exe,
                ppid: h.ppid,
            },
            process: None,
            file: None,
            file_result: None,
            network: None,
            start_time_ns: None,
            end_time_ns: None,
            groundtruth: Extra {
                cpu: h.cpu,
                sequence: h.seq,
                cgroup_id: h.cgroup_id,
                service: self.service(h.service),
                syscall: (r.syscall != 0)
                    .then(|| syscalls::name(r.syscall as u64).map(Into::into))
                    .flatten(),
                ret: (h.op < op::EXEC && h.op != op::CLOSE).then_some(r.ret),
                errno: (failed && h.op < op::EXEC).then_some((-r.ret) as i32),
                ..Default::default()
            },
        }
    }

    /// Decode one record.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Event, DecodeError> {
        let rec = parse(bytes)?;
        let r = rec.ev;
        let h = r.header;
        let file_with = |rec: &Record, f: Option<FileRef>| -> FileRef {
            let mut f = f.unwrap_or_default();
            if r.inode != 0 {
                f.inode = Some(r.inode);
                f.dev = Some(r.dev);
            }
            if let Some((path, trunc)) = rec.components(2) {
                f.path = Some(path);
                f.path_truncated = trunc;
            }
            f
        };
        let ev = match h.op {
            op::EXEC => {
                let mut e = self.base(
                    &r,
                    class::PROCESS_ACTIVITY,
                    activity::PROCESS_LAUNCH,
                    "Launch",
                );
                let exe: Option<Shared> = rec.components(0).map(|p| p.0.into());
                let (cmd_line, truncated) = match rec.slot(1) {
                    Some((b, s)) if s.kind == str_kind::ARGV => (
                        Some(Shared::from(argv_to_cmdline(b))),
                        s.flags & str_flag::TRUNCATED != 0,
                    ),
                    _ => (None, false),
                };
                let p = self.procs.entry(h.pid).or_default();
                p.cmd_line = cmd_line.clone();
                p.exe = exe.clone();
                e.actor.cmd_line = cmd_line.clone();
                e.actor.exe = exe.clone();
                e.process = Some(Box::new(TargetProcess {
                    pid: h.pid,
                    name: Some(e.actor.name.clone()),
                    cmd_line,
                    exe,
                    cwd: rec.components(2).map(|p| p.0),
                    args_truncated: truncated,
                    ..Default::default()
                }));
                e
            }
            op::FORK => {
                let mut e = self.base(&r, class::PROCESS_ACTIVITY, activity::OTHER, "Fork");
                let child = r.arg_a as u32;
                let parent = self.procs.get(&h.pid).cloned().unwrap_or_default();
                self.procs.insert(child, parent.clone());
                e.process = Some(Box::new(TargetProcess {
                    pid: child,
                    name: Some(e.actor.name.clone()),
                    cmd_line: parent.cmd_line,
                    exe: parent.exe,
                    ..Default::default()
                }));
                e
            }
            op::EXIT => {
                let mut e = self.base(
                    &r,
                    class::PROCESS_ACTIVITY,
                    activity::PROCESS_TERMINATE,
                    "Terminate",
                );
                let status = r.ret as i32;
                let sig = status & 0x7f;
                e.process = Some(Box::new(TargetProcess {
                    pid: h.pid,
                    name: Some(e.actor.name.clone()),
                    cmd_line: e.actor.cmd_line.clone(),
                    exe: e.actor.exe.clone(),
                    exit_code: (sig == 0).then_some((status >> 8) & 0xff),
                    exit_signal: (sig != 0).then_some(sig),
                    ..Default::default()
                }));
                // Kept a while: a connection of the process can close after it exited
                // (TCP finishes in the kernel), and its rows still name the process.
                if let Some(p) = self.procs.remove(&h.pid) {
                    if self.exited.len() >= EXITED_KEPT {
                        if let Some(old) = self.exited_order.pop_front() {
                            self.exited.remove(&old);
                        }
                    }
                    if self.exited.insert(h.pid, p).is_none() {
                        self.exited_order.push_back(h.pid);
                    }
                }
                e
            }
            op::OPEN => {
                let mut e = self.base(&r, class::FILE_SYSTEM_ACTIVITY, activity::FILE_OPEN, "Open");
                let requested = if r.ret >= 0 {
                    rec.raw(0).map(|s| s.0)
                } else {
                    None
                };
                let mut f = if r.ret >= 0 {
                    file_with(&rec, None)
                } else {
                    rec.path_arg(0, &mut self.dirs).unwrap_or_default()
                };
                if requested.is_some() {
                    f.path_requested = requested;
                }
                e.groundtruth.flags = Some(r.flags);
                e.groundtruth.mode = Some(r.arg_a as u32);
                if r.ret >= 0 {
                    e.groundtruth.fd = Some(r.fd);
                    e.groundtruth.created = r.ev_flags & ev_flag::CREATED != 0;
                    self.fds.insert((h.pid, r.fd as u32), f.clone());
                }
                e.file = Some(f);
                e
            }
            op::ACQUIRE => {
                let mut e = self.base(&r, class::FILE_SYSTEM_ACTIVITY, activity::OTHER, "Acquire");
                let f = file_with(&rec, None);
                e.groundtruth.fd = Some(r.fd);
                // The read/write that first used the descriptor, not an open.
                e.groundtruth.ret = None;
                self.fds.insert((h.pid, r.fd as u32), f.clone());
                e.file = Some(f);
                e
            }
            op::CLOSE => {
                let mut e = self.base(&r, class::FILE_SYSTEM_ACTIVITY, activity::OTHER, "Close");
                let mut f = self.fds.remove(&(h.pid, r.fd as u32)).unwrap_or_default();
                if r.inode != 0 {
                    f.inode = Some(r.inode);
                    f.dev = Some(r.dev);
                }
                e.file = Some(f);
                e.groundtruth.fd = Some(r.fd);
                e.groundtruth.bytes_read = Some(r.bytes_read);
                e.groundtruth.bytes_written = Some(r.bytes_written);
                e.groundtruth.implicit = r.ev_flags & ev_flag::IMPLICIT_CLOSE != 0;
                e
            }
            op::RENAME | op::LINK | op::SYMLINK => {
                let (act, name) = match h.op {
                    op::RENAME => (activity::FILE_RENAME, "Rename"),
                    op::LINK => (activity::FILE_CREATE, "Link"),
                    _ => (activity::FILE_CREATE, "Symlink"),
                };
                let mut e = self.base(&r, class::FILE_SYSTEM_ACTIVITY, act, name);
                e.file = if h.op == op::SYMLINK {
                    // The target is data, not a path the kernel resolved.
                    rec.raw(0).map(|(t, tr)| FileRef {
                        path_requested: Some(t),
                        path_truncated: tr,
                        ..Default::default()
                    })
                } else {
                    rec.path_arg(0, &mut self.dirs)
                };
                e.file_result = rec.path_arg(2, &mut self.dirs).map(Box::new);
                e.groundtruth.flags = Some(r.flags);
                e
            }
            op::UNLINK | op::RMDIR | op::MKDIR | op::TRUNCATE | op::CHMOD | op::CHOWN => {
                let is_rmdir = h.op == op::RMDIR
                    || (h.op == op::UNLINK && r.flags & syscalls::AT_REMOVEDIR != 0);
                let (act, name) = match h.op {
                    _ if is_rmdir => (activity::FILE_DELETE, "Rmdir"),
                    op::UNLINK => (activity::FILE_DELETE, "Delete"),
                    op::MKDIR => (activity::FILE_CREATE, "Mkdir"),
                    op::TRUNCATE => (activity::FILE_UPDATE, "Truncate"),
                    op::CHMOD => (activity::FILE_SET_SECURITY, "Chmod"),
                    _ => (activity::FILE_SET_SECURITY, "Chown"),
                };
                let mut e = self.base(&r, class::FILE_SYSTEM_ACTIVITY, act, name);
                let f = rec.path_arg(0, &mut self.dirs);
                e.file = Some(file_with(&rec, f));
                match h.op {
                    op::MKDIR | op::CHMOD => e.groundtruth.mode = Some(r.arg_a as u32),
                    op::TRUNCATE => e.groundtruth.length = Some(r.arg_a as i64),
                    op::CHOWN => {
                        e.groundtruth.owner_uid = Some(r.arg_a as u32);
                        e.groundtruth.owner_gid = Some(r.arg_b as u32);
                    }
                    _ => {}
                }
                if r.fd >= 0 {
                    e.groundtruth.fd = Some(r.fd);
                }
                if r.flags != 0 {
                    e.groundtruth.flags = Some(r.flags);
                }
                e
            }
            op::NET_CONNECT | op::NET_ACCEPT | op::NET_CLOSE | op::NET_BIND | op::NET_LISTEN => {
                self.network(&rec)?
            }
            other => return Err(DecodeError::UnknownOp(other)),
        };
        Ok(ev)
    }

    /// A close the kernel did at process exit, reported by the agent from the kernel's
    /// descriptor state. `like` is the exit event of the process.
    pub fn implicit_close(
        &mut self,
        exit: &Event,
        fd: u32,
        bytes_read: u64,
        bytes_written: u64,
        inode: u64,
        dev: u64,
    ) -> Event {
        let mut f = self.fds.remove(&(exit.actor.pid, fd)).unwrap_or_default();
        if inode != 0 {
            f.inode = Some(inode);
            f.dev = Some(dev);
        }
        self.agent_seq += 1;
        Event {
            time_ns: exit.time_ns,
            class_uid: class::FILE_SYSTEM_ACTIVITY,
            activity_id: activity::OTHER,
            activity_name: "Close".into(),
            status_id: status::SUCCESS,
            actor: exit.actor.clone(),
            process: None,
            file: Some(f),
            file_result: None,
            network: None,
            start_time_ns: None,
            end_time_ns: None,
            groundtruth: Extra {
                cpu: AGENT_CPU,
                sequence: self.agent_seq - 1,
                cgroup_id: exit.groundtruth.cgroup_id,
                service: exit.groundtruth.service.clone(),
                fd: Some(fd as i32),
                bytes_read: Some(bytes_read),
                bytes_written: Some(bytes_written),
                implicit: true,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::EventHeader;

    #[test]
    fn ip_text_agrees_with_std() {
        for octet in 0..=255u8 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&[octet, 0, 255 - octet, octet / 3]);
            let v4 = std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            assert_eq!(ip_text(AF_INET, &b), v4.to_string());
            b[15] = octet;
            assert_eq!(
                ip_text(AF_INET6, &b),
                std::net::Ipv6Addr::from(b).to_string()
            );
        }
        assert_eq!(ip_text(AF_UNIX, &[1; 16]), "");
    }

    fn record(ev: &RawEvent, data: &[u8]) -> Vec<u8> {
        let mut ev = *ev;
        ev.data_len = data.len() as u32;
        // SAFETY: repr(C) plain data.
        let head = unsafe {
            std::slice::from_raw_parts(&ev as *const RawEvent as *const u8, RAW_EVENT_SIZE)
        };
        let mut v = head.to_vec();
        v.extend_from_slice(data);
        v
    }

    fn raw(op: u32) -> RawEvent {
        RawEvent {
            header: EventHeader {
                op,
                pid: 7,
                tid: 7,
                comm: *b"tester\0\0\0\0\0\0\0\0\0\0",
                ..Default::default()
            },
            fd: -1,
            ..Default::default()
        }
    }

    fn sref(off: usize, len: usize, kind: u8) -> StrRef {
        StrRef {
            off: off as u16,
            len: len as u16,
            kind,
            flags: 0,
            _pad: 0,
        }
    }

    fn net_record(op: u32, flags: u32, sk: u64, a: &NetAddrs) -> Vec<u8> {
        let mut ev = raw(op);
        ev.ev_flags = flags;
        ev.arg_b = sk;
        ev.strs[0] = sref(0, NET_ADDRS_SIZE, str_kind::NET);
        // SAFETY: NetAddrs is repr(C) plain integers.
        let bytes = unsafe {
            std::slice::from_raw_parts(a as *const NetAddrs as *const u8, NET_ADDRS_SIZE)
        };
        record(&ev, bytes)
    }

    #[test]
    fn accepted_connection_is_oriented_client_to_server_and_paired_with_its_close() {
        let mut d = Decoder::new(0, vec!["svc".into()]);
        let mut a = NetAddrs {
            family: AF_INET6,
            protocol: 6,
            local_port: 8080,
            remote_port: 40001,
            ..Default::default()
        };
        a.local[15] = 1;
        a.remote[15] = 1;
        let open = d
            .decode(&net_record(
                op::NET_ACCEPT,
                ev_flag::INBOUND,
                0xffff_8888,
                &a,
            ))
            .unwrap();
        let n = open.network.as_ref().unwrap();
        assert_eq!(
            (&*open.activity_name, n.direction_id),
            ("Open", direction::INBOUND)
        );
        assert_eq!(
            n.src.as_ref().unwrap().port,
            40001,
            "the client is the source"
        );
        assert_eq!(n.dst.as_ref().unwrap().ip, "::1");
        // At CLOSE the kernel has dropped the local port; the open's ends are used.
        let mut closing = a;
        closing.local_port = 0;
        let mut rec = net_record(op::NET_CLOSE, ev_flag::INBOUND, 0xffff_8888, &closing);
        // bytes_read (received) = 11, bytes_written (sent) = 22
        let mut ev = parse(&rec).unwrap().ev;
        ev.bytes_read = 11;
        ev.bytes_written = 22;
        let data = rec.split_off(RAW_EVENT_SIZE);
        rec = record(&ev, &data);
        let close = d.decode(&rec).unwrap();
        let c = close.network.as_ref().unwrap();
        assert_eq!(c.dst.as_ref().unwrap().port, 8080);
        assert_eq!(
            (c.bytes_out, c.bytes_in),
            (Some(11), Some(22)),
            "client to server = received"
        );
        assert_eq!(
            close.groundtruth.connection_id,
            open.groundtruth.connection_id
        );
        // A close of an unknown socket still decodes, with its own id.
        let other = d
            .decode(&net_record(op::NET_CLOSE, ev_flag::OUTBOUND, 0x1234, &a))
            .unwrap();
        assert_ne!(
            other.groundtruth.connection_id,
            open.groundtruth.connection_id
        );
        // Without its address block a network record is an error, not a panic.
        let mut bad = raw(op::NET_CONNECT);
        bad.strs[0] = sref(0, 3, str_kind::NET);
        assert_eq!(
            d.decode(&record(&bad, b"abc")).unwrap_err(),
            DecodeError::MissingAddress(op::NET_CONNECT)
        );
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(normalize("/a/./b/../c//d/"), "/a/c/d");
        assert_eq!(normalize("/../.."), "/");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize_owned("/a/./b/../c".into()), "/a/c");
        assert_eq!(normalize_owned("/a/b".into()), "/a/b");
    }

    #[test]
    fn open_uses_the_kernel_resolved_path_and_close_finds_it() {
        let mut d = Decoder::new(1000, vec!["svc".into()]);
        let mut ev = raw(op::OPEN);
        ev.ret = 3;
        ev.fd = 3;
        ev.inode = 99;
        ev.dev = 8;
        ev.syscall = syscalls::nr::OPENAT as u32;
        let data = b"x.txt\0x.txt\0dir\0tmp\0";
        ev.strs[0] = sref(0, 5, str_kind::RAW);
        ev.strs[2] = sref(5, data.len() - 5, str_kind::COMPONENTS);
        let e = d.decode(&record(&ev, data)).unwrap();
        let f = e.file.unwrap();
        assert_eq!(f.path.as_deref(), Some("/tmp/dir/x.txt"));
        assert_eq!(f.path_requested.as_deref(), Some("x.txt"));
        assert_eq!(f.inode, Some(99));
        assert_eq!(e.groundtruth.syscall.as_deref(), Some("openat"));
        assert_eq!(&*e.groundtruth.service, "svc");

        let mut c = raw(op::CLOSE);
        c.fd = 3;
        c.bytes_written = 12;
        let e = d.decode(&record(&c, b"")).unwrap();
        assert_eq!(e.file.unwrap().path.as_deref(), Some("/tmp/dir/x.txt"));
        assert_eq!(e.groundtruth.bytes_written, Some(12));
        assert!(d.open_fds(7).is_empty());
    }

    #[test]
    fn relative_path_is_joined_with_its_base() {
        let mut d = Decoder::new(0, vec![]);
        let mut ev = raw(op::UNLINK);
        let data = b"../b/./f\0work\0home\0";
        ev.strs[0] = sref(0, 8, str_kind::RAW);
        ev.strs[1] = sref(8, data.len() - 8, str_kind::COMPONENTS);
        let e = d.decode(&record(&ev, data)).unwrap();
        assert_eq!(e.file.unwrap().path.as_deref(), Some("/home/b/f"));
        assert_eq!(e.activity_name, "Delete");
    }

    #[test]
    fn base_directories_are_reused_only_when_the_same() {
        // One decoder, so the base directory of one row is the cached one of the next:
        // the same directory again, another one, the same bytes marked truncated, and
        // names that need normalising after a cached (normal) directory.
        let mut d = Decoder::new(0, vec![]);
        // (name, base directory's components, their flags, path, truncated)
        type Case = (&'static [u8], &'static [u8], u8, &'static str, bool);
        let cases: [Case; 8] = [
            (b"f", b"work\0home\0", 0, "/home/work/f", false),
            (b"g", b"work\0home\0", 0, "/home/work/g", false),
            (b"f", b"tmp\0", 0, "/tmp/f", false),
            (
                b"f",
                b"work\0home\0",
                str_flag::TRUNCATED,
                "/home/work/f",
                true,
            ),
            (b"f", b"work\0home\0", 0, "/home/work/f", false),
            (b"..", b"work\0home\0", 0, "/home", false),
            (b"a/../b", b"work\0home\0", 0, "/home/work/b", false),
            (b"", b"work\0home\0", 0, "/home/work", false),
        ];
        for (name, dir, flags, want, truncated) in cases {
            let mut ev = raw(op::UNLINK);
            let mut data = name.to_vec();
            data.extend_from_slice(dir);
            ev.strs[0] = sref(0, name.len(), str_kind::RAW);
            ev.strs[1] = sref(name.len(), dir.len(), str_kind::COMPONENTS);
            ev.strs[1].flags = flags;
            let f = d.decode(&record(&ev, &data)).unwrap().file.unwrap();
            assert_eq!(f.path.as_deref(), Some(want), "{name:?} in {dir:?}");
            assert_eq!(f.path_truncated, truncated, "{name:?} in {dir:?}");
        }
    }

    #[test]
    fn component_names_that_are_not_utf8_are_converted_lossily() {
        let mut d = Decoder::new(0, vec![]);
        for (components, want) in [
            // The base directory's components, innermost first; the path is `f`.
            (&b"caf\xc3\xa9\0srv\0"[..], "/srv/caf\u{e9}/f"),
            (&b"caf\xe9\0srv\0"[..], "/srv/caf\u{fffd}/f"),
            (&b"\xff\0\0/\0"[..], "/\u{fffd}/f"),
        ] {
            let mut ev = raw(op::UNLINK);
            let mut data = b"f\0".to_vec();
            data.extend_from_slice(components);
            ev.strs[0] = sref(0, 1, str_kind::RAW);
            ev.strs[1] = sref(2, components.len(), str_kind::COMPONENTS);
            let e = d.decode(&record(&ev, &data)).unwrap();
            assert_eq!(
                e.file.unwrap().path.as_deref(),
                Some(want),
                "{components:?}"
            );
        }
    }

    #[test]
    fn failed_open_carries_errno() {
        let mut d = Decoder::new(0, vec![]);
        let mut ev = raw(op::OPEN);
        ev.ret = -2;
        ev.strs[0] = sref(0, 8, str_kind::RAW);
        let e = d.decode(&record(&ev, b"/nothere")).unwrap();
        assert_eq!(e.groundtruth.errno, Some(2));
        assert_eq!(e.status_id, status::FAILURE);
        assert_eq!(e.file.unwrap().path.as_deref(), Some("/nothere"));
    }

    #[test]
    fn rows_after_a_process_exited_still_name_its_command() {
        let mut d = Decoder::new(0, vec![]);
        d.seed(
            7,
            Some("server --port 80".into()),
            Some("/usr/bin/server".into()),
        );
        d.decode(&record(&raw(op::EXIT), b"")).unwrap();
        let a = NetAddrs {
            family: AF_INET,
            protocol: 6,
            ..Default::default()
        };
        // A TCP connection of pid 7 closing after its exit, attributed to it.
        let close = d
            .decode(&net_record(op::NET_CLOSE, ev_flag::INBOUND, 0x42, &a))
            .unwrap();
        assert_eq!(close.actor.cmd_line.as_deref(), Some("server --port 80"));
        assert_eq!(&*close.actor.name, "tester");
        // A new process reusing the pid is not mistaken for the old one.
        let mut exec = raw(op::EXEC);
        exec.strs[1] = sref(0, 4, str_kind::ARGV);
        let e = d.decode(&record(&exec, b"new\0")).unwrap();
        assert_eq!(e.actor.cmd_line.as_deref(), Some("new"));
    }

    #[test]
    fn exit_status_words() {
        let mut d = Decoder::new(0, vec![]);
        let mut ev = raw(op::EXIT);
        ev.ret = 3 << 8;
        let p = d.decode(&record(&ev, b"")).unwrap().process.unwrap();
        assert_eq!((p.exit_code, p.exit_signal), (Some(3), None));
        ev.ret = 9;
        let p = d.decode(&record(&ev, b"")).unwrap().process.unwrap();
        assert_eq!((p.exit_code, p.exit_signal), (None, Some(9)));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let mut d = Decoder::new(0, vec![]);
        assert_eq!(d.decode(&[0u8; 10]).unwrap_err(), DecodeError::Short(10));
        let mut ev = raw(op::OPEN);
        ev.strs[0] = sref(4, 10, str_kind::RAW);
        assert!(matches!(
            d.decode(&record(&ev, b"abcd")),
            Err(DecodeError::StrOutOfBounds { .. })
        ));
        let mut bad = record(&raw(op::OPEN), b"");
        let o = std::mem::offset_of!(RawEvent, data_len);
        bad[o..o + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(d.decode(&bad).is_err());
        assert_eq!(
            d.decode(&record(&raw(12345), b"")).unwrap_err(),
            DecodeError::UnknownOp(12345)
        );
        // Random bytes of every length: never a panic.
        let mut x: u64 = 0x1234_5678;
        for len in 0..600 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = d.decode(&buf);
        }
    }
}
