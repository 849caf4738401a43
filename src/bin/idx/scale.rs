//! The scale-out commands: `idx export signatures`, `idx import assignments` and `idx export
//! merge` (docs/SCALE.md), each a thin layer over `idx::scale`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use idx::index::Index;

use crate::args::{Cli, ImportCommand};
use crate::render::print_json;
use crate::{require_index, settings};

pub(crate) fn signatures(
    cli: &Cli,
    shard: &str,
    out: &Path,
    incremental: bool,
) -> Result<ExitCode> {
    require_index(cli)?;
    let settings = settings(cli)?;
    let index = Index::open_write(&cli.data_dir)?;
    let quiet = cli.json || !std::io::stderr().is_terminal();
    let mut progress = |msg: &str| {
        if !quiet {
            eprintln!("idx export signatures: {msg}");
        }
    };
    idx::scale::valid_shard_id(shard)?;
    let recorded = index.store.read()?.shard()?;
    match recorded.as_deref() {
        Some(r) if r != shard => anyhow::bail!(
            "this index exported signatures as shard {r:?}; a shard keeps its id (use another \
             data directory for another shard)"
        ),
        Some(_) => {}
        None => index.store.set_shard(shard)?,
    }
    let view = index.store.read()?;
    let summary = idx::scale::export_signatures(
        &view,
        &settings,
        &idx::scale::SignatureOptions {
            shard: shard.to_string(),
            out: out.to_path_buf(),
            incremental,
        },
        &mut progress,
    )?;
    if cli.json {
        print_json(&summary)?;
    } else {
        outln!(
            "shard {}: generation {} ({}) in {}: {} rows written, {} deleted, of {} rows; {} \
             bytes, sha256 {}",
            summary.shard,
            summary.generation,
            if summary.snapshot {
                "snapshot"
            } else {
                "changes"
            },
            summary.file,
            summary.written,
            summary.deleted,
            summary.rows,
            summary.bytes,
            summary.sha256
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn import(cli: &Cli, command: &ImportCommand) -> Result<ExitCode> {
    let ImportCommand::Assignments {
        path,
        shard,
        allow_stale,
    } = command;
    require_index(cli)?;
    let index = Index::open_write(&cli.data_dir)?;
    let summary =
        idx::scale::import_assignments(&index.store, path, shard.as_deref(), *allow_stale)?;
    if cli.json {
        print_json(&summary)?;
    } else {
        outln!(
            "shard {}: imported {} of the table's {} rows (digest {}); {} rows change split{}",
            summary.shard,
            summary.imported,
            summary.table_rows,
            summary.digest,
            summary.moved,
            if summary.missing > 0 {
                format!(
                    "; {} rows of the table are no longer in this index",
                    summary.missing
                )
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn merge(
    cli: &Cli,
    manifests: &[PathBuf],
    out: &Path,
    assignments: Option<&Path>,
) -> Result<ExitCode> {
    let summary = idx::scale::merge_manifests(manifests, out, assignments)?;
    if cli.json {
        print_json(&summary)?;
    } else {
        outln!(
            "{}: {} shards, {} rows, {} tokens, assignment table {} (manifest sha256 {})",
            summary.manifest,
            summary.shards,
            summary.rows,
            summary.tokens,
            summary.assignments,
            summary.manifest_sha256
        );
    }
    Ok(ExitCode::SUCCESS)
}
