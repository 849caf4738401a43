//! The line format of idx's own derived objects (`DATA_DIR/derived/RECIPE/GROUP.jsonl`, source
//! [`crate::source::derived::DERIVED_SOURCE`]): one row per line, its conversation as idx stores it, the recipe that made
//! it, the content hashes of the rows it came from and, for generator recipes, the generator's
//! digest. Those three become the place's attributes (`recipe`, `inputs`, `generator`), which is
//! how `idx query hash`, the export's provenance and the near-duplicate clusters (a derived row is
//! linked to its inputs, so it shares their split) see where a derived row came from.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::{reject, Item, ParsedRecord};
use crate::fingerprint::Hash128;
use crate::model::{Conversation, RecordMeta};
use crate::repair::Repairs;

/// One line of a derived object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedLine {
    pub conversation: Conversation,
    pub recipe: String,
    /// Content hashes (hex) of the rows it was made from, in the recipe's order.
    pub inputs: Vec<String>,
    /// The generator's digest, for rows an external generator wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
}

impl DerivedLine {
    /// The attributes of its place.
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("recipe".to_string(), json_text(&self.recipe)),
            ("inputs".to_string(), json_text(&self.inputs)),
        ];
        if let Some(g) = &self.generator {
            out.push(("generator".to_string(), json_text(g)));
        }
        out
    }
}

fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The input rows a derived place names in its attributes (none for any other place).
pub fn inputs_of(meta: &RecordMeta) -> Vec<Hash128> {
    meta.attributes
        .iter()
        .find(|(k, _)| k == "inputs")
        .and_then(|(_, v)| serde_json::from_str::<Vec<String>>(v).ok())
        .map(|v| v.iter().filter_map(|h| Hash128::from_hex(h)).collect())
        .unwrap_or_default()
}

/// Read a derived object: every line a [`DerivedLine`]; a line that is not is a rejection
/// naming it (a derived file is idx's own, so this means it was damaged).
pub(super) fn read_derived(reader: &mut impl BufRead, sink: &mut dyn FnMut(Item)) {
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let text = match line {
            Ok(t) => t,
            Err(e) => {
                sink(reject(line_no, format!("read error: {e}")));
                return;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<DerivedLine>(&text) {
            Ok(d)
                if d.conversation
                    .all_messages()
                    .all(|m| m.content.trim().is_empty()) =>
            {
                sink(reject(line_no, "empty conversation".to_string()))
            }
            Ok(d) => sink(Item::Record(ParsedRecord {
                line: line_no,
                record: 0,
                meta: RecordMeta {
                    attributes: d.attributes(),
                    ..RecordMeta::default()
                },
                conversation: d.conversation,
                repairs: Repairs::default(),
            })),
            Err(e) => sink(reject(line_no, format!("not a derived row: {e}"))),
        }
    }
}

/// A record in any shape idx reads (a generator's output line), as the conversation ingest
/// would make of it: detected, repaired, canonical, consecutive turns of one role merged.
pub fn conversation_of(value: serde_json::Value) -> Result<Conversation, String> {
    Ok(super::finish(super::shape(value, None)?)?.conversation)
}
