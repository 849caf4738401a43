//! The verification as one self-contained HTML page (`idx verify --html FILE`, and
//! `report.html` in every export): every gate's verdict at the top, then the coverage matrix,
//! tokens by family × split and × phase, length and turn distributions with the curriculum's
//! context lengths marked, near-duplicates, PII, the curriculum's mix, rejections and
//! decontamination. Inline CSS and SVG, no script, no fetch: it opens offline. It renders the
//! same [`Verification`] `--json` prints, so the numbers are one source; every chart has a
//! title and its numbers are in a table beside it. Well-formed XML (tests parse it), and the
//! same verification gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::svg::{esc, histogram, stacked_bars, Bar, Marker, Series};
use super::{CoverageStatus, Verification};
use crate::neardup::Split;
use crate::pii::PiiStatus;

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#1d2430;line-height:1.4}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #d5dbe3;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #d5dbe3;padding:3px 8px;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f1f4f8}\
.pass{background:#d8f3dc;color:#1b4332}.fail{background:#ffd6d6;color:#7a0010}.warn{background:#fff3c4;color:#6b4e00}.muted{color:#667}\
.badge{display:inline-block;padding:.3em .8em;margin:.2em .4em .2em 0;border-radius:1em;font-weight:600}\
.present{background:#d8f3dc}.partial{background:#fff3c4}.missing{background:#ffd6d6}.waived{background:#e6e6f0}\
svg{display:block;margin:.4em 0;font-size:11px;font-family:inherit}svg text{fill:#1d2430}.tick{font-size:9px}\
.s0{fill:#3a6ea5}.s1{fill:#f4a259}.s2{fill:#8cb369}.s3{fill:#bc4b51}.axis{stroke:#99a}.marker{stroke:#bc4b51;stroke-dasharray:3 2}.marker-label{fill:#bc4b51}\
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid > div{border:1px solid #e3e7ee;padding:.4em .6em;border-radius:6px}\
ul.warnings li{margin:.2em 0}code{font-size:.9em}";

fn verdict(passed: bool) -> (&'static str, &'static str) {
    if passed {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The page. `moved` is the number of rows whose split changed since a previous export, when
/// the export was given one.
pub fn html(v: &Verification, title: &str, moved: Option<u64>) -> String {
    let mut o = String::with_capacity(64 << 10);
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\" xmlns=\"http://www.w3.org/1999/xhtml\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>{}</title><style>{CSS}</style></head><body>",
        esc(title)
    );
    let (class, text) = verdict(v.passed);
    let _ = write!(
        o,
        "<h1>{}</h1><p class=\"muted\">idx verify report: every number below is in <code>idx verify --json</code>.</p>\n<p><span class=\"badge {class}\" data-verdict=\"{text}\">overall: {text}</span>",
        esc(title)
    );
    let l = &v.gates.leakage;
    let gates = [
        ("coverage", v.gates.coverage.passed),
        ("leakage", l.passed),
        ("structure", v.gates.structure.passed),
        ("distribution", v.gates.distribution.passed),
    ];
    for (name, passed) in gates {
        let (class, text) = verdict(passed);
        let _ = write!(
            o,
            "<span class=\"badge {class}\" data-gate=\"{name}\" data-passed=\"{passed}\">{name}: {text}</span>"
        );
    }
    if let Some(d) = &v.decontamination {
        let class = if d.rows_matched == 0 { "pass" } else { "warn" };
        let _ = write!(
            o,
            "<span class=\"badge {class}\" data-decontamination=\"{}\">decontamination: {} rows match ({})</span>",
            d.rows_matched, d.rows_matched, d.action
        );
    }
    o.push_str("</p>\n");
    let r = &v.report;
    let _ = writeln!(
        o,
        "<p data-total-rows=\"{}\" data-total-tokens=\"{}\">{} unique rows, {} tokens (PII-excluded rows left out of every figure but the PII ones).</p>",
        r.total.rows, r.total.tokens, r.total.rows, r.total.tokens
    );
    if !v.gates.distribution.failures.is_empty() || !v.warnings.is_empty() {
        o.push_str("<ul class=\"warnings\">");
        for f in &v.gates.distribution.failures {
            let _ = write!(o, "<li class=\"fail\">{}</li>", esc(f));
        }
        for w in &v.warnings {
            let _ = write!(o, "<li class=\"warn\">{}</li>", esc(w));
        }
        o.push_str("</ul>\n");
    }
    coverage(&mut o, v);
    splits(&mut o, v);
    lengths(&mut o, v);
    near_duplicates(&mut o, v, moved);
    pii(&mut o, v);
    curriculum(&mut o, v);
    rejections(&mut o, v);
    decontamination(&mut o, v);
    o.push_str("</body></html>\n");
    o
}

fn coverage(o: &mut String, v: &Verification) {
    let c = &v.gates.coverage;
    let (class, text) = verdict(c.passed);
    let _ = write!(
        o,
        "<h2 id=\"coverage\">Coverage <span class=\"badge {class}\">{text}</span></h2>\n<table><thead><tr><th>family</th><th>required</th><th>status</th><th>rows</th><th>tokens</th><th>objects</th><th>next action</th></tr></thead><tbody>"
    );
    for f in &c.families {
        let status = f.status.as_str();
        let _ = write!(
            o,
            "<tr data-family=\"{}\" data-status=\"{status}\" data-rows=\"{}\" data-tokens=\"{}\"><td>{}</td><td>{}</td><td class=\"{status}\">{status}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&f.family),
            f.rows,
            f.tokens,
            esc(&f.family),
            if f.required { "yes" } else { "no" },
            f.rows,
            f.tokens,
            f.objects,
            esc(&f.next_action)
        );
    }
    o.push_str("</tbody></table>\n");
    let counts: BTreeMap<&str, usize> = c.families.iter().fold(BTreeMap::new(), |mut m, f| {
        *m.entry(f.status.as_str()).or_default() += 1;
        m
    });
    let _ = writeln!(
        o,
        "<p class=\"muted\">{} families: {}.</p>",
        c.families.len(),
        [
            CoverageStatus::Present,
            CoverageStatus::Partial,
            CoverageStatus::Missing,
            CoverageStatus::Waived
        ]
        .iter()
        .map(|s| format!(
            "{} {}",
            counts.get(s.as_str()).copied().unwrap_or(0),
            s.as_str()
        ))
        .collect::<Vec<_>>()
        .join(", ")
    );
}

const SPLITS: [Split; 3] = [Split::Train, Split::Val, Split::Test];

fn splits(o: &mut String, v: &Verification) {
    let r = &v.report;
    o.push_str("<h2 id=\"splits\">Tokens by family and split</h2>\n");
    let bars: Vec<Bar> = r
        .by_family_split
        .iter()
        .map(|(f, per)| Bar {
            label: f.clone(),
            values: SPLITS
                .iter()
                .map(|s| per.get(s).map_or(0, |c| c.tokens))
                .collect(),
        })
        .collect();
    o.push_str(&stacked_bars(
        "Tokens per family, stacked by split (train, val, test)",
        &bars,
        &[
            Series {
                name: "train",
                class: "s0",
            },
            Series {
                name: "val",
                class: "s1",
            },
            Series {
                name: "test",
                class: "s2",
            },
        ],
    ));
    let d = &v.gates.distribution;
    let _ = write!(
        o,
        "\n<table><thead><tr><th>family</th><th>split by</th><th>rows</th><th>clusters</th><th>train</th><th>val</th><th>test</th><th>allowed ±</th><th>verdict</th></tr></thead><tbody>"
    );
    for f in &d.splits {
        let cell = |s: Split| {
            format!(
                "{} <span class=\"muted\">({})</span>",
                pct(f.observed.get(&s).copied().unwrap_or(0.0)),
                pct(f.expected.get(&s).copied().unwrap_or(0.0))
            )
        };
        let (class, text) = if f.judged {
            verdict(f.passed)
        } else {
            ("muted", "not judged")
        };
        let _ = write!(
            o,
            "<tr data-split-family=\"{}\" data-rows=\"{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{class}\">{text}</td></tr>",
            esc(&f.family),
            f.rows,
            esc(&f.family),
            if f.holdout { "holdout group" } else { "cluster" },
            f.rows,
            f.units,
            cell(Split::Train),
            cell(Split::Val),
            cell(Split::Test),
            pct(f.allowed)
        );
    }
    o.push_str("</tbody></table><p class=\"muted\">Observed share of each family's rows per split (configured in brackets).</p>\n");
    o.push_str("<h2 id=\"phases\">Tokens by family and phase</h2>\n");
    let phases = ["pretraining", "sft", "preference"];
    let bars: Vec<Bar> = r
        .by_family_phase
        .iter()
        .map(|(f, per)| Bar {
            label: f.clone(),
            values: phases
                .iter()
                .map(|p| per.get(*p).map_or(0, |c| c.tokens))
                .collect(),
        })
        .collect();
    o.push_str(&stacked_bars(
        "Tokens per family, stacked by training phase (pretraining, sft, preference)",
        &bars,
        &[
            Series {
                name: "pretraining",
                class: "s0",
            },
            Series {
                name: "sft",
                class: "s1",
            },
            Series {
                name: "preference",
                class: "s2",
            },
        ],
    ));
    o.push_str("\n<table><thead><tr><th>family</th><th>pretraining</th><th>sft</th><th>preference</th></tr></thead><tbody>");
    for (f, per) in &r.by_family_phase {
        let _ = write!(o, "<tr><td>{}</td>", esc(f));
        for p in phases {
            let c = per.get(p).cloned().unwrap_or_default();
            let _ = write!(
                o,
                "<td class=\"n\">{} rows, {} tokens</td>",
                c.rows, c.tokens
            );
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>\n");
}

fn lengths(o: &mut String, v: &Verification) {
    let r = &v.report;
    // The curriculum's context lengths, with the stages using each.
    let mut contexts: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    if let Some(m) = &v.gates.distribution.curriculum_mix {
        for s in &m.stages {
            if let Some(c) = s.context_length {
                contexts.entry(c).or_default().push(&s.id);
            }
        }
    }
    let markers: Vec<Marker> = contexts
        .iter()
        .map(|(c, stages)| Marker {
            value: u64::from(*c),
            label: format!(
                "context {c} ({} stage{})",
                stages.len(),
                if stages.len() == 1 { "" } else { "s" }
            ),
        })
        .collect();
    o.push_str("<h2 id=\"lengths\">Lengths</h2>\n<p class=\"muted\">Tokens per row and turns (user and assistant messages) per conversation, per family; dashed lines mark the curriculum stages' context lengths.</p>\n");
    if !contexts.is_empty() {
        o.push_str("<ul>");
        for (c, stages) in &contexts {
            let _ = write!(o, "<li>context {c}: {}</li>", esc(&stages.join(", ")));
        }
        o.push_str("</ul>\n");
    }
    o.push_str("<div class=\"grid\">");
    for (f, l) in &r.lengths {
        let _ = write!(o, "<div><strong>{}</strong>", esc(f));
        o.push_str(&histogram(
            &format!("Tokens per row of {f}"),
            &l.token_histogram.bounds,
            &l.token_histogram.counts,
            &markers,
        ));
        if let Some(t) = &l.turn_histogram {
            o.push_str(&histogram(
                &format!("Turns per conversation of {f}"),
                &t.bounds,
                &t.counts,
                &[],
            ));
        }
        o.push_str("</div>");
    }
    o.push_str("</div>\n<table><thead><tr><th>family</th><th>rows</th><th>tokens p50</th><th>p90</th><th>p99</th><th>max</th><th>turns p50</th><th>p90</th><th>p99</th><th>max</th></tr></thead><tbody>");
    for (f, l) in &r.lengths {
        let _ = write!(
            o,
            "<tr data-lengths-family=\"{}\" data-p50=\"{}\" data-max=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            esc(f),
            l.tokens.p50,
            l.tokens.max,
            esc(f),
            l.tokens.rows,
            l.tokens.p50,
            l.tokens.p90,
            l.tokens.p99,
            l.tokens.max
        );
        match &l.turns {
            Some(t) => {
                let _ = write!(
                    o,
                    "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    t.p50, t.p90, t.p99, t.max
                );
            }
            None => o.push_str("<td colspan=\"4\" class=\"muted\">plain text</td></tr>"),
        }
    }
    o.push_str("</tbody></table>\n");
}

fn near_duplicates(o: &mut String, v: &Verification, moved: Option<u64>) {
    let l = &v.gates.leakage;
    let (class, text) = verdict(l.passed);
    let _ = writeln!(
        o,
        "<h2 id=\"near-duplicates\">Near-duplicates and leakage <span class=\"badge {class}\">{text}</span></h2>\n<p>{} near-duplicate pairs confirmed of {} candidates; {} clusters of 2+ holding {} rows; {} holdout groups; {} pairs across splits; {} rows disagreeing with the recomputation{}.</p>",
        l.near_duplicate_pairs,
        l.candidate_pairs,
        l.clusters,
        l.rows_in_clusters,
        l.holdout_groups,
        l.cross_split_pairs,
        l.disagreements,
        if l.settings_current {
            ""
        } else {
            " (the index was built with other settings: run idx ingest)"
        }
    );
    if let Some(m) = moved {
        let _ = writeln!(
            o,
            "<p data-moved=\"{m}\">{m} rows changed split since the previous export.</p>"
        );
    }
    if !l.cluster_sizes.is_empty() {
        let bars: Vec<Bar> = l
            .cluster_sizes
            .iter()
            .map(|(size, n)| Bar {
                label: format!("{size} rows"),
                values: vec![*n],
            })
            .collect();
        o.push_str(&stacked_bars(
            "Clusters by size (rows per cluster)",
            &bars,
            &[Series {
                name: "clusters",
                class: "s0",
            }],
        ));
    }
    let collapsed = &v.report.near_duplicates_collapsed;
    if !collapsed.is_empty() {
        o.push_str("\n<table><thead><tr><th>family</th><th>rows collapsed into a kept row</th></tr></thead><tbody>");
        for (f, n) in collapsed {
            let _ = write!(o, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(f));
        }
        o.push_str("</tbody></table>\n");
    }
    if !v.report.contained_objects.is_empty() {
        o.push_str("<table><thead><tr><th>object whose rows are all elsewhere</th><th>rows</th><th>redundant</th><th>rows also in</th></tr></thead><tbody>");
        for c in &v.report.contained_objects {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.key),
                c.rows,
                if c.redundant { "yes" } else { "no" },
                esc(&c.within.join(", "))
            );
        }
        o.push_str("</tbody></table>\n");
    }
}

fn pii(o: &mut String, v: &Verification) {
    let r = &v.report;
    o.push_str("<h2 id=\"pii\">PII</h2>\n");
    let statuses = [PiiStatus::Clean, PiiStatus::Redacted, PiiStatus::Excluded];
    let bars: Vec<Bar> = r
        .pii_by_family
        .iter()
        .map(|(f, per)| Bar {
            label: f.clone(),
            values: statuses
                .iter()
                .map(|s| per.get(s).copied().unwrap_or(0))
                .collect(),
        })
        .collect();
    o.push_str(&stacked_bars(
        "Unique rows per family by PII status (clean, redacted, excluded)",
        &bars,
        &[
            Series {
                name: "clean",
                class: "s2",
            },
            Series {
                name: "redacted",
                class: "s1",
            },
            Series {
                name: "excluded",
                class: "s3",
            },
        ],
    ));
    o.push_str("\n<table><thead><tr><th>family</th><th>clean</th><th>redacted</th><th>excluded</th></tr></thead><tbody>");
    for (f, per) in &r.pii_by_family {
        let _ = write!(o, "<tr data-pii-family=\"{}\"><td>{}</td>", esc(f), esc(f));
        for s in statuses {
            let _ = write!(
                o,
                "<td class=\"n\">{}</td>",
                per.get(&s).copied().unwrap_or(0)
            );
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>\n<p>Placeholders by kind (counts only, never values): ");
    if r.pii_kinds.is_empty() {
        o.push_str("none");
    }
    let kinds: Vec<String> = r
        .pii_kinds
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    o.push_str(&esc(&kinds.join(", ")));
    o.push_str(".</p>\n");
}

fn curriculum(o: &mut String, v: &Verification) {
    let Some(m) = &v.gates.distribution.curriculum_mix else {
        return;
    };
    let (class, text) = if m.passed {
        ("pass", if m.gate { "PASS" } else { "reported" })
    } else {
        ("fail", "FAIL")
    };
    let _ = write!(
        o,
        "<h2 id=\"curriculum\">Curriculum mix <span class=\"badge {class}\">{text}</span></h2>\n<table><thead><tr><th>stage</th><th>phase</th><th>context</th><th>family</th><th>planned weight</th><th>supplied share</th><th>available tokens</th><th>drawn tokens</th></tr></thead><tbody>"
    );
    for s in &m.stages {
        let n = s.families.len().max(1);
        for (i, f) in s.families.iter().enumerate() {
            o.push_str("<tr>");
            if i == 0 {
                let _ = write!(
                    o,
                    "<td rowspan=\"{n}\">{}</td><td rowspan=\"{n}\">{}</td><td rowspan=\"{n}\" class=\"n\">{}</td>",
                    esc(&s.id),
                    s.phase,
                    s.context_length.map_or(String::from("-"), |c| c.to_string())
                );
            }
            let short = f.available_tokens == 0;
            let _ = write!(
                o,
                "<td>{}</td><td class=\"n\">{}</td><td class=\"n{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&f.family),
                pct(f.weight),
                if short { " fail" } else { "" },
                pct(f.effective_weight),
                f.available_tokens,
                f.tokens
            );
        }
        if s.families.is_empty() {
            let _ = write!(
                o,
                "<td>{}</td><td>{}</td><td>-</td><td colspan=\"5\" class=\"muted\">no family routed</td></tr>",
                esc(&s.id),
                s.phase
            );
        }
    }
    o.push_str("</tbody></table>\n");
    if !m.warnings.is_empty() {
        o.push_str("<ul class=\"warnings\">");
        for w in &m.warnings {
            let _ = write!(o, "<li class=\"warn\">{}</li>", esc(w));
        }
        o.push_str("</ul>\n");
    }
}

fn rejections(o: &mut String, v: &Verification) {
    let r = &v.report.rejections;
    o.push_str("<h2 id=\"rejections\">Rejections and failed objects</h2>\n");
    if r.is_empty() {
        o.push_str("<p>No record was rejected and every object was read.</p>\n");
        return;
    }
    o.push_str("<table><thead><tr><th>family</th><th>records rejected</th><th>objects failed</th><th>first reasons</th></tr></thead><tbody>");
    for (f, x) in r {
        let _ = write!(
            o,
            "<tr data-rejections-family=\"{}\" data-rejected=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
            esc(f),
            x.rejected,
            esc(f),
            x.rejected,
            x.failed_objects
        );
        for e in &x.examples {
            let _ = write!(o, "<code>{}</code><br/>", esc(e));
        }
        o.push_str("</td></tr>");
    }
    o.push_str("</tbody></table>\n");
    let st = &v.gates.structure;
    let flawed: BTreeSet<&str> = st
        .families
        .iter()
        .filter(|f| f.flawed > 0)
        .map(|f| f.family.as_str())
        .collect();
    if !flawed.is_empty() {
        let (class, text) = verdict(st.passed);
        let _ = write!(
            o,
            "<h2 id=\"structure\">Structure <span class=\"badge {class}\">{text}</span></h2>\n<table><thead><tr><th>family</th><th>conversations</th><th>held back</th><th>checks</th></tr></thead><tbody>"
        );
        for f in st.families.iter().filter(|f| f.flawed > 0) {
            let checks: Vec<String> = f.checks.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&f.family),
                f.rows,
                f.flawed,
                esc(&checks.join(", "))
            );
        }
        o.push_str("</tbody></table>\n");
    }
}

fn decontamination(o: &mut String, v: &Verification) {
    let Some(d) = &v.decontamination else {
        return;
    };
    let _ = write!(
        o,
        "<h2 id=\"decontamination\">Decontamination</h2>\n<p>{} rows share an n-gram run with a benchmark; the export will {} them{}.</p><table><thead><tr><th>benchmark</th><th>items</th><th>rows matching</th></tr></thead><tbody>",
        d.rows_matched,
        d.action,
        if d.unchecked > 0 {
            format!(" ({} rows not checked yet: run idx decontaminate)", d.unchecked)
        } else {
            String::new()
        }
    );
    for b in &d.benchmarks {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&b.name),
            b.items,
            b.rows_matched
        );
    }
    o.push_str("</tbody></table>\n");
}
