//! `groundtruth verify`: check a trail against its seal log (docs/seal.md).
//!
//! Every problem found is reported, named by file and segment, in the spirit of
//! `aws cloudtrail validate-logs`: a hash mismatch, a missing or unexpected file, a
//! segment out of order, an invalid signature or broken chain, an unsealed tail, a
//! record or file from another run, a head that does not match the anchor.

use crate::seal::{self, Record, SEALS_FILE};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The file's SHA-256 differs from its seal.
    HashMismatch,
    /// A sealed segment's file is absent.
    Missing,
    /// A file no seal accounts for.
    UnexpectedFile,
    /// Seal records or segment indices not in sequence.
    OutOfOrder,
    /// A record's signature does not verify with the key the previous record committed
    /// (or the long-term key, for the genesis record).
    SignatureInvalid,
    /// A record's `prev` is not the hash of the record before it.
    ChainBroken,
    /// Data after the last seal (a segment not sealed, no final seal): the recording
    /// did not stop cleanly. Sealed segments are still verified.
    UnsealedTail,
    /// The chain head differs from the expected one (anchor, --expect-head).
    HeadMismatch,
    /// A record or file that belongs to another run.
    ForeignRun,
    /// The seal log is unreadable or a line is not a seal record.
    LogCorrupt,
    /// The first key is not certified by the expected long-term key.
    NotCertified,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::HashMismatch => "hash mismatch",
            Kind::Missing => "missing",
            Kind::UnexpectedFile => "unexpected file",
            Kind::OutOfOrder => "out of order",
            Kind::SignatureInvalid => "signature invalid",
            Kind::ChainBroken => "chain broken",
            Kind::UnsealedTail => "unsealed tail",
            Kind::HeadMismatch => "head mismatch",
            Kind::ForeignRun => "from another run",
            Kind::LogCorrupt => "seal log corrupt",
            Kind::NotCertified => "not certified",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: Kind,
    pub file: Option<String>,
    pub segment: Option<u32>,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub segments_valid: u32,
    pub segments_total: u32,
    pub events: u64,
    pub time_min_ns: Option<i64>,
    pub time_max_ns: Option<i64>,
    pub lost: u64,
    pub run_id: Option<String>,
    /// The first key (hex), committed by the genesis record.
    pub first_key: Option<String>,
    /// The long-term key that certified it, if any.
    pub certified_by: Option<String>,
    /// Hex SHA-256 of the last seal record.
    pub head: Option<String>,
    /// A final seal closes the log (clean stop).
    pub complete: bool,
    /// Whether the head or the first key was checked against something outside the
    /// trail (anchor, expected head, long-term public key).
    pub anchored: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What to hold the trail against besides itself.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The long-term public key that must have certified the first key.
    pub pubkey: Option<ed25519_dalek::VerifyingKey>,
    /// The head the log must end with.
    pub head: Option<String>,
    /// An anchor file (lines `RUN_ID SEQ HEAD`): the log must contain every head the
    /// anchor has for this run, and end with the last.
    pub anchor: Option<Vec<(String, u64, String)>>,
}

/// Parse an anchor file's text.
pub fn parse_anchor(text: &str) -> Result<Vec<(String, u64, String)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                [run, seq, head] if seal::unhex(head).is_some_and(|h| h.len() == 32) => Ok((
                    run.to_string(),
                    seq.parse()
                        .map_err(|_| format!("line {}: `{seq}` is not a number", i + 1))?,
                    head.to_string(),
                )),
                _ => Err(format!(
                    "line {}: expected `RUN_ID SEQ HEAD` (as groundtruth-agent --anchor writes), got `{l}`",
                    i + 1
                )),
            }
        })
        .collect()
}

fn problem(
    r: &mut Report,
    kind: Kind,
    file: Option<&str>,
    segment: Option<u32>,
    detail: impl Into<String>,
) {
    r.problems.push(Problem {
        kind,
        file: file.map(str::to_string),
        segment,
        detail: detail.into(),
    });
}

/// Verify the trail in `dir`. Errors only when the directory cannot be read.
pub fn verify(dir: &Path, expect: &Expect) -> std::io::Result<Report> {
    let mut r = Report::default();
    let mut files: BTreeSet<String> = BTreeSet::new();
    let mut partials = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("segment-") && name.ends_with(".parquet") {
            files.insert(name);
        } else if name.ends_with(".parquet.partial") {
            partials.push(name);
        }
    }
    let log = match std::fs::read(dir.join(SEALS_FILE)) {
        Ok(b) => b,
        Err(e) => {
            problem(
                &mut r,
                Kind::LogCorrupt,
                Some(SEALS_FILE),
                None,
                format!("no seal log ({e}): nothing in this trail can be verified"),
            );
            r.segments_total = files.len() as u32;
            return Ok(r);
        }
    };
    // Parse records; a line that is not one breaks the chain there.
    let mut records: Vec<(Record, [u8; 32])> = Vec::new();
    for (i, line) in log.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(rec) if rec.body.format == seal::SEAL_FORMAT => {
                records.push((rec, seal::sha256(line)))
            }
            Ok(rec) => problem(
                &mut r,
                Kind::LogCorrupt,
                Some(SEALS_FILE),
                None,
                format!("line {}: unknown format `{}`", i + 1, rec.body.format),
            ),
            Err(e) => problem(
                &mut r,
                Kind::LogCorrupt,
                Some(SEALS_FILE),
                None,
                format!("line {}: not a seal record ({e})", i + 1),
            ),
        }
    }
    if !log.is_empty() && !log.ends_with(b"\n") {
        problem(
            &mut r,
            Kind::LogCorrupt,
            Some(SEALS_FILE),
            None,
            "the last line is cut off",
        );
    }
    let Some((genesis, _)) = records.first() else {
        problem(
            &mut r,
            Kind::LogCorrupt,
            Some(SEALS_FILE),
            None,
            "the seal log has no record",
        );
        r.segments_total = files.len() as u32;
        return Ok(r);
    };
    let run_id = genesis.body.run_id.clone();
    r.run_id = Some(run_id.clone());
    if genesis.body.kind != "genesis" || genesis.body.seq != 0 {
        problem(
            &mut r,
            Kind::OutOfOrder,
            Some(SEALS_FILE),
            None,
            "the first record is not the genesis record",
        );
    }
    r.first_key = Some(genesis.body.next_key.clone());
    let certified_by = genesis
        .body
        .genesis
        .as_ref()
        .and_then(|g| g.certified_by.clone());
    r.certified_by = certified_by.clone();
    match (&certified_by, &expect.pubkey) {
        (Some(k), _) if !seal::signature_ok(k, &genesis.body, &genesis.sig) => problem(
            &mut r,
            Kind::SignatureInvalid,
            Some(SEALS_FILE),
            None,
            "genesis record: the long-term key's certification does not verify",
        ),
        (Some(k), Some(want)) if *k != seal::hex(want.as_bytes()) => problem(
            &mut r,
            Kind::NotCertified,
            Some(SEALS_FILE),
            None,
            format!("the first key is certified by {k}, not by the expected key"),
        ),
        (None, Some(_)) => problem(
            &mut r,
            Kind::NotCertified,
            Some(SEALS_FILE),
            None,
            "the first key is not certified by a long-term key (the agent ran without --sign-key)",
        ),
        _ => {}
    }
    if expect.pubkey.is_some() {
        r.anchored = true;
    }

    // The chain, the signatures, the order.
    let mut sealed: BTreeMap<String, (u32, seal::SegmentSeal)> = BTreeMap::new();
    let mut next_index = 0u32;
    let mut final_seen = false;
    for w in 1..records.len() {
        let (prev, prev_hash) = &records[w - 1];
        let (rec, _) = &records[w];
        let b = &rec.body;
        let seg = b.segment.as_ref();
        let (file, index) = (seg.map(|s| s.file.as_str()), seg.map(|s| s.index));
        if b.run_id != run_id {
            problem(
                &mut r,
                Kind::ForeignRun,
                file.or(Some(SEALS_FILE)),
                index,
                format!(
                    "seal record {} belongs to run {}, not {run_id}",
                    b.seq, b.run_id
                ),
            );
        }
        if b.prev != seal::hex(prev_hash) {
            problem(
                &mut r,
                Kind::ChainBroken,
                file.or(Some(SEALS_FILE)),
                index,
                format!(
                    "seal record {}: `prev` is not the hash of the record before it",
                    b.seq
                ),
            );
        }
        if b.seq != w as u64 {
            problem(
                &mut r,
                Kind::OutOfOrder,
                file.or(Some(SEALS_FILE)),
                index,
                format!("seal record at line {} says it is record {}", w + 1, b.seq),
            );
        }
        if !seal::signature_ok(&prev.body.next_key, b, &rec.sig) {
            problem(
                &mut r,
                Kind::SignatureInvalid,
                file.or(Some(SEALS_FILE)),
                index,
                format!(
                    "seal record {}: the signature does not verify with the key record {} committed",
                    b.seq, prev.body.seq
                ),
            );
        }
        if final_seen {
            problem(
                &mut r,
                Kind::UnexpectedFile,
                Some(SEALS_FILE),
                index,
                format!("seal record {} follows the final seal", b.seq),
            );
        }
        match b.kind.as_str() {
            "segment" => {
                let Some(s) = seg else {
                    problem(
                        &mut r,
                        Kind::LogCorrupt,
                        Some(SEALS_FILE),
                        None,
                        format!("seal record {} has no segment", b.seq),
                    );
                    continue;
                };
                if s.index != next_index {
                    problem(
                        &mut r,
                        Kind::OutOfOrder,
                        Some(&s.file),
                        Some(s.index),
                        format!(
                            "sealed as segment {} where segment {next_index} was due",
                            s.index
                        ),
                    );
                }
                next_index = s.index + 1;
                sealed.insert(s.file.clone(), (s.index, s.clone()));
            }
            "final" => {
                final_seen = true;
                r.complete = true;
                if let Some(t) = &b.totals {
                    r.lost = t.lost;
                    if t.segments as usize != sealed.len() {
                        problem(
                            &mut r,
                            Kind::Missing,
                            Some(SEALS_FILE),
                            None,
                            format!(
                                "the final seal counts {} segments, the log seals {}",
                                t.segments,
                                sealed.len()
                            ),
                        );
                    }
                }
            }
            other => problem(
                &mut r,
                Kind::LogCorrupt,
                Some(SEALS_FILE),
                None,
                format!("seal record {}: unknown kind `{other}`", b.seq),
            ),
        }
    }
    r.head = records.last().map(|(_, h)| seal::hex(h));

    // The files against their seals.
    r.segments_total = files.len().max(sealed.len()) as u32;
    for (name, (index, s)) in &sealed {
        if !files.contains(name) {
            problem(
                &mut r,
                Kind::Missing,
                Some(name),
                Some(*index),
                "sealed, but the file is absent",
            );
            continue;
        }
        let (digest, len) = hash_file(&dir.join(name))?;
        if digest != s.sha256 || len != s.bytes {
            let foreign = footer_run_id(&dir.join(name)).filter(|id| *id != run_id);
            match foreign {
                Some(other) => problem(
                    &mut r,
                    Kind::ForeignRun,
                    Some(name),
                    Some(*index),
                    format!("the file in its place is a segment of run {other}"),
                ),
                None => problem(
                    &mut r,
                    Kind::HashMismatch,
                    Some(name),
                    Some(*index),
                    format!(
                        "SHA-256 {digest} ({len} bytes), sealed as {} ({} bytes)",
                        s.sha256, s.bytes
                    ),
                ),
            }
            continue;
        }
        r.segments_valid += 1;
        r.events += s.rows;
        if s.rows > 0 {
            r.time_min_ns = Some(
                r.time_min_ns
                    .map_or(s.time_min_ns, |t| t.min(s.time_min_ns)),
            );
            r.time_max_ns = Some(
                r.time_max_ns
                    .map_or(s.time_max_ns, |t| t.max(s.time_max_ns)),
            );
        }
        if !r.complete {
            r.lost = s.lost.values().sum();
        }
    }
    for name in files.iter().filter(|f| !sealed.contains_key(*f)) {
        let tail = !final_seen && name == &format!("segment-{next_index:06}.parquet");
        if tail {
            problem(
                &mut r,
                Kind::UnsealedTail,
                Some(name),
                Some(next_index),
                "written after the last seal; not sealed",
            );
        } else {
            problem(
                &mut r,
                Kind::UnexpectedFile,
                Some(name),
                None,
                "no seal accounts for this file",
            );
        }
    }
    for name in &partials {
        problem(
            &mut r,
            Kind::UnsealedTail,
            Some(name),
            None,
            "a segment that was being written when recording stopped",
        );
    }
    if !final_seen {
        problem(
            &mut r,
            Kind::UnsealedTail,
            Some(SEALS_FILE),
            None,
            "no final seal: the recording did not stop cleanly (or the log was cut); the sealed segments above are verified",
        );
    }

    // Against the outside.
    let head = r.head.clone().unwrap_or_default();
    if let Some(want) = &expect.head {
        r.anchored = true;
        if !want.eq_ignore_ascii_case(&head) {
            let known = records
                .iter()
                .position(|(_, h)| seal::hex(h).eq_ignore_ascii_case(want));
            problem(
                &mut r,
                Kind::HeadMismatch,
                Some(SEALS_FILE),
                None,
                match known {
                    Some(i) => format!("the expected head is record {i}'s; the log continues to {head}"),
                    None => format!("the log ends with {head}, expected {want} (not in this log: cut off or replaced)"),
                },
            );
        }
    }
    if let Some(anchor) = &expect.anchor {
        r.anchored = true;
        let mine: Vec<&(String, u64, String)> =
            anchor.iter().filter(|(run, _, _)| *run == run_id).collect();
        if mine.is_empty() {
            problem(
                &mut r,
                Kind::HeadMismatch,
                Some(SEALS_FILE),
                None,
                format!("the anchor has no head for run {run_id}"),
            );
        }
        for (_, seq, h) in &mine {
            match records.get(*seq as usize) {
                Some((_, got)) if seal::hex(got).eq_ignore_ascii_case(h) => {}
                Some(_) => problem(
                    &mut r,
                    Kind::HeadMismatch,
                    Some(SEALS_FILE),
                    None,
                    format!("record {seq} does not have the head the anchor kept ({h})"),
                ),
                None => problem(
                    &mut r,
                    Kind::HeadMismatch,
                    Some(SEALS_FILE),
                    None,
                    format!(
                        "the anchor kept record {seq}, but the log ends at record {} (cut off)",
                        records.len() - 1
                    ),
                ),
            }
        }
    }
    Ok(r)
}

/// Hex SHA-256 and length of a file, streamed through a fixed buffer (no whole-file
/// allocation: segments can be hundreds of MiB).
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((seal::hex(&h.finalize()), len))
}

/// `groundtruth.run_id` from a Parquet file's footer, if readable.
fn footer_run_id(path: &Path) -> Option<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let f = std::fs::File::open(path).ok()?;
    let reader = SerializedFileReader::new(f).ok()?;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .clone();
    kv.into_iter()
        .find(|k| k.key == crate::meta::RUN_ID)
        .and_then(|k| k.value)
}
