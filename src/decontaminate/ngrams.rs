//! Exact word n-grams, the unit of decontamination. A text's words are its maximal runs of
//! letters and digits, each case-folded as the content hash folds text (so re-spacing,
//! punctuation and case do not hide a copy); an n-gram is the hash of `n` consecutive words.
//! [`Matcher`] holds the n-grams of a benchmark set in memory and finds, per message, the spans
//! (byte ranges of the message) that a benchmark item shares with it. Pure functions: no
//! storage, no configuration file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::normalize::folded_text;

/// Characters of scripts written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar): each
/// is a word of its own.
fn standalone(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF | 0x3040..=0x30FF
        | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// The words of `text` with their byte ranges: runs of letters and digits, and each character
/// of a script written without spaces.
pub fn words(text: &str) -> Vec<(u64, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let alone = standalone(c);
        if let Some(s) = start.filter(|_| alone || !c.is_alphanumeric()) {
            out.push((word_hash(&text[s..i]), s..i));
            start = None;
        }
        if alone {
            out.push((word_hash(&text[i..i + c.len_utf8()]), i..i + c.len_utf8()));
        } else if c.is_alphanumeric() && start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((word_hash(&text[s..]), s..text.len()));
    }
    out
}

fn word_hash(word: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(folded_text(word).as_bytes())
}

/// The hash of each run of `n` consecutive words (none when there are fewer than `n`).
pub fn ngrams(words: &[(u64, Range<usize>)], n: usize) -> Vec<u64> {
    if n == 0 || words.len() < n {
        return Vec::new();
    }
    words
        .windows(n)
        .map(|w| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for (word, _) in w {
                h.update(&word.to_le_bytes());
            }
            h.digest()
        })
        .collect()
}

/// The n-grams of one text, distinct and sorted.
pub fn text_ngrams(text: &str, n: usize) -> Vec<u64> {
    let mut v = ngrams(&words(text), n);
    v.sort_unstable();
    v.dedup();
    v
}

/// Benchmark n-grams in memory: n-gram → the items holding it.
#[derive(Debug, Default)]
pub struct Matcher {
    n: usize,
    /// n-grams in more than this many items are boilerplate and never match.
    max_items: usize,
    map: HashMap<u64, Vec<u32>>,
}

/// A stretch of one message shared with one benchmark item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The item, as numbered by the caller of [`Matcher::add`].
    pub item: u32,
    pub message: u32,
    /// Byte range in the message text.
    pub span: Range<usize>,
    /// The matching n-grams in the span.
    pub ngrams: u32,
}

/// What one row's check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowCheck {
    /// n-grams of the row (every message).
    pub ngrams: u32,
    /// Of them, those found in some item.
    pub matched: u32,
    pub hits: Vec<Hit>,
}

impl Matcher {
    pub fn new(n: usize, max_items: usize) -> Matcher {
        Matcher {
            n,
            max_items,
            map: HashMap::new(),
        }
    }

    /// Add one item's n-grams.
    pub fn add(&mut self, item: u32, ngrams: &[u64]) {
        for &g in ngrams {
            let items = self.map.entry(g).or_default();
            if items.last() != Some(&item) {
                items.push(item);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// n-grams skipped as boilerplate (in more than `max_items` items).
    pub fn boilerplate(&self) -> usize {
        self.map
            .values()
            .filter(|v| v.len() > self.max_items)
            .count()
    }

    /// Check the messages of one row.
    pub fn check<'a>(&self, messages: impl IntoIterator<Item = &'a str>) -> RowCheck {
        let mut out = RowCheck::default();
        for (m, text) in messages.into_iter().enumerate() {
            let words = words(text);
            let grams = ngrams(&words, self.n);
            out.ngrams += grams.len() as u32;
            // Per item, the starting word of each n-gram it shares with the message.
            let mut starts: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (i, g) in grams.iter().enumerate() {
                let Some(items) = self.map.get(g) else {
                    continue;
                };
                if items.len() > self.max_items {
                    continue;
                }
                out.matched += 1;
                for &item in items {
                    starts.entry(item).or_default().push(i);
                }
            }
            for (item, positions) in starts {
                // Overlapping or touching windows make one span.
                let mut run: Option<(usize, usize, u32)> = None;
                for p in positions {
                    run = match run {
                        Some((a, b, k)) if p <= b => Some((a, p + self.n, k + 1)),
                        Some((a, b, k)) => {
                            out.hits.push(hit(item, m, &words, a, b, k));
                            Some((p, p + self.n, 1))
                        }
                        None => Some((p, p + self.n, 1)),
                    };
                }
                if let Some((a, b, k)) = run {
                    out.hits.push(hit(item, m, &words, a, b, k));
                }
            }
        }
        out
    }
}

fn hit(
    item: u32,
    message: usize,
    words: &[(u64, Range<usize>)],
    a: usize,
    b: usize,
    k: u32,
) -> Hit {
    Hit {
        item,
        message: message as u32,
        span: words[a].1.start..words[b - 1].1.end,
        ngrams: k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ITEM: &str = "Which of the following best describes the primary function of the \
                        mitochondria in eukaryotic cells? It produces most of the chemical \
                        energy needed to power the cell's biochemical reactions.";

    fn matcher() -> Matcher {
        let mut m = Matcher::new(13, 10);
        m.add(7, &text_ngrams(ITEM, 13));
        m
    }

    #[test]
    fn a_verbatim_respaced_or_embedded_copy_matches_and_unrelated_text_does_not() {
        let m = matcher();
        let verbatim = m.check([ITEM]);
        assert_eq!(verbatim.matched, verbatim.ngrams);
        assert_eq!(verbatim.hits.len(), 1);
        assert_eq!(verbatim.hits[0].span, 0..ITEM.len() - 1);
        // Re-spaced, re-cased, punctuation moved.
        let respaced = ITEM.replace(' ', "  \n").replace('?', " ?").to_uppercase();
        assert_eq!(m.check([respaced.as_str()]).matched, verbatim.ngrams);
        // Inside a longer message, in the second message of the row.
        let longer = format!("I was studying last night. {ITEM} Anyway, how do I cope with exams?");
        let c = m.check(["hello there", longer.as_str()]);
        assert_eq!(c.hits.len(), 1);
        assert_eq!(c.hits[0].message, 1);
        assert!(longer[c.hits[0].span.clone()].starts_with("Which of the following"));
        assert!(c.matched < c.ngrams);
        // Unrelated text, and a copy of fewer than 13 words.
        assert!(m
            .check(["I can't sleep and my chest feels tight before every exam."])
            .hits
            .is_empty());
        assert!(m
            .check(["the primary function of the mitochondria in eukaryotic cells"])
            .hits
            .is_empty());
    }

    #[test]
    fn scripts_without_spaces_are_read_a_character_at_a_time() {
        let w = words("我睡不着，因为考试 exam2026 ok");
        let texts: Vec<&str> = w
            .iter()
            .map(|(_, r)| &"我睡不着，因为考试 exam2026 ok"[r.clone()])
            .collect();
        assert_eq!(
            texts,
            ["我", "睡", "不", "着", "因", "为", "考", "试", "exam2026", "ok"]
        );
    }

    #[test]
    fn boilerplate_in_many_items_never_matches() {
        let mut m = Matcher::new(3, 2);
        for item in 0..3 {
            m.add(item, &text_ngrams("answer with the letter only", 3));
        }
        assert_eq!(m.boilerplate(), 3);
        assert!(m
            .check(["please answer with the letter only"])
            .hits
            .is_empty());
    }

    proptest! {
        /// Any text: spans lie on char boundaries inside their message, hits never exceed the
        /// n-grams, and a text always fully matches itself when indexed.
        #[test]
        fn spans_are_valid_and_a_text_matches_itself(text in "\\PC{0,300}", n in 1usize..6) {
            let mut m = Matcher::new(n, 1);
            let grams = text_ngrams(&text, n);
            m.add(0, &grams);
            let c = m.check([text.as_str()]);
            prop_assert!(c.matched <= c.ngrams);
            prop_assert_eq!(c.matched, c.ngrams);
            for h in &c.hits {
                prop_assert!(text.is_char_boundary(h.span.start) && text.is_char_boundary(h.span.end));
                prop_assert!(h.span.start < h.span.end && h.span.end <= text.len());
            }
            prop_assert_eq!(c.hits.is_empty(), grams.is_empty());
        }
    }
}
