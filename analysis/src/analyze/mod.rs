//! `groundtruth analyze`: compare what the kernel saw (a trail) with what the services'
//! audit logs claim.
//!
//! The pipeline, all streaming (memory holds the matching window, not the trail):
//! 1. [`fold`]: kernel events become [`Action`]s, the unit an audit record speaks of
//!    (one open-to-close that wrote a file is one write, one connection is one connect).
//! 2. [`audit`]: each audit log line becomes a [`Record`] (built-in ECS and OCSF
//!    mappings, or a TOML mapping for any other JSON Lines shape).
//! 3. [`expect`]: which actions require an audit record (an expectations file, or the
//!    documented defaults).
//! 4. [`matcher`]: one-to-one matching of actions and records of the same service, class
//!    and resource within the time window; what is left over becomes findings.
//! 5. [`report`]: text, JSON and JUnit.
//!
//! docs/analysis.md describes the rules; this module implements exactly those.

pub mod audit;
pub mod expect;
pub mod fold;
pub mod json;
pub mod matcher;
pub mod report;
pub mod rows;
pub mod time;

use serde::Serialize;
use std::{fmt, net::IpAddr, sync::Arc};

/// What an action or a record is about. A record's class must equal its action's class,
/// except that a `file.write` record is also satisfied by a `file.create` action (a file
/// that was created and written was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Class {
    #[serde(rename = "file.read")]
    FileRead,
    #[serde(rename = "file.create")]
    FileCreate,
    #[serde(rename = "file.write")]
    FileWrite,
    #[serde(rename = "file.delete")]
    FileDelete,
    #[serde(rename = "file.rename")]
    FileRename,
    #[serde(rename = "network.connect")]
    NetConnect,
    #[serde(rename = "network.accept")]
    NetAccept,
    #[serde(rename = "process.exec")]
    ProcessExec,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::FileRead,
        Class::FileCreate,
        Class::FileWrite,
        Class::FileDelete,
        Class::FileRename,
        Class::NetConnect,
        Class::NetAccept,
        Class::ProcessExec,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::FileRead => "file.read",
            Class::FileCreate => "file.create",
            Class::FileWrite => "file.write",
            Class::FileDelete => "file.delete",
            Class::FileRename => "file.rename",
            Class::NetConnect => "network.connect",
            Class::NetAccept => "network.accept",
            Class::ProcessExec => "process.exec",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == s)
    }

    pub fn is_network(self) -> bool {
        matches!(self, Class::NetConnect | Class::NetAccept)
    }

    /// Whether a record of class `self` is satisfied by an action of class `action`.
    pub fn satisfied_by(self, action: Class) -> bool {
        self == action || (self == Class::FileWrite && action == Class::FileCreate)
    }

    /// The class under which actions and records meet in the matcher's index.
    pub(crate) fn key_class(self) -> Class {
        match self {
            Class::FileCreate => Class::FileWrite,
            c => c,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The two ends of a TCP connection as the kernel saw them (client initiated it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    /// The trail's connection id of this end (for its bytes, from its Close).
    pub connection_id: Option<u64>,
}

/// One thing a service did, folded from kernel events.
#[derive(Clone, Debug)]
pub struct Action {
    pub service: Arc<str>,
    pub class: Class,
    /// First and last kernel event of the action (open and close of a write; the same
    /// instant for a rename, delete, exec or connection).
    pub start_ns: i64,
    pub end_ns: i64,
    pub pid: u32,
    pub comm: Arc<str>,
    pub exe: Option<Arc<str>>,
    /// File classes: the file (rename: the new name); exec: the executable.
    pub path: Option<String>,
    /// Rename: the old name.
    pub old_path: Option<String>,
    /// Network classes only (boxed: most actions are file actions, and every action is
    /// moved several times).
    pub conn: Option<Box<Conn>>,
    pub bytes_read: Option<u64>,
    pub bytes_written: Option<u64>,
}

/// What an audit record says the resource was. Every field the record gives must agree
/// with the action; fields it leaves out are not compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub path: Option<String>,
    pub old_path: Option<String>,
    /// Network: the connection's initiator and responder as the record names them.
    pub client_ip: Option<IpAddr>,
    pub client_port: Option<u16>,
    pub server_ip: Option<IpAddr>,
    pub server_port: Option<u16>,
    /// A host name that is not an IP address: `localhost` matches loopback addresses,
    /// any other name matches the peer's service label.
    pub peer_host: Option<String>,
    /// The peer's service label.
    pub peer_service: Option<String>,
}

/// One audit log line that claims an action the kernel can see.
#[derive(Clone, Debug)]
pub struct Record {
    pub service: Arc<str>,
    pub time_ns: i64,
    pub class: Class,
    pub claim: Claim,
    pub pid: Option<u32>,
    /// Where it came from: the log file and line number, and the line (shortened).
    pub file: Arc<str>,
    pub line: u64,
    pub excerpt: Excerpt,
}

/// A record's line, for the evidence of a finding. Few records become findings, so a
/// log that can be read again (a regular file) keeps only where the line is and its
/// length, and the line is read again for a finding; a pipe's records keep the line
/// (shortened). Copying every line was a twentieth of `analyze`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Excerpt {
    Text(String),
    /// Byte offset of the line in the log, the length of the line without its end,
    /// and a hash of it: a log changed since it was read does not lend a finding a line
    /// that is not the record's.
    At {
        offset: u64,
        len: u32,
        hash: u32,
    },
}

impl Excerpt {
    pub fn line_hash(line: &str) -> u32 {
        use std::hash::BuildHasher;
        let h = rustc_hash::FxBuildHasher.hash_one(line);
        (h ^ (h >> 32)) as u32
    }
}

/// Normalise a path lexically: `//` and `/./` collapse, `..` removes the component
/// before it (never above the root), a trailing `/` is dropped. Relative paths stay
/// relative (they cannot equal a kernel path, which is always absolute).
pub fn normalize_path(p: &str) -> String {
    // Most paths are normal already: one copy, no component list.
    if trail::is_normal_path(p) {
        return p.to_string();
    }
    normalize_components(p)
}

fn normalize_components(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// `a == b`, a word at a time (the last word overlapping the one before), without a
/// memcmp call: what it compares (service, command and executable names, audit
/// action texts) is short.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let w = |x: &[u8], at: usize| u64::from_le_bytes(x[at..at + 8].try_into().expect("8"));
    (0..n - 8).step_by(8).all(|i| w(a, i) == w(b, i)) && w(a, n - 8) == w(b, n - 8)
}

/// Shorten a line for an error message or a finding's evidence.
pub fn excerpt(line: &str) -> String {
    const MAX: usize = 160;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = String::with_capacity(end + '…'.len_utf8());
    s.push_str(&line[..end]);
    s.push('…');
    s
}

/// What `groundtruth analyze` was asked.
pub struct Options {
    pub dir: std::path::PathBuf,
    /// (service, log path, mapping: None = detect).
    pub logs: Vec<(String, std::path::PathBuf, Option<audit::Mapping>)>,
    pub expect: Option<std::path::PathBuf>,
    pub window_ns: i64,
    pub skip_malformed: bool,
    /// Verification was skipped (--no-verify); recorded in the report.
    pub verification_skipped: bool,
    /// The run id verification reported.
    pub run_id: Option<String>,
}

/// Run the analysis. Errors are input errors (a malformed line, an unreadable file, a
/// bad expectations file) and say which file and line.
pub fn analyze(opts: &Options) -> Result<report::Report, String> {
    use std::collections::{HashMap, VecDeque};
    let log_paths: Vec<&std::path::Path> = opts.logs.iter().map(|l| l.1.as_path()).collect();
    let expect = match &opts.expect {
        Some(p) => expect::Expectations::load(p, &log_paths)?,
        None => expect::Expectations::defaults(&log_paths),
    };
    let services: Vec<&str> = opts.logs.iter().map(|l| l.0.as_str()).collect();
    let mut matcher = matcher::Matcher::new(opts.window_ns, &expect, &services);
    // Each log with its next record and the index keys it will be filed under: each
    // source's next item is known before its turn, and the matcher prefetches where it
    // will file it.
    let mut logs = Vec::new();
    for (service, path, mapping) in &opts.logs {
        let mut log = audit::AuditLog::open(service, path, mapping.clone(), opts.skip_malformed)?;
        let head = log.next_record().map_err(|m| m.to_string())?;
        logs.push((log, head.map(|r| (matcher.prefetch_record(&r), r))));
    }
    let mut events = trail::stream_batches(&opts.dir, fold::COLUMNS, fold::DICTIONARY_COLUMNS)
        .map_err(|e| e.to_string())?;
    let mut folder = fold::Folder::new();
    let mut folded_all = false;
    // Network Close bytes by connection id, kept a few windows, for the evidence of
    // unaudited connections.
    let mut closes: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut close_order: VecDeque<(i64, u64)> = VecDeque::new();
    let mut wanted: HashMap<u64, usize> = HashMap::new();
    // Connection ids closed since the last fill_bytes.
    let mut fresh: Vec<u64> = Vec::new();
    let mut seen_findings = 0;
    // The current batch's columns and the next row to fold.
    let mut batch: Option<(rows::Columns, usize)> = None;
    // Fold until an action is ready (or the trail is folded): the end time of the
    // next action, which stays in the folder until it is taken (an action is a few
    // hundred bytes: moved once, into the matcher).
    let mut next_action = |folder: &mut fold::Folder,
                           closes: &mut HashMap<u64, (u64, u64)>,
                           close_order: &mut VecDeque<(i64, u64)>,
                           fresh: &mut Vec<u64>|
     -> Result<Option<i64>, String> {
        loop {
            if let Some(a) = folder.front() {
                return Ok(Some(a.end_ns));
            }
            if folded_all {
                return Ok(None);
            }
            if let Some((cols, next)) = &mut batch {
                if *next < cols.len() {
                    let e = cols.row(*next);
                    *next += 1;
                    if e.class_uid == trail::event::class::NETWORK_ACTIVITY
                        && matches!(e.activity, "Close" | "Reset")
                    {
                        if let Some(id) = e.connection_id {
                            let b = (e.bytes_read.unwrap_or(0), e.bytes_written.unwrap_or(0));
                            closes.insert(id, b);
                            close_order.push_back((e.time_ns, id));
                            fresh.push(id);
                        }
                    }
                    folder.push_row(&e);
                    continue;
                }
            }
            match events.next_batch() {
                Some(Ok(b)) => {
                    let cols = rows::Columns::new(&b)
                        .map_err(|e| format!("{}: {e}", events.path().display()))?;
                    batch = Some((cols, 0));
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => {
                    folder.finish();
                    folded_all = true;
                }
            }
        }
    };
    let mut kernel = next_action(&mut folder, &mut closes, &mut close_order, &mut fresh)?;
    let mut kernel_filing = folder.front().map(|a| matcher.prefetch_action(a));
    loop {
        // The source whose next item is earliest.
        let mut pick: Option<(i64, Option<usize>)> = kernel.map(|t| (t, None));
        for (i, (_, head)) in logs.iter().enumerate() {
            if let Some((_, r)) = head {
                if pick.is_none_or(|p| r.time_ns < p.0) {
                    pick = Some((r.time_ns, Some(i)));
                }
            }
        }
        let Some((t, which)) = pick else { break };
        match which {
            None => {
                let a = folder.pop().expect("the folder's next action");
                let f = kernel_filing
                    .take()
                    .expect("prefetched as the folder's next");
                matcher.push_action_filed(a, f);
                kernel = next_action(&mut folder, &mut closes, &mut close_order, &mut fresh)?;
                kernel_filing = folder.front().map(|a| matcher.prefetch_action(a));
            }
            Some(i) => {
                let (log, head) = &mut logs[i];
                let (f, r) = head.take().unwrap();
                matcher.push_record_filed(r, f);
                let next = log.next_record().map_err(|m| m.to_string())?;
                *head = next.map(|r| (matcher.prefetch_record(&r), r));
            }
        }
        matcher.advance(t);
        fill_bytes(
            &mut matcher.out.findings,
            &mut seen_findings,
            &closes,
            &mut fresh,
            &mut wanted,
        );
        let horizon = t.saturating_sub(
            opts.window_ns
                .saturating_mul(4)
                .saturating_add(matcher::REORDER_NS),
        );
        while close_order.front().is_some_and(|c| c.0 < horizon) {
            let (_, id) = close_order.pop_front().unwrap();
            closes.remove(&id);
        }
    }
    matcher.finish();
    fill_bytes(
        &mut matcher.out.findings,
        &mut seen_findings,
        &closes,
        &mut fresh,
        &mut wanted,
    );
    read_excerpts(&mut matcher.out.findings, &opts.logs);
    let fold_stats = folder.stats.clone();
    let completeness = trail::completeness(&opts.dir).map_err(|e| e.to_string())?;
    let trail = report::TrailInfo {
        dir: opts.dir.display().to_string(),
        verified: !opts.verification_skipped,
        verification_skipped: opts.verification_skipped,
        run_id: opts.run_id.clone(),
        events: fold_stats.events,
        lost_events: completeness.lost_events,
        kernel_gaps: completeness.kernel_gaps,
    };
    let log_stats = logs.into_iter().map(|(l, _)| l.stats).collect();
    Ok(report::Report::build(
        trail,
        opts.window_ns,
        &expect,
        std::mem::take(&mut matcher.out),
        log_stats,
        fold_stats,
    ))
}

/// Findings on records of logs that can be read again know where their line is (see
/// [`Excerpt`]): read those lines now, each log opened once.
fn read_excerpts(
    findings: &mut [matcher::Finding],
    logs: &[(String, std::path::PathBuf, Option<audit::Mapping>)],
) {
    use std::{collections::HashMap, fs::File, os::unix::fs::FileExt};
    let mut files: HashMap<String, Result<File, String>> = HashMap::new();
    for f in findings {
        let Some(r) = f.evidence.record.as_mut() else {
            continue;
        };
        let Some((offset, len, hash)) = r.text_at.take() else {
            continue;
        };
        let file = files.entry(r.file.clone()).or_insert_with(|| {
            let (_, path, _) = logs
                .iter()
                .find(|l| l.1.display().to_string() == r.file)
                .ok_or("not among the logs given")?;
            File::open(path).map_err(|e| e.to_string())
        });
        let mut buf = vec![0u8; len as usize];
        r.text = match file.as_ref().map_err(|e| e.clone()).and_then(|fh| {
            fh.read_exact_at(&mut buf, offset)
                .map_err(|e| e.to_string())
        }) {
            Ok(()) => match std::str::from_utf8(&buf) {
                Ok(line) if Excerpt::line_hash(line) == hash => excerpt(line),
                _ => format!(
                    "(the log changed after it was read: line {} is no longer at byte {offset})",
                    r.line
                ),
            },
            Err(e) => format!("(line {} could not be read again: {e})", r.line),
        };
    }
}

/// Network findings get their connection's bytes from its Close, when it was recorded.
fn fill_bytes(
    findings: &mut [matcher::Finding],
    seen: &mut usize,
    closes: &std::collections::HashMap<u64, (u64, u64)>,
    fresh: &mut Vec<u64>,
    wanted: &mut std::collections::HashMap<u64, usize>,
) {
    // New findings: their Close may be here already, else wait for it.
    for (i, f) in findings.iter_mut().enumerate().skip(*seen) {
        if let Some(k) = f.evidence.kernel.as_mut() {
            if let Some(id) = k.connection_id {
                match closes.get(&id) {
                    Some(&(r, w)) => (k.bytes_read, k.bytes_written) = (Some(r), Some(w)),
                    None => {
                        wanted.insert(id, i);
                    }
                }
            }
        }
    }
    *seen = findings.len();
    // Closes that arrived since the last call: one a finding waits for.
    for id in fresh.drain(..) {
        if let (Some(i), Some(&(r, w))) = (wanted.remove(&id), closes.get(&id)) {
            if let Some(k) = findings[i].evidence.kernel.as_mut() {
                (k.bytes_read, k.bytes_written) = (Some(r), Some(w));
            }
        }
    }
}

/// Feed arbitrary bytes to every parser an input can reach (audit lines under each
/// mapping, log reading, times, durations, mapping and expectations files). Used by the
/// fuzz target (analysis/fuzz) and by a randomized test; it must never panic.
#[doc(hidden)]
pub fn fuzz_parsers(data: &[u8]) {
    use std::sync::OnceLock;
    static CUSTOM: OnceLock<audit::Mapping> = OnceLock::new();
    let custom = CUSTOM.get_or_init(|| {
        audit::Mapping::Custom(Arc::new(
            audit::CustomMapping::parse(
                std::path::Path::new("fuzz.toml"),
                "[time]\nfield='t'\n[action]\nfield='a.b'\n[action.classes]\n\
                 'file.write'=['w']\n'network.connect'=['c']\n'file.rename'=['r']\n\
                 [fields]\npath='p'\nold_path='o'\npeer_address='x.addr'\npeer_port='x.port'\n\
                 peer_host='h'\npeer_service='s'\nlocal_port='l'\npid='pid'\n",
            )
            .expect("the fuzz mapping parses"),
        ))
    });
    static LOGFMT: OnceLock<audit::Mapping> = OnceLock::new();
    let logfmt = LOGFMT.get_or_init(|| {
        audit::Mapping::Custom(Arc::new(
            audit::CustomMapping::parse(
                std::path::Path::new("fuzz-logfmt.toml"),
                "format='logfmt'\n[time]\nfield='t'\n[action]\nfield='a.b'\n[action.classes]\n\
                 'file.write'=['w']\n'network.connect'=['c']\n[fields]\npath='p'\n\
                 peer_address='x.addr'\npid='pid'\n",
            )
            .expect("the fuzz logfmt mapping parses"),
        ))
    });
    let text = String::from_utf8_lossy(data);
    let service: Arc<str> = "svc".into();
    let file: Arc<str> = "fuzz".into();
    let arena = bumpalo::Bump::new();
    for m in [
        audit::Mapping::Ecs,
        audit::Mapping::Ocsf,
        custom.clone(),
        logfmt.clone(),
    ] {
        let o = audit::Origin {
            service: &service,
            file: &file,
            line: 1,
            text: &text,
            at: None,
            arena: &arena,
        };
        let _ = audit::parse_line(&m, &o);
        let mut log = audit::AuditLog::from_reader(
            "svc",
            "fuzz",
            Box::new(std::io::Cursor::new(data.to_vec())),
            m,
            true,
        );
        while let Ok(Some(_)) = log.next_record() {}
    }
    let _ = time::parse_rfc3339(&text);
    let _ = time::parse_duration(&text);
    if let Ok(v) = json::Value::parse(&text, &arena) {
        for f in [
            time::TimeFormat::Auto,
            time::TimeFormat::EpochS,
            time::TimeFormat::EpochNs,
            time::TimeFormat::Rfc3339,
        ] {
            let _ = time::parse_value(&v, f);
        }
    }
    let _ = audit::CustomMapping::parse(std::path::Path::new("m.toml"), &text);
    let _ = expect::Expectations::parse(std::path::Path::new("e.toml"), &text, &[]);
    let _ = normalize_path(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_lexically() {
        assert_eq!(normalize_path("/a//b/./c/"), "/a/b/c");
        assert_eq!(normalize_path("/a/b/../c"), "/a/c");
        assert_eq!(normalize_path("/../x"), "/x");
        assert_eq!(normalize_path("a/../../b"), "../b");
        assert_eq!(normalize_path("/"), "/");
        // The shortcut for paths that are normal already agrees with the general case,
        // on every path of up to 8 characters from '/', '.', 'a'.
        let mut paths = vec![String::new()];
        for _ in 0..8 {
            let longer: Vec<String> = paths
                .iter()
                .filter(|p| p.len() == paths.last().map_or(0, |l| l.len()))
                .flat_map(|p| ['/', '.', 'a'].map(|c| format!("{p}{c}")))
                .collect();
            paths.extend(longer);
        }
        assert!(paths.len() > 9000);
        for p in &paths {
            assert_eq!(normalize_path(p), normalize_components(p), "{p:?}");
        }
    }

    #[test]
    fn class_names_round_trip_and_write_accepts_create() {
        for (i, c) in Class::ALL.into_iter().enumerate() {
            assert_eq!(Class::parse(c.name()), Some(c));
            // The matcher counts coverage in arrays indexed by `class as usize`.
            assert_eq!(c as usize, i, "{c}");
        }
        assert!(Class::FileWrite.satisfied_by(Class::FileCreate));
        assert!(!Class::FileCreate.satisfied_by(Class::FileWrite));
        assert!(!Class::FileDelete.satisfied_by(Class::FileWrite));
    }

    /// A finding's line is read again from its log; a log changed since, or gone,
    /// says so instead of lending the finding another line.
    #[test]
    fn findings_read_their_lines_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let lines = ["{\"first\": 1}", "{\"second\": \"é\"}"];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let logs = vec![("svc".to_string(), path.clone(), None)];
        let finding = |line: u64, text: &str| {
            let offset = if line == 1 {
                0
            } else {
                lines[0].len() as u64 + 1
            };
            let text = text.to_string();
            matcher::Finding {
                kind: "unsupported",
                service: "svc".into(),
                class: Class::FileWrite,
                resource: "/x".into(),
                time: String::new(),
                time_ns: 0,
                rule: None,
                evidence: matcher::Evidence {
                    kernel: None,
                    record: Some(matcher::RecordEvidence {
                        file: path.display().to_string(),
                        line,
                        pid: None,
                        text: String::new(),
                        text_at: Some((offset, text.len() as u32, Excerpt::line_hash(&text))),
                    }),
                    nearest_kernel_action: None,
                },
            }
        };
        // The texts the findings get, in order.
        let reread = |which: &[u64]| -> Vec<String> {
            let mut f: Vec<_> = which
                .iter()
                .map(|&l| finding(l, lines[l as usize - 1]))
                .collect();
            read_excerpts(&mut f, &logs);
            f.into_iter()
                .map(|f| f.evidence.record.unwrap().text)
                .collect()
        };
        assert_eq!(reread(&[2, 1]), [lines[1], lines[0]]);
        // Rewritten in place with other text of the same length.
        std::fs::write(&path, lines.join("\n").replace("first", "fir5t")).unwrap();
        let t = reread(&[1, 2]);
        assert!(t[0].contains("the log changed"), "{}", t[0]);
        assert_eq!(t[1], lines[1]);
        // Truncated, then gone.
        std::fs::write(&path, "{").unwrap();
        let t = reread(&[2]);
        assert!(t[0].contains("line 2 could not be read again"), "{}", t[0]);
        std::fs::remove_file(&path).unwrap();
        let t = reread(&[1]);
        assert!(t[0].contains("line 1 could not be read again"), "{}", t[0]);
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        let s = "é".repeat(200);
        let e = excerpt(&s);
        assert!(e.ends_with('…') && e.len() < 170);
    }

    /// The word-at-a-time name comparison is `==`: names of every length up to 40,
    /// differing in one byte at each position, or in length.
    #[test]
    fn names_compare_as_strings_do() {
        let mut names = Vec::new();
        for len in 0..=40 {
            let base: String = (0..len).map(|i| (b'0' + i as u8) as char).collect();
            names.push(base.clone());
            for at in 0..len {
                let mut b = base.clone().into_bytes();
                b[at] = b'Z';
                names.push(String::from_utf8(b).unwrap());
            }
        }
        for a in &names {
            for b in &names {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
