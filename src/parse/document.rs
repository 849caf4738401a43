//! Whole documents (`.json`, `.txt`): decoded (UTF-8, else UTF-16 or Windows-1252), then read
//! as one JSON value whose records are found by shape (an array of records, an object of
//! them, one record) or where a mapping's `records` points, each with the line it starts on.

use std::io::BufReader;

use serde_json::value::RawValue;

use super::{
    delimited, finish, first_record_gets, read_jsonl, reject, shape, FileFormat, Item, Limits,
    LineCounter, Mapping, Records, Shaped, BOM,
};
use crate::model::RecordMeta;
use crate::repair::{self, Repairs};

/// A whole document (`.json`, `.txt`) that is not UTF-8 is decoded as UTF-16 when it looks like
/// it, else as Windows-1252 (JSON Lines are decoded line by line instead, in `parse_record_bytes`).
pub(super) fn read_document(
    buf: &[u8],
    format: FileFormat,
    limits: Limits,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    let bytes = buf.strip_prefix(BOM).unwrap_or(buf);
    let decoded: String;
    let mut doc_repairs = Repairs::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => match repair::decode_utf16(bytes).filter(|_| bytes.contains(&0)) {
            Some(utf16) => {
                decoded = utf16;
                doc_repairs.decoded = 1;
                decoded.as_str()
            }
            None => t,
        },
        Err(e) => {
            decoded = match repair::decode_utf16(bytes) {
                Some(utf16) => utf16,
                None if repair::plausible_cp1252(bytes) => repair::decode_cp1252(bytes),
                None => {
                    sink(reject(
                        1,
                        format!(
                            "not text: invalid UTF-8 at byte {}, and neither UTF-16 nor plausible Windows-1252",
                            e.valid_up_to()
                        ),
                    ));
                    return;
                }
            };
            doc_repairs.decoded = 1;
            decoded.as_str()
        }
    };
    if repair::looks_binary(text) {
        sink(reject(
            1,
            "binary data, not text (NUL bytes or control characters)".to_string(),
        ));
        return;
    }
    let unescaped: String;
    let text = match format {
        FileFormat::Json => match repair::replace_lone_surrogates(text) {
            Some((fixed, n)) => {
                doc_repairs.surrogates = n;
                unescaped = fixed;
                unescaped.as_str()
            }
            None => text,
        },
        _ => text,
    };
    let mut sink = first_record_gets(doc_repairs, sink);
    let sink: &mut dyn FnMut(Item) = &mut sink;
    if format == FileFormat::Text {
        let conversation = crate::model::Conversation {
            kind: crate::model::RecordKind::Text,
            messages: vec![crate::model::Message::new(
                crate::model::Role::Assistant,
                text,
            )],
            rejected: None,
            label: None,
        };
        let shaped = Shaped {
            conversation,
            meta: RecordMeta::default(),
            session_per_record: false,
        };
        match finish(shaped) {
            Ok(finished) => sink(Item::Record(finished.at(1, 0))),
            Err(_) => sink(reject(1, "empty text file".to_string())),
        }
        return;
    }
    if let FileFormat::Delimited(delimiter) = format {
        delimited::read_delimited(text, delimiter, mapping, sink);
        return;
    }
    if text.trim().is_empty() {
        sink(reject(1, "empty JSON document".to_string()));
        return;
    }
    match mapping.and_then(|m| m.records.as_ref()) {
        None | Some(Records::Array) => {}
        Some(Records::Lines) => {
            let mut reader = BufReader::new(text.as_bytes());
            read_jsonl(&mut reader, limits, mapping, sink);
            return;
        }
        Some(records) => {
            match declared_records(text, records) {
                Ok(items) => emit_array(text, &items, mapping, sink),
                Err((line, reason)) => sink(reject(line, reason)),
            }
            return;
        }
    }
    let first = text.trim_start().as_bytes()[0];
    if first == b'[' {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => emit_array(text, &items, mapping, sink),
            Err(e) => sink(reject(e.line() as u64, format!("invalid JSON: {e}"))),
        }
        return;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => {
            let line = line_of(text, text.len() - text.trim_start().len());
            let item = match shape(value, mapping).and_then(finish) {
                Ok(finished) => Item::Record(finished.at(line, 0)),
                Err(reason) => reject(line, reason),
            };
            sink(item);
        }
        // Many `.json` files are really JSON Lines: read them as such rather than fail.
        Err(e) if e.to_string().starts_with("trailing characters") => {
            let mut reader = BufReader::new(text.as_bytes());
            read_jsonl(&mut reader, limits, mapping, sink);
        }
        Err(e) => sink(reject(e.line() as u64, format!("invalid JSON: {e}"))),
    }
}

/// The records a mapping's `records` points at: the values of an object (in file order), or
/// the array or object at a JSON pointer. Values are borrowed from `text`, so their lines are
/// known.
fn declared_records<'t>(
    text: &'t str,
    records: &Records,
) -> Result<Vec<&'t RawValue>, (u64, String)> {
    let invalid = |e: serde_json::Error| (e.line() as u64, format!("invalid JSON: {e}"));
    let mut here: &'t RawValue = serde_json::from_str(text).map_err(invalid)?;
    if let Records::Pointer(pointer) = records {
        for part in pointer.split('/').skip(1) {
            let part = part.replace("~1", "/").replace("~0", "~");
            let next = if here.get().trim_start().starts_with('[') {
                let items: Vec<&'t RawValue> = serde_json::from_str(here.get()).map_err(invalid)?;
                part.parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i).copied())
            } else {
                let fields: std::collections::HashMap<String, &'t RawValue> =
                    serde_json::from_str(here.get()).map_err(|_| {
                        (
                            1,
                            format!(
                            "records = \"{pointer}\": `{part}` is not inside an object or array"
                        ),
                        )
                    })?;
                fields.get(&part).copied()
            };
            here =
                next.ok_or_else(|| (1, format!("records = \"{pointer}\": nothing at `{part}`")))?;
        }
    }
    let raw = here.get().trim_start();
    if raw.starts_with('[') {
        return serde_json::from_str(raw).map_err(invalid);
    }
    if !raw.starts_with('{') {
        return Err((
            1,
            "the records are neither an array nor an object of records".to_string(),
        ));
    }
    let fields: std::collections::HashMap<String, &'t RawValue> =
        serde_json::from_str(raw).map_err(invalid)?;
    let mut items: Vec<&'t RawValue> = fields.into_values().collect();
    // File order: every value borrows from `text`.
    items.sort_by_key(|v| v.get().as_ptr() as usize);
    Ok(items)
}

fn line_of(text: &str, offset: usize) -> u64 {
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

fn emit_array(
    text: &str,
    items: &[&RawValue],
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    let base = text.as_ptr() as usize;
    let mut lines = LineCounter::new(text);
    for (index, raw) in items.iter().enumerate() {
        let line = lines.at((raw.get().as_ptr() as usize).saturating_sub(base) as u64);
        let parsed = serde_json::from_str::<serde_json::Value>(raw.get())
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|value| shape(value, mapping))
            .and_then(finish);
        let item = match parsed {
            Ok(finished) => {
                Item::Record(finished.at(line, u32::try_from(index).unwrap_or(u32::MAX)))
            }
            Err(reason) => reject(line, format!("record {index}: {reason}")),
        };
        sink(item);
    }
}
