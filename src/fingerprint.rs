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

use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3;

use crate::model::{Conversation, Message};
use crate::normalize::folded_text;

/// Number of words in one shingle of the near-duplicate verification.
pub const SHINGLE_WORDS: usize = 3;

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
    Fingerprints {
        content_hash,
        variant_hash,
        simhash,
        tokens: count_tokens(conversation.all_messages()),
        words,
    }
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

/// The sorted, deduplicated XXH3-64 hashes of the word 3-shingles of a fingerprint text (its
/// words when it has fewer than three): the sets whose Jaccard similarity judges a near-duplicate.
pub fn shingle_set(text: &str) -> Vec<u64> {
    let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    let mut out: Vec<u64> = if words.len() < SHINGLE_WORDS {
        words
            .iter()
            .map(|w| xxhash_rust::xxh3::xxh3_64(w.as_bytes()))
            .collect()
    } else {
        words
            .windows(SHINGLE_WORDS)
            .map(|win| {
                let mut h = Xxh3::new();
                for w in win {
                    h.update(w.as_bytes());
                    h.update(&[0]);
                }
                h.digest()
            })
            .collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Buckets of a [`Shingles`]' counts: a shingle falls in the bucket its hash's top six bits name.
const SHINGLE_BUCKETS: usize = 64;

/// A row's shingle set (see [`shingle_set`]) with how many of its shingles fall in each of 64
/// buckets of the hash space. Two sets can share at most `min(a, b)` shingles in a bucket, so the
/// counts bound the overlap from above in a few vector instructions over 256 bytes, where the
/// merge walks both sets: most pairs a crowded SimHash bucket proposes (rows built from one
/// template, chats made of common phrases) are ruled out by the bound alone, and a pair it
/// admits gets the exact test, so the decision is exactly the merge's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shingles {
    set: Vec<u64>,
    counts: [u16; SHINGLE_BUCKETS],
}

impl Shingles {
    /// The shingles of a fingerprint text.
    pub fn of_text(text: &str) -> Shingles {
        Shingles::from_set(shingle_set(text))
    }

    /// Counts a sorted, deduplicated set (as [`shingle_set`] makes it).
    pub fn from_set(set: Vec<u64>) -> Shingles {
        let mut counts = [0u16; SHINGLE_BUCKETS];
        for &h in &set {
            // A full bucket (65,535 shingles, a text of millions of words) saturates: the
            // bound then holds only for the other buckets, and `bounded` says so.
            let c = &mut counts[(h >> 58) as usize];
            *c = c.saturating_add(1);
        }
        Shingles { set, counts }
    }

    /// The sorted, deduplicated shingle hashes.
    pub fn set(&self) -> &[u64] {
        &self.set
    }

    /// An upper bound of the number of shingles the two sets share.
    pub fn overlap_bound(&self, other: &Shingles) -> usize {
        if !self.bounded() || !other.bounded() {
            return self.set.len().min(other.set.len());
        }
        self.counts
            .iter()
            .zip(&other.counts)
            .map(|(&a, &b)| a.min(b) as usize)
            .sum()
    }

    fn bounded(&self) -> bool {
        !self.counts.contains(&u16::MAX)
    }

    /// Their Jaccard similarity when it is at least `threshold` (the decision of
    /// [`jaccard_at_least`] on the two sets), tried against the counts' bound first.
    pub fn similar_at_least(&self, other: &Shingles, threshold: f64) -> Option<f64> {
        let (na, nb) = (self.set.len(), other.set.len());
        if na + nb > 0 && ratio(na, nb, self.overlap_bound(other)) < threshold {
            return None;
        }
        jaccard_at_least(&self.set, &other.set, threshold)
    }
}

impl Shingles {
    /// What the bucket bound needs of this set (its size and counts), in 68 bytes.
    pub fn summary(&self) -> ShingleSummary {
        ShingleSummary {
            len: u32::try_from(self.set.len()).unwrap_or(u32::MAX),
            counts: self.counts.map(|c| c.min(u16::from(u8::MAX)) as u8),
        }
    }
}

/// A shingle set's size and bucket counts (saturated at 255): what the bound of
/// [`Shingles::similar_at_least`] needs, in 68 bytes instead of the set's 8 per shingle. Held for
/// every row of a large pass (verify's recomputation, a large ingest batch), it rules out most
/// pairs of a crowded SimHash bucket before either set is made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShingleSummary {
    len: u32,
    counts: [u8; SHINGLE_BUCKETS],
}

impl ShingleSummary {
    /// An upper bound of the number of shingles the two sets share. A bucket's smaller count
    /// is exact unless both saturated; then only the smaller size bounds the overlap.
    pub fn overlap_bound(&self, other: &ShingleSummary) -> usize {
        let most = self.len.min(other.len) as usize;
        let mut sum = 0usize;
        for (&a, &b) in self.counts.iter().zip(&other.counts) {
            if a == u8::MAX && b == u8::MAX {
                return most;
            }
            sum += usize::from(a.min(b));
        }
        sum.min(most)
    }

    /// Whether the two sets may be at least `threshold` similar: `false` only when the bound
    /// rules the pair out, and then [`Shingles::similar_at_least`] is `None` too.
    pub fn may_reach(&self, other: &ShingleSummary, threshold: f64) -> bool {
        let (na, nb) = (self.len as usize, other.len as usize);
        na + nb == 0 || ratio(na, nb, self.overlap_bound(other)) >= threshold
    }
}

/// Jaccard similarity of two sorted, deduplicated sets (1.0 for two empty sets).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (_, _, common) = merge_common(a, b, (0, 0, 0), usize::MAX);
    ratio(a.len(), b.len(), common)
}

/// The Jaccard similarity of two sorted, deduplicated sets when it is at least `threshold`,
/// else `None` — the same decision as `jaccard(a, b) >= threshold`, made sooner: a pair whose
/// sizes alone rule it out is never merged, and the merge stops as soon as the elements left
/// cannot bring the overlap up to the threshold (most proposed pairs in a crowded SimHash
/// bucket are rejected this way after a fraction of their shingles).
pub fn jaccard_at_least(a: &[u64], b: &[u64], threshold: f64) -> Option<f64> {
    if a.is_empty() && b.is_empty() {
        return (1.0 >= threshold).then_some(1.0);
    }
    let (na, nb) = (a.len(), b.len());
    // Even a full overlap of the smaller set is not enough.
    if ratio(na, nb, na.min(nb)) < threshold {
        return None;
    }
    const STEP: usize = 64;
    let (mut i, mut j, mut common) = (0, 0, 0);
    while i < na && j < nb {
        (i, j, common) = merge_common(a, b, (i, j, common), STEP);
        // The best the rest could do: every remaining element of the shorter rest shared.
        let best = common + (na - i).min(nb - j);
        if ratio(na, nb, best) < threshold {
            return None;
        }
    }
    let sim = ratio(na, nb, common);
    (sim >= threshold).then_some(sim)
}

/// |A ∩ B| / |A ∪ B| from the sizes and the overlap (the formula `jaccard` decides with).
fn ratio(na: usize, nb: usize, common: usize) -> f64 {
    common as f64 / (na + nb - common) as f64
}

/// Advance a merge of two sorted sets at positions (i, j) with `common` elements shared so far
/// by at most `steps` comparisons; returns the new (i, j, common). Branch-free: comparisons of
/// unrelated shingle hashes are unpredictable.
fn merge_common(
    a: &[u64],
    b: &[u64],
    (mut i, mut j, mut common): (usize, usize, usize),
    steps: usize,
) -> (usize, usize, usize) {
    let mut left = steps;
    while i < a.len() && j < b.len() && left > 0 {
        let (x, y) = (a[i], b[j]);
        common += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
        left -= 1;
    }
    (i, j, common)
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
/// is encoded on its own, so a piece's count depends on nothing else. Pieces repeat (Zipf), and
/// the byte-pair encoder allocates per piece, so each thread remembers the counts of the short
/// pieces it has seen: most pieces of a corpus are answered by one hash lookup.
pub fn count_tokens<'a>(messages: impl Iterator<Item = &'a Message>) -> u64 {
    PIECE_COUNTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        messages.map(|m| cache.count(m.content.as_str())).sum()
    })
}

thread_local! {
    static PIECE_COUNTS: std::cell::RefCell<PieceCounts> = std::cell::RefCell::new(PieceCounts::default());
}

/// Token counts of pre-tokenized pieces, bounded: emptied when full (a corpus' common pieces
/// come back at once).
#[derive(Default)]
struct PieceCounts {
    counts: HashMap<Box<str>, u32, xxhash_rust::xxh3::Xxh3Builder>,
}

impl PieceCounts {
    /// Pieces longer than this are encoded each time (rare, and they would crowd the cache).
    const MAX_PIECE: usize = 24;
    /// Entries kept at most (a few MB).
    const CAPACITY: usize = 1 << 16;

    fn count(&mut self, text: &str) -> u64 {
        let tokenizer = bpe_openai::o200k_base();
        let text = tokenizer.normalize(text);
        let mut total = 0u64;
        for piece in tokenizer.split(text.as_str()) {
            if piece.len() > Self::MAX_PIECE {
                total += tokenizer.bpe.count(piece.as_bytes()) as u64;
                continue;
            }
            if let Some(&n) = self.counts.get(piece) {
                total += u64::from(n);
                continue;
            }
            let n = tokenizer.bpe.count(piece.as_bytes());
            if self.counts.len() >= Self::CAPACITY {
                self.counts.clear();
            }
            self.counts.insert(piece.into(), n as u32);
            total += n as u64;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RecordKind, Role};
    use crate::normalize::canonicalize;
    use std::collections::BTreeSet;

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
    fn shingle_sets_and_jaccard() {
        let a = shingle_set("a b c d e");
        assert_eq!(a.len(), 3);
        assert_eq!(jaccard(&a, &a), 1.0);
        // The last of seven words changed: 4 of 5 shingles shared, 6 distinct in all.
        let c = shingle_set("a b c d e f g");
        let d = shingle_set("a b c d e f x");
        assert!((jaccard(&c, &d) - 4.0 / 6.0).abs() < 1e-9);
        // The middle word of five changed: no shingle survives.
        assert_eq!(jaccard(&a, &shingle_set("a b x d e")), 0.0);
        assert_eq!(shingle_set("hi there").len(), 2);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&a, &[]), 0.0);
        // Word order matters to shingles, not to the SimHash.
        assert_ne!(shingle_set("a b c"), shingle_set("c b a"));
        assert_eq!(simhash_of("a b c"), simhash_of("c b a"));
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

    /// The plain merge the fast paths must agree with.
    fn reference_jaccard(a: &[u64], b: &[u64]) -> f64 {
        let sa: std::collections::BTreeSet<u64> = a.iter().copied().collect();
        let sb: std::collections::BTreeSet<u64> = b.iter().copied().collect();
        if sa.is_empty() && sb.is_empty() {
            return 1.0;
        }
        sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
    }

    proptest::proptest! {
        /// The early-exit decisions are the full computation's, on sets of every overlap (drawn
        /// from a small universe so that overlaps are common) and thresholds around them.
        #[test]
        fn jaccard_early_exit_decides_as_the_full_merge(
            a in proptest::collection::btree_set(0u64..400, 0..300),
            b in proptest::collection::btree_set(0u64..400, 0..300),
            threshold in 0.0f64..1.0,
        ) {
            let (a, b): (Vec<u64>, Vec<u64>) = (a.into_iter().collect(), b.into_iter().collect());
            let full = reference_jaccard(&a, &b);
            proptest::prop_assert!((jaccard(&a, &b) - full).abs() < 1e-12);
            let expected = (full >= threshold).then_some(full);
            proptest::prop_assert_eq!(jaccard_at_least(&a, &b, threshold).is_some(), expected.is_some());
            for t in [full, full - 1e-9, full + 1e-9] {
                proptest::prop_assert_eq!(
                    jaccard_at_least(&a, &b, t).is_some(),
                    jaccard(&a, &b) >= t
                );
            }
            // The bucket counts' bound never undercounts the overlap, so with it the decision
            // is still the merge's. The values are spread over the hash space (a bijection, so
            // the overlap is the same) for every bucket to be used.
            let spread = |s: &[u64]| -> Vec<u64> {
                let mut v: Vec<u64> = s.iter().map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
                v.sort_unstable();
                v
            };
            let (sa, sb) = (Shingles::from_set(spread(&a)), Shingles::from_set(spread(&b)));
            let common = a.iter().filter(|x| b.binary_search(x).is_ok()).count();
            proptest::prop_assert!(sa.overlap_bound(&sb) >= common);
            proptest::prop_assert!(sa.overlap_bound(&sb) <= a.len().min(b.len()));
            for t in [threshold, full, full - 1e-9, full + 1e-9] {
                proptest::prop_assert_eq!(
                    sa.similar_at_least(&sb, t),
                    jaccard_at_least(sa.set(), sb.set(), t)
                );
            }
        }
    }

    proptest::proptest! {
        /// A summary never rules out a pair the sets would pass, also when its counts saturate
        /// (values crowded into four buckets, up to 300 in each).
        #[test]
        fn a_summary_rules_out_only_what_the_sets_would(
            a in proptest::collection::btree_set(0u64..1200, 0..1200),
            b in proptest::collection::btree_set(0u64..1200, 0..1200),
            threshold in 0.0f64..1.0,
        ) {
            let crowd = |s: &BTreeSet<u64>| -> Shingles {
                let mut v: Vec<u64> = s.iter().map(|&x| ((x % 4) << 58) | x).collect();
                v.sort_unstable();
                Shingles::from_set(v)
            };
            let (sa, sb) = (crowd(&a), crowd(&b));
            let common = a.intersection(&b).count();
            let bound = sa.summary().overlap_bound(&sb.summary());
            proptest::prop_assert!(bound >= common);
            let full = reference_jaccard(sa.set(), sb.set());
            for t in [threshold, full, full - 1e-9, full + 1e-9] {
                if !sa.summary().may_reach(&sb.summary(), t) {
                    proptest::prop_assert_eq!(sa.similar_at_least(&sb, t), None);
                }
            }
            proptest::prop_assert!(sa.summary().may_reach(&sb.summary(), full));
        }
    }

    #[test]
    fn the_bucket_bound_rules_out_sets_far_apart() {
        let a = Shingles::of_text(
            &(0..300)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        let b = Shingles::of_text(
            &(150..450)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        // 148 of 298 shingles shared: Jaccard about a third; the bound alone says no to 0.8.
        let bound = a.overlap_bound(&b);
        assert!((148..298).contains(&bound), "{bound}");
        assert!(ratio(a.set().len(), b.set().len(), bound) < 0.8);
        assert_eq!(a.similar_at_least(&b, 0.8), None);
        assert_eq!(a.similar_at_least(&a, 0.8), Some(1.0));
        // The summary bounds as the counts do (none saturates here).
        assert_eq!(a.summary().overlap_bound(&b.summary()), bound);
        assert!(!a.summary().may_reach(&b.summary(), 0.8));
        assert!(a.summary().may_reach(&a.summary(), 1.0));
        let empty = Shingles::of_text("");
        assert_eq!(empty.similar_at_least(&empty, 0.8), Some(1.0));
        assert_eq!(empty.similar_at_least(&a, 0.1), None);
    }

    proptest::proptest! {
        /// The remembered piece counts never change a count: every text counts as the
        /// tokenizer counts it, whatever was counted before on this thread.
        #[test]
        fn cached_counts_are_the_tokenizers(texts in proptest::collection::vec(
            "(\\PC{0,40}|[a-z ]{0,80}|[0-9 .,]{0,30}|\\w{20,40})", 1..8)) {
            let bpe = bpe_openai::o200k_base();
            for text in &texts {
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
