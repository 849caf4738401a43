//! The verification as a Markdown document (`idx verify --markdown FILE`).

use std::fmt::Write as _;

use super::Verification;
use crate::neardup::Split;

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
