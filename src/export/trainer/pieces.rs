//! Long sessions in a stage with a context length: a conversation longer than the context is
//! cut at turn boundaries into pieces that fit — the system prompt repeated in each, a few turns
//! of the previous piece carried over for context, every piece starting on a user turn and
//! ending where the next user turn begins — and never inside a message. A piece that still does
//! not fit (one exchange, or one message, longer than the context) is kept whole and reported.
//! A pure function of the conversation: the same row always gives the same pieces.

use crate::fingerprint::count_tokens;
use crate::model::{Conversation, Message, Role};

/// Tokens a chat template adds around each message (`<|im_start|>role\n … <|im_end|>\n` is 5
/// in ChatML); counted so that a piece fits once templated.
pub(super) const TEMPLATE_TOKENS_PER_MESSAGE: u64 = 5;

/// One piece of a session.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Piece {
    pub conversation: Conversation,
    /// Content tokens plus the template allowance.
    pub tokens: u64,
    /// Longer than the context even so (an exchange or message that cannot be cut).
    pub oversized: bool,
}

/// Tokens of one message as a trainer sees it.
fn cost(m: &Message) -> u64 {
    count_tokens(std::iter::once(m)) + TEMPLATE_TOKENS_PER_MESSAGE
}

/// Tokens of a conversation as a trainer sees it (every message with its template allowance).
pub(super) fn templated_tokens(c: &Conversation) -> u64 {
    c.all_messages().map(cost).sum()
}

/// The pieces of `c` for a context of `context` tokens, carrying at least `overlap` turns of
/// the previous piece (extended back to a user turn); `None` when it fits whole.
pub(super) fn split(c: &Conversation, context: u64, overlap: usize) -> Option<Vec<Piece>> {
    if c.rejected.is_some() || c.label.is_some() {
        return None;
    }
    let costs: Vec<u64> = c.messages.iter().map(cost).collect();
    if costs.iter().sum::<u64>() <= context {
        return None;
    }
    let (system, body_start) = match c.messages.first() {
        Some(m) if m.role == Role::System => (Some(m), 1),
        _ => (None, 0),
    };
    let base = system.map_or(0, |_| costs[0]);
    // Exchanges: a user turn and what follows it up to the next user turn (the text before the
    // first user turn, if any, is an exchange of its own). Ranges over `c.messages`.
    let mut exchanges: Vec<std::ops::Range<usize>> = Vec::new();
    for i in body_start..c.messages.len() {
        let starts = c.messages[i].role == Role::User || exchanges.is_empty();
        match exchanges.last_mut() {
            Some(last) if !starts => last.end = i + 1,
            _ => exchanges.push(i..i + 1),
        }
    }
    if exchanges.len() < 2 {
        return None;
    }
    let weight = |r: &std::ops::Range<usize>| costs[r.clone()].iter().sum::<u64>();
    let w: Vec<u64> = exchanges.iter().map(weight).collect();
    let mut pieces = Vec::new();
    let mut next = 0;
    while next < exchanges.len() {
        let mut start = next;
        if !pieces.is_empty() {
            // Carry back whole exchanges until `overlap` turns are covered.
            let mut turns = 0;
            while start > 0 && turns < overlap {
                start -= 1;
                turns += exchanges[start].len();
            }
        }
        let span = |a: usize, b: usize| base + w[a..b].iter().sum::<u64>();
        // The overlap gives way to the new turns when both do not fit.
        while start < next && span(start, next + 1) > context {
            start += 1;
        }
        let mut end = next + 1;
        while end < exchanges.len() && span(start, end + 1) <= context {
            end += 1;
        }
        let mut messages: Vec<Message> = system.into_iter().cloned().collect();
        messages.extend(
            c.messages[exchanges[start].start..exchanges[end - 1].end]
                .iter()
                .cloned(),
        );
        let tokens = span(start, end);
        pieces.push(Piece {
            conversation: Conversation {
                kind: c.kind,
                messages,
                rejected: None,
                label: None,
            },
            tokens,
            oversized: tokens > context,
        });
        next = end;
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecordKind;
    use proptest::prelude::*;

    fn conversation(system: bool, turns: &[usize]) -> Conversation {
        let mut messages = Vec::new();
        if system {
            messages.push(Message::new(Role::System, "You are a calm counsellor."));
        }
        for (i, &words) in turns.iter().enumerate() {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            let text = (0..words)
                .map(|w| format!("word{}", (i * 31 + w) % 97))
                .collect::<Vec<_>>()
                .join(" ");
            messages.push(Message::new(role, text.as_str()));
        }
        Conversation {
            kind: RecordKind::Chatml,
            messages,
            rejected: None,
            label: None,
        }
    }

    #[test]
    fn a_session_that_fits_is_not_split() {
        let c = conversation(true, &[10, 10, 10, 10]);
        assert!(split(&c, 10_000, 2).is_none());
    }

    #[test]
    fn a_long_session_is_cut_between_exchanges_with_the_system_prompt_repeated() {
        let c = conversation(true, &[40; 24]);
        let total: u64 = c.messages.iter().map(cost).sum();
        let pieces = split(&c, total / 3, 2).unwrap();
        assert!(pieces.len() >= 3, "{}", pieces.len());
        for p in &pieces {
            assert!(!p.oversized && p.tokens <= total / 3);
            let m = &p.conversation.messages;
            assert_eq!(m[0].role, Role::System);
            assert_eq!(m[1].role, Role::User);
            assert_eq!(m.last().unwrap().role, Role::Assistant);
        }
        // One exchange of overlap: each piece starts with the previous piece's last exchange.
        for w in pieces.windows(2) {
            let a = &w[0].conversation.messages;
            let b = &w[1].conversation.messages;
            assert_eq!(a[a.len() - 2..], b[1..3]);
        }
    }

    #[test]
    fn a_message_longer_than_the_context_is_kept_whole_and_reported() {
        let c = conversation(false, &[5, 5, 400, 5, 5, 5]);
        let pieces = split(&c, 120, 0).unwrap();
        let oversized: Vec<&Piece> = pieces.iter().filter(|p| p.oversized).collect();
        assert_eq!(oversized.len(), 1);
        assert!(oversized[0]
            .conversation
            .messages
            .iter()
            .any(|m| m.content.split(' ').count() == 400));
    }

    proptest! {
        /// Every message of the session is in some piece, in order, none cut; pieces start on a
        /// user turn; only a piece of a single exchange can be oversized.
        #[test]
        fn pieces_cover_the_session_in_order(
            turns in proptest::collection::vec(1usize..120, 2..30),
            system in any::<bool>(),
            context in 20u64..600,
            overlap in 0usize..5,
        ) {
            let c = conversation(system, &turns);
            let Some(pieces) = split(&c, context, overlap) else {
                // It fits, or has no turn boundary to cut at (a single exchange).
                let users = c.messages.iter().filter(|m| m.role == Role::User).count();
                prop_assert!(templated_tokens(&c) <= context || users < 2);
                return Ok(());
            };
            let body = &c.messages[usize::from(system)..];
            let mut covered = 0usize;
            for p in &pieces {
                let m = &p.conversation.messages;
                let own = &m[usize::from(system)..];
                prop_assert_eq!(own[0].role, Role::User);
                // The piece is a contiguous run of the body reaching past what was covered.
                let at = body.windows(own.len()).position(|w| w == own);
                prop_assert!(at.is_some());
                let at = at.unwrap();
                prop_assert!(at <= covered && at + own.len() > covered);
                covered = at + own.len();
                if p.oversized {
                    let users = own.iter().filter(|m| m.role == Role::User).count();
                    prop_assert_eq!(users, 1);
                }
            }
            prop_assert_eq!(covered, body.len());
        }
    }
}
