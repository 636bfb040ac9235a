//! `groundtruth events`: print the events of a trail.

use std::io::Write;
use trail::Event;

/// RFC 3339 UTC with nanoseconds, without a date library: civil-from-days.
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The one-line description of what an event is about.
pub fn target(e: &Event) -> String {
    let mut s = String::new();
    if let Some(p) = &e.process {
        match &*e.activity_name {
            "Launch" => {
                s.push_str(p.exe.as_deref().unwrap_or("?"));
                if let Some(c) = &p.cmd_line {
                    s.push_str(&format!(" [{c}]"));
                }
            }
            "Fork" => s.push_str(&format!("child {}", p.pid)),
            _ => {
                if let Some(c) = p.exit_code {
                    s.push_str(&format!("exit {c}"));
                }
                if let Some(sig) = p.exit_signal {
                    s.push_str(&format!("killed by signal {sig}"));
                }
            }
        }
    }
    if let Some(f) = &e.file {
        let p = f
            .path
            .as_deref()
            .or(f.path_requested.as_deref())
            .unwrap_or("?");
        s.push_str(p);
    }
    if let Some(f) = &e.file_result {
        s.push_str(" -> ");
        s.push_str(
            f.path
                .as_deref()
                .or(f.path_requested.as_deref())
                .unwrap_or("?"),
        );
    }
    let g = &e.groundtruth;
    if let Some(n) = &e.network {
        let ep = |x: &Option<trail::Endpoint>| {
            x.as_ref().map_or("?".to_string(), |x| {
                if x.ip.contains(':') {
                    format!("[{}]:{}", x.ip, x.port)
                } else {
                    format!("{}:{}", x.ip, x.port)
                }
            })
        };
        match (&n.src, &n.dst) {
            _ if n.protocol_name == "unix" => {
                s.push_str(&format!(
                    "unix {}",
                    g.socket_path.as_deref().unwrap_or("(unnamed)")
                ));
                if let Some(p) = g.peer_pid {
                    s.push_str(&format!(" (peer pid {p})"));
                }
            }
            (None, Some(_)) => s.push_str(&format!("{} {}", n.protocol_name, ep(&n.dst))),
            _ => s.push_str(&format!(
                "{} {} -> {}",
                n.protocol_name,
                ep(&n.src),
                ep(&n.dst)
            )),
        }
        if let (Some(o), Some(i)) = (n.bytes_out, n.bytes_in) {
            s.push_str(&format!(" (client sent {o} B, server sent {i} B)"));
        }
        if let Some(errno) = g.errno {
            s.push_str(&format!(" (failed: errno {errno})"));
        }
        return s;
    }
    if let (Some(r), Some(w)) = (g.bytes_read, g.bytes_written) {
        s.push_str(&format!(
            " (read {r} B, wrote {w} B{})",
            if g.implicit { ", implicit" } else { "" }
        ));
    }
    if let Some(errno) = g.errno {
        s.push_str(&format!(" (failed: errno {errno})"));
    }
    s
}

/// Process events, and file events with a path (or new path) under `dir`.
pub fn is_under(e: &Event, dir: &std::path::Path) -> bool {
    if e.file.is_none() && e.file_result.is_none() {
        return true;
    }
    [e.file.as_ref(), e.file_result.as_deref()].iter().any(|f| {
        f.and_then(|f| f.path.as_deref())
            .is_some_and(|p| std::path::Path::new(p).starts_with(dir))
    })
}

pub fn print_table_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<30} {:<12} {:>7} {:<15} {:<9} TARGET",
        "TIME", "SERVICE", "PID", "COMM", "ACTIVITY"
    )
}

pub fn print_table_rows(out: &mut impl Write, events: &[Event]) -> std::io::Result<()> {
    for e in events {
        writeln!(
            out,
            "{:<30} {:<12} {:>7} {:<15} {:<9} {}",
            rfc3339(e.time_ns),
            e.groundtruth.service,
            e.actor.pid,
            e.actor.name,
            e.activity_name,
            target(e)
        )?;
    }
    Ok(())
}

pub fn print_jsonl(out: &mut impl Write, events: &[Event]) -> std::io::Result<()> {
    for e in events {
        let mut v = serde_json::to_value(e).map_err(std::io::Error::other)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("time".into(), rfc3339(e.time_ns).into());
            o.insert("type_uid".into(), e.type_uid().into());
            o.insert("category_uid".into(), e.category_uid().into());
        }
        serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)?;
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
