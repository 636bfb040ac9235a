//! A JSON value that borrows from the line it was parsed from and from a per-line arena.
//!
//! Audit records are read once and only a few of their fields are looked at. The parser
//! here reads a line in one pass into a tree whose objects and arrays live in a bump
//! arena that is reset for the next line, and whose strings borrow the line (or the
//! arena, when they had escapes): no allocation per line once the arena has grown.
//! serde_json building a tree of its own cost about 290 ns per ECS line, allocating
//! every object. What it accepts is exactly what serde_json accepts (RFC 8259, nesting
//! up to 127 levels): a test compares the two on valid, invalid and mutated lines.
//! Objects are their members in order (a record has a handful of keys: a linear search
//! is faster than a map), and a repeated key means its last value, as with
//! `serde_json::Value`.

use bumpalo::Bump;
use serde::{
    ser::{SerializeMap, SerializeSeq},
    Serialize, Serializer,
};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number<'a>),
    String(&'a str),
    Array(&'a [Value<'a>]),
    Object(Object<'a>),
}

/// A JSON number as written (checked: serde_json reads it). Converted when asked: most
/// records' numbers are never looked at, and the text keeps [`Value`] `Copy`.
#[derive(Clone, Copy, Debug)]
pub struct Number<'a>(&'a str);

impl Number<'_> {
    /// The number as serde_json reads it (integers that fit u64/i64 stay integers).
    pub fn get(&self) -> serde_json::Number {
        match self.plain() {
            Some(n) => n.into(),
            // Checked when parsed; the fallback is never taken.
            None => self.0.parse().unwrap_or_else(|_| 0.into()),
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.plain().or_else(|| self.get().as_u64())
    }

    /// Plain digits (pids, ports, epoch times), up to 19 of them (always in range),
    /// converted directly.
    fn plain(&self) -> Option<u64> {
        let t = self.0.as_bytes();
        ((1..=19).contains(&t.len()) && t.iter().all(u8::is_ascii_digit))
            .then(|| t.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
    }
}

impl PartialEq for Number<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// As serde_json writes the number.
impl fmt::Display for Number<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// A JSON object's members in the order written.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Object<'a>(pub &'a [(&'a str, Value<'a>)]);

impl<'a> Object<'a> {
    /// The value of `key` (the last one when the key is repeated).
    pub fn get(&self, key: &str) -> Option<&'a Value<'a>> {
        self.0.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> Value<'a> {
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// Parse JSON text (the whole text: trailing characters other than white space
    /// are an error); objects, arrays and unescaped strings go into `arena`.
    pub fn parse(text: &'a str, arena: &'a Bump) -> Result<Value<'a>, Error> {
        let mut p = Parser {
            text,
            b: text.as_bytes(),
            i: 0,
            arena,
            members: bumpalo::collections::Vec::with_capacity_in(16, arena),
            items: bumpalo::collections::Vec::with_capacity_in(8, arena),
        };
        let v = p.value(0)?;
        p.ws();
        if p.i < p.b.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(v)
    }
}

/// Why a text is not JSON, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    what: &'static str,
    /// 1-based byte column.
    column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at line 1 column {}", self.what, self.column)
    }
}

impl std::error::Error for Error {}

/// serde_json's nesting limit: it refuses the 128th level of arrays and objects.
const MAX_DEPTH: usize = 127;

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    arena: &'a Bump,
    /// Members and items of the objects and arrays being read, innermost last; each is
    /// copied into the arena as one slice when it ends.
    members: bumpalo::collections::Vec<'a, (&'a str, Value<'a>)>,
    items: bumpalo::collections::Vec<'a, Value<'a>>,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> Error {
        Error {
            what,
            column: self.i.min(self.b.len()) + 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skip white space (one compare when there is none, as between most tokens).
    #[inline(always)]
    fn ws(&mut self) {
        if self.peek().is_some_and(|b| b > b' ') {
            return;
        }
        self.ws_slow();
    }

    #[inline(never)]
    fn ws_slow(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.ws();
        match self.peek() {
            None => Err(self.err("EOF while parsing a value")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected value")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Value<'a>) -> Result<Value<'a>, Error> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, converted as serde_json does
    /// (integers that fit u64/i64 stay integers, others become f64; out of range is an
    /// error).
    fn number(&mut self) -> Result<Value<'a>, Error> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        // A digit right after a leading zero ("01") is not a number.
        if let Some(b'0'..=b'9') = self.peek() {
            return Err(self.err("invalid number"));
        }
        let t = &self.text[start..self.i];
        // Integers of up to 19 digits are in range whatever their sign; other numbers
        // are checked as serde_json reads them (it refuses what overflows an f64).
        let digits = t.len() - usize::from(t.starts_with('-'));
        if digits > 19 || t.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            t.parse::<serde_json::Number>().map_err(|_| Error {
                what: "number out of range",
                column: start + 1,
            })?;
        }
        Ok(Value::Number(Number(t)))
    }

    /// A string at `"`: borrowed from the text without escapes, else decoded into the
    /// arena.
    #[inline(always)]
    fn string(&mut self) -> Result<&'a str, Error> {
        self.i += 1;
        let start = self.i;
        self.skip_plain();
        if self.peek() == Some(b'"') {
            let s = self.between(start);
            self.i += 1;
            return Ok(s);
        }
        self.string_rest(start)
    }

    /// The rest of a string from `start` that is not plain up to its end: escapes,
    /// control characters, a missing end, or plain bytes `skip_plain` left.
    #[inline(never)]
    fn string_rest(&mut self, start: usize) -> Result<&'a str, Error> {
        loop {
            match self.peek() {
                None => return Err(self.err("EOF while parsing a string")),
                Some(b'"') => {
                    let s = &self.text[start..self.i];
                    self.i += 1;
                    return Ok(s);
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => {
                    return Err(self.err("control character found while parsing a string"))
                }
                Some(_) => self.i += 1,
            }
        }
        let mut out =
            bumpalo::collections::String::from_str_in(&self.text[start..self.i], self.arena);
        loop {
            match self.peek() {
                None => return Err(self.err("EOF while parsing a string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out.into_bump_str());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        None => return Err(self.err("EOF while parsing a string")),
                        Some(_) => return Err(self.err("invalid escape")),
                    };
                    self.i += 1;
                    out.push(c);
                }
                Some(0..=0x1f) => {
                    return Err(self.err("control character found while parsing a string"))
                }
                Some(_) => {
                    // Copy up to the next quote, escape or control character at once
                    // (the text is UTF-8 and those are ASCII: boundaries are safe).
                    let from = self.i;
                    while let Some(b) = self.peek() {
                        if b == b'"' || b == b'\\' || b < 0x20 {
                            break;
                        }
                        self.i += 1;
                    }
                    out.push_str(&self.text[from..self.i]);
                }
            }
        }
    }

    /// The text from `start` (just after a `"`) to the current position (at a `"`):
    /// both are next to an ASCII byte, so on character boundaries of the UTF-8 text.
    #[inline(always)]
    fn between(&self, start: usize) -> &'a str {
        debug_assert!(self.b[start - 1] == b'"' && self.b[self.i] == b'"');
        // SAFETY: `start` follows and `self.i` is at an ASCII quote of `self.text`
        // (checked by the callers, and above in debug builds), so both are within
        // the text and on character boundaries.
        unsafe { self.text.get_unchecked(start..self.i) }
    }

    /// Skip string bytes that need no attention (not `"`, `\\` or a control
    /// character), eight at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
            // Bytes below 0x20, equal to '"', equal to '\\' (a high byte, as in
            // UTF-8 text, never sets the "below" test: `& !x` clears it).
            let stop = (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
                | zero(x ^ (ONES * b'"' as u64))
                | zero(x ^ (ONES * b'\\' as u64));
            if stop != 0 {
                self.i += (stop.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                None => return Err(self.err("EOF while parsing a string")),
                Some(_) => return Err(self.err("invalid escape")),
            };
            v = v * 16 + d as u16;
            self.i += 1;
        }
        Ok(v)
    }

    /// After `\u`: one code point, a surrogate pair when it takes two escapes.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let hi = self.hex4()?;
        match hi {
            0xD800..=0xDBFF => {
                if !self.b[self.i..].starts_with(b"\\u") {
                    return Err(self.err("lone leading surrogate in hex escape"));
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.err("lone leading surrogate in hex escape"));
                }
                let c = 0x10000 + (((hi as u32) - 0xD800) << 10) + ((lo as u32) - 0xDC00);
                char::from_u32(c).ok_or_else(|| self.err("invalid unicode code point"))
            }
            0xDC00..=0xDFFF => Err(self.err("lone trailing surrogate in hex escape")),
            c => char::from_u32(c as u32).ok_or_else(|| self.err("invalid unicode code point")),
        }
    }

    /// Step over a container's opening bracket: whether it closes right away with
    /// `close` (an empty container), after the depth check.
    fn open(&mut self, depth: usize, close: u8) -> Result<bool, Error> {
        if depth > MAX_DEPTH {
            return Err(self.err("recursion limit exceeded"));
        }
        self.i += 1;
        self.ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.i += 1;
        }
        Ok(empty)
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        if self.open(depth, b'}')? {
            return Ok(Value::Object(Object(&[])));
        }
        let start = self.members.len();
        loop {
            self.ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err("EOF while parsing an object")),
                Some(_) => return Err(self.err("key must be a string")),
            }
            let k = self.string()?;
            self.ws();
            match self.peek() {
                Some(b':') => self.i += 1,
                None => return Err(self.err("EOF while parsing an object")),
                Some(_) => return Err(self.err("expected `:`")),
            }
            // A string member (most are) is read here: returned through `value`, the
            // value went through memory and back, a tenth of the parse.
            self.ws();
            let v = if self.peek() == Some(b'"') {
                Value::String(self.string()?)
            } else {
                self.value(depth)?
            };
            self.members.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.err("EOF while parsing an object")),
                Some(_) => return Err(self.err("expected `,` or `}`")),
            }
        }
        let members = self.arena.alloc_slice_copy(&self.members[start..]);
        self.members.truncate(start);
        Ok(Value::Object(Object(members)))
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        if self.open(depth, b']')? {
            return Ok(Value::Array(&[]));
        }
        let start = self.items.len();
        loop {
            let v = self.value(depth)?;
            self.items.push(v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.err("EOF while parsing a list")),
                Some(_) => return Err(self.err("expected `,` or `]`")),
            }
        }
        let items = self.arena.alloc_slice_fill_iter(self.items.drain(start..));
        Ok(Value::Array(items))
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.get().serialize(s),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a.iter() {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut m = s.serialize_map(Some(o.0.len()))?;
                for (k, v) in o.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// JSON text, as serde_json writes it.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our parse of `t` next to serde_json's: both refuse it, or both accept it with the
    /// same value (ours written back as JSON and read by serde_json).
    fn same_as_serde(t: &str) {
        let arena = Bump::new();
        let ours = Value::parse(t, &arena);
        let theirs = serde_json::from_str::<serde_json::Value>(t);
        match (&ours, &theirs) {
            (Ok(o), Ok(th)) => {
                let back: serde_json::Value = serde_json::from_str(&o.to_string()).unwrap();
                assert!(close(&back, th), "{t:?}: ours {back:?}, serde_json {th:?}");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("{t:?}: ours {ours:?}, serde_json {theirs:?}"),
        }
    }

    /// Equal, except that floats may differ in their last bits: serde_json's default
    /// float parsing is not correctly rounded and depends on where the number is.
    fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (a, b) {
            (J::Number(x), J::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
            }
            (J::Array(x), J::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
            }
            (J::Object(x), J::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            _ => a == b,
        }
    }

    #[test]
    fn parses_like_serde_json_and_borrows() {
        let texts = [
            r#"{"a":{"b":[1,-2,3.5,"x\"y",null,true]},"c":"d","a.b":{}}"#,
            r#"{"k":1,"k":2}"#,
            r#"[]"#,
            r#""\u00e9t\u00e9""#,
            r#"18446744073709551615"#,
            r#"{"é":"ü","esc\\aped":"\n"}"#,
        ];
        for t in texts {
            same_as_serde(t);
        }
        let arena = Bump::new();
        let text = r#"{"k":1,"k":"last","s":"plain","e":"a\nb"}"#;
        let v = Value::parse(text, &arena).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.get("k").and_then(Value::as_str), Some("last"));
        let plain = o.get("s").and_then(Value::as_str).unwrap();
        assert!(
            text.as_bytes().as_ptr_range().contains(&plain.as_ptr()),
            "borrowed"
        );
        assert_eq!(o.get("e").and_then(Value::as_str), Some("a\nb"));
        assert_eq!(o.get("missing"), None);
        for bad in ["{", r#"{"a":}"#, "[1,]", "{} x", "", "\"\\x\""] {
            assert!(Value::parse(bad, &arena).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        let cases = [
            "0",
            "-0",
            "01",
            "-01",
            "1.",
            "1.5",
            ".5",
            "-",
            "1e",
            "1e+",
            "1e5",
            "1E-5",
            "2.5e+3",
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "tru",
            "true",
            "nul",
            "null ",
            " false\t",
            "\"\\u12\"",
            "\"\\uD83D\\uDE00\"",
            "\"\\uD83D\"",
            "\"\\uD83Dx\"",
            "\"\\uDE00\"",
            "\"\\uD83D\\u0041\"",
            "\"\\u0000\"",
            "\"a\tb\"",
            "\"\\/\\b\\f\\n\\r\\t\"",
            "\"\\q\"",
            "\"é\\u00e9\"",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{,}",
            "[,1]",
            "[1 2]",
            "{1:2}",
            "[\"a\",[\"b\",{}]]",
            "{\"a\":[]}",
            "\r\n[]\r\n",
            "[]]",
            "{}}",
            "\"unterminated",
            "[",
            "{\"a\":",
            "{\"a\"",
            "\"\\",
            "\"\\u",
        ];
        for t in cases {
            same_as_serde(t);
        }
        for depth in [126, 127, 128, 129] {
            same_as_serde(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            same_as_serde(&format!(
                "{}1{}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            ));
        }
    }

    /// Random single-byte changes, deletions and insertions of JSON-ish bytes in ECS
    /// lines: both parsers agree on every result (a deterministic generator, 200 000
    /// variants).
    #[test]
    fn mutated_lines_parse_as_serde_json_does() {
        let seeds = [
            r#"{"@timestamp":"2027-01-15T08:00:00.003050000Z","event":{"action":"order-created","category":["file"]},"file":{"path":"/srv/svc0/orders/0.json"},"process":{"pid":1000}}"#,
            r#"{"time":1768464000003,"class_uid":4001,"activity_id":1,"dst_endpoint":{"ip":"::1","port":8080},"msg":"a \"q\" \u00e9 \ud83d\ude00","n":[-1.5e3,0,true,false,null]}"#,
        ];
        let alphabet = b"{}[]\":,\\ -+.eE0123456789tfnu\tx\xc3\xa9";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200_000 {
            let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % (b.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < b.len() => b[at] = c,
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => b.insert(at, c),
                }
            }
            if let Ok(t) = std::str::from_utf8(&b) {
                same_as_serde(t);
            }
        }
    }

    /// Numbers as u64 (pids, ports) agree with serde_json's.
    #[test]
    fn numbers_as_u64_agree_with_serde_json() {
        let arena = Bump::new();
        for t in [
            "0",
            "7",
            "1000",
            "0000",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "-0",
            "1.0",
            "1e3",
            "12345678901234567890",
        ] {
            let theirs = serde_json::from_str::<serde_json::Value>(t).ok();
            let ours = Value::parse(t, &arena).ok();
            let (Some(theirs), Some(Value::Number(n))) = (theirs, ours) else {
                assert!(Value::parse(t, &arena).is_err(), "{t}");
                continue;
            };
            assert_eq!(n.as_u64(), theirs.as_u64(), "{t}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(Value::parse(&deep, &Bump::new()).is_err());
    }
}
