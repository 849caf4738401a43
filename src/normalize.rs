//! Canonical text: encoding repair first ([`crate::repair`]), then Unicode NFKC, every whitespace run (newlines included) collapsed to one space,
//! trimmed; and the case-folded form used for exact-duplicate keys and SimHash. Pure functions,
//! idempotent by construction (tested), with an ASCII fast path because most input is ASCII.

use unicode_normalization::UnicodeNormalization;

use crate::model::{Conversation, Message};
use crate::repair::{repair_text, Repairs};

/// NFKC plus whitespace collapsing and trimming.
pub fn canonical_text(raw: &str) -> String {
    if raw.is_ascii() {
        return collapse_whitespace(raw);
    }
    let nfkc: String = raw.nfkc().collect();
    collapse_whitespace(&nfkc)
}

/// Unicode default case folding of canonical text, renormalised (NFKC_Casefold-like), so that
/// case and compatibility variants fold to one string.
pub fn folded_text(canonical: &str) -> String {
    if canonical.is_ascii() {
        return canonical.to_ascii_lowercase();
    }
    let folded = caseless::default_case_fold_str(canonical);
    if folded.is_ascii() {
        return folded;
    }
    // Folding can produce sequences that are not in NFKC (e.g. U+0130); renormalise once.
    let renormalised: String = folded.nfkc().collect();
    collapse_whitespace(&renormalised)
}

fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Repair broken encodings (see [`crate::repair`]) and canonicalise every message of a
/// conversation in place; roles are kept as they are. Returns what was repaired.
pub fn canonicalize(conversation: &mut Conversation) -> Repairs {
    let mut repairs = Repairs::default();
    let mut canon = |messages: &mut Vec<Message>| {
        for m in messages.iter_mut() {
            let (fixed, r) = repair_text(&m.content);
            repairs.add(r);
            let mut text = canonical_text(&fixed);
            // NFKC can complete a mojibake pair (`Â` + GREEK ANO TELEIA → `Â·`): repair again
            // until nothing changes, so canonical text is a fixed point (the property tests
            // check it).
            for _ in 0..2 {
                let (again, r) = repair_text(&text);
                if r.total() == 0 {
                    break;
                }
                repairs.add(r);
                text = canonical_text(&again);
            }
            m.content = text;
        }
    };
    canon(&mut conversation.messages);
    if let Some(rejected) = conversation.rejected.as_mut() {
        canon(rejected);
    }
    repairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the property tests): NFKC turned `Â` + GREEK ANO TELEIA into `Â·`,
    /// mojibake that only a second canonicalisation repaired.
    #[test]
    fn canonical_text_is_a_fixed_point_when_nfkc_completes_mojibake() {
        let mut c = Conversation {
            kind: crate::model::RecordKind::Text,
            messages: vec![Message::new(crate::model::Role::User, "\u{C2}\u{387}")],
            rejected: None,
            label: None,
        };
        canonicalize(&mut c);
        let once = c.messages[0].content.clone();
        canonicalize(&mut c);
        assert_eq!(c.messages[0].content, once);
    }

    #[test]
    fn collapses_whitespace_and_newlines() {
        assert_eq!(canonical_text("  a\r\n\tb   c \n"), "a b c");
    }

    #[test]
    fn nfkc_maps_full_width_and_ligatures() {
        assert_eq!(canonical_text("Ｈｅｌｌｏ ﬁne"), "Hello fine");
        assert_eq!(canonical_text("a\u{00A0}b"), "a b");
    }

    #[test]
    fn folding_is_case_insensitive_and_idempotent() {
        let samples = ["Hello WORLD", "Straße", "İstanbul", "ΣΊΣΥΦΟΣ", "Ｆｕｌｌ"];
        for s in samples {
            let c = canonical_text(s);
            let f = folded_text(&c);
            assert_eq!(folded_text(&f), f, "fold not idempotent for {s}");
            assert_eq!(canonical_text(&c), c, "canonical not idempotent for {s}");
        }
        assert_eq!(folded_text("Straße"), folded_text("STRASSE"));
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(canonical_text("Ich fühle mich müde"), "Ich fühle mich müde");
        assert_eq!(canonical_text("我今天很难过"), "我今天很难过");
    }
}
