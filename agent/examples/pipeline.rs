//! The agent's userspace pipeline (decode + Parquet trail writing) on synthetic kernel
//! records shaped like the benchmark's file loop, without the kernel: CPU per event of
//! the part of the agent that runs per event. Used by `cargo xtask bench`; runs
//! unprivileged. Usage: pipeline [ITERATIONS] [file|net] (4 events per iteration: the
//! file loop's open, close, rename and unlink, or with `net` a loopback TCP connection's
//! connect, accept and two closes, as `gt-workload tcploop` makes them).

use agent::decode::Decoder;
use agent_common::{
    ev_flag, op, str_kind, EventHeader, NetAddrs, RawEvent, StrRef, NET_ADDRS_SIZE, RAW_EVENT_SIZE,
};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use trail::{RunInfo, TrailWriter, WriterOptions};

struct Rec {
    ev: RawEvent,
    data: Vec<u8>,
    n: usize,
}

impl Rec {
    fn new(op: u32, seq: u64) -> Self {
        Rec {
            ev: RawEvent {
                header: EventHeader {
                    op,
                    seq,
                    boot_ns: 1_000_000 + seq * 1000,
                    pid: 4242,
                    tid: 4242,
                    ppid: 1,
                    comm: *b"gt-workload\0\0\0\0\0",
                    cgroup_id: 77,
                    ..Default::default()
                },
                fd: -1,
                ..Default::default()
            },
            data: Vec::new(),
            n: 0,
        }
    }

    fn s(mut self, kind: u8, bytes: &[u8]) -> Self {
        self.ev.strs[self.n] = StrRef {
            off: self.data.len() as u16,
            len: bytes.len() as u16,
            kind,
            flags: 0,
            _pad: 0,
        };
        self.data.extend_from_slice(bytes);
        self.n += 1;
        self
    }

    fn net(self, a: &NetAddrs) -> Self {
        // SAFETY: NetAddrs is repr(C) plain integers without padding.
        let b = unsafe {
            std::slice::from_raw_parts(a as *const NetAddrs as *const u8, NET_ADDRS_SIZE)
        };
        self.s(str_kind::NET, b)
    }

    fn none(mut self) -> Self {
        self.n += 1;
        self
    }

    fn bytes(mut self) -> Vec<u8> {
        self.ev.data_len = self.data.len() as u32;
        // SAFETY: RawEvent is repr(C) plain integers.
        let head = unsafe {
            std::slice::from_raw_parts(&self.ev as *const RawEvent as *const u8, RAW_EVENT_SIZE)
        };
        let mut v = head.to_vec();
        v.extend_from_slice(&self.data);
        v
    }
}

fn main() {
    trail::alloc::keep_freed_memory();
    let iterations: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let cwd: &[u8] = b"bench-tmp\0target\0main\0work\0";
    let f_full: &[u8] = b"f.tmp\0bench-tmp\0target\0main\0work\0";
    let mut records = Vec::new();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    records.push(
        Rec::new(op::EXEC, next())
            .s(
                str_kind::COMPONENTS,
                b"gt-workload\0release\0target\0main\0work\0",
            )
            .s(
                str_kind::ARGV,
                b"/work/main/target/release/gt-workload\0loop:100000\0",
            )
            .s(str_kind::COMPONENTS, cwd)
            .bytes(),
    );
    let net = std::env::args().nth(2).as_deref() == Some("net");
    for i in 0..iterations {
        if net {
            records.extend(connection(i, &mut next));
            continue;
        }
        let mut open = Rec::new(op::OPEN, next())
            .s(str_kind::RAW, b"f.tmp")
            .none()
            .s(str_kind::COMPONENTS, f_full);
        open.ev.syscall = 257;
        open.ev.ret = 3;
        open.ev.fd = 3;
        open.ev.flags = 0o1101;
        open.ev.inode = 1234;
        open.ev.dev = 8;
        records.push(open.bytes());
        let mut close = Rec::new(op::CLOSE, next());
        close.ev.syscall = 3;
        close.ev.fd = 3;
        close.ev.bytes_written = 64;
        close.ev.inode = 1234;
        close.ev.dev = 8;
        records.push(close.bytes());
        let mut rename = Rec::new(op::RENAME, next())
            .s(str_kind::RAW, b"f.tmp")
            .s(str_kind::COMPONENTS, cwd)
            .s(str_kind::RAW, b"g.tmp")
            .s(str_kind::COMPONENTS, cwd);
        rename.ev.syscall = 82;
        records.push(rename.bytes());
        let mut unlink = Rec::new(op::UNLINK, next())
            .s(str_kind::RAW, b"g.tmp")
            .s(str_kind::COMPONENTS, cwd);
        unlink.ev.syscall = 87;
        records.push(unlink.bytes());
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut writer = TrailWriter::create(dir.path(), RunInfo::default(), WriterOptions::default())
        .expect("trail writer");
    let mut decoder = Decoder::new(0, vec!["bench".into()]);
    let cpu0 = cpu_ns();
    let t = Instant::now();
    let stage = std::env::var("GT_PIPELINE_STAGE").unwrap_or_default();
    // Stage `columns`: events appended to the trail's column buffers, which are
    // dropped every `batch_rows` rows instead of being encoded into pages.
    let batch_rows = WriterOptions::default().batch_rows;
    let mut columns = trail::pq::Columns::new(1).expect("columns");
    for r in &records {
        let ev = decoder.decode(r).expect("synthetic records decode");
        match stage.as_str() {
            "decode" => drop(ev),
            "columns" => {
                columns.push(&ev);
                if columns.rows() == batch_rows {
                    columns.discard();
                }
            }
            _ => writer.push(ev).expect("write"),
        }
    }
    let fin = writer.finish().expect("finish");
    let wall = t.elapsed().as_nanos() as f64;
    let cpu = (cpu_ns() - cpu0) as f64;
    let n = records.len() as f64;
    // What sealing costs per event: hashing the segments' bytes (the writer does it
    // while writing), measured here again on the same bytes.
    let bytes: Vec<Vec<u8>> = fin
        .files
        .iter()
        .map(|f| std::fs::read(f).expect("segment"))
        .collect();
    let c0 = cpu_ns();
    for b in &bytes {
        std::hint::black_box(trail::seal::sha256(b));
    }
    let hash_ns = (cpu_ns() - c0) as f64;
    println!(
        "sealing: {:.1} ns per event ({} bytes hashed)",
        hash_ns / n,
        bytes.iter().map(Vec::len).sum::<usize>()
    );
    println!(
        "pipeline: {} events, {:.0} ns CPU per event ({:.0} ns wall)",
        records.len(),
        cpu / n,
        wall / n
    );
}

/// A loopback TCP connection of `tcploop`: the client's connect, the server thread's
/// accept, and both sides' closes with 100 bytes each way.
fn connection(i: u64, next: &mut impl FnMut() -> u64) -> [Vec<u8>; 4] {
    let port = 40000 + (i % 20000) as u16;
    let lo = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let client = NetAddrs {
        family: 2,
        protocol: 6,
        local_port: port,
        remote_port: 8080,
        local: lo,
        remote: lo,
    };
    let server = NetAddrs {
        local_port: 8080,
        remote_port: port,
        ..client
    };
    let (csk, ssk) = (0xffff_0000_0000 + i * 2, 0xffff_0000_0000 + i * 2 + 1);
    let rec = |op, a: &NetAddrs, sk, flags, tid, syscall, seq| {
        let mut r = Rec::new(op, seq).net(a);
        r.ev.header.tid = tid;
        r.ev.syscall = syscall;
        r.ev.arg_b = sk;
        r.ev.ev_flags = flags;
        if op == op::NET_CLOSE {
            r.ev.bytes_read = 100;
            r.ev.bytes_written = 100;
        }
        r.bytes()
    };
    let (out, inb) = (ev_flag::OUTBOUND, ev_flag::INBOUND);
    [
        rec(op::NET_CONNECT, &client, csk, out, 4242, 42, next()),
        rec(op::NET_ACCEPT, &server, ssk, inb, 4243, 288, next()),
        rec(op::NET_CLOSE, &client, csk, out, 4242, 0, next()),
        rec(op::NET_CLOSE, &server, ssk, inb, 4243, 0, next()),
    ]
}

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
