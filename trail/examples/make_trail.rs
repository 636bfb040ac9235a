//! Writes a sealed trail of about MIB mebibytes whose rows carry incompressible paths,
//! for measuring verification throughput (`cargo xtask bench`). Usage:
//! make_trail DIR MIB

use trail::{event::Event, FileRef, RunInfo, TrailWriter, WriterOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(mib)) = (args.next(), args.next().and_then(|m| m.parse::<u64>().ok()))
    else {
        eprintln!("usage: make_trail DIR MIB");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("creating the directory");
    let opts = WriterOptions {
        segment_bytes: 64 << 20,
        ..Default::default()
    };
    let run = RunInfo {
        run_id: "bench".into(),
        ..Default::default()
    };
    let mut w = TrailWriter::create(&dir, run, opts).expect("trail writer");
    // xorshift: incompressible text, reproducibly.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let rows = mib * 1024;
    for i in 0..rows {
        let path: String = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'!' + (x % 90) as u8) as char
            })
            .collect();
        w.push(Event {
            time_ns: i as i64,
            activity_name: "Open".into(),
            file: Some(FileRef {
                path_requested: Some(path),
                ..Default::default()
            }),
            ..Default::default()
        })
        .expect("write");
    }
    let f = w.finish().expect("finish");
    println!("make_trail: {} segments, head {}", f.files.len(), f.head);
}
