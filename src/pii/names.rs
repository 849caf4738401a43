//! Person names: the word lists a candidate is judged by, and the rule that decides whether
//! capitalised words found where a name could stand ("I'm …", "Hi …,", "my name is …", "my
//! friend …", a signature) are a person's name.
//!
//! A word is a name because it is one, not because of where it stands. The weaker the context,
//! the more the word itself must show: after "my name is" or "Dear" any capitalised word that is
//! not a known non-name will do; a vocative greeting or a relation ("my friend …") needs a given
//! name from the list; "I'm", "It's", "Thanks," and a closing dash need a given name that is not
//! also a common English word ("I'm Will-ing" no, "I am Legend" no, "I'm Priya" yes). A second
//! word is part of the name only when it is itself a surname or a given name.
//!
//! The lists are data, compiled in from `data/names/` and loaded once into hash sets: given
//! names from the 1990 U.S. Census, surnames from the 2000 U.S. Census (both public domain),
//! given names that English text writes in lower case (derived, see `data/names/README.md`),
//! and hand-curated words that are never names where a name could stand (feelings, function
//! words, interjections, months, places, titles).

use std::collections::HashSet;
use std::sync::LazyLock;

struct Lists {
    given: HashSet<&'static str>,
    surnames: HashSet<&'static str>,
    common_given: HashSet<&'static str>,
    not_names: HashSet<&'static str>,
}

fn load(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

static LISTS: LazyLock<Lists> = LazyLock::new(|| Lists {
    given: load(include_str!("../../data/names/given.txt")),
    surnames: load(include_str!("../../data/names/surnames.txt")),
    common_given: load(include_str!("../../data/names/common_given.txt")),
    not_names: load(include_str!("../../data/names/not_names.txt")),
});

/// Where candidate words stand, as the detection pattern found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The writer says it is a name: "my name is …", "call me …", "signed …".
    Introduction,
    /// A name before a credential ("Laura Cassity, LMSW"): the whole span is taken.
    Credential,
    /// "Dear …," at the head of a letter.
    Address,
    /// A vocative greeting: "Hi …," or "Hello …!" with nothing run on after the name.
    Greeting,
    /// "my friend …", "this guy, …".
    Relation,
    /// "I'm …", "I am …", "It's …", "This is …", "Thanks, …", a closing "— …".
    Weak,
}

/// What the rule decided about a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// How many of the candidate words are the name (1 or more).
    pub words: usize,
    /// Sure enough to redact the name wherever else the conversation uses it.
    pub confident: bool,
}

/// A known given name (title case, as written in a name).
pub fn is_given(word: &str) -> bool {
    LISTS.given.contains(word)
}

/// A given name that is first a common English word ("Will", "Hope", "May", "Mark").
fn is_common(word: &str) -> bool {
    LISTS.common_given.contains(word)
}

/// A word that is never a name where a name could stand ("Tired", "Yeah", "Texas", "June").
pub fn is_not_name(word: &str) -> bool {
    LISTS.not_names.contains(word)
}

/// A given name that is nothing else: the strongest evidence a word alone can give.
fn is_plain_given(word: &str) -> bool {
    is_given(word) && !is_common(word) && !is_not_name(word)
}

/// Judge candidate words (in order; capitalised, or one word in lower case) found in `context`;
/// `None` when they are not a name. A word in lower case ("my name is juan") is judged in title
/// case and must be a plain given name.
pub fn judge(context: Context, words: &[&str], lowercase: bool) -> Option<Judgement> {
    let first = *words.first()?;
    let titled;
    let first = if lowercase {
        let mut chars = first.chars();
        titled = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect::<String>())
            .unwrap_or_default();
        if !is_plain_given(&titled) || words.len() > 1 {
            return None;
        }
        titled.as_str()
    } else {
        first
    };
    if is_not_name(first) {
        return None;
    }
    let plain = is_plain_given(first);
    let confident = match context {
        Context::Introduction | Context::Credential => true,
        Context::Address => plain,
        Context::Greeting | Context::Relation if is_given(first) => plain,
        Context::Weak if plain => true,
        Context::Greeting | Context::Relation | Context::Weak => return None,
    };
    let words = if context == Context::Credential {
        words.len()
    } else {
        1 + words[1..]
            .iter()
            .take_while(|w| !is_not_name(w) && (LISTS.surnames.contains(*w) || is_plain_given(w)))
            .count()
    };
    Some(Judgement { words, confident })
}

/// Where a name found by a name pattern ends (its first words may be all of it, "Hi Sarah
/// How" is "Sarah"), and whether it is confident; `None` when it is not a name. The context
/// is read from the pattern's marker groups and judged by `judge`; names on the allow-list
/// (lower case, whole and by word) are not redacted.
pub(super) fn name_end(
    allow: &[String],
    text: &str,
    caps: &regex::Captures<'_>,
    v: regex::Match<'_>,
) -> Option<(usize, bool)> {
    let after = caps.name("after").map(|m| m.as_str());
    // No name is followed by `'t` or `'s` ("Hello! Don't", "Hi Mom's").
    if after.is_some_and(|a| a.starts_with(['\'', '’'])) {
        return None;
    }
    let context = if caps.name("credential").is_some() {
        Context::Credential
    } else if caps.name("intro").is_some() {
        Context::Introduction
    } else if caps.name("third").is_some() {
        // "my sister's name is …" says it as plainly as "my name is …".
        Context::Introduction
    } else if caps.name("relation").is_some() {
        // "my friend …": someone the writer knows; a given name is needed. (Third persons —
        // "his wife …", "her name is …" — are left alone: in conversation they are mostly
        // public figures under discussion.)
        Context::Relation
    } else if let Some(greet) = caps.name("greet") {
        // A greeting names someone only as a vocative that opens a sentence ("Hi Georgia,
        // ..."), not when it runs into one ("Hi, Depression can look different") or is a
        // title ("they recorded Hey Jude").
        let before = text[..greet.start()].trim_end();
        let quoted =
            before.ends_with(['\'', '"', '‘', '“']) && text[v.end()..].starts_with([',', '!', '?']);
        let opens =
            quoted || before.is_empty() || before.ends_with(['.', '!', '?', ':', ';', ')', '\n']);
        if after.is_some() || !opens {
            return None;
        }
        if greet.as_str().eq_ignore_ascii_case("dear") {
            Context::Address
        } else {
            Context::Greeting
        }
    } else {
        // After "I'm" a name ends its clause ("I'm Rebecca and you?", "I'm Marcus, 34"):
        // "I'm Keen to know" is not an introduction. "It's"/"This is" introduce a person
        // only on the phone ("it's Sarah here", "this is Tom speaking"); otherwise they
        // name what is talked about ("It's Tom Hanks and he can do anything").
        let introduces = |a: &str| matches!(a.trim(), "here" | "from" | "speaking" | "again");
        if caps.name("its").is_some() && !after.is_some_and(introduces) {
            return None;
        }
        if caps.name("im").is_some()
            && after.is_some_and(|a| !introduces(a) && a.trim() != "and" && a.trim() != "by")
        {
            return None;
        }
        Context::Weak
    };
    // A name written in lower case (looked for only after "my name is", "call me", "I'm"
    // and a greeting: "my name is juan", "hi arleen i am cody") counts only as a plain
    // given name.
    let lowercase = v.as_str().starts_with(char::is_lowercase);
    let words: Vec<&str> = v.as_str().split(' ').collect();
    let judged = judge(context, &words, lowercase)?;
    let kept = &words[..judged.words.min(words.len())];
    let end = v.start() + kept.iter().map(|w| w.len()).sum::<usize>() + kept.len() - 1;
    let lower = v.as_str()[..end - v.start()].to_lowercase();
    let first = kept[0].to_lowercase();
    if allow.iter().any(|a| *a == lower || *a == first) {
        return None;
    }
    Some((end, judged.confident))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_are_loaded_and_hold_what_they_should() {
        assert!(LISTS.given.len() > 5000, "{}", LISTS.given.len());
        assert!(LISTS.surnames.len() >= 20000);
        for name in ["Sarah", "Marcus", "Priya", "Jennifer"] {
            assert!(is_plain_given(name), "{name}");
        }
        for word in ["Will", "Hope", "May", "Mark"] {
            assert!(is_given(word) && !is_plain_given(word), "{word}");
        }
        for word in ["Yeah", "Tired", "Texas", "June", "Legend", "Anyway"] {
            assert!(is_not_name(word), "{word}");
        }
    }

    #[test]
    fn the_weaker_the_context_the_more_the_word_must_show() {
        let j = |c, w: &[&str]| judge(c, w, false).map(|j| (j.words, j.confident));
        assert_eq!(j(Context::Weak, &["Priya"]), Some((1, true)));
        assert_eq!(j(Context::Weak, &["Will"]), None);
        assert_eq!(j(Context::Weak, &["Groot"]), None);
        assert_eq!(j(Context::Weak, &["Legend"]), None);
        assert_eq!(j(Context::Greeting, &["Will"]), Some((1, false)));
        assert_eq!(j(Context::Greeting, &["Gryffindor"]), None);
        assert_eq!(j(Context::Introduction, &["Gryffindor"]), Some((1, true)));
        assert_eq!(j(Context::Address, &["Concern", "Mom"]), Some((1, false)));
        assert_eq!(
            j(Context::Introduction, &["Sarah", "Collins"]),
            Some((2, true))
        );
        assert_eq!(j(Context::Greeting, &["Sarah", "How"]), Some((1, true)));
        assert_eq!(j(Context::Introduction, &["Yeah"]), None);
        let lower = |c, w: &[&str]| judge(c, w, true).map(|j| (j.words, j.confident));
        assert_eq!(lower(Context::Introduction, &["juan"]), Some((1, true)));
        assert_eq!(lower(Context::Weak, &["cody"]), Some((1, true)));
        assert_eq!(lower(Context::Weak, &["going"]), None);
        assert_eq!(lower(Context::Weak, &["will"]), None);
    }
}
