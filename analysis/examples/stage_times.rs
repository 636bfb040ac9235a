//! Times each stage of `groundtruth analyze` separately, on the same paths analyze
//! takes (trail columns, folding, parsing the logs with the ECS mapping, the matcher
//! with the default expectations), for profiling: stage_times TRAIL LOG... (W=NS sets
//! the window; the matcher runs on items held in memory, so it pays more cache misses
//! than in analyze, where each item arrives fresh)
use analysis::analyze::{audit, expect, fold, matcher, rows, Action, Record};
use std::{path::Path, time::Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn actions(trail: &Path) -> Vec<Action> {
    let mut f = fold::Folder::new();
    let mut out = Vec::new();
    let mut s = trail::stream_columns(trail, fold::COLUMNS).unwrap();
    while let Some(b) = s.next_batch() {
        let cols = rows::Columns::new(&b.unwrap()).unwrap();
        for i in 0..cols.len() {
            f.push_row(&cols.row(i));
            while let Some(a) = f.pop() {
                out.push(a);
            }
        }
    }
    f.finish();
    while let Some(a) = f.pop() {
        out.push(a);
    }
    out
}

fn records(logs: &[String], mut keep: impl FnMut(Record)) {
    for (i, l) in logs.iter().enumerate() {
        let mut log = audit::AuditLog::open(
            &format!("svc{i}"),
            Path::new(l),
            Some(audit::Mapping::Ecs),
            false,
        )
        .unwrap();
        while let Some(r) = log.next_record().unwrap() {
            keep(r);
        }
    }
}

fn main() {
    eprintln!(
        "sizes: Action {} Record {} Claim {} Conn {}",
        std::mem::size_of::<Action>(),
        std::mem::size_of::<Record>(),
        std::mem::size_of::<analysis::analyze::Claim>(),
        std::mem::size_of::<analysis::analyze::Conn>()
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trail = Path::new(&args[0]);
    let t = Instant::now();
    let mut n = 0u64;
    let mut s = trail::stream_columns(trail, fold::COLUMNS).unwrap();
    while let Some(b) = s.next_batch() {
        let cols = rows::Columns::new(&b.unwrap()).unwrap();
        for i in 0..cols.len() {
            std::hint::black_box(cols.row(i));
            n += 1;
        }
    }
    println!("read {n} rows: {:?}", t.elapsed());
    let t = Instant::now();
    let acts = actions(trail);
    println!("read+fold {} actions: {:?}", acts.len(), t.elapsed());
    let t = Instant::now();
    let mut n = 0u64;
    records(&args[1..], |r| {
        std::hint::black_box(r);
        n += 1;
    });
    println!("parse {n} records (each dropped): {:?}", t.elapsed());
    let t = Instant::now();
    let mut recs = Vec::new();
    records(&args[1..], |r| recs.push(r));
    recs.sort_by_key(|r| r.time_ns);
    println!("parse {} records, held: {:?}", recs.len(), t.elapsed());
    // The matcher alone, fed in time order (records by time, actions by end).
    let logs: Vec<&Path> = args[1..].iter().map(Path::new).collect();
    let ex = expect::Expectations::defaults(&logs);
    let names: Vec<String> = (0..logs.len()).map(|i| format!("svc{i}")).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut m = matcher::Matcher::new(
        std::env::var("W").map_or(2_000_000_000, |w| w.parse().unwrap()),
        &ex,
        &names,
    );
    let (mut a, mut r) = (acts.into_iter().peekable(), recs.into_iter().peekable());
    let t = Instant::now();
    loop {
        let now = match (a.peek(), r.peek()) {
            (Some(x), Some(y)) if x.end_ns <= y.time_ns => x.end_ns,
            (Some(x), None) => x.end_ns,
            (_, Some(y)) => y.time_ns,
            (None, None) => break,
        };
        if a.peek().is_some_and(|x| x.end_ns == now) {
            m.push_action(a.next().unwrap());
        } else {
            m.push_record(r.next().unwrap());
        }
        m.advance(now);
    }
    m.finish();
    println!(
        "match: {} findings: {:?}",
        m.out.findings.len(),
        t.elapsed()
    );
}
