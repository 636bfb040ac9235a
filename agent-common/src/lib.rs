//! The event ABI shared by groundtruth's kernel programs (`agent-ebpf`) and the agent.
//!
//! Everything that crosses the kernel/user boundary is `#[repr(C)]`, made of integers only
//! (no `bool`, no Rust enums: the kernel side may write any bit pattern and userspace must
//! never trust it to be a valid enum), with explicit padding and sizes asserted at compile
//! time. Userspace decodes with length checks (see `agent::decode`).
//!
//! An event in the ring buffer is a [`RawEvent`] followed by `data_len` bytes of string
//! data. Up to [`MAX_STRS`] strings are described by [`StrRef`]s in the fixed part.
#![no_std]

pub mod syscalls;

/// Event kinds. Ids live in reserved ranges and are never reused:
/// 1..=99 file, 100..=199 process, 200..=299 network.
pub mod op {
    pub const OPEN: u32 = 1;
    pub const CLOSE: u32 = 2;
    pub const RENAME: u32 = 3;
    pub const UNLINK: u32 = 4;
    pub const MKDIR: u32 = 5;
    pub const RMDIR: u32 = 6;
    pub const TRUNCATE: u32 = 7;
    pub const CHMOD: u32 = 8;
    pub const CHOWN: u32 = 9;
    pub const LINK: u32 = 10;
    pub const SYMLINK: u32 = 11;
    /// A tracked process used a descriptor it did not open itself (dup/dup2/fcntl,
    /// inherited across fork, received over a unix socket) on a file a tracked process
    /// opened: from here on its bytes are counted, and its close is reported.
    pub const ACQUIRE: u32 = 12;

    pub const EXEC: u32 = 100;
    pub const FORK: u32 = 101;
    pub const EXIT: u32 = 102;

    /// connect() of a TCP socket: its result (`ret`, negative errno), or for a
    /// non-blocking connect the outcome when the handshake ends.
    pub const NET_CONNECT: u32 = 200;
    /// accept()/accept4() returned a TCP connection.
    pub const NET_ACCEPT: u32 = 201;
    /// A TCP connection the process tree opened reached CLOSE: bytes each way.
    pub const NET_CLOSE: u32 = 202;
    /// bind() of an inet socket (address as requested).
    pub const NET_BIND: u32 = 203;
    /// listen() on an inet socket (address as bound).
    pub const NET_LISTEN: u32 = 204;
    /// A tracked process closed a UDP socket (`arg_b`: the socket): the agent reports
    /// that socket's flows from the `FLOWS` map. Not an event of the trail itself.
    pub const NET_UDP_CLOSE: u32 = 205;
}

/// Bits of [`RawEvent::ev_flags`].
pub mod ev_flag {
    /// A close that the kernel did implicitly (descriptor reused after exec closed it, or
    /// process exit), reported by the agent rather than by a `close()` call.
    pub const IMPLICIT_CLOSE: u32 = 1 << 0;
    /// The open created the file (the kernel set `FMODE_CREATED` on it: O_CREAT and
    /// the name did not exist).
    pub const CREATED: u32 = 1 << 1;
    /// Network: the connection was opened by this side (connect).
    pub const OUTBOUND: u32 = 1 << 2;
    /// Network: the connection was accepted by this side.
    pub const INBOUND: u32 = 1 << 3;
    /// Network close: a reset was received / sent on the connection.
    pub const RESET_RECEIVED: u32 = 1 << 4;
    pub const RESET_SENT: u32 = 1 << 5;
}

/// What a string slot holds.
pub mod str_kind {
    /// Slot unused.
    pub const NONE: u8 = 0;
    /// A path resolved in the kernel from a dentry: components leaf first, each followed
    /// by a NUL byte. The root is implicit.
    pub const COMPONENTS: u8 = 1;
    /// Bytes copied from the process (a path argument as passed to the syscall), no NUL.
    pub const RAW: u8 = 2;
    /// argv: arguments each followed by a NUL byte, as laid out in the process's memory.
    pub const ARGV: u8 = 3;
    /// A [`NetAddrs`] (40 bytes).
    pub const NET: u8 = 4;
    /// A unix socket address: `sun_path` bytes as the kernel has them (a leading NUL
    /// byte marks an abstract name).
    pub const UNIX_PATH: u8 = 5;
}

/// Both ends of an inet socket, as the kernel has them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetAddrs {
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// IPPROTO_TCP (6), IPPROTO_UDP (17).
    pub protocol: u16,
    /// Host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    /// IPv4 in the first 4 bytes, network order.
    pub local: [u8; 16],
    pub remote: [u8; 16],
}
pub const NET_ADDRS_SIZE: usize = core::mem::size_of::<NetAddrs>();
const _: () = assert!(NET_ADDRS_SIZE == 40);

/// Who owns a TCP socket a tracked process connected or accepted: events about the
/// socket that happen outside the process's context (state changes in softirq) are
/// attributed to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockOwner {
    pub tgid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub service: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    /// [`ev_flag`] bits: direction, resets seen.
    pub flags: u32,
    /// 1 while a non-blocking connect waits for its handshake.
    pub pending_connect: u32,
}

/// Bits of [`StrRef::flags`].
pub mod str_flag {
    /// The string was cut at the bound (for components: the walk stopped before the root).
    pub const TRUNCATED: u8 = 1 << 0;
    /// Reading the string from memory failed.
    pub const READ_ERROR: u8 = 1 << 1;
}

/// Slots of string data in an event (meaning depends on the op; see `agent::decode`).
pub const MAX_STRS: usize = 4;
/// Capacity of the string data area. A power of two: the kernel side masks offsets with
/// `DATA_CAP - 1` so that the verifier can bound every write.
pub const DATA_CAP: usize = 8192;
/// Slack after the data area, so that a masked offset plus one bounded read stays inside.
pub const DATA_SLACK: usize = 4096;
/// Longest single path component read (NAME_MAX + NUL).
pub const NAME_CAP: usize = 256;
/// Longest path argument copied from the process.
pub const USER_PATH_CAP: usize = 4096;
/// Most argv bytes kept for an exec.
pub const ARGV_CAP: usize = 2048;
/// Most dentries walked for one path (deeper paths are marked truncated).
pub const MAX_DEPTH: u32 = 48;
pub const COMM_LEN: usize = 16;

/// Values of the `TRACKED` map (thread group id -> value): the service index, and the
/// [`tracked::SOCKETS`] bit.
pub mod tracked {
    /// The process may hold a UDP or unix stream socket. Only then do the programs find
    /// out which kind of socket a sendto/recvfrom/sendmsg/recvmsg/mmsg call, or a read
    /// or write on a descriptor that is not a file the process opened, went through
    /// (about ten kernel reads per call); TCP needs none of that (its bytes are read
    /// from the socket at close). Set when a tracked process creates any socket but a
    /// TCP one (socket, socketpair), takes another process's descriptor (pidfd_getfd)
    /// or sets up io_uring (which creates descriptors without syscalls); inherited by
    /// children; shared by processes sharing one descriptor table (clone with
    /// CLONE_FILES); and set from the start for processes whose descriptors were
    /// opened before tracking began (attached pids, cgroups, selected executables and
    /// names), unless the agent saw them all (the command it launches, whose inherited
    /// descriptors it checks). Descriptors received over a unix socket (SCM_RIGHTS)
    /// need a unix socket, which already set it. Never cleared.
    pub const SOCKETS: u32 = 1 << 31;
    /// The service index bits.
    pub const SERVICE: u32 = !SOCKETS;
}

/// Where one string lives in the data area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrRef {
    pub off: u16,
    pub len: u16,
    /// One of [`str_kind`].
    pub kind: u8,
    /// Bits of [`str_flag`].
    pub flags: u8,
    pub _pad: u16,
}

/// Common header of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// One of [`op`].
    pub op: u32,
    /// CPU the event was produced on.
    pub cpu: u32,
    /// Per-CPU sequence number. Incremented for every event, including those that could
    /// not be delivered, so a gap in a CPU's sequence proves a loss.
    pub seq: u64,
    /// `bpf_ktime_get_boot_ns()`; the agent converts to wall-clock time.
    pub boot_ns: u64,
    /// Thread group id (the process id users see).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Index of the service label (value of the tracking map).
    pub service: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// One event as written into the ring buffer, followed by `data_len` bytes of strings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEvent {
    pub header: EventHeader,
    /// Syscall number (x86_64) that produced it, 0 for scheduler events.
    pub syscall: u32,
    /// Bits of [`ev_flag`].
    pub ev_flags: u32,
    /// Syscall return value (negative errno on failure); exit status word for EXIT.
    pub ret: i64,
    /// Open flags, rename flags, unlinkat flags, linkat flags.
    pub flags: u64,
    /// Mode (open, mkdir, chmod), length (truncate), new uid (chown), child pid (fork).
    pub arg_a: u64,
    /// New gid (chown), child tid (fork).
    pub arg_b: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub inode: u64,
    pub dev: u64,
    /// File descriptor the event is about (open result, close, f* syscalls), else -1.
    pub fd: i32,
    pub data_len: u32,
    pub strs: [StrRef; MAX_STRS],
}

pub const RAW_EVENT_SIZE: usize = core::mem::size_of::<RawEvent>();
const _: () = assert!(core::mem::size_of::<EventHeader>() == 72);
// The agent reads a record's kind from its first four bytes (`agent::decode::op_of`).
const _: () = assert!(core::mem::offset_of!(RawEvent, header) == 0);
const _: () = assert!(core::mem::offset_of!(EventHeader, op) == 0);
const _: () = assert!(RAW_EVENT_SIZE == 72 + 8 + 8 * 8 + 8 + 8 * MAX_STRS);

/// The kernel scratch buffer: one event plus its data area.
#[repr(C)]
pub struct EventBuf {
    pub ev: RawEvent,
    pub data: [u8; DATA_CAP + DATA_SLACK],
}

/// Per (process, descriptor) state kept by the kernel for files opened by tracked
/// processes: the bytes that went through the descriptor, and the `struct file` it
/// refers to (to notice a descriptor number that now refers to another file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FdState {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub inode: u64,
    pub dev: u64,
    pub file: u64,
}

/// An open file (`struct file`) that a tracked process opened, by address: lets a
/// descriptor the process tree got by dup or inheritance be recognised as that file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileInfo {
    pub inode: u64,
    pub dev: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdKey {
    pub pid: u32,
    pub fd: u32,
}

/// Counters kept per CPU in the `STATS` map.
pub mod stat {
    /// Events that could not be written into the ring buffer (full).
    pub const LOST: u32 = 0;
    /// Events whose string data could not be read (still delivered, with a flag).
    pub const READ_ERRORS: u32 = 1;
    /// File, close and read/write syscalls of tracked processes made through the 32-bit
    /// (ia32) syscall table (`int 0x80`, 32-bit programs): not decoded, only counted.
    pub const COMPAT_SYSCALLS: u32 = 2;
    /// Descriptor states that could not be stored (map full): bytes of those files are
    /// not counted.
    pub const FD_FULL: u32 = 3;
    /// Processes that could not be added to the tracking map (full).
    pub const TRACK_FULL: u32 = 4;
    /// Connections whose owner could not be stored (map full): their close is not
    /// reported.
    pub const SOCK_FULL: u32 = 5;
    /// UDP flows that could not be stored (map full): their datagrams are not counted.
    pub const FLOW_FULL: u32 = 6;
    /// Messages of sendmmsg/recvmmsg calls beyond the first 8 of a call: counted here,
    /// not in their flows.
    pub const MMSG_BEYOND_8: u32 = 7;
    /// `sys_exit` runs of tracked processes whose tail call into the part for that
    /// syscall failed (the part missing from `SYS_EXIT_PARTS`): that syscall's event
    /// is missing.
    pub const TAIL_CALL_FAILED: u32 = 8;
    pub const COUNT: u32 = 9;
}

/// Kernel structure field offsets, read by the agent from the running kernel's BTF and
/// written into the programs' `.rodata` before load. Never compiled in for one kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Set to [`OFFSETS_MAGIC`] by the agent; programs do nothing while it is not.
    pub magic: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_files: u32,
    pub task_fs: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    pub signal_live: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    /// `file.f_mode` (`FMODE_CREATED`: the open created the file).
    pub file_f_mode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name_name: u32,
    pub dentry_d_inode: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub fs_pwd: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub bprm_file: u32,
    /// `task_struct.thread_info.status` (x86: `TS_COMPAT` marks a 32-bit syscall).
    pub task_ti_status: u32,
    /// `struct pt_regs` fields holding the syscall number and arguments (x86_64:
    /// `orig_ax`; di, si, dx, r10, r8, r9).
    pub regs_nr: u32,
    pub regs_args: [u32; 6],
    /// `file.f_ref` (6.13+: `file_ref_t`, holds references - 1) or `file.f_count`
    /// (before: `atomic_long_t`, holds references); `file_refcnt_bias` is 1 or 0.
    pub file_refcnt: u32,
    pub file_refcnt_bias: u32,
    /// Sockets: `file.private_data` (the `struct socket`), `inode.i_mode`, `socket.sk`.
    pub file_private_data: u32,
    pub inode_i_mode: u32,
    pub socket_sk: u32,
    /// `struct sock` (`__sk_common` fields and others).
    pub sk_family: u32,
    pub sk_state: u32,
    pub sk_num: u32,
    pub sk_dport: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_protocol: u32,
    pub sk_type: u32,
    pub sk_err: u32,
    /// `struct tcp_sock` byte counters: `bytes_received` counts the peer's FIN too
    /// (corrected with `SOCK_DONE` in `sock.sk_flags`), `bytes_sent` counts payload
    /// transmissions including retransmissions (`bytes_retrans`).
    pub tcp_bytes_received: u32,
    pub tcp_bytes_sent: u32,
    pub tcp_bytes_retrans: u32,
    pub sk_flags: u32,
    /// cgroups: `cgroup.kn`, `kernfs_node.id`, `cgroup.self.parent`,
    /// `cgroup_subsys_state.cgroup`, `cgroup.root`, `cgroup_root.hierarchy_id` (0 is
    /// the cgroup v2 hierarchy).
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub cgroup_parent_css: u32,
    pub css_cgroup: u32,
    pub cgroup_root: u32,
    pub cgroup_root_hierarchy_id: u32,
    /// Unix sockets: `sock.sk_peer_pid`, `pid.numbers[0].nr`, `unix_sock.addr`,
    /// `unix_address.len`, `unix_address.name`, `unix_sock.peer`.
    pub sk_peer_pid: u32,
    pub pid_numbers_nr: u32,
    pub unix_sock_addr: u32,
    pub unix_address_len: u32,
    pub unix_address_name: u32,
    pub unix_sock_peer: u32,
}

/// A unix domain stream socket a tracked process connected or accepted: owner, and
/// the bytes that went through it (counted at each read/write/send/recv).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixConn {
    pub owner: SockOwner,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The peer's pid as the kernel recorded it (SO_PEERCRED), 0 if unknown.
    pub peer_pid: u32,
    pub fd: i32,
}

/// A UDP flow: one socket of one process and one remote address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The socket (kernel address; never written to the trail).
    pub sk: u64,
    pub tgid: u32,
    pub family: u16,
    /// Host byte order.
    pub remote_port: u16,
    pub remote: [u8; 16],
}

/// Datagrams and bytes of a [`FlowKey`], aggregated in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Flow {
    pub first_ns: u64,
    pub last_ns: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub local: [u8; 16],
    pub local_port: u16,
    /// 1 if the flow's first datagram was sent, 0 if received.
    pub first_out: u16,
    pub _pad: u32,
    pub owner: SockOwner,
}

/// An executable file, for `exe:` service selectors: device (kernel encoding) and inode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeKey {
    pub dev: u64,
    pub ino: u64,
}

pub const OFFSETS_MAGIC: u32 = 0x6774_0001;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C) structs of integers with explicit padding: every bit
    // pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::FdState {}
    unsafe impl aya::Pod for super::FdKey {}
    unsafe impl aya::Pod for super::FileInfo {}
    unsafe impl aya::Pod for super::SockOwner {}
    unsafe impl aya::Pod for super::ExeKey {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::Flow {}
    unsafe impl aya::Pod for super::UnixConn {}
}
