//! The trail's Parquet column encoder: events go straight into the encoded column
//! chunks of a segment's row group, without Arrow arrays in between.
//!
//! Why not `parquet::arrow::ArrowWriter`: building a record batch of the 65 leaf columns
//! and then letting the generic writer compute definition levels from its null buffers
//! and encode it took about 5 400 instructions per event, two thirds of the agent's
//! userspace work per event (`agent/examples/pipeline`). Here an event is pushed once
//! into per-leaf buffers that already hold what the page needs (a definition level byte
//! per row, strings as PLAIN bytes, integers as values for DELTA_BINARY_PACKED), and a
//! page is encoded from them with code specialised to this schema.
//!
//! The file is the same Parquet for readers as the Arrow writer's: the schema comes
//! from [`crate::schema::schema`] (also stored as `ARROW:schema` metadata, as Arrow
//! writers do), the encodings are the ones that writer used (DELTA_BINARY_PACKED
//! integers, dictionary-encoded [`DICTIONARY_COLUMNS`], PLAIN strings and booleans,
//! RLE/bit-packed hybrid levels and indices, zstd data pages v1), and the footer is
//! written by the parquet crate's file writer, to which each finished column chunk is
//! handed (`append_column`); no page index is written. Tests read files back with the
//! parquet crate's Arrow reader and compare them with the Arrow writer's file of the
//! same events.

use crate::event::{Event, FileRef, Label, Shared};
use crate::TrailError;
use parquet::{
    basic::{Compression, Encoding, ZstdLevel},
    column::writer::ColumnCloseResult,
    file::{
        metadata::ColumnChunkMetaData, statistics::Statistics, writer::SerializedRowGroupWriter,
    },
    schema::types::{ColumnDescPtr, SchemaDescriptor},
};
use rustc_hash::FxHashMap;
use std::sync::{Arc, OnceLock};

/// Leaf columns written with dictionary encoding (dotted paths): those whose values
/// repeat across many rows (a process's name, command line and executable on each of
/// its events, the activity, the service). There it saves copying and compressing the
/// same bytes per row, and readers decode an index per row instead of the text.
pub const DICTIONARY_COLUMNS: [&str; 6] = [
    "activity_name",
    "actor.process.name",
    "actor.process.cmd_line",
    "actor.process.file.path",
    "process.cmd_line",
    "groundtruth.service",
];

/// A data page is cut once a leaf holds this many rows ...
const PAGE_ROWS: usize = 16 * 1024;
/// ... or this many bytes of values (checked every [`Columns::cut_pages`]).
const PAGE_BYTES: usize = 1 << 20;
/// A dictionary larger than this stops growing: the chunk's later pages are PLAIN.
const DICT_BYTES: usize = 1 << 20;

// Parquet's enum values (parquet.thrift).
const ENC_PLAIN: i32 = 0;
const ENC_RLE: i32 = 3;
const ENC_DELTA: i32 = 5;
const ENC_RLE_DICT: i32 = 8;
const PAGE_DATA: i32 = 0;
const PAGE_DICT: i32 = 2;

/// Unsigned LEB128.
#[inline]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A page header in Thrift's compact protocol: `PageHeader { 1: type, 2:
/// uncompressed_page_size, 3: compressed_page_size, 5: data_page_header {num_values,
/// encoding, definition_level_encoding, repetition_level_encoding} | 7:
/// dictionary_page_header {num_values, encoding} }`.
fn page_header(out: &mut Vec<u8>, dict: bool, raw: usize, zipped: usize, values: usize, enc: i32) {
    // Field header: (id delta << 4) | type; i32 = 5, struct = 12.
    let i32_field = |out: &mut Vec<u8>, v: i64| {
        out.push(0x15);
        varint(out, zigzag(v));
    };
    i32_field(out, if dict { PAGE_DICT } else { PAGE_DATA } as i64);
    i32_field(out, raw as i64);
    i32_field(out, zipped as i64);
    if dict {
        out.push(0x4c); // field 7 (3 + 4), struct
        i32_field(out, values as i64);
        i32_field(out, enc as i64);
    } else {
        out.push(0x2c); // field 5 (3 + 2), struct
        i32_field(out, values as i64);
        i32_field(out, enc as i64);
        i32_field(out, ENC_RLE as i64);
        i32_field(out, ENC_RLE as i64);
    }
    out.push(0); // end of the inner struct
    out.push(0); // end of PageHeader
}

/// Definition levels of one leaf, a byte per row (after `skew` unused bytes, see
/// [`Leaf::skew`]): appending one is a store, and the page encodes them eight at a time.
struct Levels {
    bytes: Vec<u8>,
    skew: usize,
}

impl Levels {
    fn new(skew: usize) -> Self {
        Self {
            bytes: vec![0; skew],
            skew,
        }
    }

    #[inline(always)]
    fn push(&mut self, level: u8) {
        self.bytes.push(level);
    }

    /// `n` rows at `level`.
    fn push_n(&mut self, level: u8, n: u32) {
        self.bytes.resize(self.bytes.len() + n as usize, level);
    }

    /// The levels as a v1 data page has them (their length, then the RLE/bit-packed
    /// hybrid encoding); cleared.
    fn take_into(&mut self, out: &mut Vec<u8>, max_def: u8) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        hybrid(out, &self.bytes[self.skew..], bits(max_def as u64));
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.clear();
    }

    fn clear(&mut self) {
        self.bytes.truncate(self.skew);
    }
}

/// Groups of 8 values in one bit-packed run at most: its header stays one byte (as
/// parquet-mr writes them).
const PACKED_GROUPS: usize = 63;

/// The RLE/bit-packed hybrid encoding of small integers of `width` bits, decided per
/// group of 8 values: a group of one value extends or starts an RLE run, a mixed group
/// goes into a bit-packed run (readers decode a bit-packed group in bulk: one RLE run
/// per value or two, as alternating levels give, made the trail's readers slower,
/// `groundtruth analyze` by 7% on its bench's trail). The last group, when short,
/// extends the RLE run of its value or is bit-packed with zeros after its values
/// (readers know the count).
fn hybrid<T: Copy + Eq + Into<u32>>(out: &mut Vec<u8>, vals: &[T], width: u32) {
    let mut h = Runs {
        rle: None,
        packed: None,
        width,
    };
    let mut groups = vals.chunks_exact(8);
    for g in &mut groups {
        // As an array, the test of a uniform group is unrolled.
        let g: &[T; 8] = g.try_into().expect("chunks of 8");
        let v = g[0];
        h.group(out, g, g.iter().all(|&x| x == v));
    }
    let tail = groups.remainder();
    if let Some(&v) = tail.first() {
        h.group(out, tail, tail.iter().all(|&x| x == v));
    }
    h.end_rle(out);
    h.end_packed(out);
}

/// The runs [`hybrid`] has open.
struct Runs<T> {
    /// An RLE run: value, count.
    rle: Option<(T, usize)>,
    /// A bit-packed run: where its header byte is, groups so far.
    packed: Option<(usize, usize)>,
    width: u32,
}

impl<T: Copy + Eq + Into<u32>> Runs<T> {
    /// The next group of 8 values (fewer: the last); `uniform` when all are equal.
    #[inline(always)]
    fn group(&mut self, out: &mut Vec<u8>, g: &[T], uniform: bool) {
        if uniform {
            let v = g[0];
            match &mut self.rle {
                Some((rv, n)) if *rv == v => {
                    *n += g.len();
                    return;
                }
                // A new RLE run starts with a whole group (a short one is the last).
                _ if g.len() == 8 => {
                    self.end_rle(out);
                    self.end_packed(out);
                    self.rle = Some((v, 8));
                    return;
                }
                _ => {}
            }
        }
        self.end_rle(out);
        if self.packed.is_some_and(|(_, n)| n == PACKED_GROUPS) {
            self.end_packed(out);
        }
        let p = self.packed.get_or_insert_with(|| {
            out.push(0);
            (out.len() - 1, 0)
        });
        p.1 += 1;
        pack8(out, g, self.width);
    }

    fn end_rle(&mut self, out: &mut Vec<u8>) {
        if let Some((v, n)) = self.rle.take() {
            varint(out, (n as u64) << 1);
            let bytes = self.width.div_ceil(8) as usize;
            out.extend_from_slice(&v.into().to_le_bytes()[..bytes]);
        }
    }

    fn end_packed(&mut self, out: &mut [u8]) {
        if let Some((at, groups)) = self.packed.take() {
            out[at] = ((groups << 1) | 1) as u8;
        }
    }
}

/// A group of eight values of `width` bits, least significant first; when `g` holds
/// fewer (the last group), zeros after them.
#[inline]
fn pack8<T: Copy + Into<u32>>(out: &mut Vec<u8>, g: &[T], width: u32) {
    if width <= 8 {
        // Eight values of at most 8 bits fit one u64.
        let mut acc: u64 = 0;
        for (k, &x) in g.iter().enumerate() {
            acc |= (x.into() as u64) << (k as u32 * width);
        }
        out.extend_from_slice(&acc.to_le_bytes()[..width as usize]);
        return;
    }
    // Wider: dictionaries of more than 256 values.
    let values = (0..8).map(|k| g.get(k).map_or(0, |&x| x.into()) as u64);
    pack_bits(out, values, width);
}

/// `values` of `width` bits each, least significant first. The callers pack 8 or 32
/// values: a whole number of bytes at any width.
#[inline]
fn pack_bits(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, width: u32) {
    let mut acc: u128 = 0;
    let mut have = 0u32;
    for x in values {
        acc |= (x as u128) << have;
        have += width;
        if have >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            have -= 64;
        }
    }
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..(have / 8) as usize]);
}

/// A dictionary-encoded string column chunk.
#[derive(Default)]
struct Dict {
    /// Each value's index.
    index: FxHashMap<Box<[u8]>, u32>,
    /// The dictionary page's values (PLAIN).
    page: Vec<u8>,
    /// Indices of the values of the page being built.
    ids: Vec<u32>,
    /// The last few values pushed that are known by identity ([`Dict::push_known`]),
    /// and their indices.
    known: [(Option<Keep>, u32); 4],
    next_known: usize,
    /// Over [`DICT_BYTES`]: values go to `plain` from the next page on.
    full: bool,
    plain: Vec<u8>,
    count: usize,
}

/// A dictionary column's value for [`Dict::push_known`].
enum Known<'a> {
    Shared(&'a Shared),
    Static(&'static str),
    Text(&'a str),
}

impl Known<'_> {
    fn text(&self) -> &str {
        match self {
            Known::Shared(a) => a,
            Known::Static(s) => s,
            Known::Text(s) => s,
        }
    }
}

impl<'a> From<&'a Label> for Known<'a> {
    fn from(l: &'a Label) -> Self {
        match l {
            std::borrow::Cow::Borrowed(s) => Known::Static(s),
            std::borrow::Cow::Owned(s) => Known::Text(s),
        }
    }
}

/// What identifies the last value: a reference to the shared text (so that its memory
/// is not freed and reused for another text while kept), or the address and length of
/// static text.
enum Keep {
    Shared(Shared),
    Static(usize, usize),
}

impl Dict {
    /// A value that can be known by its identity: the same shared text or static text
    /// as one of the last few pushed is the same value without comparing its bytes.
    #[inline]
    fn push_known(&mut self, k: Known) {
        if !self.full {
            let same = self.known.iter().find_map(|(keep, id)| match (keep, &k) {
                (Some(Keep::Shared(a)), Known::Shared(b)) if Arc::ptr_eq(a, b) => Some(*id),
                (Some(Keep::Static(p, n)), Known::Static(s))
                    if *p == s.as_ptr() as usize && *n == s.len() =>
                {
                    Some(*id)
                }
                _ => None,
            });
            if let Some(id) = same {
                self.ids.push(id);
                return;
            }
        }
        let Some(id) = self.push(k.text().as_bytes()) else {
            return;
        };
        let keep = match k {
            Known::Shared(a) => Keep::Shared(a.clone()),
            Known::Static(s) => Keep::Static(s.as_ptr() as usize, s.len()),
            Known::Text(_) => return,
        };
        self.known[self.next_known] = (Some(keep), id);
        self.next_known = (self.next_known + 1) % self.known.len();
    }

    /// Push a value; its index, or None when the dictionary is full.
    #[inline]
    fn push(&mut self, s: &[u8]) -> Option<u32> {
        if self.full {
            plain_str(&mut self.plain, s);
            self.count += 1;
            return None;
        }
        let id = match self.index.get(s) {
            Some(&id) => id,
            None => {
                let id = self.index.len() as u32;
                plain_str(&mut self.page, s);
                self.index.insert(s.into(), id);
                id
            }
        };
        self.ids.push(id);
        Some(id)
    }

    fn len(&self) -> u32 {
        self.index.len() as u32
    }

    fn buffered(&self) -> usize {
        self.ids.len() * 4 + self.plain.len()
    }
}

#[inline(always)]
fn plain_str(out: &mut Vec<u8>, s: &[u8]) {
    // One capacity check for both parts (two `extend_from_slice` calls cost two
    // checks and two calls to copy bytes).
    out.reserve(4 + s.len());
    let at = out.len();
    // SAFETY: `reserve` made room for 4 + s.len() bytes after `at`; both copies stay in
    // it, and every byte up to the new length is written before the length is set.
    unsafe {
        let p = out.as_mut_ptr().add(at);
        std::ptr::copy_nonoverlapping((s.len() as u32).to_le_bytes().as_ptr(), p, 4);
        std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(4), s.len());
        out.set_len(at + 4 + s.len());
    }
}

/// Bits needed for `v`.
#[inline]
fn bits(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// DELTA_BINARY_PACKED, blocks of 128 values in 4 miniblocks of 32.
fn delta_encode(out: &mut Vec<u8>, v: &[i64], wide: bool) {
    varint(out, 128);
    varint(out, 4);
    varint(out, v.len() as u64);
    let Some(&first) = v.first() else {
        varint(out, 0);
        return;
    };
    varint(out, zigzag(first));
    // Differences in the physical type's width (INT32 wraps at 32 bits).
    let delta = |a: i64, b: i64| -> i64 {
        if wide {
            b.wrapping_sub(a)
        } else {
            (b as i32).wrapping_sub(a as i32) as i64
        }
    };
    let mut deltas = [0i64; 128];
    let mut i = 1;
    while i < v.len() {
        let n = (v.len() - i).min(128);
        let mut min = i64::MAX;
        for k in 0..n {
            let d = delta(v[i + k - 1], v[i + k]);
            deltas[k] = d;
            min = min.min(d);
        }
        varint(out, zigzag(min));
        // Offsets from the minimum, in the physical width.
        let off = |d: i64| -> u64 {
            if wide {
                d.wrapping_sub(min) as u64
            } else {
                (d as i32).wrapping_sub(min as i32) as u32 as u64
            }
        };
        let mut widths = [0u32; 4];
        for (m, w) in widths.iter_mut().enumerate() {
            let lo = m * 32;
            if lo >= n {
                break;
            }
            let mut or = 0u64;
            for &d in &deltas[lo..n.min(lo + 32)] {
                or |= off(d);
            }
            *w = bits(or);
        }
        out.extend(widths.iter().map(|&w| w as u8));
        for (m, &w) in widths.iter().enumerate() {
            let lo = m * 32;
            if lo >= n || w == 0 {
                continue;
            }
            // 32 values; the padding values after the last delta are 0.
            let values = (lo..lo + 32).map(|k| if k < n { off(deltas[k]) } else { 0 });
            pack_bits(out, values, w);
        }
        i += n;
    }
}

/// Dictionary indices with a leading bit width (RLE_DICTIONARY).
fn dict_ids_encode(out: &mut Vec<u8>, ids: &[u32], dict_len: u32) {
    let width = bits(dict_len.saturating_sub(1) as u64).max(1);
    out.push(width as u8);
    hybrid(out, ids, width);
}

/// One leaf column of the row group being written. Of the value buffers, the one of
/// its kind is used.
struct Leaf {
    descr: ColumnDescPtr,
    kind: Kind,
    max_def: u8,
    levels: Levels,
    /// Integers (INT32 ones sign-extended), before delta encoding, after `skew`
    /// unused ones.
    ints: Vec<i64>,
    /// The leaf's index times a cache line of values: the columns' buffers start at
    /// the same offset in their pages, and written in step, row after row, their
    /// current lines would all fall into one set of the CPU's cache and evict each
    /// other (about 20 cache misses a row, with this, 6).
    skew: usize,
    /// Strings as PLAIN: a 4-byte little-endian length, then the bytes, per value.
    plain: Vec<u8>,
    /// Booleans as PLAIN: one bit per value, least significant first.
    bits: Vec<u8>,
    /// Values in `plain` or `bits`.
    count: usize,
    dict: Box<Dict>,
    /// The row (of the row group) where the page being built starts.
    page_start: usize,
    /// The chunk's data pages so far (headers and compressed bodies).
    pages: Vec<u8>,
    rows_in_chunk: i64,
    raw_in_chunk: i64,
    encodings: Vec<Encoding>,
    /// Minimum and maximum (the `time` column's statistics).
    stats: Option<(i64, i64)>,
}

impl Leaf {
    fn buffered(&self) -> usize {
        match self.kind {
            Kind::I32 | Kind::I64 => (self.ints.len() - self.skew) * 8,
            Kind::Str => self.plain.len(),
            Kind::Bool => self.bits.len(),
            Kind::Dict => self.dict.buffered(),
        }
    }

    fn note(&mut self, e: Encoding) {
        if !self.encodings.contains(&e) {
            self.encodings.push(e);
        }
    }

    /// Encode what is buffered as one data page; `rows` is the row group's row count.
    fn page(&mut self, z: &mut Zip, rows: usize) -> Result<(), TrailError> {
        let n = rows - self.page_start;
        if n == 0 {
            return Ok(());
        }
        let body = &mut z.body;
        body.clear();
        if self.max_def > 0 {
            self.levels.take_into(body, self.max_def);
        }
        let enc = match self.kind {
            Kind::I32 | Kind::I64 => {
                if let Some((lo, hi)) = &mut self.stats {
                    for &x in &self.ints[self.skew..] {
                        *lo = (*lo).min(x);
                        *hi = (*hi).max(x);
                    }
                }
                delta_encode(body, &self.ints[self.skew..], self.kind == Kind::I64);
                self.ints.truncate(self.skew);
                ENC_DELTA
            }
            Kind::Str => {
                body.extend_from_slice(&self.plain);
                self.plain.clear();
                self.count = 0;
                ENC_PLAIN
            }
            Kind::Bool => {
                body.extend_from_slice(&self.bits);
                self.bits.clear();
                self.count = 0;
                ENC_PLAIN
            }
            Kind::Dict => {
                let d = &mut self.dict;
                if !d.ids.is_empty() {
                    dict_ids_encode(body, &d.ids, d.len());
                    d.ids.clear();
                    if d.page.len() > DICT_BYTES {
                        d.full = true;
                    }
                    ENC_RLE_DICT
                } else {
                    body.extend_from_slice(&d.plain);
                    d.plain.clear();
                    d.count = 0;
                    ENC_PLAIN
                }
            }
        };
        self.note(Encoding::RLE);
        self.note(match enc {
            ENC_DELTA => Encoding::DELTA_BINARY_PACKED,
            ENC_RLE_DICT => Encoding::RLE_DICTIONARY,
            _ => Encoding::PLAIN,
        });
        let raw = z.write_page(&mut self.pages, false, n, enc)?;
        self.raw_in_chunk += raw as i64;
        self.rows_in_chunk += n as i64;
        self.page_start = rows;
        Ok(())
    }

    /// The finished column chunk (dictionary page first) and its metadata; the leaf is
    /// empty again.
    fn chunk(
        &mut self,
        z: &mut Zip,
        level: ZstdLevel,
        rows: usize,
    ) -> Result<(Vec<u8>, ColumnCloseResult), TrailError> {
        self.page(z, rows)?;
        self.page_start = 0;
        let mut bytes = Vec::new();
        let mut raw = self.raw_in_chunk;
        let mut dict_offset = None;
        if self.kind == Kind::Dict {
            let d = &mut self.dict;
            if d.len() > 0 {
                z.body.clear();
                z.body.extend_from_slice(&d.page);
                raw += z.write_page(&mut bytes, true, d.len() as usize, ENC_PLAIN)? as i64;
                dict_offset = Some(0);
            }
            **d = Dict::default();
        }
        if dict_offset.is_some() {
            self.note(Encoding::PLAIN);
        }
        let data_offset = bytes.len() as i64;
        bytes.extend_from_slice(&self.pages);
        self.pages.clear();
        let mut b = ColumnChunkMetaData::builder(self.descr.clone())
            .set_encodings(std::mem::take(&mut self.encodings))
            .set_compression(Compression::ZSTD(level))
            .set_num_values(self.rows_in_chunk)
            .set_total_compressed_size(bytes.len() as i64)
            .set_total_uncompressed_size(raw)
            .set_data_page_offset(data_offset)
            .set_dictionary_page_offset(dict_offset);
        if let Some((lo, hi)) = self.stats {
            if self.rows_in_chunk > 0 {
                b = b.set_statistics(Statistics::int64(Some(lo), Some(hi), None, Some(0), false));
            }
            self.stats = Some((i64::MAX, i64::MIN));
        }
        let metadata = b
            .build()
            .map_err(|e| TrailError::Schema(format!("column chunk metadata: {e}")))?;
        let rows = self.rows_in_chunk as u64;
        self.rows_in_chunk = 0;
        self.raw_in_chunk = 0;
        Ok((
            bytes,
            ColumnCloseResult {
                bytes_written: metadata.compressed_size() as u64,
                rows_written: rows,
                metadata,
                bloom_filter: None,
                column_index: None,
                offset_index: None,
            },
        ))
    }
}

/// Page compression: a reused zstd context and buffers.
struct Zip {
    zstd: zstd::bulk::Compressor<'static>,
    body: Vec<u8>,
    zipped: Vec<u8>,
}

impl Zip {
    /// Compress `self.body` and append it with its header to `out`; returns the page's
    /// uncompressed size with its header.
    fn write_page(
        &mut self,
        out: &mut Vec<u8>,
        dict: bool,
        values: usize,
        enc: i32,
    ) -> Result<usize, TrailError> {
        self.zipped.clear();
        self.zipped
            .reserve(zstd::zstd_safe::compress_bound(self.body.len()));
        self.zstd
            .compress_to_buffer(&self.body[..], &mut self.zipped)
            .map_err(|e| TrailError::Schema(format!("zstd: {e}")))?;
        let start = out.len();
        page_header(out, dict, self.body.len(), self.zipped.len(), values, enc);
        let header = out.len() - start;
        out.extend_from_slice(&self.zipped);
        Ok(header + self.body.len())
    }
}

/// Leaf indices, in the schema's leaf order (checked against it by [`leaf_specs`]).
mod ix {
    pub const TIME: usize = 0;
    pub const CLASS: usize = 1;
    pub const CATEGORY: usize = 2;
    pub const ACTIVITY: usize = 3;
    pub const ACTIVITY_NAME: usize = 4;
    pub const TYPE: usize = 5;
    pub const STATUS: usize = 6;
    pub const A_PID: usize = 7;
    pub const A_TID: usize = 8;
    pub const A_UID: usize = 9;
    pub const A_GID: usize = 10;
    pub const A_NAME: usize = 11;
    pub const A_CMD: usize = 12;
    pub const A_EXE: usize = 13;
    pub const A_PPID: usize = 14;
    pub const P_PID: usize = 15;
    pub const P_NAME: usize = 16;
    pub const P_CMD: usize = 17;
    pub const P_EXE: usize = 18;
    pub const P_CWD: usize = 19;
    pub const P_CODE: usize = 20;
    pub const P_SIG: usize = 21;
    pub const P_TRUNC: usize = 22;
    pub const FILE: usize = 23;
    pub const FILE_RESULT: usize = 28;
    pub const SRC: usize = 33;
    pub const DST: usize = 35;
    pub const PROTO: usize = 37;
    pub const DIR: usize = 38;
    pub const BYTES_IN: usize = 39;
    pub const BYTES_OUT: usize = 40;
    pub const PACKETS_IN: usize = 41;
    pub const PACKETS_OUT: usize = 42;
    pub const START: usize = 43;
    pub const END: usize = 44;
    pub const G: usize = 45;
    pub const COUNT: usize = 65;
}

/// What each leaf holds, in schema order: (dotted path, kind, max definition level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    I32,
    I64,
    Str,
    Bool,
    Dict,
}

/// The Parquet schema and what kind each leaf is, or why the encoder cannot write it.
type Specs = Result<(Arc<SchemaDescriptor>, Vec<Kind>), String>;

fn leaf_specs() -> &'static Specs {
    static SPECS: OnceLock<Specs> = OnceLock::new();
    SPECS.get_or_init(|| {
        use parquet::basic::Type;
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&crate::schema::schema())
            .map_err(|e| e.to_string())?;
        if descr.num_columns() != ix::COUNT {
            return Err(format!(
                "{} leaf columns, the encoder knows {}",
                descr.num_columns(),
                ix::COUNT
            ));
        }
        let kinds = descr
            .columns()
            .iter()
            .map(|c| {
                let path = c.path().string();
                match c.physical_type() {
                    Type::INT32 => Ok(Kind::I32),
                    Type::INT64 => Ok(Kind::I64),
                    Type::BOOLEAN => Ok(Kind::Bool),
                    Type::BYTE_ARRAY if DICTIONARY_COLUMNS.contains(&path.as_str()) => {
                        Ok(Kind::Dict)
                    }
                    Type::BYTE_ARRAY => Ok(Kind::Str),
                    t => Err(format!(
                        "{path}: physical type {t} not written by the encoder"
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Arc::new(descr), kinds))
    })
}

/// The Parquet schema of a trail segment.
pub fn descriptor() -> Result<Arc<SchemaDescriptor>, TrailError> {
    leaf_specs()
        .as_ref()
        .map(|(d, _)| d.clone())
        .map_err(|e| TrailError::Schema(e.clone()))
}

/// The columns of the row group (segment) being written.
pub struct Columns {
    leaves: Box<[Leaf; ix::COUNT]>,
    /// Rows of absent optional groups not yet added to their leaves (first leaf, last
    /// leaf, rows): an event without a process or network group costs one increment
    /// instead of a null in each of its leaves.
    absent: [(usize, usize, u32); 4],
    zip: Zip,
    level: ZstdLevel,
    rows: usize,
}

impl Columns {
    pub fn new(zstd_level: i32) -> Result<Self, TrailError> {
        let (descr, kinds) = leaf_specs()
            .as_ref()
            .map_err(|e| TrailError::Schema(e.clone()))?;
        let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
        let leaves = descr
            .columns()
            .iter()
            .zip(kinds)
            .enumerate()
            .map(|(i, (c, k))| Leaf {
                descr: c.clone(),
                max_def: c.max_def_level() as u8,
                levels: Levels::new(i * 64),
                kind: *k,
                ints: vec![0; i * 8],
                skew: i * 8,
                plain: Vec::new(),
                bits: Vec::new(),
                count: 0,
                dict: Box::default(),
                page_start: 0,
                pages: Vec::new(),
                rows_in_chunk: 0,
                raw_in_chunk: 0,
                encodings: Vec::new(),
                stats: (c.path().string() == "time").then_some((i64::MAX, i64::MIN)),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice()
            .try_into()
            .map_err(|_| TrailError::Schema("leaf count".into()))?;
        Ok(Self {
            leaves,
            absent: [
                (ix::P_PID, ix::P_TRUNC, 0),
                (ix::FILE, ix::FILE + 4, 0),
                (ix::FILE_RESULT, ix::FILE_RESULT + 4, 0),
                (ix::SRC, ix::PACKETS_OUT, 0),
            ],
            zip: Zip {
                zstd: zstd::bulk::Compressor::new(level.compression_level()).map_err(|e| {
                    TrailError::Schema(format!("zstd level {}: {e}", level.compression_level()))
                })?,
                body: Vec::new(),
                zipped: Vec::new(),
            },
            level,
            rows: 0,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held: encoded pages and values not yet in a page.
    pub fn size(&self) -> usize {
        self.leaves
            .iter()
            .map(|l| l.pages.len() + l.buffered())
            .sum()
    }

    /// A row without optional group `g` (an index in `absent`).
    #[inline(always)]
    fn absent(&mut self, g: usize) {
        self.absent[g].2 += 1;
    }

    /// A row with optional group `g`: the rows without it so far go to its leaves first.
    #[inline(always)]
    fn present(&mut self, g: usize) {
        if self.absent[g].2 > 0 {
            self.catch_up(g);
        }
    }

    #[inline(never)]
    fn catch_up(&mut self, g: usize) {
        let (first, last, n) = self.absent[g];
        for l in &mut self.leaves[first..=last] {
            l.levels.push_n(0, n);
        }
        self.absent[g].2 = 0;
    }

    fn catch_up_all(&mut self) {
        for g in 0..self.absent.len() {
            self.present(g);
        }
    }

    // Appending a leaf's value for a row: `req_*` for a column without definition
    // levels (required, under required parents), `opt_*` for the others, with `base`
    // the level of a null value (the optional ancestors present).

    #[inline(always)]
    fn req_int(&mut self, i: usize, x: i64) {
        let l = &mut self.leaves[i];
        debug_assert!(l.max_def == 0 && matches!(l.kind, Kind::I32 | Kind::I64));
        l.ints.push(x);
    }

    #[inline(always)]
    fn opt_int(&mut self, i: usize, base: u8, v: Option<i64>) {
        let l = &mut self.leaves[i];
        debug_assert!(l.max_def == base + 1 && matches!(l.kind, Kind::I32 | Kind::I64));
        l.levels.push(base + v.is_some() as u8);
        if let Some(x) = v {
            l.ints.push(x);
        }
    }

    #[inline(always)]
    fn opt_str(&mut self, i: usize, base: u8, s: Option<&str>) {
        let l = &mut self.leaves[i];
        debug_assert!(l.max_def == base + 1 && l.kind == Kind::Str);
        l.levels.push(base + s.is_some() as u8);
        if let Some(s) = s {
            plain_str(&mut l.plain, s.as_bytes());
            l.count += 1;
        }
    }

    #[inline(always)]
    fn req_dict(&mut self, i: usize, k: Known) {
        let l = &mut self.leaves[i];
        debug_assert!(l.max_def == 0 && l.kind == Kind::Dict);
        l.dict.push_known(k);
    }

    #[inline(always)]
    fn opt_dict(&mut self, i: usize, base: u8, k: Option<Known>) {
        let l = &mut self.leaves[i];
        debug_assert!(l.max_def == base + 1 && l.kind == Kind::Dict);
        l.levels.push(base + k.is_some() as u8);
        if let Some(k) = k {
            l.dict.push_known(k);
        }
    }

    #[inline(always)]
    fn bool(&mut self, i: usize, base: u8, b: bool) {
        let l = &mut self.leaves[i];
        debug_assert!(l.max_def == base && l.kind == Kind::Bool);
        if l.max_def > 0 {
            l.levels.push(base);
        }
        if l.count.is_multiple_of(8) {
            l.bits.push(0);
        }
        if let Some(last) = l.bits.last_mut() {
            *last |= (b as u8) << (l.count % 8);
        }
        l.count += 1;
    }

    /// `file` (group 1) or `file_result` (group 2) at leaf `at`.
    #[inline(always)]
    fn file(&mut self, g: usize, at: usize, f: Option<&FileRef>) {
        let Some(f) = f else {
            self.absent(g);
            return;
        };
        self.present(g);
        self.opt_str(at, 1, f.path.as_deref());
        self.opt_str(at + 1, 1, f.path_requested.as_deref());
        self.opt_int(at + 2, 1, f.inode.map(|v| v as i64));
        self.opt_int(at + 3, 1, f.dev.map(|v| v as i64));
        self.bool(at + 4, 1, f.path_truncated);
    }

    /// Add one event as a row.
    pub fn push(&mut self, e: &Event) {
        use ix::*;
        self.rows += 1;
        self.req_int(TIME, e.time_ns);
        self.req_int(CLASS, e.class_uid as i64);
        self.req_int(CATEGORY, e.category_uid() as i64);
        self.req_int(ACTIVITY, e.activity_id as i64);
        self.req_dict(ACTIVITY_NAME, Known::from(&e.activity_name));
        self.req_int(TYPE, e.type_uid());
        self.req_int(STATUS, e.status_id as i64);
        let a = &e.actor;
        self.req_int(A_PID, a.pid as i32 as i64);
        self.req_int(A_TID, a.tid as i32 as i64);
        self.req_int(A_UID, a.uid as i32 as i64);
        self.req_int(A_GID, a.gid as i32 as i64);
        self.req_dict(A_NAME, Known::Shared(&a.name));
        self.opt_dict(A_CMD, 0, a.cmd_line.as_ref().map(Known::Shared));
        self.opt_dict(A_EXE, 0, a.exe.as_ref().map(Known::Shared));
        self.req_int(A_PPID, a.ppid as i32 as i64);
        match e.process.as_deref() {
            Some(p) => {
                self.present(0);
                self.opt_int(P_PID, 0, Some(p.pid as i32 as i64));
                self.opt_str(P_NAME, 1, p.name.as_deref());
                self.opt_dict(P_CMD, 1, p.cmd_line.as_ref().map(Known::Shared));
                self.opt_str(P_EXE, 1, p.exe.as_deref());
                self.opt_str(P_CWD, 1, p.cwd.as_deref());
                self.opt_int(P_CODE, 1, p.exit_code.map(i64::from));
                self.opt_int(P_SIG, 1, p.exit_signal.map(i64::from));
                self.bool(P_TRUNC, 1, p.args_truncated);
            }
            None => self.absent(0),
        }
        self.file(1, FILE, e.file.as_ref());
        self.file(2, FILE_RESULT, e.file_result.as_deref());
        match e.network.as_deref() {
            Some(n) => {
                self.present(3);
                for (at, end) in [(SRC, &n.src), (DST, &n.dst)] {
                    self.opt_str(at, 0, end.as_ref().map(|x| x.ip.as_str()));
                    self.opt_int(at + 1, 0, end.as_ref().map(|x| x.port as i64));
                }
                self.opt_str(PROTO, 0, Some(&n.protocol_name));
                self.opt_int(DIR, 0, Some(n.direction_id as i64));
                // The traffic group is present when bytes are.
                let t = n.bytes_in.is_some() || n.bytes_out.is_some();
                for (i, v) in [
                    (BYTES_IN, n.bytes_in),
                    (BYTES_OUT, n.bytes_out),
                    (PACKETS_IN, n.packets_in),
                    (PACKETS_OUT, n.packets_out),
                ] {
                    match t {
                        true => self.opt_int(i, 1, v.map(|v| v as i64)),
                        false => self.leaves[i].levels.push(0),
                    }
                }
            }
            None => self.absent(3),
        }
        self.opt_int(START, 0, e.start_time_ns);
        self.opt_int(END, 0, e.end_time_ns);
        let g = &e.groundtruth;
        self.req_int(G, g.cpu as i32 as i64);
        self.req_int(G + 1, g.sequence as i64);
        self.req_int(G + 2, g.cgroup_id as i64);
        self.req_dict(G + 3, Known::Shared(&g.service));
        self.opt_str(G + 4, 0, g.syscall.as_deref());
        self.opt_int(G + 5, 0, g.ret);
        self.opt_int(G + 6, 0, g.errno.map(i64::from));
        self.opt_int(G + 7, 0, g.flags.map(|v| v as i64));
        self.opt_int(G + 8, 0, g.mode.map(|v| v as i32 as i64));
        self.opt_int(G + 9, 0, g.owner_uid.map(|v| v as i32 as i64));
        self.opt_int(G + 10, 0, g.owner_gid.map(|v| v as i32 as i64));
        self.opt_int(G + 11, 0, g.length);
        self.opt_int(G + 12, 0, g.fd.map(i64::from));
        self.opt_int(G + 13, 0, g.bytes_read.map(|v| v as i64));
        self.opt_int(G + 14, 0, g.bytes_written.map(|v| v as i64));
        self.bool(G + 15, 0, g.implicit);
        self.opt_int(G + 16, 0, g.connection_id.map(|v| v as i64));
        self.opt_str(G + 17, 0, g.socket_path.as_deref());
        self.opt_int(G + 18, 0, g.peer_pid.map(|v| v as i32 as i64));
        self.bool(G + 19, 0, g.created);
    }

    /// Forget the buffered rows without writing them (how `agent/examples/pipeline`
    /// measures appending rows apart from encoding pages).
    pub fn discard(&mut self) {
        for l in self.leaves.iter_mut() {
            l.levels.clear();
            l.ints.truncate(l.skew);
            l.plain.clear();
            l.bits.clear();
            l.count = 0;
            l.dict.ids.clear();
            l.dict.plain.clear();
            l.dict.count = 0;
            l.page_start = 0;
            l.pages.clear();
            l.rows_in_chunk = 0;
            l.raw_in_chunk = 0;
            l.encodings.clear();
        }
        for g in &mut self.absent {
            g.2 = 0;
        }
        self.rows = 0;
    }

    /// Encode a data page of every leaf that holds enough for one.
    pub fn cut_pages(&mut self) -> Result<(), TrailError> {
        self.catch_up_all();
        for l in self.leaves.iter_mut() {
            if self.rows - l.page_start >= PAGE_ROWS || l.buffered() >= PAGE_BYTES {
                l.page(&mut self.zip, self.rows)?;
            }
        }
        Ok(())
    }

    /// Write the buffered rows as a row group; the columns are empty again.
    pub fn write_row_group<W: std::io::Write + Send>(
        &mut self,
        rg: &mut SerializedRowGroupWriter<'_, W>,
    ) -> Result<(), TrailError> {
        self.catch_up_all();
        for l in self.leaves.iter_mut() {
            let (bytes, close) = l.chunk(&mut self.zip, self.level, self.rows)?;
            rg.append_column(&bytes::Bytes::from(bytes), close)
                .map_err(|e| TrailError::Schema(format!("appending a column chunk: {e}")))?;
        }
        self.rows = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::*;
    use crate::{reader, RunInfo, TrailWriter, WriterOptions};

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// Values that delta encoding finds hard and easy: constants, small steps,
        /// random bits of every width, extremes.
        fn int(&mut self, prev: u64) -> u64 {
            match self.pick(6) {
                0 => prev,
                1 => prev.wrapping_add(self.pick(16)),
                2 => self.next() >> self.pick(64),
                3 => [
                    0,
                    u64::MAX,
                    i64::MAX as u64,
                    i64::MIN as u64,
                    u32::MAX as u64,
                ][self.pick(5) as usize],
                _ => self.next(),
            }
        }
        fn opt<T>(&mut self, v: T) -> Option<T> {
            (self.pick(3) != 0).then_some(v)
        }
    }

    /// Events with every column present or absent at random, and integers of every shape.
    fn random_events(n: usize, seed: u64) -> Vec<Event> {
        let mut r = Rng(seed);
        let mut prev = 0u64;
        let cmds: Vec<Shared> = (0..5).map(|i| format!("cmd --n {i}").into()).collect();
        (0..n)
            .map(|i| {
                let mut x = || {
                    prev = r.int(prev);
                    prev
                };
                let (a, b, c, d, e, f, g, h) = (x(), x(), x(), x(), x(), x(), x(), x());
                let mut ev = Event {
                    time_ns: a as i64,
                    class_uid: b as i32,
                    activity_id: c as i32,
                    activity_name: ["Open", "Close", "Rename"][i % 3].into(),
                    status_id: d as i32,
                    actor: Actor {
                        pid: e as u32,
                        tid: f as u32,
                        uid: g as u32,
                        gid: h as u32,
                        name: "w".into(),
                        cmd_line: {
                            let c = cmds[r.pick(5) as usize].clone();
                            r.opt(c)
                        },
                        exe: r.opt("/bin/w".into()),
                        ppid: (a ^ h) as u32,
                    },
                    groundtruth: Extra {
                        cpu: (b >> 7) as u32,
                        sequence: c.rotate_left(3),
                        cgroup_id: d ^ e,
                        service: ["s1", "s2"][i % 2].into(),
                        syscall: r.opt("openat".into()),
                        ret: r.opt(f as i64),
                        errno: r.opt(g as i32),
                        flags: r.opt(h),
                        mode: r.opt(a as u32),
                        owner_uid: r.opt(b as u32),
                        owner_gid: r.opt(c as u32),
                        length: r.opt(d as i64),
                        fd: r.opt(e as i32),
                        bytes_read: r.opt(f),
                        bytes_written: r.opt(g),
                        implicit: r.pick(2) == 0,
                        connection_id: r.opt(h),
                        socket_path: r.opt(format!("@s{i}")),
                        peer_pid: r.opt(a as u32),
                        created: r.pick(2) == 0,
                    },
                    ..Default::default()
                };
                if r.pick(2) == 0 {
                    ev.process = Some(Box::new(TargetProcess {
                        pid: b as u32,
                        name: r.opt("p".into()),
                        cmd_line: {
                            let c = cmds[r.pick(5) as usize].clone();
                            r.opt(c)
                        },
                        exe: r.opt("/bin/p".into()),
                        cwd: r.opt(format!("/d{i}")),
                        exit_code: r.opt(c as i32),
                        exit_signal: r.opt(d as i32),
                        args_truncated: r.pick(2) == 0,
                    }));
                }
                for slot in 0..2 {
                    if r.pick(2) == 0 {
                        let f = FileRef {
                            path: r.opt(format!("/f/{i}/{slot}")),
                            path_requested: r.opt("rel".into()),
                            inode: r.opt(e),
                            dev: r.opt(f),
                            path_truncated: r.pick(2) == 0,
                        };
                        if slot == 0 {
                            ev.file = Some(f);
                        } else {
                            ev.file_result = Some(Box::new(f));
                        }
                    }
                }
                if r.pick(2) == 0 {
                    let end = |r: &mut Rng| {
                        let ep = Endpoint {
                            ip: format!("10.0.0.{}", r.pick(256)),
                            port: r.next() as u16,
                        };
                        r.opt(ep)
                    };
                    ev.network = Some(Box::new(Network {
                        src: end(&mut r),
                        dst: end(&mut r),
                        protocol_name: "tcp".into(),
                        direction_id: r.pick(3) as i32,
                        bytes_in: r.opt(g),
                        bytes_out: r.opt(h),
                        packets_in: r.opt(a),
                        packets_out: r.opt(b),
                    }));
                }
                ev.start_time_ns = r.opt(c as i64);
                ev.end_time_ns = r.opt(d as i64);
                ev
            })
            .collect()
    }

    fn write(dir: &std::path::Path, events: &[Event], opts: WriterOptions) {
        let mut w = TrailWriter::create(dir, RunInfo::default(), opts).unwrap();
        for e in events {
            w.push(e.clone()).unwrap();
        }
        w.finish().unwrap();
    }

    fn read(dir: &std::path::Path) -> Vec<Event> {
        reader::stream_events(dir)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// What the trail reader gives back for what was written: values that the events
    /// cannot carry through the schema (a traffic group is present only with bytes)
    /// normalised the way the schema defines them.
    fn as_stored(mut e: Event) -> Event {
        if let Some(n) = e.network.as_mut() {
            if n.bytes_in.is_none() && n.bytes_out.is_none() {
                n.packets_in = None;
                n.packets_out = None;
            }
        }
        e
    }

    #[test]
    fn random_events_read_back_exactly_across_pages() {
        // More rows than a page holds, in batches that do not divide it.
        let events = random_events(PAGE_ROWS + 3 * 1000 + 17, 7);
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &events,
            WriterOptions {
                batch_rows: 1000,
                ..Default::default()
            },
        );
        let back = read(dir.path());
        assert_eq!(back.len(), events.len());
        for (i, (b, e)) in back.into_iter().zip(events).enumerate() {
            assert_eq!(b, as_stored(e), "row {i}");
        }
    }

    /// The file reads as the same record batch as the Arrow writer's file of the same
    /// events (what this encoder replaced), with the trail's Arrow schema.
    #[test]
    fn files_read_as_the_arrow_writers_file_of_the_same_events() {
        let events = random_events(3000, 11);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &events, WriterOptions::default());
        let arrow_file = dir.path().join("arrow.parquet");
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&arrow_file).unwrap(),
            crate::schema::schema(),
            None,
        )
        .unwrap();
        w.write(&crate::schema::to_batch(&events).unwrap()).unwrap();
        w.close().unwrap();
        let read_batch = |p: std::path::PathBuf| {
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(p).unwrap(),
            )
            .unwrap()
            .with_batch_size(events.len())
            .build()
            .unwrap();
            use arrow_array::RecordBatchReader;
            assert_eq!(r.schema(), crate::schema::schema());
            let mut b: Vec<_> = r.map(Result::unwrap).collect();
            assert_eq!(b.len(), 1);
            b.pop().unwrap()
        };
        let ours = read_batch(dir.path().join("segment-000000.parquet"));
        let theirs = read_batch(arrow_file);
        for (i, f) in theirs.schema().fields().iter().enumerate() {
            assert_eq!(
                ours.column(i).to_data(),
                theirs.column(i).to_data(),
                "column {}",
                f.name()
            );
        }
    }

    /// Many distinct long command lines: the dictionary stops at its size limit and
    /// the chunk's later pages are PLAIN; every value still reads back.
    #[test]
    fn a_full_dictionary_falls_back_to_plain_pages() {
        let n = 2 * DICT_BYTES / 500 + 100;
        let events: Vec<Event> = (0..n)
            .map(|i| Event {
                time_ns: i as i64,
                activity_name: "Open".into(),
                actor: Actor {
                    cmd_line: Some(format!("{i:0500}").into()),
                    ..Default::default()
                },
                groundtruth: Extra {
                    sequence: i as u64,
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &events,
            WriterOptions {
                batch_rows: 256,
                ..Default::default()
            },
        );
        assert_eq!(read(dir.path()), events);
        use parquet::file::reader::FileReader;
        let f = parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(dir.path().join("segment-000000.parquet")).unwrap(),
        )
        .unwrap();
        let c = f
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "actor.process.cmd_line")
            .unwrap()
            .clone();
        let enc: Vec<Encoding> = c.encodings().collect();
        assert!(enc.contains(&Encoding::RLE_DICTIONARY), "{enc:?}");
        assert!(enc.contains(&Encoding::PLAIN), "{enc:?}");
    }

    #[test]
    fn the_time_column_has_its_range_as_statistics() {
        let events = random_events(500, 3);
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &events, WriterOptions::default());
        use parquet::file::reader::FileReader;
        let f = parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(dir.path().join("segment-000000.parquet")).unwrap(),
        )
        .unwrap();
        let c = f.metadata().row_group(0).column(0).clone();
        assert_eq!(c.column_path().string(), "time");
        let lo = events.iter().map(|e| e.time_ns).min().unwrap();
        let hi = events.iter().map(|e| e.time_ns).max().unwrap();
        match c.statistics() {
            Some(Statistics::Int64(s)) => {
                assert_eq!((s.min_opt(), s.max_opt()), (Some(&lo), Some(&hi)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_leaves_are_the_schemas() {
        let d = descriptor().unwrap();
        let names: Vec<String> = d.columns().iter().map(|c| c.path().string()).collect();
        for (i, name) in [
            (ix::TIME, "time"),
            (ix::ACTIVITY_NAME, "activity_name"),
            (ix::A_PPID, "actor.process.parent_process.pid"),
            (ix::P_PID, "process.pid"),
            (ix::P_TRUNC, "process.args_truncated"),
            (ix::FILE, "file.path"),
            (ix::FILE_RESULT, "file_result.path"),
            (ix::SRC, "src_endpoint.ip"),
            (ix::DST, "dst_endpoint.ip"),
            (ix::PROTO, "connection_info.protocol_name"),
            (ix::BYTES_IN, "traffic.bytes_in"),
            (ix::PACKETS_OUT, "traffic.packets_out"),
            (ix::START, "start_time"),
            (ix::G, "groundtruth.cpu"),
            (ix::COUNT - 1, "groundtruth.created"),
        ] {
            assert_eq!(names[i], name);
        }
    }
}
