//! What must be audited: an expectations file (TOML) or the built-in defaults
//! (docs/analysis.md, "What must be audited").
//!
//! ```toml
//! [[rule]]
//! name = "orders writes are audited"   # names the JUnit test case
//! service = "orders"                   # a service label, or "*" (every service with a log)
//! classes = ["file.write", "file.create", "file.delete", "file.rename"]
//! paths = ["/srv/orders/**"]           # file classes: globs (* within a component, ** across)
//! exclude = ["/srv/orders/tmp/**"]
//!
//! [[rule]]
//! name = "gateway calls orders"
//! service = "gateway"
//! classes = ["network.connect"]
//! peer_service = "orders"              # "*": any recorded service
//! peer_port = 8081
//! peer_ip = "127.0.0.1"
//!
//! [ignore]
//! paths = ["/srv/orders/cache/**"]     # never required, whatever the rules say
//! ```
//!
//! Never required, whatever the file says: /proc, /sys, /dev, the loader's shared
//! libraries and cache, locale and gconv files, and each service's own audit log.

use super::{Action, Class};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use memchr::memmem::Finder;
use serde::Deserialize;
use std::{cell::RefCell, hash::BuildHasher, net::IpAddr, path::Path};

/// Paths no rule can require.
pub const NEVER: &[&str] = &[
    "/proc/**",
    "/sys/**",
    "/dev/**",
    "/etc/ld.so.cache",
    "**/*.so",
    "**/*.so.*",
    "/usr/lib/locale/**",
    "/usr/share/locale/**",
    "**/gconv/**",
];

/// The default rule's exclusions: system and temporary paths.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "/tmp/**",
    "/var/tmp/**",
    "/run/**",
    "/usr/**",
    "/lib/**",
    "/lib32/**",
    "/lib64/**",
    "/bin/**",
    "/sbin/**",
    "/boot/**",
    "/var/cache/**",
    "**/__pycache__/**",
];

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// `None`: every service that has an audit log.
    pub service: Option<String>,
    pub classes: Vec<Class>,
    paths: Option<Globs>,
    exclude: Option<Globs>,
    /// `Some(None)`: any recorded service; `Some(Some(s))`: that service.
    peer_service: Option<Option<String>>,
    peer_port: Option<u16>,
    peer_ip: Option<IpAddr>,
}

#[derive(Debug)]
pub struct Expectations {
    pub rules: Vec<Rule>,
    never: Globs,
    /// "built-in defaults" or the file's path.
    pub source: String,
    verdicts: Verdicts,
}

/// What the globs say of a path: whether it can never be required, and which rules'
/// `paths` and `exclude` admit it (bit `i`: rule `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    never: bool,
    rules: u64,
}

/// What the globs say of the directories of recent paths, by a hash of the directory
/// (one slot each, the newest wins). Most globs (`/usr/**`, `**/gconv/**`) are decided
/// by a path's directory alone ([`Globs::dir_match`]): a directory's many files are
/// tested against them once, and each file only against the globs that look at its
/// name (testing every path against every glob was a tenth of `analyze`).
struct Verdicts {
    slots: RefCell<Vec<Slot>>,
}

/// What the directory-decided globs say of a directory: `never`, and which rules'
/// `paths` and `exclude` match it (bit `i`: rule `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirVerdict {
    never: bool,
    paths: u64,
    exclude: u64,
}

/// A directory and its verdict.
type Slot = Option<(Box<str>, DirVerdict)>;

const VERDICT_SLOTS: usize = 1024;

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            slots: RefCell::new(vec![None; VERDICT_SLOTS]),
        }
    }
}

impl std::fmt::Debug for Verdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verdicts")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RuleSpec>,
    #[serde(default)]
    ignore: IgnoreSpec,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IgnoreSpec {
    #[serde(default)]
    paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Option<String>,
    #[serde(default = "star")]
    service: String,
    classes: Vec<String>,
    paths: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    peer_service: Option<String>,
    peer_port: Option<u16>,
    peer_ip: Option<String>,
}

fn star() -> String {
    "*".into()
}

fn glob(p: &str) -> Result<Glob, String> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("glob `{p}`: {e}"))
}

/// A glob set whose common shapes are plain string tests: `LIT/**` is a prefix test,
/// `**/*LIT` a suffix test, `**/LIT/**` a component run anywhere, `**/*LIT*` a file
/// name that contains LIT, and a glob without wildcards an equality (LIT without
/// metacharacters, and without `/` where it stays within a name). The other globs go
/// to a glob set with a quick test in front: a path can only match a glob if it
/// contains the glob's longest literal run, so a path that contains none of the set's
/// (one Aho-Corasick pass) is no match without running the set's strategies (its
/// regexes were a tenth of `analyze`, and the Aho-Corasick pass over every path of the
/// defaults another 8%). A set with a glob without a literal always runs.
#[derive(Debug)]
pub struct Globs {
    /// `LIT/` of each `LIT/**`.
    prefixes: Vec<Lit>,
    /// `LIT` of each `**/*LIT`.
    suffixes: Vec<Lit>,
    /// `LIT/` and `/LIT/` of each `**/LIT/**`.
    inner: Vec<(Lit, Finder<'static>)>,
    /// `LIT` of each `**/*LIT*`.
    in_name: Vec<Box<[u8]>>,
    exact: Vec<String>,
    /// The other globs, if any.
    set: Option<GlobSet>,
    literals: Option<aho_corasick::AhoCorasick>,
}

/// A literal tested at a path's start or end one word at a time: paths are tested
/// against every prefix of a set, and most differ within the first eight bytes, where
/// a masked compare decides without calling memcmp.
#[derive(Debug)]
struct Lit {
    bytes: Box<[u8]>,
    /// The first (`head`) and last (`tail`) eight bytes of the literal, little endian,
    /// and which bytes of a path's first and last word they cover.
    head: u64,
    head_mask: u64,
    tail: u64,
    tail_mask: u64,
}

fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("eight bytes"))
}

impl Lit {
    fn new(s: &str) -> Lit {
        let b = s.as_bytes();
        let n = b.len().min(8);
        let (mut head, mut tail) = ([0u8; 8], [0u8; 8]);
        head[..n].copy_from_slice(&b[..n]);
        tail[8 - n..].copy_from_slice(&b[b.len() - n..]);
        let ones = |k: usize| {
            if k == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * k)) - 1
            }
        };
        Lit {
            bytes: b.into(),
            head: u64::from_le_bytes(head),
            head_mask: ones(n),
            tail: u64::from_le_bytes(tail),
            tail_mask: !ones(8 - n),
        }
    }

    fn starts(&self, p: &[u8]) -> bool {
        if p.len() < 8 || self.bytes.len() > p.len() {
            return p.starts_with(&self.bytes);
        }
        word(&p[..8]) & self.head_mask == self.head
            && (self.bytes.len() <= 8 || p[8..self.bytes.len()] == self.bytes[8..])
    }

    fn ends(&self, p: &[u8]) -> bool {
        if p.len() < 8 || self.bytes.len() > p.len() {
            return p.ends_with(&self.bytes);
        }
        let n = self.bytes.len();
        word(&p[p.len() - 8..]) & self.tail_mask == self.tail
            && (n <= 8 || p[p.len() - n..p.len() - 8] == self.bytes[..n - 8])
    }
}

/// The shape of a glob that a string test decides exactly (see [`Globs`]).
enum Simple {
    Prefix(String),
    Suffix(String),
    Inner(String),
    InName(String),
    Exact(String),
}

fn plain(s: &str) -> bool {
    !s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

fn simple(p: &str) -> Option<Simple> {
    if let Some(lit) = p.strip_suffix("/**") {
        if plain(lit) {
            return Some(Simple::Prefix(format!("{lit}/")));
        }
    }
    if let Some(lit) = p.strip_prefix("**/").and_then(|p| p.strip_suffix("/**")) {
        if plain(lit) && !lit.is_empty() {
            return Some(Simple::Inner(lit.to_string()));
        }
    }
    if let Some(lit) = p.strip_prefix("**/*") {
        if let Some(mid) = lit.strip_suffix('*') {
            if plain(mid) && !mid.contains('/') && !mid.is_empty() {
                return Some(Simple::InName(mid.to_string()));
            }
        }
        if plain(lit) && !lit.contains('/') && !lit.is_empty() {
            return Some(Simple::Suffix(lit.to_string()));
        }
    }
    plain(p).then(|| Simple::Exact(p.to_string()))
}

impl Globs {
    fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Globs, String> {
        let mut g = Globs {
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            inner: Vec::new(),
            in_name: Vec::new(),
            exact: Vec::new(),
            set: None,
            literals: None,
        };
        let mut b = GlobSetBuilder::new();
        let mut lits = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            // Every glob is checked for errors, simple ones too.
            let compiled = glob(p)?;
            match simple(p) {
                Some(Simple::Prefix(s)) => g.prefixes.push(Lit::new(&s)),
                Some(Simple::Suffix(s)) => g.suffixes.push(Lit::new(&s)),
                Some(Simple::Inner(s)) => g.inner.push((
                    Lit::new(&format!("{s}/")),
                    Finder::new(&format!("/{s}/")).into_owned(),
                )),
                Some(Simple::InName(s)) => g.in_name.push(s.into_bytes().into()),
                Some(Simple::Exact(s)) => g.exact.push(s),
                None => {
                    b.add(compiled);
                    lits.push(required_literal(p));
                }
            }
        }
        if !lits.is_empty() {
            if lits.iter().all(|l| !l.is_empty()) {
                g.literals =
                    Some(aho_corasick::AhoCorasick::new(&lits).map_err(|e| e.to_string())?);
            }
            g.set = Some(b.build().map_err(|e| e.to_string())?);
        }
        Ok(g)
    }

    pub fn is_match(&self, path: &str) -> bool {
        let dir = dir_of(path);
        self.dir_match(dir) || self.name_match(path, dir.len())
    }

    /// The globs decided by a path's directory ([`dir_of`]) alone: `LIT/**` and
    /// `**/LIT/**` (their literals end with `/`, so they can only match within the
    /// directory).
    fn dir_match(&self, dir: &str) -> bool {
        let b = dir.as_bytes();
        self.prefixes.iter().any(|p| p.starts(b))
            || self
                .inner
                .iter()
                .any(|(head, mid)| head.starts(b) || mid.find(b).is_some())
    }

    /// The other globs, which look at the file's name (after the directory's
    /// `dir_len` bytes) or the whole path.
    fn name_match(&self, path: &str, dir_len: usize) -> bool {
        let b = path.as_bytes();
        self.suffixes.iter().any(|s| s.ends(b))
            || (!self.in_name.is_empty() && {
                let name = &b[dir_len..];
                self.in_name.iter().any(|s| contains(name, s))
            })
            || self.exact.iter().any(|e| path == e)
            || self.set.as_ref().is_some_and(|set| {
                self.literals.as_ref().is_none_or(|l| l.is_match(path)) && set.is_match(path)
            })
    }
}

/// A path's directory: through its last `/` (empty when it has none). (Byte loops
/// here and below: names are short, and memchr's set-up cost more than the search.)
fn dir_of(path: &str) -> &str {
    match path.as_bytes().iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..=i],
        None => "",
    }
}

/// Whether a (short) file name contains `lit` (not empty): tried at each byte equal
/// to its first, compared byte by byte (literals are a few bytes: a memcmp call for
/// each `.` of a name, for `**/*.so.*`, was 1.4% of `analyze`).
fn contains(name: &[u8], lit: &[u8]) -> bool {
    name.len() >= lit.len()
        && (0..=name.len() - lit.len()).any(|i| {
            name[i] == lit[0]
                && name[i + 1..i + lit.len()]
                    .iter()
                    .zip(&lit[1..])
                    .all(|(a, b)| a == b)
        })
}

/// Text every path that matches glob `p` contains: its longest run of literal
/// characters, less the `/` at either end of the run (`**/x` also matches `x`, and
/// `a/**/b` matches `a/b`). Wildcards, classes and escapes end a run; a glob with
/// alternatives (`{a,b}`), whose literals are not required, has none (empty).
fn required_literal(p: &str) -> String {
    let mut best = String::new();
    let mut run = String::new();
    let mut end_run = |run: &mut String| {
        let r = run.trim_matches('/');
        if r.len() > best.len() {
            best = r.to_string();
        }
        run.clear();
    };
    let mut it = p.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '{' => return String::new(),
            '*' | '?' => end_run(&mut run),
            '\\' => {
                // An escaped character: the run ends (conservative).
                end_run(&mut run);
                it.next();
            }
            '[' => {
                // A class matches one character of a set: skip it whole (`[!..]`,
                // `[^..]`, and a `]` right after the opening is a member).
                end_run(&mut run);
                it.next_if(|c| *c == '!' || *c == '^');
                it.next_if_eq(&']');
                loop {
                    match it.next() {
                        Some(']') => break,
                        Some(_) => {}
                        None => return String::new(),
                    }
                }
            }
            c => run.push(c),
        }
    }
    end_run(&mut run);
    best
}

impl Expectations {
    /// The defaults: file changes outside system and temporary paths, and TCP
    /// connections between recorded services.
    pub fn defaults(audit_logs: &[&Path]) -> Expectations {
        let rules = vec![
            Rule {
                name: "file changes outside system and temporary paths are audited".into(),
                service: None,
                classes: vec![
                    Class::FileCreate,
                    Class::FileWrite,
                    Class::FileDelete,
                    Class::FileRename,
                ],
                paths: Some(Globs::new(&["/**"]).unwrap()),
                exclude: Some(Globs::new(DEFAULT_EXCLUDE).unwrap()),
                peer_service: None,
                peer_port: None,
                peer_ip: None,
            },
            Rule {
                name: "TCP connections between recorded services are audited".into(),
                service: None,
                classes: vec![Class::NetConnect, Class::NetAccept],
                paths: None,
                exclude: None,
                peer_service: Some(None),
                peer_port: None,
                peer_ip: None,
            },
        ];
        Expectations {
            rules,
            never: never(audit_logs, &[]).unwrap(),
            source: "built-in defaults".into(),
            verdicts: Verdicts::default(),
        }
    }

    pub fn load(path: &Path, audit_logs: &[&Path]) -> Result<Expectations, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, &text, audit_logs)
    }

    pub fn parse(path: &Path, text: &str, audit_logs: &[&Path]) -> Result<Expectations, String> {
        let at = |e: String| format!("{}: {e}", path.display());
        let f: File = toml::from_str(text).map_err(|e| at(e.to_string()))?;
        if f.rule.is_empty() {
            return Err(at("no [[rule]]: nothing would be required".into()));
        }
        let mut rules = Vec::new();
        for (i, r) in f.rule.into_iter().enumerate() {
            let which = |e: String| at(format!("rule {}: {e}", i + 1));
            let mut classes = Vec::new();
            for c in &r.classes {
                classes.push(Class::parse(c).ok_or_else(|| {
                    which(format!(
                        "unknown class `{c}` (expected one of {})",
                        Class::ALL.map(|c| c.name()).join(", ")
                    ))
                })?);
            }
            if classes.is_empty() {
                return Err(which("`classes` is empty".into()));
            }
            let files = classes.iter().any(|c| !c.is_network());
            let net = classes.iter().any(|c| c.is_network());
            if !files && (r.paths.is_some() || !r.exclude.is_empty()) {
                return Err(which(
                    "`paths`/`exclude` need a file or process class".into(),
                ));
            }
            if !net && (r.peer_service.is_some() || r.peer_port.is_some() || r.peer_ip.is_some()) {
                return Err(which("`peer_*` need a network class".into()));
            }
            let peer_ip = match &r.peer_ip {
                Some(s) => Some(
                    s.parse::<IpAddr>()
                        .map(|ip| ip.to_canonical())
                        .map_err(|_| which(format!("peer_ip `{s}` is not an IP address")))?,
                ),
                None => None,
            };
            rules.push(Rule {
                name: r.name.unwrap_or_else(|| {
                    format!(
                        "{} by {}",
                        r.classes.join(", "),
                        if r.service == "*" {
                            "every service"
                        } else {
                            &r.service
                        }
                    )
                }),
                service: (r.service != "*").then_some(r.service),
                classes,
                paths: r
                    .paths
                    .as_deref()
                    .map(Globs::new)
                    .transpose()
                    .map_err(which)?,
                exclude: (!r.exclude.is_empty())
                    .then(|| Globs::new(&r.exclude))
                    .transpose()
                    .map_err(which)?,
                peer_service: r.peer_service.map(|s| (s != "*").then_some(s)),
                peer_port: r.peer_port,
                peer_ip,
            });
        }
        if rules.len() > 64 {
            return Err(at(format!(
                "{} rules: at most 64 are supported",
                rules.len()
            )));
        }
        Ok(Expectations {
            rules,
            never: never(audit_logs, &f.ignore.paths).map_err(at)?,
            source: path.display().to_string(),
            verdicts: Verdicts::default(),
        })
    }

    /// Whether a path can never be required.
    pub fn never(&self, path: &str) -> bool {
        self.never.is_match(path)
    }

    /// What the globs say of a path, without the directories' cache (the reference the
    /// cached [`Expectations::verdict`] is tested against).
    #[cfg(test)]
    fn verdict_of(&self, path: &str) -> Verdict {
        let rules = self.rules.iter().enumerate().fold(0u64, |m, (i, r)| {
            let admits = r.paths.as_ref().is_none_or(|g| g.is_match(path))
                && r.exclude.as_ref().is_none_or(|g| !g.is_match(path));
            m | (u64::from(admits) << i)
        });
        Verdict {
            never: self.never(path),
            rules,
        }
    }

    /// What the directory-decided globs say of `dir` (see [`Verdicts`]).
    fn dir_verdict_of(&self, dir: &str) -> DirVerdict {
        let mut v = DirVerdict {
            never: self.never.dir_match(dir),
            paths: 0,
            exclude: 0,
        };
        for (i, r) in self.rules.iter().enumerate() {
            v.paths |= u64::from(r.paths.as_ref().is_some_and(|g| g.dir_match(dir))) << i;
            v.exclude |= u64::from(r.exclude.as_ref().is_some_and(|g| g.dir_match(dir))) << i;
        }
        v
    }

    /// [`Expectations::verdict_of`], with its directory's part from the recent
    /// directories when the directory is there.
    fn verdict(&self, path: &str) -> Verdict {
        let dir = dir_of(path);
        let slot = rustc_hash::FxBuildHasher.hash_one(dir) as usize % VERDICT_SLOTS;
        let cached = match &self.verdicts.slots.borrow()[slot] {
            Some((d, v)) if **d == *dir => Some(*v),
            _ => None,
        };
        let d = cached.unwrap_or_else(|| {
            let v = self.dir_verdict_of(dir);
            self.verdicts.slots.borrow_mut()[slot] = Some((dir.into(), v));
            v
        });
        let rules = self.rules.iter().enumerate().fold(0u64, |m, (i, r)| {
            let admits = r
                .paths
                .as_ref()
                .is_none_or(|g| d.paths >> i & 1 == 1 || g.name_match(path, dir.len()))
                && r.exclude
                    .as_ref()
                    .is_none_or(|g| !(d.exclude >> i & 1 == 1 || g.name_match(path, dir.len())));
            m | (u64::from(admits) << i)
        });
        Verdict {
            never: d.never || self.never.name_match(path, dir.len()),
            rules,
        }
    }

    /// The first rule that requires this action, if any. `peer_service` is the other
    /// end's service when it was recorded; `has_log` says whether a service has an audit
    /// log (rules for "*" cover only those; it is asked only of the action's service).
    pub fn required(
        &self,
        a: &Action,
        peer_service: Option<&str>,
        has_log: impl Fn(&str) -> bool,
    ) -> Option<usize> {
        if !self.rules.iter().any(|r| r.classes.contains(&a.class)) {
            return None;
        }
        let verdicts = if a.class.is_network() {
            [None, None]
        } else {
            [a.path.as_deref(), a.old_path.as_deref()]
                .map(|p| p.map(|p| self.verdict(p)).filter(|v| !v.never))
        };
        let verdicts = verdicts.iter().flatten();
        if !a.class.is_network() && verdicts.clone().next().is_none() {
            return None;
        }
        self.rules.iter().enumerate().position(|(i, r)| {
            (match &r.service {
                Some(s) => **s == *a.service,
                None => has_log(&a.service),
            }) && r.classes.contains(&a.class)
                && if a.class.is_network() {
                    let conn = a.conn.as_ref();
                    let peer = conn.map(|c| {
                        if a.class == Class::NetConnect {
                            c.server
                        } else {
                            c.client
                        }
                    });
                    (match &r.peer_service {
                        None => true,
                        Some(None) => peer_service.is_some(),
                        Some(Some(s)) => peer_service == Some(s.as_str()),
                    }) && r
                        .peer_port
                        .is_none_or(|p| conn.is_some_and(|c| c.server.1 == p))
                        && r.peer_ip.is_none_or(|ip| peer.is_some_and(|p| p.0 == ip))
                } else {
                    verdicts.clone().any(|v| v.rules >> i & 1 == 1)
                }
        })
    }
}

fn never(audit_logs: &[&Path], extra: &[String]) -> Result<Globs, String> {
    let mut v: Vec<String> = NEVER
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .map(str::to_string)
        .collect();
    for log in audit_logs {
        // The log as given and as the kernel would name it (absolute, resolved).
        let abs = std::fs::canonicalize(log).unwrap_or_else(|_| log.to_path_buf());
        for p in [log.to_path_buf(), abs] {
            v.push(globset::escape(&p.to_string_lossy()));
        }
    }
    Globs::new(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time tests agree with the slices' on literals and paths of every
    /// length around eight and sixteen bytes.
    #[test]
    fn literal_word_tests_agree_with_slices() {
        let mut strings = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = strings
                .iter()
                .flat_map(|s| ["a", "/", "lib", "/usr/lib/", "x.so."].map(|p| format!("{s}{p}")))
                .collect();
            strings.extend(longer);
        }
        strings.sort();
        strings.dedup();
        assert!(strings.iter().any(|s| s.len() > 16));
        let (mut starts, mut ends) = (0, 0);
        for l in &strings {
            let lit = Lit::new(l);
            for p in &strings {
                assert_eq!(
                    lit.starts(p.as_bytes()),
                    p.starts_with(l.as_str()),
                    "{l:?} {p:?}"
                );
                assert_eq!(
                    lit.ends(p.as_bytes()),
                    p.ends_with(l.as_str()),
                    "{l:?} {p:?}"
                );
                starts += usize::from(p.starts_with(l.as_str()));
                ends += usize::from(p.ends_with(l.as_str()));
            }
        }
        assert!(starts > 500 && ends > 500, "{starts} {ends}");
    }

    /// The literal test in front of a set never changes its answer: every pattern
    /// alone and the built-in sets, on paths built from components that contain (and
    /// almost contain) their literals.
    #[test]
    fn string_tests_and_literal_prefilter_keep_every_answer() {
        let weird = globset::escape("/tmp/we[ird]/a*b.log");
        let mut patterns: Vec<String> = NEVER
            .iter()
            .chain(DEFAULT_EXCLUDE)
            .chain(&[
                "**/a/**",
                "a/**/b",
                "/x?y/*",
                "/[ab]c/**",
                "/d[!e]f",
                "/{g,h}i/**",
                "/esc\\*ape",
                "/lit[]]x",
                "/**",
                "**",
                "*.log",
                "/usr/*/locale",
                "/tmp",
                "**/*",
                "**/*.so.6",
                "**/*so/b",
                "/**/tmp/**",
                "tmp/**",
                "/usr/lib/**",
                "**/b/**",
                "**/a/b/**",
                "**/*.so*",
                "**/*b*",
                "**/*a/b*",
            ])
            .map(|s| s.to_string())
            .collect();
        patterns.push(weird);
        assert_eq!(required_literal("**/gconv/**"), "gconv");
        assert_eq!(required_literal("**/*.so.*"), ".so.");
        assert_eq!(required_literal("/[ab]c/**"), "c");
        assert_eq!(required_literal("/{g,h}i/**"), "");
        let parts = [
            "a",
            "b",
            "gconv",
            "gconvx",
            "__pycache__",
            "xzy",
            "ac",
            "bc",
            "dgf",
            "def",
            "gi",
            "hi",
            "esc*ape",
            "lib.so",
            "lib.so.6",
            "libso",
            "proc",
            "usr",
            "lib",
            "locale",
            "share",
            "tmp",
            "we[ird]",
            "a*b.log",
            "lit]x",
            "etc",
            "ld.so.cache",
            ".so",
            "x.so6",
            "",
        ];
        let mut paths = Vec::new();
        for a in parts {
            paths.push(a.to_string());
            for b in parts {
                paths.push(format!("{a}/{b}"));
                for c in parts {
                    paths.push(format!("{a}/{b}/{c}"));
                }
            }
        }
        let absolute: Vec<String> = paths.iter().map(|p| format!("/{p}")).collect();
        paths.extend(absolute);
        let mut sets: Vec<Vec<String>> = patterns.iter().map(|p| vec![p.clone()]).collect();
        sets.push(NEVER.iter().map(|s| s.to_string()).collect());
        sets.push(DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect());
        let mut matched = 0;
        for set in sets {
            let ours = Globs::new(&set).unwrap();
            let mut reference = GlobSetBuilder::new();
            for p in &set {
                reference.add(glob(p).unwrap());
            }
            let reference = reference.build().unwrap();
            for p in &paths {
                let want = reference.is_match(p.as_str());
                assert_eq!(ours.is_match(p), want, "{set:?} on {p}");
                matched += usize::from(want);
            }
        }
        assert!(
            matched > 10_000,
            "the paths reach the globs ({matched} matches)"
        );
    }
    use std::sync::Arc;

    fn action(service: &str, class: Class, path: &str) -> Action {
        Action {
            service: service.into(),
            class,
            start_ns: 0,
            end_ns: 0,
            pid: 1,
            comm: Arc::from("x"),
            exe: None,
            path: Some(path.into()),
            old_path: None,
            conn: None,
            bytes_read: None,
            bytes_written: None,
        }
    }

    #[test]
    fn defaults_require_changes_outside_system_and_temporary_paths() {
        let log = Path::new("/srv/app/audit.jsonl");
        let x = Expectations::defaults(&[log]);
        let yes = |s: &str| s == "app";
        let req = |c, p| x.required(&action("app", c, p), None, yes).is_some();
        assert!(req(Class::FileWrite, "/srv/app/orders/1.json"));
        assert!(req(Class::FileCreate, "/home/u/data"));
        assert!(req(Class::FileDelete, "/etc/passwd"));
        assert!(
            !req(Class::FileRead, "/srv/app/orders/1.json"),
            "reads are not"
        );
        assert!(
            !req(Class::FileWrite, "/srv/app/audit.jsonl"),
            "its own audit log"
        );
        for p in [
            "/tmp/x",
            "/proc/self/status",
            "/dev/null",
            "/usr/lib/x.so.6",
            "/var/tmp/y",
            "/run/lock/z",
        ] {
            assert!(!req(Class::FileWrite, p), "{p}");
        }
        assert!(!req(Class::ProcessExec, "/usr/bin/cp"));
        assert!(
            x.required(&action("nolog", Class::FileWrite, "/srv/a"), None, yes)
                .is_none(),
            "a service without an audit log is not analyzed by the defaults"
        );
        // Renames count when either name is outside the excluded paths.
        let mut r = action("app", Class::FileRename, "/srv/app/final");
        r.old_path = Some("/tmp/staging".into());
        assert!(x.required(&r, None, yes).is_some());
        // Connections only between recorded services.
        let mut c = action("app", Class::NetConnect, "");
        c.path = None;
        assert!(x.required(&c, None, yes).is_none());
        assert_eq!(x.required(&c, Some("db"), yes), Some(1));
    }

    #[test]
    fn expectations_file_rules_and_errors() {
        let text = r#"
[[rule]]
name = "orders"
service = "orders"
classes = ["file.write", "file.delete"]
paths = ["/srv/orders/*.json"]
exclude = ["/srv/orders/skip*"]
[[rule]]
service = "gw"
classes = ["network.connect"]
peer_service = "orders"
peer_port = 8081
[ignore]
paths = ["/srv/orders/ignored.json"]
"#;
        let x = Expectations::parse(Path::new("e.toml"), text, &[]).unwrap();
        let no = |_: &str| false;
        let req = |s, c, p| x.required(&action(s, c, p), None, no);
        assert_eq!(
            req("orders", Class::FileWrite, "/srv/orders/1.json"),
            Some(0)
        );
        assert_eq!(
            req("orders", Class::FileWrite, "/srv/orders/sub/1.json"),
            None,
            "* stays in a component"
        );
        assert_eq!(
            req("orders", Class::FileWrite, "/srv/orders/skip1.json"),
            None
        );
        assert_eq!(
            req("orders", Class::FileWrite, "/srv/orders/ignored.json"),
            None
        );
        assert_eq!(req("orders", Class::FileCreate, "/srv/orders/1.json"), None);
        assert_eq!(req("other", Class::FileWrite, "/srv/orders/1.json"), None);
        let mut c = action("gw", Class::NetConnect, "");
        c.conn = Some(Box::new(super::super::Conn {
            client: ("127.0.0.1".parse().unwrap(), 40000),
            server: ("127.0.0.1".parse().unwrap(), 8081),
            connection_id: None,
        }));
        assert_eq!(x.required(&c, Some("orders"), no), Some(1));
        assert_eq!(x.required(&c, Some("db"), no), None);
        assert_eq!(x.rules[1].name, "network.connect by gw");

        for (bad, want) in [
            ("", "no [[rule]]"),
            (
                "[[rule]]\nclasses=['file.wrote']\n",
                "rule 1: unknown class `file.wrote`",
            ),
            ("[[rule]]\nclasses=[]\n", "`classes` is empty"),
            (
                "[[rule]]\nclasses=['network.connect']\npaths=['/x']\n",
                "need a file",
            ),
            (
                "[[rule]]\nclasses=['file.write']\npeer_port=1\n",
                "need a network",
            ),
            ("[[rule]]\nclasses=['file.write']\npaths=['/x/[']\n", "glob"),
            ("[[rule]]\nclasses=['file.write']\nsrvice='x'\n", "srvice"),
            (
                &"[[rule]]\nclasses=['file.write']\n".repeat(65),
                "65 rules: at most 64",
            ),
        ] {
            let e = Expectations::parse(Path::new("e.toml"), bad, &[]).unwrap_err();
            assert!(e.starts_with("e.toml: ") && e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn recent_verdicts_are_the_globs_verdicts() {
        let text = r#"
[[rule]]
classes = ["file.write"]
paths = ["/srv/**"]
exclude = ["/srv/tmp/**"]
[[rule]]
classes = ["file.write"]
paths = ["**/*.log"]
[ignore]
paths = ["/srv/cache/**"]
"#;
        let x = Expectations::parse(Path::new("e.toml"), text, &[]).unwrap();
        // Far more paths than slots, each asked for twice at different distances, so
        // that slots are shared and overwritten; every answer is the uncached one.
        let paths: Vec<String> = (0..5 * VERDICT_SLOTS)
            .map(|i| match i % 5 {
                0 => format!("/srv/a/{i}.json"),
                1 => format!("/srv/tmp/{i}.json"),
                2 => format!("/var/{i}.log"),
                3 => format!("/srv/cache/{i}.log"),
                _ => format!("/proc/{i}/x.so"),
            })
            .collect();
        let mut hits = 0;
        for (i, p) in paths.iter().enumerate() {
            for q in [p, &paths[i / 2]] {
                let dir = dir_of(q);
                let slot = rustc_hash::FxBuildHasher.hash_one(dir) as usize % VERDICT_SLOTS;
                hits += usize::from(
                    x.verdicts.slots.borrow()[slot]
                        .as_ref()
                        .is_some_and(|(k, _)| **k == *dir),
                );
                assert_eq!(x.verdict(q), x.verdict_of(q), "{q}");
            }
        }
        assert!(hits > 0, "some answers came from the slots");
        let v = |p: &str| x.verdict(p);
        assert_eq!(
            v("/srv/a.json"),
            Verdict {
                never: false,
                rules: 0b01
            }
        );
        assert_eq!(
            v("/srv/tmp/a.log"),
            Verdict {
                never: false,
                rules: 0b10
            }
        );
        assert_eq!(
            v("/srv/a.log"),
            Verdict {
                never: false,
                rules: 0b11
            }
        );
        assert!(v("/srv/cache/a.json").never && v("/proc/1/status").never);
    }
}
