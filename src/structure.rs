//! Conversation structure: what a trainer needs of a conversation's turns. While a record is
//! read, consecutive turns of one role are merged into one (the merge is counted on the place
//! and the object), so roles alternate by construction; then the conversation is checked: it has
//! an assistant turn, its first turn after any system message is the user's, no system message
//! comes later, and it ends on an assistant turn. A row failing a check is kept and queryable,
//! flagged with its [`Flaws`], counted in `idx status` and the `structure` gate of `idx verify`,
//! and never exported for training (SFT or preference stages would train on nothing, and strict
//! chat templates refuse such turns). Plain text rows (continued pretraining) are exempt.
//! Pure functions of the conversation, so a row's flaws are a function of its content.

use serde::{Deserialize, Serialize};

use crate::model::{Conversation, Message, RecordKind, Role};

/// The structure checks a conversation failed, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flaws(u8);

/// One structure check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// No assistant turn at all: nothing to train on.
    NoAssistantTurn,
    /// The first turn after the system message is the assistant's.
    StartsWithAssistant,
    /// A system message after the first turn.
    SystemInside,
    /// The last turn is not the assistant's (and there is an assistant turn before it).
    EndsOnUser,
}

impl Check {
    pub const ALL: [Check; 4] = [
        Check::NoAssistantTurn,
        Check::StartsWithAssistant,
        Check::SystemInside,
        Check::EndsOnUser,
    ];

    fn bit(self) -> u8 {
        match self {
            Check::NoAssistantTurn => 1,
            Check::StartsWithAssistant => 2,
            Check::SystemInside => 4,
            Check::EndsOnUser => 8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Check::NoAssistantTurn => "no_assistant_turn",
            Check::StartsWithAssistant => "starts_with_assistant",
            Check::SystemInside => "system_inside",
            Check::EndsOnUser => "ends_on_user",
        }
    }

    /// What the check means, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Check::NoAssistantTurn => "has no assistant turn",
            Check::StartsWithAssistant => "starts with an assistant turn",
            Check::SystemInside => "has a system message after the first turn",
            Check::EndsOnUser => "ends on a user turn",
        }
    }
}

impl Flaws {
    pub const NONE: Flaws = Flaws(0);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn has(self, check: Check) -> bool {
        self.0 & check.bit() != 0
    }

    fn add(&mut self, check: Check) {
        self.0 |= check.bit();
    }

    /// The failed checks, in a fixed order.
    pub fn checks(self) -> impl Iterator<Item = Check> {
        Check::ALL.into_iter().filter(move |c| self.has(*c))
    }

    /// The failed checks' names, for output.
    pub fn names(self) -> Vec<&'static str> {
        self.checks().map(Check::as_str).collect()
    }
}

/// Merge each run of consecutive turns of one role into one turn (contents joined by a space,
/// blank ones left out); returns how many turns were merged away. Contents must already be
/// canonical (trimmed, whitespace collapsed): the merged content is canonical too.
pub fn merge_turns(messages: &mut Vec<Message>) -> u32 {
    let mut merged = 0u32;
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for m in messages.drain(..) {
        match out.last_mut() {
            Some(last) if last.role == m.role => {
                merged += 1;
                if last.content.is_empty() {
                    last.content = m.content;
                } else if !m.content.is_empty() {
                    last.content.push(' ');
                    last.content.push_str(&m.content);
                }
            }
            _ => out.push(m),
        }
    }
    *messages = out;
    merged
}

/// Merge the turns of every message list of a conversation (see [`merge_turns`]).
pub fn merge_conversation(conversation: &mut Conversation) -> u32 {
    if conversation.kind == RecordKind::Text {
        return 0;
    }
    let mut merged = merge_turns(&mut conversation.messages);
    if let Some(rejected) = conversation.rejected.as_mut() {
        merged += merge_turns(rejected);
    }
    merged
}

/// The checks a conversation fails; none for plain text.
pub fn flaws(conversation: &Conversation) -> Flaws {
    let mut flaws = Flaws::NONE;
    if conversation.kind == RecordKind::Text {
        return flaws;
    }
    let messages = &conversation.messages;
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        flaws.add(Check::NoAssistantTurn);
    }
    if messages.iter().skip(1).any(|m| m.role == Role::System) {
        flaws.add(Check::SystemInside);
    }
    if messages
        .iter()
        .find(|m| m.role != Role::System)
        .is_some_and(|m| m.role == Role::Assistant)
    {
        flaws.add(Check::StartsWithAssistant);
    }
    if !flaws.has(Check::NoAssistantTurn)
        && messages.last().is_some_and(|m| m.role != Role::Assistant)
    {
        flaws.add(Check::EndsOnUser);
    }
    flaws
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(turns: &[(Role, &str)]) -> Conversation {
        Conversation {
            kind: RecordKind::Chatml,
            messages: turns.iter().map(|(r, c)| Message::new(*r, *c)).collect(),
            rejected: None,
            label: None,
        }
    }

    use Role::{Assistant as A, System as S, User as U};

    #[test]
    fn consecutive_turns_of_one_role_merge_and_are_counted() {
        let mut c = conv(&[(U, "a"), (U, ""), (U, "b"), (A, "x"), (A, "y"), (U, "c")]);
        assert_eq!(merge_conversation(&mut c), 3);
        assert_eq!(c, conv(&[(U, "a b"), (A, "x y"), (U, "c")]));
        assert_eq!(merge_conversation(&mut c), 0, "merging is idempotent");
    }

    #[test]
    fn each_check_flags_what_it_names() {
        assert!(flaws(&conv(&[(S, "s"), (U, "q"), (A, "a")])).is_empty());
        assert!(flaws(&conv(&[(U, "q"), (A, "a"), (U, "q2"), (A, "a2")])).is_empty());
        let f = |t: &[(Role, &str)]| flaws(&conv(t)).names();
        assert_eq!(f(&[(U, "q"), (U, "q2")]), ["no_assistant_turn"]);
        assert_eq!(f(&[(U, "q"), (A, "a"), (U, "thanks")]), ["ends_on_user"]);
        assert_eq!(
            f(&[(A, "hello"), (U, "q"), (A, "a")]),
            ["starts_with_assistant"]
        );
        assert_eq!(f(&[(U, "q"), (S, "be kind"), (A, "a")]), ["system_inside"]);
        assert_eq!(
            f(&[(S, "s"), (A, "a"), (U, "q")]),
            ["starts_with_assistant", "ends_on_user"]
        );
        let text = Conversation {
            kind: RecordKind::Text,
            ..conv(&[(A, "just text")])
        };
        assert!(flaws(&text).is_empty());
    }
}
