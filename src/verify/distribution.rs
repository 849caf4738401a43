//! The distribution gate: whether the dataset is shaped as configured (`[distribution]` in
//! idx.toml). Each family's split fractions against the configured ones (judged only where a
//! family has enough clusters or holdout groups for the fractions to mean something), every
//! holdout family present in test, each family's share of a phase's tokens within declared
//! bounds, and — given a curriculum — whether each stage's mix can be met by the rows the index
//! holds (a failure only with `curriculum_mix = true`, else a finding). Every failure names the
//! family, split or phase and the figures.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Report;
use crate::config::Settings;
use crate::curriculum::{Curriculum, Plan};
use crate::error::Result;
use crate::fingerprint::Hash128;
use crate::neardup::{Fractions, Split};
use crate::pii::PiiStatus;
use crate::store::{Assignment, ReadView};

/// Standard errors of a random split allowed on top of the configured tolerance.
const STANDARD_ERRORS: f64 = 3.0;

#[derive(Debug, Clone, Serialize)]
pub struct DistributionGate {
    pub passed: bool,
    /// `[distribution] split_tolerance`.
    pub split_tolerance: f64,
    /// `[distribution] min_units`.
    pub min_units: u64,
    /// Every primary family with rows, by name.
    pub splits: Vec<FamilySplits>,
    /// Every holdout family with rows.
    pub holdout_in_test: Vec<HoldoutInTest>,
    /// Every configured `[[distribution.share]]` bound.
    pub shares: Vec<PhaseShare>,
    /// The curriculum's mix against what the index supplies (absent without a curriculum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curriculum_mix: Option<MixCheck>,
    /// One line per failed check, naming what failed and the figures.
    pub failures: Vec<String>,
}

/// A family's rows per split against the configured fractions.
#[derive(Debug, Clone, Serialize)]
pub struct FamilySplits {
    pub family: String,
    /// Split by whole holdout groups (`[holdout]` fractions) or by cluster (`[splits]`).
    pub holdout: bool,
    pub rows: u64,
    /// Clusters (holdout groups included) its rows fall in: what the split draws.
    pub units: u64,
    /// Whether there are enough units (`min_units`) to judge.
    pub judged: bool,
    pub passed: bool,
    pub expected: BTreeMap<Split, f64>,
    pub observed: BTreeMap<Split, f64>,
    /// The largest deviation allowed: the tolerance plus three standard errors of a random
    /// split of `units` units.
    pub allowed: f64,
}

/// A holdout family must have rows in test.
#[derive(Debug, Clone, Serialize)]
pub struct HoldoutInTest {
    pub family: String,
    pub rows: u64,
    /// Holdout groups (and clusters) its rows fall in.
    pub groups: u64,
    pub test_rows: u64,
    /// Checked when `holdout_in_test` is on and the family has at least `min_units` groups
    /// (with fewer, a family without test rows is an expected draw; the verification warns of
    /// a family that is a single group).
    pub judged: bool,
    pub passed: bool,
}

/// A family's share of one phase's tokens, against declared bounds.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseShare {
    pub phase: String,
    pub family: String,
    pub min: f64,
    pub max: f64,
    pub tokens: u64,
    pub phase_tokens: u64,
    pub share: f64,
    pub passed: bool,
}

/// Whether each curriculum stage's mix can be met.
#[derive(Debug, Clone, Serialize)]
pub struct MixCheck {
    /// `[distribution] curriculum_mix`: whether a shortfall fails the gate.
    pub gate: bool,
    pub passed: bool,
    pub shortfalls: Vec<String>,
    /// Per stage, in training order: the planned weights against what the index supplies.
    pub stages: Vec<StageMix>,
    /// The plan's warnings.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageMix {
    pub id: String,
    pub phase: &'static str,
    pub context_length: Option<u32>,
    /// Rows and tokens drawn.
    pub rows: u64,
    pub tokens: u64,
    pub families: Vec<FamilyMix>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyMix {
    pub family: String,
    /// Planned weight, and the share of the stage's tokens it got.
    pub weight: f64,
    pub effective_weight: f64,
    /// Train-split tokens of the family suiting the stage, and those drawn.
    pub available_tokens: u64,
    pub tokens: u64,
}

/// Run the distribution checks; `report` is the verification's report of the same snapshot.
pub(super) fn distribution(
    view: &ReadView,
    settings: &Settings,
    assignments: &BTreeMap<Hash128, Assignment>,
    report: &Report,
    curriculum: Option<(&Curriculum, &Plan)>,
) -> Result<DistributionGate> {
    let config = &settings.idx.distribution;
    let policy = settings.policy();
    // Per primary family: the clusters its rows fall in, and whether it is split by groups.
    let mut units: BTreeMap<String, BTreeSet<Hash128>> = BTreeMap::new();
    view.for_each_row(|h, row| {
        if row.pii.status == PiiStatus::Excluded {
            return Ok(());
        }
        let cluster = assignments.get(&h).map_or(h, |a| a.cluster);
        units.entry(row.primary_family).or_default().insert(cluster);
        Ok(())
    })?;
    let mut failures = Vec::new();
    let mut splits = Vec::new();
    for (family, count) in &report.by_family {
        let holdout = policy.holdout_families.contains(family);
        let fractions = if holdout {
            policy.holdout_fractions
        } else {
            policy.fractions
        };
        let n = units.get(family).map_or(0, |u| u.len() as u64);
        let per = report.by_family_split.get(family);
        let rows_in = |s: Split| per.and_then(|p| p.get(&s)).map_or(0, |c| c.rows);
        let judged = n >= config.min_units && count.rows > 0;
        let mut passed = true;
        let mut expected = BTreeMap::new();
        let mut observed = BTreeMap::new();
        let mut allowed = 0.0f64;
        for (split, p) in fraction_list(fractions) {
            let got = if count.rows == 0 {
                0.0
            } else {
                rows_in(split) as f64 / count.rows as f64
            };
            let slack = allowed_deviation(config.split_tolerance, p, n);
            allowed = allowed.max(slack);
            if judged && (got - p).abs() > slack {
                passed = false;
                failures.push(format!(
                    "family `{family}`: {:.1}% of its {} rows are in {split}, configured {:.1}% \
                     (allowed ±{:.1} points over {n} {})",
                    got * 100.0,
                    count.rows,
                    p * 100.0,
                    slack * 100.0,
                    if holdout {
                        "holdout groups and clusters"
                    } else {
                        "clusters"
                    }
                ));
            }
            expected.insert(split, p);
            observed.insert(split, got);
        }
        splits.push(FamilySplits {
            family: family.clone(),
            holdout,
            rows: count.rows,
            units: n,
            judged,
            passed,
            expected,
            observed,
            allowed,
        });
    }
    let mut holdout_in_test = Vec::new();
    for family in &policy.holdout_families {
        let Some(count) = report.by_family.get(family) else {
            continue;
        };
        let test_rows = report
            .by_family_split
            .get(family)
            .and_then(|p| p.get(&Split::Test))
            .map_or(0, |c| c.rows);
        let groups = units.get(family).map_or(0, |u| u.len() as u64);
        let judged = config.holdout_in_test && groups >= config.min_units;
        let passed = !judged || test_rows > 0;
        if !passed {
            failures.push(format!(
                "holdout family `{family}` has {} rows in {groups} holdout groups and none in \
                 test: add sessions (a `session` field in sources.toml splits an object into \
                 groups) or raise `[holdout] test`",
                count.rows
            ));
        }
        holdout_in_test.push(HoldoutInTest {
            family: family.clone(),
            rows: count.rows,
            groups,
            test_rows,
            judged,
            passed,
        });
    }
    let mut shares = Vec::new();
    for bound in &config.share {
        let phase_tokens = report.by_phase.get(&bound.phase).map_or(0, |c| c.tokens);
        let tokens = report
            .by_family_phase
            .get(&bound.family)
            .and_then(|p| p.get(&bound.phase))
            .map_or(0, |c| c.tokens);
        let share = if phase_tokens == 0 {
            0.0
        } else {
            tokens as f64 / phase_tokens as f64
        };
        let passed = share >= bound.min && share <= bound.max;
        if !passed {
            failures.push(format!(
                "family `{}` holds {:.1}% of the {} phase's {phase_tokens} tokens ({tokens}); \
                 configured between {:.1}% and {:.1}%",
                bound.family,
                share * 100.0,
                bound.phase,
                bound.min * 100.0,
                bound.max * 100.0
            ));
        }
        shares.push(PhaseShare {
            phase: bound.phase.clone(),
            family: bound.family.clone(),
            min: bound.min,
            max: bound.max,
            tokens,
            phase_tokens,
            share,
            passed,
        });
    }
    let curriculum_mix = match curriculum {
        Some((c, plan)) => {
            let shortfalls = crate::curriculum::shortfalls(c, plan);
            let passed = !config.curriculum_mix || shortfalls.is_empty();
            if !passed {
                failures.extend(shortfalls.iter().map(|s| format!("curriculum mix: {s}")));
            }
            Some(MixCheck {
                gate: config.curriculum_mix,
                passed,
                shortfalls,
                stages: plan
                    .stages
                    .iter()
                    .map(|st| StageMix {
                        id: st.id.clone(),
                        phase: st.phase.as_str(),
                        context_length: st.context_length,
                        rows: st.rows,
                        tokens: st.tokens,
                        families: st
                            .families
                            .iter()
                            .map(|f| FamilyMix {
                                family: f.family.clone(),
                                weight: f.weight,
                                effective_weight: f.effective_weight,
                                available_tokens: f.available_tokens,
                                tokens: f.tokens,
                            })
                            .collect(),
                    })
                    .collect(),
                warnings: plan.warnings.clone(),
            })
        }
        None => None,
    };
    Ok(DistributionGate {
        passed: failures.is_empty(),
        split_tolerance: config.split_tolerance,
        min_units: config.min_units,
        splits,
        holdout_in_test,
        shares,
        curriculum_mix,
        failures,
    })
}

/// How far a split's share may stray from its configured fraction `p` for a family drawn
/// from `units` clusters: the tolerance plus three standard errors of a binomial draw.
fn allowed_deviation(tolerance: f64, p: f64, units: u64) -> f64 {
    tolerance + STANDARD_ERRORS * (p * (1.0 - p) / units.max(1) as f64).sqrt()
}

fn fraction_list(f: Fractions) -> [(Split, f64); 3] {
    [
        (Split::Train, f.train),
        (Split::Val, f.val),
        (Split::Test, f.test),
    ]
}

#[cfg(test)]
mod tests {
    use super::allowed_deviation;

    #[test]
    fn the_allowance_narrows_with_more_clusters_and_is_the_tolerance_for_a_certain_split() {
        // 5% test over 100 clusters: 3 standard errors are 6.5 points.
        let a = allowed_deviation(0.05, 0.05, 100);
        assert!((a - (0.05 + 3.0 * (0.05f64 * 0.95 / 100.0).sqrt())).abs() < 1e-12);
        assert!(allowed_deviation(0.05, 0.05, 10_000) < a);
        // A split configured at 0 or 1 leaves no room for chance.
        assert_eq!(allowed_deviation(0.02, 0.0, 7), 0.02);
        assert_eq!(allowed_deviation(0.02, 1.0, 7), 0.02);
        // No clusters is judged like one.
        assert_eq!(allowed_deviation(0.0, 0.5, 0), 1.5);
    }
}
