//! Row fingerprints: the 128-bit exact-duplicate key (`content_hash`), the 64-bit SimHash and the
//! o200k_base token count. Inputs are canonical conversations (see `normalize`); nothing here
//! touches storage.
//!
//! - `content_hash`: XXH3-128 over an unambiguous, length-prefixed encoding of the content class,
//!   each message's role and *folded* content, the rejected answer and the KTO label. Rows that
//!   differ only in spacing, CRLF, compatibility forms or case therefore share a hash.
//! - `variant_hash`: the same over the unfolded canonical text; it tells apart the spellings of one
//!   row so a representative can be chosen independently of ingest order.
//! - SimHash: Charikar's SimHash as the `simhash` crate's stream API defines it (each feature
//!   hashed with SipHash-2-4 under zero keys through `Hash for str`, one vote per bit), over word
//!   3-shingles of the folded text where each message is prefixed by its role word. Shingles
//!   (rather than single words) make the fingerprint sensitive to word order; 3 is the usual choice
//!   for near-duplicate detection of prose. Texts with fewer than three words use their words as
//!   features. The crate's accumulator branches on every bit of every feature, which profiling
//!   showed to be a third of ingest time; [`simhash_of`] computes the identical value with a
//!   branch-free accumulator, and a test checks it against `simhash::simhash_stream` itself.

use xxhash_rust::xxh3::Xxh3;

use crate::model::{Conversation, Message};
use crate::normalize::folded_text;

/// Number of words in one SimHash shingle.
pub const SHINGLE_WORDS: usize = 3;

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
    let mut fp_text = String::with_capacity(folded.iter().map(|(_, s)| s.len() + 12).sum());
    for (m, (_, text)) in conversation.all_messages().zip(&folded) {
        if !fp_text.is_empty() {
            fp_text.push(' ');
        }
        fp_text.push_str(m.role.as_str());
        fp_text.push(':');
        if !text.is_empty() {
            fp_text.push(' ');
            fp_text.push_str(text);
        }
    }
    Fingerprints {
        content_hash,
        variant_hash,
        simhash: simhash_of(&fp_text),
        tokens: count_tokens(conversation.all_messages()),
    }
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

/// SimHash of single-space separated text over word shingles (see module doc).
pub fn simhash_of(text: &str) -> u64 {
    let mut acc = SimhashAccumulator::default();
    for_each_shingle(text, |f| acc.add(f));
    acc.finish()
}

/// Calls `f` with every feature of `text`: its word 3-shingles, or its words when it has fewer.
fn for_each_shingle<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    if text.is_empty() {
        return;
    }
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices(' ').map(|(i, _)| i + 1))
        .collect();
    if starts.len() < SHINGLE_WORDS {
        text.split(' ').for_each(f);
        return;
    }
    for i in 0..=starts.len() - SHINGLE_WORDS {
        let end = starts
            .get(i + SHINGLE_WORDS)
            .map_or(text.len(), |next| next - 1);
        f(&text[starts[i]..end]);
    }
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
pub fn count_tokens<'a>(messages: impl Iterator<Item = &'a Message>) -> u64 {
    let bpe = bpe_openai::o200k_base();
    messages.map(|m| bpe.count(m.content.as_str()) as u64).sum()
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
    fn simhash_equals_the_simhash_crate_stream_api() {
        let texts = [
            "",
            "one",
            "two words",
            "three words here",
            "user: i have been feeling really anxious about work lately assistant: that sounds hard",
            "ünïcödé wörds ǆ and emoji 🙂 in a longer run of text to shingle properly",
        ];
        for t in texts {
            let mut features = Vec::new();
            for_each_shingle(t, |f| features.push(f));
            assert_eq!(
                simhash_of(t),
                simhash::simhash_stream(features.into_iter()),
                "{t}"
            );
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
            let mut features = Vec::new();
            for_each_shingle(&t, |f| features.push(f));
            assert_eq!(
                simhash_of(&t),
                simhash::simhash_stream(features.into_iter()),
                "{t}"
            );
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[test]
    fn short_texts_have_a_fingerprint() {
        assert_ne!(simhash_of("hello there"), 0);
        assert_eq!(simhash_of(""), 0);
    }

    #[test]
    fn tokens_are_counted() {
        let c = conv(&[(Role::User, "Hello, world!")]);
        assert_eq!(fingerprint(&c).tokens, 4);
    }
}
