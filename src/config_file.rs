//! A config file's text: the user's file when one is given, else the copy built into the binary.
//! Shared by every config (`idx.toml`, `families.toml`, `curriculum.toml`), so that each names
//! its origin the same way in errors.

use std::path::Path;

use crate::error::{Error, Result};

/// A config file's text and the name errors give it: the file at `path`, or the built-in copy
/// (`builtin`, shipped as `configs/NAME`) when there is none.
pub fn config_text(
    path: Option<&Path>,
    builtin: &'static str,
    name: &str,
) -> Result<(std::borrow::Cow<'static, str>, String)> {
    match path {
        None => Ok((builtin.into(), format!("<built-in configs/{name}>"))),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })?;
            Ok((text.into(), p.display().to_string()))
        }
    }
}
