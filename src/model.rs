//! The values passed between pipeline stages: a canonical conversation, the record kinds idx reads,
//! an object's identity and version, and a row's provenance. Pure data with serde/bincode derives;
//! no I/O and no logic beyond small accessors lives here.

use serde::{Deserialize, Serialize};

/// A chat role after normalisation (ChatML roles only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One ChatML message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// The record format a row was read from; kept on the row so later stages can route it
/// (preference data to alignment, plain text to continued pretraining).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Chatml,
    Sharegpt,
    Alpaca,
    PromptResponse,
    Preference,
    Kto,
    Text,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Chatml => "chatml",
            RecordKind::Sharegpt => "sharegpt",
            RecordKind::Alpaca => "alpaca",
            RecordKind::PromptResponse => "prompt_response",
            RecordKind::Preference => "preference",
            RecordKind::Kto => "kto",
            RecordKind::Text => "text",
        }
    }

    /// The training phase rows of this kind feed: plain text to continued pretraining,
    /// preference pairs and KTO labels to preference alignment, conversations to SFT.
    pub fn phase(self) -> &'static str {
        match self {
            RecordKind::Text => "pretraining",
            RecordKind::Preference | RecordKind::Kto => "preference",
            _ => "sft",
        }
    }

    /// Kinds whose content is the same thing (a conversation) share a class, so an Alpaca record
    /// and a ChatML record with the same turns are one row; the classes never collide.
    pub fn content_class(self) -> u8 {
        match self {
            RecordKind::Chatml
            | RecordKind::Sharegpt
            | RecordKind::Alpaca
            | RecordKind::PromptResponse => 0,
            RecordKind::Preference => 1,
            RecordKind::Kto => 2,
            RecordKind::Text => 3,
        }
    }

    /// This kind's content class as a bit of a [`ClassMask`].
    pub fn class_bit(self) -> ClassMask {
        1 << self.content_class()
    }
}

/// A set of content classes ([`RecordKind::content_class`]) as bits: what the index keeps per
/// object (the classes of its places). Every spelling of a row is of one class, so an object
/// whose classes miss a kind's class holds no row of that kind.
pub type ClassMask = u8;

/// The canonical form of every record: a ChatML conversation plus what some kinds add.
///
/// - conversations (ChatML, ShareGPT, Alpaca, prompt/response): `messages` only;
/// - preference pairs: `messages` is the prompt followed by the chosen answer, `rejected` the
///   rejected answer's messages;
/// - KTO: `messages` is the prompt followed by the completion, `label` the desirability label;
/// - plain text: one `assistant` message holding the text (kind `text` says it is not a dialogue).
///
/// Stored with bincode, so no field may be skipped when serialising.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conversation {
    pub kind: RecordKind,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub rejected: Option<Vec<Message>>,
    #[serde(default)]
    pub label: Option<bool>,
}

impl Conversation {
    /// A chat whose messages alternate user, assistant, user… (for tests).
    #[cfg(test)]
    pub(crate) fn alternating(kind: RecordKind, texts: &[&str]) -> Conversation {
        let role = |i: usize| {
            if i.is_multiple_of(2) {
                Role::User
            } else {
                Role::Assistant
            }
        };
        Conversation {
            kind,
            messages: texts
                .iter()
                .enumerate()
                .map(|(i, t)| Message::new(role(i), *t))
                .collect(),
            rejected: None,
            label: None,
        }
    }

    /// Every message, including a preference pair's rejected answer, in a fixed order.
    pub fn all_messages(&self) -> impl Iterator<Item = &Message> {
        self.messages
            .iter()
            .chain(self.rejected.iter().flat_map(|r| r.iter()))
    }

    /// Total UTF-8 bytes of message content.
    pub fn content_bytes(&self) -> usize {
        self.all_messages().map(|m| m.content.len()).sum()
    }

    /// The prompt (every message before the last) and the answer, when the conversation ends
    /// on an assistant answer to a user turn.
    pub fn prompt_and_answer(&self) -> Option<(&[Message], &Message)> {
        let (answer, prompt) = self.messages.split_last()?;
        let asks = prompt.last().is_some_and(|m| m.role == Role::User);
        (answer.role == Role::Assistant && asks).then_some((prompt, answer))
    }
}

/// What identifies one version of an object: a change in any field means the object changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (local files) or 0 when unknown.
    pub mtime_ns: i128,
    /// Content digest: XXH3-128 of the raw bytes as hex (local files), or the ETag (S3).
    pub digest: String,
}

/// A rejected line or record: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

/// What a record carries besides its conversation, kept on its place (the occurrence, not the
/// row: two places of one row may differ here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// XXH3-64 of the session (or speaker) value a mapping declared: the record's holdout group
    /// within its object. Only the hash is kept, never the value.
    pub session: Option<u64>,
    /// Fields a mapping declared to keep, as (name, JSON value) in declaration order; string
    /// values are redacted like message text.
    pub attributes: Vec<(String, String)>,
    /// Consecutive same-role turns merged while reading (see [`crate::structure`]).
    pub merged_turns: u32,
}

impl RecordMeta {
    pub fn is_empty(&self) -> bool {
        self == &RecordMeta::default()
    }

    /// The attributes as a JSON object (values that do not parse are kept as strings).
    pub fn attributes_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.attributes
            .iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(v)
                    .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                (k.clone(), value)
            })
            .collect()
    }
}
