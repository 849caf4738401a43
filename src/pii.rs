//! PII detection and redaction, applied to canonical text before anything is hashed, so exact
//! and near-duplicate detection, search and export only ever see redacted text.
//!
//! Detectors (one precompiled `RegexSet` decides in one pass which of them can match at all; most
//! messages match none and cost that single pass): e-mail addresses; phone numbers in
//! international (`+CC …`), North American and common national forms; US SSNs (valid area,
//! group and serial); payment card numbers (13-19 digits, Luhn-checked); IPv4 and IPv6 addresses
//! (parsed, so times and version numbers are not taken); URLs carrying a query string, a user
//! handle (`/@name`, `/u/name`, `~name`) or a social-profile path; street addresses (number,
//! capitalised street name, street type); dates of birth (a date after "born", "DOB", "date of
//! birth", "birthday"); person names introduced in context ("my name is …", "I'm …", "call me
//! …", greetings, sign-offs and signatures), except names on the configured allow-list.
//!
//! A match is replaced by a typed placeholder (`[EMAIL]`, `[PHONE]`, …). The row's PII status and
//! kinds are then read back from the placeholders in the redacted text, so they are a function of
//! the row's content (two spellings of one row can never disagree), and redacting twice changes
//! nothing. Nothing here touches storage.

use std::collections::BTreeMap;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use crate::model::Conversation;

/// The kinds of PII idx detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Ssn,
    Card,
    Ip,
    Url,
    Address,
    DateOfBirth,
    Name,
}

impl PiiKind {
    pub const ALL: [PiiKind; 9] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ssn,
        PiiKind::Card,
        PiiKind::Ip,
        PiiKind::Url,
        PiiKind::Address,
        PiiKind::DateOfBirth,
        PiiKind::Name,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ssn => "ssn",
            PiiKind::Card => "card",
            PiiKind::Ip => "ip",
            PiiKind::Url => "url",
            PiiKind::Address => "address",
            PiiKind::DateOfBirth => "date_of_birth",
            PiiKind::Name => "name",
        }
    }

    /// The placeholder that replaces a match.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::Card => "[CARD]",
            PiiKind::Ip => "[IP]",
            PiiKind::Url => "[URL]",
            PiiKind::Address => "[ADDRESS]",
            PiiKind::DateOfBirth => "[DATE_OF_BIRTH]",
            PiiKind::Name => "[NAME]",
        }
    }

    pub fn parse(s: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for PiiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What privacy did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiStatus {
    /// Nothing found.
    Clean,
    /// PII replaced by placeholders; the row is usable.
    Redacted,
    /// High-risk PII or too many detections: kept (redacted) for audit, never exported.
    Excluded,
}

impl PiiStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiStatus::Clean => "clean",
            PiiStatus::Redacted => "redacted",
            PiiStatus::Excluded => "excluded",
        }
    }
}

/// A row's PII audit record: its status and how many placeholders of each kind it holds (never
/// the values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiRecord {
    pub status: PiiStatus,
    pub kinds: Vec<(PiiKind, u32)>,
}

impl PiiRecord {
    pub fn clean() -> PiiRecord {
        PiiRecord {
            status: PiiStatus::Clean,
            kinds: Vec::new(),
        }
    }
}

/// `[pii]` in `configs/idx.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Detect and redact at all (off only for data already scrubbed upstream).
    pub enabled: bool,
    /// Kinds whose presence excludes the whole row.
    pub exclude_kinds: Vec<PiiKind>,
    /// A row with more detections than this is excluded.
    pub max_detections: u32,
    /// Names never redacted (public figures the data is about), matched case-insensitively
    /// against the detected name and each of its words.
    pub allow_names: Vec<String>,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            enabled: true,
            exclude_kinds: vec![PiiKind::Ssn, PiiKind::Card],
            max_detections: 20,
            allow_names: vec!["Tim Fletcher".to_string()],
        }
    }
}

/// Detection patterns, by kind, in the order they are applied (structured kinds first, so a card
/// number is not taken for a phone number).
const PATTERNS: &[(PiiKind, &str)] = &[
    (
        PiiKind::Email,
        r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b",
    ),
    (PiiKind::Url, r"(?i)\b(?:https?://|www\.)[^\s<>()\[\]]+"),
    (PiiKind::Card, r"\b\d(?:[ -]?\d){12,18}\b"),
    (PiiKind::Ssn, r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"),
    (
        PiiKind::Ip,
        r"(?i)\b(?:\d{1,3}\.){3}\d{1,3}\b|(?:\b[0-9a-f]{1,4}|\B)(?::[0-9a-f]{0,4}){2,7}\b",
    ),
    (
        PiiKind::Phone,
        r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b|\+\d{7,14}\b|\b0\d{9,10}\b|\b0\d{4}[ -]?\d{6}\b|\b\d{3}\.\d{3}\.\d{4}\b",
    ),
    (
        PiiKind::DateOfBirth,
        r"(?i)\b(?:born(?: on| in)?|date of birth(?: is)?|d\.?o\.?b\.?|birthday(?: is)?(?: on)?)[:\s]+(?P<v>\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}|(?:\d{1,2}(?:st|nd|rd|th)? )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?: \d{1,2}(?:st|nd|rd|th)?)?,? \d{4})",
    ),
    (
        PiiKind::Address,
        r"\b\d{1,5}(?: [A-Z][a-zA-Z]+){1,3} (?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|close|crescent)\b\.?(?:,? (?i:apt|apartment|unit|suite|#) ?\w+)?",
    ),
    (
        PiiKind::Name,
        r"(?:\b(?i:my name is|my name's|name is|i am|i'm|im|call me|this is|it's|signed)|\b(?:Hi|Hello|Hey|Dear|Thanks|Thank you|Regards|Cheers|Best|Sincerely|Love|Yours)[,!]?|[-—–] ?)[ ,]*(?P<v>[A-Z][a-z]+(?: [A-Z][a-z]+)?)\b",
    ),
];

/// Capitalised words that follow "I'm", "Hi" or "Thanks" without being names.
const NOT_NAMES: &[&str] = &[
    "A",
    "About",
    "Again",
    "All",
    "Also",
    "Always",
    "Am",
    "An",
    "And",
    "Anxious",
    "Any",
    "Are",
    "As",
    "At",
    "Back",
    "Because",
    "Been",
    "Being",
    "Better",
    "But",
    "By",
    "Can",
    "Confused",
    "Could",
    "Depressed",
    "Did",
    "Do",
    "Doing",
    "Done",
    "Everyone",
    "Everybody",
    "Exhausted",
    "Feeling",
    "Fine",
    "For",
    "From",
    "Getting",
    "Glad",
    "Going",
    "Good",
    "Great",
    "Guys",
    "Happy",
    "Hard",
    "Having",
    "Here",
    "Hey",
    "Hi",
    "Honestly",
    "Hope",
    "How",
    "I",
    "If",
    "In",
    "Is",
    "It",
    "Just",
    "Kind",
    "Lonely",
    "Looking",
    "Lost",
    "Mad",
    "Maybe",
    "Me",
    "More",
    "Much",
    "My",
    "New",
    "No",
    "Not",
    "Now",
    "Of",
    "Ok",
    "Okay",
    "On",
    "Only",
    "Or",
    "Our",
    "Over",
    "Please",
    "Pretty",
    "Really",
    "Regards",
    "Sad",
    "Scared",
    "Should",
    "So",
    "Sorry",
    "Still",
    "Stressed",
    "Struggling",
    "Such",
    "Sure",
    "Thank",
    "Thanks",
    "That",
    "The",
    "Their",
    "Then",
    "There",
    "These",
    "They",
    "This",
    "Tired",
    "To",
    "Today",
    "Too",
    "Trying",
    "Up",
    "Upset",
    "Very",
    "Was",
    "We",
    "Well",
    "What",
    "When",
    "Where",
    "Which",
    "Who",
    "Why",
    "Will",
    "With",
    "Worried",
    "Would",
    "Yes",
    "You",
    "Your",
    "Afraid",
    "Alone",
    "Angry",
    "Ashamed",
    "Bored",
    "Broke",
    "Concerned",
    "Curious",
    "Desperate",
    "Embarrassed",
    "Excited",
    "Frustrated",
    "Grateful",
    "Hopeless",
    "Hurt",
    "Jealous",
    "Nervous",
    "Overwhelmed",
    "Proud",
    "Ready",
    "Relieved",
    "Terrified",
    "Thinking",
    "Unsure",
    "Weak",
    "Worthless",
    "Morning",
    "Afternoon",
    "Evening",
    "Night",
    "Everyone",
    "Team",
    "Friend",
    "Friends",
    "Again",
    "Though",
    "Dr",
    "Mr",
    "Mrs",
    "Ms",
];

/// A compiled redactor: the patterns, the prefilter and the policy.
#[derive(Debug, Clone)]
pub struct Redactor {
    config: PiiConfig,
    prefilter: RegexSet,
    patterns: Vec<(PiiKind, Regex)>,
    allow: Vec<String>,
}

/// What redacting one text found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub kinds: BTreeMap<PiiKind, u32>,
    /// The names found in context (used to redact their other mentions in the conversation).
    pub names: Vec<String>,
}

impl Redactor {
    pub fn new(config: &PiiConfig) -> Redactor {
        let sources: Vec<&str> = PATTERNS.iter().map(|(_, p)| *p).collect();
        Redactor {
            config: config.clone(),
            prefilter: RegexSet::new(&sources).expect("built-in PII patterns compile"),
            patterns: PATTERNS
                .iter()
                .map(|(k, p)| (*k, Regex::new(p).expect("built-in PII patterns compile")))
                .collect(),
            allow: config
                .allow_names
                .iter()
                .flat_map(|n| {
                    let n = n.to_lowercase();
                    let mut v: Vec<String> = n.split_whitespace().map(String::from).collect();
                    v.push(n);
                    v
                })
                .collect(),
        }
    }

    pub fn config(&self) -> &PiiConfig {
        &self.config
    }

    /// Redact one text; returns the redacted text and what was found. Text without any match
    /// costs one prefilter pass and is returned as is.
    pub fn redact(&self, text: &str) -> (String, Found) {
        let mut found = Found::default();
        if !self.config.enabled {
            return (text.to_string(), found);
        }
        let hits = self.prefilter.matches(text);
        if !hits.matched_any() {
            return (text.to_string(), found);
        }
        let mut out = text.to_string();
        for (i, (kind, re)) in self.patterns.iter().enumerate() {
            if !hits.matched(i) {
                continue;
            }
            let (next, n) = self.apply(*kind, re, &out, &mut found.names);
            if n > 0 {
                *found.kinds.entry(*kind).or_default() += n;
                out = next;
            }
        }
        (out, found)
    }

    fn apply(
        &self,
        kind: PiiKind,
        re: &Regex,
        text: &str,
        names: &mut Vec<String>,
    ) -> (String, u32) {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut n = 0;
        for caps in re.captures_iter(text) {
            let whole = caps.get(0).expect("group 0 always matches");
            // The sensitive part: the named group `v` when the pattern has context around it.
            let m = caps.name("v").unwrap_or(whole);
            if !self.accept(kind, m.as_str(), text, m.start(), m.end()) {
                continue;
            }
            out.push_str(&text[last..m.start()]);
            out.push_str(kind.placeholder());
            last = m.end();
            n += 1;
            if kind == PiiKind::Name {
                names.push(m.as_str().to_string());
            }
        }
        out.push_str(&text[last..]);
        (out, n)
    }

    /// Checks a pattern cannot express: checksums, valid ranges, context, the allow-list.
    fn accept(&self, kind: PiiKind, value: &str, text: &str, start: usize, end: usize) -> bool {
        let before = &text[..start];
        let next = text[end..].chars().next();
        match kind {
            PiiKind::Card => {
                let digits: Vec<u32> = value.chars().filter_map(|c| c.to_digit(10)).collect();
                (13..=19).contains(&digits.len()) && luhn(&digits)
            }
            PiiKind::Ssn => {
                let d: String = value.chars().filter(char::is_ascii_digit).collect();
                let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
                area != "000"
                    && area != "666"
                    && !area.starts_with('9')
                    && group != "00"
                    && serial != "0000"
            }
            PiiKind::Ip => {
                let preceded_by_version = before.trim_end().rsplit(' ').next().is_some_and(|w| {
                    let w = w.to_ascii_lowercase();
                    w == "version" || w == "v" || w == "ver" || w == "release"
                });
                !preceded_by_version
                    && (value.parse::<std::net::Ipv4Addr>().is_ok()
                        || (value.contains(':') && value.parse::<std::net::Ipv6Addr>().is_ok()))
            }
            PiiKind::Url => {
                let lower = value.to_ascii_lowercase();
                let path = lower
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_start_matches("www.");
                let social = [
                    "facebook.com/",
                    "instagram.com/",
                    "twitter.com/",
                    "x.com/",
                    "tiktok.com/",
                    "linkedin.com/in/",
                    "reddit.com/user/",
                    "reddit.com/u/",
                    "github.com/",
                    "youtube.com/@",
                ];
                lower.contains('?')
                    || path.contains("/@")
                    || path.contains("/~")
                    || path.contains("/u/")
                    || path.contains("/user/")
                    || social
                        .iter()
                        .any(|s| path.starts_with(s) && path.len() > s.len())
            }
            PiiKind::Phone => {
                let digits = value.chars().filter(char::is_ascii_digit).count();
                // Not a year range, a time or a price: phone numbers have 7-15 digits and are not
                // glued to a currency sign or a decimal point.
                let prev = before.chars().next_back();
                // Nor a piece of a longer hyphenated code (an ISBN, a part number).
                (7..=15).contains(&digits)
                    && !matches!(prev, Some('$' | '£' | '€' | '.' | ',' | '-'))
                    && !matches!(next, Some('-'))
                    && !value.contains("..")
            }
            PiiKind::Name => {
                let first = value.split(' ').next().unwrap_or(value);
                if NOT_NAMES.contains(&first) {
                    return false;
                }
                let lower = value.to_lowercase();
                !self
                    .allow
                    .iter()
                    .any(|a| *a == lower || *a == first.to_lowercase())
            }
            PiiKind::Email | PiiKind::Address | PiiKind::DateOfBirth => true,
        }
    }

    /// Redact every message of a canonical conversation in place and return the row's record.
    pub fn redact_conversation(&self, conversation: &mut Conversation) -> PiiRecord {
        if !self.config.enabled {
            return PiiRecord::clean();
        }
        let mut names: Vec<String> = Vec::new();
        let rejected = conversation.rejected.iter_mut().flatten();
        for m in conversation.messages.iter_mut().chain(rejected) {
            let (text, found) = self.redact(&m.content);
            if !found.kinds.is_empty() {
                m.content = text;
            }
            names.extend(found.names);
        }
        if !names.is_empty() {
            // A name introduced once ("my name is Sarah") is redacted wherever else it is used
            // in the conversation ("I'm here, Sarah"): whole words, longest names first.
            let mut words: Vec<String> = names
                .iter()
                .flat_map(|n| {
                    let mut v = vec![n.clone()];
                    v.extend(n.split(' ').map(String::from));
                    v
                })
                .filter(|w| w.len() > 1)
                .collect();
            words.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
            words.dedup();
            let alternation: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
            if let Ok(re) = Regex::new(&format!(r"\b(?:{})\b", alternation.join("|"))) {
                let rejected = conversation.rejected.iter_mut().flatten();
                for m in conversation.messages.iter_mut().chain(rejected) {
                    if re.is_match(&m.content) {
                        m.content = re
                            .replace_all(&m.content, PiiKind::Name.placeholder())
                            .into_owned();
                    }
                }
            }
        }
        self.record_of(conversation)
    }

    /// The PII record of a (redacted) conversation, read from its placeholders.
    pub fn record_of(&self, conversation: &Conversation) -> PiiRecord {
        let mut kinds: BTreeMap<PiiKind, u32> = BTreeMap::new();
        for m in conversation.all_messages() {
            if !m.content.contains('[') {
                continue;
            }
            for kind in PiiKind::ALL {
                let n = m.content.matches(kind.placeholder()).count() as u32;
                if n > 0 {
                    *kinds.entry(kind).or_default() += n;
                }
            }
        }
        let total: u32 = kinds.values().sum();
        let status = if kinds.keys().any(|k| self.config.exclude_kinds.contains(k))
            || total > self.config.max_detections
        {
            PiiStatus::Excluded
        } else if total > 0 {
            PiiStatus::Redacted
        } else {
            PiiStatus::Clean
        };
        PiiRecord {
            status,
            kinds: kinds.into_iter().collect(),
        }
    }
}

/// The Luhn checksum of a card number's digits.
fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(&PiiConfig::default())
    }

    fn redacted(text: &str) -> String {
        r().redact(text).0
    }

    fn kinds(text: &str) -> Vec<PiiKind> {
        r().redact(text).1.kinds.into_keys().collect()
    }

    #[test]
    fn structured_kinds_are_redacted() {
        let cases = [
            (
                "write to jane.doe+x@mail.example.co.uk today",
                "write to [EMAIL] today",
            ),
            (
                "call me on +44 20 7946 0958 please",
                "call me on [PHONE] please",
            ),
            ("my cell is (415) 555-2671.", "my cell is [PHONE]."),
            (
                "text 415-555-2671 or 415.555.2671",
                "text [PHONE] or [PHONE]",
            ),
            ("ring 07700 900123", "ring [PHONE]"),
            ("ssn 123-45-6789", "ssn [SSN]"),
            ("card 4111 1111 1111 1111 expired", "card [CARD] expired"),
            ("card 5500-0000-0000-0004", "card [CARD]"),
            ("from 192.168.1.20 again", "from [IP] again"),
            ("ipv6 2001:db8::8a2e:370:7334 here", "ipv6 [IP] here"),
            ("see https://example.com/profile?id=42&u=jane", "see [URL]"),
            (
                "my page instagram.com/janedoe",
                "my page instagram.com/janedoe",
            ),
            ("my page https://instagram.com/janedoe", "my page [URL]"),
            ("at https://www.reddit.com/user/throwaway123", "at [URL]"),
            (
                "I live at 42 Maple Street, Apt 3 now",
                "I live at [ADDRESS] now",
            ),
            (
                "I was born on 12/03/1988 in",
                "I was born on [DATE_OF_BIRTH] in",
            ),
            ("DOB: March 3, 1990.", "DOB: [DATE_OF_BIRTH]."),
        ];
        for (input, expected) in cases {
            assert_eq!(redacted(input), expected, "{input}");
        }
    }

    #[test]
    fn names_in_context_are_redacted_except_allowed_ones() {
        let cases = [
            (
                "Hi, my name is Sarah Collins and I",
                "Hi, my name is [NAME] and I",
            ),
            ("I'm Marcus, 34.", "I'm [NAME], 34."),
            ("Thanks, Priya", "Thanks, [NAME]"),
            ("Dear John, I", "Dear [NAME], I"),
            ("see you soon - Alex", "see you soon - [NAME]"),
            ("call me Jo", "call me [NAME]"),
            ("I'm Tired of this", "I'm Tired of this"),
            ("I'm so tired", "I'm so tired"),
            ("Hi there", "Hi there"),
            (
                "Tim Fletcher says that trauma",
                "Tim Fletcher says that trauma",
            ),
            (
                "this is Tim Fletcher speaking",
                "this is Tim Fletcher speaking",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redacted(input), expected, "{input}");
        }
    }

    #[test]
    fn tricky_negatives_are_left_alone() {
        for text in [
            "update to version 1.2.3 or v10.0.19041.1",
            "we met at 10:30 and again at 14:45:10",
            "it cost $1,299.99 or £25,000 in 2019-2020",
            "ISBN 978-3-16-148410-0 is the book",
            "call 988 or 911 if you are in danger",
            "between 1990 and 2005, 3 times a week",
            "my score went from 120 to 135",
            "https://988lifeline.org has a chat",
            "the 4111 bus at 12.30",
            "order number 1234567890123 failed",
        ] {
            assert_eq!(redacted(text), text, "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        let text = "I'm Marcus, mail marcus@example.com, SSN 123-45-6789, card 4111111111111111";
        let once = redacted(text);
        assert_eq!(redacted(&once), once);
        assert!(!once.contains("marcus@"));
    }

    #[test]
    fn policy_excludes_high_risk_kinds_and_crowded_rows() {
        use crate::model::{Message, RecordKind, Role};
        let conv = |text: &str| Conversation {
            kind: RecordKind::Chatml,
            messages: vec![Message::new(Role::User, text)],
            rejected: None,
            label: None,
        };
        let red = r();
        let mut c = conv("mail me at a@b.io");
        let rec = red.redact_conversation(&mut c);
        assert_eq!(rec.status, PiiStatus::Redacted);
        assert_eq!(rec.kinds, vec![(PiiKind::Email, 1)]);
        assert_eq!(c.messages[0].content, "mail me at [EMAIL]");

        let mut c = conv("my ssn is 123-45-6789");
        assert_eq!(red.redact_conversation(&mut c).status, PiiStatus::Excluded);

        let many: String = (0..25).map(|i| format!("u{i}@x.org ")).collect();
        let mut c = conv(&many);
        let rec = red.redact_conversation(&mut c);
        assert_eq!(rec.status, PiiStatus::Excluded);
        assert_eq!(rec.kinds, vec![(PiiKind::Email, 25)]);

        let mut c = conv("nothing to see");
        assert_eq!(red.redact_conversation(&mut c), PiiRecord::clean());

        // A name given once is redacted in every message of the conversation.
        let mut c = conv("Hi, my name is Sarah Jones.");
        c.messages.push(Message::new(
            Role::Assistant,
            "Welcome Sarah. Sarah Jones, right?",
        ));
        let rec = red.redact_conversation(&mut c);
        assert_eq!(c.messages[1].content, "Welcome [NAME]. [NAME], right?");
        assert_eq!(rec.kinds, vec![(PiiKind::Name, 3)]);

        let off = Redactor::new(&PiiConfig {
            enabled: false,
            ..PiiConfig::default()
        });
        let mut c = conv("mail me at a@b.io");
        assert_eq!(off.redact_conversation(&mut c).status, PiiStatus::Clean);
        assert_eq!(c.messages[0].content, "mail me at a@b.io");
    }

    #[test]
    fn luhn_checks() {
        let d = |s: &str| s.chars().filter_map(|c| c.to_digit(10)).collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(!luhn(&d("4111111111111112")));
    }
}
