//! Generated corpora for the benches, deterministic (fixed seeds) and written as JSONL files of
//! up to 8 MB under `datasets/consolidated/`:
//! - `generated`: multi-turn counselling-style conversations over a Zipf vocabulary, each with
//!   its own topic words, 5% exact duplicates;
//! - `chat`: long casual two-person chats (20-70 short turns) full of first names, times, dates,
//!   amounts and the odd phone number or e-mail address, so PII detection has work on most rows;
//! - `templated`: rows filled in from a few dozen long templates (a handful of slots each), so
//!   rows share most of their words and SimHash proposes many candidates per row;
//! - `short` (not among the ingest corpora; the query and scale benches): short multi-turn
//!   conversations (2-4 turns of 8-30 words, about 700 bytes), 1,000 rows per file.

#![allow(dead_code)] // shared by several benches, each using a part

use std::io::Write;
use std::path::Path;

use idx::rng::Rng;

/// Which corpus to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corpus {
    Generated,
    Chat,
    Templated,
    Short,
}

impl Corpus {
    pub const ALL: [Corpus; 3] = [Corpus::Generated, Corpus::Chat, Corpus::Templated];

    pub fn name(self) -> &'static str {
        match self {
            Corpus::Generated => "generated",
            Corpus::Chat => "chat",
            Corpus::Templated => "templated",
            Corpus::Short => "short",
        }
    }

    /// The corpora named in `IDX_BENCH_CORPUS` (comma-separated), all three without it.
    pub fn from_env() -> Vec<Corpus> {
        match std::env::var("IDX_BENCH_CORPUS") {
            Ok(v) => [
                Corpus::Generated,
                Corpus::Chat,
                Corpus::Templated,
                Corpus::Short,
            ]
            .into_iter()
            .filter(|c| v.split(',').any(|n| n.trim() == c.name()))
            .collect(),
            Err(_) => Corpus::ALL.to_vec(),
        }
    }

    /// Writes about `target_bytes` of this corpus under `dir` in files of 8 MB; returns
    /// (bytes, rows).
    pub fn generate(self, dir: &Path, target_bytes: u64) -> (u64, u64) {
        self.generate_files(dir, target_bytes, 8 << 20)
    }

    /// Writes about `target_bytes` of this corpus under `dir` in files of about `file_bytes`;
    /// returns (bytes, rows).
    pub fn generate_files(self, dir: &Path, target_bytes: u64, file_bytes: u64) -> (u64, u64) {
        match self {
            Corpus::Generated => generate_topical(dir, target_bytes, file_bytes),
            Corpus::Chat => generate_chat(dir, target_bytes, file_bytes),
            Corpus::Templated => generate_templated(dir, target_bytes, file_bytes),
            Corpus::Short => generate_short(dir, target_bytes, file_bytes),
        }
    }
}

/// Writes rows made by `row` into files of `file_limit` bytes until `target_bytes`; returns
/// (bytes, rows).
fn write_files(
    dir: &Path,
    target_bytes: u64,
    file_limit: u64,
    mut row: impl FnMut() -> String,
) -> (u64, u64) {
    let (mut bytes, mut rows, mut file_no) = (0u64, 0u64, 0);
    while bytes < target_bytes {
        let path = dir.join(format!(
            "datasets/consolidated/conversations_{file_no:05}.jsonl"
        ));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut file_bytes = 0u64;
        while file_bytes < file_limit && bytes + file_bytes < target_bytes {
            let line = row();
            writeln!(out, "{line}").unwrap();
            file_bytes += line.len() as u64 + 1;
            rows += 1;
        }
        out.flush().unwrap();
        bytes += file_bytes;
        file_no += 1;
    }
    (bytes, rows)
}

fn conversation(messages: impl IntoIterator<Item = String>) -> String {
    let messages: Vec<serde_json::Value> = messages
        .into_iter()
        .enumerate()
        .map(|(t, content)| {
            let role = if t % 2 == 0 { "user" } else { "assistant" };
            serde_json::json!({"role": role, "content": content})
        })
        .collect();
    serde_json::json!({ "messages": messages }).to_string()
}

const WORDS: &[&str] = &[
    "I",
    "feel",
    "anxious",
    "about",
    "work",
    "and",
    "my",
    "sleep",
    "has",
    "been",
    "bad",
    "lately",
    "you",
    "mentioned",
    "that",
    "your",
    "sister",
    "called",
    "what",
    "did",
    "it",
    "bring",
    "up",
    "for",
    "you",
    "sometimes",
    "when",
    "we",
    "are",
    "tired",
    "everything",
    "seems",
    "heavier",
    "can",
    "tell",
    "me",
    "more",
    "the",
    "panic",
    "started",
    "last",
    "week",
    "at",
    "a",
    "meeting",
    "breathing",
    "exercise",
    "helped",
    "little",
    "but",
    "thoughts",
    "keep",
    "racing",
    "night",
    "it",
    "sounds",
    "exhausting",
    "to",
    "carry",
    "alone",
    "who",
    "else",
    "knows",
    "how",
    "hard",
    "this",
    "is",
    "therapy",
    "session",
    "goal",
    "trauma",
    "recovery",
    "shame",
    "boundaries",
    "parents",
    "childhood",
    "memories",
    "grief",
    "loss",
    "friend",
    "lonely",
    "isolated",
    "hope",
    "small",
    "steps",
    "today",
    "tomorrow",
    "plan",
    "notice",
    "body",
    "tension",
    "shoulders",
    "gentle",
    "kind",
    "yourself",
    "progress",
    "not",
    "linear",
    "setback",
    "normal",
    "okay",
];

/// A vocabulary like natural text's: the counselling words above plus 4,000 generated words,
/// drawn with a Zipf-like law (rank r has weight 1/r).
pub struct Vocabulary {
    pub words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    pub fn new(rng: &mut Rng) -> Self {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ren", "sa", "tor", "vel", "an", "is", "ur", "del", "mon", "pra",
            "ste", "qui", "ba", "ne", "ho", "ly", "gra",
        ];
        let mut words: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
        while words.len() < WORDS.len() + 4000 {
            let n = 2 + rng.below(3);
            words.push(
                (0..n)
                    .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                    .collect(),
            );
        }
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|r| {
                total += 1.0 / r as f64;
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    pub fn pick(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let i = self.cumulative.partition_point(|&c| c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
}

/// A sentence: like real conversations, each one keeps coming back to its own topic words
/// (bursty), over a background of common words. (Word soup drawn independently from one small
/// list would make every long text look alike to any bag-of-words fingerprint.)
pub fn sentence(rng: &mut Rng, vocabulary: &Vocabulary, topic: &[String], words: usize) -> String {
    let mut s = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        if rng.below(10) < 3 {
            s.push_str(&topic[rng.below(topic.len())]);
        } else {
            s.push_str(vocabulary.pick(rng));
        }
    }
    s.push('.');
    s
}

/// The counselling-vocabulary corpus; returns (bytes, rows).
fn generate_topical(dir: &Path, target_bytes: u64, file_bytes: u64) -> (u64, u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let vocabulary = Vocabulary::new(&mut rng);
    let mut previous: Vec<String> = Vec::new();
    write_files(dir, target_bytes, file_bytes, || {
        let line = if !previous.is_empty() && rng.below(20) == 0 {
            previous[rng.below(previous.len())].clone()
        } else {
            let turns = 2 + rng.below(6);
            let topic: Vec<String> = (0..12)
                .map(|_| vocabulary.words[rng.below(vocabulary.words.len())].clone())
                .collect();
            conversation((0..turns).map(|_| {
                let len = 15 + rng.below(60);
                sentence(&mut rng, &vocabulary, &topic, len)
            }))
        };
        if previous.len() < 1000 {
            previous.push(line.clone());
        }
        line
    })
}

const FIRST_NAMES: &[&str] = &[
    "Sarah", "James", "Maria", "David", "Aisha", "Tom", "Priya", "Lucas", "Emma", "Noah", "Olivia",
    "Liam", "Sofia", "Mateo", "Chloe", "Ethan", "Mia", "Omar", "Grace", "Daniel", "Hannah", "Jack",
    "Zoe", "Ben", "Lily", "Sam", "Nina", "Leo", "Ava", "Max", "Ella", "Ryan", "Julia", "Kevin",
    "Laura", "Mark", "Anna", "Paul", "Rosa", "Chen",
];

const CHAT_LINES: &[&str] = &[
    "hey {name}! how was your day",
    "not bad, just tired honestly. work ran late again",
    "did you get to the gym at {time}",
    "no I skipped it, felt kind of down",
    "that's okay, some days are like that",
    "my sister {name} called and we argued about money again, she still owes me ${amount}",
    "ugh that sounds stressful. are you okay?",
    "I think so. I just keep replaying it in my head",
    "want to grab coffee on {date}? maybe around {time}",
    "sure, the place on {number} Main Street?",
    "I haven't been sleeping well, maybe {number} hours a night",
    "have you tried putting the phone away an hour before bed",
    "lol I know I should. it's hard when my mind is racing",
    "I'm proud of you for talking about it though",
    "thanks {name}, that means a lot",
    "remind me to call the doctor, the number is {phone}",
    "my new email is {email} btw",
    "honestly I feel like nobody at work even notices me",
    "that sounds really lonely. what happened today",
    "my boss {name} moved the deadline to {date} without asking anyone",
    "that's so unfair, you've been putting in {number} hour weeks",
    "I know right. anyway how's your mom doing",
    "better, she's home since {date}, the bill was ${amount} though",
    "oh wow. let me know if I can help with anything",
    "I'm okay. just need a weekend off",
    "same. see you {date}?",
    "yes!! I'll text you at {time}",
    "haha ok. take care of yourself",
];

/// One casual chat line with its slots filled.
fn chat_line(rng: &mut Rng) -> String {
    let template = CHAT_LINES[rng.below(CHAT_LINES.len())];
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').unwrap();
        match &rest[open + 1..close] {
            "name" => out.push_str(FIRST_NAMES[rng.below(FIRST_NAMES.len())]),
            "time" => out.push_str(&format!("{}:{:02}", 1 + rng.below(12), rng.below(60))),
            "date" => out.push_str(&format!("{}/{}", 1 + rng.below(12), 1 + rng.below(28))),
            "amount" => out.push_str(&format!("{}", 5 + rng.below(2000))),
            "number" => out.push_str(&format!("{}", 1 + rng.below(300))),
            "phone" => out.push_str(&format!(
                "({}) 555-{:04}",
                200 + rng.below(700),
                rng.below(10_000)
            )),
            "email" => out.push_str(&format!(
                "{}.{}@example.com",
                FIRST_NAMES[rng.below(FIRST_NAMES.len())].to_lowercase(),
                rng.below(1000)
            )),
            other => panic!("unknown slot {other}"),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Long casual two-person chats: 20-70 turns of one to three chat lines each.
fn generate_chat(dir: &Path, target_bytes: u64, file_bytes: u64) -> (u64, u64) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    write_files(dir, target_bytes, file_bytes, || {
        let turns = 20 + rng.below(51);
        conversation((0..turns).map(|_| {
            let lines = 1 + rng.below(3);
            (0..lines)
                .map(|_| chat_line(&mut rng))
                .collect::<Vec<_>>()
                .join(". ")
        }))
    })
}

/// Rows from 40 long templates (60-120 words, 6 slots each), each slot from 8 choices: rows of
/// one template share over 90% of their words.
fn generate_templated(dir: &Path, target_bytes: u64, file_bytes: u64) -> (u64, u64) {
    let mut rng = Rng(0x8BB8_4B93_962E_ACC9);
    let vocabulary = Vocabulary::new(&mut rng);
    let templates: Vec<(Vec<String>, Vec<String>)> = (0..40)
        .map(|_| {
            let topic: Vec<String> = (0..12)
                .map(|_| vocabulary.words[rng.below(vocabulary.words.len())].clone())
                .collect();
            let (q, a) = (60 + rng.below(61), 60 + rng.below(61));
            let question = sentence(&mut rng, &vocabulary, &topic, q);
            let answer = sentence(&mut rng, &vocabulary, &topic, a);
            let split = |s: String| s.split(' ').map(str::to_string).collect::<Vec<_>>();
            (split(question), split(answer))
        })
        .collect();
    let fill = |rng: &mut Rng, words: &[String]| -> String {
        let mut words = words.to_vec();
        for _ in 0..6 {
            let at = rng.below(words.len());
            words[at] = vocabulary.words[rng.below(8) * 37].clone();
        }
        words.join(" ")
    };
    write_files(dir, target_bytes, file_bytes, || {
        let (question, answer) = &templates[rng.below(templates.len())];
        let turns = 2 * (1 + rng.below(2));
        conversation((0..turns).map(|t| fill(&mut rng, if t % 2 == 0 { question } else { answer })))
    })
}

/// Short multi-turn conversations (2-4 turns of 8-30 words), 1,000 rows per file whatever
/// `file_bytes` says (so an object has 1,000 rows, as `query source` is measured on).
fn generate_short(dir: &Path, target_bytes: u64, _file_bytes: u64) -> (u64, u64) {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    let vocabulary = Vocabulary::new(&mut rng);
    let (mut bytes, mut rows, mut file_no) = (0u64, 0u64, 0);
    while bytes < target_bytes {
        let path = dir.join(format!("datasets/consolidated/short_{file_no:05}.jsonl"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for _ in 0..1000 {
            let topic: Vec<String> = (0..8)
                .map(|_| vocabulary.words[rng.below(vocabulary.words.len())].clone())
                .collect();
            let turns = 2 + rng.below(3);
            let line = conversation((0..turns).map(|_| {
                let len = 8 + rng.below(23);
                sentence(&mut rng, &vocabulary, &topic, len)
            }));
            writeln!(out, "{line}").unwrap();
            bytes += line.len() as u64 + 1;
            rows += 1;
        }
        out.flush().unwrap();
        file_no += 1;
    }
    (bytes, rows)
}
