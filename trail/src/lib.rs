//! groundtruth's trail: the on-disk record of what the kernel saw.
//!
//! A trail is a directory of Parquet segments (`segment-NNNNNN.parquet`, zstd) with the
//! OCSF-aligned schema of [`schema::schema`]. Each segment's footer carries key-value
//! metadata ([`meta`]): run id, host, kernel, agent version, time range, per-CPU sequence
//! ranges and lost-event counts. docs/schema.md documents every column.

pub mod alloc;
pub mod event;
pub mod pq;
pub mod reader;
pub mod schema;
pub mod seal;
pub mod verify;
pub mod writer;

pub use event::{Actor, Endpoint, Event, Extra, FileRef, Network, TargetProcess};
pub use reader::{
    completeness, gap_texts, read_trail, segment_paths, stream_batches, stream_columns,
    stream_events, Completeness, EventStream, Segment,
};
pub use writer::{Finished, RunInfo, SealOptions, TrailWriter, WriterOptions};

/// Whether `path` is absolute and lexically normal (no empty, `.` or `..` component, no
/// trailing `/`): the form the agent writes paths in, which normalising leaves as it is.
pub fn is_normal_path(path: &str) -> bool {
    // One pass over the bytes, looking only after each `/` (the agent and `analyze`
    // ask this of every path; splitting into `&str` components cost about 450
    // instructions for a 40-byte path).
    let b = path.as_bytes();
    if b == b"/" {
        return true;
    }
    if b.first() != Some(&b'/') {
        return false;
    }
    // A path with no `//` and no `/.` that does not end in `/` is normal: most paths,
    // found eight bytes at a time. Any other is decided by the loop below.
    if b.last() != Some(&b'/') && !has_slash_pair(b) {
        return true;
    }
    let mut i = 0;
    loop {
        // `b[i]` is a `/`: the component after it must be neither empty, `.` nor `..`.
        let rest = &b[i + 1..];
        if matches!(
            rest,
            [] | [b'/', ..] | [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
        ) {
            return false;
        }
        match rest.iter().position(|&c| c == b'/') {
            Some(j) => i += 1 + j,
            None => return true,
        }
    }
}

/// Whether `b` has a `/` followed by `/` or `.` (or says so where it cannot rule it out:
/// a `true` only sends the caller to the exact test).
fn has_slash_pair(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of every byte that is zero (and possibly of bytes above a zero one:
    // those can only give a false `true`).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = 0;
    while i + 9 <= b.len() {
        let x = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        let y = u64::from_le_bytes(b[i + 1..i + 9].try_into().expect("eight bytes"));
        let slash = zero(x ^ (ONES * b'/' as u64));
        let next = zero(y ^ (ONES * b'/' as u64)) | zero(y ^ (ONES * b'.' as u64));
        if slash & next != 0 {
            return true;
        }
        i += 8;
    }
    b[i..]
        .windows(2)
        .any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'))
}

/// Footer metadata keys.
pub mod meta {
    pub const FORMAT: &str = "groundtruth.format";
    pub const RUN_ID: &str = "groundtruth.run_id";
    pub const HOST: &str = "groundtruth.host";
    pub const KERNEL: &str = "groundtruth.kernel";
    pub const AGENT_VERSION: &str = "groundtruth.agent_version";
    pub const SEGMENT: &str = "groundtruth.segment";
    pub const EVENTS: &str = "groundtruth.events";
    pub const TIME_MIN: &str = "groundtruth.time_min_ns";
    pub const TIME_MAX: &str = "groundtruth.time_max_ns";
    /// JSON object: CPU number -> [first, last] sequence number in this segment.
    pub const SEQ_RANGES: &str = "groundtruth.seq_ranges";
    /// JSON object: CPU number -> events lost on that CPU since the start of the run,
    /// as known when the segment was closed.
    pub const LOST: &str = "groundtruth.lost";
    /// JSON object: CPU number -> events the kernel numbered on that CPU since the start
    /// of the run (its next sequence number), when the segment was closed. Together
    /// with the rows, proves the gap: produced - delivered = lost.
    pub const PRODUCED: &str = "groundtruth.produced";
    /// Total lost events since the start of the run when the segment was closed.
    pub const LOST_TOTAL: &str = "groundtruth.lost_total";
    /// JSON object: what else the kernel side could not record, as counts since the
    /// start of the run when the segment was closed (program runs the kernel skipped,
    /// full maps, failed tail calls, unreadable strings; names in docs/schema.md). Only
    /// nonzero counts; `{}` when everything was recorded.
    pub const KERNEL_GAPS: &str = "groundtruth.kernel_gaps";
    /// Hex SHA-256 of the seal record before this segment's (the chain head when the
    /// segment was closed): a file taken out of its trail still names its place.
    pub const PREV_SEAL: &str = "groundtruth.prev_seal";
    /// The value of [`FORMAT`].
    pub const FORMAT_VERSION: &str = "groundtruth-trail/1";
}

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// Reading or writing a file of the trail failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The Parquet library reported an error for a file.
    #[error("{path}: {source}")]
    Parquet {
        path: std::path::PathBuf,
        source: parquet::errors::ParquetError,
    },
    /// Building or reading Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A file does not have the trail schema.
    #[error("not a groundtruth trail segment: {0}")]
    Schema(String),
    /// The directory holds no segment.
    #[error("{0}: no trail segments (segment-*.parquet) in this directory")]
    Empty(std::path::PathBuf),
}

#[cfg(test)]
mod tests {
    use super::is_normal_path;

    /// The definition, component by component.
    fn reference(path: &str) -> bool {
        path == "/"
            || (path.starts_with('/')
                && !path[1..]
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."))
    }

    #[test]
    fn normal_paths_are_recognised_as_the_definition_says() {
        let named = [
            ("/", true),
            ("", false),
            ("a/b", false),
            ("/a/b", true),
            ("/a/b/", false),
            ("//a", false),
            ("/a//b", false),
            ("/.", false),
            ("/./a", false),
            ("/a/.", false),
            ("/..", false),
            ("/a/../b", false),
            ("/a/..", false),
            ("/.a", true),
            ("/..a", true),
            ("/a./b..", true),
            ("/...", true),
            ("/a/.../b", true),
        ];
        for (p, want) in named {
            assert_eq!(is_normal_path(p), want, "{p:?}");
        }
        // Every string of up to 11 characters from the alphabet that matters (the
        // word-at-a-time pre-test reads eight bytes and the next one).
        let alphabet = ['/', '.', 'a'];
        let mut n = 0;
        for len in 0..=11u32 {
            for mut k in 0..alphabet.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                assert_eq!(is_normal_path(&s), reference(&s), "{s:?}");
                n += 1;
            }
        }
        assert_eq!(n, (3usize.pow(12) - 1) / 2);
    }
}
