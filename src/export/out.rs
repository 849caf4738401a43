//! Output files: each written under a temporary name and hashed as it goes, then listed in the
//! manifest by path, sha256, bytes and rows; and the file-safe names of shards.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file being written under a temporary name, hashed as it goes.
pub(crate) struct OutFile {
    pub(crate) tmp: PathBuf,
    pub(crate) path: PathBuf,
    pub(crate) rel: String,
    pub(crate) out: std::io::BufWriter<std::fs::File>,
    pub(crate) sha: Sha256,
    pub bytes: u64,
    pub rows: u64,
    pub tokens: u64,
}

/// A finished file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the export root, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
    pub tokens: u64,
}

impl OutFile {
    pub(crate) fn create(root: &Path, rel: &str) -> Result<OutFile> {
        let path = root.join(rel);
        let dir = path.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok(OutFile {
            tmp,
            path,
            rel: rel.to_string(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            sha: Sha256::new(),
            bytes: 0,
            rows: 0,
            tokens: 0,
        })
    }

    /// Append one line (the newline is added).
    pub(crate) fn line(&mut self, text: &str, tokens: u64) -> Result<()> {
        self.write(text.as_bytes())?;
        self.write(b"\n")?;
        self.rows += 1;
        self.tokens += tokens;
        Ok(())
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Io {
            path: self.tmp.clone(),
            source,
        })?;
        self.sha.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flush, sync and rename into place.
    pub(crate) fn finish(self) -> Result<FileEntry> {
        let io = |source| Error::Io {
            path: self.tmp.clone(),
            source,
        };
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(FileEntry {
            path: self.rel,
            sha256: hex(&self.sha.finalize()),
            bytes: self.bytes,
            rows: self.rows,
            tokens: self.tokens,
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Family names become file names: anything but `[a-z0-9_-]` is replaced.
pub(crate) fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
