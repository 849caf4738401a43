//! Record-format detection: one JSON value in, one canonical [`Conversation`] (not yet
//! normalised) or a reason for rejection out. Formats are detected per record, so a file may mix
//! them. Detection order (first match wins): ChatML `messages`; ShareGPT `conversations`;
//! ESConv-style emotional-support dialogues `dialog: [{speaker, content}]` (seeker/speaker/usr →
//! user, supporter/listener/sys → assistant, read as ShareGPT-like conversations); preference
//! (`chosen` or `rejected`, with `prompt`); KTO `completion`+`label`; Alpaca `instruction`;
//! prompt/response pairs (`prompt`/`response`, `prompt`/`completion`, `question`/`answer`,
//! `input`/`output`, `query`/`response`); plain `text`.

use serde_json::{Map, Value};

use crate::model::{Conversation, Message, RecordKind, Role};

/// Convert one JSON record into a conversation, or say why it cannot be.
pub fn detect(value: Value) -> Result<Conversation, String> {
    let Value::Object(obj) = value else {
        return Err(format!(
            "expected a JSON object, found {}",
            type_name(&value)
        ));
    };
    let conversation = if let Some(v) = obj.get("messages") {
        Conversation {
            kind: RecordKind::Chatml,
            messages: message_list(v, "messages", "role", "content")?,
            rejected: None,
            label: None,
        }
    } else if let Some(v) = obj.get("conversations") {
        Conversation {
            kind: RecordKind::Sharegpt,
            messages: message_list(v, "conversations", "from", "value")?,
            rejected: None,
            label: None,
        }
    } else if let Some(v) = obj.get("dialog") {
        Conversation {
            kind: RecordKind::Sharegpt,
            messages: message_list(v, "dialog", "speaker", "content")?,
            rejected: None,
            label: None,
        }
    } else if obj.contains_key("chosen") || obj.contains_key("rejected") {
        preference(&obj)?
    } else if obj.contains_key("label") && obj.contains_key("completion") {
        kto(&obj)?
    } else if obj.contains_key("instruction") {
        alpaca(&obj)?
    } else if let Some((p, r)) = prompt_response_fields(&obj) {
        let mut messages = system_prefix(&obj)?;
        messages.push(Message::new(Role::User, string_field(&obj, p)?));
        messages.push(Message::new(Role::Assistant, string_field(&obj, r)?));
        Conversation {
            kind: RecordKind::PromptResponse,
            messages,
            rejected: None,
            label: None,
        }
    } else if obj.contains_key("text") {
        Conversation {
            kind: RecordKind::Text,
            messages: vec![Message::new(Role::Assistant, string_field(&obj, "text")?)],
            rejected: None,
            label: None,
        }
    } else {
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
        keys.sort_unstable();
        return Err(format!(
            "unknown record shape (keys: {})",
            if keys.is_empty() {
                "none".to_string()
            } else {
                keys.join(", ")
            }
        ));
    };
    Ok(conversation)
}

const PROMPT_RESPONSE_PAIRS: [(&str, &str); 5] = [
    ("prompt", "response"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("input", "output"),
    ("query", "response"),
];

fn prompt_response_fields(obj: &Map<String, Value>) -> Option<(&'static str, &'static str)> {
    PROMPT_RESPONSE_PAIRS
        .into_iter()
        .find(|(p, r)| obj.contains_key(*p) && obj.contains_key(*r))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(obj: &Map<String, Value>, field: &str) -> Result<String, String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field `{field}` must be a string, found {}",
            type_name(other)
        )),
        None => Err(format!("missing field `{field}`")),
    }
}

pub(super) fn parse_role(raw: &str) -> Option<Role> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "system" => Some(Role::System),
        "user" | "human" | "prompter" | "seeker" | "speaker" | "usr" | "client" | "patient" => {
            Some(Role::User)
        }
        "assistant" | "gpt" | "bot" | "chatgpt" | "model" | "supporter" | "listener" | "sys"
        | "therapist" | "counselor" | "counsellor" => Some(Role::Assistant),
        _ => None,
    }
}

fn message_list(
    v: &Value,
    field: &str,
    role_key: &str,
    content_key: &str,
) -> Result<Vec<Message>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "field `{field}` must be an array, found {}",
            type_name(v)
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(format!(
                "`{field}[{i}]` must be an object, found {}",
                type_name(item)
            ));
        };
        let role_raw = match m.get(role_key) {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(format!(
                    "`{field}[{i}].{role_key}` must be a string, found {}",
                    type_name(other)
                ))
            }
            None => return Err(format!("`{field}[{i}]` has no `{role_key}`")),
        };
        let role = parse_role(role_raw)
            .ok_or_else(|| format!("`{field}[{i}]` has unknown role `{role_raw}`"))?;
        let content = match m.get(content_key) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(format!(
                    "`{field}[{i}].{content_key}` must be a string, found {}",
                    type_name(other)
                ))
            }
            None => return Err(format!("`{field}[{i}]` has no `{content_key}`")),
        };
        out.push(Message::new(role, content));
    }
    Ok(out)
}

/// A prompt or answer given either as a string (taken as the `default_role`'s message) or as a
/// list of ChatML messages.
fn turns(
    obj: &Map<String, Value>,
    field: &str,
    default_role: Role,
) -> Result<Vec<Message>, String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(vec![Message::new(default_role, s.clone())]),
        Some(v @ Value::Array(_)) => message_list(v, field, "role", "content"),
        Some(other) => Err(format!(
            "field `{field}` must be a string or a message list, found {}",
            type_name(other)
        )),
        None => Err(format!("missing field `{field}`")),
    }
}

fn system_prefix(obj: &Map<String, Value>) -> Result<Vec<Message>, String> {
    match obj.get("system") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Message::new(Role::System, s.clone())]),
        Some(other) => Err(format!(
            "field `system` must be a string, found {}",
            type_name(other)
        )),
    }
}

fn preference(obj: &Map<String, Value>) -> Result<Conversation, String> {
    let mut messages = system_prefix(obj)?;
    messages.extend(turns(obj, "prompt", Role::User)?);
    messages.extend(turns(obj, "chosen", Role::Assistant)?);
    let rejected = turns(obj, "rejected", Role::Assistant)?;
    Ok(Conversation {
        kind: RecordKind::Preference,
        messages,
        rejected: Some(rejected),
        label: None,
    })
}

fn kto(obj: &Map<String, Value>) -> Result<Conversation, String> {
    let label = match obj.get("label") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
        Some(other) => {
            return Err(format!(
                "field `label` must be a boolean (or 0/1), found {}",
                type_name(other)
            ))
        }
        None => return Err("missing field `label`".to_string()),
    };
    let mut messages = system_prefix(obj)?;
    messages.extend(turns(obj, "prompt", Role::User)?);
    messages.extend(turns(obj, "completion", Role::Assistant)?);
    Ok(Conversation {
        kind: RecordKind::Kto,
        messages,
        rejected: None,
        label: Some(label),
    })
}

fn alpaca(obj: &Map<String, Value>) -> Result<Conversation, String> {
    let instruction = string_field(obj, "instruction")?;
    let input = match obj.get("input") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "field `input` must be a string, found {}",
                type_name(other)
            ))
        }
    };
    let output = string_field(obj, "output")?;
    let user = if input.trim().is_empty() {
        instruction
    } else {
        format!("{instruction}\n\n{input}")
    };
    let mut messages = system_prefix(obj)?;
    messages.push(Message::new(Role::User, user));
    messages.push(Message::new(Role::Assistant, output));
    Ok(Conversation {
        kind: RecordKind::Alpaca,
        messages,
        rejected: None,
        label: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(v: Value) -> Result<RecordKind, String> {
        detect(v).map(|c| c.kind)
    }

    #[test]
    fn detects_every_format() {
        assert_eq!(
            kind(json!({"messages": [{"role": "user", "content": "hi"}]})),
            Ok(RecordKind::Chatml)
        );
        assert_eq!(
            kind(
                json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
            ),
            Ok(RecordKind::Sharegpt)
        );
        assert_eq!(
            kind(json!({"instruction": "do", "input": "", "output": "done"})),
            Ok(RecordKind::Alpaca)
        );
        assert_eq!(
            kind(json!({"prompt": "p", "response": "r"})),
            Ok(RecordKind::PromptResponse)
        );
        assert_eq!(
            kind(json!({"prompt": "p", "chosen": "c", "rejected": "r"})),
            Ok(RecordKind::Preference)
        );
        assert_eq!(
            kind(json!({"prompt": "p", "completion": "c", "label": true})),
            Ok(RecordKind::Kto)
        );
        assert_eq!(kind(json!({"text": "t"})), Ok(RecordKind::Text));
        let esconv = detect(json!({"situation": "s", "dialog": [
            {"speaker": "speaker", "annotation": {}, "content": "Hey there"},
            {"speaker": "listener", "annotation": {"strategy": "Question"}, "content": "Hi, how are you?"}
        ]}))
        .unwrap();
        assert_eq!(esconv.kind, RecordKind::Sharegpt);
        assert_eq!(
            esconv.messages.iter().map(|m| m.role).collect::<Vec<_>>(),
            vec![Role::User, Role::Assistant]
        );
    }

    #[test]
    fn preference_accepts_message_lists() {
        let c = detect(json!({
            "prompt": [{"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}]
        }))
        .unwrap();
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.rejected.unwrap()[0].content, "bad");
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(detect(json!([1, 2]))
            .unwrap_err()
            .contains("expected a JSON object"));
        assert!(detect(json!({"messages": "x"}))
            .unwrap_err()
            .contains("must be an array"));
        assert!(
            detect(json!({"messages": [{"role": "tool", "content": "x"}]}))
                .unwrap_err()
                .contains("unknown role")
        );
        assert!(detect(json!({"text": 5}))
            .unwrap_err()
            .contains("must be a string"));
        assert!(detect(json!({"foo": 1}))
            .unwrap_err()
            .contains("unknown record shape"));
        assert!(
            detect(json!({"prompt": "p", "completion": "c", "label": "yes"}))
                .unwrap_err()
                .contains("label")
        );
    }
}
