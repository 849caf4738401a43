//! `idx export` and `idx export verify`: the dataset compiled from one snapshot, to a folder or
//! S3, and an export checked; the scale-out subcommands are in `scale`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use idx::index::Index;

use crate::args::{Cli, ExportCommand, ExportSub};
use crate::commands::load_curriculum;
use crate::render::print_json;
use crate::{gate_exit, settings};

pub(crate) fn export(cli: &Cli, command: &ExportCommand) -> Result<ExitCode> {
    match &command.command {
        Some(ExportSub::Signatures {
            shard,
            out,
            incremental,
        }) => return crate::scale::signatures(cli, shard, out, *incremental),
        Some(ExportSub::Merge {
            manifests,
            out,
            assignments,
        }) => return crate::scale::merge(cli, manifests, out, assignments.as_deref()),
        _ => {}
    }
    if let Some(ExportSub::Verify { manifest, sha256 }) = &command.command {
        let check = idx::export::verify_export(manifest, sha256.as_deref())?;
        if cli.json {
            print_json(&check)?;
        } else if check.passed {
            outln!(
                "{}: ok ({} files, {} lines checked)",
                check.manifest,
                check.files_checked,
                check.rows_checked
            );
        } else {
            outln!("{}: FAILED", check.manifest);
            for p in &check.problems {
                outln!("  {p}");
            }
        }
        return Ok(gate_exit(check.passed));
    }
    let args = &command.args;
    let Some(out) = &args.out else {
        eprintln!("idx: error: `idx export` needs --out DIR (or `idx export verify MANIFEST`)");
        return Ok(ExitCode::from(2));
    };
    let settings = settings(cli)?;
    let curriculum = load_curriculum(cli)?;
    let store = Index::open_store_read(&cli.data_dir)?;
    let view = store.read()?;
    let options = idx::export::ExportOptions {
        shard_bytes: args.shard_bytes.unwrap_or(settings.idx.export.shard_bytes),
        collapse_near_duplicates: settings.idx.export.collapse_near_duplicates
            && !args.keep_near_duplicates,
        previous: args.previous.clone(),
        allow_failing_gates: args.allow_failing_gates,
    };
    let quiet = cli.json || !std::io::stderr().is_terminal();
    let mut progress = |msg: &str| {
        if !quiet {
            eprintln!("idx export: {msg}");
        }
    };
    let result = if let idx::source::SourceArg::S3(url) = idx::source::SourceArg::parse(out)? {
        let client = idx::source::s3::S3Client::connect(&settings.idx.s3)?;
        let staging = cli.data_dir.join("export-staging");
        let target = idx::export::S3Target {
            url: &url,
            client: &client,
            staging: &staging,
        };
        idx::export::export_to_s3(
            &view,
            &settings,
            &curriculum,
            &target,
            &options,
            &mut progress,
        )
    } else {
        idx::export::export(&view, &settings, &curriculum, out, &options, &mut progress)
    };
    let summary = match result {
        Ok(s) => s,
        Err(e @ idx::error::Error::GatesFailed(_)) => {
            eprintln!("idx: error: {e}");
            return Ok(gate_exit(false));
        }
        Err(e) => return Err(e.into()),
    };
    if cli.json {
        print_json(&summary)?;
    } else {
        outln!(
            "exported {} rows ({} tokens) in {} shards, {} bytes, to {}",
            summary.rows,
            summary.tokens,
            summary.shards,
            summary.bytes,
            summary.out
        );
        outln!(
            "  {} near-duplicates collapsed, {} rows excluded for PII, gates {}",
            summary.near_duplicates_collapsed,
            summary.pii_excluded,
            if summary.gates_passed {
                "passed"
            } else {
                "FAILED (exported anyway)"
            }
        );
        if summary.structure.held_back_rows > 0 {
            outln!(
                "  {} rows held back by the structure checks (see `idx verify`):",
                summary.structure.held_back_rows
            );
            for (family, checks) in &summary.structure.by_family {
                let checks: Vec<String> = checks.iter().map(|(c, n)| format!("{c} {n}")).collect();
                outln!("    {family}: {}", checks.join(", "));
            }
        }
        if let Some(m) = summary.moved_since_previous {
            outln!("  {m} rows moved split since the previous export");
        }
        for w in &summary.curriculum.warnings {
            outln!("  curriculum warning: {w}");
        }
        outln!(
            "manifest: {} (sha256 {}; pin it: idx export verify {} --sha256 {})",
            summary.manifest,
            summary.manifest_sha256,
            summary.manifest,
            summary.manifest_sha256
        );
    }
    Ok(ExitCode::SUCCESS)
}
