//! The Arrow schema of a trail (documented column by column in docs/schema.md) and the
//! conversions between [`Event`]s and record batches. The schema is one constant shape,
//! strict: the reader refuses files whose columns do not have the expected types.

use crate::event::{Actor, Endpoint, Event, Extra, FileRef, Network, Shared, TargetProcess};
use crate::TrailError;
use arrow_array::{
    builder::BooleanBuilder,
    new_null_array,
    types::{Int32Type, Int64Type, UInt32Type, UInt64Type},
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Int32Array, Int64Array, PrimitiveArray,
    RecordBatch, StringArray, StructArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, OnceLock};

fn path_struct() -> DataType {
    DataType::Struct(Fields::from(vec![Field::new("path", DataType::Utf8, true)]))
}

fn actor_fields() -> Fields {
    Fields::from(vec![Field::new(
        "process",
        DataType::Struct(actor_process_fields()),
        false,
    )])
}

fn actor_process_fields() -> Fields {
    Fields::from(vec![
        Field::new("pid", DataType::Int32, false),
        Field::new("tid", DataType::Int32, false),
        Field::new("uid", DataType::UInt32, false),
        Field::new("gid", DataType::UInt32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("cmd_line", DataType::Utf8, true),
        Field::new("file", path_struct(), false),
        Field::new(
            "parent_process",
            DataType::Struct(Fields::from(vec![Field::new(
                "pid",
                DataType::Int32,
                false,
            )])),
            false,
        ),
    ])
}

fn process_fields() -> Fields {
    Fields::from(vec![
        Field::new("pid", DataType::Int32, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("cmd_line", DataType::Utf8, true),
        Field::new("file", path_struct(), false),
        Field::new("cwd", DataType::Utf8, true),
        Field::new("exit_code", DataType::Int32, true),
        Field::new("exit_signal", DataType::Int32, true),
        Field::new("args_truncated", DataType::Boolean, false),
    ])
}

fn file_fields() -> Fields {
    Fields::from(vec![
        Field::new("path", DataType::Utf8, true),
        Field::new("path_requested", DataType::Utf8, true),
        Field::new("inode", DataType::UInt64, true),
        Field::new("dev", DataType::UInt64, true),
        Field::new("path_truncated", DataType::Boolean, false),
    ])
}

fn endpoint_fields() -> Fields {
    Fields::from(vec![
        Field::new("ip", DataType::Utf8, false),
        Field::new("port", DataType::Int32, false),
    ])
}

fn connection_info_fields() -> Fields {
    Fields::from(vec![
        Field::new("protocol_name", DataType::Utf8, false),
        Field::new("direction_id", DataType::Int32, false),
    ])
}

fn traffic_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes_in", DataType::Int64, true),
        Field::new("bytes_out", DataType::Int64, true),
        Field::new("packets_in", DataType::Int64, true),
        Field::new("packets_out", DataType::Int64, true),
    ])
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn extra_fields() -> Fields {
    Fields::from(vec![
        Field::new("cpu", DataType::UInt32, false),
        Field::new("sequence", DataType::UInt64, false),
        Field::new("cgroup_id", DataType::UInt64, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("syscall", DataType::Utf8, true),
        Field::new("ret", DataType::Int64, true),
        Field::new("errno", DataType::Int32, true),
        Field::new("flags", DataType::UInt64, true),
        Field::new("mode", DataType::UInt32, true),
        Field::new("owner_uid", DataType::UInt32, true),
        Field::new("owner_gid", DataType::UInt32, true),
        Field::new("length", DataType::Int64, true),
        Field::new("fd", DataType::Int32, true),
        Field::new("bytes_read", DataType::UInt64, true),
        Field::new("bytes_written", DataType::UInt64, true),
        Field::new("implicit", DataType::Boolean, false),
        Field::new("connection_id", DataType::UInt64, true),
        Field::new("socket_path", DataType::Utf8, true),
        Field::new("peer_pid", DataType::Int32, true),
        Field::new("created", DataType::Boolean, false),
    ])
}

/// The trail schema.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    "time",
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                    false,
                ),
                Field::new("class_uid", DataType::Int32, false),
                Field::new("category_uid", DataType::Int32, false),
                Field::new("activity_id", DataType::Int32, false),
                Field::new("activity_name", DataType::Utf8, false),
                Field::new("type_uid", DataType::Int64, false),
                Field::new("status_id", DataType::Int32, false),
                Field::new("actor", DataType::Struct(actor_fields()), false),
                Field::new("process", DataType::Struct(process_fields()), true),
                Field::new("file", DataType::Struct(file_fields()), true),
                Field::new("file_result", DataType::Struct(file_fields()), true),
                Field::new("src_endpoint", DataType::Struct(endpoint_fields()), true),
                Field::new("dst_endpoint", DataType::Struct(endpoint_fields()), true),
                Field::new(
                    "connection_info",
                    DataType::Struct(connection_info_fields()),
                    true,
                ),
                Field::new("traffic", DataType::Struct(traffic_fields()), true),
                Field::new("start_time", ts(), true),
                Field::new("end_time", ts(), true),
                Field::new("groundtruth", DataType::Struct(extra_fields()), false),
            ]))
        })
        .clone()
}

fn strukt(fields: Fields, arrays: Vec<ArrayRef>, valid: Option<Vec<bool>>) -> ArrayRef {
    let nulls = valid.map(NullBuffer::from);
    Arc::new(StructArray::new(fields, arrays, nulls))
}

fn path_array(paths: Strs) -> ArrayRef {
    let fields = match path_struct() {
        DataType::Struct(f) => f,
        _ => unreachable!("path_struct is a struct"),
    };
    strukt(fields, vec![Arc::new(paths.finish())], None)
}

/// Which values of a column being built are valid; a null buffer only when one is not.
/// (Arrow's `NullBufferBuilder` in its place cost 4% more instructions per event.)
struct Valid {
    bits: Vec<bool>,
    nulls: bool,
}

impl Valid {
    fn with_capacity(n: usize) -> Self {
        Self {
            bits: Vec::with_capacity(n),
            nulls: false,
        }
    }

    #[inline]
    fn push(&mut self, valid: bool) {
        self.nulls |= !valid;
        self.bits.push(valid);
    }

    fn finish(self) -> Option<NullBuffer> {
        self.nulls.then(|| NullBuffer::from(self.bits))
    }
}

/// A string column being built: offsets and bytes in plain vectors (Arrow's
/// `StringBuilder` took about 70 instructions an append, out of line).
struct Strs {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    valid: Valid,
}

impl Strs {
    fn with_capacity(n: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Self {
            offsets,
            bytes: Vec::with_capacity(bytes),
            valid: Valid::with_capacity(n),
        }
    }

    #[inline]
    fn append_value(&mut self, v: &str) {
        self.bytes.extend_from_slice(v.as_bytes());
        self.offsets.push(self.bytes.len() as i32);
        self.valid.push(true);
    }

    #[inline]
    fn append_option(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.append_value(v),
            None => {
                self.offsets.push(self.bytes.len() as i32);
                self.valid.push(false);
            }
        }
    }

    fn finish(self) -> StringArray {
        let Strs {
            offsets,
            bytes,
            valid,
        } = self;
        let nulls = valid.finish();
        // i32 offsets: the bytes only grow, so when their total fits, every offset
        // did. A batch's strings stay far below 2 GiB (a few thousand rows of strings
        // of at most a few KiB each); over it this panics, as Arrow's builder does.
        assert!(bytes.len() <= i32::MAX as usize, "string column over 2 GiB");
        // SAFETY: the offsets start at 0 and never decrease, the last one is the length
        // of `bytes`, and every value between two offsets is a whole `&str` (UTF-8).
        unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(offsets.into()),
                bytes.into(),
                nulls,
            )
        }
    }
}

/// A primitive column being built: values in a plain vector (Arrow's builders took
/// about 45 instructions an append, out of line).
struct Prim<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    valid: Valid,
}

impl<T: ArrowPrimitiveType> Prim<T> {
    fn with_capacity(n: usize) -> Self {
        Self {
            values: Vec::with_capacity(n),
            valid: Valid::with_capacity(n),
        }
    }

    #[inline]
    fn append_value(&mut self, v: T::Native) {
        self.values.push(v);
        self.valid.push(true);
    }

    #[inline]
    fn append_option(&mut self, v: Option<T::Native>) {
        self.values.push(v.unwrap_or_default());
        self.valid.push(v.is_some());
    }

    fn finish(self) -> PrimitiveArray<T> {
        PrimitiveArray::new(self.values.into(), self.valid.finish())
    }
}

struct FileCols {
    valid: Vec<bool>,
    path: Strs,
    requested: Strs,
    inode: Prim<UInt64Type>,
    dev: Prim<UInt64Type>,
    truncated: BooleanBuilder,
}

impl FileCols {
    fn with_capacity(n: usize, path_bytes: usize, requested_bytes: usize) -> Self {
        Self {
            valid: Vec::with_capacity(n),
            path: Strs::with_capacity(n, path_bytes),
            requested: Strs::with_capacity(n, requested_bytes),
            inode: Prim::<UInt64Type>::with_capacity(n),
            dev: Prim::<UInt64Type>::with_capacity(n),
            truncated: BooleanBuilder::with_capacity(n),
        }
    }

    fn push(&mut self, f: Option<&FileRef>) {
        let d = FileRef::default();
        let f2 = f.unwrap_or(&d);
        self.valid.push(f.is_some());
        self.path.append_option(f2.path.as_deref());
        self.requested.append_option(f2.path_requested.as_deref());
        self.inode.append_option(f2.inode);
        self.dev.append_option(f2.dev);
        self.truncated.append_value(f2.path_truncated);
    }

    fn finish(mut self) -> ArrayRef {
        strukt(
            file_fields(),
            vec![
                Arc::new(self.path.finish()),
                Arc::new(self.requested.finish()),
                Arc::new(self.inode.finish()),
                Arc::new(self.dev.finish()),
                Arc::new(self.truncated.finish()),
            ],
            Some(self.valid),
        )
    }
}

/// Which of the groups and rarely used columns any event of a batch has.
#[derive(Default)]
struct Present {
    process: bool,
    file: bool,
    file_result: bool,
    network: bool,
    span: bool,
    mode_owner: bool,
    length: bool,
    socket: bool,
    /// Bytes of the longer string columns, so that their buffers are allocated once
    /// (grown by doubling from a guess, they were copied a few times a batch).
    bytes: StrBytes,
}

#[derive(Default)]
struct StrBytes {
    cmd: usize,
    exe: usize,
    file_path: usize,
    file_requested: usize,
}

fn len_of(s: Option<&str>) -> usize {
    s.map_or(0, str::len)
}

impl Present {
    fn of(events: &[Event]) -> Present {
        let mut p = Present::default();
        for e in events {
            let b = &mut p.bytes;
            b.cmd += len_of(e.actor.cmd_line.as_deref());
            b.exe += len_of(e.actor.exe.as_deref());
            if let Some(f) = &e.file {
                b.file_path += len_of(f.path.as_deref());
                b.file_requested += len_of(f.path_requested.as_deref());
            }
            let g = &e.groundtruth;
            p.process |= e.process.is_some();
            p.file |= e.file.is_some();
            p.file_result |= e.file_result.is_some();
            p.network |= e.network.is_some();
            p.span |= e.start_time_ns.is_some() || e.end_time_ns.is_some();
            p.mode_owner |= g.mode.is_some() || g.owner_uid.is_some() || g.owner_gid.is_some();
            p.length |= g.length.is_some();
            p.socket |=
                g.connection_id.is_some() || g.socket_path.is_some() || g.peer_pid.is_some();
        }
        p
    }
}

/// An all-null array of type `t` and length `n`, shared between batches: the groups
/// absent from a batch are the same arrays batch after batch (batches have the same
/// size but the last), and building one allocates and zeroes every child's buffers.
fn null_array(t: &DataType, n: usize) -> ArrayRef {
    thread_local! {
        static CACHE: std::cell::RefCell<Vec<(DataType, usize, ArrayRef)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    CACHE.with_borrow_mut(|cache| {
        if let Some((_, _, a)) = cache.iter().find(|(dt, len, _)| *len == n && dt == t) {
            return a.clone();
        }
        let a = new_null_array(t, n);
        // The schema has fewer optional groups and columns than this: only batches of
        // unusual sizes make it drop the oldest.
        if cache.len() >= 32 {
            cache.remove(0);
        }
        cache.push((t.clone(), n, a.clone()));
        a
    })
}

/// A finished optional column, or all nulls when no event of the batch has it.
fn opt_col(present: bool, a: ArrayRef, n: usize) -> ArrayRef {
    if present {
        a
    } else {
        null_array(a.data_type(), n)
    }
}

/// Events to a record batch of the trail schema.
pub fn to_batch(events: &[Event]) -> Result<RecordBatch, TrailError> {
    let n = events.len();
    // Groups and optional columns that no event of the batch has are written as one
    // null array each instead of a null appended per row and column (most batches hold
    // only file events, or only network events).
    let has = Present::of(events);
    let mut time = Vec::with_capacity(n);
    let mut class_uid = Prim::<Int32Type>::with_capacity(n);
    let mut category = Prim::<Int32Type>::with_capacity(n);
    let mut activity_id = Prim::<Int32Type>::with_capacity(n);
    let mut activity_name = Strs::with_capacity(n, n * 8);
    let mut type_uid = Prim::<Int64Type>::with_capacity(n);
    let mut status = Prim::<Int32Type>::with_capacity(n);
    // actor.process
    let (mut a_pid, mut a_tid) = (
        Prim::<Int32Type>::with_capacity(n),
        Prim::<Int32Type>::with_capacity(n),
    );
    let (mut a_uid, mut a_gid) = (
        Prim::<UInt32Type>::with_capacity(n),
        Prim::<UInt32Type>::with_capacity(n),
    );
    let (mut a_name, mut a_cmd, mut a_exe) = (
        Strs::with_capacity(n, n * 8),
        Strs::with_capacity(n, has.bytes.cmd),
        Strs::with_capacity(n, has.bytes.exe),
    );
    let mut a_ppid = Prim::<Int32Type>::with_capacity(n);
    // process
    let mut p_valid = Vec::with_capacity(n);
    let mut p_pid = Prim::<Int32Type>::with_capacity(n);
    let (mut p_name, mut p_cmd, mut p_exe, mut p_cwd) = (
        Strs::with_capacity(n, n * 8),
        Strs::with_capacity(n, n * 8),
        Strs::with_capacity(n, n * 8),
        Strs::with_capacity(n, n * 8),
    );
    let (mut p_code, mut p_sig) = (
        Prim::<Int32Type>::with_capacity(n),
        Prim::<Int32Type>::with_capacity(n),
    );
    let mut p_trunc = BooleanBuilder::with_capacity(n);
    let mut file = FileCols::with_capacity(n, has.bytes.file_path, has.bytes.file_requested);
    let mut file_result = FileCols::with_capacity(n, n * 32, n * 16);
    // groundtruth
    let mut g_cpu = Prim::<UInt32Type>::with_capacity(n);
    let (mut g_seq, mut g_cg) = (
        Prim::<UInt64Type>::with_capacity(n),
        Prim::<UInt64Type>::with_capacity(n),
    );
    let (mut g_service, mut g_syscall) =
        (Strs::with_capacity(n, n * 8), Strs::with_capacity(n, n * 8));
    let mut g_ret = Prim::<Int64Type>::with_capacity(n);
    let mut g_errno = Prim::<Int32Type>::with_capacity(n);
    let mut g_flags = Prim::<UInt64Type>::with_capacity(n);
    let (mut g_mode, mut g_ouid, mut g_ogid) = (
        Prim::<UInt32Type>::with_capacity(n),
        Prim::<UInt32Type>::with_capacity(n),
        Prim::<UInt32Type>::with_capacity(n),
    );
    let mut g_len = Prim::<Int64Type>::with_capacity(n);
    let mut g_fd = Prim::<Int32Type>::with_capacity(n);
    let (mut g_br, mut g_bw) = (
        Prim::<UInt64Type>::with_capacity(n),
        Prim::<UInt64Type>::with_capacity(n),
    );
    let mut g_impl = BooleanBuilder::with_capacity(n);
    let mut g_created = BooleanBuilder::with_capacity(n);
    let mut g_conn = Prim::<UInt64Type>::with_capacity(n);
    let mut g_sock_path = Strs::with_capacity(n, n);
    let mut g_peer = Prim::<Int32Type>::with_capacity(n);
    let mut net_valid = Vec::with_capacity(n);
    let (mut src_valid, mut dst_valid) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut src_ip, mut dst_ip) = (Strs::with_capacity(n, n), Strs::with_capacity(n, n));
    let (mut src_port, mut dst_port) = (
        Prim::<Int32Type>::with_capacity(n),
        Prim::<Int32Type>::with_capacity(n),
    );
    let mut proto = Strs::with_capacity(n, n);
    let mut dir = Prim::<Int32Type>::with_capacity(n);
    let mut traffic_valid = Vec::with_capacity(n);
    let (mut bytes_in, mut bytes_out) = (
        Prim::<Int64Type>::with_capacity(n),
        Prim::<Int64Type>::with_capacity(n),
    );
    let (mut packets_in, mut packets_out) = (
        Prim::<Int64Type>::with_capacity(n),
        Prim::<Int64Type>::with_capacity(n),
    );
    let (mut start_time, mut end_time) = (
        Vec::<Option<i64>>::with_capacity(n),
        Vec::<Option<i64>>::with_capacity(n),
    );

    for e in events {
        time.push(e.time_ns);
        class_uid.append_value(e.class_uid);
        category.append_value(e.category_uid());
        activity_id.append_value(e.activity_id);
        activity_name.append_value(&e.activity_name);
        type_uid.append_value(e.type_uid());
        status.append_value(e.status_id);
        let a = &e.actor;
        a_pid.append_value(a.pid as i32);
        a_tid.append_value(a.tid as i32);
        a_uid.append_value(a.uid);
        a_gid.append_value(a.gid);
        a_name.append_value(&a.name);
        a_cmd.append_option(a.cmd_line.as_deref());
        a_exe.append_option(a.exe.as_deref());
        a_ppid.append_value(a.ppid as i32);
        if has.process {
            let dp = TargetProcess::default();
            let p = e.process.as_deref().unwrap_or(&dp);
            p_valid.push(e.process.is_some());
            p_pid.append_value(p.pid as i32);
            p_name.append_option(p.name.as_deref());
            p_cmd.append_option(p.cmd_line.as_deref());
            p_exe.append_option(p.exe.as_deref());
            p_cwd.append_option(p.cwd.as_deref());
            p_code.append_option(p.exit_code);
            p_sig.append_option(p.exit_signal);
            p_trunc.append_value(p.args_truncated);
        }
        if has.file {
            file.push(e.file.as_ref());
        }
        if has.file_result {
            file_result.push(e.file_result.as_deref());
        }
        let g = &e.groundtruth;
        g_cpu.append_value(g.cpu);
        g_seq.append_value(g.sequence);
        g_cg.append_value(g.cgroup_id);
        g_service.append_value(&g.service);
        g_syscall.append_option(g.syscall.as_deref());
        g_ret.append_option(g.ret);
        g_errno.append_option(g.errno);
        g_flags.append_option(g.flags);
        if has.mode_owner {
            g_mode.append_option(g.mode);
            g_ouid.append_option(g.owner_uid);
            g_ogid.append_option(g.owner_gid);
        }
        if has.length {
            g_len.append_option(g.length);
        }
        g_fd.append_option(g.fd);
        g_br.append_option(g.bytes_read);
        g_bw.append_option(g.bytes_written);
        g_impl.append_value(g.implicit);
        if has.socket {
            g_conn.append_option(g.connection_id);
            g_sock_path.append_option(g.socket_path.as_deref());
            g_peer.append_option(g.peer_pid.map(|p| p as i32));
        }
        g_created.append_value(g.created);
        if has.network {
            let dn = Network::default();
            let net = e.network.as_deref().unwrap_or(&dn);
            net_valid.push(e.network.is_some());
            let de = Endpoint::default();
            let (src, dst) = (
                net.src.as_ref().unwrap_or(&de),
                net.dst.as_ref().unwrap_or(&de),
            );
            src_valid.push(net.src.is_some());
            dst_valid.push(net.dst.is_some());
            src_ip.append_value(&src.ip);
            src_port.append_value(src.port.into());
            dst_ip.append_value(&dst.ip);
            dst_port.append_value(dst.port.into());
            proto.append_value(&net.protocol_name);
            dir.append_value(net.direction_id);
            traffic_valid.push(net.bytes_in.is_some() || net.bytes_out.is_some());
            bytes_in.append_option(net.bytes_in.map(|b| b as i64));
            bytes_out.append_option(net.bytes_out.map(|b| b as i64));
            packets_in.append_option(net.packets_in.map(|b| b as i64));
            packets_out.append_option(net.packets_out.map(|b| b as i64));
        }
        if has.span {
            start_time.push(e.start_time_ns);
            end_time.push(e.end_time_ns);
        }
    }
    let nulls = |f: Fields| null_array(&DataType::Struct(f), n);
    let ts_nulls = || null_array(&ts(), n);

    let actor_process = strukt(
        actor_process_fields(),
        vec![
            Arc::new(a_pid.finish()),
            Arc::new(a_tid.finish()),
            Arc::new(a_uid.finish()),
            Arc::new(a_gid.finish()),
            Arc::new(a_name.finish()),
            Arc::new(a_cmd.finish()),
            path_array(a_exe),
            strukt(
                Fields::from(vec![Field::new("pid", DataType::Int32, false)]),
                vec![Arc::new(a_ppid.finish())],
                None,
            ),
        ],
        None,
    );
    let actor = strukt(actor_fields(), vec![actor_process], None);
    let process = if !has.process {
        nulls(process_fields())
    } else {
        strukt(
            process_fields(),
            vec![
                Arc::new(p_pid.finish()),
                Arc::new(p_name.finish()),
                Arc::new(p_cmd.finish()),
                path_array(p_exe),
                Arc::new(p_cwd.finish()),
                Arc::new(p_code.finish()),
                Arc::new(p_sig.finish()),
                Arc::new(p_trunc.finish()),
            ],
            Some(p_valid),
        )
    };
    let extra = strukt(
        extra_fields(),
        vec![
            Arc::new(g_cpu.finish()),
            Arc::new(g_seq.finish()),
            Arc::new(g_cg.finish()),
            Arc::new(g_service.finish()),
            Arc::new(g_syscall.finish()),
            Arc::new(g_ret.finish()),
            Arc::new(g_errno.finish()),
            Arc::new(g_flags.finish()),
            opt_col(has.mode_owner, Arc::new(g_mode.finish()), n),
            opt_col(has.mode_owner, Arc::new(g_ouid.finish()), n),
            opt_col(has.mode_owner, Arc::new(g_ogid.finish()), n),
            opt_col(has.length, Arc::new(g_len.finish()), n),
            Arc::new(g_fd.finish()),
            Arc::new(g_br.finish()),
            Arc::new(g_bw.finish()),
            Arc::new(g_impl.finish()),
            opt_col(has.socket, Arc::new(g_conn.finish()), n),
            opt_col(has.socket, Arc::new(g_sock_path.finish()), n),
            opt_col(has.socket, Arc::new(g_peer.finish()), n),
            Arc::new(g_created.finish()),
        ],
        None,
    );
    let (src, dst, conn, traffic) = if !has.network {
        (
            nulls(endpoint_fields()),
            nulls(endpoint_fields()),
            nulls(connection_info_fields()),
            nulls(traffic_fields()),
        )
    } else {
        (
            strukt(
                endpoint_fields(),
                vec![Arc::new(src_ip.finish()), Arc::new(src_port.finish())],
                Some(src_valid),
            ),
            strukt(
                endpoint_fields(),
                vec![Arc::new(dst_ip.finish()), Arc::new(dst_port.finish())],
                Some(dst_valid),
            ),
            strukt(
                connection_info_fields(),
                vec![Arc::new(proto.finish()), Arc::new(dir.finish())],
                Some(net_valid),
            ),
            strukt(
                traffic_fields(),
                vec![
                    Arc::new(bytes_in.finish()),
                    Arc::new(bytes_out.finish()),
                    Arc::new(packets_in.finish()),
                    Arc::new(packets_out.finish()),
                ],
                Some(traffic_valid),
            ),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(time).with_timezone("UTC")),
        Arc::new(class_uid.finish()),
        Arc::new(category.finish()),
        Arc::new(activity_id.finish()),
        Arc::new(activity_name.finish()),
        Arc::new(type_uid.finish()),
        Arc::new(status.finish()),
        actor,
        process,
        if has.file {
            file.finish()
        } else {
            nulls(file_fields())
        },
        if has.file_result {
            file_result.finish()
        } else {
            nulls(file_fields())
        },
        src,
        dst,
        conn,
        traffic,
        if has.span {
            Arc::new(TimestampNanosecondArray::from(start_time).with_timezone("UTC"))
        } else {
            ts_nulls()
        },
        if has.span {
            Arc::new(TimestampNanosecondArray::from(end_time).with_timezone("UTC"))
        } else {
            ts_nulls()
        },
        extra,
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

fn col<'a, T: 'static>(s: &'a StructArray, name: &str) -> Result<&'a T, TrailError> {
    s.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| TrailError::Schema(format!("column `{name}` missing or of the wrong type")))
}

/// The activity and protocol names a trail holds, read back without allocating.
const LABELS: &[&str] = &[
    "Open",
    "Close",
    "Acquire",
    "Rename",
    "Delete",
    "Rmdir",
    "Mkdir",
    "Truncate",
    "Chmod",
    "Chown",
    "Link",
    "Symlink",
    "Launch",
    "Fork",
    "Terminate",
    "Reset",
    "Fail",
    "Refuse",
    "Traffic",
    "Listen",
    "Bind",
    "tcp",
    "udp",
    "unix",
];

fn label(v: &str) -> crate::event::Label {
    match LABELS.iter().find(|l| **l == v) {
        Some(l) => std::borrow::Cow::Borrowed(l),
        None => std::borrow::Cow::Owned(v.to_string()),
    }
}

/// A shared string column value; consecutive rows repeating one value (a process's
/// name, command line, executable, service) share one allocation.
fn shared(last: &mut Option<Shared>, a: &StringArray, i: usize) -> Option<Shared> {
    if !a.is_valid(i) {
        return None;
    }
    let v = a.value(i);
    if let Some(l) = last {
        if **l == *v {
            return Some(l.clone());
        }
    }
    let s: Shared = v.into();
    *last = Some(s.clone());
    Some(s)
}

fn opt_str<T: From<String>>(a: &StringArray, i: usize) -> Option<T> {
    a.is_valid(i).then(|| a.value(i).to_string().into())
}

macro_rules! opt {
    ($a:expr, $i:expr) => {
        $a.is_valid($i).then(|| $a.value($i))
    };
}

fn read_file_refs(s: &StructArray) -> Result<Vec<Option<FileRef>>, TrailError> {
    let path = col::<StringArray>(s, "path")?;
    let req = col::<StringArray>(s, "path_requested")?;
    let inode = col::<UInt64Array>(s, "inode")?;
    let dev = col::<UInt64Array>(s, "dev")?;
    let tr = col::<BooleanArray>(s, "path_truncated")?;
    Ok((0..s.len())
        .map(|i| {
            s.is_valid(i).then(|| FileRef {
                path: opt_str(path, i),
                path_requested: opt_str(req, i),
                inode: opt!(inode, i),
                dev: opt!(dev, i),
                path_truncated: tr.value(i),
            })
        })
        .collect())
}

/// A record batch of the trail schema back to events.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Event>, TrailError> {
    from_struct(&StructArray::from(batch.clone()))
}

/// Complete a batch read with only some of the trail's columns: every column left out
/// becomes all nulls (read back as absent or zero), so [`from_struct`] reads it.
pub fn fill_projected(batch: &RecordBatch) -> Result<StructArray, TrailError> {
    fn nullable(f: &Field) -> Field {
        let dt = match f.data_type() {
            DataType::Struct(children) => {
                DataType::Struct(children.iter().map(|c| nullable(c)).collect())
            }
            dt => dt.clone(),
        };
        Field::new(f.name(), dt, true)
    }
    fn fill(
        got: Option<&StructArray>,
        full: &Fields,
        len: usize,
    ) -> Result<StructArray, TrailError> {
        let mut fields = Vec::with_capacity(full.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(full.len());
        for f in full.iter() {
            let field = nullable(f);
            let have = got.and_then(|g| g.column_by_name(f.name()));
            let a: ArrayRef = match (f.data_type(), have) {
                (DataType::Struct(children), Some(h)) => {
                    let h = h.as_any().downcast_ref::<StructArray>().ok_or_else(|| {
                        TrailError::Schema(format!("column `{}` is not a struct", f.name()))
                    })?;
                    let inner = fill(Some(h), children, len)?;
                    let (fs, cols, _) = inner.into_parts();
                    Arc::new(StructArray::try_new(fs, cols, h.nulls().cloned())?)
                }
                (_, Some(h)) => h.clone(),
                (_, None) => arrow_array::new_null_array(field.data_type(), len),
            };
            fields.push(field);
            arrays.push(a);
        }
        Ok(StructArray::try_new(fields.into(), arrays, None)?)
    }
    let got = StructArray::from(batch.clone());
    let full = schema();
    fill(Some(&got), full.fields(), batch.num_rows())
}

/// The events of a struct array with the trail's columns.
pub fn from_struct(root: &StructArray) -> Result<Vec<Event>, TrailError> {
    let root = root.clone();
    let time = col::<TimestampNanosecondArray>(&root, "time")?;
    let class_uid = col::<Int32Array>(&root, "class_uid")?;
    let activity_id = col::<Int32Array>(&root, "activity_id")?;
    let activity_name = col::<StringArray>(&root, "activity_name")?;
    let status = col::<Int32Array>(&root, "status_id")?;
    let actor = col::<StructArray>(&root, "actor")?;
    let ap = col::<StructArray>(actor, "process")?;
    let a_pid = col::<Int32Array>(ap, "pid")?;
    let a_tid = col::<Int32Array>(ap, "tid")?;
    let a_uid = col::<UInt32Array>(ap, "uid")?;
    let a_gid = col::<UInt32Array>(ap, "gid")?;
    let a_name = col::<StringArray>(ap, "name")?;
    let a_cmd = col::<StringArray>(ap, "cmd_line")?;
    let a_exe = col::<StringArray>(col::<StructArray>(ap, "file")?, "path")?;
    let a_ppid = col::<Int32Array>(col::<StructArray>(ap, "parent_process")?, "pid")?;
    let p = col::<StructArray>(&root, "process")?;
    let p_pid = col::<Int32Array>(p, "pid")?;
    let p_name = col::<StringArray>(p, "name")?;
    let p_cmd = col::<StringArray>(p, "cmd_line")?;
    let p_exe = col::<StringArray>(col::<StructArray>(p, "file")?, "path")?;
    let p_cwd = col::<StringArray>(p, "cwd")?;
    let p_code = col::<Int32Array>(p, "exit_code")?;
    let p_sig = col::<Int32Array>(p, "exit_signal")?;
    let p_tr = col::<BooleanArray>(p, "args_truncated")?;
    let files = read_file_refs(col::<StructArray>(&root, "file")?)?;
    let results = read_file_refs(col::<StructArray>(&root, "file_result")?)?;
    let g = col::<StructArray>(&root, "groundtruth")?;
    let g_cpu = col::<UInt32Array>(g, "cpu")?;
    let g_seq = col::<UInt64Array>(g, "sequence")?;
    let g_cg = col::<UInt64Array>(g, "cgroup_id")?;
    let g_service = col::<StringArray>(g, "service")?;
    let g_syscall = col::<StringArray>(g, "syscall")?;
    let g_ret = col::<Int64Array>(g, "ret")?;
    let g_errno = col::<Int32Array>(g, "errno")?;
    let g_flags = col::<UInt64Array>(g, "flags")?;
    let g_mode = col::<UInt32Array>(g, "mode")?;
    let g_ouid = col::<UInt32Array>(g, "owner_uid")?;
    let g_ogid = col::<UInt32Array>(g, "owner_gid")?;
    let g_len = col::<Int64Array>(g, "length")?;
    let g_fd = col::<Int32Array>(g, "fd")?;
    let g_br = col::<UInt64Array>(g, "bytes_read")?;
    let g_bw = col::<UInt64Array>(g, "bytes_written")?;
    let g_impl = col::<BooleanArray>(g, "implicit")?;
    let g_conn = col::<UInt64Array>(g, "connection_id")?;
    let g_sock_path = col::<StringArray>(g, "socket_path")?;
    let g_peer = col::<Int32Array>(g, "peer_pid")?;
    let g_created = col::<BooleanArray>(g, "created")?;
    let src = col::<StructArray>(&root, "src_endpoint")?;
    let dst = col::<StructArray>(&root, "dst_endpoint")?;
    let conn = col::<StructArray>(&root, "connection_info")?;
    let traffic = col::<StructArray>(&root, "traffic")?;
    let (src_ip, src_port) = (
        col::<StringArray>(src, "ip")?,
        col::<Int32Array>(src, "port")?,
    );
    let (dst_ip, dst_port) = (
        col::<StringArray>(dst, "ip")?,
        col::<Int32Array>(dst, "port")?,
    );
    let proto = col::<StringArray>(conn, "protocol_name")?;
    let dir = col::<Int32Array>(conn, "direction_id")?;
    let bytes_in = col::<Int64Array>(traffic, "bytes_in")?;
    let bytes_out = col::<Int64Array>(traffic, "bytes_out")?;
    let packets_in = col::<Int64Array>(traffic, "packets_in")?;
    let packets_out = col::<Int64Array>(traffic, "packets_out")?;
    let start_time = col::<TimestampNanosecondArray>(&root, "start_time")?;
    let end_time = col::<TimestampNanosecondArray>(&root, "end_time")?;

    let mut out = Vec::with_capacity(root.len());
    let mut last: [Option<Shared>; 7] = Default::default();
    for (i, (file, file_result)) in files.into_iter().zip(results).enumerate() {
        let file_result = file_result.map(Box::new);
        let [l_name, l_cmd, l_exe, l_pname, l_pcmd, l_pexe, l_service] = &mut last;
        out.push(Event {
            time_ns: time.value(i),
            class_uid: class_uid.value(i),
            activity_id: activity_id.value(i),
            activity_name: label(activity_name.value(i)),
            status_id: status.value(i),
            actor: Actor {
                pid: a_pid.value(i) as u32,
                tid: a_tid.value(i) as u32,
                uid: a_uid.value(i),
                gid: a_gid.value(i),
                name: shared(l_name, a_name, i).unwrap_or_default(),
                cmd_line: shared(l_cmd, a_cmd, i),
                exe: shared(l_exe, a_exe, i),
                ppid: a_ppid.value(i) as u32,
            },
            process: p.is_valid(i).then(|| {
                Box::new(TargetProcess {
                    pid: p_pid.value(i) as u32,
                    name: shared(l_pname, p_name, i),
                    cmd_line: shared(l_pcmd, p_cmd, i),
                    exe: shared(l_pexe, p_exe, i),
                    cwd: opt_str(p_cwd, i),
                    exit_code: opt!(p_code, i),
                    exit_signal: opt!(p_sig, i),
                    args_truncated: p_tr.value(i),
                })
            }),
            file,
            file_result,
            groundtruth: Extra {
                cpu: g_cpu.value(i),
                sequence: g_seq.value(i),
                cgroup_id: g_cg.value(i),
                service: shared(l_service, g_service, i).unwrap_or_default(),
                syscall: g_syscall.is_valid(i).then(|| label(g_syscall.value(i))),
                ret: opt!(g_ret, i),
                errno: opt!(g_errno, i),
                flags: opt!(g_flags, i),
                mode: opt!(g_mode, i),
                owner_uid: opt!(g_ouid, i),
                owner_gid: opt!(g_ogid, i),
                length: opt!(g_len, i),
                fd: opt!(g_fd, i),
                bytes_read: opt!(g_br, i),
                bytes_written: opt!(g_bw, i),
                implicit: g_impl.value(i),
                connection_id: opt!(g_conn, i),
                socket_path: opt_str(g_sock_path, i),
                peer_pid: opt!(g_peer, i).map(|p| p as u32),
                created: g_created.value(i),
            },
            network: conn.is_valid(i).then(|| {
                Box::new(Network {
                    src: src.is_valid(i).then(|| Endpoint {
                        ip: src_ip.value(i).to_string(),
                        port: src_port.value(i) as u16,
                    }),
                    dst: dst.is_valid(i).then(|| Endpoint {
                        ip: dst_ip.value(i).to_string(),
                        port: dst_port.value(i) as u16,
                    }),
                    protocol_name: label(proto.value(i)),
                    direction_id: dir.value(i),
                    bytes_in: traffic
                        .is_valid(i)
                        .then(|| opt!(bytes_in, i).map(|b| b as u64))
                        .flatten(),
                    bytes_out: traffic
                        .is_valid(i)
                        .then(|| opt!(bytes_out, i).map(|b| b as u64))
                        .flatten(),
                    packets_in: traffic
                        .is_valid(i)
                        .then(|| opt!(packets_in, i).map(|b| b as u64))
                        .flatten(),
                    packets_out: traffic
                        .is_valid(i)
                        .then(|| opt!(packets_out, i).map(|b| b as u64))
                        .flatten(),
                })
            }),
            start_time_ns: opt!(start_time, i),
            end_time_ns: opt!(end_time, i),
        });
    }
    Ok(out)
}
