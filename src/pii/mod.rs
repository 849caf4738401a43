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
//! nothing. Nothing here touches storage. `eval` measures the detectors against labelled text.

pub mod eval;

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
        r"(?:\b(?P<im>(?i:i am|i'm|im))|\b(?i:my name is|my name's|name is|call me|this is|it's|signed)|\b(?P<greet>Hi|Hello|Hey|Dear)[,!]?|\b(?:Thanks|Thank you|Regards|Cheers|Best|Sincerely|Love|Yours|Warmly)[,!])[ ,]*(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\b(?P<after>'[a-z]| [a-z]+)?",
    ),
    (
        PiiKind::Name,
        r"\b(?i:my|our|her|his|this|their) (?i:(?:ex-?|best |new |old )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl))(?P<given>),? (?P<v>\p{Lu}\p{Ll}+)\b(?P<after>'[a-z])?",
    ),
    (
        PiiKind::Name,
        r"(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\.)?(?: \p{Lu}\p{Ll}+){1,2}),? (?:LMFT|LPC|LCSW|LMSW|LMAC|PhD|Ph\.D|PsyD|MFT|LMHC|NCC|LPCC|LCPC|MSW|MSc|LADC|LCADC)\b",
    ),
    (
        PiiKind::Name,
        r"[-—–] ?(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\s*$",
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
    "Wishes",
    "Regards",
    "Luck",
    // Places people are addressed by in advice columns ("Hi Texas,"): not person names.
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "Florida",
    "Georgia",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "Nebraska",
    "Nevada",
    "New",
    "North",
    "South",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Rhode",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virginia",
    "Washington",
    "West",
    "Wisconsin",
    "Wyoming",
    "Ontario",
    "Quebec",
    "Alberta",
    "Canada",
    "England",
    "London",
    "Toronto",
    "Vancouver",
    "Montreal",
    "Calgary",
    "Seattle",
    "Portland",
    "Houston",
    "Dallas",
    "Austin",
    "Chicago",
    "Boston",
    "Miami",
    "Atlanta",
    "Denver",
    "Phoenix",
    "Nashville",
    "Los",
    "San",
    "Las",
    "Fort",
    "Saint",
    "St",
    "Crazy",
    "Sex",
];

/// Common given names: a greeting ("Hi Georgia,") names a person only with one of these, since
/// advice columns address askers by their town ("Hi Tampa,"). Introductions ("my name is",
/// "I'm X,"), sign-offs and signatures need no list.
const GIVEN_NAMES: &[&str] = &[
    "Aaron",
    "Abby",
    "Abdul",
    "Adam",
    "Adrian",
    "Ahmed",
    "Aiden",
    "Aisha",
    "Alan",
    "Albert",
    "Alex",
    "Alexander",
    "Alexandra",
    "Alice",
    "Alicia",
    "Alison",
    "Allison",
    "Amanda",
    "Amber",
    "Amelia",
    "Amir",
    "Amy",
    "Ana",
    "Andrea",
    "Andrew",
    "Angela",
    "Anita",
    "Ann",
    "Anna",
    "Anne",
    "Anthony",
    "Antonio",
    "Arjun",
    "Ashley",
    "Aubrey",
    "Ava",
    "Barbara",
    "Ben",
    "Benjamin",
    "Beth",
    "Bethany",
    "Betty",
    "Bill",
    "Blake",
    "Bob",
    "Brandon",
    "Brenda",
    "Brian",
    "Brittany",
    "Bruce",
    "Caleb",
    "Cameron",
    "Carl",
    "Carla",
    "Carlos",
    "Carmen",
    "Carol",
    "Caroline",
    "Carrie",
    "Casey",
    "Catherine",
    "Chad",
    "Charles",
    "Charlie",
    "Charlotte",
    "Chen",
    "Chloe",
    "Chris",
    "Christina",
    "Christine",
    "Christopher",
    "Cindy",
    "Claire",
    "Claudia",
    "Colin",
    "Connor",
    "Craig",
    "Crystal",
    "Cynthia",
    "Daniel",
    "Danielle",
    "Darius",
    "David",
    "Dawn",
    "Deborah",
    "Debra",
    "Denise",
    "Dennis",
    "Derek",
    "Diana",
    "Diane",
    "Diego",
    "Dmitri",
    "Dominic",
    "Donna",
    "Doris",
    "Dorothy",
    "Dylan",
    "Edward",
    "Elena",
    "Eli",
    "Elijah",
    "Elizabeth",
    "Ella",
    "Ellen",
    "Emily",
    "Emma",
    "Eric",
    "Erica",
    "Erin",
    "Ethan",
    "Eva",
    "Evan",
    "Evelyn",
    "Fatima",
    "Felix",
    "Fiona",
    "Frank",
    "Gabriel",
    "Gary",
    "George",
    "Gloria",
    "Grace",
    "Greg",
    "Gregory",
    "Hailey",
    "Hannah",
    "Harry",
    "Hassan",
    "Heather",
    "Helen",
    "Henry",
    "Holly",
    "Ian",
    "Isaac",
    "Isabel",
    "Isabella",
    "Ivan",
    "Jack",
    "Jacob",
    "Jade",
    "Jake",
    "James",
    "Jamie",
    "Jane",
    "Janet",
    "Jasmine",
    "Jason",
    "Javier",
    "Jay",
    "Jean",
    "Jeff",
    "Jeffrey",
    "Jen",
    "Jenna",
    "Jennifer",
    "Jenny",
    "Jeremy",
    "Jerry",
    "Jess",
    "Jessica",
    "Jesus",
    "Jill",
    "Jim",
    "Joan",
    "Joe",
    "John",
    "Johnny",
    "Jon",
    "Jonathan",
    "Jordan",
    "Jose",
    "Joseph",
    "Josh",
    "Joshua",
    "Joy",
    "Joyce",
    "Juan",
    "Judith",
    "Judy",
    "Julia",
    "Julian",
    "Julie",
    "Justin",
    "Karen",
    "Kate",
    "Katherine",
    "Kathleen",
    "Kathy",
    "Katie",
    "Kayla",
    "Keith",
    "Kelly",
    "Ken",
    "Kenneth",
    "Kevin",
    "Kim",
    "Kimberly",
    "Kumar",
    "Kwame",
    "Kyle",
    "Laura",
    "Lauren",
    "Leah",
    "Lee",
    "Leo",
    "Li",
    "Liam",
    "Lily",
    "Linda",
    "Lindsey",
    "Lisa",
    "Liz",
    "Logan",
    "Lori",
    "Louis",
    "Lucas",
    "Lucy",
    "Luis",
    "Luke",
    "Lydia",
    "Madison",
    "Maggie",
    "Malik",
    "Mandy",
    "Marco",
    "Marcus",
    "Margaret",
    "Maria",
    "Marie",
    "Marisa",
    "Mark",
    "Martha",
    "Martin",
    "Mary",
    "Mason",
    "Matt",
    "Matthew",
    "Maya",
    "Megan",
    "Mei",
    "Melanie",
    "Melissa",
    "Mia",
    "Michael",
    "Michelle",
    "Miguel",
    "Mike",
    "Mila",
    "Mohammed",
    "Molly",
    "Monica",
    "Nadia",
    "Nancy",
    "Natalie",
    "Nathan",
    "Neil",
    "Nicholas",
    "Nick",
    "Nicole",
    "Nina",
    "Noah",
    "Nora",
    "Olga",
    "Oliver",
    "Olivia",
    "Omar",
    "Oscar",
    "Pablo",
    "Pam",
    "Patricia",
    "Patrick",
    "Paul",
    "Paula",
    "Peter",
    "Philip",
    "Priya",
    "Rachel",
    "Rahul",
    "Raj",
    "Ralph",
    "Ravi",
    "Rebecca",
    "Richard",
    "Rick",
    "Rita",
    "Rob",
    "Robert",
    "Robin",
    "Rosa",
    "Rose",
    "Ruby",
    "Ruth",
    "Ryan",
    "Sally",
    "Sam",
    "Samantha",
    "Samuel",
    "Sandra",
    "Sara",
    "Sarah",
    "Scott",
    "Sean",
    "Sergei",
    "Shannon",
    "Sharon",
    "Sophia",
    "Sophie",
    "Stacy",
    "Stephanie",
    "Stephen",
    "Steve",
    "Steven",
    "Susan",
    "Suzanne",
    "Tanya",
    "Tara",
    "Taylor",
    "Teresa",
    "Terry",
    "Thomas",
    "Tiffany",
    "Tim",
    "Timothy",
    "Tina",
    "Todd",
    "Tom",
    "Tony",
    "Tracy",
    "Travis",
    "Tyler",
    "Valerie",
    "Vanessa",
    "Victor",
    "Victoria",
    "Vincent",
    "Walter",
    "Wei",
    "Wendy",
    "William",
    "Xavier",
    "Yasmin",
    "Yusuf",
    "Zach",
    "Zachary",
    "Zara",
    "Zoe",
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
    /// Every value replaced, with its kind, in the order found (for evaluation and for
    /// redacting other mentions of a name; never stored).
    pub values: Vec<(PiiKind, String)>,
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
                let (next, n) = self.apply(*kind, re, &out, &mut found.values);
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
        values: &mut Vec<(PiiKind, String)>,
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
            if kind == PiiKind::Name && !name_context_ok(&caps) {
                continue;
            }
            out.push_str(&text[last..m.start()]);
            out.push_str(kind.placeholder());
            last = m.end();
            n += 1;
            values.push((kind, m.as_str().to_string()));
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
        let mut names: Vec<String> = Vec::new();
        let rejected = conversation.rejected.iter_mut().flatten();
        for m in conversation.messages.iter_mut().chain(rejected) {
            let (text, found) = self.redact(&m.content);
            if !found.kinds.is_empty() {
                m.content = text;
            }
            names.extend(
                found
                    .values
                    .into_iter()
                    .filter(|(k, _)| *k == PiiKind::Name)
                    .map(|(_, v)| v),
            );
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
        // The record is read back from the placeholders alone, so every place of a row (same
        // redacted text) gets the same status whatever order they arrive in.
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

/// A name after "I'm"/"I am" must end its clause ("I'm Rebecca and you?", "I'm Marcus, 34"):
/// "I'm Keen to know" is not an introduction. No name is followed by `'t` ("Hello! Don't").
fn name_context_ok(caps: &regex::Captures<'_>) -> bool {
    let after = caps.name("after").map(|m| m.as_str());
    if after.is_some_and(|a| a.starts_with('\'')) {
        return false;
    }
    if caps.name("im").is_some() {
        if let Some(a) = after {
            return matches!(a.trim(), "and" | "from" | "here" | "by" | "speaking");
        }
    }
    // A relation ("my friend Jennifer", "this guy, Peter") introduces a person only with a given
    // name: "my friend Google" or "my boss Monday" are not people.
    if caps.name("given").is_some() {
        let v = caps.name("v").map_or("", |v| v.as_str());
        return GIVEN_NAMES.contains(&v);
    }
    // A greeting names someone only as a vocative ("Hi Georgia, ..."), not when it runs into a
    // sentence ("Hi, Depression can look different").
    if let Some(greet) = caps.name("greet") {
        let first = caps
            .name("v")
            .map_or("", |v| v.as_str().split(' ').next().unwrap_or(""));
        // "Dear X," is an address to a person whatever the name; "Hi X," only with a given name.
        return after.is_none() && (greet.as_str() == "Dear" || GIVEN_NAMES.contains(&first));
    }
    true
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
            ("Love, Mum", "Love, [NAME]"),
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
        assert_eq!(rec.kinds, vec![(PiiKind::Name, 3)]);

        let off = Redactor::new(&PiiConfig {
            enabled: false,
            ..PiiConfig::default()
        });
        let mut c = conv("mail me at a@b.io");
        assert_eq!(off.redact_conversation(&mut c).status, PiiStatus::Clean);
        assert_eq!(c.messages[0].content, "mail me at a@b.io");
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
