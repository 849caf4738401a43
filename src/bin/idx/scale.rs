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
    idx::scale::claim_shard(&index.store, shard)?;
    let view = index.store.read()?;
    let options = idx::scale::SignatureOptions {
        shard: shard.to_string(),
        out: out.to_path_buf(),
        incremental,
    };
    let summary = if let idx::source::SourceArg::S3(url) = idx::source::SourceArg::parse(out)? {
        let client = idx::source::s3::S3Client::connect(&settings.idx.s3)?;
        idx::scale::export_signatures_to_s3(
            &view,
            &settings,
            &options,
            &client,
            &url,
            &cli.data_dir.join("signatures-staging"),
            &mut progress,
        )?
    } else {
        idx::scale::export_signatures(&view, &settings, &options, &mut progress)?
    };
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
    let summary = if let idx::source::SourceArg::S3(url) = idx::source::SourceArg::parse(path)? {
        let client = idx::source::s3::S3Client::connect(&settings(cli)?.idx.s3)?;
        idx::scale::import_assignments_from_s3(
            &index.store,
            &client,
            &url,
            &cli.data_dir.join("assignments-staging"),
            shard.as_deref(),
            *allow_stale,
        )?
    } else {
        idx::scale::import_assignments(&index.store, path, shard.as_deref(), *allow_stale)?
    };
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
