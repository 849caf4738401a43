//! Measuring the PII detectors: precision and recall per kind against labelled text — a
//! generated set (templates filled with random but valid values, plus look-alikes that are not
//! PII: times, prices, versions, ISBNs, crisis-line numbers) and hand-labelled files in the
//! same JSON Lines shape (`{"text": "...", "pii": [{"kind": "name", "value": "Sarah"}]}`), such as
//! `testdata/pii/casual_chat_labelled.jsonl` (casual chat, with conversations) and
//! `testdata/pii/counsel_chat_labelled.jsonl` (counselling answers). `idx pii eval` prints the figures.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{PiiKind, Redactor};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub text: String,
    #[serde(default)]
    pub pii: Vec<Label>,
    /// Consecutive samples with the same conversation id are the messages of one conversation,
    /// redacted together as idx redacts a row (a name introduced in one message is redacted
    /// in the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub kind: PiiKind,
    pub value: String,
}

/// Scores of one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindScore {
    /// Labelled values.
    pub expected: u64,
    /// Values the redactor replaced.
    pub detected: u64,
    /// Detected values that match a label of the same kind.
    pub correct: u64,
    pub precision: f64,
    pub recall: f64,
}

/// Scores of one labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub set: String,
    pub samples: u64,
    pub by_kind: BTreeMap<PiiKind, KindScore>,
    pub precision: f64,
    pub recall: f64,
    /// The first misses and false alarms, for a human to look at.
    pub misses: Vec<String>,
    pub false_alarms: Vec<String>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn same(a: &str, b: &str) -> bool {
    let trim = |s: &str| {
        s.trim_matches(|c: char| c.is_whitespace() || ",.;:!?".contains(c))
            .to_lowercase()
    };
    let (a, b) = (trim(a), trim(b));
    !a.is_empty() && !b.is_empty() && (a == b || a.contains(&b) || b.contains(&a))
}

/// Score a redactor on labelled samples.
pub fn evaluate(redactor: &Redactor, set: &str, samples: &[Sample]) -> EvalReport {
    let mut by_kind: BTreeMap<PiiKind, KindScore> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut false_alarms = Vec::new();
    let mut detections = Vec::with_capacity(samples.len());
    for group in
        samples.chunk_by(|a, b| a.conversation.is_some() && a.conversation == b.conversation)
    {
        if group[0].conversation.is_none() {
            detections.extend(group.iter().map(|s| redactor.redact(&s.text).1.values));
            continue;
        }
        let mut conversation = crate::model::Conversation {
            kind: crate::model::RecordKind::Chatml,
            messages: group
                .iter()
                .map(|s| crate::model::Message::new(crate::model::Role::User, s.text.clone()))
                .collect(),
            rejected: None,
            label: None,
        };
        redactor.redact_conversation(&mut conversation);
        for (s, m) in group.iter().zip(&conversation.messages) {
            detections.push(super::numbering::replaced_values(&s.text, &m.content));
        }
    }
    for (s, values) in samples.iter().zip(detections) {
        let mut unmatched: Vec<&Label> = s.pii.iter().collect();
        for l in &s.pii {
            by_kind.entry(l.kind).or_default().expected += 1;
        }
        for (kind, value) in &values {
            let score = by_kind.entry(*kind).or_default();
            score.detected += 1;
            match unmatched
                .iter()
                .position(|l| l.kind == *kind && same(&l.value, value))
            {
                Some(i) => {
                    score.correct += 1;
                    unmatched.remove(i);
                }
                None => {
                    if false_alarms.len() < 20 {
                        false_alarms.push(format!("{kind} `{value}` in: {}", s.text));
                    }
                }
            }
        }
        for l in unmatched {
            if misses.len() < 20 {
                misses.push(format!("{} `{}` in: {}", l.kind, l.value, s.text));
            }
        }
    }
    let (mut correct, mut detected, mut expected) = (0, 0, 0);
    for score in by_kind.values_mut() {
        score.precision = ratio(score.correct, score.detected);
        score.recall = ratio(score.correct, score.expected);
        correct += score.correct;
        detected += score.detected;
        expected += score.expected;
    }
    EvalReport {
        set: set.to_string(),
        samples: samples.len() as u64,
        by_kind,
        precision: ratio(correct, detected),
        recall: ratio(correct, expected),
        misses,
        false_alarms,
    }
}

/// Read a labelled JSON Lines file.
pub fn load(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let sample: Sample = serde_json::from_str(line).map_err(|e| Error::Config {
            path: format!("{}:{}", path.display(), i + 1),
            message: e.to_string(),
        })?;
        out.push(sample);
    }
    Ok(out)
}

const FIRST: &[&str] = &[
    "Sarah", "Marcus", "Priya", "John", "Aisha", "Tom", "Elena", "Kwame", "Mei", "Lucas", "Fatima",
    "Oliver", "Noah", "Grace", "Diego", "Hannah", "Ivan", "Zoe", "Omar", "Chloe",
];
const LAST: &[&str] = &[
    "Collins", "Nguyen", "Patel", "Smith", "Okafor", "Garcia", "Müller", "Kowalski", "Brown",
    "Silva", "Johnson", "Khan",
];
const STREETS: &[&str] = &[
    "Maple",
    "Oak",
    "Elm",
    "Cedar Hill",
    "Sunset",
    "Park",
    "Mill",
    "King George",
    "Church",
];
const STREET_TYPES: &[&str] = &[
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Lane",
    "Drive",
    "Boulevard",
    "Court",
    "Way",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "example.org",
    "mail.co.uk",
    "uni.edu",
    "proton.me",
];

fn card(rng: &mut Rng) -> String {
    let (prefix, len) = match rng.below(4) {
        0 => ("4", 16),
        1 => ("5", 16),
        2 => ("37", 15),
        _ => ("6011", 16),
    };
    let mut digits: Vec<u32> = prefix.chars().filter_map(|c| c.to_digit(10)).collect();
    while digits.len() < len - 1 {
        digits.push(rng.below(10) as u32);
    }
    for check in 0..10 {
        let mut d = digits.clone();
        d.push(check);
        if super::patterns::luhn(&d) {
            digits = d;
            break;
        }
    }
    let s: String = digits.iter().map(|d| char::from(b'0' + *d as u8)).collect();
    match rng.below(3) {
        0 => s,
        sep => {
            let sep = if sep == 1 { " " } else { "-" };
            s.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(sep)
        }
    }
}

fn phone(rng: &mut Rng) -> String {
    let n = |rng: &mut Rng, k: u32| -> String {
        (0..k)
            .map(|i| {
                let d = rng.below(10);
                char::from(b'0' + if i == 0 { 2 + d % 6 } else { d } as u8)
            })
            .collect()
    };
    match rng.below(7) {
        0 => format!("({}) {}-{}", n(rng, 3), n(rng, 3), n(rng, 4)),
        1 => format!("{}-{}-{}", n(rng, 3), n(rng, 3), n(rng, 4)),
        2 => format!("+1 {} {} {}", n(rng, 3), n(rng, 3), n(rng, 4)),
        3 => format!("+44 20 {} {}", n(rng, 4), n(rng, 4)),
        4 => format!("07{} {}", n(rng, 3), n(rng, 6)),
        5 => format!("{}.{}.{}", n(rng, 3), n(rng, 3), n(rng, 4)),
        _ => format!("+49 30 {}", n(rng, 8)),
    }
}

/// The generated labelled set: `per_kind` positives per kind and as many negatives.
pub fn generated(per_kind: usize) -> Vec<Sample> {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut out = Vec::new();
    let label = |kind, value: &str| Label {
        kind,
        value: value.to_string(),
    };
    for _ in 0..per_kind {
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let email = format!(
            "{}.{}{}@{}",
            first.to_lowercase(),
            last.to_lowercase().replace('ü', "u"),
            rng.below(100),
            rng.pick(DOMAINS)
        );
        out.push(Sample {
            text: format!("You can email me at {email} if you want to talk more."),
            pii: vec![label(PiiKind::Email, &email)],
            conversation: None,
        });
        let p = phone(&mut rng);
        out.push(Sample {
            text: format!("My number is {p}, call after work."),
            pii: vec![label(PiiKind::Phone, &p)],
            conversation: None,
        });
        let ssn = format!(
            "{:03}-{:02}-{:04}",
            1 + rng.below(665),
            1 + rng.below(99),
            1 + rng.below(9999)
        );
        out.push(Sample {
            text: format!("They asked for my SSN {ssn} on the form."),
            pii: vec![label(PiiKind::Ssn, &ssn)],
            conversation: None,
        });
        let c = card(&mut rng);
        out.push(Sample {
            text: format!("I paid with card {c} and it was declined."),
            pii: vec![label(PiiKind::Card, &c)],
            conversation: None,
        });
        let ip = if rng.below(4) == 0 {
            format!(
                "2001:db8:{:x}::{:x}",
                rng.below(0xffff),
                1 + rng.below(0xfffe)
            )
        } else {
            format!(
                "{}.{}.{}.{}",
                1 + rng.below(223),
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            )
        };
        out.push(Sample {
            text: format!("The logs show a login from {ip} last night."),
            pii: vec![label(PiiKind::Ip, &ip)],
            conversation: None,
        });
        let url = match rng.below(3) {
            0 => format!(
                "https://www.instagram.com/{}_{}",
                first.to_lowercase(),
                rng.below(1000)
            ),
            1 => format!(
                "https://forum.example.org/profile?user={}&id={}",
                first.to_lowercase(),
                rng.below(100_000)
            ),
            _ => format!(
                "https://medium.com/@{}{}",
                first.to_lowercase(),
                rng.below(99)
            ),
        };
        out.push(Sample {
            text: format!("Here is my page {url} if you want to see."),
            pii: vec![label(PiiKind::Url, &url)],
            conversation: None,
        });
        let address = format!(
            "{} {} {}",
            1 + rng.below(9999),
            rng.pick(STREETS),
            rng.pick(STREET_TYPES)
        );
        out.push(Sample {
            text: format!("We moved to {address} last spring."),
            pii: vec![label(PiiKind::Address, &address)],
            conversation: None,
        });
        let (cue, dob) = match rng.below(3) {
            0 => (
                "I was born on",
                format!(
                    "{}/{}/{}",
                    1 + rng.below(12),
                    1 + rng.below(28),
                    1950 + rng.below(60)
                ),
            ),
            1 => (
                "DOB:",
                format!(
                    "{} {}, {}",
                    rng.pick(MONTHS),
                    1 + rng.below(28),
                    1950 + rng.below(60)
                ),
            ),
            _ => (
                "My date of birth is",
                format!(
                    "{} {} {}",
                    1 + rng.below(28),
                    rng.pick(MONTHS),
                    1950 + rng.below(60)
                ),
            ),
        };
        out.push(Sample {
            text: format!("{cue} {dob} and I feel old."),
            pii: vec![label(PiiKind::DateOfBirth, &dob)],
            conversation: None,
        });
        let (text, name) = match rng.below(7) {
            0 => (
                format!("Hi, my name is {first} and I need help."),
                first.to_string(),
            ),
            1 => (
                format!("I'm {first}, I have been anxious lately."),
                first.to_string(),
            ),
            2 => (
                format!("Thank you for listening. Thanks, {first}"),
                first.to_string(),
            ),
            3 => (
                format!("Dear {first} {last}, I wanted to write to you."),
                format!("{first} {last}"),
            ),
            4 => (format!("Please call me {first}."), first.to_string()),
            5 => (
                format!("My best friend {first} says I should talk to someone."),
                first.to_string(),
            ),
            _ => (
                format!("That is all for now. - {first} {last}"),
                format!("{first} {last}"),
            ),
        };
        out.push(Sample {
            text,
            pii: vec![label(PiiKind::Name, &name)],
            conversation: None,
        });
        // Look-alikes that are not PII.
        let negative = match rng.below(10) {
            0 => format!(
                "We met at {}:{:02} and again at {}:{:02}.",
                1 + rng.below(12),
                rng.below(60),
                13 + rng.below(10),
                rng.below(60)
            ),
            1 => format!(
                "It cost ${},{:03}.{:02} in {}.",
                1 + rng.below(99),
                rng.below(1000),
                rng.below(100),
                1990 + rng.below(35)
            ),
            2 => format!(
                "Update to version {}.{}.{} before Monday.",
                rng.below(20),
                rng.below(20),
                rng.below(100)
            ),
            3 => format!(
                "The ISBN is 978-{}-{:02}-{:06}-{}.",
                rng.below(10),
                rng.below(100),
                rng.below(1_000_000),
                rng.below(10)
            ),
            4 => "If you are in danger call 988 or 911 right now.".to_string(),
            5 => format!(
                "Between {} and {} I worked {} hours a week.",
                1990 + rng.below(10),
                2000 + rng.below(20),
                20 + rng.below(40)
            ),
            6 => format!(
                "I'm {} and I'm not sure what to do.",
                rng.pick(&["Tired", "Lost", "Scared", "Overwhelmed"])
            ),
            7 => format!(
                "The meeting is on {} {}, {}.",
                rng.pick(MONTHS),
                1 + rng.below(28),
                2020 + rng.below(6)
            ),
            8 => "Visit https://988lifeline.org for the chat.".to_string(),
            _ => format!(
                "My score went from {} to {} in {} weeks.",
                100 + rng.below(50),
                120 + rng.below(50),
                2 + rng.below(10)
            ),
        };
        out.push(Sample {
            text: negative,
            pii: Vec::new(),
            conversation: None,
        });
    }
    out
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
