//! One-to-one matching of kernel actions and audit records (docs/analysis.md,
//! "Matching").
//!
//! Items arrive in (roughly) time order from the kernel and from every log. Each item
//! is decided at its deadline, its time plus the window (actions: their end), once every
//! source has moved past that deadline plus a reorder tolerance: it takes the best
//! undecided candidate of the other side with the same service, a compatible class and
//! the same resource, within the window - a record with a pid prefers an action of that
//! pid, then the nearest in time, then the earliest. What is left becomes a finding: a
//! required action without a record is `unaudited`, a record without an action is
//! `unsupported`. A record is dropped at its decision; an action is kept one more
//! window (so an unsupported record can name the nearest kernel action): memory holds
//! about three windows of items, not the trail.

use super::{expect::Expectations, Action, Class, Excerpt, Record};
use crate::events::rfc3339;
use rustc_hash::{FxBuildHasher, FxHashMap as HashMap};
use serde::Serialize;
use std::{
    cell::Cell,
    collections::{BTreeMap, HashSet, VecDeque},
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::Arc,
};

/// Items can arrive this much out of time order (per source) and still be matched.
pub const REORDER_NS: i64 = 1_000_000_000;

/// How far ahead of its turn (in its queue run) an item is prefetched, then the index
/// entries it will look up, then the candidates they hold ([`Matcher::prefetch_run`]).
const PREFETCH_AHEAD: usize = 12;
const PREFETCH_KEYS: usize = 6;
const PREFETCH_CANDIDATES: usize = 2;
/// How far ahead of the items prefetched the queues themselves are.
const PREFETCH_QUEUE: usize = 16;

/// Fewest dropped-item index references that make a sweep worth its pass.
const SWEEP_MIN: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Matched,
    Decided,
}

struct ActionItem {
    a: Action,
    /// Index of its service in `Matcher::services`.
    svc: u32,
    keys: Keys,
    peer_service: Option<Arc<str>>,
    state: State,
}

/// An action in the near-miss index: what [`Matcher::nearest`] compares without
/// reading the action itself (an unsupported record compares every action of its
/// service and class held: reading each was seconds of cache misses when a log's
/// records were all unsupported).
struct Near {
    start: i64,
    end: i64,
    id: u64,
    svc: u32,
    class: Class,
    /// Whether its path is one no rule can require ([`Expectations::never`]); found out
    /// the first time `nearest` needs it.
    never: Cell<Option<bool>>,
}

struct RecordItem {
    r: Record,
    svc: u32,
    key: u64,
    state: State,
}

enum Item {
    Action(ActionItem),
    Record(RecordItem),
}

/// A skew histogram: |record time - action time| in log-linear buckets (16 per power
/// of two, so the median is exact to about 6%), plus the exact maximum.
#[derive(Clone, Debug, Default)]
pub struct Skew {
    buckets: BTreeMap<u32, u64>,
    pub count: u64,
    pub max_abs_ns: i64,
    /// Records written before the action began (negative skew).
    pub early: u64,
}

impl Skew {
    fn bucket(v: u64) -> u32 {
        if v < 16 {
            return v as u32;
        }
        let msb = 63 - v.leading_zeros();
        let sub = (v >> (msb - 4)) & 15;
        msb * 16 + sub as u32
    }

    fn value(b: u32) -> i64 {
        if b < 16 {
            return b as i64;
        }
        let (msb, sub) = (b / 16, (b % 16) as u64);
        // Middle of the bucket.
        (((16 + sub) << (msb - 4)) + (1u64 << (msb - 4)) / 2) as i64
    }

    pub fn add(&mut self, skew: i64) {
        let a = skew.unsigned_abs();
        *self.buckets.entry(Self::bucket(a)).or_default() += 1;
        self.count += 1;
        self.max_abs_ns = self.max_abs_ns.max(a.min(i64::MAX as u64) as i64);
        if skew < 0 {
            self.early += 1;
        }
    }

    /// Median |skew| (to about 6%).
    pub fn median_abs_ns(&self) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let half = self.count.div_ceil(2);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= half {
                return Some(Self::value(*b));
            }
        }
        None
    }
}

/// Audited / required counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Coverage {
    pub required: u64,
    pub audited: u64,
}

/// The kernel's side of a finding.
#[derive(Clone, Debug, Serialize)]
pub struct KernelEvidence {
    pub pid: u32,
    pub process: String,
    pub executable: Option<String>,
    pub start: String,
    pub end: String,
    pub path: Option<String>,
    pub old_path: Option<String>,
    pub client: Option<String>,
    pub server: Option<String>,
    pub peer_service: Option<String>,
    pub bytes_read: Option<u64>,
    pub bytes_written: Option<u64>,
    /// Network: the trail's `groundtruth.connection_id` of this end.
    pub connection_id: Option<u64>,
}

/// The audit log's side of a finding.
#[derive(Clone, Debug, Serialize)]
pub struct RecordEvidence {
    pub file: String,
    pub line: u64,
    pub pid: Option<u32>,
    pub text: String,
    /// Where `text` is to be read from the log (see [`Excerpt`]), until it has been.
    #[serde(skip)]
    pub text_at: Option<(u64, u32, u32)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `unaudited` or `unsupported`.
    pub kind: &'static str,
    pub service: String,
    pub class: Class,
    pub resource: String,
    pub time: String,
    pub time_ns: i64,
    /// unaudited: the expectation rule that required it.
    pub rule: Option<String>,
    pub evidence: Evidence,
}

/// What a finding rests on: the kernel's action (unaudited) or the audit record
/// (unsupported).
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub kernel: Option<KernelEvidence>,
    pub record: Option<RecordEvidence>,
    /// unsupported: the kernel action of that service and class nearest in time, if any
    /// (often the same file under another name).
    pub nearest_kernel_action: Option<String>,
}

/// Per service: what was matched and found.
#[derive(Clone, Debug, Default)]
pub struct ServiceOutcome {
    pub coverage: BTreeMap<Class, Coverage>,
    /// By rule index.
    pub rules: BTreeMap<usize, Coverage>,
    pub records: u64,
    pub records_matched: u64,
    pub actions: u64,
    pub skew: Skew,
}

#[derive(Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub services: BTreeMap<String, ServiceOutcome>,
    pub skew: Skew,
    /// Items that arrived after their deadline had passed by more than the reorder
    /// tolerance (matched against what was still held).
    pub late: u64,
    /// Most items held at once (the memory bound).
    pub peak_items: usize,
}

type Addr = (IpAddr, u16);
/// (pid mismatch, |skew|, the candidate's time, its id): lower is better.
type Score = (u8, i64, i64, u64);

fn key(parts: impl Hash) -> u64 {
    FxBuildHasher.hash_one(parts)
}

/// The ids under each index key, oldest first, in an open-addressing table of (key,
/// ids) entries of 16 bytes (linear probing; the keys are hashes already, so their high
/// bits place them). Most keys (a file's path) hold one id, kept in the entry; a key
/// with more holds a deque of them elsewhere. A lookup is one cache miss where a
/// `HashMap` of deques paid two (its control bytes, then an entry of 40 bytes), in a
/// table no larger (16 bytes at most half full: 32-64 bytes a key, where the map took
/// 47-94), and the entry of a key can be prefetched before it is
/// needed ([`Index::prefetch`]): deciding an item looks up the other side's ids seconds
/// after they were last touched.
#[derive(Default)]
struct Index {
    /// Entries keyed `EMPTY` are free; the length is zero or a power of two.
    entries: Vec<Entry>,
    len: usize,
    /// The ids of keys that have more than one, by [`Entry::ids`] & !`MANY`.
    many: Vec<VecDeque<u64>>,
    /// Unused deques of `many`.
    free: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    /// The key's one id, or `MANY` | the index of its deque in `Index::many`.
    ids: u64,
}

/// The key of a free entry; a real key of this value is stored as `EMPTY + 1` (the
/// ids of the two keys are then one list: every candidate is checked anyway).
const EMPTY: u64 = 0;
const FREE: Entry = Entry { key: EMPTY, ids: 0 };
/// Flags an entry's ids as a deque's index (item ids stay far below).
const MANY: u64 = 1 << 63;

/// Fewest entries of a table.
const MIN_ENTRIES: usize = 64;

impl Index {
    fn stored(k: u64) -> u64 {
        if k == EMPTY {
            EMPTY + 1
        } else {
            k
        }
    }

    /// Where the probe for `k` starts (`entries` is not empty).
    fn home(&self, k: u64) -> usize {
        (k >> (64 - self.entries.len().trailing_zeros())) as usize
    }

    /// The entry of `k`, or the free entry where it would go.
    fn find(&self, k: u64) -> usize {
        let mask = self.entries.len() - 1;
        let mut i = self.home(k);
        loop {
            let e = self.entries[i].key;
            if e == k || e == EMPTY {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The ids under `k`, oldest first.
    fn ids(&self, k: u64) -> impl Iterator<Item = u64> + '_ {
        let mut found = None;
        if !self.entries.is_empty() {
            let k = Self::stored(k);
            let e = self.entries[self.find(k)];
            if e.key == k {
                found = Some(e.ids);
            }
        }
        let (one, many) = match found {
            Some(ids) if ids & MANY != 0 => (None, Some(&self.many[(ids & !MANY) as usize])),
            one => (one, None),
        };
        one.into_iter().chain(many.into_iter().flatten().copied())
    }

    /// The first two ids under `k` (`u64::MAX` for none), for prefetching.
    #[inline]
    fn first_two(&self, k: u64) -> [u64; 2] {
        let mut ids = self.ids(k);
        [(); 2].map(|_| ids.next().unwrap_or(u64::MAX))
    }

    fn push(&mut self, k: u64, id: u64) {
        debug_assert!(id < MANY);
        let k = Self::stored(k);
        // At most half full: a lookup of a key that is not there (an action's path
        // that no record claims) probes about 2.5 entries, not 8.5 as at three
        // quarters, and the two lines prefetched hold its probe.
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow();
        }
        let i = self.find(k);
        let e = self.entries[i];
        if e.key == EMPTY {
            self.entries[i] = Entry { key: k, ids: id };
            self.len += 1;
        } else if e.ids & MANY != 0 {
            self.many[(e.ids & !MANY) as usize].push_back(id);
        } else {
            let d = match self.free.pop() {
                Some(d) => d as usize,
                None => {
                    self.many.push(VecDeque::new());
                    self.many.len() - 1
                }
            };
            self.many[d].extend([e.ids, id]);
            self.entries[i].ids = MANY | d as u64;
        }
    }

    /// Ask the CPU for the entry of `k`, which is about to be looked up.
    #[inline]
    fn prefetch(&self, k: u64) {
        if !self.entries.is_empty() {
            let e = &self.entries[self.home(Self::stored(k))];
            prefetch_lines(e as *const Entry as *const i8, 2);
        }
    }

    /// Drop each key's ids before its first live one, and the keys left without any:
    /// one pass over the table, an entry removed in place (the entries after it in its
    /// run move back where their probes would reach them).
    fn retain(&mut self, live: impl Fn(u64) -> bool) {
        let n = self.entries.len();
        // Start after a free entry: no run of entries wraps around behind the pass.
        let Some(start) = self.entries.iter().position(|e| e.key == EMPTY) else {
            return;
        };
        let mut step = 1;
        while step <= n {
            let i = (start + step) & (n - 1);
            let e = self.entries[i];
            if e.key == EMPTY {
                step += 1;
                continue;
            }
            let keep = if e.ids & MANY == 0 {
                live(e.ids)
            } else {
                let d = (e.ids & !MANY) as usize;
                let q = &mut self.many[d];
                while q.front().is_some_and(|&f| !live(f)) {
                    q.pop_front();
                }
                if q.len() <= 1 {
                    // Back to one id in the entry (or none).
                    let one = q.pop_front();
                    self.free.push(d as u32);
                    if let Some(one) = one {
                        self.entries[i].ids = one;
                    }
                    one.is_some()
                } else {
                    true
                }
            };
            if keep {
                step += 1;
            } else {
                // Look at `i` again: an entry from later in the run may move there.
                self.remove_at(i);
            }
        }
    }

    /// Free entry `i`, moving back the entries after it in its run that probe from at
    /// or before it.
    fn remove_at(&mut self, mut i: usize) {
        let mask = self.entries.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.key == EMPTY {
                break;
            }
            // `e` may fill the hole at `i` unless its home lies cyclically in (i, j].
            let h = self.home(e.key);
            let home_after_hole = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !home_after_hole {
                self.entries[i] = e;
                i = j;
            }
        }
        self.entries[i] = FREE;
        self.len -= 1;
    }

    /// Double the table (or make the first one).
    fn grow(&mut self) {
        let n = (self.entries.len() * 2).max(MIN_ENTRIES);
        let old = std::mem::replace(&mut self.entries, vec![FREE; n]);
        for e in old {
            if e.key != EMPTY {
                let i = self.find(e.key);
                self.entries[i] = e;
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Prefetch the first cache line of the paths of `item` that matching compares.
#[inline(always)]
fn prefetch_paths(item: &Item) {
    let (a, b) = match item {
        Item::Action(a) => (a.a.path.as_deref(), a.a.old_path.as_deref()),
        Item::Record(r) => (r.r.claim.path.as_deref(), None),
    };
    for p in [a, b].into_iter().flatten() {
        prefetch_lines(p.as_ptr() as *const i8, 1);
    }
}

/// Prefetch the cache lines that `x` spans.
#[inline(always)]
fn prefetch_span<T>(x: &T) {
    let p = x as *const T as usize;
    let first = p & !63;
    let lines = (p + std::mem::size_of::<T>() - first).div_ceil(64);
    prefetch_lines(first as *const i8, lines);
}

/// Prefetch `lines` cache lines from `p` (a hint: it never faults).
#[inline(always)]
fn prefetch_lines(p: *const i8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in 0..lines {
        // SAFETY: prefetching is a hint; it never faults or changes memory.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * l));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

/// The index keys of an action (at most four; the first is the near-miss key).
#[derive(Clone, Copy)]
struct Keys {
    k: [u64; 4],
    n: usize,
}

impl Keys {
    fn one(k: u64) -> Keys {
        Keys {
            k: [k, 0, 0, 0],
            n: 1,
        }
    }

    fn push(&mut self, k: u64) {
        self.k[self.n] = k;
        self.n += 1;
    }
    fn as_slice(&self) -> &[u64] {
        &self.k[..self.n]
    }
}

/// An item's index keys, computed when the item was prefetched
/// ([`Matcher::prefetch_action`], [`Matcher::prefetch_record`]) and handed back with it
/// to be filed ([`Matcher::push_action_filed`], [`Matcher::push_record_filed`]): the
/// keys hash the item's paths, once.
#[derive(Clone, Copy)]
pub struct Filing(Keys);

fn path_key(service: &str, class: Class, path: &str) -> u64 {
    key((0u8, service, class.key_class(), path))
}
fn port_key(service: &str, class: Class, port: u16) -> u64 {
    key((1u8, service, class.key_class(), port))
}
fn any_key(service: &str, class: Class) -> u64 {
    key((2u8, service, class.key_class()))
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Slots per chunk of [`Slots`].
const CHUNK: usize = 256;

/// The held items by id, in chunks of [`CHUNK`] slots. Growing never moves an item (a
/// deque of items doubled and copied tens of MiB as it grew, into memory the kernel
/// zeroed first), and the chunk of dropped items at the front is kept for the next
/// items: the memory held is about the items held, touched once.
#[derive(Default)]
struct Slots {
    chunks: VecDeque<Box<[Option<Item>]>>,
    spare: Vec<Box<[Option<Item>]>>,
    /// The id of the first slot of the first chunk.
    base: u64,
    /// The id the next item gets.
    next: u64,
}

impl Slots {
    fn slot(&self, id: u64) -> Option<&Option<Item>> {
        if id >= self.next {
            return None;
        }
        let i = id.checked_sub(self.base)? as usize;
        self.chunks.get(i / CHUNK).map(|c| &c[i % CHUNK])
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Option<Item>> {
        if id >= self.next {
            return None;
        }
        let i = id.checked_sub(self.base)? as usize;
        self.chunks.get_mut(i / CHUNK).map(|c| &mut c[i % CHUNK])
    }

    fn push(&mut self, item: Item) -> u64 {
        let id = self.next;
        let i = (id - self.base) as usize;
        if i == self.chunks.len() * CHUNK {
            let chunk = self
                .spare
                .pop()
                .unwrap_or_else(|| (0..CHUNK).map(|_| None).collect());
            self.chunks.push_back(chunk);
        }
        self.chunks[i / CHUNK][i % CHUNK] = Some(item);
        self.next += 1;
        id
    }

    /// Every item below `id` has been dropped: their whole chunks go to `spare`.
    fn release_below(&mut self, id: u64) {
        while id.saturating_sub(self.base) >= CHUNK as u64 {
            let Some(c) = self.chunks.pop_front() else {
                break;
            };
            debug_assert!(c.iter().all(Option::is_none));
            self.base += CHUNK as u64;
            // One spare chunk is enough: items come and go at about the same rate.
            if self.spare.is_empty() {
                self.spare.push(c);
            }
        }
    }
}

/// A priority queue for keys that arrive as a few interleaved, nearly sorted streams
/// (kernel actions as they happen, file actions released from the folder's hold, audit
/// records): up to [`LANES`] sorted runs, a key appended to the first run it does not
/// precede, the minimum taken over the runs' fronts. Both are O(1) for such input; a
/// sorted deque alone shifted thousands of entries per late file action (a sixth of the
/// run time) and a binary heap paid a cache miss per level.
#[derive(Default)]
struct Lanes {
    runs: Vec<VecDeque<(i64, u64)>>,
    /// The least key (the least of the runs' fronts), kept up to date: `advance` asks
    /// for it after every item, mostly to find there is nothing to decide yet.
    least: Option<(i64, u64)>,
}

const LANES: usize = 4;

impl Lanes {
    fn push(&mut self, e: (i64, u64)) {
        // A new key can only lower the least one (it becomes a run's front or goes
        // behind one).
        self.least = Some(self.least.map_or(e, |l| l.min(e)));
        if let Some(run) = self
            .runs
            .iter_mut()
            .find(|r| r.back().is_none_or(|b| *b <= e))
        {
            run.push_back(e);
            return;
        }
        if self.runs.len() < LANES {
            self.runs.push(VecDeque::from([e]));
            return;
        }
        // Every run ends after `e`: insert into the one whose end is nearest.
        let run = self
            .runs
            .iter_mut()
            .min_by_key(|r| r.back().map_or(0, |b| b.0.saturating_sub(e.0)))
            .expect("LANES > 0");
        let at = run.partition_point(|x| *x <= e);
        run.insert(at, e);
    }

    fn peek(&self) -> Option<(i64, u64)> {
        self.least
    }

    /// Take the least key; also says which run it came from.
    fn pop(&mut self) -> Option<((i64, u64), usize)> {
        let least = self.least?;
        let at = self
            .runs
            .iter()
            .position(|r| r.front() == Some(&least))
            .expect("the least key is a run's front");
        self.runs[at].pop_front();
        self.least = self.runs.iter().filter_map(|r| r.front().copied()).min();
        Some((least, at))
    }
}

pub struct Matcher<'x> {
    window: i64,
    expect: &'x Expectations,
    has_log: HashSet<Arc<str>>,
    items: Slots,
    /// Whether `items[i]` is held (a compact copy of `items[i].is_some()`).
    alive: VecDeque<bool>,
    base: u64,
    actions_by_key: Index,
    records_by_key: Index,
    /// Actions by their near-miss key (service and class), in arrival order.
    near: HashMap<u64, VecDeque<Near>>,
    /// Network actions by (client, server), for the peer's service.
    conns: HashMap<(Addr, Addr), Vec<u64>>,
    /// (deadline, id) of undecided items, earliest first.
    queue: Lanes,
    /// (drop time, id) of decided items, in decision order (so in time order).
    drops: VecDeque<(i64, u64)>,
    held: usize,
    /// Index references of items dropped since the last sweep, and the index keys that
    /// sweep left.
    dead_refs: usize,
    swept_keys: usize,
    watermark: i64,
    /// Each service's counts while matching (items hold their service's index; the
    /// report's ordered map compared names at every level, for every item), merged
    /// into `out` by `finish`. `service_index` and `recent` find a name's index.
    services: Vec<Service>,
    service_index: HashMap<Arc<str>, usize>,
    /// The service names last looked up, by identity: items share a few `Arc`s, so a
    /// lookup is mostly a pointer comparison, not a hash of the name (the `Arc`s held
    /// here keep their addresses from being reused).
    recent: Vec<(Arc<str>, usize)>,
    pub out: Outcome,
}

/// A service while matching.
struct Service {
    name: Arc<str>,
    out: ServiceOutcome,
    has_log: bool,
    tally: Tally,
}

/// A service's coverage while matching, by class and by rule index (counted in
/// arrays: the report's maps cost a tree search per required action), merged into its
/// [`ServiceOutcome`] by `finish`.
#[derive(Default)]
struct Tally {
    classes: [Coverage; Class::ALL.len()],
    rules: Vec<Coverage>,
}

impl Tally {
    /// Add the classes and rules that required something to `s`.
    fn into(self, s: &mut ServiceOutcome) {
        for (class, c) in Class::ALL.into_iter().zip(self.classes) {
            if c.required > 0 {
                let e = s.coverage.entry(class).or_default();
                e.required += c.required;
                e.audited += c.audited;
            }
        }
        for (rule, c) in self.rules.into_iter().enumerate() {
            if c.required > 0 {
                let e = s.rules.entry(rule).or_default();
                e.required += c.required;
                e.audited += c.audited;
            }
        }
    }
}

/// How many service names `Matcher::recent` holds.
const RECENT_NAMES: usize = 16;

impl<'x> Matcher<'x> {
    pub fn new(window_ns: i64, expect: &'x Expectations, services_with_logs: &[&str]) -> Self {
        let mut out = Outcome::default();
        for s in services_with_logs {
            out.services.entry(s.to_string()).or_default();
        }
        Matcher {
            window: window_ns,
            expect,
            has_log: services_with_logs.iter().map(|s| Arc::from(*s)).collect(),
            items: Slots::default(),
            alive: VecDeque::new(),
            base: 0,
            actions_by_key: Index::default(),
            records_by_key: Index::default(),
            near: HashMap::default(),
            conns: HashMap::default(),
            queue: Lanes::default(),
            drops: VecDeque::new(),
            held: 0,
            dead_refs: 0,
            swept_keys: 0,
            watermark: i64::MIN,
            services: Vec::new(),
            service_index: HashMap::default(),
            recent: Vec::new(),
            out,
        }
    }

    fn get(&self, id: u64) -> Option<&Item> {
        self.items.slot(id)?.as_ref()
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Item> {
        self.items.slot_mut(id)?.as_mut()
    }

    fn insert(&mut self, item: Item, deadline: i64) -> u64 {
        let id = self.items.push(item);
        debug_assert_eq!(id, self.base + self.alive.len() as u64);
        self.alive.push_back(true);
        self.held += 1;
        self.out.peak_items = self.out.peak_items.max(self.held);
        if deadline < self.watermark.saturating_sub(REORDER_NS) {
            self.out.late += 1;
        }
        self.queue.push((deadline, id));
        id
    }

    fn action_keys(a: &Action) -> Keys {
        let s = &*a.service;
        let mut k = Keys::one(any_key(s, a.class));
        if let Some(c) = &a.conn {
            k.push(port_key(s, a.class, c.server.1));
        }
        for p in [&a.path, &a.old_path].into_iter().flatten() {
            k.push(path_key(s, a.class, p));
        }
        if a.class == Class::ProcessExec {
            if let Some(p) = &a.path {
                k.push(path_key(s, a.class, basename(p)));
            }
        }
        k
    }

    /// Whether a record looks for actions under its service and class's near-miss key
    /// (a network record that names no port), in `near`.
    fn near_keyed(r: &Record) -> bool {
        r.class.is_network() && r.claim.server_port.is_none()
    }

    fn record_key(r: &Record) -> u64 {
        let s = &*r.service;
        if Self::near_keyed(r) {
            any_key(s, r.class)
        } else if let (true, Some(p)) = (r.class.is_network(), r.claim.server_port) {
            port_key(s, r.class, p)
        } else {
            path_key(s, r.class, r.claim.path.as_deref().unwrap_or(""))
        }
    }

    /// Ask the CPU for the index entries that action `a` will be filed under: a caller
    /// that knows its next action before it is its turn calls this, and the insertion
    /// finds them in the cache (keys are random: each insertion was a cache miss).
    /// The keys come back, for [`Matcher::push_action_filed`].
    pub fn prefetch_action(&self, a: &Action) -> Filing {
        let keys = Self::action_keys(a);
        for &k in &keys.as_slice()[1..] {
            self.actions_by_key.prefetch(k);
        }
        Filing(keys)
    }

    /// As [`Matcher::prefetch_action`], for record `r`.
    pub fn prefetch_record(&self, r: &Record) -> Filing {
        let k = Self::record_key(r);
        if !Self::near_keyed(r) {
            self.records_by_key.prefetch(k);
        }
        Filing(Keys::one(k))
    }

    /// Add a kernel action.
    pub fn push_action(&mut self, a: Action) {
        let keys = Filing(Self::action_keys(&a));
        self.push_action_filed(a, keys);
    }

    /// Add a kernel action with the keys [`Matcher::prefetch_action`] gave for it.
    pub fn push_action_filed(&mut self, mut a: Action, Filing(keys): Filing) {
        debug_assert!(keys.as_slice() == Self::action_keys(&a).as_slice());
        let svc = self.canonical(&mut a.service);
        self.services[svc as usize].out.actions += 1;
        let deadline = a.end_ns.saturating_add(self.window);
        let conn = a.conn.as_ref().map(|c| (c.client, c.server));
        let mut peer = None;
        let id_next = self.items.next;
        if let Some(t) = conn {
            let ids = self.conns.entry(t).or_default();
            // The other end of the same connection (opposite direction).
            for &other in ids.iter() {
                if let Some(Item::Action(o)) = self.items.slot(other).and_then(|i| i.as_ref()) {
                    if o.a.class != a.class && o.peer_service.is_none() {
                        peer = Some((other, o.a.service.clone()));
                        break;
                    }
                }
            }
            ids.push(id_next);
        }
        let service = peer.is_some().then(|| a.service.clone());
        let (start, end, class) = (a.start_ns, a.end_ns, a.class);
        let id = self.insert(
            Item::Action(ActionItem {
                a,
                svc,
                keys,
                peer_service: peer.as_ref().map(|p| p.1.clone()),
                state: State::Pending,
            }),
            deadline,
        );
        if let Some((other, _)) = peer {
            if let Some(Item::Action(o)) = self.get_mut(other) {
                o.peer_service = service;
            }
        }
        // The near-miss key goes to `near` (for `nearest`, and for network records
        // without a port), the others to the index.
        self.near.entry(keys.k[0]).or_default().push_back(Near {
            start,
            end,
            id,
            svc,
            class,
            never: Cell::new(None),
        });
        for &k in &keys.as_slice()[1..] {
            self.actions_by_key.push(k, id);
        }
    }

    /// Add an audit record.
    pub fn push_record(&mut self, r: Record) {
        let key = Filing(Keys::one(Self::record_key(&r)));
        self.push_record_filed(r, key);
    }

    /// Add an audit record with the key [`Matcher::prefetch_record`] gave for it.
    pub fn push_record_filed(&mut self, mut r: Record, Filing(key): Filing) {
        let k = key.k[0];
        debug_assert_eq!(k, Self::record_key(&r));
        let svc = self.canonical(&mut r.service);
        self.services[svc as usize].out.records += 1;
        let deadline = r.time_ns.saturating_add(self.window);
        let id = self.insert(
            Item::Record(RecordItem {
                r,
                svc,
                key: k,
                state: State::Pending,
            }),
            deadline,
        );
        self.records_by_key.push(k, id);
    }

    /// Every source has reached `now`: decide what can no longer change.
    pub fn advance(&mut self, now: i64) {
        self.watermark = self.watermark.max(now);
        let limit = self.watermark.saturating_sub(REORDER_NS);
        loop {
            let decide = self.queue.peek().filter(|d| d.0 < limit);
            let drop = self.drops.front().copied().filter(|d| d.0 < limit);
            match (decide, drop) {
                (Some(d), Some(x)) if x.0 < d.0 => {
                    self.prefetch_drop();
                    self.drop_front()
                }
                (Some((t, id)), _) => self.decide_next(t, id),
                (None, Some(_)) => {
                    self.prefetch_drop();
                    self.drop_front()
                }
                (None, None) => break,
            }
        }
    }

    /// Ask the CPU for the item a few places ahead of `id`'s turn: items are decided
    /// and dropped seconds after they arrived, long out of the cache.
    #[inline]
    fn prefetch(&self, id: u64) {
        if let Some(slot) = self.items.slot(id) {
            prefetch_span(slot);
        }
    }

    /// After a decision taken from the front of queue run `run`, get what its next
    /// decisions read on the way to the cache, in stages (each item of the run passes
    /// every stage, one decision of the run apart): the item itself, then the index
    /// entries of the other side under its keys (read from the item, in the cache by
    /// then), then the candidates those entries name.
    fn prefetch_run(&self, run: usize) {
        let Some(r) = self.queue.runs.get(run) else {
            return;
        };
        // The queue itself, a few of its lines ahead (a run is long, and read at the
        // pace of decisions).
        if let Some(e) = r.get(PREFETCH_AHEAD + PREFETCH_QUEUE) {
            prefetch_span(e);
        }
        if let Some(&(_, id)) = r.get(PREFETCH_AHEAD) {
            self.prefetch(id);
        }
        let looked_up = |at: usize| {
            let (_, id) = *r.get(at)?;
            let item = self.get(id)?;
            let (keys, skip, index, via_near) = self.lookup(item);
            Some((item, index, keys, skip, via_near))
        };
        // The item is in the cache by now; so are the paths that deciding it compares
        // with the candidates' (their text is elsewhere again).
        if let Some((item, index, keys, skip, via_near)) = looked_up(PREFETCH_KEYS) {
            prefetch_paths(item);
            if !via_near {
                for &k in &keys.as_slice()[skip..] {
                    index.prefetch(k);
                }
            }
        }
        if let Some((_, index, keys, skip, false)) = looked_up(PREFETCH_CANDIDATES) {
            for &k in &keys.as_slice()[skip..] {
                for cid in index.first_two(k) {
                    if let Some(slot) = self.items.slot(cid) {
                        prefetch_span(slot);
                    }
                }
            }
        }
    }

    /// As `prefetch_run`, for drops: the item, then the paths that freeing it writes to.
    fn prefetch_drop(&self) {
        if let Some(e) = self.drops.get(PREFETCH_AHEAD + PREFETCH_QUEUE) {
            prefetch_span(e);
        }
        if let Some(&(_, id)) = self.drops.get(PREFETCH_AHEAD) {
            self.prefetch(id);
        }
        if let Some(item) = self
            .drops
            .get(PREFETCH_KEYS)
            .and_then(|&(_, id)| self.get(id))
        {
            prefetch_paths(item);
        }
    }

    /// The end of every source: decide everything.
    pub fn finish(&mut self) {
        while let Some((t, id)) = self.queue.peek() {
            self.decide_next(t, id);
        }
        while !self.drops.is_empty() {
            self.drop_front();
        }
        self.sweep();
        for Service {
            name,
            out: mut s,
            tally,
            ..
        } in self.services.drain(..)
        {
            tally.into(&mut s);
            *service_mut(&mut self.out.services, &name) = s;
        }
    }

    /// Make `name` the one `Arc` of its service name that every held item shares (so
    /// that comparing two items' services is mostly comparing pointers), and return
    /// the service's index in `services`.
    fn canonical(&mut self, name: &mut Arc<str>) -> u32 {
        let i = self.service_at(name);
        let shared = &self.services[i].name;
        if !Arc::ptr_eq(shared, name) {
            *name = shared.clone();
        }
        i as u32
    }

    fn service_at(&mut self, name: &Arc<str>) -> usize {
        match self.recent.iter().find(|(r, _)| Arc::ptr_eq(r, name)) {
            Some(&(_, i)) => i,
            None => {
                let i = match self.service_index.get(name) {
                    Some(&i) => i,
                    None => {
                        let initial = self.out.services.remove(&**name).unwrap_or_default();
                        self.services.push(Service {
                            name: name.clone(),
                            out: initial,
                            has_log: self.has_log.contains(name),
                            tally: Tally::default(),
                        });
                        self.service_index
                            .insert(name.clone(), self.services.len() - 1);
                        self.services.len() - 1
                    }
                };
                if self.recent.len() == RECENT_NAMES {
                    self.recent.remove(0);
                }
                self.recent.push((name.clone(), i));
                i
            }
        }
    }

    fn decide_next(&mut self, t: i64, id: u64) {
        if let Some((_, run)) = self.queue.pop() {
            self.prefetch_run(run);
        }
        self.decide(id);
        // A decided record is nobody's candidate any more (only pending ones are): it
        // goes now. An action stays one more window, for `nearest`.
        if matches!(self.get(id), Some(Item::Record(_))) {
            self.drop_item(id);
        } else {
            self.drops.push_back((t.saturating_add(self.window), id));
        }
    }

    fn drop_front(&mut self) {
        if let Some((_, id)) = self.drops.pop_front() {
            self.drop_item(id);
        }
    }

    fn drop_item(&mut self, id: u64) {
        let Some(i) = id.checked_sub(self.base).map(|i| i as usize) else {
            return;
        };
        let Some(slot) = self.items.slot_mut(id) else {
            return;
        };
        let keys = match &*slot {
            Some(Item::Action(a)) => {
                if let Some(c) = &a.a.conn {
                    let t = (c.client, c.server);
                    if let Some(v) = self.conns.get_mut(&t) {
                        v.retain(|&x| x != id);
                        if v.is_empty() {
                            self.conns.remove(&t);
                        }
                    }
                }
                a.keys.n
            }
            Some(Item::Record(_)) => 1,
            None => return,
        };
        *slot = None;
        self.alive[i] = false;
        self.held -= 1;
        // The index buckets still name the item: they are trimmed in bulk (`sweep`)
        // rather than looked up again now, when they are no longer in the cache.
        self.dead_refs += keys;
        // The dropped items at the front go (their slots are empty already).
        let dead = self.alive.iter().take_while(|a| !**a).count();
        if dead > 0 {
            self.alive.drain(..dead);
            self.base += dead as u64;
            self.items.release_below(self.base);
        }
        if self.dead_refs > self.swept_keys.max(SWEEP_MIN) {
            self.sweep();
        }
    }

    /// Trim every index bucket of the ids of dropped items at its front; a bucket left
    /// empty goes. Runs once the dropped items' index references outnumber the keys
    /// left by the last sweep: the indexes stay within about twice what the held items
    /// need, and the cost is a sequential pass, not a lookup per dropped item.
    fn sweep(&mut self) {
        let (base, alive) = (self.base, &self.alive);
        let live = |id: u64| {
            id.checked_sub(base)
                .and_then(|i| alive.get(i as usize))
                .copied()
                .unwrap_or(false)
        };
        for index in [&mut self.actions_by_key, &mut self.records_by_key] {
            index.retain(live);
        }
        self.near.retain(|_, q| {
            while q.front().is_some_and(|n| !live(n.id)) {
                q.pop_front();
            }
            !q.is_empty()
        });
        self.swept_keys = self.actions_by_key.len() + self.records_by_key.len() + self.near.len();
        self.dead_refs = 0;
    }

    /// Signed skew of record time `t` against an action: 0 inside [start, end].
    fn skew(t: i64, a: &Action) -> i64 {
        Self::skew_from(t, a.start_ns, a.end_ns)
    }

    fn skew_from(t: i64, start: i64, end: i64) -> i64 {
        if t < start {
            t.saturating_sub(start)
        } else if t > end {
            t.saturating_sub(end)
        } else {
            0
        }
    }

    fn is_alive(&self, id: u64) -> bool {
        id.checked_sub(self.base)
            .and_then(|i| self.alive.get(i as usize))
            .copied()
            .unwrap_or(false)
    }

    fn compatible(r: &Record, a: &ActionItem) -> bool {
        let a_ = &a.a;
        if !(Arc::ptr_eq(&r.service, &a_.service) || r.service == a_.service)
            || !r.class.satisfied_by(a_.class)
        {
            return false;
        }
        let c = &r.claim;
        if r.class.is_network() {
            let Some(conn) = &a_.conn else { return false };
            let peer_ip = if a_.class == Class::NetConnect {
                conn.server.0
            } else {
                conn.client.0
            };
            let peer_service = a.peer_service.as_deref();
            c.client_ip.is_none_or(|ip| ip == conn.client.0)
                && c.client_port.is_none_or(|p| p == conn.client.1)
                && c.server_ip.is_none_or(|ip| ip == conn.server.0)
                && c.server_port.is_none_or(|p| p == conn.server.1)
                && c.peer_service
                    .as_deref()
                    .is_none_or(|s| Some(s) == peer_service)
                && c.peer_host.as_deref().is_none_or(|h| {
                    if h == "localhost" {
                        is_loopback(peer_ip)
                    } else {
                        peer_service.is_some_and(|s| s.eq_ignore_ascii_case(h))
                    }
                })
        } else {
            let Some(p) = c.path.as_deref() else {
                return false;
            };
            let path_ok = a_.path.as_deref() == Some(p)
                || (a_.class == Class::FileRename
                    && c.old_path.is_none()
                    && a_.old_path.as_deref() == Some(p))
                || (a_.class == Class::ProcessExec
                    && !p.contains('/')
                    && a_.path.as_deref().map(basename) == Some(p));
            path_ok
                && c.old_path
                    .as_deref()
                    .is_none_or(|o| a_.old_path.as_deref() == Some(o))
        }
    }

    /// Where item `item` looks for candidates: its keys (from `skip` on), the other
    /// side's index, and whether it looks in `near` instead.
    fn lookup(&self, item: &Item) -> (Keys, usize, &Index, bool) {
        match item {
            // Records find actions through their own (most specific) key; an action
            // looks for records under all of its keys except the near-miss one, which
            // only network records without a port also use.
            Item::Action(a) => (
                a.keys,
                usize::from(!a.a.class.is_network()),
                &self.records_by_key,
                false,
            ),
            Item::Record(r) => (
                Keys::one(r.key),
                0,
                &self.actions_by_key,
                Self::near_keyed(&r.r),
            ),
        }
    }

    /// The best pending candidate for item `id` among the other side's items under its
    /// keys.
    fn best(&self, id: u64) -> Option<(u64, i64)> {
        let me = self.get(id)?;
        let (keys, skip, index, via_near) = self.lookup(me);
        let is_action = matches!(me, Item::Action(_));
        let mut best: Option<(Score, u64, i64)> = None;
        for &k in &keys.as_slice()[skip..] {
            let near = via_near.then(|| self.near.get(&k)).flatten();
            let ids = near.into_iter().flat_map(|q| q.iter().map(|n| n.id));
            let indexed = (!via_near).then(|| index.ids(k)).into_iter().flatten();
            for cid in ids.chain(indexed) {
                let Some(item) = self.get(cid) else { continue };
                let (r, a) = match (me, item) {
                    (Item::Action(a), Item::Record(r)) if r.state == State::Pending => (&r.r, a),
                    (Item::Record(r), Item::Action(a)) if a.state == State::Pending => (&r.r, a),
                    _ => continue,
                };
                if !Self::compatible(r, a) {
                    continue;
                }
                let skew = Self::skew(r.time_ns, &a.a);
                if skew.unsigned_abs() > self.window as u64 {
                    continue;
                }
                let pid_miss = u8::from(r.pid.is_some_and(|p| p != a.a.pid));
                let other_time = if is_action { r.time_ns } else { a.a.end_ns };
                let score = (pid_miss, skew.saturating_abs(), other_time, cid);
                if best.as_ref().is_none_or(|b| score < b.0) {
                    best = Some((score, cid, skew));
                }
            }
        }
        best.map(|(_, cid, skew)| (cid, skew))
    }

    fn set_state(&mut self, id: u64, s: State) {
        match self.get_mut(id) {
            Some(Item::Action(a)) => a.state = s,
            Some(Item::Record(r)) => r.state = s,
            None => {}
        }
    }

    fn decide(&mut self, id: u64) {
        let pending = match self.get(id) {
            Some(Item::Action(a)) => a.state == State::Pending,
            Some(Item::Record(r)) => r.state == State::Pending,
            None => return,
        };
        if pending {
            if let Some((other, skew)) = self.best(id) {
                self.set_state(id, State::Matched);
                self.set_state(other, State::Matched);
                let svc = match self.get(id) {
                    Some(Item::Action(a)) => a.svc,
                    Some(Item::Record(r)) => r.svc,
                    None => unreachable!(),
                };
                self.out.skew.add(skew);
                let s = &mut self.services[svc as usize].out;
                s.skew.add(skew);
                s.records_matched += 1;
            } else {
                self.set_state(id, State::Decided);
            }
        }
        // Accounting and findings.
        match self.get(id) {
            Some(Item::Action(a)) => {
                // (Asked of the action's own service only: its flag, not a hash of its
                // name per rule.)
                let has_log = self.services[a.svc as usize].has_log;
                let rule = self
                    .expect
                    .required(&a.a, a.peer_service.as_deref(), |_| has_log);
                let Some(rule) = rule else { return };
                let matched = a.state == State::Matched;
                let finding = (!matched).then(|| unaudited(a, &self.expect.rules[rule].name));
                let (svc, class) = (a.svc, a.a.class);
                let t = &mut self.services[svc as usize].tally;
                if t.rules.len() <= rule {
                    t.rules.resize(rule + 1, Coverage::default());
                }
                for c in [&mut t.classes[class as usize], &mut t.rules[rule]] {
                    c.required += 1;
                    c.audited += u64::from(matched);
                }
                if let Some(f) = finding {
                    self.out.findings.push(f);
                }
            }
            Some(Item::Record(r)) if r.state != State::Matched => {
                let nearest = self.nearest(&r.r, r.svc);
                let f = unsupported(&r.r, nearest);
                self.out.findings.push(f);
            }
            _ => {}
        }
    }

    /// The kernel action of the record's service (index `svc`) and class (any
    /// resource) nearest in time, as text; of those equally near, the first to arrive.
    fn nearest(&self, r: &Record, svc: u32) -> Option<String> {
        let near = self.near.get(&any_key(&r.service, r.class))?;
        let mut best: Option<(i64, u64)> = None;
        for n in near {
            if n.svc != svc || !r.class.satisfied_by(n.class) || !self.is_alive(n.id) {
                continue;
            }
            let d = Self::skew_from(r.time_ns, n.start, n.end).saturating_abs();
            if best.is_some_and(|b| d >= b.0) {
                continue;
            }
            // Not the loader's libraries or the service's own audit log (looked up only
            // for a nearer candidate, once per action).
            let never = n.never.get().unwrap_or_else(|| {
                let v = matches!(self.get(n.id), Some(Item::Action(a))
                    if a.a.path.as_deref().is_some_and(|p| self.expect.never(p)));
                n.never.set(Some(v));
                v
            });
            if !never {
                best = Some((d, n.id));
            }
        }
        let (d, id) = best?;
        let Some(Item::Action(a)) = self.get(id) else {
            return None;
        };
        let a = &a.a;
        Some(format!(
            "{} {} by pid {} at {} ({:+.3} s from the record)",
            a.class,
            resource(a, None),
            a.pid,
            rfc3339(a.end_ns),
            if r.time_ns < a.start_ns { -d } else { d } as f64 / 1e9
        ))
    }
}

/// A service's outcome, created on first use (without allocating a key every time).
fn service_mut<'a>(m: &'a mut BTreeMap<String, ServiceOutcome>, s: &str) -> &'a mut ServiceOutcome {
    if !m.contains_key(s) {
        m.insert(s.to_string(), ServiceOutcome::default());
    }
    m.get_mut(s).unwrap()
}

fn endpoint(e: (IpAddr, u16)) -> String {
    match e.0 {
        IpAddr::V6(ip) => format!("[{ip}]:{}", e.1),
        IpAddr::V4(ip) => format!("{ip}:{}", e.1),
    }
}

/// An action's resource as one line: a path, `old -> new`, or `tcp client -> server
/// (peer service)`.
pub fn resource(a: &Action, peer_service: Option<&str>) -> String {
    if let Some(c) = &a.conn {
        let peer = peer_service.map(|s| format!(" ({s})")).unwrap_or_default();
        return match a.class {
            Class::NetAccept => {
                format!("tcp {} <- {}{peer}", endpoint(c.server), endpoint(c.client))
            }
            _ => format!("tcp {} -> {}{peer}", endpoint(c.client), endpoint(c.server)),
        };
    }
    match (&a.old_path, &a.path) {
        (Some(o), Some(p)) => format!("{o} -> {p}"),
        (_, Some(p)) => p.clone(),
        _ => "?".into(),
    }
}

fn record_resource(r: &Record) -> String {
    let c = &r.claim;
    if r.class.is_network() {
        let ip_port = |ip: Option<IpAddr>, port: Option<u16>| match (ip, port) {
            (Some(ip), Some(p)) => endpoint((ip, p)),
            (Some(ip), None) => ip.to_string(),
            (None, Some(p)) => format!("*:{p}"),
            (None, None) => "*".into(),
        };
        let mut s = format!(
            "tcp {} -> {}",
            ip_port(c.client_ip, c.client_port),
            ip_port(c.server_ip, c.server_port)
        );
        for x in [&c.peer_host, &c.peer_service].into_iter().flatten() {
            s.push_str(&format!(" ({x})"));
        }
        return s;
    }
    match (&c.old_path, &c.path) {
        (Some(o), Some(p)) => format!("{o} -> {p}"),
        (_, Some(p)) => p.clone(),
        _ => "?".into(),
    }
}

fn unaudited(a: &ActionItem, rule: &str) -> Finding {
    let x = &a.a;
    Finding {
        kind: "unaudited",
        service: x.service.to_string(),
        class: x.class,
        resource: resource(x, a.peer_service.as_deref()),
        time: rfc3339(x.end_ns),
        time_ns: x.end_ns,
        rule: Some(rule.to_string()),
        evidence: Evidence {
            kernel: Some(KernelEvidence {
                pid: x.pid,
                process: x.comm.to_string(),
                executable: x.exe.as_deref().map(str::to_string),
                start: rfc3339(x.start_ns),
                end: rfc3339(x.end_ns),
                path: x.path.clone(),
                old_path: x.old_path.clone(),
                client: x.conn.as_ref().map(|c| endpoint(c.client)),
                server: x.conn.as_ref().map(|c| endpoint(c.server)),
                peer_service: a.peer_service.as_deref().map(str::to_string),
                bytes_read: x.bytes_read,
                bytes_written: x.bytes_written,
                connection_id: x.conn.as_ref().and_then(|c| c.connection_id),
            }),
            record: None,
            nearest_kernel_action: None,
        },
    }
}

fn unsupported(r: &Record, nearest: Option<String>) -> Finding {
    let (text, text_at) = match &r.excerpt {
        Excerpt::Text(t) => (t.clone(), None),
        &Excerpt::At { offset, len, hash } => (String::new(), Some((offset, len, hash))),
    };
    Finding {
        kind: "unsupported",
        service: r.service.to_string(),
        class: r.class,
        resource: record_resource(r),
        time: rfc3339(r.time_ns),
        time_ns: r.time_ns,
        rule: None,
        evidence: Evidence {
            kernel: None,
            record: Some(RecordEvidence {
                file: r.file.to_string(),
                line: r.line,
                pid: r.pid,
                text,
                text_at,
            }),
            nearest_kernel_action: nearest,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Claim, Conn};

    const W: i64 = 2_000_000_000;

    fn action(class: Class, path: &str, start: i64, end: i64, pid: u32) -> Action {
        Action {
            service: "s".into(),
            class,
            start_ns: start,
            end_ns: end,
            pid,
            comm: "c".into(),
            exe: None,
            path: Some(path.into()),
            old_path: None,
            conn: None,
            bytes_read: Some(0),
            bytes_written: Some(1),
        }
    }

    fn record(class: Class, path: &str, t: i64, pid: Option<u32>, line: u64) -> Record {
        Record {
            service: "s".into(),
            time_ns: t,
            class,
            claim: Claim {
                path: Some(path.into()),
                ..Default::default()
            },
            pid,
            file: "log".into(),
            line,
            excerpt: Excerpt::Text(String::new()),
        }
    }

    enum In {
        A(Action),
        R(Record),
    }

    /// Feed items in order (advancing the watermark as a merge would) and return the
    /// findings as (kind, line or pid) and the matched skews.
    fn run(items: Vec<In>) -> (Vec<(&'static str, u64)>, Outcome) {
        let x = Expectations::defaults(&[]);
        let mut m = Matcher::new(W, &x, &["s"]);
        for i in items {
            let t = match i {
                In::A(a) => {
                    let t = a.end_ns;
                    m.push_action(a);
                    t
                }
                In::R(r) => {
                    let t = r.time_ns;
                    m.push_record(r);
                    t
                }
            };
            m.advance(t);
        }
        m.finish();
        let f = m
            .out
            .findings
            .iter()
            .map(|f| {
                (
                    f.kind,
                    f.evidence
                        .record
                        .as_ref()
                        .map(|r| r.line)
                        .or(f.evidence.kernel.as_ref().map(|k| k.pid as u64))
                        .unwrap(),
                )
            })
            .collect();
        (f, m.out)
    }

    const S: i64 = 1_000_000_000_000;

    #[test]
    fn one_to_one_two_writes_need_two_records() {
        let (f, out) = run(vec![
            In::A(action(Class::FileWrite, "/d/a", S, S + 10, 1)),
            In::A(action(Class::FileWrite, "/d/a", S + 20, S + 30, 2)),
            In::R(record(Class::FileWrite, "/d/a", S + 40, None, 1)),
        ]);
        // Decided in deadline order: the first write takes the record (either way, one
        // write is unaudited).
        assert_eq!(f, [("unaudited", 2)]);
        assert_eq!(out.services["s"].coverage[&Class::FileWrite].required, 2);
        assert_eq!(out.services["s"].coverage[&Class::FileWrite].audited, 1);
    }

    #[test]
    fn pid_is_preferred_over_time_and_ties_go_to_the_earliest() {
        let (f, _) = run(vec![
            In::A(action(Class::FileDelete, "/d/a", S, S, 7)),
            In::A(action(Class::FileDelete, "/d/a", S + 100, S + 100, 8)),
            In::R(record(Class::FileDelete, "/d/a", S + 100, Some(7), 1)),
        ]);
        assert_eq!(
            f,
            [("unaudited", 8)],
            "pid 7's record goes to pid 7's delete"
        );
        // Two records equally far from one action: the earlier line wins.
        let (f, _) = run(vec![
            In::R(record(Class::FileDelete, "/d/a", S - 5, None, 1)),
            In::A(action(Class::FileDelete, "/d/a", S, S, 7)),
            In::R(record(Class::FileDelete, "/d/a", S + 5, None, 2)),
        ]);
        assert_eq!(f, [("unsupported", 2)]);
    }

    /// An unsupported record names the action of its service and class nearest in
    /// time, of those equally near the first to arrive, never a loader's library, and
    /// for a create only a create.
    #[test]
    fn unsupported_records_name_the_nearest_action() {
        const MS: i64 = 1_000_000;
        let mut other = action(Class::FileWrite, "/d/other", S, S, 9);
        other.service = "o".into();
        let (f, out) = run(vec![
            In::A(action(
                Class::FileWrite,
                "/d/a",
                S - 400 * MS,
                S - 400 * MS,
                1,
            )),
            In::A(action(Class::FileWrite, "/usr/lib/x.so", S - MS, S - MS, 2)),
            In::A(other),
            In::R(record(Class::FileWrite, "/d/x", S, None, 1)),
            In::R(record(Class::FileCreate, "/d/y", S, None, 2)),
            In::A(action(
                Class::FileWrite,
                "/d/b",
                S + 300 * MS,
                S + 300 * MS,
                3,
            )),
            In::A(action(
                Class::FileWrite,
                "/d/c",
                S + 300 * MS,
                S + 300 * MS,
                4,
            )),
            In::A(action(
                Class::FileCreate,
                "/d/e",
                S + 900 * MS,
                S + 900 * MS,
                5,
            )),
        ]);
        assert_eq!(
            f.iter().filter(|f| f.0 == "unsupported").count(),
            2,
            "{f:?}"
        );
        let nearest = |line: u64| {
            out.findings
                .iter()
                .find(|f| f.evidence.record.as_ref().is_some_and(|r| r.line == line))
                .and_then(|f| f.evidence.nearest_kernel_action.clone())
                .unwrap()
        };
        let n = nearest(1);
        assert!(
            n.starts_with("file.write /d/b by pid 3") && n.ends_with("(-0.300 s from the record)"),
            "{n}"
        );
        let n = nearest(2);
        assert!(n.starts_with("file.create /d/e by pid 5"), "{n}");
    }

    /// A network record that names no port finds its connection among the service's
    /// connections of that class (the near-miss key), by the peer it names.
    #[test]
    fn network_records_without_a_port_match_by_peer() {
        let lo = "127.0.0.1".parse().unwrap();
        let conn = |class, svc: &str, pid, port| Action {
            service: svc.into(),
            conn: Some(Box::new(Conn {
                client: (lo, port),
                server: (lo, 8081),
                connection_id: Some(pid as u64),
            })),
            path: None,
            ..action(class, "", S, S, pid)
        };
        let x = Expectations::defaults(&[]);
        let mut m = Matcher::new(W, &x, &["orders"]);
        for (peer, line) in [("gateway", 1), ("billing", 2)] {
            // Before the connections: the record is decided first, and looks for them.
            let mut r = record(Class::NetAccept, "", S - 1, None, line);
            r.service = "orders".into();
            r.claim = Claim {
                peer_service: Some(peer.into()),
                ..Default::default()
            };
            m.push_record(r);
        }
        m.push_action(conn(Class::NetConnect, "gateway", 1, 40000));
        m.push_action(conn(Class::NetAccept, "orders", 2, 40000));
        m.push_action(conn(Class::NetConnect, "billing", 3, 40001));
        m.push_action(conn(Class::NetAccept, "orders", 4, 40001));
        m.finish();
        assert!(m.out.findings.is_empty(), "{:?}", m.out.findings);
        assert_eq!(m.out.services["orders"].records_matched, 2);
    }

    #[test]
    fn window_boundaries_are_inclusive() {
        let (f, out) = run(vec![
            In::A(action(Class::FileDelete, "/d/a", S, S, 1)),
            In::R(record(Class::FileDelete, "/d/a", S + W, None, 1)),
        ]);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(out.skew.max_abs_ns, W);
        let (f, _) = run(vec![
            In::A(action(Class::FileDelete, "/d/a", S, S, 1)),
            In::R(record(Class::FileDelete, "/d/a", S + W + 1, None, 1)),
        ]);
        assert_eq!(f, [("unaudited", 1), ("unsupported", 1)]);
        // A record before the action, and one inside a write's open..close.
        let (f, out) = run(vec![
            In::R(record(Class::FileDelete, "/d/b", S - W, None, 1)),
            In::A(action(Class::FileDelete, "/d/b", S, S, 1)),
            In::R(record(Class::FileWrite, "/d/c", S + 5 * W, None, 2)),
            In::A(action(Class::FileWrite, "/d/c", S + W, S + 10 * W, 1)),
        ]);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(out.skew.early, 1);
        assert_eq!(out.skew.count, 2);
    }

    #[test]
    fn classes_and_resources_must_agree() {
        let mut rename = action(Class::FileRename, "/d/new", S, S, 1);
        rename.old_path = Some("/d/old".into());
        let (f, _) = run(vec![
            In::A(action(Class::FileCreate, "/d/a", S, S + 1, 1)),
            In::R(record(Class::FileWrite, "/d/a", S + 2, None, 1)),
            In::A(action(Class::FileWrite, "/d/b", S, S + 1, 1)),
            In::R(record(Class::FileCreate, "/d/b", S + 2, None, 2)),
            In::A(rename),
            In::R(record(Class::FileRename, "/d/old", S + 3, None, 3)),
            In::R(record(Class::FileDelete, "/d/other", S + 4, None, 4)),
        ]);
        assert_eq!(
            f,
            [("unaudited", 1), ("unsupported", 2), ("unsupported", 4)],
            "a write record is satisfied by a create, not the other way round"
        );
    }

    #[test]
    fn network_claims_and_peer_services() {
        let lo = "127.0.0.1".parse().unwrap();
        let conn = |class, svc: &str, pid| Action {
            service: svc.into(),
            conn: Some(Box::new(Conn {
                client: (lo, 40000),
                server: (lo, 8081),
                connection_id: Some(pid as u64),
            })),
            path: None,
            ..action(class, "", S, S, pid)
        };
        let x = Expectations::defaults(&[]);
        let mut m = Matcher::new(W, &x, &["s", "orders"]);
        m.push_action(conn(Class::NetConnect, "s", 1));
        m.push_action(conn(Class::NetAccept, "orders", 2));
        let mut r = record(Class::NetConnect, "", S + 1, None, 1);
        r.claim = Claim {
            server_port: Some(8081),
            peer_host: Some("orders".into()),
            ..Default::default()
        };
        m.push_record(r);
        let mut r = record(Class::NetAccept, "", S + 1, None, 2);
        r.service = "orders".into();
        r.claim = Claim {
            client_ip: Some(lo),
            peer_service: Some("gateway".into()),
            ..Default::default()
        };
        m.push_record(r);
        m.finish();
        let kinds: Vec<_> = m
            .out
            .findings
            .iter()
            .map(|f| (f.kind, f.service.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [("unaudited", "orders"), ("unsupported", "orders")],
            "the connect matches by port and peer name; the accept's record names the wrong peer service"
        );
        assert_eq!(
            m.out.findings[0]
                .evidence
                .kernel
                .as_ref()
                .unwrap()
                .peer_service
                .as_deref(),
            Some("s")
        );
    }

    #[test]
    fn memory_holds_the_window_not_the_stream() {
        let x = Expectations::defaults(&[]);
        let mut m = Matcher::new(W, &x, &["s"]);
        let (mut peak_keys, mut peak_near, mut peak_chunks, mut peak_span) = (0, 0, 0, 0);
        for i in 0..200_000i64 {
            let t = S + i * 1_000_000; // 1000 per second, 200 s
            m.push_action(action(Class::FileWrite, &format!("/d/{i}"), t, t, 1));
            m.push_record(record(
                Class::FileWrite,
                &format!("/d/{i}"),
                t + 10,
                None,
                i as u64,
            ));
            m.advance(t + 10);
            peak_keys = peak_keys.max(m.actions_by_key.len() + m.records_by_key.len());
            peak_near = peak_near.max(m.near.values().map(VecDeque::len).sum::<usize>());
            peak_chunks = peak_chunks.max(m.items.chunks.len() + m.items.spare.len());
            peak_span = peak_span.max(m.alive.len());
        }
        m.finish();
        assert!(m.out.findings.is_empty());
        // About (2 windows + reorder tolerance + 1 drop window) of 2000 items/s.
        assert!(m.out.peak_items < 2_000 * 8, "{}", m.out.peak_items);
        // Index keys: one per held item (and one per service and class), plus at most
        // as many of dropped items before a sweep.
        assert!(
            peak_keys < 2 * m.out.peak_items + SWEEP_MIN,
            "{peak_keys} keys for {} items",
            m.out.peak_items
        );
        // The near-miss index: an entry per held action, and those of dropped ones
        // until a sweep.
        assert!(
            peak_near < m.out.peak_items + SWEEP_MIN,
            "{peak_near} near-miss entries for {} items",
            m.out.peak_items
        );
        // The item chunks: those the held items' ids span (from the oldest held to the
        // newest, a little more than the items held), the one being filled and a spare.
        assert!(
            peak_span < 2 * m.out.peak_items,
            "{peak_span} ids span {} items",
            m.out.peak_items
        );
        assert!(
            peak_chunks <= peak_span / CHUNK + 3,
            "{peak_chunks} chunks of {CHUNK} for {peak_span} ids"
        );
        // All dropped: at most the chunk the next item goes to is left.
        assert!(m.items.chunks.len() <= 1 && m.items.chunks.iter().flatten().all(Option::is_none));
        assert!(m.actions_by_key.is_empty() && m.records_by_key.is_empty());
        assert!(
            m.near.is_empty(),
            "the near-miss index is trimmed like the others"
        );
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let (f, _) = run(vec![
            In::R(record(Class::FileDelete, "/d/a", i64::MIN + 1, None, 1)),
            In::A(action(Class::FileDelete, "/d/a", S, S, 1)),
            In::R(record(Class::FileDelete, "/d/a", i64::MAX - 1, None, 2)),
        ]);
        assert_eq!(
            f,
            [("unsupported", 1), ("unaudited", 1), ("unsupported", 2)]
        );
    }

    #[test]
    fn skew_histogram_median_is_close() {
        let mut s = Skew::default();
        for v in [1_000, 2_000, 3_000_000, -5_000_000, 7] {
            s.add(v);
        }
        let m = s.median_abs_ns().unwrap();
        assert!((1_900..=2_100).contains(&m), "{m}");
        assert_eq!((s.max_abs_ns, s.early, s.count), (5_000_000, 1, 5));
    }

    /// Deterministic pseudo-random numbers (xorshift64) from a non-zero seed.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn index_holds_what_a_map_of_deques_holds() {
        // Keys from a small set (lists of ids grow past one and shrink back), with the
        // empty key and keys sharing their home entry (same high bits: long runs, and
        // runs that wrap around the table's end); sweeps now and then drop the ids
        // below a moving mark, as the matcher's do.
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let keys: Vec<u64> = (0..300u64)
            .map(|i| match i % 4 {
                0 => i,
                1 => (7 << 58) | i,
                2 => u64::MAX - i,
                _ => next(),
            })
            .chain([EMPTY])
            .collect();
        let mut index = Index::default();
        let mut model: std::collections::HashMap<u64, VecDeque<u64>> = Default::default();
        let mut mark = 0;
        for id in 0..60_000u64 {
            let k = keys[(next() % keys.len() as u64) as usize];
            index.push(k, id);
            model.entry(Index::stored(k)).or_default().push_back(id);
            if id % 997 == 0 {
                // Most ids live, or almost none.
                mark = id.saturating_sub(if id % 3 == 0 { 2 } else { 300 });
                let live = |i: u64| i >= mark;
                index.retain(live);
                model.retain(|_, q| {
                    q.retain(|&i| live(i));
                    !q.is_empty()
                });
            }
            if id % 101 == 0 || id % 997 == 0 {
                assert_eq!(index.len(), model.len());
                for &k in &keys {
                    // Ids below the mark may linger behind a live one (lists are
                    // trimmed at their front only); the live ones are all there.
                    let got: Vec<u64> = index.ids(k).filter(|&i| i >= mark).collect();
                    let want: Vec<u64> = model
                        .get(&Index::stored(k))
                        .into_iter()
                        .flatten()
                        .copied()
                        .collect();
                    assert_eq!(got, want, "key {k:#x}");
                }
            }
        }
        // At most half full; the deques of keys back to one id are reused.
        assert!(2 * index.len() <= index.entries.len());
        assert!(index.many.len() - index.free.len() <= index.len());
    }

    #[test]
    fn lanes_pop_in_key_order_whatever_the_interleaving() {
        // Deterministic pseudo-random streams: several sorted runs interleaved (more
        // than LANES of them, so out-of-order inserts happen too), plus stragglers.
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut lanes = Lanes::default();
        let mut want = Vec::new();
        let mut heads = [0i64; 7];
        for id in 0..20_000u64 {
            let r = next();
            let s = (r % 7) as usize;
            heads[s] += (r >> 8) as i64 % 1000;
            // One in 50 keys far behind its stream.
            let t = if r.is_multiple_of(50) {
                heads[s] - 5_000
            } else {
                heads[s]
            };
            lanes.push((t, id));
            want.push((t, id));
            // Pop now and then, as the matcher does while items arrive.
            if r.is_multiple_of(3) {
                let low = *want.iter().min().unwrap();
                assert_eq!(lanes.peek(), Some(low));
                let (key, run) = lanes.pop().unwrap();
                assert_eq!(key, low);
                assert!(run < lanes.runs.len());
                want.retain(|w| *w != low);
            }
        }
        want.sort();
        let mut got = Vec::new();
        while let Some((e, _)) = lanes.pop() {
            got.push(e);
        }
        assert_eq!(got, want);
        assert_eq!(lanes.peek(), None);
    }
}
