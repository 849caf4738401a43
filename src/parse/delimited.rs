//! CSV and TSV tables: a header row, then records whose quoted fields may span lines, each
//! read like a JSON object of its columns and rejected with the line it starts on.

use super::{finish, reject, shape, Item, LineCounter, Mapping};

/// CSV/TSV with a header row (quoted fields may span lines): each record, a JSON object of its
/// columns (empty cells left out), goes through the same detection as a JSON record, so columns
/// named `prompt`/`response`, `instruction`/`output`, `question`/`answer` or `text` need no
/// mapping. A record that cannot be read or detected is rejected with the line it starts on.
pub(super) fn read_delimited(
    text: &str,
    delimiter: u8,
    mapping: Option<&Mapping>,
    sink: &mut dyn FnMut(Item),
) {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) if !h.is_empty() && h.iter().any(|c| !c.trim().is_empty()) => {
            h.iter().map(|c| c.trim().to_string()).collect()
        }
        Ok(_) => {
            sink(reject(1, "empty table: no header row".to_string()));
            return;
        }
        Err(e) => {
            sink(reject(1, format!("unreadable header row: {e}")));
            return;
        }
    };
    let mut index: u32 = 0;
    let mut record = csv::StringRecord::new();
    // Lines are counted from byte offsets (the reader's own count skips blank lines).
    let mut lines = LineCounter::new(text);
    loop {
        let at = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(at, |p| p.byte());
                sink(reject(lines.at(at), format!("unreadable record: {e}")));
                // A broken quote swallows the rest: nothing after it can be trusted.
                return;
            }
        }
        // The reader's position is where it began looking: blank lines before the record count.
        let start = record.position().map_or(at, |p| p.byte()) as usize;
        let skipped = text.as_bytes()[start.min(text.len())..]
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let line = lines.at((start + skipped) as u64);
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() > headers.len() {
            sink(reject(
                line,
                format!(
                    "record {index}: {} fields for {} columns",
                    record.len(),
                    headers.len()
                ),
            ));
            index = index.saturating_add(1);
            continue;
        }
        let mut object = serde_json::Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            if !cell.trim().is_empty() && !name.is_empty() {
                object.insert(name.clone(), serde_json::Value::String(cell.to_string()));
            }
        }
        let item = match shape(serde_json::Value::Object(object), mapping).and_then(finish) {
            Ok(finished) => Item::Record(finished.at(line, index)),
            Err(reason) => reject(line, format!("record {index}: {reason}")),
        };
        sink(item);
        index = index.saturating_add(1);
    }
}
