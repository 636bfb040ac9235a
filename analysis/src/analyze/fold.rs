//! Folding kernel events into actions (docs/analysis.md, "Actions").
//!
//! - A file opened (Open, or Acquire of a descriptor it did not open) and closed by one
//!   process is one action from its first open to its last close, all descriptors of that
//!   process on that path together (dup'ed descriptors are one open; a descriptor dup'ed
//!   before the original was closed shows up as an Acquire at its first read or write, so
//!   a closed file is held for [`HOLD_NS`] and continued by an Acquire of the same path
//!   in that process, or by a Close of another of its descriptors): `file.create` when
//!   the open created the file, else `file.write` when bytes were written through it or
//!   it was opened with O_TRUNC for writing, else `file.read` when bytes were read; an
//!   open that neither read nor wrote is no action.
//! - Rename: `file.rename` (new and old name). Delete, Rmdir: `file.delete`. Mkdir, Link,
//!   Symlink: `file.create` of the new name. Truncate: `file.write`.
//! - Launch (exec): `process.exec` of the executable.
//! - TCP Open: `network.connect` (the process connected) or `network.accept`.
//! - Failed syscalls, Chmod/Chown, Fork, Terminate, UDP and unix sockets: no action.

use super::{
    rows::{Names, Row},
    Action, Class, Conn,
};
use hashbrown::{hash_table::Entry, Equivalent, HashTable};
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;
use std::{collections::VecDeque, net::IpAddr, sync::Arc};
use trail::{
    event::{class, direction, status},
    Event,
};

/// The trail columns folding (and the analysis around it) reads; the others are not
/// decoded.
pub const COLUMNS: &[&str] = &[
    "time",
    "class_uid",
    "activity_name",
    "status_id",
    "actor.process.pid",
    "actor.process.name",
    "actor.process.file.path",
    "process.pid",
    "process.file.path",
    "file.path",
    "file_result.path",
    "src_endpoint",
    "dst_endpoint",
    "connection_info",
    "groundtruth.service",
    "groundtruth.flags",
    "groundtruth.created",
    "groundtruth.bytes_read",
    "groundtruth.bytes_written",
    "groundtruth.connection_id",
];

/// Of [`COLUMNS`], those read as dictionaries (a row's string is not copied): the
/// trail dictionary-encodes them (`trail::pq::DICTIONARY_COLUMNS`, with others).
pub const DICTIONARY_COLUMNS: &[&str] = &["activity_name", "actor.process.file.path"];

/// How long a closed file waits for an Acquire that continues it.
pub const HOLD_NS: i64 = 500_000_000;

const O_ACCMODE: u64 = 0o3;
const O_TRUNC: u64 = 0o1000;

struct Group {
    open: u32,
    start: i64,
    end: i64,
    created: bool,
    truncated: bool,
    read: u64,
    written: u64,
    service: Arc<str>,
    comm: Arc<str>,
    exe: Option<Arc<str>>,
}

/// Counts of what folding saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FoldStats {
    pub events: u64,
    pub actions: u64,
    /// Files still open when the trail ended (an action only if the open created it).
    pub open_at_end: u64,
}

type Key = (u32, String);

/// A [`Key`] borrowed from a row: hashes as the key does (a tuple hashes its fields in
/// order, a `&str` as its `str`), so maps are searched without copying the path.
#[derive(Hash)]
struct KeyRef<'a>(u32, &'a str);

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

#[derive(Default)]
pub struct Folder {
    /// Open files by (pid, path), found by [`Folder::key_hash`] (computed once a row).
    groups: HashTable<(Key, Group)>,
    /// Closed files held for HOLD_NS, and the order they were closed in.
    /// (key, group, hold number); found by the key's hash.
    closed: HashTable<(Key, Group, u64)>,
    /// (close time, key hash, hold number) in the order held.
    closed_order: VecDeque<(i64, u64, u64)>,
    holds: u64,
    out: VecDeque<Action>,
    last_ns: i64,
    names: Names,
    pub stats: FoldStats,
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok().map(|ip: IpAddr| ip.to_canonical())
}

impl Folder {
    pub fn new() -> Folder {
        Folder::default()
    }

    /// The next folded action, if one is complete.
    pub fn pop(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// The action [`Folder::pop`] would return.
    pub fn front(&self) -> Option<&Action> {
        self.out.front()
    }

    fn action(&mut self, e: &Row, class: Class, path: Option<&str>) -> Action {
        Action {
            service: self.names.get(e.service),
            class,
            start_ns: e.time_ns,
            end_ns: e.time_ns,
            pid: e.pid,
            comm: self.names.get(e.comm),
            exe: e.exe.map(|x| self.names.get(x)),
            path: path.map(str::to_string),
            old_path: None,
            conn: None,
            bytes_read: None,
            bytes_written: None,
        }
    }

    fn group(&mut self, e: &Row, open: u32, read: u64, written: u64) -> Group {
        Group {
            open,
            start: e.time_ns,
            end: e.time_ns,
            created: false,
            truncated: false,
            read,
            written,
            service: self.names.get(e.service),
            comm: self.names.get(e.comm),
            exe: e.exe.map(|x| self.names.get(x)),
        }
    }

    fn emit(&mut self, a: Action) {
        self.stats.actions += 1;
        self.out.push_back(a);
    }

    /// Emit held files closed before `now - HOLD_NS` (all of them with `i64::MAX`).
    fn release(&mut self, now: i64) {
        while let Some((t, _, _)) = self.closed_order.front() {
            if *t >= now.saturating_sub(HOLD_NS) {
                break;
            }
            let (_, hash, n) = self.closed_order.pop_front().unwrap();
            // Only if it is still the same hold (not continued, or closed again since).
            if let Ok(e) = self.closed.find_entry(hash, |c| c.2 == n) {
                let ((pid, path), g, _) = e.remove().0;
                self.close_group(pid, path, g);
            }
        }
    }

    fn key_hash(pid: u32, path: &str) -> u64 {
        FxBuildHasher.hash_one(KeyRef(pid, path))
    }

    /// Hold a closed file; `hash` is its key's [`Folder::key_hash`].
    fn hold(&mut self, hash: u64, key: Key, g: Group) {
        debug_assert_eq!(hash, Self::key_hash(key.0, &key.1));
        self.holds += 1;
        self.closed_order.push_back((g.end, hash, self.holds));
        match self
            .closed
            .entry(hash, |c| c.0 == key, |c| Self::key_hash(c.0 .0, &c.0 .1))
        {
            Entry::Occupied(mut e) => *e.get_mut() = (key, g, self.holds),
            Entry::Vacant(e) => {
                e.insert((key, g, self.holds));
            }
        }
    }

    /// Take the held file of `pid` at `path` (whose key hashes to `hash`), if any.
    fn unhold(&mut self, hash: u64, pid: u32, path: &str) -> Option<(Key, Group)> {
        let e = self
            .closed
            .find_entry(hash, |c| KeyRef(pid, path).equivalent(&c.0))
            .ok()?;
        let (k, g, _) = e.remove().0;
        Some((k, g))
    }

    fn close_group(&mut self, pid: u32, path: String, g: Group) {
        let end_ns = g.end;
        let class = if g.created {
            Class::FileCreate
        } else if g.written > 0 || g.truncated {
            Class::FileWrite
        } else if g.read > 0 {
            Class::FileRead
        } else {
            return;
        };
        self.emit(Action {
            service: g.service,
            class,
            start_ns: g.start,
            end_ns,
            pid,
            comm: g.comm,
            exe: g.exe,
            path: Some(path),
            old_path: None,
            conn: None,
            bytes_read: Some(g.read),
            bytes_written: Some(g.written),
        });
    }

    /// Fold one decoded event (see [`Folder::push_row`]).
    pub fn push(&mut self, e: &Event) {
        self.push_row(&Row::of(e));
    }

    /// Fold the next event of the trail.
    pub fn push_row(&mut self, e: &Row) {
        self.stats.events += 1;
        self.last_ns = self.last_ns.max(e.time_ns);
        self.release(e.time_ns);
        if e.status_id == status::FAILURE {
            return;
        }
        match (e.class_uid, e.activity) {
            (class::FILE_SYSTEM_ACTIVITY, "Open" | "Acquire") => {
                let Some(p) = e.file_path else {
                    return;
                };
                let flags = e.flags.unwrap_or(0);
                let h = Self::key_hash(e.pid, p);
                let same = |c: &(Key, Group)| KeyRef(e.pid, p).equivalent(&c.0);
                let rehash = |c: &(Key, Group)| Self::key_hash(c.0 .0, &c.0 .1);
                let g = match self.groups.find_entry(h, same) {
                    Ok(o) => &mut o.into_mut().1,
                    Err(_) => {
                        let (k, g) = match self.unhold(h, e.pid, p) {
                            // A descriptor dup'ed from the closed one: the same open.
                            Some((k, held)) if e.activity == "Acquire" => (k, held),
                            held => {
                                if let Some((k, held)) = held {
                                    self.close_group(k.0, k.1, held);
                                }
                                ((e.pid, p.to_string()), self.group(e, 0, 0, 0))
                            }
                        };
                        &mut self.groups.insert_unique(h, (k, g), rehash).into_mut().1
                    }
                };
                g.open += 1;
                g.created |= e.created;
                g.truncated |=
                    e.activity == "Open" && flags & O_TRUNC != 0 && flags & O_ACCMODE != 0;
            }
            (class::FILE_SYSTEM_ACTIVITY, "Close") => {
                let Some(p) = e.file_path else {
                    return;
                };
                let (r, w) = (e.bytes_read.unwrap_or(0), e.bytes_written.unwrap_or(0));
                let h = Self::key_hash(e.pid, p);
                let same = |c: &(Key, Group)| KeyRef(e.pid, p).equivalent(&c.0);
                if let Ok(mut o) = self.groups.find_entry(h, same) {
                    let g = &mut o.get_mut().1;
                    g.open = g.open.saturating_sub(1);
                    g.read += r;
                    g.written += w;
                    g.end = e.time_ns;
                    if g.open == 0 {
                        let ((k, g), _) = o.remove();
                        self.hold(h, k, g);
                    }
                } else if let Some((k, mut g)) = self.unhold(h, e.pid, p) {
                    // Another descriptor of a held file, never read or written through.
                    g.read += r;
                    g.written += w;
                    g.end = e.time_ns;
                    self.hold(h, k, g);
                } else {
                    // Opened before the recording started.
                    let g = self.group(e, 0, r, w);
                    self.close_group(e.pid, p.to_string(), g);
                }
            }
            (class::FILE_SYSTEM_ACTIVITY, "Rename") => {
                if let (Some(new), Some(old)) = (e.result_path, e.file_path) {
                    let mut a = self.action(e, Class::FileRename, Some(new));
                    a.old_path = Some(old.to_string());
                    self.emit(a);
                }
            }
            (class::FILE_SYSTEM_ACTIVITY, act) => {
                let (class, p) = match act {
                    "Delete" | "Rmdir" => (Class::FileDelete, e.file_path),
                    "Mkdir" => (Class::FileCreate, e.file_path),
                    "Link" | "Symlink" => (Class::FileCreate, e.result_path),
                    "Truncate" => (Class::FileWrite, e.file_path),
                    _ => return,
                };
                if p.is_some() {
                    let a = self.action(e, class, p);
                    self.emit(a);
                }
            }
            (class::PROCESS_ACTIVITY, "Launch") => {
                let Some((pid, Some(exe))) = e.process else {
                    return;
                };
                let mut a = self.action(e, Class::ProcessExec, Some(exe));
                a.pid = pid;
                self.emit(a);
            }
            (class::NETWORK_ACTIVITY, "Open") => {
                let Some(n) = &e.network else { return };
                if n.protocol != "tcp" {
                    return;
                }
                let class = match n.direction_id {
                    direction::OUTBOUND => Class::NetConnect,
                    direction::INBOUND => Class::NetAccept,
                    _ => return,
                };
                let (Some(s), Some(d)) = (n.src, n.dst) else {
                    return;
                };
                let (Some(sip), Some(dip)) = (ip(s.0), ip(d.0)) else {
                    return;
                };
                let mut a = self.action(e, class, None);
                a.conn = Some(Box::new(Conn {
                    client: (sip, s.1),
                    server: (dip, d.1),
                    connection_id: e.connection_id,
                }));
                self.emit(a);
            }
            _ => {}
        }
    }

    /// The end of the trail: files still open become actions if their open created
    /// them (nothing else about them is known yet).
    pub fn finish(&mut self) {
        self.release(i64::MAX);
        let mut open: Vec<_> = self.groups.drain().collect();
        open.sort_by_key(|(_, g)| g.start);
        self.stats.open_at_end = open.len() as u64;
        for ((pid, path), mut g) in open {
            g.written = 0;
            g.truncated = false;
            g.read = 0;
            g.end = self.last_ns;
            self.close_group(pid, path, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trail::{event::activity, Actor, Endpoint, Extra, FileRef, Network};

    fn ev(t: i64, class_uid: i32, name: &'static str, path: Option<&str>) -> Event {
        Event {
            time_ns: t,
            class_uid,
            activity_id: activity::OTHER,
            activity_name: name.into(),
            status_id: status::SUCCESS,
            actor: Actor {
                pid: 5,
                name: "svc".into(),
                ..Default::default()
            },
            file: path.map(|p| FileRef {
                path: Some(p.into()),
                ..Default::default()
            }),
            groundtruth: Extra {
                service: "s".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn open(t: i64, p: &str, flags: u64, created: bool) -> Event {
        let mut e = ev(t, class::FILE_SYSTEM_ACTIVITY, "Open", Some(p));
        e.groundtruth.flags = Some(flags);
        e.groundtruth.created = created;
        e
    }

    fn close(t: i64, p: &str, r: u64, w: u64) -> Event {
        let mut e = ev(t, class::FILE_SYSTEM_ACTIVITY, "Close", Some(p));
        e.groundtruth.bytes_read = Some(r);
        e.groundtruth.bytes_written = Some(w);
        e
    }

    fn fold(events: &[Event]) -> Vec<(Class, i64, i64, Option<String>)> {
        let mut f = Folder::new();
        for e in events {
            f.push(e);
        }
        f.finish();
        let mut v: Vec<_> = std::iter::from_fn(|| f.pop())
            .map(|a| (a.class, a.start_ns, a.end_ns, a.path))
            .collect();
        v.sort_by_key(|a| (a.1, a.2));
        v
    }

    #[test]
    fn opens_fold_to_one_action_per_open_file() {
        let s = |p: &str| Some(p.to_string());
        // `echo hi > a` in dash: open as 3, dup2 to 1, close 3, write through 1 (its
        // first use: Acquire), close 1.
        let got = fold(&[
            open(1, "/a", 0o1101, true),
            close(2, "/a", 0, 0),
            ev(3, class::FILE_SYSTEM_ACTIVITY, "Acquire", Some("/a")),
            close(4, "/a", 0, 3),
            open(5, "/b", 0o1, false),
            close(6, "/b", 0, 9),
            open(7, "/b", 0, false),
            close(8, "/b", 4, 0),
            open(9, "/c", 0, false),
            close(10, "/c", 0, 0),
            open(11, "/d", 0o1001, false),
            close(12, "/d", 0, 0),
            close(13, "/inherited", 0, 2),
            open(14, "/still-open", 0o101, true),
            open(15, "/still-open-2", 0o1, false),
        ]);
        assert_eq!(
            got,
            [
                (Class::FileCreate, 1, 4, s("/a")),
                (Class::FileWrite, 5, 6, s("/b")),
                (Class::FileRead, 7, 8, s("/b")),
                (Class::FileWrite, 11, 12, s("/d")),
                (Class::FileWrite, 13, 13, s("/inherited")),
                (Class::FileCreate, 14, 15, s("/still-open")),
            ]
        );
        // An Acquire long after the close is another action.
        let late = HOLD_NS + 10;
        let got = fold(&[
            open(1, "/e", 0o101, true),
            close(2, "/e", 0, 0),
            ev(late, class::FILE_SYSTEM_ACTIVITY, "Acquire", Some("/e")),
            close(late + 1, "/e", 0, 3),
        ]);
        assert_eq!(
            got,
            [
                (Class::FileCreate, 1, 2, s("/e")),
                (Class::FileWrite, late, late + 1, s("/e"))
            ]
        );
    }

    #[test]
    fn path_and_process_and_network_actions() {
        let mut rename = ev(1, class::FILE_SYSTEM_ACTIVITY, "Rename", Some("/old"));
        rename.file_result = Some(Box::new(FileRef {
            path: Some("/new".into()),
            ..Default::default()
        }));
        let mut failed = ev(2, class::FILE_SYSTEM_ACTIVITY, "Delete", Some("/x"));
        failed.status_id = status::FAILURE;
        let mut launch = ev(3, class::PROCESS_ACTIVITY, "Launch", None);
        launch.process = Some(Box::new(trail::TargetProcess {
            pid: 6,
            exe: Some("/usr/bin/cp".into()),
            ..Default::default()
        }));
        let mut conn = ev(4, class::NETWORK_ACTIVITY, "Open", None);
        conn.network = Some(Box::new(Network {
            src: Some(Endpoint {
                ip: "::ffff:127.0.0.1".into(),
                port: 40000,
            }),
            dst: Some(Endpoint {
                ip: "127.0.0.1".into(),
                port: 80,
            }),
            protocol_name: "tcp".into(),
            direction_id: direction::OUTBOUND,
            ..Default::default()
        }));
        let mut f = Folder::new();
        for e in [
            &rename,
            &failed,
            &ev(5, class::FILE_SYSTEM_ACTIVITY, "Delete", Some("/y")),
            &ev(6, class::FILE_SYSTEM_ACTIVITY, "Chmod", Some("/y")),
            &launch,
            &conn,
        ] {
            f.push(e);
        }
        let got: Vec<Action> = std::iter::from_fn(|| f.pop()).collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(
            (
                got[0].class,
                got[0].path.as_deref(),
                got[0].old_path.as_deref()
            ),
            (Class::FileRename, Some("/new"), Some("/old"))
        );
        assert_eq!(
            (got[1].class, got[1].path.as_deref()),
            (Class::FileDelete, Some("/y"))
        );
        assert_eq!(
            (got[2].class, got[2].pid, got[2].path.as_deref()),
            (Class::ProcessExec, 6, Some("/usr/bin/cp"))
        );
        let c = got[3].conn.as_ref().unwrap();
        assert_eq!(got[3].class, Class::NetConnect);
        assert_eq!(
            c.client,
            ("127.0.0.1".parse().unwrap(), 40000),
            "v4-mapped made canonical"
        );
        assert_eq!(c.server.1, 80);
    }
}
