//! Audit logs in: JSON Lines, one record per line, streamed.
//!
//! Built-in mappings: Elastic Common Schema ([`Mapping::Ecs`]) and OCSF JSON
//! ([`Mapping::Ocsf`]), detected per file from its first record, or chosen with
//! `--mapping`; a TOML mapping file ([`CustomMapping`]) for any other JSON shape.
//!
//! A line that is not a JSON object, has no readable time, or claims a kernel-visible
//! action without its resource is malformed: an error naming the file, the line and
//! what was expected. A well-formed record about something the kernel cannot see (a
//! login, a business event) is counted as ignored.

use super::{
    excerpt,
    json::{Object, Value},
    normalize_path, time, Claim, Class, Excerpt, Record,
};
use bumpalo::Bump;
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, Read},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

/// How the records of a log are read.
#[derive(Clone, Debug)]
pub enum Mapping {
    Ecs,
    Ocsf,
    Custom(Arc<CustomMapping>),
}

impl Mapping {
    pub fn name(&self) -> String {
        match self {
            Mapping::Ecs => "ecs".into(),
            Mapping::Ocsf => "ocsf".into(),
            Mapping::Custom(c) => c.source.display().to_string(),
        }
    }
}

/// A TOML mapping file: where a record keeps its time, its action and its resource.
/// Records are JSON objects, or with `format = "logfmt"` lines of `key=value` pairs
/// (values bare or "quoted" with `\"` and `\\` escapes; a key alone means `true`),
/// whose keys the fields name as they are (dots included).
///
/// ```toml
/// format = "json"           # json (default) | logfmt
///
/// [time]
/// field = "ts"              # dotted path into the object ("a.b" = {"a":{"b":..}} or {"a.b":..})
/// format = "epoch_ms"       # rfc3339 | epoch_s | epoch_ms | epoch_us | epoch_ns | auto
///
/// [action]
/// field = "event"
/// [action.classes]          # class = the values of the action field that mean it
/// "file.write" = ["order.saved"]
/// "file.delete" = ["order.purged"]
/// "network.connect" = ["storage.call"]
///
/// [fields]                  # all optional
/// path = "details.file"     # file classes: the file (rename: the new name); exec: the executable
/// old_path = "details.from" # rename: the old name
/// peer_address = "peer"     # "host:port" or "[v6]:port" of the other end
/// peer_host = "peer_host"
/// peer_port = "peer_port"
/// peer_service = "peer_service"
/// local_port = "port"       # this end's port (accept: the listening port)
/// pid = "pid"
/// ```
#[derive(Debug)]
pub struct CustomMapping {
    pub source: PathBuf,
    line_format: LineFormat,
    time_field: String,
    time_format: time::TimeFormat,
    action_field: String,
    /// Lowercased action value -> class.
    classes: BTreeMap<String, Class>,
    fields: Fields,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    path: Option<String>,
    old_path: Option<String>,
    peer_address: Option<String>,
    peer_host: Option<String>,
    peer_port: Option<String>,
    peer_service: Option<String>,
    local_port: Option<String>,
    pid: Option<String>,
}

/// How a custom-mapped log writes a record on its line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    #[default]
    Json,
    Logfmt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    format: LineFormat,
    time: TimeSpec,
    action: ActionSpec,
    #[serde(default)]
    fields: Fields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeSpec {
    field: String,
    #[serde(default = "auto")]
    format: time::TimeFormat,
}

fn auto() -> time::TimeFormat {
    time::TimeFormat::Auto
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpec {
    field: String,
    classes: BTreeMap<String, Vec<String>>,
}

impl CustomMapping {
    /// Read and check a mapping file; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<CustomMapping, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<CustomMapping, String> {
        let f: MappingFile =
            toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut classes = BTreeMap::new();
        for (name, values) in f.action.classes {
            let class = Class::parse(&name).ok_or_else(|| {
                format!(
                    "{}: [action.classes]: unknown class `{name}` (expected one of {})",
                    path.display(),
                    Class::ALL.map(|c| c.name()).join(", ")
                )
            })?;
            for v in values {
                if let Some(other) = classes.insert(v.to_lowercase(), class) {
                    if other != class {
                        return Err(format!(
                            "{}: [action.classes]: `{v}` is listed under both {other} and {class}",
                            path.display()
                        ));
                    }
                }
            }
        }
        if classes.is_empty() {
            return Err(format!(
                "{}: [action.classes] maps no value to a class",
                path.display()
            ));
        }
        Ok(CustomMapping {
            source: path.to_path_buf(),
            line_format: f.format,
            time_field: f.time.field,
            time_format: f.time.format,
            action_field: f.action.field,
            classes,
            fields: f.fields,
        })
    }
}

/// A value at a dotted path: `a.b.c` finds `{"a":{"b":{"c":..}}}`, `{"a.b.c":..}` and
/// any mix (`{"a":{"b.c":..}}`), as ECS producers write both.
pub fn lookup<'a, 'v>(v: &'a Value<'v>, path: &str) -> Option<&'a Value<'v>> {
    let o = v.as_object()?;
    lookup_in(o, path)
}

fn lookup_in<'a, 'v>(o: &'a Object<'v>, path: &str) -> Option<&'a Value<'v>> {
    if let Some(x) = o.get(path) {
        return Some(x);
    }
    // Each `.` splits the path into an object's key and the rest (a byte loop: a
    // `match_indices` searcher cost more than the lookups).
    for (i, _) in path.bytes().enumerate().filter(|&(_, b)| b == b'.') {
        if let Some(Value::Object(sub)) = o.get(&path[..i]) {
            if let Some(x) = lookup_in(sub, &path[i + 1..]) {
                return Some(x);
            }
        }
    }
    None
}

fn text<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    lookup(v, path)?.as_str().filter(|s| !s.is_empty())
}

/// A string or an array of strings (ECS `event.category`, `event.type`), as the
/// strings of a slice of values (a lone string is a slice of one).
fn strings<'a>(v: &'a Value, path: &str) -> impl Iterator<Item = &'a str> + Clone {
    let values = match lookup(v, path) {
        Some(s @ Value::String(_)) => std::slice::from_ref(s),
        Some(Value::Array(a)) => a,
        _ => &[],
    };
    values.iter().filter_map(Value::as_str)
}

/// An integer given as a number or as decimal text.
fn integer(v: &Value, path: &str) -> Result<Option<u64>, String> {
    match lookup(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{path}` to be a non-negative integer, found {n}")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("`{path}` to be an integer, found \"{}\"", excerpt(s))),
        Some(other) => Err(format!("`{path}` to be an integer, found {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn port(v: &Value, path: &str) -> Result<Option<u16>, String> {
    match integer(v, path)? {
        None => Ok(None),
        Some(p) => u16::try_from(p)
            .map(Some)
            .map_err(|_| format!("`{path}` to be a port (0-65535), found {p}")),
    }
}

fn pid(v: &Value, path: &str) -> Result<Option<u32>, String> {
    match integer(v, path)? {
        None => Ok(None),
        Some(p) => u32::try_from(p)
            .map(Some)
            .map_err(|_| format!("`{path}` to be a pid, found {p}")),
    }
}

/// A host as a record writes it: an IP address (brackets allowed) or a name.
fn host(h: &str) -> (Option<IpAddr>, Option<String>) {
    let t = h.trim().trim_start_matches('[').trim_end_matches(']');
    match t.parse::<IpAddr>() {
        Ok(ip) => (Some(ip.to_canonical()), None),
        Err(_) => (None, Some(t.to_ascii_lowercase())),
    }
}

/// A host as an IP address or a name, and a port.
type HostPort = (Option<IpAddr>, Option<String>, Option<u16>);

/// `host:port`, `[v6]:port`, or a bare host.
fn address(a: &str) -> Result<HostPort, String> {
    let a = a.trim();
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Ok((Some(ip.to_canonical()), None, None));
    }
    let (h, p) = match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            let p: u16 = p
                .parse()
                .map_err(|_| format!("an address `host:port`, found \"{}\"", excerpt(a)))?;
            (h, Some(p))
        }
        _ => (a, None),
    };
    let (ip, name) = host(h);
    Ok((ip, name, p))
}

/// The peer of a network action (the server of a connect, the client of an accept).
#[derive(Default)]
struct Peer {
    ip: Option<IpAddr>,
    host: Option<String>,
    port: Option<u16>,
    service: Option<String>,
    local_port: Option<u16>,
}

fn network_claim(class: Class, p: Peer) -> Claim {
    let mut c = Claim {
        peer_host: p.host,
        peer_service: p.service,
        ..Default::default()
    };
    if class == Class::NetConnect {
        (c.server_ip, c.server_port, c.client_port) = (p.ip, p.port, p.local_port);
    } else {
        (c.client_ip, c.client_port, c.server_port) = (p.ip, p.port, p.local_port);
    }
    c
}

/// An endpoint's host: `PREFIX.ip`, else the first of `PREFIX.NAME` for `names` (an IP
/// address or a host name either way).
fn endpoint_host(v: &Value, prefix: &str, names: &[&str]) -> (Option<IpAddr>, Option<String>) {
    std::iter::once("ip")
        .chain(names.iter().copied())
        .find_map(|f| text(v, &format!("{prefix}.{f}")))
        .map(host)
        .unwrap_or((None, None))
}

/// A network claim must name something of the peer; `what` says where it is looked for.
fn some_peer(claim: Claim, class: Class, what: &str) -> Result<Claim, String> {
    if claim == Claim::default() {
        return Err(format!("{what} in a {class} record"));
    }
    Ok(claim)
}

/// What a word in an action name means, within a domain.
fn word_class(word: &str, domain: Domain) -> Option<Class> {
    let c = match word {
        "create" | "created" | "creation" | "mkdir" | "new" => Class::FileCreate,
        "write" | "written" | "wrote" | "writes" | "modify" | "modified" | "update" | "updated"
        | "change" | "changed" | "save" | "saved" | "append" | "appended" | "overwrite"
        | "overwritten" | "truncate" | "truncated" => Class::FileWrite,
        "delete" | "deleted" | "deletion" | "remove" | "removed" | "unlink" | "unlinked"
        | "rmdir" | "purge" | "purged" => Class::FileDelete,
        "rename" | "renamed" | "move" | "moved" => Class::FileRename,
        "read" | "access" | "accessed" | "load" | "loaded" => Class::FileRead,
        "connect" | "connected" | "dial" | "call" | "called" | "outbound" | "egress" => {
            Class::NetConnect
        }
        "accept" | "accepted" | "inbound" | "ingress" | "serve" | "served" => Class::NetAccept,
        "exec" | "execute" | "executed" | "spawn" | "spawned" | "launch" | "launched" => {
            Class::ProcessExec
        }
        "start" | "started" if domain == Domain::Process => Class::ProcessExec,
        _ => return None,
    };
    match domain {
        Domain::Unknown => Some(c),
        Domain::File if !c.is_network() && c != Class::ProcessExec => Some(c),
        Domain::Network if c.is_network() => Some(c),
        Domain::Process if c == Class::ProcessExec => Some(c),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Domain {
    Unknown,
    File,
    Network,
    Process,
}

/// [`action_words`], remembered for the last few action texts: a log repeats a
/// handful of them, and matching the words cost more than the rest of a record.
fn action_class(action: &str, domain: Domain) -> Option<Class> {
    const KEEP: usize = 16;
    type Recent = Vec<(Box<str>, Domain, Option<Class>)>;
    thread_local! {
        static RECENT: std::cell::RefCell<Recent> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if action.len() > 64 {
        return action_words(action, domain);
    }
    RECENT.with_borrow_mut(|recent| {
        if let Some((_, _, c)) = recent
            .iter()
            .find(|(a, d, _)| *d == domain && super::same(a, action))
        {
            return *c;
        }
        let c = action_words(action, domain);
        if recent.len() == KEEP {
            recent.remove(0);
        }
        recent.push((action.into(), domain, c));
        c
    })
}

/// The class named by an action text (`order-file-deleted`, `file_write`), from its
/// first word that means one.
fn action_words(action: &str, domain: Domain) -> Option<Class> {
    // Lowercased in a buffer: the longest word that means a class has 11 letters.
    const LONGEST: usize = 16;
    let mut buf = [0u8; LONGEST];
    action
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() <= LONGEST)
        .find_map(|w| {
            let lower = &mut buf[..w.len()];
            lower.copy_from_slice(w.as_bytes());
            lower.make_ascii_lowercase();
            // SAFETY: ASCII alphanumerics only (the split), so valid UTF-8.
            word_class(unsafe { std::str::from_utf8_unchecked(lower) }, domain)
        })
}

/// The header of every record: where it came from.
pub struct Origin<'a> {
    pub service: &'a Arc<str>,
    pub file: &'a Arc<str>,
    pub line: u64,
    pub text: &'a str,
    /// Where the line starts in the log, when the log can be read there again.
    pub at: Option<u64>,
    /// Where the line's parsed objects go (reset for every line).
    pub arena: &'a Bump,
}

/// A parsed line is `Some` record, or `None` for a record of something the kernel does
/// not see.
type Parsed = Option<Record>;

fn record(o: &Origin, time_ns: i64, class: Class, claim: Claim, pid: Option<u32>) -> Parsed {
    Some(Record {
        service: o.service.clone(),
        time_ns,
        class,
        claim,
        pid,
        file: o.file.clone(),
        line: o.line,
        excerpt: match o.at {
            Some(offset) if o.text.len() <= u32::MAX as usize => Excerpt::At {
                offset,
                len: o.text.len() as u32,
                hash: Excerpt::line_hash(o.text),
            },
            _ => Excerpt::Text(excerpt(o.text)),
        },
    })
}

fn path_claim(class: Class, path: Option<&str>, what: &str) -> Result<Claim, String> {
    let p = path.ok_or_else(|| format!("`{what}` in a {class} record"))?;
    Ok(Claim {
        path: Some(normalize_path(p)),
        ..Default::default()
    })
}

/// Parse one line (already known not to be blank). `Err` says what was expected.
pub fn parse_line(mapping: &Mapping, o: &Origin) -> Result<Parsed, String> {
    if let Mapping::Custom(m) = mapping {
        if m.line_format == LineFormat::Logfmt {
            return custom(m, &logfmt(o.text, o.arena)?, o);
        }
    }
    let v = Value::parse(o.text, o.arena).map_err(|e| format!("a JSON object ({e})"))?;
    if !v.is_object() {
        return Err(format!("a JSON object, found {}", kind(&v)));
    }
    match mapping {
        Mapping::Ecs => ecs(&v, o),
        Mapping::Ocsf => ocsf(&v, o),
        Mapping::Custom(m) => custom(m, &v, o),
    }
}

fn time_of(v: &Value, field: &str, f: time::TimeFormat) -> Result<i64, String> {
    let t = lookup(v, field).ok_or_else(|| format!("a time in `{field}`"))?;
    time::parse_value(t, f).ok_or_else(|| {
        format!(
            "`{field}` to be {}, found {}",
            f.name(),
            excerpt(&t.to_string())
        )
    })
}

fn ecs(v: &Value, o: &Origin) -> Result<Parsed, String> {
    let t = time_of(v, "@timestamp", time::TimeFormat::Auto)?;
    let cats = strings(v, "event.category");
    let types = || strings(v, "event.type");
    let has = |p: &str| lookup(v, p).is_some();
    let has_cat = |c: &str| cats.clone().any(|x| x == c);
    let domain = if has_cat("file") {
        Domain::File
    } else if has_cat("network") {
        Domain::Network
    } else if has_cat("process") {
        Domain::Process
    } else if has("file.path") {
        Domain::File
    } else if has("destination") || has("source") {
        Domain::Network
    } else if has("process.executable") {
        Domain::Process
    } else {
        Domain::Unknown
    };
    // Looked up only where it decides, and once (a field a record lacks costs a search
    // of every way of spelling its path).
    let direction = std::cell::OnceCell::new();
    let by_direction = || {
        *direction.get_or_init(|| {
            let d = text(v, "network.direction").map(str::to_ascii_lowercase);
            match d.as_deref() {
                Some("inbound" | "ingress") => Some(Class::NetAccept),
                Some("outbound" | "egress") => Some(Class::NetConnect),
                _ => None,
            }
        })
    };
    let class = text(v, "event.action")
        .and_then(|a| action_class(a, domain))
        .or_else(|| match domain {
            Domain::File => types().find_map(|t| match t {
                "creation" => Some(Class::FileCreate),
                "deletion" => Some(Class::FileDelete),
                "change" => Some(Class::FileWrite),
                "access" => Some(Class::FileRead),
                _ => None,
            }),
            Domain::Network => by_direction(),
            Domain::Process => types().any(|t| t == "start").then_some(Class::ProcessExec),
            Domain::Unknown => None,
        });
    let Some(mut class) = class else {
        return Ok(None);
    };
    // `connection`-like words with an explicit direction: the direction decides.
    if class.is_network() {
        class = by_direction().unwrap_or(class);
    }
    let pid = pid(v, "process.pid")?;
    let claim = match class {
        Class::ProcessExec => path_claim(
            class,
            text(v, "process.executable").or(text(v, "process.name")),
            "process.executable",
        )?,
        c if c.is_network() => {
            let side = |s: &str| -> Result<HostPort, String> {
                let (ip, name) = endpoint_host(v, s, &["address", "domain"]);
                Ok((ip, name, port(v, &format!("{s}.port"))?))
            };
            let (cip, cname, cport) = side("source")?;
            let (sip, sname, sport) = side("destination")?;
            let (peer_host, peer_service) = if c == Class::NetConnect {
                (sname, text(v, "service.target.name"))
            } else {
                (cname, text(v, "service.origin.name"))
            };
            let claim = Claim {
                client_ip: cip,
                client_port: cport,
                server_ip: sip,
                server_port: sport,
                peer_host,
                peer_service: peer_service.map(str::to_string),
                ..Default::default()
            };
            some_peer(
                claim,
                class,
                "`destination` or `source` (ip, port, address)",
            )?
        }
        _ => path_claim(class, text(v, "file.path"), "file.path")?,
    };
    Ok(record(o, t, class, claim, pid))
}

fn ocsf(v: &Value, o: &Origin) -> Result<Parsed, String> {
    let t = match lookup(v, "time") {
        Some(_) => time_of(v, "time", time::TimeFormat::Auto)?,
        None => time_of(v, "time_dt", time::TimeFormat::Rfc3339)?,
    };
    let class_uid = integer(v, "class_uid")?.ok_or("`class_uid`")?;
    let activity = integer(v, "activity_id")?.ok_or("`activity_id`")?;
    let class = match (class_uid, activity) {
        (1001, 1) => Class::FileCreate,
        (1001, 2) => Class::FileRead,
        (1001, 3) => Class::FileWrite,
        (1001, 4) => Class::FileDelete,
        (1001, 5) => Class::FileRename,
        (1007, 1) => Class::ProcessExec,
        (4001, 1) => match integer(v, "connection_info.direction_id")? {
            Some(1) => Class::NetAccept,
            Some(2) => Class::NetConnect,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let pid = if class == Class::ProcessExec {
        match pid(v, "process.pid")? {
            Some(p) => Some(p),
            None => pid(v, "actor.process.pid")?,
        }
    } else {
        pid(v, "actor.process.pid")?
    };
    let claim = match class {
        Class::ProcessExec => path_claim(
            class,
            text(v, "process.file.path").or(text(v, "process.name")),
            "process.file.path",
        )?,
        Class::FileRename => {
            let old = text(v, "file.path").ok_or("`file.path` in a file.rename record")?;
            match text(v, "file_result.path") {
                Some(new) => Claim {
                    path: Some(normalize_path(new)),
                    old_path: Some(normalize_path(old)),
                    ..Default::default()
                },
                None => path_claim(class, Some(old), "file.path")?,
            }
        }
        c if c.is_network() => {
            let end = |s: &str| -> Result<Peer, String> {
                let (ip, name) = endpoint_host(v, s, &["hostname"]);
                Ok(Peer {
                    ip,
                    host: name,
                    port: port(v, &format!("{s}.port"))?,
                    service: text(v, &format!("{s}.svc_name")).map(str::to_string),
                    local_port: None,
                })
            };
            let (src, dst) = (end("src_endpoint")?, end("dst_endpoint")?);
            let (peer, local) = if c == Class::NetConnect {
                (dst, src)
            } else {
                (src, dst)
            };
            let mut claim = network_claim(
                c,
                Peer {
                    local_port: local.port,
                    ..peer
                },
            );
            if c == Class::NetConnect {
                claim.client_ip = local.ip;
            } else {
                claim.server_ip = local.ip;
            }
            some_peer(
                claim,
                class,
                "`dst_endpoint` or `src_endpoint` (ip, port, hostname, svc_name)",
            )?
        }
        _ => path_claim(class, text(v, "file.path"), "file.path")?,
    };
    Ok(record(o, t, class, claim, pid))
}

fn custom(m: &CustomMapping, v: &Value, o: &Origin) -> Result<Parsed, String> {
    let t = time_of(v, &m.time_field, m.time_format)?;
    let action = match lookup(v, &m.action_field) {
        Some(Value::String(s)) => s.to_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(format!(
                "`{}` (the action) to be a string, found {}",
                m.action_field,
                kind(other)
            ))
        }
        None => return Err(format!("the action in `{}`", m.action_field)),
    };
    let Some(&class) = m.classes.get(&action) else {
        return Ok(None);
    };
    let f = &m.fields;
    let get = |field: &Option<String>| field.as_deref().and_then(|p| text(v, p));
    let pid = match &f.pid {
        Some(p) => pid(v, p)?,
        None => None,
    };
    let claim = if class.is_network() {
        let mut peer = Peer::default();
        if let Some(a) = get(&f.peer_address) {
            (peer.ip, peer.host, peer.port) = address(a)?;
        }
        if let Some(h) = get(&f.peer_host) {
            (peer.ip, peer.host) = host(h);
        }
        if let Some(p) = &f.peer_port {
            peer.port = port(v, p)?.or(peer.port);
        }
        if let Some(p) = &f.local_port {
            peer.local_port = port(v, p)?;
        }
        peer.service = get(&f.peer_service).map(str::to_string);
        some_peer(
            network_claim(class, peer),
            class,
            "the peer (fields peer_address, peer_host, peer_port, peer_service)",
        )?
    } else {
        let what = f.path.as_deref().unwrap_or("[fields] path");
        let mut c = path_claim(class, get(&f.path), what)?;
        if class == Class::FileRename {
            c.old_path = get(&f.old_path).map(normalize_path);
        }
        c
    };
    Ok(record(o, t, class, claim, pid))
}

/// A logfmt line as a JSON object of strings (keys as written, dots included; a key
/// without `=` is `"true"`). `Err` says what was expected.
pub fn logfmt<'a>(line: &'a str, arena: &'a Bump) -> Result<Value<'a>, String> {
    let mut o = bumpalo::collections::Vec::new_in(arena);
    let b = line.trim_end_matches(['\r', '\n']);
    let mut it = b.char_indices().peekable();
    let expected =
        |what: &str, at: usize| format!("logfmt key=value pairs ({what} at column {})", at + 1);
    loop {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = it.peek() else { break };
        while it
            .next_if(|(_, c)| !c.is_whitespace() && *c != '=' && *c != '"')
            .is_some()
        {}
        let end = it.peek().map_or(b.len(), |(i, _)| *i);
        if end == start {
            return Err(expected("a key", start));
        }
        let key = &b[start..end];
        let value = match it.peek() {
            Some((_, '=')) => {
                it.next();
                match it.peek() {
                    Some(&(q, '"')) => {
                        it.next();
                        let mut v = bumpalo::collections::String::new_in(arena);
                        loop {
                            match it.next() {
                                Some((_, '"')) => break,
                                Some((_, '\\')) => match it.next() {
                                    Some((_, 'n')) => v.push('\n'),
                                    Some((_, 't')) => v.push('\t'),
                                    Some((_, c)) => v.push(c),
                                    None => return Err(expected("a closing quote", q)),
                                },
                                Some((_, c)) => v.push(c),
                                None => return Err(expected("a closing quote", q)),
                            }
                        }
                        if let Some(&(i, c)) = it.peek() {
                            if !c.is_whitespace() {
                                return Err(expected("a space after the quoted value", i));
                            }
                        }
                        v.into_bump_str()
                    }
                    _ => {
                        let vs = it.peek().map_or(b.len(), |(i, _)| *i);
                        while it.next_if(|(_, c)| !c.is_whitespace()).is_some() {}
                        let ve = it.peek().map_or(b.len(), |(i, _)| *i);
                        &b[vs..ve]
                    }
                }
            }
            Some(&(i, '"')) => return Err(expected("`=` before a quote", i)),
            _ => "true",
        };
        o.push((key, Value::String(value)));
    }
    if o.is_empty() {
        return Err("logfmt key=value pairs, found none".into());
    }
    Ok(Value::Object(Object(o.into_bump_slice())))
}

/// Guess a log's mapping from its first record: ECS has `@timestamp`, OCSF has
/// `class_uid`. Reads from `r` up to that record and returns the bytes it read, to be
/// read again (so that a pipe loses nothing).
pub fn detect(name: &str, r: &mut dyn BufRead) -> Result<(Mapping, Vec<u8>), String> {
    let mut seen = Vec::new();
    let mut n = 0u64;
    loop {
        let start = seen.len();
        let got = Read::take(&mut *r, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut seen)
            .map_err(|e| format!("{name}: {e}"))?;
        if got == 0 {
            // Empty log: nothing to read, any mapping reads it.
            return Ok((Mapping::Ecs, seen));
        }
        n += 1;
        let line = String::from_utf8_lossy(&seen[start..]).into_owned();
        if line.trim().is_empty() {
            continue;
        }
        let arena = Bump::new();
        let v = Value::parse(&line, &arena).map_err(|e| {
            format!(
                "{name}:{n}: cannot tell the log's format: expected a JSON object ({e}), found: {}",
                excerpt(line.trim())
            )
        })?;
        if lookup(&v, "@timestamp").is_some() || lookup(&v, "ecs.version").is_some() {
            return Ok((Mapping::Ecs, seen));
        }
        if lookup(&v, "class_uid").is_some() {
            return Ok((Mapping::Ocsf, seen));
        }
        return Err(format!(
            "{name}:{n}: cannot tell the log's format: neither ECS (`@timestamp`) nor OCSF (`class_uid`); pass --mapping with a TOML mapping file (docs/analysis.md)"
        ));
    }
}

/// Longest line read (longer lines are malformed, and not held in memory).
pub const MAX_LINE: usize = 1 << 20;

/// A malformed line.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Malformed {
    pub file: String,
    pub line: u64,
    pub expected: String,
    pub excerpt: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: expected {}, found: {}",
            self.file, self.line, self.expected, self.excerpt
        )
    }
}

/// Counts for one log.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LogStats {
    pub service: String,
    pub file: String,
    pub mapping: String,
    pub lines: u64,
    pub records: u64,
    /// Well-formed records about actions the kernel does not see.
    pub ignored: u64,
    pub malformed: u64,
    /// The first malformed lines (at most 5), with --skip-malformed.
    pub malformed_examples: Vec<Malformed>,
}

/// One audit log, read line by line.
pub struct AuditLog {
    parts: Parts,
    reader: Box<dyn BufRead>,
    /// Bytes read so far, when the log is a regular file that findings can read again.
    offset: Option<u64>,
    buf: Vec<u8>,
    pub stats: LogStats,
    skip_malformed: bool,
}

impl AuditLog {
    /// Open a log file; without a mapping, detect it from the first record (read once:
    /// the file may be a pipe).
    pub fn open(
        service: &str,
        path: &Path,
        mapping: Option<Mapping>,
        skip_malformed: bool,
    ) -> Result<AuditLog, String> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        let regular = f.metadata().is_ok_and(|m| m.is_file());
        let mut r = BufReader::with_capacity(1 << 16, f);
        let (mapping, reader): (Mapping, Box<dyn BufRead>) = match mapping {
            Some(m) => (m, Box::new(r)),
            None => {
                let (m, seen) = detect(&name, &mut r)?;
                (m, Box::new(std::io::Cursor::new(seen).chain(r)))
            }
        };
        let mut log = Self::from_reader(service, &name, reader, mapping, skip_malformed);
        log.offset = regular.then_some(0);
        Ok(log)
    }

    pub fn from_reader(
        service: &str,
        name: &str,
        reader: Box<dyn BufRead>,
        mapping: Mapping,
        skip_malformed: bool,
    ) -> AuditLog {
        AuditLog {
            stats: LogStats {
                service: service.into(),
                file: name.into(),
                mapping: mapping.name(),
                ..Default::default()
            },
            parts: Parts {
                service: service.into(),
                file: name.into(),
                mapping,
                arena: Bump::new(),
            },
            reader,
            offset: None,
            buf: Vec::new(),
            skip_malformed,
        }
    }

    fn malformed(&mut self, expected: String, text: &str) -> Result<(), Malformed> {
        let m = Malformed {
            file: self.parts.file.to_string(),
            line: self.stats.lines,
            expected,
            excerpt: excerpt(text.trim()),
        };
        if !self.skip_malformed {
            return Err(m);
        }
        self.stats.malformed += 1;
        if self.stats.malformed_examples.len() < 5 {
            self.stats.malformed_examples.push(m);
        }
        Ok(())
    }

    /// The next record; `Ok(None)` at the end of the log.
    pub fn next_record(&mut self) -> Result<Option<Record>, Malformed> {
        loop {
            // A whole line in the reader's buffer is parsed where it is (most lines);
            // one that is not, or is too long, is read the slow way.
            let avail = match self.reader.fill_buf() {
                Ok(a) => a,
                Err(e) => return Err(self.read_error(e)),
            };
            if avail.is_empty() {
                return Ok(None);
            }
            let outcome = match memchr::memchr(b'\n', avail).filter(|&n| n < MAX_LINE) {
                Some(n) => {
                    let at = self.offset;
                    if let Some(o) = &mut self.offset {
                        *o += n as u64 + 1;
                    }
                    self.stats.lines += 1;
                    let outcome = self.parts.line(&avail[..n], at, &mut self.stats);
                    self.reader.consume(n + 1);
                    outcome
                }
                None => match self.next_line_slowly()? {
                    Some(outcome) => outcome,
                    None => return Ok(None),
                },
            };
            match outcome {
                Outcome::Record(r) => return Ok(Some(r)),
                Outcome::Skip => {}
                Outcome::Malformed(expected, text) => self.malformed(expected, &text)?,
            }
        }
    }

    /// The log could not be read after the lines read so far.
    fn read_error(&self, e: std::io::Error) -> Malformed {
        Malformed {
            file: self.parts.file.to_string(),
            line: self.stats.lines + 1,
            expected: format!("a readable file ({e})"),
            excerpt: String::new(),
        }
    }

    /// The next line when it is not whole in the reader's buffer (copied into `buf`),
    /// or is too long (skipped: malformed); `None` at the end of the log.
    fn next_line_slowly(&mut self) -> Result<Option<Outcome>, Malformed> {
        self.buf.clear();
        let got =
            Read::take(&mut self.reader, MAX_LINE as u64 + 1).read_until(b'\n', &mut self.buf);
        let got = match got {
            Ok(n) => n,
            Err(e) => return Err(self.read_error(e)),
        };
        if got == 0 {
            return Ok(None);
        }
        let at = self.offset;
        if let Some(o) = &mut self.offset {
            *o += got as u64;
        }
        self.stats.lines += 1;
        if self.buf.len() > MAX_LINE {
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let got = Read::take(&mut self.reader, 1 << 16).read_until(b'\n', &mut rest);
                if let (Some(o), Ok(n)) = (&mut self.offset, &got) {
                    *o += *n as u64;
                }
                match got {
                    Ok(0) => break,
                    Ok(_) if rest.ends_with(b"\n") => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let head = String::from_utf8_lossy(&self.buf[..200]).into_owned();
            let expected = format!("a line of at most {MAX_LINE} bytes");
            return Ok(Some(Outcome::Malformed(expected, head)));
        }
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        Ok(Some(self.parts.line(line, at, &mut self.stats)))
    }
}

/// What parsing a log's lines needs, apart from its reader (a line may borrow the
/// reader's buffer while it is parsed).
struct Parts {
    service: Arc<str>,
    file: Arc<str>,
    mapping: Mapping,
    /// The current line's parsed objects (reset for every line).
    arena: Bump,
}

impl Parts {
    /// One line (without its `\n`) that starts at byte `at` of the log, if known; its
    /// number is `stats.lines`.
    fn line(&mut self, line: &[u8], at: Option<u64>, stats: &mut LogStats) -> Outcome {
        let line = match utf8(line) {
            Some(l) => l,
            None => {
                let lossy = String::from_utf8_lossy(line).into_owned();
                return Outcome::Malformed("UTF-8 text".into(), lossy);
            }
        };
        if is_blank(line) {
            return Outcome::Skip;
        }
        self.arena.reset();
        let origin = Origin {
            service: &self.service,
            file: &self.file,
            line: stats.lines,
            text: trim_end(line),
            at,
            arena: &self.arena,
        };
        match parse_line(&self.mapping, &origin) {
            Ok(Some(r)) => {
                stats.records += 1;
                Outcome::Record(r)
            }
            Ok(None) => {
                stats.ignored += 1;
                Outcome::Skip
            }
            Err(expected) => Outcome::Malformed(expected, line.to_string()),
        }
    }
}

/// What a line was.
enum Outcome {
    Record(Record),
    /// Blank, or a record of something the kernel does not see.
    Skip,
    /// What was expected, and the line.
    Malformed(String, String),
}

/// The bytes as text, if they are UTF-8 (ASCII, as most log lines are, is checked
/// eight bytes at a time).
fn utf8(b: &[u8]) -> Option<&str> {
    if is_ascii(b) {
        // SAFETY: ASCII is UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).ok()
}

/// Whether every byte is ASCII: the words ORed together, one test at the end (the
/// standard library's test, and `from_utf8`, cost two instructions a byte).
fn is_ascii(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    let mut any = 0u64;
    for w in &mut words {
        any |= u64::from_le_bytes(w.try_into().expect("eight bytes"));
    }
    any & 0x8080_8080_8080_8080 == 0 && words.remainder().is_ascii()
}

/// Whether a line is only white space (`str::trim` would leave nothing).
fn is_blank(line: &str) -> bool {
    match line.as_bytes().first() {
        Some(b) if b.is_ascii_graphic() => false,
        _ => line.trim().is_empty(),
    }
}

/// The line without the white space at its end (`\r`, blanks), as `str::trim_end`.
fn trim_end(line: &str) -> &str {
    match line.as_bytes().last() {
        Some(b) if b.is_ascii_graphic() => line,
        _ => line.trim_end(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(m: &Mapping, v: serde_json::Value) -> Result<Option<Record>, String> {
        let text = v.to_string();
        let o = Origin {
            service: &"svc".into(),
            file: &"log".into(),
            line: 1,
            text: &text,
            at: None,
            arena: &Bump::new(),
        };
        parse_line(m, &o)
    }

    const TS: &str = "2026-11-28T04:00:00.5Z";
    const T: i64 = 1_795_838_400_500_000_000;

    #[test]
    fn ecs_file_records() {
        let r = parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event": {"action": "order-file-deleted", "category": ["file"]},
                   "file": {"path": "/srv/x/../orders/1.json"}, "process": {"pid": 42}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.time_ns, r.class, r.claim.path.as_deref(), r.pid),
            (T, Class::FileDelete, Some("/srv/orders/1.json"), Some(42))
        );
        // Flat dotted keys, and event.type when the action says nothing.
        let r = parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event.category": "file", "event.type": ["creation"],
                   "file.path": "/a"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.class, Class::FileCreate);
        // Not something the kernel sees.
        assert!(parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event": {"action": "user-login"}})
        )
        .unwrap()
        .is_none());
        // A file action without its file.
        let e = parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event": {"action": "write", "category": "file"}}),
        )
        .unwrap_err();
        assert!(e.contains("file.path"), "{e}");
    }

    #[test]
    fn ecs_network_records() {
        let r = parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event": {"action": "connection", "category": ["network"]},
                   "network": {"direction": "outbound"},
                   "destination": {"ip": "::ffff:127.0.0.1", "port": 8081},
                   "service": {"target": {"name": "orders"}}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.class, Class::NetConnect);
        assert_eq!(r.claim.server_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(r.claim.server_port, Some(8081));
        assert_eq!(r.claim.peer_service.as_deref(), Some("orders"));
        let r = parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event": {"action": "request-served"},
                   "source": {"address": "gateway"}, "destination": {"port": "8081"}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.class, Class::NetAccept);
        assert_eq!(r.claim.peer_host.as_deref(), Some("gateway"));
        assert_eq!(r.claim.server_port, Some(8081));
        let e = parse(
            &Mapping::Ecs,
            json!({"@timestamp": TS, "event.action": "connect", "event.category": "network",
                   "destination.port": 70000}),
        )
        .unwrap_err();
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn ocsf_records() {
        let r = parse(
            &Mapping::Ocsf,
            json!({"time": 1_795_838_400_500i64, "class_uid": 1001, "activity_id": 5,
                   "file": {"path": "/a"}, "file_result": {"path": "/b"},
                   "actor": {"process": {"pid": 7}}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                r.time_ns,
                r.class,
                r.claim.path.as_deref(),
                r.claim.old_path.as_deref(),
                r.pid
            ),
            (T, Class::FileRename, Some("/b"), Some("/a"), Some(7))
        );
        let r = parse(
            &Mapping::Ocsf,
            json!({"time": TS, "class_uid": 4001, "activity_id": 1,
                   "connection_info": {"direction_id": 1},
                   "src_endpoint": {"ip": "10.0.0.1", "port": 5000},
                   "dst_endpoint": {"port": 80}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.class, Class::NetAccept);
        assert_eq!(
            (r.claim.client_ip, r.claim.client_port, r.claim.server_port),
            (Some("10.0.0.1".parse().unwrap()), Some(5000), Some(80))
        );
        assert!(parse(
            &Mapping::Ocsf,
            json!({"time": TS, "class_uid": 3002, "activity_id": 1})
        )
        .unwrap()
        .is_none());
        let e = parse(&Mapping::Ocsf, json!({"class_uid": 1001, "activity_id": 1})).unwrap_err();
        assert!(e.contains("time"), "{e}");
    }

    fn parse_text(m: &Mapping, text: &str) -> Result<Option<Record>, String> {
        let o = Origin {
            service: &"svc".into(),
            file: &"log".into(),
            line: 1,
            text,
            at: None,
            arena: &Bump::new(),
        };
        parse_line(m, &o)
    }

    #[test]
    fn logfmt_lines() {
        let arena = Bump::new();
        let v = logfmt(r#"ts=2026-11-28T04:00:00.5Z level=info msg="order \"7\" saved\n" file.path=/o/1 dry_run pid=9 empty="""#, &arena).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&v.to_string()).unwrap(),
            json!({"ts": TS, "level": "info", "msg": "order \"7\" saved\n", "file.path": "/o/1", "dry_run": "true", "pid": "9", "empty": ""})
        );
        for (bad, want) in [
            (r#"msg="never closed"#, "a closing quote at column 5"),
            (r#"a=1 ="x""#, "a key at column 5"),
            (r#"a="x"b=2"#, "a space after the quoted value at column 6"),
            (r#"a"x""#, "`=` before a quote at column 2"),
            ("   ", "found none"),
        ] {
            let e = logfmt(bad, &arena).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let m = CustomMapping::parse(
            Path::new("m.toml"),
            "format = \"logfmt\"\n[time]\nfield = \"ts\"\n[action]\nfield = \"event\"\n\
             [action.classes]\n\"file.write\" = [\"saved\"]\n[fields]\npath = \"file.path\"\npid = \"pid\"\n",
        )
        .unwrap();
        let m = Mapping::Custom(Arc::new(m));
        let r = parse_text(&m, &format!("ts={TS} event=saved file.path=/o/./1 pid=9"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.time_ns, r.class, r.claim.path.as_deref(), r.pid),
            (T, Class::FileWrite, Some("/o/1"), Some(9))
        );
        // Epoch time written as text, with the default (auto) time format.
        let r = parse_text(&m, "ts=1795838400.5 event=saved file.path=/o/1")
            .unwrap()
            .unwrap();
        assert_eq!(r.time_ns, T);
        assert!(parse_text(&m, "ts=1795838400 event=other")
            .unwrap()
            .is_none());
        let e = parse_text(&m, "ts=1795838400 event=saved file.path=\"/o").unwrap_err();
        assert!(e.contains("closing quote"), "{e}");
        let e = CustomMapping::parse(
            Path::new("m.toml"),
            "format = \"csv\"\n[time]\nfield = \"t\"\n[action]\nfield = \"a\"\n[action.classes]\n\"file.read\" = [\"r\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("csv"), "{e}");
    }

    #[test]
    fn custom_mapping() {
        let m = CustomMapping::parse(
            Path::new("m.toml"),
            r#"
[time]
field = "ts"
format = "epoch_ms"
[action]
field = "op"
[action.classes]
"file.write" = ["Order.Saved"]
"network.connect" = ["call"]
[fields]
path = "d.file"
peer_address = "peer"
peer_service = "svc"
pid = "pid"
"#,
        )
        .unwrap();
        let m = Mapping::Custom(Arc::new(m));
        let r = parse(
            &m,
            json!({"ts": 1_795_838_400_500i64, "op": "order.saved", "d": {"file": "/o/1"}, "pid": "9"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.time_ns, r.class, r.claim.path.as_deref(), r.pid),
            (T, Class::FileWrite, Some("/o/1"), Some(9))
        );
        let r = parse(
            &m,
            json!({"ts": 1_795_838_400_500i64, "op": "call", "peer": "[::1]:9000"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.claim.server_ip, Some("::1".parse().unwrap()));
        assert_eq!(r.claim.server_port, Some(9000));
        assert!(parse(&m, json!({"ts": 1, "op": "other"}))
            .unwrap()
            .is_none());
        let e = parse(&m, json!({"ts": "yesterday", "op": "call"})).unwrap_err();
        assert!(e.contains("`ts` to be epoch milliseconds"), "{e}");

        for (bad, want) in [
            ("[time]\nfield='t'\n[action]\nfield='a'\n[action.classes]\n'file.wrote'=['x']\n", "unknown class `file.wrote`"),
            ("[time]\nfield='t'\n[action]\nfield='a'\n[action.classes]\n", "maps no value"),
            ("[time]\nfield='t'\nformat='epoch_h'\n[action]\nfield='a'\n[action.classes]\n'file.read'=['r']\n", "epoch_h"),
            ("[time]\nfield='t'\n[action]\nfield='a'\n[action.classes]\n'file.read'=['r']\n[fields]\npth='x'\n", "pth"),
        ] {
            let e = CustomMapping::parse(Path::new("m.toml"), bad).unwrap_err();
            assert!(e.contains("m.toml") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn log_reader_names_file_and_line_or_counts() {
        let text = format!(
            "{}\n\nnot json\n{}\n\u{ff}\n",
            json!({"@timestamp": TS, "event.action": "write", "file.path": "/a"}),
            json!({"@timestamp": TS, "event.action": "login"})
        );
        let mut bytes = text.into_bytes();
        let n = bytes.len();
        bytes[n - 2] = 0xff; // invalid UTF-8 on line 5
        let open = |skip| {
            AuditLog::from_reader(
                "svc",
                "audit.jsonl",
                Box::new(std::io::Cursor::new(bytes.clone())),
                Mapping::Ecs,
                skip,
            )
        };
        let mut log = open(false);
        assert!(log.next_record().unwrap().is_some());
        let e = log.next_record().unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("audit.jsonl", 3));
        assert!(
            e.to_string()
                .starts_with("audit.jsonl:3: expected a JSON object"),
            "{e}"
        );
        let mut log = open(true);
        let mut n = 0;
        while log.next_record().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 1);
        assert_eq!(
            (
                log.stats.lines,
                log.stats.records,
                log.stats.ignored,
                log.stats.malformed
            ),
            (5, 1, 1, 2)
        );
        assert_eq!(log.stats.malformed_examples[1].line, 5);
    }

    /// Remembered action texts give the words' answer, for each domain, in any order
    /// and past evictions (more texts than are kept).
    #[test]
    fn remembered_actions_mean_what_their_words_mean() {
        let texts = [
            "order-created",
            "order-moved",
            "order-deleted",
            "login",
            "file_write",
            "CONNECT",
            "served",
            "start",
            "Started",
            "call-api",
            "x",
            "",
            "read-write",
            "proc-spawn",
            "update",
            "order-file-deleted",
            "cache purge",
            "renamed!",
            "new_connection",
            "accept",
            "modified",
            "loaded",
            "outbound",
            "egress-call",
        ];
        let domains = [
            Domain::Unknown,
            Domain::File,
            Domain::Network,
            Domain::Process,
        ];
        for round in 0..3 {
            for (i, t) in texts.iter().enumerate() {
                for (j, d) in domains.iter().enumerate() {
                    let (t, d) = if round == 1 {
                        (texts[(i * 7 + j) % texts.len()], domains[(i + j) % 4])
                    } else {
                        (*t, *d)
                    };
                    assert_eq!(action_class(t, d), action_words(t, d), "{t:?}");
                }
            }
        }
        assert_eq!(
            action_class("order-created", Domain::File),
            Some(Class::FileCreate)
        );
        assert_eq!(action_class("order-created", Domain::Network), None);
    }

    /// Lines are parsed in the reader's buffer when whole there, and read the slow way
    /// when they straddle its end: every line of a log many buffers long, of changing
    /// lengths, some with CRLF ends and some not UTF-8, gives the same records, line
    /// numbers and offsets as a line-by-line reading.
    #[test]
    fn lines_across_read_buffers_are_read_whole() {
        let mut text = Vec::new();
        let mut want = Vec::new();
        for i in 0..6000u64 {
            let pad = "p".repeat((i * 37 % 300) as usize);
            let start = text.len() as u64;
            match i % 7 {
                0 => text.extend_from_slice(b"   \r\n"),
                3 => text.extend_from_slice(b"{\"\xff\": 1}\n"),
                _ => {
                    let line =
                        json!({"@timestamp": TS, "event.action": "write", "file.path": format!("/f{i}"), "pad": pad})
                            .to_string();
                    text.extend_from_slice(line.as_bytes());
                    text.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
                    want.push((i + 1, start, line));
                }
            }
        }
        assert!(text.len() > 10 << 16, "{} bytes: many buffers", text.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &text).unwrap();
        let mut log = AuditLog::open("svc", &path, None, true).unwrap();
        let mut seen = Vec::new();
        while let Some(r) = log.next_record().unwrap() {
            let Excerpt::At { offset, len, .. } = r.excerpt else {
                panic!("{:?}", r.excerpt);
            };
            let line = &text[offset as usize..(offset + len as u64) as usize];
            assert_eq!(
                r.claim.path.as_deref(),
                Some(format!("/f{}", r.line - 1).as_str())
            );
            seen.push((r.line, offset, String::from_utf8(line.to_vec()).unwrap()));
        }
        assert_eq!(seen.len(), want.len());
        assert!(
            seen == want,
            "the records differ from a line-by-line reading"
        );
        assert_eq!(
            (log.stats.lines, log.stats.records, log.stats.malformed),
            (
                6000,
                want.len() as u64,
                (0..6000).filter(|i| i % 7 == 3).count() as u64
            )
        );
    }

    /// A record of a regular file knows where its line is, past an overlong line, a
    /// malformed one and what format detection read; a pipe's record keeps its line.
    #[test]
    fn records_of_files_know_where_their_line_is() {
        let rec = |p: &str| json!({"@timestamp": TS, "event.action": "write", "file.path": p});
        let long = format!("{{\"x\": \"{}\"}}", "y".repeat(MAX_LINE + 10));
        let lines = [
            rec("/a").to_string(),
            long,
            "  not json".to_string(),
            format!("  {}   ", rec("/b")),
            String::new(),
            rec("/c").to_string(),
        ];
        let text = lines.join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, &text).unwrap();
        for mapping in [None, Some(Mapping::Ecs)] {
            let mut log = AuditLog::open("svc", &path, mapping, true).unwrap();
            let mut seen = Vec::new();
            while let Some(r) = log.next_record().unwrap() {
                let Excerpt::At { offset, len, hash } = r.excerpt else {
                    panic!("a regular file's record keeps {:?}", r.excerpt);
                };
                let line = &text[offset as usize..offset as usize + len as usize];
                assert_eq!(hash, Excerpt::line_hash(line));
                seen.push((r.line, line.to_string()));
            }
            assert_eq!(
                seen,
                [
                    (1, lines[0].clone()),
                    (4, lines[3].trim_end().to_string()),
                    (6, lines[5].clone())
                ]
            );
        }
        let mut log = AuditLog::from_reader(
            "svc",
            "pipe",
            Box::new(std::io::Cursor::new(text.clone().into_bytes())),
            Mapping::Ecs,
            true,
        );
        let r = log.next_record().unwrap().unwrap();
        assert_eq!(r.excerpt, Excerpt::Text(lines[0].clone()));
    }
}
