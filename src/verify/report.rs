//! The dataset report (rows and tokens by family, split, phase and PII status) and the Markdown
//! rendering of a whole verification.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Verification;
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
        // Excluded rows are audited above and never exported: the training figures leave them out.
        if row.pii.status == PiiStatus::Excluded {
            return Ok(());
        }
        let split = assignments.get(&h).map_or(Split::Train, |a| a.split);
        let mut row = row;
        if keep.is_active() {
            row.primary_family = resolver.placement(h, &row)?.primary_family;
        }
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
            if let Some(v) = view.representative(h)? {
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
                    tokens: Lengths::of(tokens)?,
                    turns: Lengths::of(turns),
                },
            ))
        })
        .collect();
    Ok(r)
}

/// The verification as a Markdown document.
pub fn markdown(v: &Verification) -> String {
    let mut out = String::new();
    let verdict = |p: bool| if p { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "# idx verify: {}\n", verdict(v.passed));
    let c = &v.gates.coverage;
    let _ = writeln!(out, "## Coverage gate: {}\n", verdict(c.passed));
    let _ = writeln!(
        out,
        "| family | required | status | rows | tokens | objects | next action |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|");
    for f in &c.families {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            if f.derived_rows > 0 {
                format!("{} (derived: {} rows)", f.family, f.derived_rows)
            } else {
                f.family.clone()
            },
            if f.required { "yes" } else { "no" },
            f.status.as_str(),
            f.rows,
            f.tokens,
            f.objects,
            f.next_action.replace('|', "\\|")
        );
    }
    let l = &v.gates.leakage;
    let leakage_verdict = if l.settings_current {
        verdict(l.passed)
    } else {
        "STALE (settings changed: run `idx ingest` to recompute)"
    };
    let _ = writeln!(out, "\n## Leakage gate: {leakage_verdict}\n");
    let _ = writeln!(
        out,
        "- near-duplicate pairs across splits: {}\n- rows whose stored cluster/split differs from the recomputation: {}\n- index built with the current settings: {}\n- near-duplicate pairs confirmed: {} (of {} candidates); clusters of 2+: {} holding {} rows; holdout groups: {}",
        l.cross_split_pairs,
        l.disagreements,
        if l.settings_current { "yes" } else { "no (run `idx ingest` to recompute)" },
        l.near_duplicate_pairs,
        l.candidate_pairs,
        l.clusters,
        l.rows_in_clusters,
        l.holdout_groups
    );
    for p in &l.cross_split_examples {
        let _ = writeln!(
            out,
            "  - `{}` ({}) ~ `{}` ({}): hamming {}, jaccard {:.3}",
            p.a, p.split_a, p.b, p.split_b, p.hamming, p.similarity
        );
    }
    let st = &v.gates.structure;
    let _ = writeln!(out, "\n## Structure gate: {}\n", verdict(st.passed));
    let _ = writeln!(
        out,
        "Conversations held back from the export (a family fails above {:.0}%).\n\n| family | verdict | conversations | held back | checks | example |\n|---|---|---:|---:|---|---|",
        st.max_flawed_fraction * 100.0
    );
    for f in &st.families {
        let checks: Vec<String> = f.checks.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            f.family,
            verdict(f.passed),
            f.rows,
            f.flawed,
            checks.join(", "),
            f.examples
                .first()
                .map_or(String::new(), |h| format!("`{h}`"))
        );
    }
    let d = &v.gates.distribution;
    let _ = writeln!(out, "\n## Distribution gate: {}\n", verdict(d.passed));
    for f in &d.failures {
        let _ = writeln!(out, "- FAIL: {f}");
    }
    let _ = writeln!(
        out,
        "\nSplit fractions of unique rows (judged with at least {} clusters; allowed: ±{:.0} points plus three standard errors).\n\n| family | split by | rows | clusters | train | val | test | allowed | verdict |\n|---|---|---:|---:|---:|---:|---:|---:|---|",
        d.min_units,
        d.split_tolerance * 100.0
    );
    for f in &d.splits {
        let pct = |s: Split| {
            format!(
                "{:.1}% ({:.0}%)",
                f.observed.get(&s).copied().unwrap_or(0.0) * 100.0,
                f.expected.get(&s).copied().unwrap_or(0.0) * 100.0
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | ±{:.1} | {} |",
            f.family,
            if f.holdout {
                "holdout group"
            } else {
                "cluster"
            },
            f.rows,
            f.units,
            pct(Split::Train),
            pct(Split::Val),
            pct(Split::Test),
            f.allowed * 100.0,
            if f.judged {
                verdict(f.passed)
            } else {
                "not judged"
            }
        );
    }
    if !d.holdout_in_test.is_empty() {
        let _ = writeln!(
            out,
            "\n| holdout family | rows | groups | in test | verdict |\n|---|---:|---:|---:|---|"
        );
        for h in &d.holdout_in_test {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                h.family,
                h.rows,
                h.groups,
                h.test_rows,
                if h.judged {
                    verdict(h.passed)
                } else {
                    "not judged"
                }
            );
        }
    }
    if !d.shares.is_empty() {
        let _ = writeln!(
            out,
            "\n| phase | family | share of tokens | bounds | verdict |\n|---|---|---:|---|---|"
        );
        for b in &d.shares {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}% | {:.0}%–{:.0}% | {} |",
                b.phase,
                b.family,
                b.share * 100.0,
                b.min * 100.0,
                b.max * 100.0,
                verdict(b.passed)
            );
        }
    }
    if let Some(m) = &d.curriculum_mix {
        let _ = writeln!(
            out,
            "\nCurriculum mix ({}): {}",
            if m.gate { "gated" } else { "reported" },
            if m.shortfalls.is_empty() {
                "every stage can be supplied".to_string()
            } else {
                format!("{} shortfall(s)", m.shortfalls.len())
            }
        );
        for s in &m.shortfalls {
            let _ = writeln!(out, "- {s}");
        }
    }
    if !v.report.contained_objects.is_empty() {
        let _ = writeln!(
            out,
            "\n## Objects that repeat others\n\n| object | rows | redundant | rows also in |\n|---|---:|---|---|"
        );
        for c in &v.report.contained_objects {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.key,
                c.rows,
                if c.redundant { "yes" } else { "no" },
                c.within.join(", ")
            );
        }
    }
    if !v.warnings.is_empty() {
        let _ = writeln!(out, "\n## Warnings\n");
        for w in &v.warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    let r = &v.report;
    let _ = writeln!(
        out,
        "\n## Report\n\n{} unique rows, {} tokens.\n",
        r.total.rows, r.total.tokens
    );
    let _ = writeln!(out, "| split | rows | tokens |\n|---|---:|---:|");
    for (s, n) in &r.by_split {
        let _ = writeln!(out, "| {s} | {} | {} |", n.rows, n.tokens);
    }
    let _ = writeln!(out, "\n| PII status | rows | tokens |\n|---|---:|---:|");
    for (s, n) in &r.by_pii_status {
        let _ = writeln!(out, "| {} | {} | {} |", s.as_str(), n.rows, n.tokens);
    }
    let _ = writeln!(out, "\n| phase | rows | tokens |\n|---|---:|---:|");
    for (p, n) in &r.by_phase {
        let _ = writeln!(out, "| {p} | {} | {} |", n.rows, n.tokens);
    }
    let _ = writeln!(
        out,
        "\n| family | rows | tokens | train | val | test |\n|---|---:|---:|---:|---:|---:|"
    );
    for (f, n) in &r.by_family {
        let per = r.by_family_split.get(f);
        let rows_in = |s: Split| per.and_then(|p| p.get(&s)).map_or(0, |c| c.rows);
        let _ = writeln!(
            out,
            "| {f} | {} | {} | {} | {} | {} |",
            n.rows,
            n.tokens,
            rows_in(Split::Train),
            rows_in(Split::Val),
            rows_in(Split::Test)
        );
    }
    let _ = writeln!(
        out,
        "\n| family | tokens p50 | p90 | p99 | max | turns p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (f, l) in &r.lengths {
        let turns = l.turns.as_ref().map_or("- | - | - | -".to_string(), |t| {
            format!("{} | {} | {} | {}", t.p50, t.p90, t.p99, t.max)
        });
        let _ = writeln!(
            out,
            "| {f} | {} | {} | {} | {} | {turns} |",
            l.tokens.p50, l.tokens.p90, l.tokens.p99, l.tokens.max
        );
    }
    out
}
