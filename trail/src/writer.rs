//! Writing a trail: events are encoded into the columns of a segment's row group as
//! they come ([`crate::pq`]) and written as a zstd Parquet segment when it is complete
//! (by rows, bytes or age). A segment is written under a temporary name and renamed
//! when complete, so a reader never sees a half-written `segment-*.parquet`.

use crate::{meta, pq, schema, Event, TrailError};
use parquet::{
    file::metadata::KeyValue, file::properties::WriterProperties,
    file::writer::SerializedFileWriter,
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
    /// Every this many rows the writer encodes the column pages that are full and
    /// looks at the segment's size and age.
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

struct Open {
    writer: SerializedFileWriter<HashingFile>,
    opened: std::time::Instant,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
    time_min: i64,
    time_max: i64,
    /// Per CPU: the least and greatest sequence number.
    seq: Vec<(u32, (u64, u64))>,
    seq_last: usize,
}

pub struct TrailWriter {
    dir: PathBuf,
    run: RunInfo,
    opts: WriterOptions,
    /// The open segment's rows, encoded as they come.
    cols: pq::Columns,
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
            sealed: Vec::new(),
            dir: dir.to_path_buf(),
            run,
            cols: pq::Columns::new(opts.zstd_level)?,
            opts,
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
        if self.open.is_none() {
            self.open_segment()?;
        }
        let open = self.open.as_mut().expect("segment opened above");
        self.cols.push(&ev);
        open.time_min = open.time_min.min(ev.time_ns);
        open.time_max = open.time_max.max(ev.time_ns);
        let g = &ev.groundtruth;
        // Events come in runs from one CPU's ring: that CPU's entry is looked at first.
        let at = match open.seq.get(open.seq_last) {
            Some((cpu, _)) if *cpu == g.cpu => open.seq_last,
            _ => match open.seq.iter().position(|(cpu, _)| *cpu == g.cpu) {
                Some(i) => i,
                None => {
                    open.seq.push((g.cpu, (g.sequence, g.sequence)));
                    open.seq.len() - 1
                }
            },
        };
        open.seq_last = at;
        let r = &mut open.seq[at].1;
        r.0 = r.0.min(g.sequence);
        r.1 = r.1.max(g.sequence);
        open.rows += 1;
        self.total_rows += 1;
        // Segments hold exactly `segment_rows` events (the last one fewer); sizes,
        // ages and pages are looked at every `batch_rows` events.
        if open.rows >= self.opts.segment_rows.max(1) {
            return self.close_segment();
        }
        if open.rows.is_multiple_of(self.opts.batch_rows.max(1)) {
            self.cols.cut_pages()?;
            if self.cols.size() as u64 >= self.opts.segment_bytes
                || open.opened.elapsed() >= self.opts.segment_age
            {
                self.close_segment()?;
            }
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.total_rows
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
        let mut props = WriterProperties::builder().build();
        // Readers that know Arrow get the schema's exact types (timestamps in UTC,
        // unsigned integers) from it, as from any Arrow writer's file.
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema::schema(), &mut props);
        let writer = Self::pq(
            &tmp,
            SerializedFileWriter::new(
                file,
                pq::descriptor()?.root_schema_ptr(),
                std::sync::Arc::new(props),
            ),
        )?;
        self.open = Some(Open {
            writer,
            opened: std::time::Instant::now(),
            tmp,
            path,
            rows: 0,
            time_min: i64::MAX,
            time_max: i64::MIN,
            seq: Vec::new(),
            seq_last: 0,
        });
        self.next_index += 1;
        Ok(())
    }

    fn close_segment(&mut self) -> Result<(), TrailError> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        if self.cols.rows() > 0 {
            let mut rg = Self::pq(&open.tmp, open.writer.next_row_group())?;
            self.cols.write_row_group(&mut rg)?;
            Self::pq(&open.tmp, rg.close())?;
        }
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
        for c in pq::DICTIONARY_COLUMNS {
            assert!(
                encodings(c).contains(&Encoding::RLE_DICTIONARY),
                "{c}: {:?}",
                encodings(c)
            );
        }
        // And only those: the path columns and the syscall name are plain.
        for c in ["file.path", "file.path_requested", "groundtruth.syscall"] {
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
    }
}
