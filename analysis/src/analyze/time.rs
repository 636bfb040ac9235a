//! Timestamps in audit logs: RFC 3339 text, or a number of seconds, milliseconds,
//! microseconds or nanoseconds since the Unix epoch. Parsed exactly (no floating point),
//! to nanoseconds UTC.

use serde::Deserialize;

/// How a time field is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-11-28T04:01:51.723537093Z`, `2026-11-28 05:01:51.7+01:00`.
    Rfc3339,
    EpochS,
    EpochMs,
    EpochUs,
    EpochNs,
    /// Text is RFC 3339; a number is epoch seconds, milliseconds, microseconds or
    /// nanoseconds, told apart by its magnitude (years 2001 to 2286).
    Auto,
}

impl TimeFormat {
    pub fn name(self) -> &'static str {
        match self {
            TimeFormat::Rfc3339 => "an RFC 3339 time",
            TimeFormat::EpochS => "epoch seconds",
            TimeFormat::EpochMs => "epoch milliseconds",
            TimeFormat::EpochUs => "epoch microseconds",
            TimeFormat::EpochNs => "epoch nanoseconds",
            TimeFormat::Auto => "an RFC 3339 time or an epoch number",
        }
    }
}

/// Parse a JSON value holding a time.
pub fn parse_value(v: &super::json::Value, f: TimeFormat) -> Option<i64> {
    use super::json::Value;
    match v {
        Value::String(s) => match f {
            TimeFormat::Rfc3339 => parse_rfc3339(s),
            // RFC 3339, or an epoch number written as text (logfmt values are text).
            TimeFormat::Auto => parse_rfc3339(s).or_else(|| parse_epoch(s, f)),
            // Epoch numbers written as strings ("1700000000.5").
            _ => parse_epoch(s, f),
        },
        Value::Number(n) => match f {
            TimeFormat::Rfc3339 => None,
            _ => parse_epoch(&n.to_string(), f),
        },
        _ => None,
    }
}

/// Decimal text `123.456` (optionally with an exponent as serde_json writes large
/// floats) to an integer number of units * 10^scale, exactly.
fn decimal(s: &str, scale: u32) -> Option<i64> {
    let s = s.trim();
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let point = (int.len() as i32)
        .checked_add(scale as i32)?
        .checked_add(exp)?;
    if point < 0 {
        return Some(0);
    }
    // More than 19 integer digits cannot be an i64 (and must not allocate).
    if point > 40 {
        return None;
    }
    let point = point as usize;
    let mut digits: String = format!("{int}{frac}");
    if digits.len() < point {
        digits.extend(std::iter::repeat_n('0', point - digits.len()));
    }
    let whole = &digits[..point.min(digits.len())];
    let v: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_epoch(s: &str, f: TimeFormat) -> Option<i64> {
    let scale = match f {
        TimeFormat::EpochS => 9,
        TimeFormat::EpochMs => 6,
        TimeFormat::EpochUs => 3,
        TimeFormat::EpochNs => 0,
        TimeFormat::Auto => {
            let secs = decimal(s, 0)?.abs();
            match secs {
                1_000_000_000..=9_999_999_999 => 9,
                1_000_000_000_000..=9_999_999_999_999 => 6,
                1_000_000_000_000_000..=9_999_999_999_999_999 => 3,
                1_000_000_000_000_000_000..=i64::MAX => 0,
                _ => return None,
            }
        }
        TimeFormat::Rfc3339 => return None,
    };
    decimal(s, scale)
}

/// A run of ASCII digits as a number (at most 18 digits: it cannot overflow).
fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    b.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD(T| )HH:MM` (checked) as seconds since the epoch, the last one asked
/// remembered: a log's consecutive times mostly share their minute, and the calendar
/// arithmetic was most of parsing a time.
fn minute_of(b: &[u8; 16]) -> Option<i64> {
    thread_local! {
        static LAST: std::cell::Cell<([u8; 16], i64)> = const { std::cell::Cell::new(([0; 16], 0)) };
    }
    let (last, secs) = LAST.get();
    if last == *b {
        return Some(secs);
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (h, mi) = (num(&b[11..13])?, num(&b[14..16])?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > mdays[mo as usize - 1] || h > 23 || mi > 59 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60;
    LAST.set((*b, secs));
    Some(secs)
}

/// `YYYY-MM-DD(T| )HH:MM:SS[.fraction](Z|±HH:MM)`, to nanoseconds UTC.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let minute = minute_of(b[..16].try_into().expect("16 bytes"))?;
    let sec = num(&b[17..19])?;
    // 60 is a leap second; it is read as the next second's start.
    if sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = num(&[*h1, *h2])?;
            let om = num(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = minute + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A duration: `2s`, `500ms`, `1.5s`, `250us`, `100ns`, `1m`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let i = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("`{s}`: expected a number with a unit (ns, us, ms, s, m), e.g. 2s")
        })?;
    let (n, unit) = s.split_at(i);
    let scale = match unit {
        "ns" => 0,
        "us" | "µs" => 3,
        "ms" => 6,
        "s" => 9,
        "m" => {
            return decimal(n, 9)
                .and_then(|v| v.checked_mul(60))
                .ok_or_else(|| format!("`{s}`: not a duration"))
        }
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ns, us, ms, s, m)")),
    };
    decimal(n, scale).ok_or_else(|| format!("`{s}`: not a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The remembered minute never leaks into another time: any order of times that
    /// share, almost share or spoil each other's minute gives the same answers, and
    /// those are the calendar's.
    #[test]
    fn times_do_not_depend_on_the_time_before() {
        let times = [
            "2027-01-15T08:00:59.5Z",
            "2027-01-15T08:01:00Z",
            "2027-01-15 08:00:01+01:00",
            "2027-01-15t08:00:01Z",
            "2027-01-15X08:00:01Z",
            "2027-02-29T08:00:01Z",
            "2028-02-29T08:00:01Z",
            "2027-01-15T24:00:01Z",
            "2027-01-15T08:60:01Z",
            "2027-01-16T08:00:01Z",
            "1969-12-31T23:59:60Z",
        ];
        let forward: Vec<_> = times.iter().map(|t| parse_rfc3339(t)).collect();
        for order in [
            (0..times.len()).rev().collect::<Vec<_>>(),
            (0..times.len()).map(|i| i * 7 % times.len()).collect(),
        ] {
            for i in order {
                assert_eq!(parse_rfc3339(times[i]), forward[i], "{}", times[i]);
            }
        }
        let s = |t: &str| parse_rfc3339(t).map(|n| n.div_euclid(1_000_000_000));
        assert_eq!(s(times[0]), Some(1_800_000_059));
        assert_eq!(s(times[1]), Some(1_800_000_060));
        assert_eq!(s(times[2]), Some(1_800_000_001 - 3600));
        assert_eq!(s(times[3]), Some(1_800_000_001));
        assert_eq!(s(times[9]), Some(1_800_000_001 + 86_400));
        assert_eq!(s(times[10]), Some(0));
        for bad in [4, 5, 7, 8] {
            assert_eq!(forward[bad], None, "{}", times[bad]);
        }
        assert!(forward[6].is_some());
    }

    const T: i64 = 1_700_000_000_123_456_789; // 2023-11-14T22:13:20.123456789Z

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456789Z"), Some(T));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"),
            Some(T)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14 22:13:20.123456789123Z"),
            Some(T),
            "digits beyond ns are dropped"
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5-00:30"),
            Some(1_700_001_800_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14T22:13:20+1:00",
            "２０２３-11-14T22:13:20Z",
            "20x3-11-14T22:13:20Z",
            "2023-1a-14T22:13:20Z",
            "2023-11-14T22:13:2 Z",
            "2023-11-14T22:13:20+0a:00",
            "2023-11-14T22:13:20-01:0.",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_numbers_exactly() {
        let v = |j: serde_json::Value, f| {
            let text = j.to_string();
            parse_value(
                &super::super::json::Value::parse(&text, &bumpalo::Bump::new()).unwrap(),
                f,
            )
        };
        assert_eq!(
            v(json!(1_700_000_000), TimeFormat::EpochS),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            v(json!("1700000000.123456789"), TimeFormat::EpochS),
            Some(T)
        );
        assert_eq!(
            v(json!(1_700_000_000_123i64), TimeFormat::EpochMs),
            Some(1_700_000_000_123_000_000)
        );
        assert_eq!(
            v(json!(1_700_000_000_123_456i64), TimeFormat::EpochUs),
            Some(1_700_000_000_123_456_000)
        );
        assert_eq!(v(json!(T), TimeFormat::EpochNs), Some(T));
        assert_eq!(
            v(json!(1.7e9), TimeFormat::EpochS),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(v(json!(T), TimeFormat::Auto), Some(T));
        assert_eq!(
            v(json!(1_700_000_000_123i64), TimeFormat::Auto),
            Some(1_700_000_000_123_000_000)
        );
        assert_eq!(
            v(json!("2023-11-14T22:13:20.123456789Z"), TimeFormat::Auto),
            Some(T)
        );
        assert_eq!(v(json!(12), TimeFormat::Auto), None, "too small to tell");
        assert_eq!(v(json!(true), TimeFormat::Auto), None);
        assert_eq!(v(json!("12a"), TimeFormat::EpochS), None);
        assert_eq!(v(json!(1_700_000_000), TimeFormat::Rfc3339), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("1m"), Ok(60_000_000_000));
        assert_eq!(parse_duration("7us"), Ok(7_000));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("2h").is_err());
    }
}
