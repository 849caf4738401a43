//! Declared mappings (`configs/sources.toml`): how to read objects whose shape idx does not
//! detect. An entry matches object keys by glob and declares, in the names LLaMA-Factory's
//! `dataset_info.json` and axolotl's chat-template options use, the file format, where the
//! records are (`records`), and how a record becomes a conversation: `columns` (prompt, query,
//! response, system, history; or a `messages` list; preference `chosen`/`rejected`; a KTO
//! label), `tags` for message lists (role and content fields, a many-to-one role map, roles by
//! speaker order, nested groups of messages), the fields to keep as row `attributes`, and the
//! `session` field that makes a record's holdout group. The record is rewritten into a shape
//! the built-in detection reads ([`super::formats`]). Objects no entry matches are read by
//! detection alone. A record a mapping cannot read is rejected with the mapping's name and the
//! field that was wrong.
//!
//! Files: this one holds the declarations, their checks and the choice of a mapping for a key;
//! `apply` rewrites one record by a mapping.

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod apply;

use super::FileFormat;
use crate::error::{Error, Result};
use crate::model::RecordMeta;

/// The shipped `configs/sources.toml`.
pub const DEFAULT_SOURCES_TOML: &str = include_str!("../../../configs/sources.toml");

const SOURCES_VERSION: u32 = 1;

/// `session = "$record"`: every record is its own holdout group.
pub const SESSION_PER_RECORD: &str = "$record";

/// One or several names (several prompt fields are joined, in order, by a blank line; several
/// role values map to one role).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Fields {
    One(String),
    Many(Vec<String>),
}

impl Fields {
    fn names(&self) -> Vec<&str> {
        match self {
            Fields::One(f) => vec![f.as_str()],
            Fields::Many(fs) => fs.iter().map(String::as_str).collect(),
        }
    }

    fn contains(&self, value: &str) -> bool {
        self.names().iter().any(|n| n.eq_ignore_ascii_case(value))
    }
}

/// Which fields of a record make the conversation (LLaMA-Factory's `columns` names). A field
/// name starting with `/` is a JSON pointer into the record (`/meta/question`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The user's message; several fields are joined by a blank line.
    pub prompt: Option<Fields>,
    /// Appended to the prompt after a blank line (Alpaca's `input`).
    pub query: Option<String>,
    /// The user's message from a template over the record's fields, instead of `prompt` and
    /// `query`: `{field}` (or `{/json/pointer}`) is replaced by the field's text, `{{` and `}}`
    /// are braces. A missing or empty field is an error naming it.
    pub prompt_template: Option<String>,
    /// The assistant's answer.
    pub response: Option<String>,
    /// A system message before everything else.
    pub system: Option<String>,
    /// Earlier turns: a list of `[user, assistant]` pairs before the prompt.
    pub history: Option<String>,
    /// A list of messages (read with `tags`); instead of prompt/response.
    pub messages: Option<String>,
    /// Preference data: the chosen and the rejected answer (strings or message lists).
    pub chosen: Option<String>,
    pub rejected: Option<String>,
    /// KTO data: the field holding whether the response is desirable (a boolean, or
    /// true/false/1/0 text).
    pub kto_tag: Option<String>,
}

/// How a message list is read (LLaMA-Factory's `tags`; axolotl's `message_property_mappings`
/// and `roles`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    /// The field naming a message's speaker or role (default `role`).
    pub role_tag: Option<String>,
    /// The field holding a message's text (default `content`).
    pub content_tag: Option<String>,
    /// Role values that mean user, assistant, system (one or several each: many-to-one).
    /// Without them the usual names are understood (user/human/…, assistant/gpt/…).
    pub user_tag: Option<Fields>,
    pub assistant_tag: Option<Fields>,
    pub system_tag: Option<Fields>,
    /// Roles by speaker order: the first speaker is the user, the second the assistant (a
    /// third is an error); `system_tag` values stay system messages.
    #[serde(default)]
    pub speaker_order: bool,
    /// Nested groups: each element of the list is a turn holding several messages under this
    /// field (strings, or message objects with `content_tag`), spoken by the turn's `role_tag`.
    /// A list nested directly in the list is a group too.
    pub group_tag: Option<String>,
}

/// Where the records of a JSON document are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Records {
    /// A top-level array of records, or one record (the default).
    Array,
    /// JSON Lines: one record per line.
    Lines,
    /// An object whose values are the records (keyed by id).
    Object,
    /// The array (or object of records) at this JSON pointer.
    Pointer(String),
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "array" => Ok(Records::Array),
            "lines" => Ok(Records::Lines),
            "object" => Ok(Records::Object),
            p if p.starts_with('/') => Ok(Records::Pointer(p.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "records = \"{other}\": expected \"array\", \"lines\", \"object\" or a JSON pointer such as \"/data\""
            ))),
        }
    }
}

/// One `[[mapping]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Named in rejections, `idx status` and `idx query source`.
    pub name: String,
    /// Globs over object keys (relative to their source root).
    pub keys: Vec<String>,
    /// The file format, when the key's extension does not say it: `jsonl`, `json`, `csv`,
    /// `tsv`, `parquet`, `arrow`, `txt` (`gzip = true` for compressed text formats).
    pub format: Option<String>,
    #[serde(default)]
    pub gzip: bool,
    pub records: Option<Records>,
    pub columns: Columns,
    #[serde(default)]
    pub tags: Tags,
    /// Fields kept on each row as attributes (missing ones are left out).
    #[serde(default)]
    pub attributes: Vec<String>,
    /// The field naming the record's session or speaker: its holdout group within the object.
    /// `"$record"` makes every record its own group.
    pub session: Option<String>,
}

/// A record rewritten by a mapping.
#[derive(Debug)]
pub(super) struct Applied {
    pub(super) value: Value,
    pub(super) meta: RecordMeta,
    /// `session = "$record"`: the group is the record's own place.
    pub(super) session_per_record: bool,
}

impl Mapping {
    fn err(&self, message: impl std::fmt::Display) -> String {
        format!("mapping `{}`: {message}", self.name)
    }

    /// The file format the mapping declares, if any.
    pub fn file_format(&self) -> Option<(FileFormat, bool)> {
        let format = match self.format.as_deref()? {
            "jsonl" | "ndjson" => FileFormat::Jsonl,
            "json" => FileFormat::Json,
            "csv" => FileFormat::Delimited(b','),
            "tsv" => FileFormat::Delimited(b'\t'),
            "txt" | "text" => FileFormat::Text,
            "parquet" => FileFormat::Parquet,
            "arrow" => FileFormat::Arrow,
            _ => return None,
        };
        Some((format, self.gzip))
    }

    fn check(&self) -> std::result::Result<(), String> {
        let c = &self.columns;
        if self.keys.is_empty() {
            return Err("matches no keys".into());
        }
        if self.format.is_some() && self.file_format().is_none() {
            return Err(format!(
                "format `{}` is not one of jsonl, json, csv, tsv, txt, parquet, arrow",
                self.format.as_deref().unwrap_or_default()
            ));
        }
        if c.prompt_template.is_some() && (c.prompt.is_some() || c.query.is_some()) {
            return Err("declares prompt_template with prompt or query columns".into());
        }
        let has_prompt = c.prompt.is_some() || c.query.is_some() || c.prompt_template.is_some();
        if c.messages.is_some() && has_prompt {
            return Err("declares both a messages column and prompt/query columns".into());
        }
        if c.messages.is_none() && !has_prompt {
            return Err("declares no prompt, query or messages column".into());
        }
        if c.chosen.is_some() != c.rejected.is_some() {
            return Err("declares one of chosen and rejected without the other".into());
        }
        let preference = c.chosen.is_some();
        if preference && (c.kto_tag.is_some() || c.response.is_some()) {
            return Err(
                "a preference mapping (chosen/rejected) takes no response or kto_tag".into(),
            );
        }
        if c.messages.is_none() && !preference && c.response.is_none() {
            return Err("declares no response column".into());
        }
        let t = &self.tags;
        if t != &Tags::default() && c.messages.is_none() && !preference {
            return Err("declares tags but no messages column".into());
        }
        if t.speaker_order && (t.user_tag.is_some() || t.assistant_tag.is_some()) {
            return Err("speaker_order takes no user_tag or assistant_tag".into());
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    version: u32,
    #[serde(default)]
    mapping: Vec<Mapping>,
}

/// Every declared mapping, with the compiled globs that choose one for a key.
#[derive(Debug, Clone)]
pub struct Mappings {
    entries: Vec<Arc<Mapping>>,
    /// For each glob, the index of its entry.
    owners: Vec<usize>,
    globs: GlobSet,
    digest: String,
}

impl Mappings {
    /// Parse a `sources.toml` (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Mappings> {
        let config = |message: String| Error::Config {
            path: origin.to_string(),
            message,
        };
        let file: SourcesFile = toml::from_str(text).map_err(|e| config(e.to_string()))?;
        if file.version != SOURCES_VERSION {
            return Err(config(format!(
                "version {} is not supported (this idx reads version {SOURCES_VERSION})",
                file.version
            )));
        }
        let mut builder = GlobSetBuilder::new();
        let mut owners = Vec::new();
        for (i, m) in file.mapping.iter().enumerate() {
            m.check()
                .map_err(|e| config(format!("mapping `{}` {e}", m.name)))?;
            for key in &m.keys {
                let glob =
                    Glob::new(key).map_err(|e| config(format!("mapping `{}`: {e}", m.name)))?;
                builder.add(glob);
                owners.push(i);
            }
        }
        let globs = builder.build().map_err(|e| config(e.to_string()))?;
        let canonical = serde_json::to_string(&file.mapping).expect("mappings serialise");
        Ok(Mappings {
            entries: file.mapping.into_iter().map(Arc::new).collect(),
            owners,
            globs,
            digest: format!("{:032x}", xxhash_rust::xxh3::xxh3_128(canonical.as_bytes())),
        })
    }

    /// The file at `path`, or the shipped one.
    pub fn load(path: Option<&std::path::Path>) -> Result<Mappings> {
        let (text, origin) =
            crate::config_file::config_text(path, DEFAULT_SOURCES_TOML, "sources.toml")?;
        Mappings::parse(&text, &origin)
    }

    /// The shipped mappings.
    pub fn builtin() -> Mappings {
        Mappings::load(None).expect("the shipped sources.toml is valid")
    }

    /// The mapping for an object key: the first entry (in file order) one of whose globs
    /// matches.
    pub fn for_key(&self, key: &str) -> Option<Arc<Mapping>> {
        self.globs
            .matches(key)
            .into_iter()
            .map(|g| self.owners[g])
            .min()
            .map(|i| self.entries[i].clone())
    }

    /// Digest of the declared mappings (part of the read digest: a change re-reads objects).
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

#[cfg(test)]
mod tests;
