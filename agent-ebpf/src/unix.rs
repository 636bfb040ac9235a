//! Unix domain stream (and seqpacket) sockets of tracked processes: connect and accept
//! with the socket's address (a path, or an abstract name) and the peer's pid as the
//! kernel recorded it (SO_PEERCRED), and bytes each way, counted at every
//! read/write/send/recv on the socket, reported when the last descriptor of it is
//! closed (or when its owner exits: see `agent::record`).

use agent_common::{ev_flag, op, stat, str_kind, NetAddrs, UnixConn};

use crate::{
    event::{self, slot, Ev},
    kernel::{self, off, read, AF_UNIX},
    maps::{count, UNIX_SOCKS},
};
use core::intrinsics::{atomic_xadd, AtomicOrdering};

/// `sizeof(sun_family)`: the path follows it in `struct sockaddr_un`.
const SUN_PATH_OFF: u64 = 2;

/// The bound address of a unix socket into `slot` (nothing if it has none).
#[inline(always)]
fn address(ev: &mut Ev, slot: usize, sk: u64) {
    let Ok(addr) = read::<u64>(sk, off!(unix_sock_addr)) else {
        return;
    };
    if addr == 0 {
        return;
    }
    let len: i32 = read(addr, off!(unix_address_len)).unwrap_or(0);
    if len as u64 <= SUN_PATH_OFF {
        return;
    }
    ev.kernel_bytes(
        slot,
        str_kind::UNIX_PATH,
        addr + off!(unix_address_name) + SUN_PATH_OFF,
        len as u64 - SUN_PATH_OFF,
    );
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    kind: u32,
    sk: u64,
    addr_sk: u64,
    fd: i64,
    ret: i64,
    flags: u32,
    conn: &UnixConn,
    slot: u32,
) {
    if let Some(mut ev) = event::begin_owner(kind, &conn.owner, slot) {
        let e = &mut ev.buf.ev;
        e.ret = ret;
        e.fd = fd as i32;
        e.ev_flags = flags;
        e.arg_a = conn.peer_pid as u64;
        e.arg_b = sk;
        e.bytes_read = conn.bytes_in;
        e.bytes_written = conn.bytes_out;
        let a = NetAddrs {
            family: AF_UNIX,
            ..Default::default()
        };
        ev.net(0, &a);
        if addr_sk != 0 {
            address(&mut ev, 1, addr_sk);
        }
        ev.submit();
    }
}

/// connect() (`peer` side known after success) or accept() of a unix stream socket.
#[inline(always)]
pub fn opened(sk: u64, fd: i64, ret: i64, inbound: bool, service: u32, task: u64) {
    let flags = if inbound {
        ev_flag::INBOUND
    } else {
        ev_flag::OUTBOUND
    };
    let conn = UnixConn {
        owner: event::owner_here(service, task, flags),
        peer_pid: if ret >= 0 { kernel::peer_pid(sk) } else { 0 },
        fd: fd as i32,
        ..Default::default()
    };
    // The address: an accepted socket carries its listener's; a connected one's is
    // its peer's (the server side of the pair).
    let addr_sk = if inbound {
        sk
    } else {
        read::<u64>(sk, off!(unix_sock_peer)).unwrap_or(0)
    };
    let kind = if inbound {
        op::NET_ACCEPT
    } else {
        op::NET_CONNECT
    };
    // An entry for this address is a socket that was freed without a close() we saw
    // (its owner exited before the agent reported it, and the memory was reused):
    // report its end first, as implicit, so that the agent pairs it with its own Open.
    // SAFETY: copied out.
    let stale = if ret >= 0 {
        unsafe { UNIX_SOCKS.get(&sk) }.copied()
    } else {
        None
    };
    if let Some(stale) = stale {
        emit(
            op::NET_CLOSE,
            sk,
            0,
            stale.fd as i64,
            0,
            stale.owner.flags | ev_flag::IMPLICIT_CLOSE,
            &stale,
            slot::SYS_EXIT,
        );
    }
    emit(kind, sk, addr_sk, fd, ret, flags, &conn, slot::SYS_EXIT);
    if ret < 0 {
        return;
    }
    if UNIX_SOCKS.insert(&sk, &conn, 0).is_err() {
        count(stat::SOCK_FULL);
    }
}

/// Bytes through a tracked unix socket; false if the socket is not one.
#[inline(always)]
pub fn add_bytes(sk: u64, bytes: u64, out: bool) -> bool {
    let Some(c) = UNIX_SOCKS.get_ptr_mut(&sk) else {
        return false;
    };
    // SAFETY: map value valid during the program; concurrent adds are atomic.
    unsafe {
        let field = if out {
            &raw mut (*c).bytes_out
        } else {
            &raw mut (*c).bytes_in
        };
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, bytes);
    }
    true
}

/// close() of a descriptor of `sk` (from `sys_enter`): when it is the last, report the
/// connection.
#[inline(always)]
pub fn closed(sk: u64, file: u64) {
    // SAFETY: copied out.
    let Some(conn) = (unsafe { UNIX_SOCKS.get(&sk) }).copied() else {
        return;
    };
    if kernel::file_refs(file).is_ok_and(|r| r > 1) {
        return;
    }
    let _ = UNIX_SOCKS.remove(&sk);
    // No address here: the peer may already be freed; the agent has the address from
    // the connection's Open.
    emit(
        op::NET_CLOSE,
        sk,
        0,
        conn.fd as i64,
        0,
        conn.owner.flags,
        &conn,
        slot::SYS_ENTER,
    );
}
