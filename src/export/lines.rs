//! The lines an export writes: one ChatML line per row with its metadata, and the provenance
//! lines that trace every row to the objects and lines it came from (keys redacted).

use serde::{Deserialize, Serialize};

use super::Place;
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::model::{Conversation, RecordKind, Role};
use crate::neardup::Split;
use crate::pii::PiiStatus;
use crate::select::SelectedRow;
use crate::store::ReadView;

/// One line of the export (`schema/chatml-line.schema.json`). Every line has every key (null
/// where it does not apply), so a file loads with one schema whatever kinds it mixes; and an
/// undesirable answer is never the last turn of `messages`: a KTO row's completion is in
/// `completion` beside its `label`, a preference pair's rejected answer in `rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    /// The conversation; for a preference pair the prompt and the chosen answer, for a KTO row
    /// the prompt only.
    pub messages: Vec<LineMessage>,
    /// Preference pairs: the rejected answer.
    pub rejected: Option<Vec<LineMessage>>,
    /// KTO rows: the completion the label judges.
    pub completion: Option<Vec<LineMessage>>,
    /// KTO rows: whether the completion is desirable.
    pub label: Option<bool>,
    pub metadata: LineMetadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineMetadata {
    pub source_family: String,
    /// The key of the row's first place, in (source, key, line) order.
    pub source_key: String,
    pub content_hash: String,
    pub pii_status: PiiStatus,
    pub license_tag: String,
    pub split: Split,
    pub phase: String,
    pub kind: RecordKind,
    pub families: Vec<String>,
    pub tokens: u64,
    /// How many near-duplicates this row stands for (not exported themselves; their hashes and
    /// places are in provenance.jsonl). A count, not a list: an empty JSON list has no type, so
    /// a file whose first lines stand for nothing could not be read in chunks.
    pub near_duplicates: u64,
    /// Attributes its mapping kept at the row's first place (every place's are in
    /// provenance.jsonl); their keys differ by source, so they are one JSON text (`{}` when
    /// none) and every line has the same columns.
    pub attributes: String,
}

/// One line of `provenance.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceLine {
    pub content_hash: String,
    pub split: Split,
    pub family: String,
    /// Every place of the row and of the near-duplicates it stands for (never empty, so the
    /// column always has its type), each naming the row it holds.
    pub sources: Vec<ProvenancePlace>,
}

/// One place in `provenance.jsonl`: which row occurs where (the line's own row, or a
/// near-duplicate it stands for), and what its mapping kept there (or, for a derived row, its
/// recipe and input rows) as one JSON text (`{}` when nothing), so every line has the same
/// columns whatever its sources keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenancePlace {
    pub content_hash: String,
    pub source: String,
    pub key: String,
    pub line: u64,
    pub record: u32,
    pub attributes: String,
}

impl ProvenancePlace {
    /// A place of the row `hash`.
    pub(crate) fn of(hash: Hash128, p: Place) -> ProvenancePlace {
        ProvenancePlace {
            content_hash: hash.to_hex(),
            attributes: serde_json::Value::Object(p.attributes).to_string(),
            source: p.source,
            key: p.key,
            line: p.line,
            record: p.record,
        }
    }
}

/// The line of one row.
pub(crate) fn line_of(
    row: &SelectedRow,
    conversation: &Conversation,
    first_place: Option<&crate::query::SourceRef>,
    license: &str,
    near_duplicates: &[Hash128],
) -> ExportLine {
    let msgs = |m: &[crate::model::Message]| -> Vec<LineMessage> {
        m.iter()
            .map(|m| LineMessage {
                role: m.role,
                content: m.content.clone(),
            })
            .collect()
    };
    // A KTO row's completion (desirable or not) leaves `messages`.
    let (messages, completion) = match (conversation.kind, conversation.messages.split_last()) {
        (RecordKind::Kto, Some((last, prompt))) if last.role == Role::Assistant => {
            (msgs(prompt), Some(msgs(std::slice::from_ref(last))))
        }
        _ => (msgs(&conversation.messages), None),
    };
    ExportLine {
        messages,
        rejected: conversation.rejected.as_deref().map(msgs),
        completion,
        label: conversation.label,
        metadata: LineMetadata {
            source_family: row.primary_family.clone(),
            source_key: first_place.map(|p| p.key.clone()).unwrap_or_default(),
            content_hash: row.hash.to_hex(),
            pii_status: row.pii,
            license_tag: license.to_string(),
            split: row.split,
            phase: row.kind.phase().to_string(),
            kind: row.kind,
            families: row.families.clone(),
            tokens: row.tokens,
            near_duplicates: near_duplicates.len() as u64,
            attributes: serde_json::Value::Object(
                first_place
                    .map(|p| p.attributes.clone())
                    .unwrap_or_default(),
            )
            .to_string(),
        },
    }
}

/// A row's places as they may leave idx: sources and keys with PII redacted (see
/// [`crate::pii::Redactor::redact_key`]); `idx query source` accepts either spelling.
pub(crate) fn public_refs(
    view: &ReadView,
    hash: Hash128,
    redactor: &crate::pii::Redactor,
) -> Result<Vec<crate::query::SourceRef>> {
    let mut refs = crate::query::source_refs(view, hash)?;
    for r in &mut refs {
        r.source = redactor.redact_key(&r.source);
        r.key = redactor.redact_key(&r.key);
    }
    Ok(refs)
}

/// The `dataset_info.features` of the dataset card: the type of every column of an
/// [`ExportLine`], so `datasets` reads a column that is null in one file and a list in another
/// (a split of conversations beside one of KTO rows) with one schema.
pub(crate) fn card_features() -> String {
    let message_list = |name: &str| {
        format!(
            "  - name: {name}\n    list:\n    - name: role\n      dtype: string\n    \
             - name: content\n      dtype: string\n"
        )
    };
    let mut s = String::from("dataset_info:\n  features:\n");
    s.push_str(&message_list("messages"));
    s.push_str(&message_list("rejected"));
    s.push_str(&message_list("completion"));
    s.push_str("  - name: label\n    dtype: bool\n  - name: metadata\n    struct:\n");
    for (name, ty) in METADATA_FEATURES {
        match ty.strip_prefix("list:") {
            Some(item) => s.push_str(&format!("    - name: {name}\n      list: {item}\n")),
            None => s.push_str(&format!("    - name: {name}\n      dtype: {ty}\n")),
        }
    }
    s
}

/// The `datasets` type of each [`LineMetadata`] field, in field order.
const METADATA_FEATURES: [(&str, &str); 12] = [
    ("source_family", "string"),
    ("source_key", "string"),
    ("content_hash", "string"),
    ("pii_status", "string"),
    ("license_tag", "string"),
    ("split", "string"),
    ("phase", "string"),
    ("kind", "string"),
    ("families", "list:string"),
    ("tokens", "uint64"),
    ("near_duplicates", "uint64"),
    ("attributes", "string"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_types_every_column_of_a_line() {
        let line = ExportLine {
            messages: Vec::new(),
            rejected: None,
            completion: None,
            label: None,
            metadata: LineMetadata {
                source_family: String::new(),
                source_key: String::new(),
                content_hash: String::new(),
                pii_status: PiiStatus::Clean,
                license_tag: String::new(),
                split: Split::Train,
                phase: String::new(),
                kind: RecordKind::Chatml,
                families: Vec::new(),
                tokens: 0,
                near_duplicates: 0,
                attributes: String::new(),
            },
        };
        let v = serde_json::to_value(&line).unwrap();
        let card = card_features();
        let top: Vec<&String> = v.as_object().unwrap().keys().collect();
        for key in &top {
            assert!(card.contains(&format!("  - name: {key}\n")), "{key}");
        }
        let meta: Vec<&str> = v["metadata"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut typed: Vec<&str> = METADATA_FEATURES.iter().map(|(n, _)| *n).collect();
        typed.sort_unstable();
        let mut meta_sorted = meta.clone();
        meta_sorted.sort_unstable();
        assert_eq!(typed, meta_sorted, "every metadata field typed, no other");
        assert_eq!(card.matches("\n  - name: ").count(), top.len());
    }
}
