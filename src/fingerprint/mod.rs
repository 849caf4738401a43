//! Row fingerprints: the 128-bit exact-duplicate key (`content_hash`), the 64-bit SimHash and the
//! o200k_base token count. Inputs are canonical conversations (see `normalize`); nothing here
//! touches storage.
//!
//! - `content_hash`: XXH3-128 over an unambiguous, length-prefixed encoding of the content class,
//!   each message's role and *folded* content, the rejected answer and the KTO label. Rows that
//!   differ only in spacing, CRLF, compatibility forms or case therefore share a hash.
//! - `variant_hash`: the same over the unfolded canonical text; it tells apart the spellings of one
//!   row so a representative can be chosen independently of ingest order.
//! - SimHash: Charikar's SimHash exactly as the `simhash` crate's `simhash()` defines it (each
//!   whitespace-separated word hashed with SipHash-2-4 under zero keys through `Hash for str`, one
//!   vote per bit per occurrence), over the *fingerprint text*: the folded text where each message
//!   is prefixed by its role word. Words, not shingles, feed the SimHash on purpose: near-duplicates
//!   are *judged* by the Jaccard similarity of word 3-shingle sets ([`shingle_set`]), and a word
//!   SimHash stays within a few bits for pairs at Jaccard 0.8 where a 3-shingle SimHash drifts
//!   ten bits apart (measured on the real ESConv dialogues with 1-10% token edits: recall at
//!   Hamming 3 is 0.82 with words against 0.12 with 3-shingles; see `docs/NEAR_DUPLICATES.md`).
//!   The crate's accumulator branches on every bit of every feature, which profiling showed to be
//!   a third of ingest time; [`simhash_of`] computes the identical value branch-free, and a test
//!   checks it against the crate itself.
//! - `words`: the number of words of the fingerprint text, which decides whether a row is long
//!   enough for near-duplicate matching.
//!
//! The word 3-shingle sets that confirm a near-duplicate are in `shingles`.

use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3;

use crate::model::{Conversation, Message};
use crate::normalize::folded_text;

mod shingles;

pub use shingles::{
    jaccard, jaccard_at_least, shingle_set, ShingleSummary, Shingles, SHINGLE_WORDS,
};

/// Hashing for maps keyed by content hashes, which are uniformly distributed already: the
/// key's two halves folded (and, for a compound key, rotated into what came before) instead of
/// SipHash over 16 bytes, which was a tenth of the writer's cluster work. Content hashes come
/// from xxh3 of the content, so keys cannot be chosen to collide short of colliding the hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hash128Hasher(u64);

impl std::hash::Hasher for Hash128Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only for keys other than a Hash128: hash them properly.
        self.0 = self.0.rotate_left(32) ^ xxhash_rust::xxh3::xxh3_64(bytes);
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = self.0.rotate_left(32) ^ (n as u64) ^ ((n >> 64) as u64);
    }
}

/// A map keyed by content hashes (see [`Hash128Hasher`]).
pub type Hash128Map<V> = HashMap<Hash128, V, std::hash::BuildHasherDefault<Hash128Hasher>>;
/// A set of content hashes (see [`Hash128Hasher`]).
pub type Hash128Set =
    std::collections::HashSet<Hash128, std::hash::BuildHasherDefault<Hash128Hasher>>;

/// A 128-bit content hash, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash128(pub u128);

impl Hash128 {
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Hash128)
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let arr: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(Hash128(u128::from_be_bytes(arr)))
    }
}

impl std::fmt::Display for Hash128 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// All fingerprints of one canonical conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprints {
    pub content_hash: Hash128,
    pub variant_hash: Hash128,
    pub simhash: u64,
    pub tokens: u64,
    /// Words of the fingerprint text (role words included).
    pub words: u32,
}

/// Compute every fingerprint of a canonical conversation.
pub fn fingerprint(conversation: &Conversation) -> Fingerprints {
    fingerprint_with_text(conversation).0
}

/// [`fingerprint`] and the shingles of the same fingerprint text, made from it once: what ingest
/// makes on its worker threads, so a new row's near-duplicate check reads no stored text.
pub fn fingerprint_and_shingles(conversation: &Conversation) -> (Fingerprints, Shingles) {
    let (fp, text) = fingerprint_with_text(conversation);
    (fp, Shingles::of_text(&text))
}

fn fingerprint_with_text(conversation: &Conversation) -> (Fingerprints, String) {
    let folded: Vec<(u8, String)> = conversation
        .all_messages()
        .map(|m| (m.role as u8, folded_text(&m.content)))
        .collect();
    let content_hash = hash_parts(conversation, folded.iter().map(|(r, s)| (*r, s.as_str())));
    let variant_hash = hash_parts(
        conversation,
        conversation
            .all_messages()
            .map(|m| (m.role as u8, m.content.as_str())),
    );
    let text = fingerprint_text_of(conversation, folded.iter().map(|(_, s)| s.as_str()));
    let (simhash, words) = simhash_and_words(&text);
    let fp = Fingerprints {
        content_hash,
        variant_hash,
        simhash,
        tokens: count_tokens(conversation.all_messages()),
        words,
    };
    (fp, text)
}

/// The text SimHash and shingles are computed over: each message's role word and folded content,
/// single-space separated. Every spelling of a row gives the same fingerprint text.
pub fn fingerprint_text(conversation: &Conversation) -> String {
    let folded: Vec<String> = conversation
        .all_messages()
        .map(|m| folded_text(&m.content))
        .collect();
    fingerprint_text_of(conversation, folded.iter().map(String::as_str))
}

fn fingerprint_text_of<'a>(
    conversation: &Conversation,
    folded: impl Iterator<Item = &'a str>,
) -> String {
    let mut out = String::new();
    for (m, text) in conversation.all_messages().zip(folded) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(m.role.as_str());
        out.push(':');
        if !text.is_empty() {
            out.push(' ');
            out.push_str(text);
        }
    }
    out
}

fn hash_parts<'a>(
    conversation: &Conversation,
    parts: impl Iterator<Item = (u8, &'a str)>,
) -> Hash128 {
    let mut h = Xxh3::new();
    h.update(&[conversation.kind.content_class()]);
    let chosen = conversation.messages.len() as u64;
    h.update(&chosen.to_le_bytes());
    for (role, text) in parts {
        h.update(&[role]);
        h.update(&(text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    match conversation.label {
        None => h.update(&[2]),
        Some(l) => h.update(&[u8::from(l)]),
    }
    Hash128(h.digest128())
}

/// SimHash of single-space separated text over its words (see module doc).
pub fn simhash_of(text: &str) -> u64 {
    simhash_and_words(text).0
}

fn simhash_and_words(text: &str) -> (u64, u32) {
    let mut acc = SimhashAccumulator::default();
    let mut words = 0u32;
    for w in text.split(' ').filter(|w| !w.is_empty()) {
        acc.add(w);
        words = words.saturating_add(1);
    }
    (acc.finish(), words)
}

/// Bit votes of the features seen so far (the `simhash` crate's algorithm, without branches).
struct SimhashAccumulator {
    votes: [i32; 64],
}

impl Default for SimhashAccumulator {
    fn default() -> Self {
        SimhashAccumulator { votes: [0; 64] }
    }
}

impl SimhashAccumulator {
    fn add(&mut self, feature: &str) {
        use std::hash::{Hash, Hasher};
        let mut hasher = siphasher::sip::SipHasher::default();
        feature.hash(&mut hasher);
        let h = hasher.finish();
        for (i, v) in self.votes.iter_mut().enumerate() {
            // +1 for a set bit, -1 for a clear one; saturation cannot occur below 2^31 features.
            *v += (((h >> i) & 1) as i32) * 2 - 1;
        }
    }

    fn finish(&self) -> u64 {
        self.votes
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, &v)| acc | (u64::from(v > 0) << i))
    }
}

/// o200k_base tokens of the message contents (chat-template overhead not included).
///
/// The same as `o200k_base().count` of each content: the tokenizer's pre-tokenizer splits a
/// text into pieces (a word with its leading space, a run of digits, punctuation) and each piece
/// is encoded on its own, so a piece's count depends on nothing else. No piece holds a
/// non-whitespace character followed by a space, so a text is also the concatenation of its
/// *words* (cut before every space that follows a non-space: `" said,"`, `" 42"`), each split
/// on its own as it is in the text. Words repeat (Zipf), and both the pre-tokenizer's regex and
/// the byte-pair encoder cost far more than a hash lookup, so each thread remembers the counts
/// of the short words it has seen: most words of a corpus are answered by one lookup, and
/// only the others are split.
pub fn count_tokens<'a>(messages: impl Iterator<Item = &'a Message>) -> u64 {
    TOKEN_COUNTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        messages.map(|m| cache.count(m.content.as_str())).sum()
    })
}

thread_local! {
    static TOKEN_COUNTS: std::cell::RefCell<TokenCounts> = std::cell::RefCell::new(TokenCounts::default());
}

/// Remembered token counts, bounded: each map is emptied when full (a corpus' common words
/// come back at once).
#[derive(Default)]
struct TokenCounts {
    /// Words (see [`count_tokens`]) of at most `MAX_WORD` bytes: the sum of their pieces' counts.
    words: HashMap<Box<str>, u32, xxhash_rust::xxh3::Xxh3Builder>,
    /// Pieces of longer words, of at most `MAX_PIECE` bytes: each piece's own count.
    pieces: HashMap<Box<str>, u32, xxhash_rust::xxh3::Xxh3Builder>,
}

impl TokenCounts {
    /// Longer words are split each time (their short pieces are remembered).
    const MAX_WORD: usize = 32;
    /// Longer pieces are encoded each time (rare, and they would crowd the cache).
    const MAX_PIECE: usize = 24;
    /// Entries kept at most per map (a few MB).
    const CAPACITY: usize = 1 << 16;

    fn count(&mut self, text: &str) -> u64 {
        let tokenizer = bpe_openai::o200k_base();
        let text = tokenizer.normalize(text);
        let text = text.as_str();
        let mut total = 0u64;
        let mut start = 0;
        for (at, _) in text.match_indices(' ') {
            if text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| !c.is_whitespace())
            {
                total += self.count_word(tokenizer, &text[start..at]);
                start = at;
            }
        }
        total + self.count_word(tokenizer, &text[start..])
    }

    fn count_word(&mut self, tokenizer: &bpe_openai::Tokenizer, word: &str) -> u64 {
        if word.is_empty() {
            return 0;
        }
        if word.len() > Self::MAX_WORD {
            return tokenizer
                .split(word)
                .map(|piece| self.count_piece(tokenizer, piece))
                .sum();
        }
        if let Some(&n) = self.words.get(word) {
            return u64::from(n);
        }
        let n: u64 = tokenizer
            .split(word)
            .map(|piece| tokenizer.bpe.count(piece.as_bytes()) as u64)
            .sum();
        remember(&mut self.words, word, n);
        n
    }

    fn count_piece(&mut self, tokenizer: &bpe_openai::Tokenizer, piece: &str) -> u64 {
        if piece.len() > Self::MAX_PIECE {
            return tokenizer.bpe.count(piece.as_bytes()) as u64;
        }
        if let Some(&n) = self.pieces.get(piece) {
            return u64::from(n);
        }
        let n = tokenizer.bpe.count(piece.as_bytes()) as u64;
        remember(&mut self.pieces, piece, n);
        n
    }
}

fn remember(map: &mut HashMap<Box<str>, u32, xxhash_rust::xxh3::Xxh3Builder>, key: &str, n: u64) {
    if map.len() >= TokenCounts::CAPACITY {
        map.clear();
    }
    map.insert(key.into(), u32::try_from(n).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RecordKind, Role};
    use crate::normalize::canonicalize;

    fn conv(parts: &[(Role, &str)]) -> Conversation {
        let mut c = Conversation {
            kind: RecordKind::Chatml,
            messages: parts.iter().map(|(r, t)| Message::new(*r, *t)).collect(),
            rejected: None,
            label: None,
        };
        canonicalize(&mut c);
        c
    }

    #[test]
    fn spacing_case_and_width_share_a_hash() {
        let a = fingerprint(&conv(&[(Role::User, "I feel anxious today")]));
        let b = fingerprint(&conv(&[(Role::User, "  i FEEL\r\nanxious   ＴＯＤＡＹ ")]));
        assert_eq!(a.content_hash, b.content_hash);
        assert_eq!(a.simhash, b.simhash);
        assert_ne!(a.variant_hash, b.variant_hash);
    }

    #[test]
    fn roles_matter() {
        let a = fingerprint(&conv(&[(Role::User, "hello"), (Role::Assistant, "hi")]));
        let b = fingerprint(&conv(&[(Role::Assistant, "hello"), (Role::User, "hi")]));
        assert_ne!(a.content_hash, b.content_hash);
    }

    #[test]
    fn message_boundaries_matter() {
        let a = fingerprint(&conv(&[(Role::User, "a b"), (Role::User, "c")]));
        let b = fingerprint(&conv(&[(Role::User, "a"), (Role::User, "b c")]));
        assert_ne!(a.content_hash, b.content_hash);
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(Hash128::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash128::from_hex("xyz"), None);
        assert_eq!(Hash128::from_bytes(&h.to_bytes()), Some(h));
    }

    #[test]
    fn simhash_is_close_for_small_edits_and_far_for_unrelated_text() {
        let base = "i have been feeling really anxious about work lately and i cannot sleep at night because my mind keeps racing";
        let edited = "i have been feeling really anxious about work lately and i can not sleep at night because my mind keeps racing";
        let other = "the quarterly revenue report shows growth in the northern region across all product lines this year";
        let d_near = simhash::hamming_distance(simhash_of(base), simhash_of(edited));
        let d_far = simhash::hamming_distance(simhash_of(base), simhash_of(other));
        assert!(d_near < d_far, "near {d_near} far {d_far}");
        assert!(d_far > 10);
    }

    #[test]
    fn simhash_equals_the_simhash_crate() {
        let texts = [
            "",
            "one",
            "two words",
            "user: i have been feeling really anxious about work lately assistant: that sounds hard",
            "ünïcödé wörds ǆ and emoji 🙂 in a longer run of text",
        ];
        for t in texts {
            assert_eq!(simhash_of(t), simhash::simhash(t), "{t}");
        }
        let mut seed = 7u64;
        for _ in 0..200 {
            let words: Vec<String> = (0..(seed % 40))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    format!("w{}", seed % 50)
                })
                .collect();
            let t = words.join(" ");
            assert_eq!(simhash_of(&t), simhash::simhash(&t), "{t}");
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[test]
    fn shingles_made_with_the_fingerprints_are_those_of_the_fingerprint_text() {
        let c = conv(&[
            (Role::User, "I have not   slept well, not at all."),
            (Role::Assistant, "That sounds hard. What keeps you up?"),
        ]);
        let (fp, shingles) = fingerprint_and_shingles(&c);
        assert_eq!(fp, fingerprint(&c));
        assert_eq!(
            shingles.set(),
            shingle_set(&fingerprint_text(&c)).as_slice()
        );
        assert_eq!(shingles.set().len(), fp.words as usize - 2);
    }

    #[test]
    fn words_are_counted_with_role_words() {
        let c = conv(&[(Role::User, "Hello there, world"), (Role::Assistant, "Hi")]);
        assert_eq!(fingerprint(&c).words, 6);
        assert_eq!(
            fingerprint_text(&c),
            "user: hello there, world assistant: hi"
        );
    }

    #[test]
    fn short_texts_have_a_fingerprint() {
        assert_ne!(simhash_of("hello there"), 0);
        assert_eq!(
            simhash_and_words("hello there"),
            (simhash_of("hello there"), 2)
        );
        assert_eq!(simhash_of(""), 0);
    }

    proptest::proptest! {
        /// Counting word by word, and the remembered counts, never change a count: every
        /// text counts as the tokenizer counts it, whatever was counted before on this thread
        /// (each text is counted twice: the second time from what the first remembered).
        /// Spaces of every kind, runs of them, line breaks, contractions, digits and long words
        /// are where a cut between words could go wrong.
        #[test]
        fn cached_counts_are_the_tokenizers(texts in proptest::collection::vec(
            "(\\PC{0,40}|[a-z ]{0,80}|[0-9 .,]{0,30}|\\w{20,40}|[a-zA-Z0-9 \t\r\n\u{a0}\u{2003}\u{3000}',.!?/é日本語Ω-]{0,80}|( ?[A-Za-z']{1,12}[ \n]{0,3}){0,12})", 1..8)) {
            let bpe = bpe_openai::o200k_base();
            for text in texts.iter().chain(&texts) {
                let m = Message::new(Role::User, text.clone());
                proptest::prop_assert_eq!(
                    count_tokens(std::iter::once(&m)),
                    bpe.count(text.as_str()) as u64
                );
            }
        }
    }

    #[test]
    fn tokens_are_counted() {
        let c = conv(&[(Role::User, "Hello, world!")]);
        assert_eq!(fingerprint(&c).tokens, 4);
    }
}
