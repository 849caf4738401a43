//! `idx query`: every lookup (hash, near, moves, source, text, overlap, contamination),
//! printed as text or JSON.

use std::process::ExitCode;

use anyhow::Result;
use idx::index::Index;
use idx::query;

use crate::args::{Cli, QueryCommand};
use crate::render::{print_contamination, print_json, print_overlap};
use crate::settings;

pub(crate) fn run_query(cli: &Cli, q: &QueryCommand) -> Result<ExitCode> {
    match q {
        QueryCommand::Hash { hex } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let view = store.read()?;
            let policy = query::effective_policy(&view, settings(cli)?.policy())?;
            match query::row(&view, hex, &policy)? {
                None => {
                    eprintln!("idx: no row with content hash {hex}");
                    Ok(ExitCode::from(3))
                }
                Some(row) if cli.json => {
                    print_json(&row)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(row) => {
                    outln!(
                        "{} ({}, family {}, {} tokens, split {}, phase {}, pii {})",
                        row.content_hash,
                        row.kind,
                        row.family,
                        row.tokens,
                        row.split,
                        row.phase,
                        row.pii_status
                    );
                    if !row.pii_kinds.is_empty() {
                        let kinds: Vec<String> = row
                            .pii_kinds
                            .iter()
                            .map(|(kind, n)| format!("{kind} ×{n}"))
                            .collect();
                        outln!("  pii found (redacted in the text): {}", kinds.join(", "));
                    }
                    for m in &row.messages {
                        outln!("  [{}] {}", m.role.as_str(), m.content);
                    }
                    if let Some(rejected) = &row.rejected {
                        for m in rejected {
                            outln!("  [rejected {}] {}", m.role.as_str(), m.content);
                        }
                    }
                    if let Some(label) = row.label {
                        outln!("  label: {label}");
                    }
                    outln!("sources:");
                    for s in &row.sources {
                        outln!("  {}/{}:{}{}", s.source, s.key, s.line, attributes_text(s));
                    }
                    if !row.derived_from.is_empty() {
                        outln!("derived from:");
                        for input in &row.derived_from {
                            let places: Vec<String> = input
                                .sources
                                .iter()
                                .map(|s| format!("{}/{}:{}", s.source, s.key, s.line))
                                .collect();
                            outln!(
                                "  {} {}",
                                input.content_hash,
                                if places.is_empty() {
                                    "(gone: dropped at the next derive run)".to_string()
                                } else {
                                    places.join(", ")
                                }
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        QueryCommand::Near { hex } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let view = store.read()?;
            let policy = query::effective_policy(&view, settings(cli)?.policy())?;
            match query::near(&view, hex, &policy)? {
                None => {
                    eprintln!("idx: no row with content hash {hex}");
                    Ok(ExitCode::from(3))
                }
                Some(a) if cli.json => {
                    print_json(&a)?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(a) => {
                    outln!(
                        "{} (split {}, cluster {} of {} row(s))",
                        a.content_hash,
                        a.split,
                        a.cluster,
                        a.cluster_size
                    );
                    if !a.fingerprinted {
                        outln!("  too short for near-duplicate matching: exact duplicates only");
                    } else if a.neighbours.is_empty() {
                        outln!("  no near-duplicates");
                    }
                    for n in &a.neighbours {
                        outln!(
                            "  {}  hamming {:>2}  jaccard {:.3}  {}",
                            n.content_hash,
                            n.hamming,
                            n.similarity,
                            n.split
                        );
                        for s in &n.sources {
                            outln!("      {}/{}:{}", s.source, s.key, s.line);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        QueryCommand::Moves { since } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let moves = query::moves(&store.read()?, *since)?;
            if cli.json {
                print_json(&moves)?;
            } else if moves.is_empty() {
                outln!("no split moves");
            } else {
                for m in &moves {
                    outln!(
                        "commit {:>6}  {}  {} -> {}",
                        m.seq,
                        m.content_hash,
                        m.from,
                        m.to
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Source { key } => {
            let store = Index::open_store_read(&cli.data_dir)?;
            let redactor = settings(cli)?.redactor();
            let answers = query::source_public(&store.read()?, key, &redactor)?;
            if answers.is_empty() {
                eprintln!("idx: no object with key {key}");
                return Ok(ExitCode::from(3));
            }
            if cli.json {
                print_json(&answers)?;
            } else {
                for a in &answers {
                    outln!(
                        "{}/{} ({}, family {}, {} rows, {} rejected)",
                        a.source,
                        a.key,
                        a.status,
                        a.family,
                        a.rows.len(),
                        a.rejected
                    );
                    if let Some(reason) = &a.reason {
                        outln!("  {reason}");
                    }
                    for r in &a.rows {
                        outln!("  line {:>6}  {}", r.line, r.content_hash);
                    }
                    for r in &a.rejections {
                        outln!("  line {:>6}  rejected: {}", r.line, r.reason);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Text {
            query: q,
            family,
            limit,
        } => {
            let (store, search, lag) = Index::open_read(&cli.data_dir)?;
            if lag > 0 {
                eprintln!(
                    "idx: note: the full-text index is {lag} commits behind the database; recent rows may be missing from these hits until the next `idx ingest` (or the daemon) catches it up"
                );
            }
            let hits = query::text(&store.read()?, &search, q, family.as_deref(), *limit)?;
            if cli.json {
                print_json(&hits)?;
            } else if hits.is_empty() {
                outln!("no hits");
            } else {
                for h in &hits {
                    outln!("{}  {}  {}:{}", h.content_hash, h.family, h.key, h.line);
                    outln!("    {}", h.snippet);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Overlap { key, min_share } => {
            let settings = settings(cli)?;
            let keep = settings.keep();
            let store = Index::open_store_read(&cli.data_dir)?;
            let mut objects =
                idx::overlap::overlap(&store.read()?, key.as_deref(), &|k| keep.is_redundant(k))?;
            objects.retain(|o| o.share >= *min_share);
            if cli.json {
                print_json(&objects)?;
            } else {
                print_overlap(&objects)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Contamination { benchmark, limit } => {
            let settings = settings(cli)?;
            let store = Index::open_store_read(&cli.data_dir)?;
            let answer =
                idx::decontaminate::query(&store.read()?, &settings, benchmark.as_deref(), *limit)?;
            if cli.json {
                print_json(&answer)?;
            } else {
                print_contamination(&answer)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A place's attributes as ` {name=value, …}` (nothing when it has none).
fn attributes_text(s: &query::SourceRef) -> String {
    if s.attributes.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = s
        .attributes
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(t) => format!("{k}={t}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!(" {{{}}}", parts.join(", "))
}
