//! The verification gates behind `idx verify`, and the dataset report.
//!
//! - *Coverage*: every required family has at least its `min_rows` indexed unique rows (rows,
//!   not object names: READMEs and notebooks never count), or a waiver; a family whose objects
//!   failed to index, or that has some rows but fewer than required, is `partial`.
//! - *Leakage*: recomputed from scratch, in memory and independently of the incremental state in
//!   `store::clusters`: candidate pairs from in-memory permuted block tables (hash maps probed
//!   the way the redb tables are; `neardup::all_pairs`), confirmed by Jaccard, and holdout groups, joined with a union-find. The gate
//!   passes when no near-duplicate pair sits in two stored splits and every row's stored cluster
//!   and split equal the recomputed ones.
//! - *Report*: unique rows and tokens by primary family, split and phase.
//!
//! Everything is read from one redb snapshot; nothing is written.

mod coverage;
mod distribution;
mod html;
mod leakage;
mod markdown;
mod report;
mod structure;
mod svg;

use serde::Serialize;

use crate::config::Settings;
use crate::curriculum::Curriculum;
use crate::error::Result;
use crate::store::ReadView;
use coverage::coverage;
use leakage::leakage;
use report::report;
use structure::structure;

pub use coverage::{CoverageGate, CoverageStatus, FamilyCoverage};
pub use distribution::DistributionGate;
pub use distribution::{FamilyMix, FamilySplits, HoldoutInTest, MixCheck, PhaseShare, StageMix};
pub use html::html;
pub use leakage::{CrossSplitPair, Disagreement, LeakageGate};
pub use markdown::markdown;
pub use report::{
    ContainedObject, Count, FamilyLengths, FamilyRejections, Histogram, Lengths, Report,
    TOKEN_BOUNDS, TURN_BOUNDS,
};
pub use structure::{holdout_warnings, FamilyStructure, StructureGate};

/// How many examples each finding lists.
const EXAMPLES: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub gates: Gates,
    pub report: Report,
    /// What does not fail a gate but deserves a look (a holdout family that is one group).
    pub warnings: Vec<String>,
    /// The benchmark sets rows are checked against (absent when none is loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decontamination: Option<DecontaminationSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gates {
    pub coverage: CoverageGate,
    pub leakage: LeakageGate,
    pub structure: StructureGate,
    pub distribution: DistributionGate,
}

impl Gates {
    /// The names of the gates that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        [
            ("coverage", self.coverage.passed),
            ("leakage", self.leakage.passed),
            ("structure", self.structure.passed),
            ("distribution", self.distribution.passed),
        ]
        .into_iter()
        .filter(|(_, passed)| !passed)
        .map(|(name, _)| name)
        .collect()
    }
}

/// Run every gate and build the report. With a curriculum, the distribution gate also checks
/// that each stage's mix can be supplied.
pub fn verify(
    view: &ReadView,
    settings: &Settings,
    curriculum: Option<&Curriculum>,
) -> Result<Verification> {
    let collapse = settings.idx.export.collapse_near_duplicates;
    Ok(verify_selecting(view, settings, curriculum, collapse)?.0)
}

/// The dataset as an export selects it, from the snapshot a verification read.
pub(crate) struct Selected {
    pub(crate) verdicts: crate::decontaminate::Verdicts,
    pub(crate) selection: crate::select::Selection,
    pub(crate) plan: crate::curriculum::Plan,
}

/// [`verify`], keeping the selection and plan it made with a curriculum (`collapse`: one row
/// per near-duplicate group), so an export does not make them again.
pub(crate) fn verify_selecting(
    view: &ReadView,
    settings: &Settings,
    curriculum: Option<&Curriculum>,
    collapse: bool,
) -> Result<(Verification, Option<Selected>)> {
    let policy = settings.policy();
    let stored_policy = view.policy()?;
    let assignments = view.assignments(&policy)?;
    let coverage = coverage(view, settings)?;
    let mut leakage = leakage(view, &policy, &assignments)?;
    leakage.settings_current = stored_policy.as_ref().is_none_or(|p| *p == policy);
    leakage.passed = leakage.cross_split_pairs == 0
        && leakage.disagreements == 0
        && leakage.settings_current
        && leakage.global.as_ref().is_none_or(|g| g.conflicts == 0);
    let keep = settings.keep();
    let mut report = report(view, &assignments, &keep)?;
    let overlaps = crate::overlap::overlap(view, None, &|k| keep.is_redundant(k))?;
    let mut warnings = holdout_warnings(view, &policy)?;
    if let Some(g) = leakage.global.as_ref().filter(|g| g.stale) {
        warnings.push(format!(
            "shard {} changed since the signatures its assignment table {} was made from: rows \
             added since are split by this shard alone until `idx export signatures \
             --incremental`, the global job and `idx import assignments` run again",
            g.shard, g.assignments
        ));
    }
    for o in overlaps.iter().filter(|o| o.contained) {
        if !o.redundant {
            warnings.push(format!(
                "object {} holds no row of its own: all its {} rows are also in {}; mark it \
                 (or the objects it repeats) `redundant` in [objects] of idx.toml so its rows \
                 are not counted twice",
                o.key,
                o.rows,
                o.others
                    .iter()
                    .map(|x| x.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        report.contained_objects.push(ContainedObject {
            key: o.key.clone(),
            rows: o.rows,
            redundant: o.redundant,
            within: o.others.iter().map(|x| x.key.clone()).collect(),
        });
    }
    let structure = structure(view, settings.idx.structure.max_flawed_fraction)?;
    // With a curriculum, the dataset as an export would select it: the plan's mix and the
    // near-duplicates collapsed per family.
    let selected = match curriculum {
        Some(c) => {
            let verdicts = crate::decontaminate::verdicts(view, settings)?;
            let selection = crate::select::select(
                view,
                &policy,
                &crate::select::SelectOptions {
                    collapse,
                    withheld: &verdicts.withheld(),
                    keep: &keep,
                },
            )?;
            for r in &selection.rows {
                if let Some(n) = selection.collapsed.get(&r.hash) {
                    *report
                        .near_duplicates_collapsed
                        .entry(r.primary_family.clone())
                        .or_default() += n.len() as u64;
                }
            }
            let plan = crate::curriculum::plan(c, &settings.classifier, &selection);
            Some(Selected {
                verdicts,
                selection,
                plan,
            })
        }
        None => None,
    };
    let distribution = distribution::distribution(
        view,
        settings,
        &assignments,
        &report,
        curriculum.zip(selected.as_ref().map(|s| &s.plan)),
    )?;
    let decontamination = decontamination_summary(view, settings)?;
    let verification = Verification {
        passed: coverage.passed && leakage.passed && structure.passed && distribution.passed,
        gates: Gates {
            coverage,
            leakage,
            structure,
            distribution,
        },
        report,
        warnings,
        decontamination,
    };
    Ok((verification, selected))
}

/// The benchmark sets and what matched, for the report.
fn decontamination_summary(
    view: &ReadView,
    settings: &Settings,
) -> Result<Option<DecontaminationSummary>> {
    let answer = crate::decontaminate::query(view, settings, None, 0)?;
    if answer.benchmarks.is_empty() {
        return Ok(None);
    }
    Ok(Some(DecontaminationSummary {
        action: answer.action,
        rows_matched: answer.rows,
        unchecked: answer.unchecked,
        benchmarks: answer
            .benchmarks
            .iter()
            .map(|b| BenchmarkSummary {
                name: b.name.clone(),
                items: b.items,
                rows_matched: answer.rows_by_benchmark.get(&b.name).copied().unwrap_or(0),
            })
            .collect(),
    }))
}

/// Decontamination at a glance (`idx query contamination` has the rows).
#[derive(Debug, Clone, Serialize)]
pub struct DecontaminationSummary {
    pub action: &'static str,
    pub rows_matched: u64,
    /// Rows not yet checked against the current set.
    pub unchecked: u64,
    pub benchmarks: Vec<BenchmarkSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkSummary {
    pub name: String,
    pub items: u64,
    pub rows_matched: u64,
}
