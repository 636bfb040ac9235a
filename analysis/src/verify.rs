//! Printing `groundtruth verify` reports.

use crate::events::rfc3339;
use std::io::Write;
use trail::verify::{Problem, Report};

/// One problem, e.g. `segment-000002.parquet (segment 2): hash mismatch: ...`.
pub fn problem_line(p: &Problem) -> String {
    let mut s = String::new();
    if let Some(f) = &p.file {
        s.push_str(f);
        if let Some(i) = p.segment {
            s.push_str(&format!(" (segment {i})"));
        }
        s.push_str(": ");
    }
    s.push_str(p.kind.label());
    s.push_str(": ");
    s.push_str(&p.detail);
    s
}

pub fn print_text(out: &mut impl Write, dir: &std::path::Path, r: &Report) -> std::io::Result<()> {
    for p in &r.problems {
        writeln!(out, "{}", problem_line(p))?;
    }
    writeln!(
        out,
        "{}: {} — segments valid {}/{}, events {}, lost {}{}",
        dir.display(),
        if r.ok() { "VERIFIED" } else { "NOT VERIFIED" },
        r.segments_valid,
        r.segments_total,
        r.events,
        r.lost,
        match (r.time_min_ns, r.time_max_ns) {
            (Some(a), Some(b)) => format!(", time {} .. {}", rfc3339(a), rfc3339(b)),
            _ => String::new(),
        }
    )?;
    writeln!(
        out,
        "run {}, chain head {}, first key {}{}",
        r.run_id.as_deref().unwrap_or("?"),
        r.head.as_deref().unwrap_or("?"),
        r.first_key.as_deref().unwrap_or("?"),
        r.certified_by
            .as_deref()
            .map(|k| format!(" (certified by {k})"))
            .unwrap_or_default()
    )?;
    // Not integrity, but what a reader of a verified trail must know next to `lost`.
    if let Ok(c) = trail::completeness(dir) {
        let gaps: Vec<String> = trail::gap_texts(&c.kernel_gaps).collect();
        if !gaps.is_empty() {
            writeln!(
                out,
                "kernel gaps (not recorded by the kernel side): {}",
                gaps.join(", ")
            )?;
        }
    }
    if r.ok() && !r.anchored {
        writeln!(
            out,
            "note: checked against itself only; pass --pubkey, --expect-head or --anchor to hold it against a copy kept outside the trail"
        )?;
    }
    Ok(())
}
