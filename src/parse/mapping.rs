//! Declared mappings (`configs/sources.toml`): how to read records whose shape idx does not
//! detect. An entry matches object keys by glob and names, in LLaMA-Factory's `columns` terms,
//! which fields of a record are the prompt, the query, the response and the system message; the
//! record is rewritten into the prompt/response shape the built-in detection reads. Objects no
//! entry matches are read by detection alone. A record that lacks a declared field is rejected
//! with the mapping's name and the field.

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The shipped `configs/sources.toml`.
pub const DEFAULT_SOURCES_TOML: &str = include_str!("../../configs/sources.toml");

const SOURCES_VERSION: u32 = 1;

/// One or several field names (several are joined, in order, by a blank line).
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
}

/// Which fields of a record make the conversation (LLaMA-Factory's `columns` names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The user's message; several fields are joined by a blank line.
    pub prompt: Option<Fields>,
    /// Appended to the prompt after a blank line (Alpaca's `input`).
    pub query: Option<String>,
    /// The assistant's answer.
    pub response: Option<String>,
    /// A system message before the prompt.
    pub system: Option<String>,
}

/// One `[[mapping]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Named in rejections and logs.
    pub name: String,
    /// Globs over object keys (relative to their source root).
    pub keys: Vec<String>,
    pub columns: Columns,
}

impl Mapping {
    /// Rewrite one record into the prompt/response shape detection reads.
    pub fn apply(&self, value: Value) -> std::result::Result<Value, String> {
        let Value::Object(record) = value else {
            return Err(format!(
                "mapping `{}`: the record is not an object",
                self.name
            ));
        };
        let field = |name: &str| -> std::result::Result<String, String> {
            match record.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(Value::String(_)) | Some(Value::Null) | None => Err(format!(
                    "mapping `{}`: field `{name}` is missing or empty",
                    self.name
                )),
                Some(other) => Err(format!(
                    "mapping `{}`: field `{name}` is not text ({})",
                    self.name,
                    if other.is_array() {
                        "an array"
                    } else {
                        "an object"
                    }
                )),
            }
        };
        let c = &self.columns;
        let mut prompt: Vec<String> = Vec::new();
        if let Some(fields) = &c.prompt {
            for name in fields.names() {
                // Of several prompt fields, an empty one is left out (a question without a
                // title); all of them empty is an error.
                if let Ok(text) = field(name) {
                    prompt.push(text);
                }
            }
            if prompt.is_empty() {
                return Err(format!(
                    "mapping `{}`: no text in the prompt field(s) {}",
                    self.name,
                    fields.names().join(", ")
                ));
            }
        }
        if let Some(name) = &c.query {
            if let Ok(text) = field(name) {
                prompt.push(text);
            }
        }
        let mut out = Map::new();
        out.insert("prompt".into(), Value::String(prompt.join("\n\n")));
        if let Some(name) = &c.response {
            out.insert("response".into(), Value::String(field(name)?));
        }
        if let Some(name) = &c.system {
            out.insert("system".into(), Value::String(field(name)?));
        }
        Ok(Value::Object(out))
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
            if m.keys.is_empty() {
                return Err(config(format!("mapping `{}` matches no keys", m.name)));
            }
            if m.columns.prompt.is_none() && m.columns.query.is_none() {
                return Err(config(format!(
                    "mapping `{}` declares no prompt or query column",
                    m.name
                )));
            }
            if m.columns.response.is_none() {
                return Err(config(format!(
                    "mapping `{}` declares no response column",
                    m.name
                )));
            }
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
mod tests {
    use super::*;
    use serde_json::json;

    const TOML: &str = r#"
version = 1

[[mapping]]
name = "qa"
keys = ["**/qa/*.csv"]
columns = { prompt = ["title", "question"], response = "answer" }
"#;

    #[test]
    fn a_mapping_rewrites_declared_columns_into_a_prompt_response_pair() {
        let m = Mappings::parse(TOML, "test").unwrap();
        assert!(m.for_key("data/other.csv").is_none());
        let qa = m.for_key("x/qa/a.csv").unwrap();
        let out = qa
            .apply(json!({"title": "Sleep", "question": "I can't sleep.", "answer": "Try this.", "votes": 3}))
            .unwrap();
        assert_eq!(
            out,
            json!({"prompt": "Sleep\n\nI can't sleep.", "response": "Try this."})
        );
        // A missing title is left out; a missing answer names the field.
        let out = qa.apply(json!({"question": "Q", "answer": "A"})).unwrap();
        assert_eq!(out["prompt"], "Q");
        let err = qa.apply(json!({"question": "Q"})).unwrap_err();
        assert!(err.contains("`answer`") && err.contains("`qa`"), "{err}");
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        for bad in [
            "version = 2",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = []\ncolumns = { prompt = \"p\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { response = \"r\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"[\"]\ncolumns = { prompt = \"p\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", answer = \"a\" }",
        ] {
            let err = Mappings::parse(bad, "my/sources.toml").unwrap_err().to_string();
            assert!(err.contains("my/sources.toml"), "{bad}: {err}");
        }
        let a = Mappings::parse(TOML, "a").unwrap();
        let b = Mappings::parse(&TOML.replace("answer", "reply"), "b").unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), Mappings::parse(TOML, "c").unwrap().digest());
        assert!(Mappings::builtin()
            .for_key("data/counsel-chat/x.csv")
            .is_some());
    }
}
