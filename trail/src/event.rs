//! The event model: one row of the trail, in the shape of the OCSF-aligned schema.

use serde::{Deserialize, Serialize};
use std::{borrow::Cow, sync::Arc};

/// Text that repeats across many events (process names, command lines, service labels):
/// shared, so that an event costs a reference count, not an allocation.
pub type Shared = Arc<str>;
/// Text that is usually a constant (activity and syscall names).
pub type Label = Cow<'static, str>;

/// OCSF classes.
pub mod class {
    pub const FILE_SYSTEM_ACTIVITY: i32 = 1001;
    pub const PROCESS_ACTIVITY: i32 = 1007;
    pub const NETWORK_ACTIVITY: i32 = 4001;

    /// OCSF category of a class (1 System Activity, 4 Network Activity).
    pub fn category(class_uid: i32) -> i32 {
        class_uid / 1000
    }
}

/// OCSF activity ids used by groundtruth (per class).
pub mod activity {
    // File System Activity (1001)
    pub const FILE_CREATE: i32 = 1;
    pub const FILE_UPDATE: i32 = 3;
    pub const FILE_DELETE: i32 = 4;
    pub const FILE_RENAME: i32 = 5;
    pub const FILE_SET_SECURITY: i32 = 7;
    pub const FILE_OPEN: i32 = 14;
    // Network Activity (4001)
    pub const NET_OPEN: i32 = 1;
    pub const NET_CLOSE: i32 = 2;
    pub const NET_RESET: i32 = 3;
    pub const NET_FAIL: i32 = 4;
    pub const NET_REFUSE: i32 = 5;
    pub const NET_TRAFFIC: i32 = 6;
    pub const NET_LISTEN: i32 = 7;
    // Process Activity (1007)
    pub const PROCESS_LAUNCH: i32 = 1;
    pub const PROCESS_TERMINATE: i32 = 2;
    /// OCSF "Other", with `activity_name` saying which.
    pub const OTHER: i32 = 99;
}

/// OCSF status ids.
pub mod status {
    pub const SUCCESS: i32 = 1;
    pub const FAILURE: i32 = 2;
}

/// The process that did something.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Kernel `comm` (at most 15 bytes).
    pub name: Shared,
    /// Command line of the process's latest exec seen in this trail.
    pub cmd_line: Option<Shared>,
    /// Executable of the process's latest exec seen in this trail.
    pub exe: Option<Shared>,
    pub ppid: u32,
}

/// The process a process event is about (the new image, the child, the exited process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetProcess {
    pub pid: u32,
    pub name: Option<Shared>,
    pub cmd_line: Option<Shared>,
    pub exe: Option<Shared>,
    pub cwd: Option<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub args_truncated: bool,
}

/// A file a file event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Absolute path (see docs/schema.md for how it is resolved).
    pub path: Option<String>,
    /// The path argument exactly as the process passed it.
    pub path_requested: Option<String>,
    pub inode: Option<u64>,
    pub dev: Option<u64>,
    /// The path could not be resolved completely (too deep, too long, unreadable).
    pub path_truncated: bool,
}

/// One end of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// IPv4 dotted or IPv6 text form.
    pub ip: String,
    pub port: u16,
}

/// OCSF direction ids.
pub mod direction {
    pub const UNKNOWN: i32 = 0;
    pub const INBOUND: i32 = 1;
    pub const OUTBOUND: i32 = 2;
}

/// A network event's connection, OCSF-style: `src` is the side that initiated it (the
/// client), `dst` the side that accepted it (for Listen and Bind: the local address,
/// and no `src`); `bytes_out` went from src to dst.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub src: Option<Endpoint>,
    pub dst: Option<Endpoint>,
    /// `tcp`, `udp`.
    pub protocol_name: Label,
    /// Seen from the recorded process: [`direction`].
    pub direction_id: i32,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    /// UDP Traffic: datagrams each way.
    pub packets_in: Option<u64>,
    pub packets_out: Option<u64>,
}

/// What OCSF lacks: capture bookkeeping and syscall details.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extra {
    pub cpu: u32,
    pub sequence: u64,
    pub cgroup_id: u64,
    pub service: Shared,
    pub syscall: Option<Label>,
    pub ret: Option<i64>,
    pub errno: Option<i32>,
    pub flags: Option<u64>,
    pub mode: Option<u32>,
    pub owner_uid: Option<u32>,
    pub owner_gid: Option<u32>,
    pub length: Option<i64>,
    pub fd: Option<i32>,
    pub bytes_read: Option<u64>,
    pub bytes_written: Option<u64>,
    /// A close done by the kernel (exec of O_CLOEXEC, exit, dup2), not by close().
    pub implicit: bool,
    /// Network: the same number on a connection's open and close events (per run).
    pub connection_id: Option<u64>,
    /// Unix sockets: the socket's address (a path, or `@name` for an abstract one).
    pub socket_path: Option<String>,
    /// Unix sockets: the peer's pid as the kernel recorded it (SO_PEERCRED).
    pub peer_pid: Option<u32>,
    /// File Open: the open created the file (it did not exist; `FMODE_CREATED`).
    #[serde(default)]
    pub created: bool,
}

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, nanoseconds since the Unix epoch (UTC).
    pub time_ns: i64,
    pub class_uid: i32,
    pub activity_id: i32,
    pub activity_name: Label,
    pub status_id: i32,
    pub actor: Actor,
    /// Boxed, like `network`: few events have one, and every event is moved several
    /// times between decoding and the writer (an inline one made each event 240 bytes
    /// larger).
    pub process: Option<Box<TargetProcess>>,
    pub file: Option<FileRef>,
    /// The second path of rename/link/symlink (the new name).
    /// Boxed: only renames and links have one.
    pub file_result: Option<Box<FileRef>>,
    /// Network events: endpoints, protocol, direction, bytes.
    pub network: Option<Box<Network>>,
    /// Aggregated events (UDP Traffic): the first and last datagram's time, ns UTC.
    pub start_time_ns: Option<i64>,
    pub end_time_ns: Option<i64>,
    pub groundtruth: Extra,
}

impl Event {
    pub fn category_uid(&self) -> i32 {
        class::category(self.class_uid)
    }

    /// OCSF `type_uid` = class_uid * 100 + activity_id.
    pub fn type_uid(&self) -> i64 {
        self.class_uid as i64 * 100 + self.activity_id as i64
    }
}
