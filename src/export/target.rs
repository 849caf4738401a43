//! The folder an export goes to: built in a staging sibling (`.NAME.idx-staging`) and swapped
//! in once its manifest is written, never writing through a symlink, refusing a folder that
//! holds anything but an earlier idx export.

use super::manifest::{self, Manifest};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where an export is built and how it replaces the folder it goes to. The export is written
/// into a fresh sibling folder (`.NAME.idx-staging`), and only once its manifest is written is
/// it swapped in: the folder it replaces stays a complete, usable export until then, and an
/// export interrupted at any point (`kill -9`, a full disk) can simply be run again. Nothing is
/// ever written through a symbolic link, and nothing outside `out` and its two siblings is
/// touched.
pub(crate) struct Target {
    pub(crate) out: PathBuf,
    pub(crate) staging: PathBuf,
    /// Where the replaced export is moved during the swap.
    pub(crate) aside: PathBuf,
}

impl Target {
    /// Check `out` (absent, empty, or an idx export holding nothing but what its manifest
    /// lists), clean up what an interrupted export left, and create an empty staging folder.
    pub(crate) fn prepare(out: &Path) -> Result<Target> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .ok_or_else(|| {
                Error::Export(format!(
                    "{}: give the export a folder of its own (it is replaced as a whole)",
                    out.display()
                ))
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let target = Target {
            out: out.to_path_buf(),
            staging: parent.join(format!(".{name}.idx-staging")),
            aside: parent.join(format!(".{name}.idx-replaced")),
        };
        // A swap cut short: the old export was moved aside and the new one not yet in place.
        if target.aside.exists() {
            if std::fs::symlink_metadata(out).is_err() {
                std::fs::rename(&target.aside, out).map_err(io(out))?;
            } else {
                std::fs::remove_dir_all(&target.aside).map_err(io(&target.aside))?;
            }
        }
        match std::fs::symlink_metadata(out) {
            Err(_) => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::Export(format!(
                    "{} is a symbolic link: give the folder it points to (idx never writes through a link)",
                    out.display()
                )))
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::Export(format!("{} is a file, not a folder", out.display())))
            }
            Ok(_) => check_replaceable(out)?,
        }
        // An export interrupted before its swap left its staging folder: start afresh.
        if std::fs::symlink_metadata(&target.staging).is_ok() {
            remove_any(&target.staging)?;
        }
        std::fs::create_dir(&target.staging).map_err(io(&target.staging))?;
        Ok(target)
    }

    /// Put the finished export in place of `out`.
    pub(crate) fn commit(self) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if std::fs::symlink_metadata(&self.out).is_ok() {
            std::fs::rename(&self.out, &self.aside).map_err(io(&self.out))?;
            std::fs::rename(&self.staging, &self.out).map_err(io(&self.out))?;
            std::fs::remove_dir_all(&self.aside).map_err(io(&self.aside))?;
        } else {
            std::fs::rename(&self.staging, &self.out).map_err(io(&self.out))?;
        }
        if let Some(parent) = self.out.parent() {
            if let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

/// Remove a file, a link (not what it points to) or a folder.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(io)
    } else {
        std::fs::remove_file(path).map_err(io)
    }
}

/// A non-empty `out` may be replaced only when it is an idx export holding nothing but what its
/// manifest lists: anything else there (a user's file, a link) would be lost with it.
pub(crate) fn check_replaceable(out: &Path) -> Result<()> {
    let mut entries = std::fs::read_dir(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    if entries.next().is_none() {
        return Ok(());
    }
    let manifest_path = out.join("manifest.json");
    let Ok(old) = Manifest::read(&manifest_path) else {
        return Err(Error::Export(format!(
            "{} is not empty and holds no idx export (manifest.json); choose an empty folder",
            out.display()
        )));
    };
    if let Some(f) = old.entries().find(|f| !manifest::is_inside(&f.path)) {
        return Err(Error::Export(format!(
            "{}: lists `{}`, which is not a path inside the export; not touching it",
            manifest_path.display(),
            f.path
        )));
    }
    let unlisted = manifest::unlisted(out, &old)?;
    if !unlisted.is_empty() {
        return Err(Error::Export(format!(
            "{} holds what its manifest does not list ({}); it would be lost with the export it replaces: move it away or choose another folder",
            out.display(),
            unlisted
                .iter()
                .take(5)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}
