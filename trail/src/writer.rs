//! Writing a trail: events are buffered into record batches and written as zstd Parquet
//! segments. A segment is written under a temporary name and renamed when complete, so
//! a reader never sees a half-written `segment-*.parquet`.

use crate::{meta, schema, Event, TrailError};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::metadata::KeyValue,
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};
use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
};

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
    /// A new segment is started after this many rows.
    pub segment_rows: usize,
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            batch_rows: 16384,
            segment_rows: 4 << 20,
            zstd_level: 3,
        }
    }
}

/// Leaf columns written with dictionary encoding.
const DICTIONARY_COLUMNS: [&str; 7] = [
    "activity_name",
    "actor.process.name",
    "actor.process.cmd_line",
    "actor.process.file.path",
    "groundtruth.service",
    "groundtruth.syscall",
    "process.cmd_line",
];

struct Open {
    writer: ArrowWriter<File>,
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
}

impl TrailWriter {
    /// Start a trail in `dir`, which must exist and be empty.
    pub fn create(dir: &Path, run: RunInfo, opts: WriterOptions) -> Result<Self, TrailError> {
        Ok(Self {
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

    pub fn push(&mut self, ev: Event) -> Result<(), TrailError> {
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
        let file = Self::io(&tmp, File::create(&tmp))?;
        let level = ZstdLevel::try_new(self.opts.zstd_level).unwrap_or_default();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(ColumnPath::from("time"), EnabledStatistics::Chunk);
        // Dictionary encoding only where values repeat across many rows (a process's
        // name, command line and executable on each of its events, labels): there it
        // saves copying and compressing the same bytes per row. Elsewhere (times,
        // sequence numbers, paths) it cost more CPU than it saved and made files larger.
        let props = DICTIONARY_COLUMNS
            .iter()
            .fold(props, |p, c| {
                p.set_column_dictionary_enabled(ColumnPath::from(*c), true)
            })
            .set_max_row_group_row_count(Some(self.opts.segment_rows.max(1)))
            .build();
        let writer = Self::pq(
            &tmp,
            ArrowWriter::try_new(file, schema::schema(), Some(props)),
        )?;
        self.open = Some(Open {
            writer,
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
        if open.rows >= self.opts.segment_rows {
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
        ];
        for (k, v) in kv {
            open.writer
                .append_key_value_metadata(KeyValue::new(k.to_string(), v));
        }
        let file = Self::pq(&open.tmp, open.writer.into_inner())?;
        Self::io(&open.tmp, file.sync_all())?;
        drop(file);
        Self::io(&open.path, std::fs::rename(&open.tmp, &open.path))?;
        self.written.push(open.path);
        Ok(())
    }

    /// Write what is buffered, close the last segment and return the segment paths.
    /// A run with no event still writes one (empty) segment, so that the trail records
    /// the run's metadata and lost counts.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, TrailError> {
        self.flush_batch()?;
        if self.written.is_empty() && self.open.is_none() {
            self.open_segment()?;
        }
        self.close_segment()?;
        Ok(self.written)
    }
}
