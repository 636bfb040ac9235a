//! Reading a trail back.

use crate::{schema, Event, TrailError};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
};

/// One segment: its path, footer metadata and events.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    pub metadata: BTreeMap<String, String>,
    pub events: Vec<Event>,
}

/// The segment files of a trail directory, in order.
pub fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>, TrailError> {
    let rd = std::fs::read_dir(dir).map_err(|source| TrailError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| TrailError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("segment-") && name.ends_with(".parquet") {
            paths.push(entry.path());
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(TrailError::Empty(dir.to_path_buf()));
    }
    Ok(paths)
}

/// What the kernel side of a recording could not capture, from the footer of its last
/// segment (the counts are cumulative over the run).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Completeness {
    /// Events the kernel could not deliver (`groundtruth.lost_total`).
    pub lost_events: u64,
    /// Other gaps by name (`groundtruth.kernel_gaps`), e.g.
    /// `program_runs_skipped_by_kernel`.
    pub kernel_gaps: BTreeMap<String, u64>,
}

/// Kernel gaps as text, `name count` each (zero counts left out), for reports.
pub fn gap_texts(gaps: &BTreeMap<String, u64>) -> impl Iterator<Item = String> + '_ {
    gaps.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
}

/// The [`Completeness`] of a trail, from its last segment's footer. Trails written before
/// `groundtruth.kernel_gaps` existed read as having none.
pub fn completeness(dir: &Path) -> Result<Completeness, TrailError> {
    let paths = segment_paths(dir)?;
    let last = paths.last().expect("segment_paths is never empty");
    let file = File::open(last).map_err(|source| TrailError::Io {
        path: last.clone(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| TrailError::Parquet {
            path: last.clone(),
            source,
        })?;
    let kv = footer(&builder);
    let bad = |key: &str| {
        TrailError::Schema(format!(
            "{}: footer key {key} is not what the format says",
            last.display()
        ))
    };
    Ok(Completeness {
        lost_events: match kv.get(crate::meta::LOST_TOTAL) {
            Some(v) => v.parse().map_err(|_| bad(crate::meta::LOST_TOTAL))?,
            None => 0,
        },
        kernel_gaps: match kv.get(crate::meta::KERNEL_GAPS) {
            Some(v) => serde_json::from_str(v).map_err(|_| bad(crate::meta::KERNEL_GAPS))?,
            None => BTreeMap::new(),
        },
    })
}

/// A segment's footer key-value metadata.
fn footer(builder: &ParquetRecordBatchReaderBuilder<File>) -> BTreeMap<String, String> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Read one segment, checking that it has the trail schema.
pub fn read_segment(path: &Path) -> Result<Segment, TrailError> {
    let pq = |source| TrailError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| TrailError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let metadata = footer(&builder);
    let expected = schema::schema();
    if builder.schema().fields() != expected.fields() {
        return Err(TrailError::Schema(format!(
            "{}: columns differ from the trail schema",
            path.display()
        )));
    }
    let reader = builder.build().map_err(pq)?;
    let mut events = Vec::new();
    for batch in reader {
        let batch = batch?;
        events.extend(schema::from_batch(&batch)?);
    }
    Ok(Segment {
        path: path.to_path_buf(),
        metadata,
        events,
    })
}

/// The events of a trail, segment after segment, one record batch in memory at a time
/// (memory does not grow with the trail).
pub struct EventStream {
    /// Only these columns (dotted leaf paths, or their parents) are decoded; the others
    /// read back as absent.
    columns: Option<Vec<String>>,
    /// String columns (dotted leaf paths) read as dictionary arrays ([`stream_batches`]).
    dictionary: Vec<String>,
    paths: std::vec::IntoIter<PathBuf>,
    path: PathBuf,
    batches: Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
    events: std::vec::IntoIter<Event>,
}

/// Stream the events of every segment of a trail directory, in order.
pub fn stream_events(dir: &Path) -> Result<EventStream, TrailError> {
    Ok(EventStream {
        columns: None,
        dictionary: Vec::new(),
        paths: segment_paths(dir)?.into_iter(),
        path: PathBuf::new(),
        batches: None,
        events: Vec::new().into_iter(),
    })
}

/// Like [`stream_events`], decoding only the named columns (`"file.path"`,
/// `"groundtruth"` for all of that struct, ...); every other field reads back as absent
/// (None, 0, false, empty). Much cheaper when a reader needs few columns. As in the full
/// read, an event has `network` only when `connection_info` is there.
pub fn stream_columns(dir: &Path, columns: &[&str]) -> Result<EventStream, TrailError> {
    let mut s = stream_events(dir)?;
    s.columns = Some(columns.iter().map(|c| c.to_string()).collect());
    Ok(s)
}

/// Like [`stream_columns`], for readers that take record batches
/// ([`EventStream::next_batch`]), not events: the string columns named in `dictionary`
/// come as `Dictionary(Int32, Utf8)` arrays, each distinct value once per row group
/// instead of copied into every row (the trail's dictionary-encoded columns: process
/// executables, activity names).
pub fn stream_batches(
    dir: &Path,
    columns: &[&str],
    dictionary: &[&str],
) -> Result<EventStream, TrailError> {
    let mut s = stream_columns(dir, columns)?;
    s.dictionary = dictionary.iter().map(|c| c.to_string()).collect();
    Ok(s)
}

/// `fields` with the string leaves at the dotted paths in `dictionary` (below
/// `prefix`) as dictionary arrays.
fn with_dictionaries(
    fields: &arrow_schema::Fields,
    prefix: &str,
    dictionary: &[String],
) -> arrow_schema::Fields {
    use arrow_schema::{DataType, Field};
    fields
        .iter()
        .map(|f| {
            let path = format!("{prefix}{}", f.name());
            let ty = match f.data_type() {
                DataType::Struct(inner) => {
                    DataType::Struct(with_dictionaries(inner, &format!("{path}."), dictionary))
                }
                DataType::Utf8 if dictionary.contains(&path) => {
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
                }
                t => t.clone(),
            };
            std::sync::Arc::new(Field::new(f.name(), ty, f.is_nullable()))
        })
        .collect()
}

impl EventStream {
    fn open(&mut self, path: PathBuf) -> Result<(), TrailError> {
        let pq = |source| TrailError::Parquet {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(|source| TrailError::Io {
            path: path.clone(),
            source,
        })?;
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(pq)?;
        if meta.schema().fields() != schema::schema().fields() {
            return Err(TrailError::Schema(format!(
                "{}: columns differ from the trail schema",
                path.display()
            )));
        }
        let meta = if self.dictionary.is_empty() {
            meta
        } else {
            let fields = with_dictionaries(meta.schema().fields(), "", &self.dictionary);
            let schema =
                arrow_schema::Schema::new_with_metadata(fields, meta.schema().metadata().clone());
            let options = ArrowReaderOptions::new().with_schema(std::sync::Arc::new(schema));
            ArrowReaderMetadata::try_new(meta.metadata().clone(), options).map_err(pq)?
        };
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
        let builder = match &self.columns {
            Some(cols) => {
                let descr = builder.parquet_schema();
                let leaves: Vec<usize> = (0..descr.num_columns())
                    .filter(|&i| {
                        let p = descr.column(i).path().string();
                        cols.iter()
                            .any(|c| p == *c || p.starts_with(&format!("{c}.")))
                    })
                    .collect();
                let mask = parquet::arrow::ProjectionMask::leaves(descr, leaves);
                builder.with_projection(mask)
            }
            None => builder,
        };
        self.batches = Some(builder.with_batch_size(4096).build().map_err(pq)?);
        self.path = path;
        Ok(())
    }
}

impl EventStream {
    /// The next record batch as read (only the requested columns with
    /// [`stream_columns`]), for readers that take values straight from the columns; the
    /// events of a batch taken this way are not returned by the iterator.
    pub fn next_batch(&mut self) -> Option<Result<RecordBatch, TrailError>> {
        loop {
            match self.batches.as_mut().and_then(|b| b.next()) {
                Some(Ok(batch)) => return Some(Ok(batch)),
                Some(Err(source)) => {
                    self.batches = None;
                    return Some(Err(TrailError::Parquet {
                        path: self.path.clone(),
                        source: source.into(),
                    }));
                }
                None => {
                    let path = self.paths.next()?;
                    if let Err(e) = self.open(path) {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// The segment the last batch came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for EventStream {
    type Item = Result<Event, TrailError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.events.next() {
                return Some(Ok(e));
            }
            let events = match self.next_batch()? {
                Ok(batch) if self.columns.is_some() => {
                    schema::fill_projected(&batch).and_then(|s| schema::from_struct(&s))
                }
                Ok(batch) => schema::from_batch(&batch),
                Err(e) => return Some(Err(e)),
            };
            match events {
                Ok(v) => self.events = v.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Read every segment of a trail directory.
pub fn read_trail(dir: &Path) -> Result<Vec<Segment>, TrailError> {
    segment_paths(dir)?
        .iter()
        .map(|p| read_segment(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::*, meta, RunInfo, TrailWriter, WriterOptions};

    fn sample(i: u64) -> Event {
        Event {
            time_ns: 1_700_000_000_000_000_000 + i as i64,
            class_uid: class::FILE_SYSTEM_ACTIVITY,
            activity_id: activity::FILE_OPEN,
            activity_name: "Open".into(),
            status_id: status::SUCCESS,
            actor: Actor {
                pid: 10,
                tid: 11,
                uid: 1000,
                gid: 1000,
                name: "cat".into(),
                cmd_line: Some("cat /etc/hostname".into()),
                exe: Some("/usr/bin/cat".into()),
                ppid: 1,
            },
            process: i.is_multiple_of(3).then(|| {
                Box::new(TargetProcess {
                    pid: 12,
                    name: Some("x".into()),
                    exit_code: Some(3),
                    ..Default::default()
                })
            }),
            file: i.is_multiple_of(2).then(|| FileRef {
                path: Some(format!("/tmp/f{i}")),
                path_requested: Some("f".into()),
                inode: Some(42 + i),
                dev: None,
                path_truncated: i.is_multiple_of(4),
            }),
            file_result: None,
            network: i.is_multiple_of(5).then(|| {
                Box::new(Network {
                    src: (!i.is_multiple_of(15)).then(|| Endpoint {
                        ip: "::1".into(),
                        port: 40000 + i as u16,
                    }),
                    dst: Some(Endpoint {
                        ip: "127.0.0.1".into(),
                        port: 8080,
                    }),
                    protocol_name: "tcp".into(),
                    direction_id: direction::OUTBOUND,
                    bytes_in: i.is_multiple_of(10).then_some(i * 3),
                    bytes_out: Some(i),
                    packets_in: i.is_multiple_of(10).then_some(i),
                    packets_out: None,
                })
            }),
            start_time_ns: i.is_multiple_of(10).then_some(1_700_000_000_000_000_000),
            end_time_ns: i
                .is_multiple_of(10)
                .then_some(1_700_000_000_000_000_001 + i as i64),
            groundtruth: Extra {
                connection_id: i.is_multiple_of(5).then_some(i / 5),
                socket_path: i.is_multiple_of(15).then(|| "@abstract".to_string()),
                peer_pid: i.is_multiple_of(15).then_some(77),
                cpu: (i % 2) as u32,
                sequence: i,
                service: "svc".into(),
                bytes_written: Some(i * 10),
                errno: i.is_multiple_of(5).then_some(2),
                implicit: i.is_multiple_of(7),
                ..Default::default()
            },
        }
    }

    #[test]
    fn round_trip_through_parquet_with_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunInfo {
            run_id: "r1".into(),
            ..Default::default()
        };
        let opts = WriterOptions {
            batch_rows: 7,
            segment_rows: 20,
            zstd_level: 1,
            ..Default::default()
        };
        let mut w = TrailWriter::create(dir.path(), run, opts).unwrap();
        let events: Vec<Event> = (0..50).map(sample).collect();
        for e in &events {
            w.push(e.clone()).unwrap();
        }
        w.set_lost([(1u32, 5u64)].into());
        let paths = w.finish().unwrap().files;
        assert_eq!(paths.len(), 3, "50 rows at 20 rows per segment");
        let segs = read_trail(dir.path()).unwrap();
        let back: Vec<Event> = segs.iter().flat_map(|s| s.events.clone()).collect();
        assert_eq!(back, events);
        let streamed: Vec<Event> = stream_events(dir.path())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(streamed, events, "streaming reads the same events");
        // Only some columns: those are read, the rest are absent.
        let some: Vec<Event> = stream_columns(
            dir.path(),
            &[
                "time",
                "file.path",
                "groundtruth.bytes_written",
                "src_endpoint",
                "connection_info",
            ],
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(some.len(), events.len());
        for (a, b) in some.iter().zip(&events) {
            assert_eq!(a.time_ns, b.time_ns);
            assert_eq!(a.groundtruth.bytes_written, b.groundtruth.bytes_written);
            assert_eq!(
                a.file.as_ref().and_then(|f| f.path.clone()),
                b.file.as_ref().and_then(|f| f.path.clone())
            );
            assert_eq!(
                a.network.as_ref().and_then(|n| n.src.clone()),
                b.network.as_ref().and_then(|n| n.src.clone()),
                "{a:?}"
            );
            assert_eq!(
                (a.actor.pid, a.file.as_ref().and_then(|f| f.inode)),
                (0, None)
            );
            assert_eq!(a.groundtruth.errno, None);
        }
        let last = &segs[2].metadata;
        assert_eq!(last[meta::RUN_ID], "r1");
        assert_eq!(last[meta::SEGMENT], "2");
        assert_eq!(last[meta::LOST_TOTAL], "5");
        assert_eq!(last[meta::LOST], r#"{"1":5}"#);
        let counts: Vec<&str> = segs
            .iter()
            .map(|s| s.metadata[meta::EVENTS].as_str())
            .collect();
        assert_eq!(
            counts,
            ["20", "20", "10"],
            "batches never cross a segment boundary"
        );
    }

    /// `events` written with `batch_rows` rows a batch, streamed back.
    fn round_trip(batch_rows: usize, events: &[Event]) -> Vec<Event> {
        let dir = tempfile::tempdir().unwrap();
        let opts = WriterOptions {
            batch_rows,
            ..Default::default()
        };
        let mut w = TrailWriter::create(dir.path(), RunInfo::default(), opts).unwrap();
        for e in events {
            w.push(e.clone()).unwrap();
        }
        w.finish().unwrap();
        stream_events(dir.path())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Batches in which whole groups or optional columns are absent (written as one
    /// null array each) read back like batches that have them.
    #[test]
    fn batches_without_some_groups_round_trip() {
        let events: Vec<Event> = (0..40)
            .map(|i| {
                let mut e = sample(i);
                // Batch k (rows 5k..5k+5): the groups of bit k are absent in it.
                let k = i / 5;
                if k & 1 != 0 {
                    e.process = None;
                    e.network = None;
                }
                if k & 2 != 0 {
                    e.file = None;
                    e.start_time_ns = None;
                    e.end_time_ns = None;
                    e.groundtruth.connection_id = None;
                    e.groundtruth.socket_path = None;
                    e.groundtruth.peer_pid = None;
                }
                if k & 4 == 0 && i % 2 == 1 {
                    e.file_result = Some(Box::new(FileRef {
                        path: Some(format!("/tmp/new{i}")),
                        ..Default::default()
                    }));
                    e.groundtruth.mode = Some(0o644);
                    e.groundtruth.owner_uid = Some(7);
                    e.groundtruth.length = Some(i as i64);
                }
                e
            })
            .collect();
        assert_eq!(round_trip(5, &events), events);
    }

    /// Integer columns are delta-encoded: differences between extreme values overflow
    /// 64 bits and must still read back exactly.
    #[test]
    fn extreme_integers_round_trip() {
        let events: Vec<Event> = (0..40u64)
            .map(|i| {
                let mut e = sample(i);
                let hi = i % 2 == 0;
                e.time_ns = if hi {
                    i64::MAX - i as i64
                } else {
                    i64::MIN + i as i64
                };
                e.actor.pid = if hi { u32::MAX } else { 0 };
                e.actor.uid = if i % 3 == 0 { u32::MAX } else { 1 };
                e.groundtruth.sequence = if hi { u64::MAX - i } else { i };
                e.groundtruth.cgroup_id = if hi { 0 } else { u64::MAX };
                e.groundtruth.ret = Some(if hi { i64::MIN } else { i64::MAX });
                e.groundtruth.bytes_written = Some(u64::MAX >> (i % 64));
                if let Some(f) = e.file.as_mut() {
                    f.inode = Some(if hi { u64::MAX } else { 1 });
                }
                e
            })
            .collect();
        assert_eq!(round_trip(3, &events), events);
    }

    #[test]
    fn empty_run_still_writes_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let w =
            TrailWriter::create(dir.path(), RunInfo::default(), WriterOptions::default()).unwrap();
        assert_eq!(w.finish().unwrap().files.len(), 1);
        let segs = read_trail(dir.path()).unwrap();
        assert!(segs[0].events.is_empty());
    }

    #[test]
    fn not_a_trail_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_trail(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no trail segments"), "{e}");
        std::fs::write(dir.path().join("segment-000000.parquet"), b"garbage").unwrap();
        let e = read_trail(dir.path()).unwrap_err().to_string();
        assert!(e.contains("segment-000000.parquet"), "{e}");
    }
}
