//! Applying a mapping: one record (a JSON object, whatever file format it came from) rewritten
//! into a shape the built-in detection reads, with the attributes and session it keeps on the
//! row, or an error naming the mapping and the field that was wrong.

use serde_json::{json, Map, Value};

use super::{Applied, Mapping, SESSION_PER_RECORD};
use crate::model::RecordMeta;

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
    pub(in crate::parse) fn apply(&self, value: Value) -> std::result::Result<Applied, String> {
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
        crate::parse::formats::parse_role(speaker)
            .map(crate::model::Role::as_str)
            .ok_or_else(|| {
                format!("unknown role `{speaker}`: declare user_tag/assistant_tag or speaker_order")
            })
    }
}
