//! Answers to questions about the index (`idx status`, `idx query …`), as serialisable values.
//! Everything here reads one redb snapshot (plus the tantivy reader for text search) and never
//! writes. Rendering for humans is the binary's job.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::families::{Classifier, UNASSIGNED};
use crate::fingerprint::Hash128;
use crate::model::{Message, ObjectVersion, Rejection};
use crate::neardup::{Policy, Split};
use crate::repair::Repairs;
use crate::search::SearchIndex;
use crate::store::{keys, FamilyStats, ObjectStatus, ReadView, Totals};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SkippedObject {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Objects, rows (every accepted record, duplicates included), unique rows (distinct content
    /// hashes), rejected rows and tokens (over unique rows).
    #[serde(flatten)]
    pub totals: Totals,
    /// Per family tag (configured families always listed, with zeros when empty).
    pub families: BTreeMap<String, FamilyStats>,
    /// Keys of indexed objects no family rule matched.
    pub unassigned_objects: Vec<String>,
    /// Objects listed but not read, with the reason.
    pub skipped_objects: Vec<SkippedObject>,
    pub failed_objects: Vec<SkippedObject>,
    /// Encoding repairs (mojibake reversed, controls stripped, documents decoded), in all and per
    /// family tag (families with none are left out).
    pub repairs: Repairs,
    pub repairs_by_family: BTreeMap<String, Repairs>,
    /// Objects holding rejected lines, with how many.
    pub objects_with_rejections: BTreeMap<String, u64>,
    /// Objects read through each declared mapping (`sources.toml`).
    pub mappings: BTreeMap<String, u64>,
    /// Per family, the rows derive recipes made (`configs/derive.toml`): the derived marker.
    pub derived: BTreeMap<String, DerivedCount>,
    /// redb commits so far.
    pub commits: u64,
}

/// Rows a family holds from derive recipes, and the objects (groups) they are in.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DerivedCount {
    pub rows: u64,
    pub objects: u64,
}

/// Index-wide counts and per-family figures.
pub fn status(view: &ReadView, classifier: &Classifier) -> Result<Status> {
    let totals = view.totals()?;
    let mut families: BTreeMap<String, FamilyStats> = classifier
        .config()
        .families
        .iter()
        .map(|f| (f.name.clone(), FamilyStats::default()))
        .collect();
    families.extend(view.family_stats()?);
    let mut unassigned_objects = Vec::new();
    let mut skipped_objects = Vec::new();
    let mut failed_objects = Vec::new();
    let mut objects_with_rejections = BTreeMap::new();
    let mut mappings: BTreeMap<String, u64> = BTreeMap::new();
    let mut derived: BTreeMap<String, DerivedCount> = BTreeMap::new();
    let mut repairs = Repairs::default();
    let mut repairs_by_family: BTreeMap<String, Repairs> = BTreeMap::new();
    for o in view.objects()? {
        if o.source == crate::source::derived::DERIVED_SOURCE && o.rows > 0 {
            let d = derived.entry(o.primary_family.clone()).or_default();
            d.rows += o.rows;
            d.objects += 1;
        }
        if o.repairs.total() > 0 {
            repairs.add(o.repairs);
            for f in &o.families {
                repairs_by_family
                    .entry(f.clone())
                    .or_default()
                    .add(o.repairs);
            }
        }
        match &o.status {
            ObjectStatus::Indexed if o.primary_family == UNASSIGNED => {
                unassigned_objects.push(o.key.clone())
            }
            ObjectStatus::Indexed => {}
            ObjectStatus::Skipped { reason } => skipped_objects.push(SkippedObject {
                key: o.key.clone(),
                reason: reason.clone(),
            }),
            ObjectStatus::Failed { error } => failed_objects.push(SkippedObject {
                key: o.key.clone(),
                reason: error.clone(),
            }),
        }
        if o.rejected > 0 {
            objects_with_rejections.insert(o.key.clone(), o.rejected);
        }
        if let Some(m) = &o.mapping {
            *mappings.entry(m.clone()).or_default() += 1;
        }
    }
    Ok(Status {
        totals,
        families,
        unassigned_objects,
        skipped_objects,
        failed_objects,
        repairs,
        repairs_by_family,
        objects_with_rejections,
        mappings,
        derived,
        commits: view.seq()?,
    })
}

/// One occurrence of a row: the object (source root and key) and the line and record in it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    pub source: String,
    pub key: String,
    pub line: u64,
    pub record: u32,
    /// Attributes the object's mapping kept for this record.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowAnswer {
    pub content_hash: String,
    pub family: String,
    pub families: Vec<String>,
    pub kind: String,
    pub tokens: u64,
    pub simhash: String,
    /// The training phase its kind feeds (pretraining, sft, preference).
    pub phase: String,
    pub split: Split,
    /// The cluster it belongs to (its own hash when it has no near-duplicate or group).
    pub cluster: String,
    /// Whether its cluster holds a holdout group.
    pub holdout: bool,
    /// clean, redacted or excluded (kept for audit, never exported).
    pub pii_status: String,
    /// Placeholders per PII kind in its text (never the values).
    pub pii_kinds: BTreeMap<String, u32>,
    /// The structure checks it fails (held back from exports when any).
    pub flaws: Vec<&'static str>,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<Message>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    pub sources: Vec<SourceRef>,
    /// For a derived row: the rows its places name as inputs, with their places (empty for
    /// any other row).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<InputRef>,
}

/// A row a derived row was made from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InputRef {
    pub content_hash: String,
    /// Its places (none when the row is gone; the next derive run drops what it made).
    pub sources: Vec<SourceRef>,
}

fn parse_hash(hex: &str) -> Result<Hash128> {
    Hash128::from_hex(hex).ok_or_else(|| {
        Error::Query(format!(
            "`{hex}` is not a content hash (32 hexadecimal digits)"
        ))
    })
}

/// Every place of a row, in (source, key, line) order.
pub fn source_refs(view: &ReadView, hash: Hash128) -> Result<Vec<SourceRef>> {
    let mut out = Vec::new();
    for (id, line, record) in view.places(hash)? {
        let attributes = view.place_meta(&id, line, record)?.attributes_json();
        let (source, key) = keys::split_object_id(&id);
        out.push(SourceRef {
            source: source.to_string(),
            key: key.to_string(),
            line,
            record,
            attributes,
        });
    }
    Ok(out)
}

/// The policy the index's clusters were built with (the given one for an index without rows).
pub fn effective_policy(view: &ReadView, current: Policy) -> Result<Policy> {
    Ok(view.policy()?.unwrap_or(current))
}

/// A row by content hash: its canonical conversation, split, cluster and every place it occurs.
pub fn row(view: &ReadView, hex: &str, policy: &Policy) -> Result<Option<RowAnswer>> {
    let hash = parse_hash(hex)?;
    let (Some(row), Some(rep)) = (view.row(hash)?, view.representative(hash)?) else {
        return Ok(None);
    };
    let a = view.assignment(hash, policy)?;
    Ok(Some(RowAnswer {
        content_hash: hash.to_hex(),
        family: row.primary_family,
        families: row.families.into_iter().map(|(f, _)| f).collect(),
        kind: rep.conversation.kind.as_str().to_string(),
        tokens: row.tokens,
        simhash: format!("{:016x}", row.simhash),
        phase: row.kind.phase().to_string(),
        split: a.split,
        cluster: a.cluster.to_hex(),
        holdout: a.holdout,
        pii_status: row.pii.status.as_str().to_string(),
        pii_kinds: row
            .pii
            .kinds
            .iter()
            .map(|(k, n)| (k.as_str().to_string(), *n))
            .collect(),
        flaws: row.flaws.names(),
        messages: rep.conversation.messages,
        rejected: rep.conversation.rejected,
        label: rep.conversation.label,
        derived_from: derived_from(view, hash)?,
        sources: source_refs(view, hash)?,
    }))
}

/// The input rows named by a row's derived places, each once, in the order first named.
fn derived_from(view: &ReadView, hash: Hash128) -> Result<Vec<InputRef>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (id, line, record) in view.places(hash)? {
        if keys::split_object_id(&id).0 != crate::source::derived::DERIVED_SOURCE {
            continue;
        }
        let meta = view.place_meta(&id, line, record)?;
        for input in crate::parse::derived::inputs_of(&meta) {
            if seen.insert(input) {
                out.push(InputRef {
                    content_hash: input.to_hex(),
                    sources: source_refs(view, input)?,
                });
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Neighbour {
    pub content_hash: String,
    pub hamming: u32,
    pub similarity: f64,
    pub split: Split,
    pub sources: Vec<SourceRef>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NearAnswer {
    pub content_hash: String,
    pub split: Split,
    pub cluster: String,
    /// Rows in its cluster (near-duplicates of near-duplicates and holdout group mates count).
    pub cluster_size: u64,
    /// Whether the row is long enough for near-duplicate matching (`near_dup.min_words`).
    pub fingerprinted: bool,
    /// Its direct near-duplicates, most similar first.
    pub neighbours: Vec<Neighbour>,
}

/// A row's near-duplicates with their distance, similarity, split and places.
pub fn near(view: &ReadView, hex: &str, policy: &Policy) -> Result<Option<NearAnswer>> {
    let hash = parse_hash(hex)?;
    let Some(row) = view.row(hash)? else {
        return Ok(None);
    };
    let a = view.assignment(hash, policy)?;
    let members = view.cluster_members(a.cluster)?.len().max(1) as u64;
    let mut neighbours = Vec::new();
    for (other, hamming, similarity) in view.near(hash, policy)? {
        neighbours.push(Neighbour {
            content_hash: other.to_hex(),
            hamming,
            similarity,
            split: view.assignment(other, policy)?.split,
            sources: source_refs(view, other)?,
        });
    }
    Ok(Some(NearAnswer {
        content_hash: hash.to_hex(),
        split: a.split,
        cluster: a.cluster.to_hex(),
        cluster_size: members,
        fingerprinted: policy.fingerprintable(row.words),
        neighbours,
    }))
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MoveAnswer {
    /// The commit that moved it.
    pub seq: u64,
    pub content_hash: String,
    pub from: Split,
    pub to: Split,
}

/// Rows that changed split in commits after `since` (clusters merged, split or re-keyed).
pub fn moves(view: &ReadView, since: u64) -> Result<Vec<MoveAnswer>> {
    Ok(view
        .split_moves(since)?
        .into_iter()
        .map(|m| MoveAnswer {
            seq: m.seq,
            content_hash: m.row.to_hex(),
            from: m.from,
            to: m.to,
        })
        .collect())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceRow {
    pub line: u64,
    pub record: u32,
    pub content_hash: String,
    /// Attributes its mapping kept.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Consecutive same-role turns merged while reading it.
    #[serde(skip_serializing_if = "is_zero")]
    pub merged_turns: u32,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceAnswer {
    pub source: String,
    pub key: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: ObjectVersion,
    pub family: String,
    pub families: Vec<String>,
    /// The declared mapping it was read with (`sources.toml`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// Distinct sessions (holdout groups) its mapping's `session` field gave.
    #[serde(skip_serializing_if = "is_zero")]
    pub sessions: u64,
    pub rows: Vec<SourceRow>,
    pub rejected: u64,
    pub rejections: Vec<Rejection>,
}

/// The objects with this key (or `source/key` URI), also when the key is given as an export
/// shows it (PII redacted, with its digest: [`crate::pii::Redactor::redact_key`]).
pub fn source_public(
    view: &ReadView,
    key: &str,
    redactor: &crate::pii::Redactor,
) -> Result<Vec<SourceAnswer>> {
    let found = source(view, key)?;
    if !found.is_empty() || !key.contains("[key ") {
        return Ok(found);
    }
    sources_where(view, |source, object_key| {
        let shown = redactor.redact_key(object_key);
        shown == key || format!("{}/{shown}", redactor.redact_key(source)) == key
    })
}

/// The objects with this key (or `source/key` URI) and the rows indexed from each.
pub fn source(view: &ReadView, key: &str) -> Result<Vec<SourceAnswer>> {
    sources_where(view, |source, object_key| {
        object_key == key
            || key
                .strip_prefix(source)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| rest == object_key)
    })
}

/// The answers for every object whose (source, key) `matches`, in the objects table's order.
fn sources_where(
    view: &ReadView,
    matches: impl Fn(&str, &str) -> bool,
) -> Result<Vec<SourceAnswer>> {
    let mut out = Vec::new();
    for o in view.objects_where(matches)? {
        let id = keys::object_id(&o.source, &o.key);
        let rows = view
            .object_places(&id)?
            .into_iter()
            .map(|(line, record, hash, meta)| SourceRow {
                line,
                record,
                content_hash: hash.to_hex(),
                attributes: meta.attributes_json(),
                merged_turns: meta.merged_turns,
            })
            .collect();
        let (status, reason) = match &o.status {
            ObjectStatus::Indexed => ("indexed", None),
            ObjectStatus::Skipped { reason } => ("skipped", Some(reason.clone())),
            ObjectStatus::Failed { error } => ("failed", Some(error.clone())),
        };
        out.push(SourceAnswer {
            source: o.source,
            key: o.key,
            status: status.to_string(),
            reason,
            version: o.version,
            family: o.primary_family,
            families: o.families,
            mapping: o.mapping,
            sessions: o.sessions,
            rows,
            rejected: o.rejected,
            rejections: o.rejections,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TextHit {
    pub content_hash: String,
    pub family: String,
    pub key: String,
    pub line: u64,
    pub score: f32,
    pub snippet: String,
}

/// Full-text search; hits carry their first place (in `family` when one is given) and a snippet.
pub fn text(
    view: &ReadView,
    search: &SearchIndex,
    query: &str,
    family: Option<&str>,
    limit: usize,
) -> Result<Vec<TextHit>> {
    let (raw, text_query) = search.search(query, family, limit)?;
    let mut hits = Vec::with_capacity(raw.len());
    for hit in raw {
        // The full-text index may briefly lag redb while a writer works: trust redb.
        let (Some(row), Some(rep)) = (
            view.row(hit.content_hash)?,
            view.representative(hit.content_hash)?,
        ) else {
            continue;
        };
        let places = view.places(hit.content_hash)?;
        let mut chosen = places.first().cloned();
        if let Some(f) = family {
            for p in &places {
                let in_family = view
                    .object(&p.0)?
                    .is_some_and(|o| o.families.iter().any(|t| t == f));
                if in_family {
                    chosen = Some(p.clone());
                    break;
                }
            }
        }
        let Some((id, line, _)) = chosen else {
            continue;
        };
        let key = keys::split_object_id(&id).1.to_string();
        let family_name = match family {
            Some(f) => f.to_string(),
            None => row.primary_family.clone(),
        };
        let full: String = rep
            .conversation
            .all_messages()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join(" | ");
        hits.push(TextHit {
            content_hash: hit.content_hash.to_hex(),
            family: family_name,
            key,
            line,
            score: hit.score,
            snippet: search.snippet(&*text_query, &full)?,
        });
    }
    Ok(hits)
}
