//! Local drop folders: walk a directory (or take one file) and report its files with size and
//! modification time. Hidden directories (`.git`, `.idx`, …) and the index's own data directory are
//! never walked; symlinked directories are not followed (no cycles). Unreadable entries are
//! reported, not fatal. Keys are exact: a file name that is not valid UTF-8 is encoded
//! reversibly ([`key_text`]), never replaced, so two files never share a key.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{FoundObject, Location, Scan, ScanScope};
use crate::error::{Error, Result};

/// A file name (or path) as key text, reversibly: bytes that are not UTF-8 are written `%XX`,
/// and a `%` that is followed by two hex digits is written `%25`, so no two names give one key;
/// every other name keeps its spelling.
pub fn key_text(name: &OsStr) -> String {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        for (i, c) in valid.char_indices() {
            let escapes = c == '%' && {
                let rest = &valid.as_bytes()[i + 1..];
                rest.len() >= 2 && rest[0].is_ascii_hexdigit() && rest[1].is_ascii_hexdigit()
            };
            if escapes {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `file://` URI of an absolute directory.
pub fn source_uri(dir: &Path) -> String {
    let s = key_text(dir.as_os_str()).replace('\\', "/");
    if s.starts_with('/') {
        format!("file://{s}")
    } else {
        format!("file:///{s}")
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Scan a folder (recursively) or a single file. `skip` is a directory never to enter (the data
/// directory, when it lies inside the folder).
pub fn scan(path: &Path, skip: Option<&Path>) -> Result<Scan> {
    let abs = std::fs::canonicalize(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = std::fs::metadata(&abs).map_err(|source| Error::Io {
        path: abs.clone(),
        source,
    })?;
    let skip = skip.and_then(|s| std::fs::canonicalize(s).ok());
    if meta.is_file() {
        let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        let key = abs.file_name().map(key_text).unwrap_or_default();
        return Ok(Scan {
            source: source_uri(&dir),
            objects: vec![FoundObject {
                key: key.clone(),
                location: Location::File(abs.clone()),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                etag: None,
            }],
            scope: ScanScope::Keys(vec![key]),
            errors: Vec::new(),
        });
    }
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    walk(&abs, &abs, skip.as_deref(), &mut objects, &mut errors);
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Scan {
        source: source_uri(&abs),
        objects,
        scope: ScanScope::All,
        errors,
    })
}

fn relative_key(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| key_text(c.as_os_str()))
        .collect::<Vec<_>>()
        .join("/")
}

fn walk(
    root: &Path,
    dir: &Path,
    skip: Option<&Path>,
    out: &mut Vec<FoundObject>,
    errors: &mut Vec<(String, String)>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push((relative_key(root, dir), e.to_string()));
            return;
        }
    };
    let mut children: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => children.push(e.path()),
            Err(e) => errors.push((relative_key(root, dir), e.to_string())),
        }
    }
    children.sort();
    for child in children {
        let name = child
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let link = std::fs::symlink_metadata(&child).map(|m| m.file_type().is_symlink());
        let meta = match std::fs::metadata(&child) {
            Ok(m) => m,
            Err(e) => {
                errors.push((relative_key(root, &child), e.to_string()));
                continue;
            }
        };
        if meta.is_dir() {
            let hidden = name.starts_with('.');
            let is_skip = skip.is_some_and(|s| s == child);
            if hidden || is_skip || matches!(link, Ok(true)) {
                continue;
            }
            walk(root, &child, skip, out, errors);
        } else if meta.is_file() {
            out.push(FoundObject {
                key: relative_key(root, &child),
                location: Location::File(child.clone()),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                etag: None,
            });
        }
    }
}

/// A local folder (walked recursively, `skip` — the index's own folder — left out) or one file.
#[derive(Debug, Clone)]
pub struct LocalSource {
    pub path: PathBuf,
    pub skip: Option<PathBuf>,
}

impl super::Source for LocalSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn scan(&self) -> Result<super::Found> {
        scan(&self.path, self.skip.as_deref()).map(super::Found::from)
    }

    fn open(&self, object: &FoundObject, _spool: &Path) -> std::result::Result<File, String> {
        match &object.location {
            Location::File(path) => {
                File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
            }
            other => Err(format!("{other:?} is not a local file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_exact_and_reversible() {
        let key = |b: &[u8]| key_text(OsStr::from_bytes(b));
        assert_eq!(key(b"plain name.jsonl"), "plain name.jsonl");
        assert_eq!(key("Ünïcode ١٢٣.jsonl".as_bytes()), "Ünïcode ١٢٣.jsonl");
        assert_eq!(key(b"50% off.jsonl"), "50% off.jsonl");
        assert_eq!(key(b"bad\xff.jsonl"), "bad%FF.jsonl");
        assert_eq!(key(b"bad%FF.jsonl"), "bad%25FF.jsonl");
        let names: [&[u8]; 6] = [
            b"bad\xff.jsonl",
            b"bad\xfe.jsonl",
            b"bad%FF.jsonl",
            b"bad%25FF.jsonl",
            b"bad%\xff.jsonl",
            b"bad\xef\xbf\xbd.jsonl",
        ];
        let keys: std::collections::BTreeSet<String> = names.iter().map(|n| key(n)).collect();
        assert_eq!(keys.len(), names.len(), "{keys:?}");
    }
}
