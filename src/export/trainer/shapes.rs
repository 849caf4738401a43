//! The shapes of trainer lines, and which trainer reads which. A stage's main file is in the
//! shape TRL documents (`{"text"}`, `{"messages"}`, and for preference stages the
//! conversational `{"prompt": [..], "chosen": [..], "rejected": [..]}` /
//! `{"prompt": [..], "completion": [..], "label"}`, so chat templates apply and the system turn
//! survives); axolotl reads the text, messages and DPO/SimPO files as they are. Where a trainer
//! documents another shape for the same data, the stage gets a file of its own in that
//! trainer's folder: LLaMA-Factory's sharegpt ranking (`chosen`/`rejected` one message each)
//! and KTO (`messages` ending on the completion, `label`); axolotl's ORPO (`chat_template.argilla`:
//! `system`, `chosen`/`rejected` whole conversations) and KTO (`user_defined` over ChatML text,
//! the only KTO reader axolotl has for multi-turn prompts).

use serde::Serialize;

use crate::curriculum::{Algorithm, Phase, StagePlan};
use crate::model::{Conversation, Message, Role};

/// The data a stage trains on, whatever the file's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Format {
    Text,
    Messages,
    PromptChosenRejected,
    PromptCompletionLabel,
}

impl Format {
    pub(super) fn of(stage: &StagePlan) -> Format {
        match stage.phase {
            Phase::Pretraining => Format::Text,
            Phase::Sft => Format::Messages,
            Phase::Preference => match stage.algorithm.as_ref().map(|a| a.algorithm) {
                Some(Algorithm::Kto) => Format::PromptCompletionLabel,
                _ => Format::PromptChosenRejected,
            },
        }
    }
}

/// Who a file is written for: every trainer, or one that documents a shape of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Reader {
    /// TRL's shapes, read as they are by every trainer that can.
    All,
    #[serde(rename = "llamafactory")]
    LlamaFactory,
    Axolotl,
}

impl Reader {
    /// The folder under `curriculum/` of this reader's own files.
    pub(super) fn folder(self) -> Option<&'static str> {
        match self {
            Reader::All => None,
            Reader::LlamaFactory => Some("llamafactory"),
            Reader::Axolotl => Some("axolotl"),
        }
    }
}

/// The line shape a reader gets for a stage's format and algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Text,
    Messages,
    /// TRL: `prompt` message list (system included), `chosen`/`rejected` one-message lists.
    Pair,
    /// TRL: `prompt` message list, `completion` one-message list, `label`.
    Labelled,
    /// LLaMA-Factory sharegpt ranking: `messages` (the prompt, ending on the user),
    /// `chosen`/`rejected` one message object each.
    SharegptPair,
    /// LLaMA-Factory sharegpt KTO: `messages` ending on the completion, `label`.
    SharegptLabelled,
    /// axolotl ORPO (`chat_template.argilla`): `system` (or null), `chosen`/`rejected` the whole
    /// conversation without the system turn, ending on that answer.
    ArgillaPair,
    /// axolotl KTO (`user_defined`): `prompt` the ChatML text up to the assistant's turn,
    /// `completion` the answer closed by `<|im_end|>`, `label`.
    ChatmlLabelled,
}

/// The readers that need a file of their own for this stage, with its shape.
pub(super) fn own_files(format: Format, algorithm: Option<Algorithm>) -> Vec<(Reader, Shape)> {
    match format {
        Format::Text | Format::Messages => Vec::new(),
        Format::PromptChosenRejected => {
            let mut v = vec![(Reader::LlamaFactory, Shape::SharegptPair)];
            if algorithm == Some(Algorithm::Orpo) {
                v.push((Reader::Axolotl, Shape::ArgillaPair));
            }
            v
        }
        Format::PromptCompletionLabel => vec![
            (Reader::LlamaFactory, Shape::SharegptLabelled),
            (Reader::Axolotl, Shape::ChatmlLabelled),
        ],
    }
}

/// The shape of a stage's main file.
pub(super) fn main_shape(format: Format) -> Shape {
    match format {
        Format::Text => Shape::Text,
        Format::Messages => Shape::Messages,
        Format::PromptChosenRejected => Shape::Pair,
        Format::PromptCompletionLabel => Shape::Labelled,
    }
}

/// One trainer line; field order as trainers document them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Line<'a> {
    Text {
        text: String,
    },
    Messages {
        messages: &'a [Message],
    },
    Pair {
        prompt: &'a [Message],
        chosen: [&'a Message; 1],
        rejected: [&'a Message; 1],
    },
    Labelled {
        prompt: &'a [Message],
        completion: [&'a Message; 1],
        label: bool,
    },
    SharegptPair {
        messages: &'a [Message],
        chosen: &'a Message,
        rejected: &'a Message,
    },
    SharegptLabelled {
        messages: Vec<&'a Message>,
        label: bool,
    },
    ArgillaPair {
        system: Option<&'a str>,
        chosen: Vec<&'a Message>,
        rejected: Vec<&'a Message>,
    },
    ChatmlLabelled {
        prompt: String,
        completion: String,
        label: bool,
    },
}

/// A preference example: a prompt (optional system, then alternating user/assistant, ending on
/// the user) and the answer(s) judged.
enum Example<'a> {
    Pair {
        prompt: &'a [Message],
        chosen: &'a Message,
        rejected: &'a Message,
    },
    Labelled {
        prompt: &'a [Message],
        completion: &'a Message,
        label: bool,
    },
}

/// The preference examples of one row: a pair gives one pair (or, for KTO, a desirable and an
/// undesirable example), a KTO row one labelled example; nothing when the row has no such shape.
fn examples(c: &Conversation, format: Format) -> Vec<Example<'_>> {
    let Some((prompt, answer)) = c.prompt_and_answer() else {
        return Vec::new();
    };
    // The rejected side is the answer alone or a whole conversation: its last turn either way.
    let rejected = c
        .rejected
        .as_deref()
        .and_then(<[Message]>::last)
        .filter(|m| m.role == Role::Assistant);
    match (format, rejected, c.label) {
        (Format::PromptChosenRejected, Some(rejected), _) => vec![Example::Pair {
            prompt,
            chosen: answer,
            rejected,
        }],
        (Format::PromptCompletionLabel, Some(rejected), _) => vec![
            Example::Labelled {
                prompt,
                completion: answer,
                label: true,
            },
            Example::Labelled {
                prompt,
                completion: rejected,
                label: false,
            },
        ],
        (Format::PromptCompletionLabel, None, Some(label)) => vec![Example::Labelled {
            prompt,
            completion: answer,
            label,
        }],
        _ => Vec::new(),
    }
}

fn join(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// ChatML text of a prompt, open for the assistant's answer.
fn chatml_prompt(prompt: &[Message]) -> String {
    let mut s = String::new();
    for m in prompt {
        s.push_str("<|im_start|>");
        s.push_str(m.role.as_str());
        s.push('\n');
        s.push_str(&m.content);
        s.push_str("<|im_end|>\n");
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

/// The prompt without a leading system turn, and that turn's text.
fn split_system(prompt: &[Message]) -> (Option<&str>, &[Message]) {
    match prompt.split_first() {
        Some((first, rest)) if first.role == Role::System => (Some(&first.content), rest),
        _ => (None, prompt),
    }
}

/// The lines of one row in one shape (none when the row has no shape the format needs).
pub(super) fn render(c: &Conversation, format: Format, shape: Shape) -> Vec<Line<'_>> {
    match shape {
        Shape::Text => vec![Line::Text {
            text: join(&c.messages),
        }],
        Shape::Messages => vec![Line::Messages {
            messages: &c.messages,
        }],
        _ => examples(c, format)
            .into_iter()
            .filter_map(|e| example_line(e, shape))
            .collect(),
    }
}

/// A conversation without its system turn, ending on `answer`.
fn with_answer<'a>(prompt: &'a [Message], answer: &'a Message) -> Vec<&'a Message> {
    let (_, body) = split_system(prompt);
    body.iter().chain([answer]).collect()
}

fn example_line(e: Example<'_>, shape: Shape) -> Option<Line<'_>> {
    Some(match e {
        Example::Pair {
            prompt,
            chosen,
            rejected,
        } => match shape {
            Shape::Pair => Line::Pair {
                prompt,
                chosen: [chosen],
                rejected: [rejected],
            },
            Shape::SharegptPair => Line::SharegptPair {
                messages: prompt,
                chosen,
                rejected,
            },
            Shape::ArgillaPair => Line::ArgillaPair {
                system: split_system(prompt).0,
                chosen: with_answer(prompt, chosen),
                rejected: with_answer(prompt, rejected),
            },
            _ => return None,
        },
        Example::Labelled {
            prompt,
            completion,
            label,
        } => match shape {
            Shape::Labelled => Line::Labelled {
                prompt,
                completion: [completion],
                label,
            },
            Shape::SharegptLabelled => Line::SharegptLabelled {
                messages: prompt.iter().chain([completion]).collect(),
                label,
            },
            Shape::ChatmlLabelled => Line::ChatmlLabelled {
                prompt: chatml_prompt(prompt),
                completion: format!("{}<|im_end|>", completion.content),
                label,
            },
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecordKind;

    fn conv(turns: &[(Role, &str)], rejected: Option<&str>, label: Option<bool>) -> Conversation {
        let messages: Vec<Message> = turns.iter().map(|(r, t)| Message::new(*r, *t)).collect();
        let rejected = rejected.map(|r| vec![Message::new(Role::Assistant, r)]);
        Conversation {
            kind: match (&rejected, label) {
                (Some(_), _) => RecordKind::Preference,
                (None, Some(_)) => RecordKind::Kto,
                (None, None) => RecordKind::Chatml,
            },
            messages,
            rejected,
            label,
        }
    }

    fn json(lines: Vec<Line<'_>>) -> Vec<serde_json::Value> {
        lines
            .iter()
            .map(|l| serde_json::to_value(l).unwrap())
            .collect()
    }

    const TURNS: &[(Role, &str)] = &[
        (Role::System, "Be kind."),
        (Role::User, "I can't sleep."),
        (Role::Assistant, "That sounds hard."),
        (Role::User, "Every night."),
        (Role::Assistant, "Let's look at your evenings."),
    ];

    #[test]
    fn a_pair_keeps_its_turns_in_every_shape() {
        let c = conv(TURNS, Some("Just get over it."), None);
        let f = Format::PromptChosenRejected;
        let trl = json(render(&c, f, Shape::Pair));
        assert_eq!(trl[0]["prompt"].as_array().unwrap().len(), 4);
        assert_eq!(trl[0]["prompt"][0]["role"], "system");
        assert_eq!(
            trl[0]["chosen"][0]["content"],
            "Let's look at your evenings."
        );
        assert_eq!(trl[0]["rejected"][0]["content"], "Just get over it.");
        let lf = json(render(&c, f, Shape::SharegptPair));
        assert_eq!(lf[0]["messages"].as_array().unwrap().len(), 4);
        assert_eq!(lf[0]["chosen"]["role"], "assistant");
        let argilla = json(render(&c, f, Shape::ArgillaPair));
        assert_eq!(argilla[0]["system"], "Be kind.");
        let chosen = argilla[0]["chosen"].as_array().unwrap();
        assert_eq!(chosen.len(), 4, "user, assistant, user, chosen");
        assert_eq!(chosen[0]["role"], "user");
        assert_eq!(argilla[0]["rejected"][3]["content"], "Just get over it.");
    }

    #[test]
    fn kto_from_a_pair_and_from_a_label() {
        let pair = conv(TURNS, Some("Just get over it."), None);
        let f = Format::PromptCompletionLabel;
        let trl = json(render(&pair, f, Shape::Labelled));
        assert_eq!(trl.len(), 2);
        assert_eq!(trl[0]["label"], true);
        assert_eq!(trl[1]["completion"][0]["content"], "Just get over it.");
        let lf = json(render(&pair, f, Shape::SharegptLabelled));
        let msgs = lf[1]["messages"].as_array().unwrap();
        assert_eq!(msgs.last().unwrap()["content"], "Just get over it.");
        assert_eq!(msgs.len(), 5);
        let bad = conv(TURNS, None, Some(false));
        let chatml = json(render(&bad, f, Shape::ChatmlLabelled));
        let prompt = chatml[0]["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("<|im_start|>system\nBe kind.<|im_end|>\n"));
        assert!(prompt.ends_with("Every night.<|im_end|>\n<|im_start|>assistant\n"));
        assert_eq!(
            chatml[0]["completion"],
            "Let's look at your evenings.<|im_end|>"
        );
        assert_eq!(chatml[0]["label"], false);
    }

    #[test]
    fn rows_without_the_shape_give_no_line() {
        let f = Format::PromptChosenRejected;
        assert!(render(&conv(TURNS, None, None), f, Shape::Pair).is_empty());
        let ends_on_user = &TURNS[..4];
        let c = conv(ends_on_user, None, Some(true));
        assert!(render(&c, Format::PromptCompletionLabel, Shape::Labelled).is_empty());
        let answer_only = conv(&[(Role::Assistant, "Hello.")], None, Some(true));
        assert!(render(&answer_only, Format::PromptCompletionLabel, Shape::Labelled).is_empty());
    }
}
