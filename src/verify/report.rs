//! The dataset report (rows and tokens by family, split, phase and PII status) and the Markdown
//! rendering of a whole verification.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::keep::{Keep, Resolver};
use crate::model::{RecordKind, Role};
use crate::neardup::Split;
use crate::pii::{PiiKind, PiiStatus};
use crate::store::{Assignment, ReadView};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub rows: u64,
    pub tokens: u64,
}

impl Count {
    fn add(&mut self, tokens: u64) {
        self.rows += 1;
        self.tokens += tokens;
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Unique rows and their tokens, PII-excluded rows left out (as in every breakdown but the PII ones).
    pub total: Count,
    /// By primary family (each row counted once).
    pub by_family: BTreeMap<String, Count>,
    pub by_split: BTreeMap<Split, Count>,
    pub by_phase: BTreeMap<String, Count>,
    pub by_family_split: BTreeMap<String, BTreeMap<Split, Count>>,
    /// By primary family and training phase.
    pub by_family_phase: BTreeMap<String, BTreeMap<String, Count>>,
    /// Objects every row of which is also in other objects (`idx query overlap KEY` says
    /// which share what).
    pub contained_objects: Vec<ContainedObject>,
    /// Per primary family: unique rows by PII status (excluded rows included).
    pub pii_by_family: BTreeMap<String, BTreeMap<PiiStatus, u64>>,
    /// Per family (an object's primary family): rejected records and failed objects.
    pub rejections: BTreeMap<String, FamilyRejections>,
    /// Per primary family: rows an export leaves out as near-duplicates of a kept row (filled
    /// when the verification selected the dataset, i.e. with a curriculum).
    pub near_duplicates_collapsed: BTreeMap<String, u64>,
    /// Per primary family: tokens per row and turns (user and assistant messages) per
    /// conversation.
    pub lengths: BTreeMap<String, FamilyLengths>,
    /// By PII status (clean, redacted, excluded).
    pub by_pii_status: BTreeMap<PiiStatus, Count>,
    /// Placeholders per PII kind, over all unique rows.
    pub pii_kinds: BTreeMap<PiiKind, u64>,
}

/// An object that repeats others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainedObject {
    pub key: String,
    pub rows: u64,
    /// Marked redundant in `[objects]` (then its places do not count).
    pub redundant: bool,
    /// The objects sharing its rows, most first (the first ten).
    pub within: Vec<String>,
}

/// Token and turn distributions of one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyLengths {
    pub tokens: Lengths,
    /// Plain-text rows have no turns and are left out (`None` when the family has only text).
    pub turns: Option<Lengths>,
    /// Rows per token-count bucket ([`TOKEN_BOUNDS`]).
    pub token_histogram: Histogram,
    /// Conversations per turn-count bucket ([`TURN_BOUNDS`]).
    pub turn_histogram: Option<Histogram>,
}

/// Upper bounds (inclusive) of the token-count buckets.
pub const TOKEN_BOUNDS: &[u64] = &[64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768];
/// Upper bounds (inclusive) of the turn-count buckets.
pub const TURN_BOUNDS: &[u64] = &[2, 4, 6, 8, 12, 16, 24, 32, 64];

/// Counts per bucket: `counts[i]` values up to `bounds[i]` (and above `bounds[i - 1]`), the last
/// count those above every bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub bounds: Vec<u64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn of(values: &[u64], bounds: &[u64]) -> Histogram {
        let mut counts = vec![0; bounds.len() + 1];
        for &v in values {
            counts[bounds.partition_point(|&b| b < v)] += 1;
        }
        Histogram {
            bounds: bounds.to_vec(),
            counts,
        }
    }
}

/// Rejected records and failed objects of one family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FamilyRejections {
    /// Records (lines) rejected, over the family's objects.
    pub rejected: u64,
    /// Objects that could not be read.
    pub failed_objects: u64,
    /// The first few, as `key:line: reason` (or `key: error`).
    pub examples: Vec<String>,
}

/// The distribution of a count over rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lengths {
    pub rows: u64,
    pub min: u64,
    pub mean: u64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Lengths {
    /// Nearest-rank percentiles; `None` for no values.
    pub fn of(mut values: Vec<u64>) -> Option<Lengths> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        let at = |q: f64| values[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
        Some(Lengths {
            rows: n as u64,
            min: values[0],
            mean: values.iter().sum::<u64>() / n as u64,
            p50: at(0.5),
            p90: at(0.9),
            p95: at(0.95),
            p99: at(0.99),
            max: values[n - 1],
        })
    }
}

pub(super) fn report(
    view: &ReadView,
    assignments: &BTreeMap<Hash128, Assignment>,
    keep: &Keep,
) -> Result<Report> {
    let mut r = Report::default();
    let mut resolver = Resolver::new(view, keep);
    let mut lengths: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    view.for_each_row(|h, row| {
        r.by_pii_status
            .entry(row.pii.status)
            .or_default()
            .add(row.tokens);
        for (k, n) in &row.pii.kinds {
            *r.pii_kinds.entry(*k).or_default() += u64::from(*n);
        }
        let mut row = row;
        if keep.is_active() {
            row.primary_family = resolver.placement(h, &row)?.primary_family;
        }
        *r.pii_by_family
            .entry(row.primary_family.clone())
            .or_default()
            .entry(row.pii.status)
            .or_default() += 1;
        // Excluded rows are audited above and never exported: the training figures leave them out.
        if row.pii.status == PiiStatus::Excluded {
            return Ok(());
        }
        let split = assignments.get(&h).map_or(Split::Train, |a| a.split);
        r.total.add(row.tokens);
        r.by_family
            .entry(row.primary_family.clone())
            .or_default()
            .add(row.tokens);
        r.by_split.entry(split).or_default().add(row.tokens);
        r.by_phase
            .entry(row.kind.phase().to_string())
            .or_default()
            .add(row.tokens);
        r.by_family_split
            .entry(row.primary_family.clone())
            .or_default()
            .entry(split)
            .or_default()
            .add(row.tokens);
        r.by_family_phase
            .entry(row.primary_family.clone())
            .or_default()
            .entry(row.kind.phase().to_string())
            .or_default()
            .add(row.tokens);
        let (tokens, turns) = lengths.entry(row.primary_family).or_default();
        tokens.push(row.tokens);
        if row.kind != RecordKind::Text {
            // A conversation without a system message after its first turn has one first or
            // none at all: its turns are its message count, read without decoding its text.
            if !row.flaws.has(crate::structure::Check::SystemInside) {
                if let Some((n, first)) = view.message_count(h)? {
                    turns.push(n - u64::from(first == Some(Role::System)));
                }
            } else if let Some(v) = view.representative(h)? {
                turns.push(
                    v.conversation
                        .messages
                        .iter()
                        .filter(|m| m.role != Role::System)
                        .count() as u64,
                );
            }
        }
        Ok(())
    })?;
    r.lengths = lengths
        .into_iter()
        .filter_map(|(family, (tokens, turns))| {
            Some((
                family,
                FamilyLengths {
                    token_histogram: Histogram::of(&tokens, TOKEN_BOUNDS),
                    turn_histogram: (!turns.is_empty()).then(|| Histogram::of(&turns, TURN_BOUNDS)),
                    tokens: Lengths::of(tokens)?,
                    turns: Lengths::of(turns),
                },
            ))
        })
        .collect();
    for o in view.objects()? {
        let failed = matches!(o.status, crate::store::ObjectStatus::Failed { .. });
        if o.rejected == 0 && !failed {
            continue;
        }
        let f = r.rejections.entry(o.primary_family.clone()).or_default();
        f.rejected += o.rejected;
        if let crate::store::ObjectStatus::Failed { error } = &o.status {
            f.failed_objects += 1;
            if f.examples.len() < REJECTION_EXAMPLES {
                f.examples.push(format!("{}: {error}", o.key));
            }
        }
        for rej in &o.rejections {
            if f.examples.len() >= REJECTION_EXAMPLES {
                break;
            }
            f.examples
                .push(format!("{}:{}: {}", o.key, rej.line, rej.reason));
        }
    }
    Ok(r)
}

/// Rejection examples kept per family.
const REJECTION_EXAMPLES: usize = 5;
