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
mod numbering;
mod patterns;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use numbering::{placeholders_in, Numbering};
use patterns::PATTERNS;
use regex::{Captures, Regex, RegexBuilder, RegexSet, RegexSetBuilder};
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
    patterns: Vec<Pattern>,
    allow: Vec<String>,
}

/// One detection pattern, compiled three ways. `re` finds the matches and their groups. On
/// text that is not all ASCII a Unicode `\b` stops the regex engine's lazy DFA, and a search
/// runs the much slower PikeVM to the end of the text (4% of the real texts in
/// `testdata/pii` were 60% of the time redacting them). There, `wide` (the pattern without its
/// word boundaries, which stays on the DFA) finds each place where a match *can* start, and
/// `anchored` decides, by a search that ends as soon as no match from that place is possible,
/// whether one does ([`Redactor::captures`]).
#[derive(Debug, Clone)]
struct Pattern {
    kind: PiiKind,
    re: Regex,
    wide: Regex,
    anchored: regex_automata::meta::Regex,
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

/// The lazy DFA cache of each pattern and of the prefilter, per thread. The name patterns' Unicode
/// classes make large automata; at the regex crate's default (2 MB) the cache filled and was
/// rebuilt over and over on chat text full of names and numbers. It grows only as far as used.
const LAZY_DFA_CACHE: usize = 16 << 20;

/// The built-in patterns compiled once per process (every ingest pass, plan, decontamination
/// refresh and export makes a redactor): each redactor clones them, and a clone has its own
/// lazy DFA caches. Compiling took about 30 ms when each pattern was compiled one way; each is
/// now compiled three ways (see [`Pattern`]), which has not been re-measured.
struct Compiled {
    prefilter: RegexSet,
    patterns: Vec<Pattern>,
}

static COMPILED: std::sync::LazyLock<Compiled> = std::sync::LazyLock::new(|| {
    // The prefilter only has to say which patterns *can* match, so it runs them without
    // their word-boundary assertions (dropping an assertion only widens a pattern): a
    // Unicode `\b` keeps the regex engine off its fast DFA, which made the prefilter most of
    // the cost of redacting ordinary text.
    let sources: Vec<String> = PATTERNS
        .iter()
        .map(|(_, p)| p.replace(r"\b", "").replace(r"\B", ""))
        .collect();
    let regex = |p: &str| {
        RegexBuilder::new(p)
            .dfa_size_limit(LAZY_DFA_CACHE)
            .build()
            .expect("built-in PII patterns compile")
    };
    Compiled {
        prefilter: RegexSetBuilder::new(&sources)
            .dfa_size_limit(LAZY_DFA_CACHE)
            .build()
            .expect("built-in PII patterns compile"),
        patterns: PATTERNS
            .iter()
            .zip(&sources)
            .map(|((kind, p), wide)| Pattern {
                kind: *kind,
                re: regex(p),
                wide: regex(wide),
                anchored: regex_automata::meta::Regex::builder()
                    .configure(
                        regex_automata::meta::Config::new()
                            .hybrid_cache_capacity(LAZY_DFA_CACHE)
                            .match_kind(regex_automata::MatchKind::LeftmostFirst),
                    )
                    .build(p)
                    .expect("built-in PII patterns compile"),
            })
            .collect(),
    }
});

impl Redactor {
    pub fn new(config: &PiiConfig) -> Redactor {
        Redactor {
            config: config.clone(),
            prefilter: COMPILED.prefilter.clone(),
            patterns: COMPILED.patterns.clone(),
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
        let (redacted, found) = self.redact_numbered(text, &mut numbering);
        (redacted.unwrap_or_else(|| text.to_string()), found)
    }

    /// Redact one text of a row whose values are numbered by `numbering`.
    /// The redacted text is `None` when nothing was replaced (most texts: no copy is made).
    fn redact_numbered(&self, text: &str, numbering: &mut Numbering) -> (Option<String>, Found) {
        let mut found = Found::default();
        if !self.config.enabled || !self.prefilter.is_match(text) {
            return (None, found);
        }
        let mut out = text.to_string();
        let mut replaced = false;
        // A replacement can make a new match ("42 Oak Street::1" → "[ADDRESS]::1", an IPv6
        // address): passes go on until one finds nothing, so redacting is idempotent.
        for _ in 0..MAX_PASSES {
            let hits = self.prefilter.matches(&out);
            if !hits.matched_any() {
                break;
            }
            let mut changed = false;
            for (i, pattern) in self.patterns.iter().enumerate() {
                if !hits.matched(i) {
                    continue;
                }
                let (next, n) = self.apply(pattern, &out, &mut found, numbering);
                if n > 0 {
                    *found.kinds.entry(pattern.kind).or_default() += n;
                    out = next;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
            replaced = true;
        }
        (replaced.then_some(out), found)
    }

    /// Every match of a pattern in a text, leftmost first, each with its groups: what
    /// `captures_iter` gives, found without a search through the whole text on the slow engine
    /// when the text is not all ASCII (see [`Pattern`]). A match can only start where the
    /// pattern without word boundaries matches, so the places `wide` finds, tried in order, meet
    /// the leftmost match first.
    fn captures<'t>(pattern: &Pattern, text: &'t str, windowed: bool) -> Vec<Captures<'t>> {
        if !windowed {
            return pattern.re.captures_iter(text).collect();
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at <= text.len() {
            let Some(start) = pattern.wide.find_at(text, at).map(|m| m.start()) else {
                break;
            };
            let from = regex_automata::Input::new(text)
                .range(start..)
                .anchored(regex_automata::Anchored::Yes);
            let next = text[start..].chars().next().map_or(1, char::len_utf8);
            if pattern.anchored.search_half(&from).is_none() {
                at = start + next;
                continue;
            }
            // A match starts here, so the leftmost from here is it, with its groups.
            let Some(caps) = pattern.re.captures_at(text, start) else {
                break;
            };
            let end = caps.get(0).map_or(start, |m| m.end());
            out.push(caps);
            at = if end > start { end } else { start + next };
        }
        out
    }

    fn apply(
        &self,
        pattern: &Pattern,
        text: &str,
        found: &mut Found,
        numbering: &mut Numbering,
    ) -> (String, u32) {
        let kind = pattern.kind;
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut n = 0;
        for caps in Self::captures(pattern, text, !text.is_ascii()) {
            let whole = caps.get(0).expect("group 0 always matches");
            // The sensitive part: the named group `v` when the pattern has context around it.
            let m = caps.name("v").unwrap_or(whole);
            let (start, end) = if kind == PiiKind::Name {
                let Some((end, confident)) = names::name_end(&self.allow, text, &caps, m) else {
                    continue;
                };
                if confident {
                    found.confident_names.push(text[m.start()..end].to_string());
                }
                (m.start(), end)
            } else if patterns::accept(kind, m.as_str(), text, m.start(), m.end()) {
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
            if let Some(text) = text {
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
        // Keyed in lower case: the match below is case-insensitive.
        let mut words: BTreeMap<String, u32> = BTreeMap::new();
        for name in names {
            let n = numbering.number(PiiKind::Name, name);
            words.insert(name.to_lowercase(), n);
            for w in name.split(' ').filter(|w| w.chars().count() > 1) {
                let own = numbering.existing(PiiKind::Name, w);
                words.entry(w.to_lowercase()).or_insert(own.unwrap_or(n));
            }
        }
        let mut alternatives: Vec<(&String, u32)> = words.iter().map(|(w, n)| (w, *n)).collect();
        alternatives.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        let rejected = conversation.rejected.iter_mut().flatten();
        for m in conversation.messages.iter_mut().chain(rejected) {
            if let Some(replaced) = replace_names(&m.content, &alternatives) {
                m.content = replaced;
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

/// `text` with every whole-word, case-insensitive occurrence of the lower-case `alternatives`
/// replaced by its numbered `[NAME]` placeholder, leftmost first and, where several start at one
/// place, the first listed (longest) — or `None` when nothing matched. A word character is a
/// letter, digit, combining mark or `_`, as in the regex engine's Unicode `\b`; case is compared
/// through `char::to_lowercase`. (This was one regex compiled per row with a confident name:
/// compiling was most of the cost of redacting chat text full of names.)
fn replace_names(text: &str, alternatives: &[(&String, u32)]) -> Option<String> {
    let is_word = |c: char| {
        c.is_alphanumeric() || c == '_' || unicode_normalization::char::is_combining_mark(c)
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut previous: Option<char> = None;
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        let starts_word = is_word(c) && !previous.is_some_and(is_word);
        let found = if starts_word {
            alternatives
                .iter()
                .find_map(|(w, n)| match_folded(&text[at..], w).map(|len| (at + len, *n)))
                .filter(|&(end, _)| !text[end..].chars().next().is_some_and(is_word))
        } else {
            None
        };
        match found {
            Some((end, n)) => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..at]);
                o.push_str(&PiiKind::Name.numbered(n));
                copied = end;
                previous = text[..end].chars().next_back();
                at = end;
            }
            None => {
                previous = Some(c);
                at += c.len_utf8();
            }
        }
    }
    let mut o = out?;
    o.push_str(&text[copied..]);
    Some(o)
}

/// The length in `text`'s bytes of a prefix of `text` equal to `lower` (lower case) ignoring
/// case, if there is one.
fn match_folded(text: &str, lower: &str) -> Option<usize> {
    let mut rest = text.char_indices();
    let mut want = lower.chars().peekable();
    let mut end = 0;
    // Final and medial sigma are one letter to a case-insensitive match.
    let fold = |c: char| if c == 'ς' { 'σ' } else { c };
    while want.peek().is_some() {
        let (i, c) = rest.next()?;
        for folded in c.to_lowercase() {
            if want.next().map(fold) != Some(fold(folded)) {
                return None;
            }
        }
        end = i + c.len_utf8();
    }
    Some(end)
}
