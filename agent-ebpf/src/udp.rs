//! UDP flows, aggregated in the kernel per (socket, process, remote address): first and
//! last time, datagrams and bytes each way. One map update per datagram-carrying
//! syscall of a tracked process; no event per datagram. The agent turns flows into
//! Traffic events (see `agent::record`).
//!
//! Counted: sendto/recvfrom, sendmsg/recvmsg (the address from `msg_name`),
//! sendmmsg/recvmmsg (the first 8 messages of a call; more are counted in
//! `stat::MMSG_BEYOND_8`), and read/write-family calls on connected UDP sockets (from
//! `file::account`).

use agent_common::{stat, syscalls::nr, FlowKey};
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_user};
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use crate::{
    event, kernel,
    maps::{count, FLOWS, FLOW_SCRATCH},
};

const MMSG_MAX: u64 = 8;
/// `struct mmsghdr` is a `struct user_msghdr` (56 bytes) and `unsigned int msg_len`.
const MMSGHDR_SIZE: u64 = 64;
const MMSG_LEN_OFF: u64 = 56;

#[inline(always)]
pub fn is_udp_syscall(n: u64) -> bool {
    matches!(
        n,
        nr::SENDTO | nr::RECVFROM | nr::SENDMSG | nr::RECVMSG | nr::SENDMMSG | nr::RECVMMSG
    )
}

/// Add one datagram-carrying result to its flow. `addr` is the user `struct sockaddr`
/// naming the remote end (0: the socket's connected peer).
/// Out of line (called from several places, once per message in a loop): at most five
/// arguments, so `out` rides in the lowest bit of `datagrams_out`
/// (`datagrams << 1 | out`).
#[inline(never)]
pub fn flow_add(sk: u64, addr: u64, bytes: u64, datagrams_out: u64, service: u32) -> u32 {
    let datagrams = datagrams_out >> 1;
    let out = datagrams_out & 1 != 0;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let mut key = FlowKey {
        sk,
        tgid,
        ..Default::default()
    };
    let named = match addr {
        0 => None,
        _ => kernel::user_sockaddr(addr),
    };
    if let Some((family, port, ip)) = named {
        key.family = family;
        key.remote_port = port;
        key.remote = ip;
    }
    let a = kernel::sock_addrs(sk);
    if named.is_none() {
        key.family = a.family;
        key.remote = a.remote;
        key.remote_port = a.remote_port;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(f) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: the map value stays valid during the program; other threads of the
        // process may add concurrently, hence atomic adds (last_ns is a plain store:
        // any recent value will do).
        unsafe {
            let (d, b) = if out {
                (&raw mut (*f).datagrams_out, &raw mut (*f).bytes_out)
            } else {
                (&raw mut (*f).datagrams_in, &raw mut (*f).bytes_in)
            };
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(d, datagrams);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(b, bytes);
            (*f).last_ns = now;
        }
        return 0;
    }
    let task = kernel::current_task();
    let Some(f) = FLOW_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry, valid during the program; filled field by field
    // so that no Flow is built on the stack.
    unsafe {
        (*f).first_ns = now;
        (*f).last_ns = now;
        (*f).local = a.local;
        (*f).local_port = a.local_port;
        (*f).first_out = out as u16;
        (*f)._pad = 0;
        (*f).owner = event::owner_here(service, task, 0);
        let (d, b) = if out { (datagrams, bytes) } else { (0, 0) };
        (*f).datagrams_out = d;
        (*f).bytes_out = b;
        let (d, b) = if out { (0, 0) } else { (datagrams, bytes) };
        (*f).datagrams_in = d;
        (*f).bytes_in = b;
        if FLOWS.insert(&key, &*f, 0).is_err() {
            count(stat::FLOW_FULL);
        }
    }
    0
}

/// `datagrams << 1 | out` for [`flow_add`].
#[inline(always)]
pub fn dg(datagrams: u64, out: bool) -> u64 {
    (datagrams << 1) | out as u64
}

/// sendto/recvfrom/sendmsg/recvmsg/sendmmsg/recvmmsg of a tracked process returned
/// (`n_fd`: syscall number << 32 | descriptor). Out of line: five arguments at most.
#[inline(never)]
pub fn udp_exit(n_fd: u64, arg1: u64, arg4: u64, ret: i64, service: u32) -> u32 {
    let (n, fd) = (n_fd >> 32, n_fd & 0xffff_ffff);
    if ret <= 0 {
        return 0;
    }
    let Ok(sk) = kernel::fd_sock(kernel::current_task(), fd) else {
        return 0;
    };
    let out = matches!(n, nr::SENDTO | nr::SENDMSG | nr::SENDMMSG);
    let (family, ty) = kernel::sock_family_type(sk);
    match kernel::classify(family, ty) {
        kernel::SockClass::Udp => {}
        kernel::SockClass::UnixStream => {
            if n == nr::SENDTO || n == nr::RECVFROM || n == nr::SENDMSG || n == nr::RECVMSG {
                crate::unix::add_bytes(sk, ret as u64, out);
            }
            return 0;
        }
        // TCP counts its own bytes (read at close): nothing to do per send or receive.
        _ => return 0,
    }
    match n {
        nr::SENDTO | nr::RECVFROM => {
            flow_add(sk, arg4, ret as u64, dg(1, out), service);
        }
        nr::SENDMSG | nr::RECVMSG => {
            // struct user_msghdr { void *msg_name; ... }
            // SAFETY: user read checked by the helper.
            let name: u64 = unsafe { bpf_probe_read_user(arg1 as *const u64) }.unwrap_or(0);
            flow_add(sk, name, ret as u64, dg(1, out), service);
        }
        _ => {
            let msgs = ret as u64;
            let mut i = 0;
            while i < MMSG_MAX && i < msgs {
                let h = arg1 + i * MMSGHDR_SIZE;
                // SAFETY: user reads checked by the helper.
                let (name, len) = unsafe {
                    (
                        bpf_probe_read_user(h as *const u64).unwrap_or(0),
                        bpf_probe_read_user((h + MMSG_LEN_OFF) as *const u32).unwrap_or(0),
                    )
                };
                flow_add(sk, name, len as u64, dg(1, out), service);
                i += 1;
            }
            if msgs > MMSG_MAX {
                count(stat::MMSG_BEYOND_8);
            }
        }
    }
    0
}
