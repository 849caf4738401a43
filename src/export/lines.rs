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

/// One line of the export (`schema/chatml-line.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    pub messages: Vec<LineMessage>,
    /// Preference pairs: the rejected answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<LineMessage>>,
    /// KTO rows: whether the completion is desirable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// Near-duplicates this row stands for (their provenance is in provenance.jsonl).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_duplicates: Vec<String>,
    /// Attributes its mapping kept at the row's first place (every place's are in
    /// provenance.jsonl).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// One line of `provenance.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceLine {
    pub content_hash: String,
    pub split: Split,
    pub family: String,
    pub sources: Vec<Place>,
    /// Collapsed near-duplicates and their places.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub near_duplicates: Vec<NearDuplicateProvenance>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDuplicateProvenance {
    pub content_hash: String,
    pub sources: Vec<Place>,
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
    ExportLine {
        messages: msgs(&conversation.messages),
        rejected: conversation.rejected.as_deref().map(msgs),
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
            near_duplicates: near_duplicates.iter().map(|h| h.to_hex()).collect(),
            attributes: first_place
                .map(|p| p.attributes.clone())
                .unwrap_or_default(),
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
