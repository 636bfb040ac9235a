//! Network events: TCP connections of tracked processes, over IPv4 and IPv6.
//!
//! - `connect`, `accept`/`accept4`, `bind`, `listen` are seen at syscall exit (from
//!   `file::sys_exit`), in the process's own context: the accepting side carries the
//!   accepting process's pid. Connected and accepted sockets go into `SOCKS` with their
//!   owner.
//! - raw tracepoint `inet_sock_set_state(sk, oldstate, newstate)`: for a socket in
//!   `SOCKS`, the end of a non-blocking connect's handshake (ESTABLISHED, or CLOSE with
//!   `sk_err`), and the transition to CLOSE, reported with the bytes each way from
//!   `tcp_sock` (`bytes_received`, `bytes_acked`): counted by TCP itself, so byte
//!   counting costs nothing per packet or per send.
//! - raw tracepoints `tcp_receive_reset(sk)` / `tcp_send_reset(sk, skb, ..)` mark the
//!   socket so that its close says reset.
//! For any socket not in `SOCKS`, these tracepoints cost at most one map lookup
//! (`inet_sock_set_state` none for transitions other than out of SYN_SENT and to CLOSE).

use agent_common::{ev_flag, op, stat, syscalls::nr, NetAddrs, SockOwner};
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::{
    event::{self, slot, Ev},
    kernel::{self, off, read, SockClass, AF_INET, AF_INET6},
    maps::{count, SOCKS},
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const EINPROGRESS: i64 = 115;
/// `enum sock_flags`: SOCK_DEAD, SOCK_DONE (the peer's FIN was received), ...
const SOCK_DONE: u64 = 1;

#[inline(always)]
pub fn is_net(n: u64) -> bool {
    matches!(
        n,
        nr::CONNECT | nr::ACCEPT | nr::ACCEPT4 | nr::BIND | nr::LISTEN
    )
}

/// The destination a connect() asked for, from its `struct sockaddr` argument.
#[inline(always)]
fn requested_remote(a: &mut NetAddrs, addr: u64) {
    if let Some((_, port, ip)) = kernel::user_sockaddr(addr) {
        a.remote = ip;
        a.remote_port = port;
    }
}

#[inline(always)]
fn emit(mut ev: Ev, sk: u64, fd: i64, ret: i64, flags: u32, a: &NetAddrs, syscall: u64) {
    let e = &mut ev.buf.ev;
    e.ret = ret;
    e.fd = fd as i32;
    e.ev_flags = flags;
    e.arg_b = sk;
    e.syscall = syscall as u32;
    ev.net(0, a);
    ev.submit();
}

/// A connect() of a tracked process returned (from `sys_exit_connect`).
#[inline(never)]
pub fn connect_exit(fd_arg: u64, addr_arg: u64, ret: i64, service: u32) -> u32 {
    let n = nr::CONNECT;
    let task = kernel::current_task();
    let Ok(sk) = kernel::fd_sock(task, fd_arg) else {
        return 0;
    };
    let (family, protocol, ty) = kernel::sock_kind(sk);
    match kernel::classify(family, ty) {
        SockClass::Tcp => {}
        SockClass::UnixStream => {
            crate::unix::opened(sk, fd_arg as i64, ret, false, service, task);
            return 0;
        }
        _ => return 0,
    }
    let mut a = kernel::sock_addrs_of(sk, family, protocol);
    if ret < 0 && ret != -EINPROGRESS {
        // A failed connect: the socket no longer has its destination.
        requested_remote(&mut a, addr_arg);
    }
    let mut owner = event::owner_here(service, task, ev_flag::OUTBOUND);
    if ret == -EINPROGRESS {
        // Non-blocking: the handshake ends later (or already did, on loopback).
        owner.pending_connect = 1;
        if SOCKS.insert(&sk, &owner, 0).is_err() {
            count(stat::SOCK_FULL);
            return 0;
        }
        let state: u8 = read(sk, off!(sk_state)).unwrap_or(0);
        if state as i32 == TCP_SYN_SENT {
            return 0;
        }
        connect_outcome(sk, state as i32, slot::SYS_EXIT);
        return 0;
    }
    if ret == 0 && SOCKS.insert(&sk, &owner, 0).is_err() {
        count(stat::SOCK_FULL);
    }
    if let Some(ev) = event::begin_owner(op::NET_CONNECT, &owner, slot::SYS_EXIT) {
        emit(ev, sk, fd_arg as i64, ret, ev_flag::OUTBOUND, &a, n);
    }
    0
}

/// An accept()/accept4() of a tracked process returned (from `sys_exit_accept`).
#[inline(never)]
pub fn accept_exit(n: u64, ret: i64, service: u32) -> u32 {
    let task = kernel::current_task();
    if ret < 0 {
        return 0;
    }
    let Ok(sk) = kernel::fd_sock(task, ret as u64) else {
        return 0;
    };
    let (family, protocol, ty) = kernel::sock_kind(sk);
    match kernel::classify(family, ty) {
        SockClass::Tcp => {}
        SockClass::UnixStream => {
            crate::unix::opened(sk, ret, ret, true, service, task);
            return 0;
        }
        _ => return 0,
    }
    let a = kernel::sock_addrs_of(sk, family, protocol);
    let owner = event::owner_here(service, task, ev_flag::INBOUND);
    if SOCKS.insert(&sk, &owner, 0).is_err() {
        count(stat::SOCK_FULL);
    }
    if let Some(ev) = event::begin_owner(op::NET_ACCEPT, &owner, slot::SYS_EXIT) {
        emit(ev, sk, ret, ret, ev_flag::INBOUND, &a, n);
    }
    0
}

/// A bind() or listen() of a tracked process returned (from `sys_exit_bind`).
#[inline(never)]
pub fn bind_exit(n: u64, fd_arg: u64, ret: i64, service: u32) -> u32 {
    let task = kernel::current_task();
    // bind, listen: the address as the socket has it afterwards (bind to port 0
    // gets its port here).
    let Ok(sk) = kernel::fd_sock(task, fd_arg) else {
        return 0;
    };
    let (family, _, _) = kernel::sock_kind(sk);
    if family != AF_INET && family != AF_INET6 {
        return 0;
    }
    let a = kernel::sock_addrs(sk);
    let kind = if n == nr::BIND {
        op::NET_BIND
    } else {
        op::NET_LISTEN
    };
    if let Some(ev) = event::begin(kind, service, task, slot::SYS_EXIT) {
        emit(ev, sk, fd_arg as i64, ret, 0, &a, n);
    }
    0
}

/// The end of a non-blocking connect's handshake: connected, or failed with `sk_err`.
#[inline(always)]
fn connect_outcome(sk: u64, state: i32, slot: u32) {
    let Some(o) = SOCKS.get_ptr_mut(&sk) else {
        return;
    };
    // SAFETY: map value valid during the program.
    let owner: SockOwner = unsafe { *o };
    if owner.pending_connect == 0 {
        return;
    }
    let ret = if state == TCP_ESTABLISHED {
        // SAFETY: as above.
        unsafe { (*o).pending_connect = 0 };
        0
    } else {
        let err: i32 = read(sk, off!(sk_err)).unwrap_or(0);
        let _ = SOCKS.remove(&sk);
        -(if err > 0 { err as i64 } else { 111 })
    };
    if let Some(ev) = event::begin_owner(op::NET_CONNECT, &owner, slot) {
        let a = kernel::sock_addrs(sk);
        emit(ev, sk, -1, ret, ev_flag::OUTBOUND, &a, nr::CONNECT);
    }
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let (old, new) = (ctx.arg::<u64>(1) as i32, ctx.arg::<u64>(2) as i32);
    // Only the end of a handshake (out of SYN_SENT) and the close matter: every other
    // transition (about eight per connection, for every socket on the host) returns
    // before the map lookup.
    if new != TCP_CLOSE && old != TCP_SYN_SENT {
        return 0;
    }
    // SAFETY: plain read of a map value, copied out.
    let Some(owner) = (unsafe { SOCKS.get(&sk) }).copied() else {
        return 0;
    };
    if owner.pending_connect != 0 {
        if new == TCP_SYN_SENT {
            return 0;
        }
        if new == TCP_CLOSE && (old == TCP_SYN_SENT || old == TCP_CLOSE) {
            // The handshake failed.
            connect_outcome(sk, new, slot::SOCK);
            return 0;
        }
        // Out of SYN_SENT to anything but CLOSE means the handshake completed. Usually
        // that is the ESTABLISHED transition itself; a CLOSE from another state means
        // the kernel skipped this program's run for it (another run active on that
        // CPU): report the connect now, as connected, never as a failure.
        connect_outcome(sk, TCP_ESTABLISHED, slot::SOCK);
        if new != TCP_CLOSE {
            return 0;
        }
    } else if new != TCP_CLOSE {
        return 0;
    }
    let _ = SOCKS.remove(&sk);
    if let Some(ev) = event::begin_owner(op::NET_CLOSE, &owner, slot::SOCK) {
        let e = &mut ev.buf.ev;
        // Payload bytes: the peer's FIN advanced bytes_received by one (SOCK_DONE is
        // set when it arrived); bytes_sent counts retransmitted payload again.
        let received: u64 = read(sk, off!(tcp_bytes_received)).unwrap_or(0);
        let flags: u64 = read(sk, off!(sk_flags)).unwrap_or(0);
        let fin = (flags >> SOCK_DONE) & 1;
        e.bytes_read = received.saturating_sub(fin);
        let sent: u64 = read(sk, off!(tcp_bytes_sent)).unwrap_or(0);
        let retrans: u64 = read(sk, off!(tcp_bytes_retrans)).unwrap_or(0);
        e.bytes_written = sent.saturating_sub(retrans);
        // No addresses: at CLOSE the kernel has released the local port already, and
        // the agent has both ends from the connection's Open (every connection in
        // SOCKS had one).
        let (family, protocol, _) = kernel::sock_kind(sk);
        let a = NetAddrs {
            family,
            protocol,
            ..Default::default()
        };
        emit(ev, sk, -1, 0, owner.flags, &a, 0);
    }
    0
}

#[inline(always)]
fn mark_reset(sk: u64, flag: u32) {
    if let Some(o) = SOCKS.get_ptr_mut(&sk) {
        // SAFETY: map value valid during the program.
        unsafe { (*o).flags |= flag };
    }
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    mark_reset(ctx.arg(0), ev_flag::RESET_RECEIVED);
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if sk != 0 {
        mark_reset(sk, ev_flag::RESET_SENT);
    }
    0
}
