//! Placeholders and their numbers: each distinct value of a kind in a row gets its own
//! (`[NAME]`, `[NAME_2]`, …), so a row's count of distinct values is read back from its text.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use super::patterns::{ascii_digits, digit_string};
use super::PiiKind;

/// Every placeholder in a text with where it stands, as its kind and number (`[NAME]` is 1,
/// `[NAME_2]` is 2).
fn placeholder_matches(text: &str) -> impl Iterator<Item = (PiiKind, u32, regex::Match<'_>)> + '_ {
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r"\[(EMAIL|PHONE|SSN|CARD|IP|URL|ADDRESS|DATE_OF_BIRTH|NAME)(?:_([1-9][0-9]{0,5}))?\]",
        )
        .expect("the placeholder pattern compiles")
    });
    let candidates = text.contains('[');
    RE.captures_iter(if candidates { text } else { "" })
        .filter_map(|c| {
            let tag = c.get(1)?.as_str();
            let kind = PiiKind::ALL
                .into_iter()
                .find(|k| &k.placeholder()[1..k.placeholder().len() - 1] == tag)?;
            let n = c.get(2).map_or(Some(1), |n| n.as_str().parse().ok())?;
            Some((kind, n, c.get(0)?))
        })
}

/// Every placeholder in a text, as its kind and number.
pub(super) fn placeholders_in(text: &str) -> impl Iterator<Item = (PiiKind, u32)> + '_ {
    placeholder_matches(text).map(|(kind, n, _)| (kind, n))
}

/// The values a redaction replaced, read by aligning the original text with its redacted form
/// (what lies in the original where the redacted text has a placeholder).
pub(super) fn replaced_values(original: &str, redacted: &str) -> Vec<(PiiKind, String)> {
    let mut out = Vec::new();
    let (mut at_red, mut at_orig) = (0, 0);
    let found: Vec<(PiiKind, regex::Match<'_>)> = placeholder_matches(redacted)
        .map(|(kind, _, m)| (kind, m))
        .collect();
    for (i, (kind, m)) in found.iter().enumerate() {
        let literal = &redacted[at_red..m.start()];
        let Some(pos) = original[at_orig..].find(literal) else {
            break;
        };
        let start = at_orig + pos + literal.len();
        // The value runs to where the next literal stretch starts again.
        let next_literal = match found.get(i + 1) {
            Some((_, n)) => &redacted[m.end()..n.start()],
            None => &redacted[m.end()..],
        };
        let end = if next_literal.is_empty() {
            original.len()
        } else {
            original[start..]
                .find(next_literal)
                .map_or(original.len(), |p| start + p)
        };
        out.push((*kind, original[start..end].to_string()));
        at_red = m.end();
        at_orig = end;
    }
    out
}

/// Which placeholder each distinct value of a row gets: values are numbered per kind in the
/// order they are met, so a row's number of distinct values can be read back from its text and
/// a name used ten times counts once.
#[derive(Debug, Default)]
pub(super) struct Numbering {
    values: HashMap<(PiiKind, String), u32>,
    last: BTreeMap<PiiKind, u32>,
}

impl Numbering {
    /// The number of `value` (a new one for a value not met before).
    pub(super) fn number(&mut self, kind: PiiKind, value: &str) -> u32 {
        let key = (kind, value_identity(kind, value));
        if let Some(&n) = self.values.get(&key) {
            return n;
        }
        let last = self.last.entry(kind).or_default();
        *last += 1;
        self.values.insert(key, *last);
        *last
    }

    /// The number `value` already has, if any.
    pub(super) fn existing(&self, kind: PiiKind, value: &str) -> Option<u32> {
        self.values
            .get(&(kind, value_identity(kind, value)))
            .copied()
    }

    /// Placeholders already in the text (from upstream or an earlier redaction) keep their
    /// numbers: new values are numbered after them.
    pub(super) fn reserve(&mut self, text: &str) {
        for (kind, n) in placeholders_in(text) {
            let last = self.last.entry(kind).or_default();
            *last = (*last).max(n);
        }
    }
}

/// What makes two values of a kind the same value: digits by value for numbers (so
/// "415-555-0199" and "(415) 555 0199" are one phone), letters without case for the rest.
pub(super) fn value_identity(kind: PiiKind, value: &str) -> String {
    match kind {
        PiiKind::Phone | PiiKind::Card | PiiKind::Ssn => digit_string(value),
        PiiKind::Ip => ascii_digits(value).to_lowercase(),
        _ => value.to_lowercase(),
    }
}
