//! Uploading an export to S3: built locally, then every file put under the prefix, the
//! manifest last.

use std::path::Path;

use super::manifest::Manifest;
use super::out::FileEntry;
use super::{export, ExportOptions, ExportSummary};
use crate::config::Settings;
use crate::curriculum::Curriculum;
use crate::error::{Error, Result};
use crate::store::ReadView;

/// Where an S3 export goes, and how.
#[derive(Debug, Clone, Copy)]
pub struct S3Target<'a> {
    pub url: &'a crate::source::s3::S3Url,
    pub client: &'a crate::source::s3::S3Client,
    /// A local folder to build the export in before uploading it.
    pub staging: &'a Path,
}

/// Export to `s3://bucket/prefix`: the export is built in a local staging folder (`staging`,
/// emptied first and removed after), then uploaded — an existing manifest at the prefix deleted
/// first, every shard and file next (multipart above the configured size), `manifest.json` last —
/// so a reader of the prefix never sees a manifest pointing at missing objects.
pub fn export_to_s3(
    view: &ReadView,
    settings: &Settings,
    curriculum: &Curriculum,
    target: &S3Target<'_>,
    options: &ExportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportSummary> {
    let S3Target {
        url,
        client,
        staging,
    } = *target;
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|source| Error::Io {
            path: staging.to_path_buf(),
            source,
        })?;
    }
    let mut summary = export(view, settings, curriculum, staging, options, progress)?;
    let manifest = Manifest::read(&staging.join("manifest.json"))?;
    client.delete(&url.bucket, &url.key("manifest.json"))?;
    let files: Vec<&FileEntry> = manifest.entries().collect();
    for (i, f) in files.iter().enumerate() {
        progress(&format!("uploading {} ({}/{})", f.path, i + 1, files.len()));
        client.upload(&staging.join(&f.path), &url.bucket, &url.key(&f.path))?;
    }
    client.upload(
        &staging.join("export_info.json"),
        &url.bucket,
        &url.key("export_info.json"),
    )?;
    client.upload(
        &staging.join("manifest.json"),
        &url.bucket,
        &url.key("manifest.json"),
    )?;
    std::fs::remove_dir_all(staging).map_err(|source| Error::Io {
        path: staging.to_path_buf(),
        source,
    })?;
    summary.out = url.source();
    summary.manifest = format!("{}/manifest.json", url.source());
    Ok(summary)
}
