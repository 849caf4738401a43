//! The values stored in redb tables. Each derives serde and is encoded by `codec` only.

use serde::{Deserialize, Serialize};

use crate::model::{Conversation, ObjectVersion, RecordKind, Rejection};
use crate::pii::PiiRecord;
use crate::repair::Repairs;
use crate::structure::Flaws;

/// How many rejection reasons are kept per object (all are counted).
pub const KEPT_REJECTIONS: usize = 20;

/// What idx did with an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectStatus {
    /// Read as training data into rows.
    Indexed,
    /// Listed but never read: not training data, or a format idx does not read.
    Skipped { reason: String },
    /// Could not be read; its previous rows (if any) are kept and it is retried on the next scan.
    Failed { error: String },
}

/// One object (file or S3 object) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub source: String,
    pub key: String,
    pub version: ObjectVersion,
    pub status: ObjectStatus,
    pub primary_family: String,
    pub families: Vec<String>,
    /// Digest of the families config the classification came from.
    pub families_digest: String,
    /// Records accepted (row occurrences).
    pub rows: u64,
    /// Lines or records rejected.
    pub rejected: u64,
    /// The first [`KEPT_REJECTIONS`] rejections.
    pub rejections: Vec<Rejection>,
    /// Encoding repairs made while reading it.
    pub repairs: Repairs,
    /// `Settings::read_digest` of the settings it was read with (PII redaction).
    pub read_digest: String,
    /// The declared mapping (`sources.toml`) it was read with, if any.
    pub mapping: Option<String>,
    /// Distinct sessions a mapping's `session` field gave its rows (their holdout groups);
    /// 0 when none was declared.
    pub sessions: u64,
    /// Consecutive same-role turns merged while reading it.
    pub merged_turns: u64,
}

/// One spelling of a row: the canonical conversation as it appeared, with its token count.
/// Stored by `codec::encode_variant`: a head (tokens, kind, message count, first role) readable
/// alone, then the conversation, zstd-compressed when that is smaller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantRecord {
    pub tokens: u64,
    pub conversation: Conversation,
}

/// One unique row (content hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRecord {
    /// `simhash` and `words` must stay the first fields: rebuilding clusters decodes them alone.
    pub simhash: u64,
    /// Words of the fingerprint text (role words included).
    pub words: u32,
    /// Tokens of the representative spelling (smallest variant hash).
    pub tokens: u64,
    pub kind: RecordKind,
    /// Number of places (occurrences) of this row.
    pub places: u64,
    /// The primary family of the object holding the first place (by source, key, line).
    pub primary_family: String,
    /// Per family tag, how many of this row's places carry it (sorted by family).
    pub families: Vec<(String, u64)>,
    /// PII status and placeholder counts (a function of the redacted content).
    pub pii: PiiRecord,
    /// The structure checks the conversation fails (a function of the content).
    pub flaws: Flaws,
}

/// Per family tag: occurrences, unique rows and their tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyStats {
    pub rows: u64,
    pub unique_rows: u64,
    pub tokens: u64,
    /// Unique rows failing a structure check.
    pub flawed_rows: u64,
}

/// Index-wide counters, kept in step with every commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub objects: u64,
    pub objects_indexed: u64,
    pub objects_skipped: u64,
    pub objects_failed: u64,
    pub rows: u64,
    pub unique_rows: u64,
    pub rejected_rows: u64,
    pub tokens: u64,
    /// Unique rows whose PII was redacted, and unique rows excluded for PII.
    pub pii_redacted_rows: u64,
    pub pii_excluded_rows: u64,
    /// Unique rows failing a structure check (see [`crate::structure`]).
    pub flawed_rows: u64,
    /// Consecutive same-role turns merged while reading, over all objects.
    pub merged_turns: u64,
}

/// A benchmark set decontamination checks against, as last loaded by `idx decontaminate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkRecord {
    pub name: String,
    /// What it was read from (a path or `s3://` URL).
    pub origin: String,
    /// sha256 over its items' places and n-grams: changes when its content does.
    pub digest: String,
    /// Objects read, items (records) indexed, and items too short to give an n-gram.
    pub objects: u64,
    pub items: u64,
    pub short_items: u64,
    /// Records the reader rejected (file:line and reason of the first few).
    pub rejected: u64,
    pub rejections: Vec<String>,
    /// Distinct n-grams.
    pub ngrams: u64,
    /// The n-gram length it was indexed with.
    pub n: u32,
}

/// One benchmark item: where it is, and its distinct n-grams (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkItem {
    pub key: String,
    pub line: u64,
    pub record: u32,
    pub ngrams: Vec<u64>,
}

/// One row's check against the benchmark set whose digest is `set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contamination {
    pub set: String,
    /// n-grams of the row, and those found in a benchmark item.
    pub ngrams: u32,
    pub matched: u32,
    pub hits: Vec<ContaminationHit>,
}

/// A stretch of one message of a row shared with a benchmark item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContaminationHit {
    pub benchmark: String,
    pub item: u32,
    /// Message index (a preference pair's rejected answer follows the messages).
    pub message: u32,
    /// Byte range in the message text.
    pub start: u32,
    pub end: u32,
    pub ngrams: u32,
}
