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
            m.content = canonical_text(&fixed);
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
