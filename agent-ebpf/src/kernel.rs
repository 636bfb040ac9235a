//! Reading kernel structures with offsets from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE field relocations, so the agent resolves every field offset
//! from /sys/kernel/btf/vmlinux at start-up and writes them into `OFFSETS` (in .rodata,
//! so the verifier sees constants). Every read goes through `bpf_probe_read_kernel`:
//! a bad pointer gives an error, never a fault.

use agent_common::{KernelOffsets, OFFSETS_MAGIC};
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    magic: 0,
    task_real_parent: 0,
    task_tgid: 0,
    task_pid: 0,
    task_files: 0,
    task_fs: 0,
    task_mm: 0,
    task_signal: 0,
    task_exit_code: 0,
    signal_live: 0,
    files_fdt: 0,
    fdt_fd: 0,
    fdt_max_fds: 0,
    file_f_path: 0,
    file_f_inode: 0,
    file_f_mode: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_d_parent: 0,
    dentry_d_name_name: 0,
    dentry_d_inode: 0,
    inode_i_ino: 0,
    inode_i_sb: 0,
    sb_s_dev: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    vfsmount_mnt_root: 0,
    fs_pwd: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    bprm_file: 0,
    task_ti_status: 0,
    regs_nr: 0,
    regs_args: [0; 6],
    file_refcnt: 0,
    file_refcnt_bias: 0,
    file_private_data: 0,
    inode_i_mode: 0,
    socket_sk: 0,
    sk_family: 0,
    sk_state: 0,
    sk_num: 0,
    sk_dport: 0,
    sk_daddr: 0,
    sk_rcv_saddr: 0,
    sk_v6_daddr: 0,
    sk_v6_rcv_saddr: 0,
    sk_protocol: 0,
    sk_type: 0,
    sk_err: 0,
    tcp_bytes_received: 0,
    tcp_bytes_sent: 0,
    tcp_bytes_retrans: 0,
    sk_flags: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    cgroup_parent_css: 0,
    css_cgroup: 0,
    cgroup_root: 0,
    cgroup_root_hierarchy_id: 0,
    sk_peer_pid: 0,
    pid_numbers_nr: 0,
    unix_sock_addr: 0,
    unix_address_len: 0,
    unix_address_name: 0,
    unix_sock_peer: 0,
};

/// One offset, read so that the compiler cannot fold the all-zero initializer.
macro_rules! off {
    ($($field:tt)+) => {
        unsafe { core::ptr::read_volatile(&crate::kernel::OFFSETS.$($field)+) } as u64
    };
}
pub(crate) use off;

#[inline(always)]
pub fn ready() -> bool {
    off!(magic) == OFFSETS_MAGIC as u64
}

/// Read a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, offset: u64) -> Result<T, i64> {
    if base == 0 {
        return Err(-14);
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one gives an error.
    unsafe { bpf_probe_read_kernel((base + offset) as *const T).map_err(|e| e as i64) }
}

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_task() }
}

/// x86 `TS_COMPAT` in `thread_info.status`: the current syscall came through the 32-bit
/// table (its number and arguments follow the ia32 ABI).
const TS_COMPAT: u32 = 0x0002;

/// Whether `task`'s current syscall is a 32-bit one. Unreadable status counts as 64-bit.
#[inline(always)]
pub fn compat_syscall(task: u64) -> bool {
    read::<u32>(task, off!(task_ti_status)).is_ok_and(|s| s & TS_COMPAT != 0)
}

/// `task->real_parent->tgid`.
#[inline(always)]
pub fn ppid(task: u64) -> u32 {
    match read::<u64>(task, off!(task_real_parent)) {
        Ok(parent) => read::<u32>(parent, off!(task_tgid)).unwrap_or(0),
        Err(_) => 0,
    }
}

/// `struct file *` of descriptor `fd` of `task`.
#[inline(always)]
pub fn fd_file(task: u64, fd: u64) -> Result<u64, i64> {
    let files: u64 = read(task, off!(task_files))?;
    let fdt: u64 = read(files, off!(files_fdt))?;
    // `struct fdtable { unsigned int max_fds; struct file **fd; ... }`: both in one read
    // when they are 8 bytes apart (every kernel so far), else two.
    let (max_fds, array) = if off!(fdt_fd) == off!(fdt_max_fds) + 8 {
        let span: [u64; 2] = read(fdt, off!(fdt_max_fds))?;
        (span[0] as u32, span[1])
    } else {
        (
            read::<u32>(fdt, off!(fdt_max_fds))?,
            read(fdt, off!(fdt_fd))?,
        )
    };
    if fd >= max_fds as u64 {
        return Err(-9);
    }
    let file: u64 = read(array, fd * 8)?;
    if file == 0 {
        return Err(-9);
    }
    Ok(file)
}

/// (vfsmount, dentry) of a `struct path` at `base + offset`.
#[inline(always)]
pub fn path_at(base: u64, offset: u64) -> Result<(u64, u64), i64> {
    // `struct path { struct vfsmount *mnt; struct dentry *dentry; }`: one read.
    if off!(path_dentry) == off!(path_mnt) + 8 {
        let span: [u64; 2] = read(base, offset + off!(path_mnt))?;
        return Ok((span[0], span[1]));
    }
    let mnt: u64 = read(base, offset + off!(path_mnt))?;
    let dentry: u64 = read(base, offset + off!(path_dentry))?;
    Ok((mnt, dentry))
}

/// (vfsmount, dentry) of an open file.
#[inline(always)]
pub fn file_path(file: u64) -> Result<(u64, u64), i64> {
    path_at(file, off!(file_f_path))
}

/// (vfsmount, dentry) of the current directory of `task`.
#[inline(always)]
pub fn cwd(task: u64) -> Result<(u64, u64), i64> {
    let fs: u64 = read(task, off!(task_fs))?;
    path_at(fs, off!(fs_pwd))
}

/// References to an open file (descriptors in all fd tables, and temporary holders).
#[inline(always)]
pub fn file_refs(file: u64) -> Result<i64, i64> {
    let v: i64 = read(file, off!(file_refcnt))?;
    Ok(v + off!(file_refcnt_bias) as i64)
}

/// `FMODE_CREATED` (include/linux/fs.h: `1 << 20` since 4.19, unchanged through 6.18).
const FMODE_CREATED: u32 = 1 << 20;

/// Whether the open that made `file` created it.
#[inline(always)]
pub fn file_created(file: u64) -> bool {
    read::<u32>(file, off!(file_f_mode)).is_ok_and(|m| m & FMODE_CREATED != 0)
}

/// (inode number, device) of an open file.
#[inline(always)]
pub fn file_ino_dev(file: u64) -> (u64, u64) {
    let Ok(inode) = read::<u64>(file, off!(file_f_inode)) else {
        return (0, 0);
    };
    let ino = read::<u64>(inode, off!(inode_i_ino)).unwrap_or(0);
    let dev = match read::<u64>(inode, off!(inode_i_sb)) {
        Ok(sb) => read::<u32>(sb, off!(sb_s_dev)).unwrap_or(0) as u64,
        Err(_) => 0,
    };
    (ino, dev)
}

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// `struct sock *` of descriptor `fd` of `task`, if it is a socket.
#[inline(always)]
pub fn fd_sock(task: u64, fd: u64) -> Result<u64, i64> {
    file_sock(fd_file(task, fd)?)
}

/// `struct sock *` of an open file, if it is a socket.
#[inline(always)]
pub fn file_sock(file: u64) -> Result<u64, i64> {
    let inode: u64 = read(file, off!(file_f_inode))?;
    let mode: u16 = read(inode, off!(inode_i_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return Err(-88);
    }
    let socket: u64 = read(file, off!(file_private_data))?;
    read(socket, off!(socket_sk))
}

const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const SOCK_SEQPACKET: u16 = 5;

/// What groundtruth records of a socket, from its family and type.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SockClass {
    /// Stream over IPv4/IPv6.
    Tcp,
    /// Datagram over IPv4/IPv6.
    Udp,
    /// Unix stream or seqpacket.
    UnixStream,
    Other,
}

#[inline(always)]
pub fn classify(family: u16, ty: u16) -> SockClass {
    let inet = family == AF_INET || family == AF_INET6;
    match ty {
        SOCK_STREAM if inet => SockClass::Tcp,
        SOCK_DGRAM if inet => SockClass::Udp,
        SOCK_STREAM | SOCK_SEQPACKET if family == AF_UNIX => SockClass::UnixStream,
        _ => SockClass::Other,
    }
}

/// A `struct sockaddr` in the process's memory: family, port (host order) and address
/// (IPv4 in the first 4 bytes); `None` unless AF_INET or AF_INET6.
#[inline(always)]
pub fn user_sockaddr(addr: u64) -> Option<(u16, u16, [u8; 16])> {
    use aya_ebpf::helpers::bpf_probe_read_user;
    // SAFETY: user reads are checked by the helper.
    unsafe {
        let family: u16 = bpf_probe_read_user(addr as *const u16).ok()?;
        let port = u16::from_be(bpf_probe_read_user((addr + 2) as *const u16).unwrap_or(0));
        let mut ip = [0u8; 16];
        if family == AF_INET {
            let v4: [u8; 4] = bpf_probe_read_user((addr + 4) as *const [u8; 4]).unwrap_or([0; 4]);
            ip[..4].copy_from_slice(&v4);
        } else if family == AF_INET6 {
            ip = bpf_probe_read_user((addr + 8) as *const [u8; 16]).unwrap_or([0; 16]);
        } else {
            return None;
        }
        Some((family, port, ip))
    }
}

/// Family and type of a socket (what [`classify`] needs), one read fewer than
/// [`sock_kind`].
#[inline(always)]
pub fn sock_family_type(sk: u64) -> (u16, u16) {
    (
        read::<u16>(sk, off!(sk_family)).unwrap_or(0),
        read::<u16>(sk, off!(sk_type)).unwrap_or(0),
    )
}

/// Family, protocol, type (SOCK_STREAM 1, SOCK_DGRAM 2) of a socket.
#[inline(always)]
pub fn sock_kind(sk: u64) -> (u16, u16, u16) {
    (
        read::<u16>(sk, off!(sk_family)).unwrap_or(0),
        read::<u16>(sk, off!(sk_protocol)).unwrap_or(0),
        read::<u16>(sk, off!(sk_type)).unwrap_or(0),
    )
}

/// Both ends of an inet socket.
#[inline(always)]
pub fn sock_addrs(sk: u64) -> agent_common::NetAddrs {
    let (family, protocol, _) = sock_kind(sk);
    sock_addrs_of(sk, family, protocol)
}

/// Both ends of an inet socket whose family and protocol are known.
#[inline(always)]
pub fn sock_addrs_of(sk: u64, family: u16, protocol: u16) -> agent_common::NetAddrs {
    let mut a = agent_common::NetAddrs {
        family,
        protocol,
        local_port: read::<u16>(sk, off!(sk_num)).unwrap_or(0),
        remote_port: u16::from_be(read::<u16>(sk, off!(sk_dport)).unwrap_or(0)),
        ..Default::default()
    };
    if family == AF_INET6 {
        a.local = read::<[u8; 16]>(sk, off!(sk_v6_rcv_saddr)).unwrap_or([0; 16]);
        a.remote = read::<[u8; 16]>(sk, off!(sk_v6_daddr)).unwrap_or([0; 16]);
    } else {
        let l = read::<[u8; 4]>(sk, off!(sk_rcv_saddr)).unwrap_or([0; 4]);
        let r = read::<[u8; 4]>(sk, off!(sk_daddr)).unwrap_or([0; 4]);
        a.local[..4].copy_from_slice(&l);
        a.remote[..4].copy_from_slice(&r);
    }
    a
}

/// The pid the kernel recorded for a socket's peer (SO_PEERCRED), 0 if none.
#[inline(always)]
pub fn peer_pid(sk: u64) -> u32 {
    match read::<u64>(sk, off!(sk_peer_pid)) {
        Ok(pid) if pid != 0 => read::<u32>(pid, off!(pid_numbers_nr)).unwrap_or(0),
        _ => 0,
    }
}
