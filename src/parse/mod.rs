//! Reading objects into records: file-format detection by key (`.jsonl`/`.ndjson`, `.json`,
//! `.txt`, each optionally `.gz`), streaming line reading with a per-line byte limit, UTF-8 and
//! JSON validation, record-format detection ([`formats`]) and canonicalisation ([`crate::normalize`]).
//! Every bad line becomes a [`Rejection`] with its 1-based line number; nothing here panics on
//! input or stops an object early except a read error, which is reported as a rejection too.
//!
//! Files: this one holds the file formats, limits, JSON Lines and the shaping of one record;
//! `document` whole `.json`/`.txt` documents, `delimited` CSV/TSV, `columnar` Parquet and Arrow,
//! `formats` record-shape detection, `mapping` declared mappings, `derived` derive outputs.

mod columnar;
mod delimited;
pub mod derived;
mod document;
pub mod formats;
pub mod mapping;

use std::io::{BufRead, BufReader, Read};

use crate::model::{Conversation, RecordMeta, Rejection};
use crate::normalize::canonicalize;
use crate::repair::{self, Repairs};
use document::read_document;
pub use mapping::{Mapping, Mappings, Records};

/// How an object's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON record per line.
    Jsonl,
    /// A JSON array of records, or one record.
    Json,
    /// A whole file of plain text: one `text` row.
    Text,
    /// Comma- (`.csv`) or tab-separated (`.tsv`) values with a header row: each record becomes
    /// a JSON object of its columns, then a conversation by the same detection as JSON records.
    Delimited(u8),
    /// Apache Parquet, read a row group at a time; the row index is the line.
    Parquet,
    /// Arrow IPC, stream (as Hugging Face `datasets` writes `.arrow`) or file format.
    Arrow,
    /// idx's own derived objects ([`derived::DerivedLine`] per line).
    Derived,
}

/// The format of an object from its key, and whether it is gzip-compressed; `None` when the
/// object is not something idx reads as training data.
pub fn detect_file_format(key: &str) -> Option<(FileFormat, bool)> {
    let lower = key.to_ascii_lowercase();
    let (base, gz) = match lower.strip_suffix(".gz") {
        Some(b) => (b, true),
        None => (lower.as_str(), false),
    };
    let format = if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        FileFormat::Jsonl
    } else if base.ends_with(".json") {
        FileFormat::Json
    } else if base.ends_with(".txt") {
        FileFormat::Text
    } else if base.ends_with(".csv") {
        FileFormat::Delimited(b',')
    } else if base.ends_with(".tsv") {
        FileFormat::Delimited(b'\t')
    } else if base.ends_with(".parquet") {
        FileFormat::Parquet
    } else if base.ends_with(".arrow") || base.ends_with(".feather") || base.ends_with(".ipc") {
        FileFormat::Arrow
    } else {
        return None;
    };
    Some((format, gz))
}

/// The format of an object: the one its mapping declares, else by its key.
pub fn file_format(key: &str, mapping: Option<&Mapping>) -> Option<(FileFormat, bool)> {
    mapping
        .and_then(|m| m.file_format())
        .or_else(|| detect_file_format(key))
}

/// Bounds that keep memory flat whatever the input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A JSONL line longer than this is rejected without being buffered.
    pub max_line_bytes: usize,
    /// A `.json`, `.txt`, `.csv` or `.tsv` object is read whole; one larger than this is
    /// rejected.
    pub max_document_bytes: usize,
    /// A `.gz` object whose output grows past this many times the compressed bytes read (after
    /// the first `GZIP_RATIO_FLOOR` bytes) is a decompression bomb: reading stops there with a
    /// rejection at the line reached. Text compresses 3-10 times, gzip at most about 1,000.
    pub max_gzip_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 8 << 20,
            max_document_bytes: 64 << 20,
            max_gzip_ratio: 200,
        }
    }
}

/// Output a gzip stream may produce before its ratio is judged (small objects cannot hurt).
const GZIP_RATIO_FLOOR: u64 = 16 << 20;

/// Counts the bytes read through it into a shared cell (the compressed side of a gzip stream).
struct Counted<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Fails the read once a decompressor's output outgrows `max_ratio` times its input.
struct BombGuard<R> {
    inner: R,
    compressed: std::rc::Rc<std::cell::Cell<u64>>,
    out: u64,
    max_ratio: u64,
}

impl<R: Read> Read for BombGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let allowed = self.compressed.get().max(1).saturating_mul(self.max_ratio);
        if self.out > GZIP_RATIO_FLOOR && self.out > allowed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "gzip data expands more than {} times ({} bytes from {}): a decompression \
                     bomb? (--max-gzip-ratio)",
                    self.max_ratio,
                    self.out,
                    self.compressed.get()
                ),
            ));
        }
        Ok(n)
    }
}

/// One accepted record, canonicalised and non-empty.
#[derive(Debug, Clone)]
pub struct ParsedRecord {
    pub line: u64,
    pub record: u32,
    pub conversation: Conversation,
    /// What the record's mapping kept, and the turns merged.
    pub meta: RecordMeta,
    /// Encoding repairs made to this record's text.
    pub repairs: Repairs,
}

/// What the reader hands to its sink, in input order.
#[derive(Debug)]
pub enum Item {
    Record(ParsedRecord),
    Rejected(Rejection),
}

/// Read one object, calling `sink` for every record and every rejection in order.
pub fn read_object(
    raw: impl Read,
    format: FileFormat,
    gzip: bool,
    limits: Limits,
    sink: &mut dyn FnMut(Item),
) {
    read_object_mapped(raw, format, gzip, limits, None, sink);
}

/// [`read_object`], with the records rewritten by a declared mapping before detection.
pub fn read_object_mapped(
    raw: impl Read,
    format: FileFormat,
    gzip: bool,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    if gzip {
        let compressed = std::rc::Rc::new(std::cell::Cell::new(0));
        let decoder = flate2::read::MultiGzDecoder::new(Counted {
            inner: raw,
            read: compressed.clone(),
        });
        let guarded = BombGuard {
            inner: decoder,
            compressed,
            out: 0,
            max_ratio: limits.max_gzip_ratio,
        };
        read_plain(guarded, format, limits, mapping, sink);
    } else {
        read_plain(raw, format, limits, mapping, sink);
    }
}

/// Whether an object of this format is read from its file by seeking (Parquet, Arrow IPC).
pub fn is_columnar_file(format: FileFormat, gzip: bool) -> bool {
    columnar::is_columnar(format) && !gzip
}

/// [`read_object_mapped`] from a file: Parquet and Arrow IPC files are read from the file by
/// seeking (a row group at a time), everything else as a stream.
pub fn read_file_mapped(
    file: std::fs::File,
    format: FileFormat,
    gzip: bool,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    if is_columnar_file(format, gzip) {
        columnar::read_columnar_file(file, format, limits, mapping, sink);
    } else {
        read_object_mapped(file, format, gzip, limits, mapping, sink);
    }
}

fn read_plain(
    raw: impl Read,
    format: FileFormat,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    let mut reader = BufReader::with_capacity(256 << 10, raw);
    match format {
        FileFormat::Jsonl => {
            let utf16 = match reader.fill_buf() {
                Ok(head) => repair::sniff_utf16(head).is_some(),
                Err(e) => {
                    sink(reject(1, format!("read error: {e}")));
                    return;
                }
            };
            if !utf16 {
                return read_jsonl(&mut reader, limits, mapping, sink);
            }
            // JSON Lines in UTF-16 (e.g. written by a Windows shell): decoded whole, then read.
            match read_whole(&mut reader, limits, "a UTF-16 object is decoded whole") {
                Ok(buf) => {
                    let text = repair::decode_utf16(&buf).unwrap_or_default();
                    let decoded = Repairs {
                        decoded: 1,
                        ..Repairs::default()
                    };
                    let mut sink = first_record_gets(decoded, sink);
                    read_jsonl(
                        &mut BufReader::new(text.as_bytes()),
                        limits,
                        mapping,
                        &mut sink,
                    );
                }
                Err(rejection) => sink(Item::Rejected(rejection)),
            }
        }
        FileFormat::Arrow => columnar::read_arrow_stream(reader, limits, mapping, sink),
        FileFormat::Derived => derived::read_derived(&mut reader, sink),
        FileFormat::Parquet => {
            let why = "a compressed or streamed Parquet object is read whole";
            match read_whole(&mut reader, limits, why) {
                Ok(buf) => columnar::read_parquet_bytes(buf, limits, mapping, sink),
                Err(rejection) => sink(Item::Rejected(rejection)),
            }
        }
        FileFormat::Json | FileFormat::Text | FileFormat::Delimited(_) => {
            let why = "read as a whole for .json, .txt, .csv and .tsv; use .jsonl for large data";
            match read_whole(&mut reader, limits, why) {
                Ok(buf) => read_document(&buf, format, limits, mapping, sink),
                Err(rejection) => sink(Item::Rejected(rejection)),
            }
        }
    }
}

/// Read a whole object, up to `max_document_bytes`; over that, or on a read error, the rejection.
fn read_whole(reader: &mut impl Read, limits: Limits, why: &str) -> Result<Vec<u8>, Rejection> {
    let mut buf = Vec::new();
    let limit = limits.max_document_bytes as u64;
    match reader.take(limit + 1).read_to_end(&mut buf) {
        Ok(_) if buf.len() as u64 > limit => Err(Rejection {
            line: 1,
            reason: format!(
                "document is over the limit of {} bytes ({why})",
                limits.max_document_bytes
            ),
        }),
        Ok(_) => Ok(buf),
        Err(e) => Err(Rejection {
            line: 1,
            reason: format!("read error: {e}"),
        }),
    }
}

/// A sink that adds object-level repairs (a decoded document) to the first record passed on.
fn first_record_gets(repairs: Repairs, sink: &mut dyn FnMut(Item)) -> impl FnMut(Item) + '_ {
    let mut pending = Some(repairs);
    move |item| match item {
        Item::Record(mut r) => {
            if let Some(extra) = pending.take() {
                r.repairs.add(extra);
            }
            sink(Item::Record(r))
        }
        other => sink(other),
    }
}

fn reject(line: u64, reason: String) -> Item {
    Item::Rejected(Rejection { line, reason })
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Streams lines; a line over the limit is skipped without being held in memory.
fn read_jsonl(
    reader: &mut impl BufRead,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    let mut line_no: u64 = 0;
    let mut record: u32 = 0;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        line_no += 1;
        buf.clear();
        let mut line_len: u64 = 0;
        let mut overflow = false;
        let mut saw_any = false;
        loop {
            let chunk = match reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    sink(reject(line_no, format!("read error: {e}")));
                    return;
                }
            };
            if chunk.is_empty() {
                break;
            }
            saw_any = true;
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            line_len += part.len() as u64;
            if !overflow {
                if buf.len() + part.len() > limits.max_line_bytes {
                    overflow = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(part);
                }
            }
            let used = part.len() + usize::from(done);
            reader.consume(used);
            if done {
                break;
            }
        }
        if !saw_any {
            return;
        }
        if overflow {
            sink(reject(
                line_no,
                format!(
                    "line is {line_len} bytes, over the limit of {} bytes",
                    limits.max_line_bytes
                ),
            ));
            continue;
        }
        let mut bytes: &[u8] = &buf;
        if line_no == 1 {
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        if let Some(stripped) = bytes.strip_suffix(b"\r") {
            bytes = stripped;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_record_bytes(bytes, mapping) {
            Ok(shaped) => {
                sink(Item::Record(shaped.at(line_no, record)));
                record += 1;
            }
            Err(reason) => sink(reject(line_no, reason)),
        }
    }
}

/// One JSON Lines record. A line that is not UTF-8 is decoded as Windows-1252 (files written by
/// Windows tools, `caf\xE9`) when every byte has a Windows-1252 meaning; otherwise it is rejected.
fn parse_record_bytes(bytes: &[u8], mapping: Option<&Mapping>) -> Result<Finished, String> {
    let decoded: String;
    let (text, was_decoded) = match std::str::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => {
            if !repair::plausible_cp1252(bytes) {
                return Err(format!(
                    "invalid UTF-8 at byte {} (and not plausible Windows-1252 text)",
                    e.valid_up_to()
                ));
            }
            decoded = repair::decode_cp1252(bytes);
            (decoded.as_str(), true)
        }
    };
    let (value, surrogates) = parse_json_repairing(text)?;
    let mut finished = finish(shape(value, mapping)?)?;
    finished.repairs.surrogates += surrogates;
    finished.repairs.decoded += u64::from(was_decoded);
    Ok(finished)
}

/// Parse JSON; text refused only for lone surrogate escapes is parsed again with them replaced.
fn parse_json_repairing(text: &str) -> Result<(serde_json::Value, u64), String> {
    match serde_json::from_str(text) {
        Ok(v) => Ok((v, 0)),
        Err(e) if e.to_string().contains("surrogate") || e.to_string().contains("hex escape") => {
            match repair::replace_lone_surrogates(text) {
                Some((fixed, n)) => serde_json::from_str(&fixed)
                    .map(|v| (v, n))
                    .map_err(|e| format!("invalid JSON: {e}")),
                None => Err(format!("invalid JSON: {e}")),
            }
        }
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// A record shaped into a conversation, before canonicalisation.
pub(super) struct Shaped {
    conversation: Conversation,
    meta: RecordMeta,
    session_per_record: bool,
}

/// A record ready to be placed at its line.
pub(super) struct Finished {
    conversation: Conversation,
    meta: RecordMeta,
    session_per_record: bool,
    repairs: Repairs,
}

impl Finished {
    pub(super) fn at(mut self, line: u64, record: u32) -> ParsedRecord {
        if self.session_per_record {
            let place = (line << 32) ^ u64::from(record);
            self.meta.session = Some(xxhash_rust::xxh3::xxh3_64(&place.to_le_bytes()));
        }
        ParsedRecord {
            line,
            record,
            conversation: self.conversation,
            meta: self.meta,
            repairs: self.repairs,
        }
    }
}

/// Repair and canonicalise, merge consecutive turns of one role, and refuse records with
/// nothing in them.
pub(super) fn finish(shaped: Shaped) -> Result<Finished, String> {
    let Shaped {
        mut conversation,
        mut meta,
        session_per_record,
    } = shaped;
    let repairs = canonicalize(&mut conversation);
    if conversation.messages.is_empty() {
        return Err("empty conversation".to_string());
    }
    if conversation.all_messages().all(|m| m.content.is_empty()) {
        return Err("empty conversation: every message is blank".to_string());
    }
    meta.merged_turns = crate::structure::merge_conversation(&mut conversation);
    Ok(Finished {
        conversation,
        meta,
        session_per_record,
        repairs,
    })
}

/// One JSON record as a conversation: rewritten by the declared mapping when there is one, then
/// detected.
pub(super) fn shape(value: serde_json::Value, mapping: Option<&Mapping>) -> Result<Shaped, String> {
    match mapping {
        Some(m) => {
            let applied = m.apply(value)?;
            Ok(Shaped {
                conversation: formats::detect(applied.value)?,
                meta: applied.meta,
                session_per_record: applied.session_per_record,
            })
        }
        None => Ok(Shaped {
            conversation: formats::detect(value)?,
            meta: RecordMeta::default(),
            session_per_record: false,
        }),
    }
}

/// Line numbers of increasing byte offsets in one text, counted once.
pub(super) struct LineCounter<'a> {
    text: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            counted_to: 0,
            line: 1,
        }
    }

    /// The 1-based line of byte `offset` (offsets must not decrease).
    pub(super) fn at(&mut self, offset: u64) -> u64 {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .clamp(self.counted_to, self.text.len());
        self.line += self.text[self.counted_to..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.counted_to = offset;
        self.line
    }
}

#[cfg(test)]
mod tests;
