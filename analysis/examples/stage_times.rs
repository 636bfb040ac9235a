//! Times each stage of `groundtruth analyze` separately (reading the trail, folding,
//! parsing the logs), for profiling: stage_times TRAIL LOG...
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let t = std::time::Instant::now();
    let mut n = 0u64;
    for e in trail::stream_events(std::path::Path::new(&args[0])).unwrap() {
        std::hint::black_box(e.unwrap());
        n += 1;
    }
    println!("read {n} events: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut f = analysis::analyze::fold::Folder::new();
    let mut a = 0;
    for e in trail::stream_events(std::path::Path::new(&args[0])).unwrap() {
        f.push(&e.unwrap());
        while f.pop().is_some() {
            a += 1;
        }
    }
    println!("read+fold {a} actions: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut r = 0;
    for l in &args[1..] {
        let mut log = analysis::analyze::audit::AuditLog::open(
            "s",
            std::path::Path::new(l),
            Some(analysis::analyze::audit::Mapping::Ecs),
            false,
        )
        .unwrap();
        while log.next_record().unwrap().is_some() {
            r += 1;
        }
    }
    println!("parse {r} records: {:?}", t.elapsed());
}
