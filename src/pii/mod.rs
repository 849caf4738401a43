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
//! birth", "birthday"); person names where a name could stand ("my name is …", "I'm …",
//! greetings, sign-offs, signatures, "my friend …"), judged by `names` against public-domain
//! name lists, except names on the configured allow-list.
//!
//! A match is replaced by a typed placeholder, numbered per distinct value of its kind within a
//! row (`[NAME]`, `[NAME_2]`, …; `[EMAIL]`, …). The row's PII status and its count of distinct
//! values per kind are then read back from the placeholders in the redacted text, so they are a
//! function of the row's content (two spellings of one row can never disagree), and redacting
//! twice changes nothing. Nothing here touches storage. `eval` measures the detectors against
//! labelled text.

pub mod eval;
mod names;

use std::collections::{BTreeMap, HashMap};

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

    /// The placeholder of the `n`th distinct value of this kind in a row (counted from 1):
    /// `[NAME]` for the first, `[NAME_2]` for the second, and so on.
    pub fn numbered(self, n: u32) -> std::borrow::Cow<'static, str> {
        let plain = self.placeholder();
        if n <= 1 {
            plain.into()
        } else {
            format!("{}_{n}]", &plain[..plain.len() - 1]).into()
        }
    }

    pub fn parse(s: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Every placeholder in a text, as its kind and number (`[NAME]` is 1, `[NAME_2]` is 2).
fn placeholders_in(text: &str) -> impl Iterator<Item = (PiiKind, u32)> + '_ {
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
            Some((kind, n))
        })
}

/// The values a redaction replaced, read by aligning the original text with its redacted form
/// (what lies in the original where the redacted text has a placeholder).
fn replaced_values(original: &str, redacted: &str) -> Vec<(PiiKind, String)> {
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r"\[(?:EMAIL|PHONE|SSN|CARD|IP|URL|ADDRESS|DATE_OF_BIRTH|NAME)(?:_[1-9][0-9]{0,5})?\]",
        )
        .expect("the placeholder pattern compiles")
    });
    let mut out = Vec::new();
    let (mut at_red, mut at_orig) = (0, 0);
    let found: Vec<(PiiKind, regex::Match<'_>)> = RE
        .find_iter(redacted)
        .filter_map(|m| placeholders_in(m.as_str()).next().map(|(k, _)| (k, m)))
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
struct Numbering {
    values: HashMap<(PiiKind, String), u32>,
    last: BTreeMap<PiiKind, u32>,
}

impl Numbering {
    /// The number of `value` (a new one for a value not met before).
    fn number(&mut self, kind: PiiKind, value: &str) -> u32 {
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
    fn existing(&self, kind: PiiKind, value: &str) -> Option<u32> {
        self.values
            .get(&(kind, value_identity(kind, value)))
            .copied()
    }

    /// Placeholders already in the text (from upstream or an earlier redaction) keep their
    /// numbers: new values are numbered after them.
    fn reserve(&mut self, text: &str) {
        for (kind, n) in placeholders_in(text) {
            let last = self.last.entry(kind).or_default();
            *last = (*last).max(n);
        }
    }
}

/// What makes two values of a kind the same value: digits by value for numbers (so
/// "415-555-0199" and "(415) 555 0199" are one phone), letters without case for the rest.
fn value_identity(kind: PiiKind, value: &str) -> String {
    match kind {
        PiiKind::Phone | PiiKind::Card | PiiKind::Ssn => digits_of(value)
            .into_iter()
            .filter_map(|d| char::from_digit(d, 10))
            .collect(),
        PiiKind::Ip => ascii_digits(value).to_lowercase(),
        _ => value.to_lowercase(),
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

/// A row's PII audit record: its status and how many distinct values of each kind were redacted
/// in it (read from its placeholders; never the values).
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
        r"(?:\+\d{1,3}[ .-]?|\b1[ .-])?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b|\+\d{7,14}\b|\b0\d{9,10}\b|\b0\d{4}[ -]?\d{6}\b|\b\d{3}\.\d{3}\.\d{4}\b",
    ),
    (
        PiiKind::DateOfBirth,
        r"(?i)\b(?:born(?: on| in)?|date of birth(?: is)?|d\.?o\.?b\.?|birthday(?: is)?(?: on)?)[:\s]+(?P<v>\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}|(?:\d{1,2}(?:st|nd|rd|th)? )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?: \d{1,2}(?:st|nd|rd|th)?)?,? \d{4})",
    ),
    (
        PiiKind::Address,
        r"\b\d{1,5}(?: \p{Lu}\p{L}+){1,3} (?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|close|crescent)\b\.?(?:,? (?i:apt|apartment|unit|suite|#) ?\w+)?",
    ),
    (
        PiiKind::Name,
        r"(?:\b(?P<im>(?i:i am|i\\?['’]m|im))|\b(?P<its>(?i:it['’]s|this is))|\b(?P<intro>(?i:my name(?: is|['’]s)?|call me))|\b(?P<third>(?i:(?:my|our) (?:ex-?|best |new |old |little |big |older |younger )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl|kid|child|baby|youngest|oldest|eldest)(?:['’]?s)? name is))|(?P<greet>\b(?i:hi|hello|hey|dear))[,!]?|\b(?P<thanks>Thanks|Thank you|Regards|Cheers|Best|Sincerely|Love|Yours|Warmly)[,!])[ ,]*(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\b(?P<after>['’][a-z]| [a-z]+)?",
    ),
    (
        PiiKind::Name,
        r"(?:\b(?P<im>(?i:i am|i\\?['’]m|im))|\b(?P<intro>(?i:my name(?: is|['’]s)?|call me))|\b(?P<third>(?i:(?:my|our) (?:ex-?|best |new |old |little |big |older |younger )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl|kid|child|baby|youngest|oldest|eldest)(?:['’]?s)? name is))|(?P<greet>\b(?i:hi|hello|hey)),?|\b(?i:my|our) (?i:(?:ex-?|best |new |old |little |big |older |younger )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl|kid|child|baby|youngest|oldest|eldest))(?P<relation>),?)[ ,]*(?P<v>\p{Ll}{2,})\b",
    ),
    (
        PiiKind::Name,
        r"\b(?:(?i:this (?:guy|girl|man|woman|boy),)|(?i:my|our) (?i:(?:ex-?|best |new |old )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl)))(?P<relation>),? (?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\b(?P<after>['’][a-z])?",
    ),
    (
        PiiKind::Name,
        r"(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\.)?(?: \p{Lu}\p{Ll}+){1,2}),? (?P<credential>LMFT|LPC|LCSW|LMSW|LMAC|PhD|Ph\.D|PsyD|MFT|LMHC|NCC|LPCC|LCPC|MSW|MSc|LADC|LCADC)\b",
    ),
    (
        PiiKind::Name,
        r"(?:^|[\s,.;:!?])[-—–] ?(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\s*$",
    ),
];

/// A text quoted in an error or a log, made safe to keep: PII redacted with the default
/// policy, cut to at most 200 characters.
pub fn bounded_excerpt(text: &str) -> String {
    static DEFAULT: std::sync::LazyLock<Redactor> =
        std::sync::LazyLock::new(|| Redactor::new(&PiiConfig::default()));
    const MAX_CHARS: usize = 200;
    let cut: String = text.chars().take(MAX_CHARS).collect();
    let (mut redacted, _) = DEFAULT.redact(&cut);
    if text.chars().nth(MAX_CHARS).is_some() {
        redacted.push('…');
    }
    redacted
}

/// Redaction passes over one text at most (each pass after the first runs only when the one
/// before replaced something; a placeholder can complete at most a few new matches).
const MAX_PASSES: usize = 4;

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
    /// Every value replaced, with its kind, in the order found (for evaluation; never stored).
    pub values: Vec<(PiiKind, String)>,
    /// Names found with confidence enough to be redacted wherever else the conversation uses
    /// them (never stored).
    pub confident_names: Vec<String>,
}

impl Redactor {
    pub fn new(config: &PiiConfig) -> Redactor {
        // The prefilter only has to say which patterns *can* match, so it runs them without
        // their word-boundary assertions (dropping an assertion only widens a pattern): a
        // Unicode `\b` keeps the regex engine off its fast DFA, which made the prefilter most of
        // the cost of redacting ordinary text.
        let sources: Vec<String> = PATTERNS
            .iter()
            .map(|(_, p)| p.replace(r"\b", "").replace(r"\B", ""))
            .collect();
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
        let mut numbering = Numbering::default();
        numbering.reserve(text);
        self.redact_numbered(text, &mut numbering)
    }

    /// Redact one text of a row whose values are numbered by `numbering`.
    fn redact_numbered(&self, text: &str, numbering: &mut Numbering) -> (String, Found) {
        let mut found = Found::default();
        if !self.config.enabled {
            return (text.to_string(), found);
        }
        let mut out = text.to_string();
        // A replacement can make a new match ("42 Oak Street::1" → "[ADDRESS]::1", an IPv6
        // address): passes go on until one finds nothing, so redacting is idempotent.
        for _ in 0..MAX_PASSES {
            let hits = self.prefilter.matches(&out);
            if !hits.matched_any() {
                break;
            }
            let mut changed = false;
            for (i, (kind, re)) in self.patterns.iter().enumerate() {
                if !hits.matched(i) {
                    continue;
                }
                let (next, n) = self.apply(*kind, re, &out, &mut found, numbering);
                if n > 0 {
                    *found.kinds.entry(*kind).or_default() += n;
                    out = next;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        (out, found)
    }

    fn apply(
        &self,
        kind: PiiKind,
        re: &Regex,
        text: &str,
        found: &mut Found,
        numbering: &mut Numbering,
    ) -> (String, u32) {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut n = 0;
        for caps in re.captures_iter(text) {
            let whole = caps.get(0).expect("group 0 always matches");
            // The sensitive part: the named group `v` when the pattern has context around it.
            let m = caps.name("v").unwrap_or(whole);
            let (start, end) = if kind == PiiKind::Name {
                let Some((end, confident)) = self.name_end(text, &caps, m) else {
                    continue;
                };
                if confident {
                    found.confident_names.push(text[m.start()..end].to_string());
                }
                (m.start(), end)
            } else if self.accept(kind, m.as_str(), text, m.start(), m.end()) {
                (m.start(), m.end())
            } else {
                continue;
            };
            let value = &text[start..end];
            out.push_str(&text[last..start]);
            out.push_str(&kind.numbered(numbering.number(kind, value)));
            last = end;
            n += 1;
            found.values.push((kind, value.to_string()));
        }
        out.push_str(&text[last..]);
        (out, n)
    }

    /// Where a name found by a name pattern ends (its first words may be all of it, "Hi Sarah
    /// How" is "Sarah"), and whether it is confident; `None` when it is not a name. The context
    /// is read from the pattern's marker groups and judged by `names::judge`.
    fn name_end(
        &self,
        text: &str,
        caps: &regex::Captures<'_>,
        v: regex::Match<'_>,
    ) -> Option<(usize, bool)> {
        use names::Context;
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
            let quoted = before.ends_with(['\'', '"', '‘', '“'])
                && text[v.end()..].starts_with([',', '!', '?']);
            let opens = quoted
                || before.is_empty()
                || before.ends_with(['.', '!', '?', ':', ';', ')', '\n']);
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
        let judged = names::judge(context, &words, lowercase)?;
        let kept = &words[..judged.words.min(words.len())];
        let end = v.start() + kept.iter().map(|w| w.len()).sum::<usize>() + kept.len() - 1;
        let lower = v.as_str()[..end - v.start()].to_lowercase();
        let first = kept[0].to_lowercase();
        if self.allow.iter().any(|a| *a == lower || *a == first) {
            return None;
        }
        Some((end, judged.confident))
    }

    /// Checks a pattern cannot express: checksums, valid ranges, context, the allow-list.
    fn accept(&self, kind: PiiKind, value: &str, text: &str, start: usize, end: usize) -> bool {
        let before = &text[..start];
        let next = text[end..].chars().next();
        match kind {
            PiiKind::Card => {
                let digits = digits_of(value);
                // Card numbers are written in one run or in groups of four (Amex: 4-6-5), unlike
                // ISBNs and other hyphenated codes that pass Luhn by chance. Groups are counted
                // in digits, whatever script they are written in.
                let groups: Vec<usize> = value
                    .split([' ', '-'])
                    .filter(|g| !g.is_empty())
                    .map(|g| g.chars().count())
                    .collect();
                let grouped = match groups.split_last() {
                    None => false,
                    Some((_, [])) => true,
                    Some((_, leading)) => groups == [4, 6, 5] || leading.iter().all(|&g| g == 4),
                };
                // Luhn alone passes one number in ten (products, ids): a card also needs an
                // issuer's prefix and length, or a word about cards or payment just before it.
                (13..=19).contains(&digits.len())
                    && grouped
                    && luhn(&digits)
                    && (card_issuer_fits(&digits) || card_context(before))
            }
            PiiKind::Ssn => {
                // Validated on digit values, so an SSN in Arabic-Indic or full-width digits is
                // judged like one in ASCII.
                let d = digits_of(value);
                let [a0, a1, a2, g0, g1, s0, s1, s2, s3] = d[..] else {
                    return false;
                };
                let area = a0 * 100 + a1 * 10 + a2;
                let group = g0 * 10 + g1;
                let serial = s0 * 1000 + s1 * 100 + s2 * 10 + s3;
                area != 0 && area != 666 && a0 != 9 && group != 0 && serial != 0
            }
            PiiKind::Ip => {
                let preceded_by_version = before.trim_end().rsplit(' ').next().is_some_and(|w| {
                    let w = w.to_ascii_lowercase();
                    w == "version" || w == "v" || w == "ver" || w == "release"
                });
                !preceded_by_version && {
                    let value = ascii_digits(value);
                    value.parse::<std::net::Ipv4Addr>().is_ok()
                        || (value.contains(':') && value.parse::<std::net::Ipv6Addr>().is_ok())
                }
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
                let all: String = digits_of(value)
                    .into_iter()
                    .filter_map(|d| char::from_digit(d, 10))
                    .collect();
                let digits = all.len();
                // North American toll-free numbers belong to services (crisis lines), not people.
                let national = all
                    .strip_prefix('1')
                    .filter(|_| digits == 11)
                    .unwrap_or(&all);
                if digits >= 10
                    && ["800", "833", "844", "855", "866", "877", "888"]
                        .iter()
                        .any(|p| national.starts_with(p))
                {
                    return false;
                }
                // Not a year range, a time or a price: phone numbers have 7-15 digits and are not
                // glued to a currency sign or a decimal point.
                let prev = before.chars().next_back();
                // Nor a piece of a longer hyphenated code (an ISBN, a part number).
                (7..=15).contains(&digits)
                    && !matches!(
                        prev,
                        Some('$' | '£' | '€' | '.' | ',' | '-' | '/' | '=' | '#')
                    )
                    && !matches!(next, Some('-'))
                    && !value.contains("..")
            }
            // Names are judged by `name_end`, in their context.
            PiiKind::Email | PiiKind::Address | PiiKind::DateOfBirth | PiiKind::Name => true,
        }
    }

    /// An object key (or source) as it may leave idx: PII in it redacted, and — when anything
    /// was — a short digest of the raw key appended, so keys that redact alike stay apart and
    /// `idx query source` can find the object from what an export shows. A key without PII is
    /// returned as it is.
    pub fn redact_key(&self, key: &str) -> String {
        let (redacted, found) = self.redact(key);
        if found.kinds.is_empty() {
            return key.to_string();
        }
        format!(
            "{redacted} [key {:08x}]",
            xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32
        )
    }

    /// Redact every message of a canonical conversation in place and return the row's record.
    pub fn redact_conversation(&self, conversation: &mut Conversation) -> PiiRecord {
        if !self.config.enabled {
            return PiiRecord::clean();
        }
        let mut numbering = Numbering::default();
        for m in conversation.all_messages() {
            numbering.reserve(&m.content);
        }
        let mut names: Vec<String> = Vec::new();
        let rejected = conversation.rejected.iter_mut().flatten();
        for m in conversation.messages.iter_mut().chain(rejected) {
            let (text, found) = self.redact_numbered(&m.content, &mut numbering);
            if !found.kinds.is_empty() {
                m.content = text;
            }
            names.extend(found.confident_names);
        }
        if !names.is_empty() {
            self.propagate_names(conversation, &names, &mut numbering);
        }
        // The record is read back from the placeholders alone, so every place of a row (same
        // redacted text) gets the same status whatever order they arrive in.
        self.record_of(conversation)
    }

    /// A name found with confidence ("my name is Sarah Jones") is redacted wherever else the
    /// conversation uses it ("I'm here, Sarah"): whole words, longest first, each with the
    /// number of the name it belongs to.
    fn propagate_names(
        &self,
        conversation: &mut Conversation,
        names: &[String],
        numbering: &mut Numbering,
    ) {
        let mut words: BTreeMap<String, u32> = BTreeMap::new();
        for name in names {
            let n = numbering.number(PiiKind::Name, name);
            words.insert(name.clone(), n);
            for w in name.split(' ').filter(|w| w.chars().count() > 1) {
                let own = numbering.existing(PiiKind::Name, w);
                words.entry(w.to_string()).or_insert(own.unwrap_or(n));
            }
        }
        let mut alternation: Vec<&String> = words.keys().collect();
        alternation.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let alternation: Vec<String> = alternation.iter().map(|w| regex::escape(w)).collect();
        // Case aside: "george" later in the chat is the George introduced before.
        let Ok(re) = Regex::new(&format!(r"(?i)\b(?:{})\b", alternation.join("|"))) else {
            return;
        };
        let rejected = conversation.rejected.iter_mut().flatten();
        for m in conversation.messages.iter_mut().chain(rejected) {
            if re.is_match(&m.content) {
                m.content = re
                    .replace_all(&m.content, |c: &regex::Captures<'_>| {
                        let n = words
                            .iter()
                            .find(|(w, _)| {
                                w.eq_ignore_ascii_case(&c[0])
                                    || w.to_lowercase() == c[0].to_lowercase()
                            })
                            .map_or(1, |(_, n)| *n);
                        PiiKind::Name.numbered(n).into_owned()
                    })
                    .into_owned();
            }
        }
    }

    /// The PII record of a (redacted) conversation, read from its placeholders: per kind, the
    /// number of distinct values (`[NAME]` used ten times is one name; `[NAME_2]` a second).
    pub fn record_of(&self, conversation: &Conversation) -> PiiRecord {
        let mut seen: std::collections::BTreeSet<(PiiKind, u32)> = Default::default();
        for m in conversation.all_messages() {
            seen.extend(placeholders_in(&m.content));
        }
        let mut kinds: BTreeMap<PiiKind, u32> = BTreeMap::new();
        for (kind, _) in &seen {
            *kinds.entry(*kind).or_default() += 1;
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

/// The zero of every block of Unicode decimal digits (general category Nd). Each block holds the
/// ten digits 0-9 in order (a Unicode stability guarantee), so a digit's value is its distance
/// from the greatest zero at or below it. A test holds this table against the regex engine's own
/// `\d`, which is what the patterns match with.
const DIGIT_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit in any script (`'7'`, `'٧'`, `'७'`, `'７'` are all 7).
pub fn digit_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    let cp = c as u32;
    let block = DIGIT_ZEROS
        .partition_point(|&zero| zero <= cp)
        .checked_sub(1)?;
    let offset = cp - DIGIT_ZEROS[block];
    (offset < 10).then_some(offset)
}

/// The values of the decimal digits in a text, in order, whatever their script.
fn digits_of(text: &str) -> Vec<u32> {
    text.chars().filter_map(digit_value).collect()
}

/// The text with every decimal digit written in ASCII (other characters kept).
fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|c| {
            digit_value(c)
                .and_then(|d| char::from_digit(d, 10))
                .unwrap_or(c)
        })
        .collect()
}

/// Whether a card number's prefix and length are an issuer's: Visa, Mastercard, American
/// Express, Discover, JCB, Diners Club.
fn card_issuer_fits(d: &[u32]) -> bool {
    let n = d.len();
    let prefix = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + x);
    match d.first() {
        Some(4) => matches!(n, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&prefix(2)) && n == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && n == 16,
        Some(3) => {
            (matches!(prefix(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n))
                || (((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38))
                    && (14..=19).contains(&n))
        }
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&n)
        }
        _ => false,
    }
}

/// Whether the words just before a number speak of cards or payment.
fn card_context(before: &str) -> bool {
    let tail: String = before
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    [
        "card",
        "visa",
        "mastercard",
        "amex",
        "credit",
        "debit",
        "cc",
        "cvv",
        "payment",
        "paid",
        "pay with",
        "account",
    ]
    .iter()
    .any(|w| tail.contains(w))
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
                "Hi, Depression can look different",
                "Hi, Depression can look different",
            ),
            ("Hi Georgia, there is hope", "Hi Georgia, there is hope"),
            ("Hi Priya, there is hope", "Hi [NAME], there is hope"),
            (
                "read The Five Love Languages today",
                "read The Five Love Languages today",
            ),
            ("Love, Priya", "Love, [NAME]"),
            ("Love, Mum", "Love, Mum"),
            (
                "Best Wishes. Laura Cassity, LMSW",
                "Best Wishes. [NAME], LMSW",
            ),
            (
                "Tim Fletcher says that trauma",
                "Tim Fletcher says that trauma",
            ),
            (
                "this is Tim Fletcher speaking",
                "this is Tim Fletcher speaking",
            ),
            (
                "My friend Jennifer used to date him",
                "My friend [NAME] used to date him",
            ),
            ("this guy, Peter. He", "this guy, [NAME]. He"),
            ("this guy Ian Book", "this guy Ian Book"),
            ("his wife Marcia won", "his wife Marcia won"),
            ("my sister's name is Olivia", "my sister's name is [NAME]"),
            ("my name is juan", "my name is [NAME]"),
            (
                "the Packers signed Sam Shields",
                "the Packers signed Sam Shields",
            ),
            ("a T-Rex", "a T-Rex"),
            (
                "My ex-boyfriend, Paul, broke up",
                "My ex-boyfriend, [NAME], broke up",
            ),
            ("my boss Monday morning", "my boss Monday morning"),
            ("our friend Google says", "our friend Google says"),
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
            "the lifeline is 1-800-273-8255 or (800) 273-8255",
            "see www.amazon.com/dp/0062270451 for the book",
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
        assert_eq!(rec.kinds, vec![(PiiKind::Name, 1)]);

        let off = Redactor::new(&PiiConfig {
            enabled: false,
            ..PiiConfig::default()
        });
        let mut c = conv("mail me at a@b.io");
        assert_eq!(off.redact_conversation(&mut c).status, PiiStatus::Clean);
        assert_eq!(c.messages[0].content, "mail me at a@b.io");
    }

    /// Regression (issue 19, item 10): on casual chat, words after "Hi"/"I'm"/"It's" were taken
    /// for names ("Hi Yeah", "I'm Gryffindor", "I am Groot", "It's Theatre Arts Studies").
    #[test]
    fn casual_chat_words_after_a_greeting_or_i_am_are_not_names() {
        for text in [
            "Hi Yeah I saw that movie",
            "I'm Gryffindor all the way",
            "I am Legend was a good film",
            "I am Groot",
            "It's Theatre Arts Studies, I think",
            "Thanks, Anyway it was fun",
            "Hello, Oh I love that song",
            "Hi! And what about you?",
            "I'm Will-ing to try",
            "It's May already",
            "Hey Virginia is lovely",
        ] {
            assert_eq!(redacted(text), text, "{text}: {:?}", kinds(text));
        }
        for (text, expected) in [
            (
                "Hi Yeah, I'm Rebecca and you?",
                "Hi Yeah, I'm [NAME] and you?",
            ),
            ("hello, it's Marcus here", "hello, it's [NAME] here"),
            ("Hi Will, how are you?", "Hi [NAME], how are you?"),
            ("Hi Sarah How are you", "Hi Sarah How are you"),
            ("my name is Gryffindor", "my name is [NAME]"),
        ] {
            assert_eq!(redacted(text), expected, "{text}");
        }
    }

    /// Regression (issue 19, item 10): one doubtful "name" was redacted in every message, and
    /// the repeats counted towards exclusion. A doubtful name is redacted where it was found
    /// only; a row's count is of distinct values, read from numbered placeholders.
    #[test]
    fn repeats_count_once_and_only_confident_names_spread() {
        use crate::model::{Message, RecordKind, Role};
        let red = r();
        let conv = |texts: &[&str]| Conversation {
            kind: RecordKind::Chatml,
            messages: texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Message::new(
                        if i % 2 == 0 {
                            Role::User
                        } else {
                            Role::Assistant
                        },
                        *t,
                    )
                })
                .collect(),
            rejected: None,
            label: None,
        };
        // Will is a given name and a common word: redacted as a vocative, not spread.
        let mut c = conv(&["Hi Will, thanks", "Will you come? Will it help?"]);
        red.redact_conversation(&mut c);
        assert_eq!(c.messages[0].content, "Hi [NAME], thanks");
        assert_eq!(c.messages[1].content, "Will you come? Will it help?");

        // One name said 30 times is one value: redacted, not excluded.
        let mut texts = vec!["my name is Priya".to_string()];
        texts.extend((0..30).map(|i| format!("Priya, point {i}")));
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut c = conv(&texts);
        let rec = red.redact_conversation(&mut c);
        assert_eq!(rec.status, PiiStatus::Redacted);
        assert_eq!(rec.kinds, vec![(PiiKind::Name, 1)]);
        assert_eq!(c.messages[5].content, "[NAME], point 4");

        // Two people are two values, each with its own placeholder wherever it is used.
        let mut c = conv(&[
            "I'm Priya and my friend Jennifer says hi",
            "Hello Priya. Does Jennifer know? mail a@b.io or c@d.io",
        ]);
        let rec = red.redact_conversation(&mut c);
        assert_eq!(
            c.messages[1].content,
            "Hello [NAME]. Does [NAME_2] know? mail [EMAIL] or [EMAIL_2]"
        );
        assert_eq!(rec.kinds, vec![(PiiKind::Email, 2), (PiiKind::Name, 2)]);

        // The record is a function of the redacted text: redacting again changes nothing.
        let again = c.clone();
        assert_eq!(red.redact_conversation(&mut c), rec);
        assert_eq!(c, again);
    }

    /// Regression: products in arithmetic that happen to pass Luhn were taken for cards (and
    /// excluded the row). A card needs an issuer's prefix and length, or card words before it.
    #[test]
    fn a_card_needs_an_issuer_or_a_card_context_not_luhn_alone() {
        assert!(!kinds("so 9009 9009 9009 9007 is what the product gives").contains(&PiiKind::Card));
        assert_eq!(
            kinds("charge my card 9009 9009 9009 9007 today"),
            vec![PiiKind::Card]
        );
        assert_eq!(kinds("it is 4111111111111111"), vec![PiiKind::Card]);
        assert_eq!(kinds("amex 3782 822463 10005"), vec![PiiKind::Card]);
    }

    #[test]
    fn luhn_checks() {
        let d = |s: &str| s.chars().filter_map(|c| c.to_digit(10)).collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(!luhn(&d("4111111111111112")));
    }

    #[test]
    fn digit_table_agrees_with_the_regex_engine() {
        let digit = Regex::new(r"^\d$").unwrap();
        let disagree: Vec<String> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| {
                let mut buf = [0u8; 4];
                digit.is_match(c.encode_utf8(&mut buf)) != digit_value(c).is_some()
            })
            .map(|c| format!("U+{:04X}", c as u32))
            .collect();
        assert!(
            disagree.is_empty(),
            "table and \\d disagree on {disagree:?}"
        );
        assert_eq!(digit_value('٧'), Some(7));
        assert_eq!(digit_value('७'), Some(7));
        assert_eq!(digit_value('７'), Some(7));
        assert_eq!(digit_value('𝟗'), Some(9));
        assert_eq!(digit_value('x'), None);
    }

    /// Regression: an SSN in Arabic-Indic digits panicked the redactor (it sliced an ASCII-only
    /// copy of the value by the length of the original).
    #[test]
    fn pii_in_any_script_of_digits_is_detected_and_validated() {
        let to = |text: &str, zero: char| -> String {
            text.chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => char::from_u32(zero as u32 + d).unwrap(),
                    None => c,
                })
                .collect()
        };
        for zero in ['0', '٠', '۰', '०', '০', '๐', '０'] {
            let ssn = to("my ssn is 123-45-6789", zero);
            assert_eq!(kinds(&ssn), vec![PiiKind::Ssn], "{ssn}");
            assert!(!redacted(&ssn).contains(&to("6789", zero)), "{ssn}");
            // Invalid by its digit values: area 000.
            let bad = to("my ssn is 000-45-6789", zero);
            assert!(!kinds(&bad).contains(&PiiKind::Ssn), "{bad}");
            let card = to("card 4111 1111 1111 1111 thanks", zero);
            assert_eq!(kinds(&card), vec![PiiKind::Card], "{card}");
            let not_luhn = to("card 4111 1111 1111 1112 thanks", zero);
            assert!(!kinds(&not_luhn).contains(&PiiKind::Card), "{not_luhn}");
            let phone = to("call me on 415-555-0132 tonight", zero);
            assert_eq!(kinds(&phone), vec![PiiKind::Phone], "{phone}");
            let dob = to("born on 12/03/1990", zero);
            assert_eq!(kinds(&dob), vec![PiiKind::DateOfBirth], "{dob}");
        }
        assert_eq!(redacted("my ssn is ١٢٣-٤٥-٦٧٨٩"), "my ssn is [SSN]");
    }
}
