//! Writing a trail: events are buffered into record batches and written as zstd Parquet
//! segments. A segment is written under a temporary name and renamed when complete, so
//! a reader never sees a half-written `segment-*.parquet`.

use crate::{meta, schema, Event, TrailError};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::metadata::KeyValue,
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};
use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
};

/// A file whose bytes are hashed as they are written (Parquet writes sequentially), so
/// that sealing a segment does not read it back.
pub struct HashingFile {
    file: File,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl std::io::Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Sealing settings (docs/seal.md).
#[derive(Default)]
pub struct SealOptions {
    /// Long-term key that certifies the run's first key (`--sign-key`).
    pub long_term: Option<ed25519_dalek::SigningKey>,
    /// File the chain head is appended to at every seal (`--anchor`).
    pub anchor: Option<PathBuf>,
}

/// Facts about the run, written into every segment footer.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub run_id: String,
    pub host: String,
    pub kernel: String,
    pub agent_version: String,
}

#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Rows per record batch (and row group granularity).
    pub batch_rows: usize,
    /// A new segment is started after this many rows,
    pub segment_rows: usize,
    /// ... or once it holds this many bytes (written and buffered),
    pub segment_bytes: u64,
    /// ... or once it has been open this long (checked on push and [`TrailWriter::tick`]).
    pub segment_age: std::time::Duration,
    /// Level 1 by default: at level 3 compression took a tenth more of the agent's CPU
    /// per event, for files a few percent smaller (the bench's file loop: 4.6 bytes
    /// per event at level 3, 4.9 at level 1).
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch_rows: 2048,
            segment_rows: 4 << 20,
            segment_bytes: 256 << 20,
            segment_age: std::time::Duration::from_secs(300),
            zstd_level: 1,
        }
    }
}

/// Leaf columns written with dictionary encoding.
const DICTIONARY_COLUMNS: [&str; 4] = [
    "activity_name",
    "actor.process.cmd_line",
    "actor.process.file.path",
    "process.cmd_line",
];

/// A leaf column's path from its dotted name: `ColumnPath::from("a.b")` is one part
/// named `a.b`, which matches no nested column (the dictionary settings of the nested
/// columns above were silently ignored that way).
fn leaf_path(dotted: &str) -> ColumnPath {
    ColumnPath::new(dotted.split('.').map(str::to_string).collect())
}

/// Paths of the integer and timestamp leaf columns of the schema.
fn int_leaves() -> Vec<ColumnPath> {
    use arrow_schema::{DataType, Field};
    fn walk(f: &Field, path: &mut Vec<String>, out: &mut Vec<ColumnPath>) {
        path.push(f.name().clone());
        match f.data_type() {
            DataType::Struct(fields) => {
                for c in fields {
                    walk(c, path, out);
                }
            }
            t if t.is_integer() || matches!(t, DataType::Timestamp(..)) => {
                out.push(ColumnPath::new(path.clone()))
            }
            _ => {}
        }
        path.pop();
    }
    let mut out = Vec::new();
    for f in schema::schema().fields() {
        walk(f, &mut Vec::new(), &mut out);
    }
    out
}

struct Open {
    writer: ArrowWriter<HashingFile>,
    opened: std::time::Instant,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
    time_min: i64,
    time_max: i64,
    seq: BTreeMap<u32, (u64, u64)>,
}

pub struct TrailWriter {
    dir: PathBuf,
    run: RunInfo,
    opts: WriterOptions,
    buf: Vec<Event>,
    open: Option<Open>,
    next_index: u32,
    written: Vec<PathBuf>,
    total_rows: u64,
    /// Lost events per CPU, as last reported by the caller.
    lost: BTreeMap<u32, u64>,
    /// Events numbered per CPU by the kernel, as last reported by the caller.
    produced: BTreeMap<u32, u64>,
    /// Counts of what the kernel side could not record, by name (meta::KERNEL_GAPS).
    kernel_gaps: BTreeMap<String, u64>,
    sealer: crate::seal::Sealer,
    first_key: String,
    /// When the oldest event not yet in an open segment arrived: a segment's age counts
    /// from its first event, not from when a batch opened it.
    first_pending: Option<std::time::Instant>,
    /// Heads printed by the caller: (segment file, chain head after its seal).
    sealed: Vec<(String, String)>,
}

impl TrailWriter {
    /// Start a trail in `dir`, which must exist and be empty: writes the seal log's
    /// genesis record.
    pub fn create(dir: &Path, run: RunInfo, opts: WriterOptions) -> Result<Self, TrailError> {
        Self::create_sealed(dir, run, opts, SealOptions::default())
    }

    pub fn create_sealed(
        dir: &Path,
        run: RunInfo,
        opts: WriterOptions,
        seal: SealOptions,
    ) -> Result<Self, TrailError> {
        let (sealer, first_key) =
            crate::seal::Sealer::create(dir, &run, seal.long_term.as_ref(), seal.anchor).map_err(
                |source| TrailError::Io {
                    path: dir.join(crate::seal::SEALS_FILE),
                    source,
                },
            )?;
        Ok(Self {
            sealer,
            first_key,
            first_pending: None,
            sealed: Vec::new(),
            dir: dir.to_path_buf(),
            run,
            opts,
            buf: Vec::new(),
            open: None,
            next_index: 0,
            written: Vec::new(),
            total_rows: 0,
            lost: BTreeMap::new(),
            produced: BTreeMap::new(),
            kernel_gaps: BTreeMap::new(),
        })
    }

    /// Record the current lost-event counts per CPU (written into footers).
    pub fn set_lost(&mut self, lost: BTreeMap<u32, u64>) {
        self.lost = lost;
    }

    /// Record how many events each CPU's kernel sequence counter numbered.
    pub fn set_produced(&mut self, produced: BTreeMap<u32, u64>) {
        self.produced = produced;
    }

    /// Record what else the kernel side could not record so far, by name (written into
    /// footers as `groundtruth.kernel_gaps`; zero counts are left out).
    pub fn set_kernel_gaps(&mut self, gaps: BTreeMap<String, u64>) {
        self.kernel_gaps = gaps.into_iter().filter(|(_, n)| *n > 0).collect();
    }

    /// The public key that signs the first seal (hex): print it, keep it.
    pub fn first_key(&self) -> &str {
        &self.first_key
    }

    /// Current chain head (hex SHA-256 of the last seal record).
    pub fn head(&self) -> String {
        self.sealer.head()
    }

    /// Segments sealed since the last call, with the chain head after each.
    pub fn take_sealed(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.sealed)
    }

    /// Close the open segment if it is older than the age limit (call periodically:
    /// an idle recording still seals what it has).
    pub fn tick(&mut self) -> Result<(), TrailError> {
        let oldest = match &self.open {
            Some(o) => Some(o.opened),
            None => self.first_pending,
        };
        if !self.buf.is_empty() && oldest.is_some_and(|t| t.elapsed() >= self.opts.segment_age) {
            self.flush_batch()?;
        }
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.opened.elapsed() >= self.opts.segment_age)
        {
            self.close_segment()?;
        }
        Ok(())
    }

    pub fn push(&mut self, ev: Event) -> Result<(), TrailError> {
        if self.open.is_none() && self.first_pending.is_none() {
            self.first_pending = Some(std::time::Instant::now());
        }
        self.buf.push(ev);
        // A batch never crosses a segment boundary: segments hold exactly
        // `segment_rows` events (the last one fewer).
        let in_segment = self.open.as_ref().map_or(0, |o| o.rows);
        let room = self
            .opts
            .segment_rows
            .max(1)
            .saturating_sub(in_segment)
            .max(1);
        if self.buf.len() >= self.opts.batch_rows.min(room) {
            self.flush_batch()?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.total_rows + self.buf.len() as u64
    }

    fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, TrailError> {
        r.map_err(|source| TrailError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    fn pq<T>(path: &Path, r: parquet::errors::Result<T>) -> Result<T, TrailError> {
        r.map_err(|source| TrailError::Parquet {
            path: path.to_path_buf(),
            source,
        })
    }

    fn open_segment(&mut self) -> Result<(), TrailError> {
        let name = format!("segment-{:06}.parquet", self.next_index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.partial"));
        let file = HashingFile {
            file: Self::io(&tmp, File::create(&tmp))?,
            hasher: Default::default(),
            bytes: 0,
        };
        let level = ZstdLevel::try_new(self.opts.zstd_level).unwrap_or_default();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(ColumnPath::from("time"), EnabledStatistics::Chunk);
        // Dictionary encoding only where long values repeat across many rows (a
        // process's command line and executable on each of its events, the activity):
        // there it saves copying and compressing the same bytes per row. Elsewhere
        // (times, sequence numbers, paths) it cost more CPU than it saved and made files
        // larger; for the short repeated strings (process name, service, syscall)
        // hashing each row's value into the dictionary cost more than copying it, and
        // zstd squeezes the copies to the same size (pipeline example: 2.3% and 1.8%
        // fewer instructions per file and network event, the same bytes).
        let props = DICTIONARY_COLUMNS.iter().fold(props, |p, c| {
            p.set_column_dictionary_enabled(leaf_path(c), true)
        });
        // Integer columns: DELTA_BINARY_PACKED. Most of them are constant or nearly so
        // over many rows (class, pid, uid, cgroup, cpu) or grow slowly (time, sequence
        // numbers): bit-packed differences take a few bits a row where plain encoding
        // handed zstd 4 or 8 bytes a row to squeeze. On the pipeline example 11% (file
        // loop) and 18% (short connections) fewer instructions per event, and files a
        // fraction of the size.
        let props = int_leaves()
            .into_iter()
            .fold(props, |p, c| {
                p.set_column_encoding(c, Encoding::DELTA_BINARY_PACKED)
            })
            .set_max_row_group_row_count(Some(self.opts.segment_rows.max(1)))
            .build();
        let writer = Self::pq(
            &tmp,
            ArrowWriter::try_new(file, schema::schema(), Some(props)),
        )?;
        self.open = Some(Open {
            writer,
            opened: self
                .first_pending
                .take()
                .unwrap_or_else(std::time::Instant::now),
            tmp,
            path,
            rows: 0,
            time_min: i64::MAX,
            time_max: i64::MIN,
            seq: BTreeMap::new(),
        });
        self.next_index += 1;
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), TrailError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            self.open_segment()?;
        }
        let batch = schema::to_batch(&self.buf)?;
        let open = self.open.as_mut().expect("segment opened above");
        for e in &self.buf {
            open.time_min = open.time_min.min(e.time_ns);
            open.time_max = open.time_max.max(e.time_ns);
            let g = &e.groundtruth;
            let r = open.seq.entry(g.cpu).or_insert((g.sequence, g.sequence));
            r.0 = r.0.min(g.sequence);
            r.1 = r.1.max(g.sequence);
        }
        Self::pq(&open.tmp, open.writer.write(&batch))?;
        open.rows += self.buf.len();
        self.total_rows += self.buf.len() as u64;
        self.buf.clear();
        let size = open.writer.bytes_written() as u64 + open.writer.in_progress_size() as u64;
        if open.rows >= self.opts.segment_rows
            || size >= self.opts.segment_bytes
            || open.opened.elapsed() >= self.opts.segment_age
        {
            self.close_segment()?;
        }
        Ok(())
    }

    fn close_segment(&mut self) -> Result<(), TrailError> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let seq: BTreeMap<String, [u64; 2]> = open
            .seq
            .iter()
            .map(|(c, (a, b))| (c.to_string(), [*a, *b]))
            .collect();
        let json = |m: &BTreeMap<u32, u64>| {
            let m: BTreeMap<String, u64> = m.iter().map(|(c, n)| (c.to_string(), *n)).collect();
            serde_json::to_string(&m).unwrap_or_default()
        };
        let kv = [
            (meta::FORMAT, meta::FORMAT_VERSION.to_string()),
            (meta::RUN_ID, self.run.run_id.clone()),
            (meta::HOST, self.run.host.clone()),
            (meta::KERNEL, self.run.kernel.clone()),
            (meta::AGENT_VERSION, self.run.agent_version.clone()),
            (meta::SEGMENT, (self.next_index - 1).to_string()),
            (meta::PREV_SEAL, self.sealer.head()),
            (meta::EVENTS, open.rows.to_string()),
            (meta::TIME_MIN, open.time_min.to_string()),
            (meta::TIME_MAX, open.time_max.to_string()),
            (
                meta::SEQ_RANGES,
                serde_json::to_string(&seq).unwrap_or_default(),
            ),
            (meta::LOST, json(&self.lost)),
            (meta::PRODUCED, json(&self.produced)),
            (
                meta::LOST_TOTAL,
                self.lost.values().sum::<u64>().to_string(),
            ),
            (
                meta::KERNEL_GAPS,
                serde_json::to_string(&self.kernel_gaps).unwrap_or_default(),
            ),
        ];
        for (k, v) in kv {
            open.writer
                .append_key_value_metadata(KeyValue::new(k.to_string(), v));
        }
        let file = Self::pq(&open.tmp, open.writer.into_inner())?;
        Self::io(&open.tmp, file.file.sync_all())?;
        let digest = {
            use sha2::Digest;
            file.hasher.finalize()
        };
        let bytes = file.bytes;
        drop(file.file);
        Self::io(&open.path, std::fs::rename(&open.tmp, &open.path))?;
        let name = open
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lost: BTreeMap<String, u64> =
            self.lost.iter().map(|(c, n)| (c.to_string(), *n)).collect();
        let head = self
            .sealer
            .seal_segment(crate::seal::SegmentSeal {
                index: self.next_index - 1,
                file: name.clone(),
                sha256: crate::seal::hex(&digest),
                bytes,
                rows: open.rows as u64,
                time_min_ns: if open.rows > 0 { open.time_min } else { 0 },
                time_max_ns: if open.rows > 0 { open.time_max } else { 0 },
                seq_ranges: seq,
                lost,
            })
            .map_err(|source| TrailError::Io {
                path: self.sealer.path().to_path_buf(),
                source,
            })?;
        self.sealed.push((name, head));
        self.written.push(open.path);
        Ok(())
    }

    /// Write what is buffered, close the last segment and return the segment paths.
    /// A run with no event still writes one (empty) segment, so that the trail records
    /// the run's metadata and lost counts.
    /// Write what is buffered, seal the last segment, and write the final seal of a
    /// clean stop. Returns the segment paths and the final chain head.
    pub fn finish(mut self) -> Result<Finished, TrailError> {
        self.flush_batch()?;
        if self.written.is_empty() && self.open.is_none() {
            self.open_segment()?;
        }
        self.close_segment()?;
        let head = self
            .sealer
            .finish(crate::seal::Totals {
                segments: self.written.len() as u32,
                rows: self.total_rows,
                lost: self.lost.values().sum(),
            })
            .map_err(|source| TrailError::Io {
                path: self.sealer.path().to_path_buf(),
                source,
            })?;
        Ok(Finished {
            files: self.written,
            sealed: self.sealed,
            head,
        })
    }
}

/// What [`TrailWriter::finish`] wrote.
pub struct Finished {
    pub files: Vec<PathBuf>,
    /// Segments sealed since the last [`TrailWriter::take_sealed`], with heads.
    pub sealed: Vec<(String, String)>,
    /// The chain head after the final seal.
    pub head: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;
    use parquet::{basic::Encoding, file::reader::FileReader};

    #[test]
    fn columns_have_their_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            TrailWriter::create(dir.path(), RunInfo::default(), WriterOptions::default()).unwrap();
        for i in 0..100 {
            w.push(Event {
                time_ns: 1_700_000_000_000_000_000 + i,
                class_uid: class::FILE_SYSTEM_ACTIVITY,
                activity_id: activity::FILE_OPEN,
                activity_name: "Open".into(),
                actor: Actor {
                    pid: 10,
                    name: "cat".into(),
                    cmd_line: Some("cat /etc/hostname".into()),
                    exe: Some("/usr/bin/cat".into()),
                    ..Default::default()
                },
                process: Some(Box::new(TargetProcess {
                    cmd_line: Some("cat".into()),
                    ..Default::default()
                })),
                groundtruth: Extra {
                    service: "svc".into(),
                    syscall: Some("openat".into()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .unwrap();
        }
        let files = w.finish().unwrap().files;
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            File::open(&files[0]).unwrap(),
        )
        .unwrap();
        let rg = reader.metadata().row_group(0);
        let encodings = |path: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == path)
                .unwrap_or_else(|| panic!("no column {path}"))
                .encodings()
                .collect::<Vec<_>>()
        };
        for c in DICTIONARY_COLUMNS {
            assert!(
                encodings(c).contains(&Encoding::RLE_DICTIONARY),
                "{c}: {:?}",
                encodings(c)
            );
        }
        // And only those: a path column and the short repeated strings are plain.
        for c in ["file.path", "actor.process.name", "groundtruth.service"] {
            assert!(
                !encodings(c).contains(&Encoding::RLE_DICTIONARY),
                "{c}: {:?}",
                encodings(c)
            );
        }
        // Integer and timestamp columns are delta-encoded, nested ones too.
        for c in [
            "time",
            "class_uid",
            "actor.process.pid",
            "groundtruth.sequence",
        ] {
            assert!(
                encodings(c).contains(&Encoding::DELTA_BINARY_PACKED),
                "{c}: {:?}",
                encodings(c)
            );
        }
        assert!(int_leaves().len() > 30, "{:?}", int_leaves());
    }
}
