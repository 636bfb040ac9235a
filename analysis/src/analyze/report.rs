//! The analysis report: built once, printed as text, JSON (a stable, documented schema)
//! or JUnit XML.

use super::{
    audit::LogStats,
    expect::Expectations,
    fold::FoldStats,
    matcher::{Finding, Outcome},
    Class,
};
use serde::Serialize;
use std::io::Write;

/// The JSON report's schema name; bumped on any incompatible change.
pub const SCHEMA: &str = "groundtruth.analyze/1";

#[derive(Serialize)]
pub struct TrailInfo {
    pub dir: String,
    /// False only with --no-verify on a trail that does not verify.
    pub verified: bool,
    pub verification_skipped: bool,
    pub run_id: Option<String>,
    pub events: u64,
    /// What the kernel side could not record during the run (from the trail's last
    /// footer): kernel actions missing from the trail, so an `unsupported` finding may be
    /// one of them.
    pub lost_events: u64,
    pub kernel_gaps: std::collections::BTreeMap<String, u64>,
}

impl TrailInfo {
    /// The warning the text report prints when the kernel evidence is incomplete.
    pub fn incomplete(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        if self.lost_events > 0 {
            parts.push(format!(
                "{} events lost (ring buffer full)",
                self.lost_events
            ));
        }
        parts.extend(trail::gap_texts(&self.kernel_gaps));
        (!parts.is_empty()).then(|| {
            format!(
                "WARNING: the kernel evidence is incomplete ({}): an unsupported finding may be \
                 an action the kernel could not record",
                parts.join(", ")
            )
        })
    }
}

#[derive(Serialize)]
pub struct CoverageRow {
    pub service: String,
    pub class: Class,
    pub required: u64,
    pub audited: u64,
}

#[derive(Serialize)]
pub struct RuleRow {
    pub service: String,
    pub rule: String,
    pub required: u64,
    pub audited: u64,
}

#[derive(Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub kernel_actions: u64,
    pub records: u64,
    pub records_supported: u64,
    pub unaudited: u64,
    pub unsupported: u64,
    pub skew_median_abs_ns: Option<i64>,
    pub skew_max_abs_ns: Option<i64>,
}

#[derive(Serialize)]
pub struct SkewSummary {
    pub matched: u64,
    /// Median |record time - kernel time| (to about 6%); 0 when the record's time falls
    /// inside the action (between a file's open and close).
    pub median_abs_ns: Option<i64>,
    pub max_abs_ns: Option<i64>,
    /// Matched records whose time is before the action began.
    pub records_before_action: u64,
}

#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// True when there are no findings.
    pub ok: bool,
    pub trail: TrailInfo,
    pub window_ns: i64,
    pub expectations: String,
    pub findings: Vec<Finding>,
    pub coverage: Vec<CoverageRow>,
    pub rules: Vec<RuleRow>,
    pub services: Vec<ServiceRow>,
    pub skew: SkewSummary,
    pub logs: Vec<LogStats>,
    pub kernel: FoldStats,
    /// Items that arrived later than the reorder tolerance allows (each may have been
    /// matched less well than it could be); 0 in a normal run.
    pub late_items: u64,
    /// Most actions and records held at once: the matcher's memory bound.
    pub peak_items_held: usize,
}

impl Report {
    pub fn build(
        trail: TrailInfo,
        window_ns: i64,
        expect: &Expectations,
        mut out: Outcome,
        logs: Vec<LogStats>,
        kernel: FoldStats,
    ) -> Report {
        out.findings
            .sort_by(|a, b| (&a.service, a.time_ns, a.kind).cmp(&(&b.service, b.time_ns, b.kind)));
        let count = |s: &str, k: &str| {
            out.findings
                .iter()
                .filter(|f| f.service == s && f.kind == k)
                .count() as u64
        };
        let mut coverage = Vec::new();
        let mut rules = Vec::new();
        let mut services = Vec::new();
        let has_log = |s: &str| logs.iter().any(|l| l.service == s);
        for (name, s) in &out.services {
            for (class, c) in &s.coverage {
                coverage.push(CoverageRow {
                    service: name.clone(),
                    class: *class,
                    required: c.required,
                    audited: c.audited,
                });
            }
            for (i, r) in expect.rules.iter().enumerate() {
                let applies = match &r.service {
                    Some(x) => x == name,
                    None => has_log(name),
                };
                if applies {
                    let c = s.rules.get(&i).copied().unwrap_or_default();
                    rules.push(RuleRow {
                        service: name.clone(),
                        rule: r.name.clone(),
                        required: c.required,
                        audited: c.audited,
                    });
                }
            }
            services.push(ServiceRow {
                service: name.clone(),
                kernel_actions: s.actions,
                records: s.records,
                records_supported: s.records - count(name, "unsupported"),
                unaudited: count(name, "unaudited"),
                unsupported: count(name, "unsupported"),
                skew_median_abs_ns: s.skew.median_abs_ns(),
                skew_max_abs_ns: (s.skew.count > 0).then_some(s.skew.max_abs_ns),
            });
        }
        Report {
            schema: SCHEMA,
            ok: out.findings.is_empty(),
            trail,
            window_ns,
            expectations: expect.source.clone(),
            coverage,
            rules,
            services,
            skew: SkewSummary {
                matched: out.skew.count,
                median_abs_ns: out.skew.median_abs_ns(),
                max_abs_ns: (out.skew.count > 0).then_some(out.skew.max_abs_ns),
                records_before_action: out.skew.early,
            },
            logs,
            kernel,
            late_items: out.late,
            peak_items_held: out.peak_items,
            findings: out.findings,
        }
    }

    /// Services worth a section: those with a log, a finding or a required action.
    fn shown(&self, s: &ServiceRow) -> bool {
        s.records > 0
            || s.unaudited + s.unsupported > 0
            || self.logs.iter().any(|l| l.service == s.service)
            || self
                .rules
                .iter()
                .any(|r| r.service == s.service && r.required > 0)
    }
}

/// `1.234 ms`, `2 s`.
pub fn human_ns(ns: i64) -> String {
    let a = ns.unsigned_abs() as f64;
    let (v, unit) = if a >= 1e9 {
        (ns as f64 / 1e9, "s")
    } else if a >= 1e6 {
        (ns as f64 / 1e6, "ms")
    } else if a >= 1e3 {
        (ns as f64 / 1e3, "us")
    } else {
        (ns as f64, "ns")
    };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} {unit}")
}

fn finding_lines(f: &Finding) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(k) = &f.evidence.kernel {
        let mut s = format!(
            "kernel: pid {} ({}{}) {}",
            k.pid,
            k.process,
            k.executable
                .as_deref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default(),
            if k.start == k.end {
                format!("at {}", k.end)
            } else {
                format!("from {} to {}", k.start, k.end)
            }
        );
        match (k.bytes_read, k.bytes_written) {
            (Some(r), Some(w)) if r + w > 0 => s.push_str(&format!(", read {r} B, wrote {w} B")),
            _ => {}
        }
        if let Some(id) = k.connection_id {
            s.push_str(&format!(", connection {id}"));
        }
        v.push(s);
    }
    if let Some(r) = &f.rule {
        v.push(format!("required by: {r}"));
    }
    if let Some(r) = &f.evidence.record {
        v.push(format!(
            "record: {}:{} at {}: {}",
            r.file, r.line, f.time, r.text
        ));
    }
    if f.kind == "unsupported" {
        v.push(match &f.evidence.nearest_kernel_action {
            Some(n) => format!("nearest kernel action of this class: {n}"),
            None => "no kernel action of this class by this service near that time".into(),
        });
    }
    v
}

pub fn print_text(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "trail {} ({}{} events), window {}, expectations: {}",
        r.trail.dir,
        if r.trail.verification_skipped {
            "NOT VERIFIED, "
        } else {
            "verified, "
        },
        r.trail.events,
        human_ns(r.window_ns),
        r.expectations
    )?;
    if let Some(w) = r.trail.incomplete() {
        writeln!(out, "{w}")?;
    }
    for l in &r.logs {
        writeln!(
            out,
            "log {} for {} ({}): {} lines, {} records, {} ignored (not kernel-visible){}",
            l.file,
            l.service,
            l.mapping,
            l.lines,
            l.records,
            l.ignored,
            if l.malformed > 0 {
                format!(", {} MALFORMED skipped", l.malformed)
            } else {
                String::new()
            }
        )?;
        for m in &l.malformed_examples {
            writeln!(out, "  malformed: {m}")?;
        }
    }
    for s in r.services.iter().filter(|s| r.shown(s)) {
        writeln!(out)?;
        let n = s.unaudited + s.unsupported;
        writeln!(
            out,
            "== {}: {}",
            s.service,
            if n == 0 {
                "no findings".to_string()
            } else {
                format!("{} unaudited, {} unsupported", s.unaudited, s.unsupported)
            }
        )?;
        for f in r.findings.iter().filter(|f| f.service == s.service) {
            writeln!(
                out,
                "  {} {} {}",
                f.kind.to_uppercase(),
                f.class,
                f.resource
            )?;
            for l in finding_lines(f) {
                writeln!(out, "      {l}")?;
            }
        }
        let cov: Vec<String> = r
            .coverage
            .iter()
            .filter(|c| c.service == s.service)
            .map(|c| format!("{} {}/{}", c.class, c.audited, c.required))
            .collect();
        writeln!(
            out,
            "  audited/required: {}",
            if cov.is_empty() {
                "nothing required".into()
            } else {
                cov.join(", ")
            }
        )?;
        writeln!(
            out,
            "  records backed by the kernel: {}/{}; kernel actions: {}{}",
            s.records_supported,
            s.records,
            s.kernel_actions,
            match (s.skew_median_abs_ns, s.skew_max_abs_ns) {
                (Some(m), Some(x)) => format!("; skew median {}, max {}", human_ns(m), human_ns(x)),
                _ => String::new(),
            }
        )?;
        if !r.logs.iter().any(|l| l.service == s.service) {
            writeln!(out, "  (no --audit-log for this service)")?;
        }
    }
    writeln!(out)?;
    let skipped: Vec<String> = r
        .services
        .iter()
        .filter(|s| !r.shown(s) && s.kernel_actions > 0)
        .map(|s| format!("{} ({} kernel actions)", s.service, s.kernel_actions))
        .collect();
    if !skipped.is_empty() {
        writeln!(out, "not analyzed (no --audit-log): {}", skipped.join(", "))?;
    }
    if let (Some(m), Some(x)) = (r.skew.median_abs_ns, r.skew.max_abs_ns) {
        writeln!(
            out,
            "skew: {} matched, median {}, max {} (window {}){}",
            r.skew.matched,
            human_ns(m),
            human_ns(x),
            human_ns(r.window_ns),
            if x * 2 > r.window_ns {
                "; the largest skew is over half the window: consider a larger --window"
            } else {
                ""
            }
        )?;
    }
    if r.late_items > 0 {
        writeln!(
            out,
            "warning: {} items arrived more than the reorder tolerance out of time order (logs not sorted by time?)",
            r.late_items
        )?;
    }
    let (ua, us) = count_kinds(&r.findings);
    writeln!(
        out,
        "RESULT: {}",
        if r.ok {
            "every required action is audited and every record is backed by the kernel".into()
        } else {
            format!("{} findings ({ua} unaudited, {us} unsupported)", ua + us)
        }
    )
}

fn count_kinds(f: &[Finding]) -> (usize, usize) {
    let ua = f.iter().filter(|f| f.kind == "unaudited").count();
    (ua, f.len() - ua)
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 cannot hold other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: a test suite per service; a test case per expectation rule that applies
/// to it (failing with its unaudited findings) and one for its records (failing with
/// its unsupported findings).
pub fn print_junit(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    struct Case {
        name: String,
        failures: Vec<String>,
        kind: &'static str,
        detail: String,
    }
    let mut suites: Vec<(String, Vec<Case>)> = Vec::new();
    for s in r.services.iter().filter(|s| r.shown(s)) {
        let mut cases = Vec::new();
        let text = |f: &Finding| {
            let mut t = format!("{} {} {}", f.kind.to_uppercase(), f.class, f.resource);
            for l in finding_lines(f) {
                t.push_str("\n    ");
                t.push_str(&l);
            }
            t
        };
        for rule in r.rules.iter().filter(|x| x.service == s.service) {
            cases.push(Case {
                name: rule.rule.clone(),
                failures: r
                    .findings
                    .iter()
                    .filter(|f| f.service == s.service && f.rule.as_deref() == Some(&rule.rule))
                    .map(text)
                    .collect(),
                kind: "unaudited",
                detail: format!(
                    "{}/{} required actions audited",
                    rule.audited, rule.required
                ),
            });
        }
        cases.push(Case {
            name: "audit records are backed by kernel events".into(),
            failures: r
                .findings
                .iter()
                .filter(|f| f.service == s.service && f.kind == "unsupported")
                .map(text)
                .collect(),
            kind: "unsupported",
            detail: match r.trail.incomplete() {
                Some(w) => format!("{}/{} records backed; {w}", s.records_supported, s.records),
                None => format!("{}/{} records backed", s.records_supported, s.records),
            },
        });
        suites.push((s.service.clone(), cases));
    }
    let total: usize = suites.iter().map(|s| s.1.len()).sum();
    let failed: usize = suites
        .iter()
        .flat_map(|s| &s.1)
        .filter(|c| !c.failures.is_empty())
        .count();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="groundtruth analyze" tests="{total}" failures="{failed}">"#
    )?;
    for (name, cases) in &suites {
        let f = cases.iter().filter(|c| !c.failures.is_empty()).count();
        writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{f}">"#,
            xml(name),
            cases.len()
        )?;
        for c in cases {
            write!(
                out,
                r#"    <testcase classname="groundtruth.{}" name="{}">"#,
                xml(name),
                xml(&c.name)
            )?;
            if c.failures.is_empty() {
                writeln!(
                    out,
                    "<system-out>{}</system-out></testcase>",
                    xml(&c.detail)
                )?;
            } else {
                writeln!(out)?;
                writeln!(
                    out,
                    r#"      <failure type="{}" message="{} {} ({})">{}</failure>"#,
                    c.kind,
                    c.failures.len(),
                    c.kind,
                    xml(&c.detail),
                    xml(&c.failures.join("\n"))
                )?;
                writeln!(out, "    </testcase>")?;
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}

pub fn print_json(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, r).map_err(std::io::Error::other)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_and_xml_escaping() {
        assert_eq!(human_ns(2_000_000_000), "2 s");
        assert_eq!(human_ns(1_234_000), "1.234 ms");
        assert_eq!(human_ns(-1_500), "-1.5 us");
        assert_eq!(human_ns(12), "12 ns");
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
    }
}
