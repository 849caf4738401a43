//! The coverage gate: every required family has its rows (or a waiver), with the evidence and
//! the next action.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::error::Result;
use crate::keep::Resolver;
use crate::pii::PiiStatus;
use crate::store::{ObjectStatus, ReadView};

/// How many evidence keys each family lists.
const EVIDENCE: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct CoverageGate {
    pub passed: bool,
    /// Every configured family, in config order.
    pub families: Vec<FamilyCoverage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageStatus {
    Present,
    Partial,
    Missing,
    Waived,
}

impl CoverageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CoverageStatus::Present => "present",
            CoverageStatus::Partial => "partial",
            CoverageStatus::Missing => "missing",
            CoverageStatus::Waived => "waived",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyCoverage {
    pub family: String,
    pub required: bool,
    pub status: CoverageStatus,
    /// Unique rows carrying the family tag (PII-excluded rows not counted).
    pub rows: u64,
    pub tokens: u64,
    pub min_rows: u64,
    /// Indexed objects with rows for this family.
    pub objects: u64,
    /// Their keys (the first few).
    pub evidence: Vec<String>,
    /// Objects of this family that could not be read, or gave no row (every line rejected).
    pub failed_objects: Vec<String>,
    pub waiver: Option<String>,
    pub next_action: String,
    /// Of its rows (places), those derive recipes made (`configs/derive.toml`): the derived
    /// marker.
    pub derived_rows: u64,
}

pub(super) fn coverage(view: &ReadView, settings: &Settings) -> Result<CoverageGate> {
    // Unique rows per family tag that can reach the dataset (PII-excluded rows and rows held
    // back by the structure checks never do).
    // Places in redundant objects do not count (`[objects]`, see `keep`).
    let keep = settings.keep();
    let mut resolver = Resolver::new(view, &keep);
    let mut stats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    view.for_each_row(|h, row| {
        if row.pii.status != PiiStatus::Excluded && row.flaws.is_empty() {
            let families = if keep.is_active() {
                resolver.placement(h, &row)?.families
            } else {
                row.families.iter().map(|(f, _)| f.clone()).collect()
            };
            for f in families {
                let s = stats.entry(f).or_default();
                s.0 += 1;
                s.1 += row.tokens;
            }
        }
        Ok(())
    })?;
    let objects = view.objects()?;
    let mut families = Vec::new();
    for f in &settings.classifier.config().families {
        let (rows, tokens) = stats.get(&f.name).copied().unwrap_or((0, 0));
        let mut evidence = Vec::new();
        let mut count = 0u64;
        let mut failed_objects = Vec::new();
        let mut derived_rows = 0u64;
        for o in objects
            .iter()
            .filter(|o| o.families.contains(&f.name) && !keep.is_redundant(&o.key))
        {
            if o.source == crate::source::derived::DERIVED_SOURCE {
                derived_rows += o.rows;
            }
            match &o.status {
                ObjectStatus::Indexed if o.rows > 0 => {
                    count += 1;
                    if evidence.len() < EVIDENCE {
                        evidence.push(o.key.clone());
                    }
                }
                ObjectStatus::Failed { .. } => failed_objects.push(o.key.clone()),
                ObjectStatus::Indexed if o.rejected > 0 => failed_objects.push(o.key.clone()),
                _ => {}
            }
        }
        let enough = rows >= f.min_rows.max(1);
        let mut status = if enough && failed_objects.is_empty() {
            CoverageStatus::Present
        } else if rows > 0 || !failed_objects.is_empty() {
            CoverageStatus::Partial
        } else {
            CoverageStatus::Missing
        };
        if status != CoverageStatus::Present && f.waiver.is_some() {
            status = CoverageStatus::Waived;
        }
        let next_action = match status {
            CoverageStatus::Present => "none".to_string(),
            CoverageStatus::Waived => format!(
                "none (waived: {})",
                f.waiver.as_deref().unwrap_or_default()
            ),
            CoverageStatus::Partial if !failed_objects.is_empty() => format!(
                "fix and re-ingest {} unreadable object(s), first {}",
                failed_objects.len(),
                failed_objects[0]
            ),
            CoverageStatus::Partial => format!(
                "add {} more row(s) (has {rows}, needs {})",
                f.min_rows - rows,
                f.min_rows
            ),
            CoverageStatus::Missing => format!(
                "add data whose keys match the `{}` rules in families.toml and ingest it, or give the family a waiver",
                f.name
            ),
        };
        families.push(FamilyCoverage {
            family: f.name.clone(),
            required: f.required,
            status,
            rows,
            tokens,
            min_rows: f.min_rows,
            objects: count,
            evidence,
            failed_objects,
            waiver: f.waiver.clone(),
            next_action,
            derived_rows,
        });
    }
    let passed = families.iter().all(|f| {
        !f.required || matches!(f.status, CoverageStatus::Present | CoverageStatus::Waived)
    });
    Ok(CoverageGate { passed, families })
}
