//! Kernel events as folding reads them, borrowed straight from a trail's record
//! batches: no [`trail::Event`] is built and no string is copied until an action needs
//! one (building events was a sixth of `analyze`'s time).

use arrow_array::{
    types::Int32Type, Array, ArrayRef, BooleanArray, DictionaryArray, Int32Array, RecordBatch,
    StringArray, StructArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_buffer::NullBuffer;
use std::sync::Arc;
use trail::Event;

/// A TCP/UDP event's connection columns.
#[derive(Clone, Copy, Debug)]
pub struct Net<'a> {
    pub protocol: &'a str,
    pub direction_id: i32,
    pub src: Option<(&'a str, u16)>,
    pub dst: Option<(&'a str, u16)>,
}

/// The columns of one event that folding and the analysis around it read
/// ([`super::fold::COLUMNS`]).
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    pub time_ns: i64,
    pub class_uid: i32,
    pub activity: &'a str,
    pub status_id: i32,
    pub pid: u32,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    /// `process.*` (the target of process events): pid and executable.
    pub process: Option<(u32, Option<&'a str>)>,
    pub file_path: Option<&'a str>,
    pub result_path: Option<&'a str>,
    pub network: Option<Net<'a>>,
    pub service: &'a str,
    pub flags: Option<u64>,
    pub created: bool,
    pub bytes_read: Option<u64>,
    pub bytes_written: Option<u64>,
    pub connection_id: Option<u64>,
}

impl<'a> Row<'a> {
    /// The same view of a decoded event (tests and callers that hold events).
    pub fn of(e: &'a Event) -> Row<'a> {
        let path = |f: Option<&'a trail::FileRef>| f.and_then(|f| f.path.as_deref());
        let ep = |p: &'a Option<trail::Endpoint>| p.as_ref().map(|e| (e.ip.as_str(), e.port));
        Row {
            time_ns: e.time_ns,
            class_uid: e.class_uid,
            activity: &e.activity_name,
            status_id: e.status_id,
            pid: e.actor.pid,
            comm: &e.actor.name,
            exe: e.actor.exe.as_deref(),
            process: e.process.as_ref().map(|p| (p.pid, p.exe.as_deref())),
            file_path: path(e.file.as_ref()),
            result_path: path(e.file_result.as_deref()),
            network: e.network.as_ref().map(|n| Net {
                protocol: &n.protocol_name,
                direction_id: n.direction_id,
                src: ep(&n.src),
                dst: ep(&n.dst),
            }),
            service: &e.groundtruth.service,
            flags: e.groundtruth.flags,
            created: e.groundtruth.created,
            bytes_read: e.groundtruth.bytes_read,
            bytes_written: e.groundtruth.bytes_written,
            connection_id: e.groundtruth.connection_id,
        }
    }
}

/// One leaf column and the validity of it and every struct above it.
struct Leaf<A> {
    a: A,
    nulls: Option<NullBuffer>,
}

impl<A> Leaf<A> {
    fn valid(&self, i: usize) -> bool {
        self.nulls.as_ref().is_none_or(|n| n.is_valid(i))
    }
}

/// The column at a dotted path (`actor.process.pid`), with the union of the validity
/// of the leaf and its parents (a null struct makes its fields absent).
fn column(batch: &RecordBatch, path: &str) -> Result<(ArrayRef, Option<NullBuffer>), String> {
    let missing = || format!("trail column `{path}` missing");
    let mut parts = path.split('.');
    let mut a: ArrayRef = batch
        .column_by_name(parts.next().unwrap_or_default())
        .ok_or_else(missing)?
        .clone();
    let mut nulls = a.nulls().cloned();
    for p in parts {
        let s = a
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| format!("trail column `{path}`: a parent is not a struct"))?;
        a = s.column_by_name(p).ok_or_else(missing)?.clone();
        nulls = NullBuffer::union(nulls.as_ref(), a.nulls());
    }
    Ok((a, nulls))
}

/// A string column as read: plain, or as a dictionary (keys into values), as
/// [`trail::stream_batches`] reads the trail's dictionary-encoded columns.
enum Strs {
    Plain(StringArray),
    Dict(Int32Array, StringArray),
}

impl Strs {
    /// The value of a valid row (a key outside the values, which the reader refuses,
    /// would read as empty).
    fn value(&self, i: usize) -> &str {
        match self {
            Strs::Plain(a) => a.value(i),
            Strs::Dict(keys, values) => {
                let k = keys.value(i) as usize;
                if k < values.len() {
                    values.value(k)
                } else {
                    ""
                }
            }
        }
    }
}

/// The string column at `path`, plain or a dictionary of strings.
fn strs(batch: &RecordBatch, path: &str) -> Result<Leaf<Strs>, String> {
    let (a, nulls) = column(batch, path)?;
    let unexpected = || format!("trail column `{path}` has an unexpected type");
    let a = if let Some(p) = a.as_any().downcast_ref::<StringArray>() {
        Strs::Plain(p.clone())
    } else {
        let d = a
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .ok_or_else(unexpected)?;
        let values = d
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(unexpected)?
            .clone();
        Strs::Dict(d.keys().clone(), values)
    };
    Ok(Leaf { a, nulls })
}

fn leaf<A: Array + Clone + 'static>(batch: &RecordBatch, path: &str) -> Result<Leaf<A>, String> {
    let (a, nulls) = column(batch, path)?;
    let a = a
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| format!("trail column `{path}` has an unexpected type"))?
        .clone();
    Ok(Leaf { a, nulls })
}

/// Validity only (a struct column).
fn present(batch: &RecordBatch, path: &str) -> Result<Option<NullBuffer>, String> {
    Ok(column(batch, path)?.1)
}

fn is_set(n: &Option<NullBuffer>, i: usize) -> bool {
    n.as_ref().is_none_or(|n| n.is_valid(i))
}

/// The columns of one batch, typed once; [`Columns::row`] reads a row of them.
pub struct Columns {
    len: usize,
    time: Leaf<TimestampNanosecondArray>,
    class_uid: Leaf<Int32Array>,
    activity: Leaf<Strs>,
    status: Leaf<Int32Array>,
    pid: Leaf<Int32Array>,
    comm: Leaf<StringArray>,
    exe: Leaf<Strs>,
    process: Option<NullBuffer>,
    p_pid: Leaf<Int32Array>,
    p_exe: Leaf<StringArray>,
    file: Leaf<StringArray>,
    result: Leaf<StringArray>,
    conn: Option<NullBuffer>,
    proto: Leaf<StringArray>,
    direction: Leaf<Int32Array>,
    src_ip: Leaf<StringArray>,
    src_port: Leaf<Int32Array>,
    dst_ip: Leaf<StringArray>,
    dst_port: Leaf<Int32Array>,
    service: Leaf<StringArray>,
    flags: Leaf<UInt64Array>,
    created: Leaf<BooleanArray>,
    read: Leaf<UInt64Array>,
    written: Leaf<UInt64Array>,
    conn_id: Leaf<UInt64Array>,
}

impl Columns {
    /// Type the columns of a batch read with (at least) [`super::fold::COLUMNS`].
    pub fn new(b: &RecordBatch) -> Result<Columns, String> {
        Ok(Columns {
            len: b.num_rows(),
            time: leaf(b, "time")?,
            class_uid: leaf(b, "class_uid")?,
            activity: strs(b, "activity_name")?,
            status: leaf(b, "status_id")?,
            pid: leaf(b, "actor.process.pid")?,
            comm: leaf(b, "actor.process.name")?,
            exe: strs(b, "actor.process.file.path")?,
            process: present(b, "process")?,
            p_pid: leaf(b, "process.pid")?,
            p_exe: leaf(b, "process.file.path")?,
            file: leaf(b, "file.path")?,
            result: leaf(b, "file_result.path")?,
            conn: present(b, "connection_info")?,
            proto: leaf(b, "connection_info.protocol_name")?,
            direction: leaf(b, "connection_info.direction_id")?,
            src_ip: leaf(b, "src_endpoint.ip")?,
            src_port: leaf(b, "src_endpoint.port")?,
            dst_ip: leaf(b, "dst_endpoint.ip")?,
            dst_port: leaf(b, "dst_endpoint.port")?,
            service: leaf(b, "groundtruth.service")?,
            flags: leaf(b, "groundtruth.flags")?,
            created: leaf(b, "groundtruth.created")?,
            read: leaf(b, "groundtruth.bytes_read")?,
            written: leaf(b, "groundtruth.bytes_written")?,
            conn_id: leaf(b, "groundtruth.connection_id")?,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `i` (< `len()`). A null in a column the schema requires reads as its zero
    /// value, like the full event decoder.
    pub fn row(&self, i: usize) -> Row<'_> {
        fn s(l: &Leaf<StringArray>, i: usize) -> Option<&str> {
            l.valid(i).then(|| l.a.value(i))
        }
        fn d(l: &Leaf<Strs>, i: usize) -> Option<&str> {
            l.valid(i).then(|| l.a.value(i))
        }
        macro_rules! v {
            ($l:expr) => {
                $l.valid(i).then(|| $l.a.value(i))
            };
        }
        fn endpoint<'a>(
            ip: &'a Leaf<StringArray>,
            port: &Leaf<Int32Array>,
            i: usize,
        ) -> Option<(&'a str, u16)> {
            let port = if port.valid(i) { port.a.value(i) } else { 0 };
            s(ip, i).map(|ip| (ip, port as u16))
        }
        Row {
            time_ns: v!(self.time).unwrap_or(0),
            class_uid: v!(self.class_uid).unwrap_or(0),
            activity: d(&self.activity, i).unwrap_or(""),
            status_id: v!(self.status).unwrap_or(0),
            pid: v!(self.pid).unwrap_or(0) as u32,
            comm: s(&self.comm, i).unwrap_or(""),
            exe: d(&self.exe, i),
            process: is_set(&self.process, i)
                .then(|| (v!(self.p_pid).unwrap_or(0) as u32, s(&self.p_exe, i))),
            file_path: s(&self.file, i),
            result_path: s(&self.result, i),
            network: is_set(&self.conn, i).then(|| Net {
                protocol: s(&self.proto, i).unwrap_or(""),
                direction_id: v!(self.direction).unwrap_or(0),
                src: endpoint(&self.src_ip, &self.src_port, i),
                dst: endpoint(&self.dst_ip, &self.dst_port, i),
            }),
            service: s(&self.service, i).unwrap_or(""),
            flags: v!(self.flags),
            created: v!(self.created).unwrap_or(false),
            bytes_read: v!(self.read),
            bytes_written: v!(self.written),
            connection_id: v!(self.conn_id),
        }
    }
}

/// Shared copies of the few distinct names a trail repeats on every event (services,
/// process names, executables): the last few are kept and handed out again.
#[derive(Default)]
pub struct Names {
    recent: Vec<Arc<str>>,
}

impl Names {
    const KEEP: usize = 32;

    pub fn get(&mut self, s: &str) -> Arc<str> {
        // Newest first: a row's service, command and executable are mostly the last
        // row's. Short names are compared a word at a time (no memcmp call).
        if let Some(r) = self.recent.iter().rev().find(|r| super::same(r, s)) {
            return r.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.recent.len() == Self::KEEP {
            self.recent.remove(0);
        }
        self.recent.push(a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trail::{
        event::{activity, class, direction, status},
        Actor, Endpoint, Extra, FileRef, Network, RunInfo, TargetProcess, TrailWriter,
        WriterOptions,
    };

    fn base(t: i64, class_uid: i32, name: &'static str) -> Event {
        Event {
            time_ns: t,
            class_uid,
            activity_id: activity::OTHER,
            activity_name: name.into(),
            status_id: status::SUCCESS,
            actor: Actor {
                pid: 40 + t as u32,
                name: format!("comm{}", t % 3).into(),
                exe: (t % 4 != 0).then(|| format!("/usr/bin/x{t}").into()),
                ..Default::default()
            },
            groundtruth: Extra {
                service: format!("svc{}", t % 2).into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn file(p: Option<&str>) -> Option<FileRef> {
        Some(FileRef {
            path: p.map(str::to_string),
            inode: Some(7),
            ..Default::default()
        })
    }

    fn events() -> Vec<Event> {
        let fs = class::FILE_SYSTEM_ACTIVITY;
        let mut v = Vec::new();
        let mut e = base(1, fs, "Open");
        e.file = file(Some("/srv/a"));
        e.groundtruth.flags = Some(0o1101);
        e.groundtruth.created = true;
        v.push(e);
        let mut e = base(2, fs, "Close");
        e.file = file(Some("/srv/a"));
        e.groundtruth.bytes_read = Some(0);
        e.groundtruth.bytes_written = Some(12);
        v.push(e);
        let mut e = base(3, fs, "Rename");
        e.file = file(Some("/srv/a"));
        e.file_result = file(Some("/srv/b")).map(Box::new);
        v.push(e);
        let mut e = base(4, fs, "Open");
        e.status_id = status::FAILURE;
        e.file = file(None);
        e.groundtruth.errno = Some(2);
        v.push(e);
        for (t, exe) in [(5, Some("/bin/sh")), (6, None)] {
            let mut e = base(t, class::PROCESS_ACTIVITY, "Launch");
            e.process = Some(Box::new(TargetProcess {
                pid: 99,
                exe: exe.map(Into::into),
                ..Default::default()
            }));
            v.push(e);
        }
        let mut e = base(7, class::NETWORK_ACTIVITY, "Open");
        e.network = Some(Box::new(Network {
            src: Some(Endpoint {
                ip: "127.0.0.1".into(),
                port: 40000,
            }),
            dst: Some(Endpoint {
                ip: "::1".into(),
                port: 8080,
            }),
            protocol_name: "tcp".into(),
            direction_id: direction::OUTBOUND,
            ..Default::default()
        }));
        e.groundtruth.connection_id = Some(11);
        v.push(e);
        let mut e = base(8, class::NETWORK_ACTIVITY, "Close");
        e.network = Some(Box::new(Network {
            protocol_name: "tcp".into(),
            direction_id: direction::INBOUND,
            ..Default::default()
        }));
        e.groundtruth.connection_id = Some(11);
        e.groundtruth.bytes_read = Some(100);
        e.groundtruth.bytes_written = Some(200);
        v.push(e);
        v.push(base(9, class::PROCESS_ACTIVITY, "Terminate"));
        v
    }

    /// Every row read from the projected columns of a written trail is the row of the
    /// event written, with batches of 3 rows (so that some batches lack whole groups:
    /// file, process, network), and the names handed out are shared.
    #[test]
    fn rows_from_columns_equal_rows_of_events() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions {
            batch_rows: 3,
            ..Default::default()
        };
        let mut w = TrailWriter::create(dir.path(), RunInfo::default(), opts).unwrap();
        let events = events();
        for e in &events {
            w.push(e.clone()).unwrap();
        }
        w.finish().unwrap();
        // Plain, and with the dictionary-encoded columns read as dictionaries.
        let fold = super::super::fold::COLUMNS;
        let mut s = trail::stream_columns(dir.path(), fold).unwrap();
        let dicts = super::super::fold::DICTIONARY_COLUMNS;
        let mut d = trail::stream_batches(dir.path(), fold, dicts).unwrap();
        // Every row of a stream (the dictionary-encoded columns as dictionaries when
        // `dict`).
        let rows = |s: &mut trail::EventStream, dict: bool| {
            let mut out = Vec::new();
            while let Some(b) = s.next_batch() {
                let b = b.unwrap();
                let exe = column(&b, "actor.process.file.path").unwrap().0;
                let is_dict = exe
                    .as_any()
                    .downcast_ref::<DictionaryArray<Int32Type>>()
                    .is_some();
                assert_eq!(is_dict, dict);
                let c = Columns::new(&b).unwrap();
                out.extend((0..c.len()).map(|i| format!("{:?}", c.row(i))));
            }
            out
        };
        let (got, got_dict) = (rows(&mut s, false), rows(&mut d, true));
        let want: Vec<String> = events.iter().map(|e| format!("{:?}", Row::of(e))).collect();
        assert_eq!(got, want);
        assert_eq!(got_dict, want);
        let mut n = Names::default();
        let a = n.get("svc");
        assert!(Arc::ptr_eq(&a, &n.get("svc")));
        assert_eq!(&*n.get("other"), "other");
    }
}
