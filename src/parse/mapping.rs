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

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::FileFormat;
use crate::error::{Error, Result};
use crate::model::RecordMeta;

/// The shipped `configs/sources.toml`.
pub const DEFAULT_SOURCES_TOML: &str = include_str!("../../configs/sources.toml");

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

fn field<'v>(record: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if let Some(pointer) = name.strip_prefix('/') {
        let mut parts = pointer.split('/');
        let first = parts.next()?;
        let mut v = record.get(&unescape_pointer(first))?;
        for p in parts {
            v = match v {
                Value::Object(o) => o.get(&unescape_pointer(p))?,
                Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    } else {
        record.get(name)
    }
}

fn unescape_pointer(p: &str) -> String {
    p.replace("~1", "/").replace("~0", "~")
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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

    /// The text of a field: a string, or a number written out.
    fn text(&self, record: &Map<String, Value>, name: &str) -> std::result::Result<String, String> {
        match field(record, name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::String(_)) | Some(Value::Null) | None => {
                Err(self.err(format!("field `{name}` is missing or empty")))
            }
            Some(other) => {
                Err(self.err(format!("field `{name}` is not text ({})", kind_of(other))))
            }
        }
    }

    /// Rewrite one record into a shape detection reads, with what it keeps on the row.
    pub(super) fn apply(&self, value: Value) -> std::result::Result<Applied, String> {
        let Value::Object(record) = value else {
            return Err(self.err(format!("the record is {}, not an object", kind_of(&value))));
        };
        let c = &self.columns;
        let mut out = Map::new();
        let mut head: Vec<Value> = Vec::new();
        if let Some(name) = &c.system {
            if let Ok(text) = self.text(&record, name) {
                head.push(json!({"role": "system", "content": text}));
            }
        }
        if let Some(name) = &c.history {
            head.extend(self.history(&record, name)?);
        }
        let prompt: Vec<Value> = if let Some(name) = &c.messages {
            let list = field(&record, name)
                .ok_or_else(|| self.err(format!("field `{name}` is missing")))?;
            self.messages(list, name)?
        } else {
            vec![json!({"role": "user", "content": self.prompt(&record)?})]
        };
        let mut messages = head;
        messages.extend(prompt);
        if let (Some(chosen), Some(rejected)) = (&c.chosen, &c.rejected) {
            out.insert("prompt".into(), Value::Array(messages));
            out.insert("chosen".into(), self.answer(&record, chosen)?);
            out.insert("rejected".into(), self.answer(&record, rejected)?);
        } else if let Some(label) = &c.kto_tag {
            let response = c.response.as_deref().unwrap_or("response");
            out.insert("prompt".into(), Value::Array(messages));
            out.insert("completion".into(), self.answer(&record, response)?);
            out.insert("label".into(), Value::Bool(self.label(&record, label)?));
        } else {
            if let Some(name) = &c.response {
                let text = self.text(&record, name)?;
                messages.push(json!({"role": "assistant", "content": text}));
            }
            out.insert("messages".into(), Value::Array(messages));
        }
        let mut meta = RecordMeta::default();
        for name in &self.attributes {
            if let Some(v) = field(&record, name).filter(|v| !v.is_null()) {
                meta.attributes
                    .push((name.trim_start_matches('/').to_string(), v.to_string()));
            }
        }
        let mut session_per_record = false;
        match self.session.as_deref() {
            Some(SESSION_PER_RECORD) => session_per_record = true,
            Some(name) => {
                let v = field(&record, name)
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| self.err(format!("session field `{name}` is missing")))?;
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                meta.session = Some(xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
            }
            None => {}
        }
        Ok(Applied {
            value: Value::Object(out),
            meta,
            session_per_record,
        })
    }

    fn prompt(&self, record: &Map<String, Value>) -> std::result::Result<String, String> {
        let c = &self.columns;
        if let Some(template) = &c.prompt_template {
            return self.fill(template, record);
        }
        let mut parts: Vec<String> = Vec::new();
        if let Some(fields) = &c.prompt {
            // Of several prompt fields, an empty one is left out (a question without a title);
            // all of them empty is an error.
            parts.extend(
                fields
                    .names()
                    .into_iter()
                    .filter_map(|n| self.text(record, n).ok()),
            );
            if parts.is_empty() {
                return Err(self.err(format!(
                    "no text in the prompt field(s) {}",
                    fields.names().join(", ")
                )));
            }
        }
        if let Some(name) = &c.query {
            if let Ok(text) = self.text(record, name) {
                parts.push(text);
            }
        }
        if parts.is_empty() {
            return Err(self.err("the prompt and query fields are empty"));
        }
        Ok(parts.join("\n\n"))
    }

    /// A template with its `{field}`s replaced by the record's text.
    fn fill(
        &self,
        template: &str,
        record: &Map<String, Value>,
    ) -> std::result::Result<String, String> {
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(self.err("prompt_template has a lone `}` (write `}}`)"));
            }
            let Some(end) = tail.find('}') else {
                return Err(self.err("prompt_template has an unclosed `{`"));
            };
            out.push_str(&self.text(record, &tail[1..end])?);
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A chosen, rejected or KTO answer: text, or a message list read with `tags`.
    fn answer(
        &self,
        record: &Map<String, Value>,
        name: &str,
    ) -> std::result::Result<Value, String> {
        match field(record, name) {
            Some(list @ Value::Array(_)) => Ok(Value::Array(self.messages(list, name)?)),
            _ => Ok(Value::String(self.text(record, name)?)),
        }
    }

    fn label(&self, record: &Map<String, Value>, name: &str) -> std::result::Result<bool, String> {
        match field(record, name) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Number(n)) if n.as_f64() == Some(1.0) => Ok(true),
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(false),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(self.err(format!("label field `{name}` is `{s}`, not true or false"))),
            },
            other => Err(self.err(format!(
                "label field `{name}` is {}, not true or false",
                other.map_or("missing", kind_of)
            ))),
        }
    }

    fn history(
        &self,
        record: &Map<String, Value>,
        name: &str,
    ) -> std::result::Result<Vec<Value>, String> {
        let pairs = match field(record, name) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(pairs)) => pairs,
            Some(other) => {
                return Err(self.err(format!(
                    "history field `{name}` is {}, not a list of pairs",
                    kind_of(other)
                )))
            }
        };
        let mut out = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(u), Value::String(a)]) => {
                    out.push(json!({"role": "user", "content": u}));
                    out.push(json!({"role": "assistant", "content": a}));
                }
                _ => {
                    return Err(self.err(format!(
                        "`{name}[{i}]` is not a [user, assistant] pair of texts"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// A message list read with `tags` into ChatML messages.
    fn messages(&self, list: &Value, name: &str) -> std::result::Result<Vec<Value>, String> {
        let Value::Array(items) = list else {
            return Err(self.err(format!(
                "field `{name}` is {}, not a list of messages",
                kind_of(list)
            )));
        };
        let t = &self.tags;
        let role_tag = t.role_tag.as_deref().unwrap_or("role");
        let content_tag = t.content_tag.as_deref().unwrap_or("content");
        let mut speakers: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let mut push =
            |speaker: &Value, content: &Value, at: &str| -> std::result::Result<(), String> {
                let speaker = match speaker {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(self.err(format!(
                            "`{at}.{role_tag}` is {}, not a speaker",
                            kind_of(other)
                        )))
                    }
                };
                let content = match content {
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(self.err(format!(
                            "`{at}.{content_tag}` is {}, not text",
                            kind_of(other)
                        )))
                    }
                };
                let role = self
                    .role(&speaker, &mut speakers)
                    .map_err(|e| self.err(format!("`{at}`: {e}")))?;
                out.push(json!({"role": role, "content": content}));
                Ok(())
            };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{name}[{i}]");
            match item {
                Value::Object(m) if t.group_tag.is_some() => {
                    let group = t.group_tag.as_deref().unwrap_or_default();
                    let speaker = m
                        .get(role_tag)
                        .ok_or_else(|| self.err(format!("`{at}` has no `{role_tag}`")))?;
                    let Some(Value::Array(inner)) = m.get(group) else {
                        return Err(self.err(format!("`{at}` has no list `{group}`")));
                    };
                    for (j, msg) in inner.iter().enumerate() {
                        let content = match msg {
                            Value::Object(o) => o.get(content_tag).unwrap_or(&Value::Null),
                            other => other,
                        };
                        push(speaker, content, &format!("{at}.{group}[{j}]"))?;
                    }
                }
                Value::Object(m) => {
                    let (speaker, content) = self.fields(m, &at, role_tag, content_tag)?;
                    push(speaker, content, &at)?;
                }
                Value::Array(inner) => {
                    for (j, msg) in inner.iter().enumerate() {
                        let at = format!("{at}[{j}]");
                        let Value::Object(m) = msg else {
                            return Err(
                                self.err(format!("`{at}` is {}, not a message", kind_of(msg)))
                            );
                        };
                        let (speaker, content) = self.fields(m, &at, role_tag, content_tag)?;
                        push(speaker, content, &at)?;
                    }
                }
                other => {
                    return Err(self.err(format!("`{at}` is {}, not a message", kind_of(other))))
                }
            }
        }
        Ok(out)
    }

    /// A message object's speaker and text fields, or an error naming the one it lacks.
    fn fields<'m>(
        &self,
        m: &'m Map<String, Value>,
        at: &str,
        role_tag: &str,
        content_tag: &str,
    ) -> std::result::Result<(&'m Value, &'m Value), String> {
        let speaker = m
            .get(role_tag)
            .ok_or_else(|| self.err(format!("`{at}` has no `{role_tag}`")))?;
        let content = m
            .get(content_tag)
            .ok_or_else(|| self.err(format!("`{at}` has no `{content_tag}`")))?;
        Ok((speaker, content))
    }

    /// The ChatML role of a speaker value.
    fn role(
        &self,
        speaker: &str,
        seen: &mut Vec<String>,
    ) -> std::result::Result<&'static str, String> {
        let t = &self.tags;
        if t.system_tag.as_ref().is_some_and(|f| f.contains(speaker)) {
            return Ok("system");
        }
        if t.speaker_order {
            let position = match seen.iter().position(|s| s == speaker) {
                Some(p) => p,
                None => {
                    seen.push(speaker.to_string());
                    seen.len() - 1
                }
            };
            return match position {
                0 => Ok("user"),
                1 => Ok("assistant"),
                _ => Err(format!(
                    "a third speaker `{speaker}` (speaker_order reads two-person conversations)"
                )),
            };
        }
        if t.user_tag.is_some() || t.assistant_tag.is_some() {
            if t.user_tag.as_ref().is_some_and(|f| f.contains(speaker)) {
                return Ok("user");
            }
            if t.assistant_tag
                .as_ref()
                .is_some_and(|f| f.contains(speaker))
            {
                return Ok("assistant");
            }
            return Err(format!("role `{speaker}` is none of the declared user_tag, assistant_tag or system_tag values"));
        }
        // The role names detection understands, from detection itself.
        super::formats::parse_role(speaker)
            .map(crate::model::Role::as_str)
            .ok_or_else(|| {
                format!("unknown role `{speaker}`: declare user_tag/assistant_tag or speaker_order")
            })
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
mod tests {
    use super::*;
    use serde_json::json;

    const TOML: &str = r#"
version = 1

[[mapping]]
name = "qa"
keys = ["**/qa/*.csv"]
columns = { prompt = ["title", "question"], response = "answer" }
attributes = ["votes", "/meta/topic"]
session = "thread"
"#;

    fn one(toml_entry: &str) -> Arc<Mapping> {
        let text = format!("version = 1\n[[mapping]]\nname = \"m\"\nkeys = [\"*\"]\n{toml_entry}");
        Mappings::parse(&text, "test")
            .unwrap()
            .for_key("x")
            .unwrap()
    }

    fn roles(v: &Value) -> Vec<(String, String)> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn declared_columns_become_a_conversation_with_attributes_and_a_session() {
        let m = Mappings::parse(TOML, "test").unwrap();
        assert!(m.for_key("data/other.csv").is_none());
        let qa = m.for_key("x/qa/a.csv").unwrap();
        let out = qa
            .apply(
                json!({"title": "Sleep", "question": "I can't sleep.", "answer": "Try this.",
                "votes": 3, "meta": {"topic": "insomnia"}, "thread": "t1"}),
            )
            .unwrap();
        assert_eq!(
            roles(&out.value),
            pairs(&[
                ("user", "Sleep\n\nI can't sleep."),
                ("assistant", "Try this.")
            ])
        );
        assert_eq!(
            out.meta.attributes,
            vec![
                ("votes".to_string(), "3".to_string()),
                ("meta/topic".to_string(), "\"insomnia\"".to_string())
            ]
        );
        let same_thread = qa
            .apply(json!({"question": "Q2", "answer": "A2", "thread": "t1"}))
            .unwrap();
        assert!(out.meta.session.is_some());
        assert_eq!(out.meta.session, same_thread.meta.session);
        // A missing title is left out; a missing answer or session names the field.
        let err = qa
            .apply(json!({"question": "Q", "thread": "t"}))
            .unwrap_err();
        assert!(err.contains("`answer`") && err.contains("`qa`"), "{err}");
        let err = qa
            .apply(json!({"question": "Q", "answer": "A"}))
            .unwrap_err();
        assert!(err.contains("session field `thread`"), "{err}");
    }

    #[test]
    fn message_lists_map_roles_many_to_one() {
        let m = one(
            "columns = { messages = \"turns\", system = \"sys\" }\n\
             tags = { role_tag = \"who\", content_tag = \"text\", user_tag = [\"client\", \"patient\"], assistant_tag = \"coach\" }",
        );
        let out = m
            .apply(json!({"sys": "Be kind.", "turns": [
                {"who": "client", "text": "hi"}, {"who": "coach", "text": "hello"},
                {"who": "patient", "text": "bye"}]}))
            .unwrap();
        assert_eq!(
            roles(&out.value),
            pairs(&[
                ("system", "Be kind."),
                ("user", "hi"),
                ("assistant", "hello"),
                ("user", "bye")
            ])
        );
        let err = m
            .apply(json!({"turns": [{"who": "narrator", "text": "x"}]}))
            .unwrap_err();
        assert!(
            err.contains("turns[0]") && err.contains("narrator"),
            "{err}"
        );
        let err = m.apply(json!({"turns": [{"who": "coach"}]})).unwrap_err();
        assert!(err.contains("has no `text`"), "{err}");
    }

    #[test]
    fn speaker_order_and_nested_groups() {
        let m = one(
            "columns = { messages = \"dialogue\" }\n\
             tags = { role_tag = \"speaker\", content_tag = \"utterance\", speaker_order = true, group_tag = \"utterances\" }",
        );
        let out = m
            .apply(json!({"dialogue": [
                {"speaker": 7, "utterances": ["I feel low.", {"utterance": "Since May."}]},
                {"speaker": 3, "utterances": ["That sounds hard."]},
                {"speaker": 7, "utterances": ["Yes."]}]}))
            .unwrap();
        assert_eq!(
            roles(&out.value),
            pairs(&[
                ("user", "I feel low."),
                ("user", "Since May."),
                ("assistant", "That sounds hard."),
                ("user", "Yes.")
            ])
        );
        let err = m
            .apply(json!({"dialogue": [{"speaker": 1, "utterances": ["a"]}, {"speaker": 2, "utterances": ["b"]}, {"speaker": 3, "utterances": ["c"]}]}))
            .unwrap_err();
        assert!(err.contains("third speaker"), "{err}");
        // Lists nested directly in the list are groups too.
        let flat = one("columns = { messages = \"m\" }\ntags = { speaker_order = true, role_tag = \"s\", content_tag = \"t\" }");
        let out = flat
            .apply(json!({"m": [[{"s": "a", "t": "one"}, {"s": "a", "t": "two"}], [{"s": "b", "t": "three"}]]}))
            .unwrap();
        assert_eq!(
            roles(&out.value),
            pairs(&[("user", "one"), ("user", "two"), ("assistant", "three")])
        );
    }

    #[test]
    fn a_prompt_template_joins_columns_into_one_message() {
        let m = one(
            "columns = { prompt_template = \"[{topic}] {/q/title}: {/q/text} {{sic}}\", response = \"a\" }",
        );
        let out = m
            .apply(json!({"topic": "sleep", "q": {"title": "Up at 3", "text": "Why?"}, "a": "Stress."}))
            .unwrap();
        assert_eq!(
            roles(&out.value),
            pairs(&[
                ("user", "[sleep] Up at 3: Why? {sic}"),
                ("assistant", "Stress.")
            ])
        );
        let err = m
            .apply(json!({"q": {"title": "t", "text": "x"}, "a": "y"}))
            .unwrap_err();
        assert!(err.contains("field `topic`"), "{err}");
    }

    #[test]
    fn preference_kto_and_history() {
        let pref = one("columns = { prompt = \"q\", chosen = \"good\", rejected = \"bad\" }");
        let out = pref
            .apply(json!({"q": "Q", "good": "G", "bad": "B"}))
            .unwrap();
        let c = crate::parse::formats::detect(out.value).unwrap();
        assert_eq!(c.kind, crate::model::RecordKind::Preference);
        assert_eq!(c.rejected.unwrap()[0].content, "B");
        let kto = one("columns = { prompt = \"q\", response = \"a\", kto_tag = \"ok\" }");
        for (label, expected) in [(json!(true), true), (json!("0"), false), (json!(1), true)] {
            let out = kto.apply(json!({"q": "Q", "a": "A", "ok": label})).unwrap();
            let c = crate::parse::formats::detect(out.value).unwrap();
            assert_eq!(
                (c.kind, c.label),
                (crate::model::RecordKind::Kto, Some(expected))
            );
        }
        assert!(kto
            .apply(json!({"q": "Q", "a": "A", "ok": "maybe"}))
            .unwrap_err()
            .contains("not true or false"));
        let hist = one("columns = { prompt = \"q\", response = \"a\", history = \"h\" }");
        let out = hist
            .apply(json!({"q": "Q2", "a": "A2", "h": [["Q1", "A1"]]}))
            .unwrap();
        assert_eq!(
            roles(&out.value),
            pairs(&[
                ("user", "Q1"),
                ("assistant", "A1"),
                ("user", "Q2"),
                ("assistant", "A2")
            ])
        );
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        for bad in [
            "version = 2",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = []\ncolumns = { prompt = \"p\", response = \"r\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { response = \"r\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"[\"]\ncolumns = { prompt = \"p\", response = \"r\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", answer = \"a\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", chosen = \"c\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { messages = \"m\", prompt = \"p\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\nformat = \"xlsx\"\ncolumns = { messages = \"m\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\nrecords = \"rows\"\ncolumns = { messages = \"m\" }",
            "version = 1\n[[mapping]]\nname = \"x\"\nkeys = [\"*\"]\ncolumns = { prompt = \"p\", response = \"r\" }\ntags = { role_tag = \"r\" }",
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
