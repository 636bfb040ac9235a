//! Which syscalls are traced and where their arguments are, for x86_64.
//!
//! One kernel program handles the entry of every traced file syscall and one handles the
//! exit; both dispatch on the syscall number through [`spec`]. Userspace uses the same
//! table to name syscalls and to attach the tracepoints.

use crate::op;

/// No argument.
pub const NONE: i8 = -1;
/// Path relative to the current directory (no dirfd argument).
pub const CWD: i8 = -2;
/// The path is data (a symlink's target), never resolved.
pub const NO_BASE: i8 = -3;

/// A path argument: which argument holds the directory descriptor and which the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathArg {
    /// Index of the dirfd argument, or [`CWD`], or [`NO_BASE`].
    pub dirfd: i8,
    /// Index of the path argument, or [`NONE`].
    pub path: i8,
}

const NO_PATH: PathArg = PathArg {
    dirfd: CWD,
    path: NONE,
};
const fn cwd(path: i8) -> PathArg {
    PathArg { dirfd: CWD, path }
}
const fn at(dirfd: i8, path: i8) -> PathArg {
    PathArg { dirfd, path }
}

/// Where a traced syscall keeps what we record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub op: u32,
    pub name: &'static str,
    pub path1: PathArg,
    pub path2: PathArg,
    /// Argument holding a file descriptor the syscall acts on (f* calls).
    pub fd_arg: i8,
    pub flags_arg: i8,
    /// Flags implied by the syscall itself (creat = O_CREAT|O_WRONLY|O_TRUNC).
    pub fixed_flags: u64,
    /// Mode for open/mkdir/chmod, length for truncate, uid for chown.
    pub a_arg: i8,
    /// gid for chown.
    pub b_arg: i8,
    /// openat2: the flags and mode are in a `struct open_how` at this argument.
    pub open_how_arg: i8,
}

const BASE: Spec = Spec {
    op: 0,
    name: "",
    path1: NO_PATH,
    path2: NO_PATH,
    fd_arg: NONE,
    flags_arg: NONE,
    fixed_flags: 0,
    a_arg: NONE,
    b_arg: NONE,
    open_how_arg: NONE,
};

pub const O_WRONLY: u64 = 0o1;
pub const O_RDWR: u64 = 0o2;
pub const O_CREAT: u64 = 0o100;
pub const O_TRUNC: u64 = 0o1000;
pub const O_CLOEXEC: u64 = 0o2000000;
pub const AT_REMOVEDIR: u64 = 0x200;

pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const PREAD64: u64 = 17;
    pub const PWRITE64: u64 = 18;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const SENDFILE: u64 = 40;
    pub const SOCKET: u64 = 41;
    pub const CONNECT: u64 = 42;
    pub const ACCEPT: u64 = 43;
    pub const BIND: u64 = 49;
    pub const LISTEN: u64 = 50;
    pub const SOCKETPAIR: u64 = 53;
    pub const SENDTO: u64 = 44;
    pub const RECVFROM: u64 = 45;
    pub const SENDMSG: u64 = 46;
    pub const RECVMSG: u64 = 47;
    pub const RECVMMSG: u64 = 299;
    pub const SENDMMSG: u64 = 307;
    pub const TRUNCATE: u64 = 76;
    pub const FTRUNCATE: u64 = 77;
    pub const RENAME: u64 = 82;
    pub const MKDIR: u64 = 83;
    pub const RMDIR: u64 = 84;
    pub const CREAT: u64 = 85;
    pub const LINK: u64 = 86;
    pub const UNLINK: u64 = 87;
    pub const SYMLINK: u64 = 88;
    pub const CHMOD: u64 = 90;
    pub const FCHMOD: u64 = 91;
    pub const CHOWN: u64 = 92;
    pub const FCHOWN: u64 = 93;
    pub const LCHOWN: u64 = 94;
    pub const OPENAT: u64 = 257;
    pub const MKDIRAT: u64 = 258;
    pub const FCHOWNAT: u64 = 260;
    pub const UNLINKAT: u64 = 263;
    pub const RENAMEAT: u64 = 264;
    pub const LINKAT: u64 = 265;
    pub const SYMLINKAT: u64 = 266;
    pub const FCHMODAT: u64 = 268;
    pub const SPLICE: u64 = 275;
    pub const PREADV: u64 = 295;
    pub const PWRITEV: u64 = 296;
    pub const RENAMEAT2: u64 = 316;
    pub const COPY_FILE_RANGE: u64 = 326;
    pub const ACCEPT4: u64 = 288;
    pub const PREADV2: u64 = 327;
    pub const PWRITEV2: u64 = 328;
    pub const IO_URING_SETUP: u64 = 425;
    pub const OPENAT2: u64 = 437;
    pub const PIDFD_GETFD: u64 = 438;
    pub const FCHMODAT2: u64 = 452;
}

/// Syscalls whose successful return adds to a descriptor's bytes read.
pub const READ_SYSCALLS: [(&str, u64); 5] = [
    ("read", nr::READ),
    ("pread64", nr::PREAD64),
    ("readv", nr::READV),
    ("preadv", nr::PREADV),
    ("preadv2", nr::PREADV2),
];
/// Syscalls whose successful return adds to a descriptor's bytes written.
pub const WRITE_SYSCALLS: [(&str, u64); 5] = [
    ("write", nr::WRITE),
    ("pwrite64", nr::PWRITE64),
    ("writev", nr::WRITEV),
    ("pwritev", nr::PWRITEV),
    ("pwritev2", nr::PWRITEV2),
];

/// Syscalls that move bytes from one descriptor to another in the kernel: the result is
/// added to the bytes read of the source and the bytes written of the destination
/// (sendfile(out, in, ..): arguments 1 and 0; splice and copy_file_range(in, .., out,
/// ..): arguments 0 and 2).
pub const TRANSFER_SYSCALLS: [(&str, u64); 3] = [
    ("sendfile", nr::SENDFILE),
    ("splice", nr::SPLICE),
    ("copy_file_range", nr::COPY_FILE_RANGE),
];

/// Socket syscalls that produce network events.
pub const NET_SYSCALLS: [(&str, u64); 11] = [
    ("connect", nr::CONNECT),
    ("accept", nr::ACCEPT),
    ("accept4", nr::ACCEPT4),
    ("bind", nr::BIND),
    ("listen", nr::LISTEN),
    ("sendto", nr::SENDTO),
    ("recvfrom", nr::RECVFROM),
    ("sendmsg", nr::SENDMSG),
    ("recvmsg", nr::RECVMSG),
    ("sendmmsg", nr::SENDMMSG),
    ("recvmmsg", nr::RECVMMSG),
];

/// Every traced file syscall (besides read/write/close), by number.
pub const FILE_SYSCALLS: [u64; 26] = [
    nr::OPEN,
    nr::OPENAT,
    nr::OPENAT2,
    nr::CREAT,
    nr::RENAME,
    nr::RENAMEAT,
    nr::RENAMEAT2,
    nr::UNLINK,
    nr::UNLINKAT,
    nr::MKDIR,
    nr::MKDIRAT,
    nr::RMDIR,
    nr::TRUNCATE,
    nr::FTRUNCATE,
    nr::CHMOD,
    nr::FCHMOD,
    nr::FCHMODAT,
    nr::FCHMODAT2,
    nr::CHOWN,
    nr::FCHOWN,
    nr::LCHOWN,
    nr::FCHOWNAT,
    nr::LINK,
    nr::LINKAT,
    nr::SYMLINK,
    nr::SYMLINKAT,
];

/// The table. `None` for syscalls that are not traced as file events.
#[inline(always)]
pub const fn spec(n: u64) -> Option<Spec> {
    let s = match n {
        nr::OPEN => Spec {
            op: op::OPEN,
            name: "open",
            path1: cwd(0),
            flags_arg: 1,
            a_arg: 2,
            ..BASE
        },
        nr::OPENAT => Spec {
            op: op::OPEN,
            name: "openat",
            path1: at(0, 1),
            flags_arg: 2,
            a_arg: 3,
            ..BASE
        },
        nr::OPENAT2 => Spec {
            op: op::OPEN,
            name: "openat2",
            path1: at(0, 1),
            open_how_arg: 2,
            ..BASE
        },
        nr::CREAT => Spec {
            op: op::OPEN,
            name: "creat",
            path1: cwd(0),
            fixed_flags: O_CREAT | O_WRONLY | O_TRUNC,
            a_arg: 1,
            ..BASE
        },
        nr::RENAME => Spec {
            op: op::RENAME,
            name: "rename",
            path1: cwd(0),
            path2: cwd(1),
            ..BASE
        },
        nr::RENAMEAT => Spec {
            op: op::RENAME,
            name: "renameat",
            path1: at(0, 1),
            path2: at(2, 3),
            ..BASE
        },
        nr::RENAMEAT2 => Spec {
            op: op::RENAME,
            name: "renameat2",
            path1: at(0, 1),
            path2: at(2, 3),
            flags_arg: 4,
            ..BASE
        },
        nr::UNLINK => Spec {
            op: op::UNLINK,
            name: "unlink",
            path1: cwd(0),
            ..BASE
        },
        // unlinkat(AT_REMOVEDIR) is an rmdir: the agent reclassifies it from the flags.
        nr::UNLINKAT => Spec {
            op: op::UNLINK,
            name: "unlinkat",
            path1: at(0, 1),
            flags_arg: 2,
            ..BASE
        },
        nr::MKDIR => Spec {
            op: op::MKDIR,
            name: "mkdir",
            path1: cwd(0),
            a_arg: 1,
            ..BASE
        },
        nr::MKDIRAT => Spec {
            op: op::MKDIR,
            name: "mkdirat",
            path1: at(0, 1),
            a_arg: 2,
            ..BASE
        },
        nr::RMDIR => Spec {
            op: op::RMDIR,
            name: "rmdir",
            path1: cwd(0),
            ..BASE
        },
        nr::TRUNCATE => Spec {
            op: op::TRUNCATE,
            name: "truncate",
            path1: cwd(0),
            a_arg: 1,
            ..BASE
        },
        nr::FTRUNCATE => Spec {
            op: op::TRUNCATE,
            name: "ftruncate",
            fd_arg: 0,
            a_arg: 1,
            ..BASE
        },
        nr::CHMOD => Spec {
            op: op::CHMOD,
            name: "chmod",
            path1: cwd(0),
            a_arg: 1,
            ..BASE
        },
        nr::FCHMOD => Spec {
            op: op::CHMOD,
            name: "fchmod",
            fd_arg: 0,
            a_arg: 1,
            ..BASE
        },
        nr::FCHMODAT => Spec {
            op: op::CHMOD,
            name: "fchmodat",
            path1: at(0, 1),
            a_arg: 2,
            ..BASE
        },
        nr::FCHMODAT2 => Spec {
            op: op::CHMOD,
            name: "fchmodat2",
            path1: at(0, 1),
            a_arg: 2,
            flags_arg: 3,
            ..BASE
        },
        nr::CHOWN => Spec {
            op: op::CHOWN,
            name: "chown",
            path1: cwd(0),
            a_arg: 1,
            b_arg: 2,
            ..BASE
        },
        nr::FCHOWN => Spec {
            op: op::CHOWN,
            name: "fchown",
            fd_arg: 0,
            a_arg: 1,
            b_arg: 2,
            ..BASE
        },
        nr::LCHOWN => Spec {
            op: op::CHOWN,
            name: "lchown",
            path1: cwd(0),
            a_arg: 1,
            b_arg: 2,
            ..BASE
        },
        nr::FCHOWNAT => Spec {
            op: op::CHOWN,
            name: "fchownat",
            path1: at(0, 1),
            a_arg: 2,
            b_arg: 3,
            flags_arg: 4,
            ..BASE
        },
        nr::LINK => Spec {
            op: op::LINK,
            name: "link",
            path1: cwd(0),
            path2: cwd(1),
            ..BASE
        },
        nr::LINKAT => Spec {
            op: op::LINK,
            name: "linkat",
            path1: at(0, 1),
            path2: at(2, 3),
            flags_arg: 4,
            ..BASE
        },
        nr::SYMLINK => Spec {
            op: op::SYMLINK,
            name: "symlink",
            path1: PathArg {
                dirfd: NO_BASE,
                path: 0,
            },
            path2: cwd(1),
            ..BASE
        },
        nr::SYMLINKAT => Spec {
            op: op::SYMLINK,
            name: "symlinkat",
            path1: PathArg {
                dirfd: NO_BASE,
                path: 0,
            },
            path2: at(1, 2),
            ..BASE
        },
        _ => return None,
    };
    Some(s)
}

/// Name of a syscall number we trace (including read/write/close), for reports.
pub fn name(n: u64) -> Option<&'static str> {
    if n == nr::CLOSE {
        return Some("close");
    }
    if let Some(s) = spec(n) {
        return Some(s.name);
    }
    let mut i = 0;
    while i < READ_SYSCALLS.len() {
        if READ_SYSCALLS[i].1 == n {
            return Some(READ_SYSCALLS[i].0);
        }
        if WRITE_SYSCALLS[i].1 == n {
            return Some(WRITE_SYSCALLS[i].0);
        }
        i += 1;
    }
    let mut i = 0;
    while i < NET_SYSCALLS.len() {
        if NET_SYSCALLS[i].1 == n {
            return Some(NET_SYSCALLS[i].0);
        }
        i += 1;
    }
    let mut i = 0;
    while i < TRANSFER_SYSCALLS.len() {
        if TRANSFER_SYSCALLS[i].1 == n {
            return Some(TRANSFER_SYSCALLS[i].0);
        }
        i += 1;
    }
    None
}
