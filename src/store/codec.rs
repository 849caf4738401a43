//! The one place stored values are (de)serialised: bincode 2 (serde mode, standard config) behind
//! two functions, so the encoding can be swapped without touching callers. Keys are not encoded
//! here: they are fixed byte layouts built in `store::keys` so that they sort meaningfully.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::model::{Conversation, RecordKind, RecordMeta, Role};
use crate::store::VariantRecord;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding plain structs into a Vec cannot fail (no I/O, no size limit configured).
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding into a Vec is infallible for idx's stored types")
}

/// Decode only the leading fields of a stored value (bincode is sequential, so a struct's first
/// fields decode as a tuple of the same types); the rest of the bytes are not read.
pub fn decode_prefix<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    decode(table, bytes)
}

pub fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    decode_counted(table, bytes).map(|(v, _read)| v)
}

/// A value decoded from the start of `bytes`, and how many bytes it took.
fn decode_counted<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<(T, usize)> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(|e| {
        Error::Codec {
            table,
            message: e.to_string(),
        }
    })
}

/// What a `variants` value says before its text: read alone by the writer (tokens and kind of
/// a row's representative) and by verify (turn counts), without decompressing the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantHead {
    pub tokens: u64,
    pub kind: RecordKind,
    pub messages: u64,
    pub first_role: Option<Role>,
}

/// The body is the bincode of the `Conversation` as it is.
const BODY_PLAIN: u8 = 0;
/// The body is a zstd frame of that bincode.
const BODY_ZSTD: u8 = 1;
/// Bodies shorter than this are stored plain (a zstd frame costs about 10 bytes of its own).
const COMPRESS_FROM: usize = 64;
/// zstd level 3: on the real counselling data about 1.9x smaller, at ~2 µs per row.
const ZSTD_LEVEL: i32 = 3;

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A `variants` value: the [`VariantHead`] and the body length in bincode, one byte saying how
/// the body is stored, then the body (the text is most of an index: compressing it halves the
/// table).
pub fn encode_variant(tokens: u64, conversation: &Conversation) -> Vec<u8> {
    let body = encode(conversation);
    let head = (
        tokens,
        conversation.kind,
        conversation.messages.len() as u64,
        conversation.messages.first().map(|m| m.role),
        body.len() as u64,
    );
    let mut value = encode(&head);
    if body.len() >= COMPRESS_FROM {
        let packed = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            c.as_mut().and_then(|c| c.compress(&body).ok())
        });
        if let Some(packed) = packed.filter(|p| p.len() < body.len()) {
            value.push(BODY_ZSTD);
            value.extend_from_slice(&packed);
            return value;
        }
    }
    value.push(BODY_PLAIN);
    value.extend_from_slice(&body);
    value
}

fn variant_parts(bytes: &[u8]) -> Result<(VariantHead, u64, &[u8])> {
    let ((tokens, kind, messages, first_role, body_len), read): (
        (u64, RecordKind, u64, Option<Role>, u64),
        usize,
    ) = decode_counted("variants", bytes)?;
    let head = VariantHead {
        tokens,
        kind,
        messages,
        first_role,
    };
    Ok((head, body_len, &bytes[read..]))
}

/// The head of a `variants` value (the text is not read).
pub fn decode_variant_head(bytes: &[u8]) -> Result<VariantHead> {
    variant_parts(bytes).map(|(head, _, _)| head)
}

/// A whole `variants` value.
pub fn decode_variant(bytes: &[u8]) -> Result<VariantRecord> {
    let (head, body_len, rest) = variant_parts(bytes)?;
    let conversation = match rest.split_first() {
        Some((&BODY_PLAIN, body)) => decode("variants", body)?,
        Some((&BODY_ZSTD, frame)) => {
            let body = DECOMPRESSOR
                .with(|d| {
                    let mut d = d.borrow_mut();
                    if d.is_none() {
                        *d = Some(zstd::bulk::Decompressor::new()?);
                    }
                    let d = d.as_mut().expect("set just above");
                    // The head says how long the body is: a damaged frame cannot ask for more.
                    d.decompress(frame, usize::try_from(body_len).unwrap_or(usize::MAX))
                })
                .map_err(|e| Error::Codec {
                    table: "variants",
                    message: format!("the stored text does not decompress: {e}"),
                })?;
            if body.len() as u64 != body_len {
                return Err(Error::Codec {
                    table: "variants",
                    message: format!(
                        "the stored text decompresses to {} bytes, its head says {body_len}",
                        body.len()
                    ),
                });
            }
            decode("variants", &body)?
        }
        _ => {
            return Err(Error::Codec {
                table: "variants",
                message: "the stored text has no body".to_string(),
            })
        }
    };
    Ok(VariantRecord {
        tokens: head.tokens,
        conversation,
    })
}

/// An `object_places` value: content hash ‖ variant hash (16 bytes each, so readers that need
/// only the row take the first 16), then the place's [`RecordMeta`] when it has any.
pub fn encode_place(hash: Hash128, variant: Hash128, meta: &RecordMeta) -> Vec<u8> {
    let mut value = Vec::with_capacity(32);
    value.extend_from_slice(&hash.to_bytes());
    value.extend_from_slice(&variant.to_bytes());
    if !meta.is_empty() {
        value.extend_from_slice(&encode(meta));
    }
    value
}

/// The (content hash, variant hash, place metadata) of an `object_places` value.
pub fn decode_place(bytes: &[u8]) -> Result<(Hash128, Hash128, RecordMeta)> {
    let (Some(hash), Some(variant)) = (
        bytes.get(..16).and_then(Hash128::from_bytes),
        bytes.get(16..32).and_then(Hash128::from_bytes),
    ) else {
        return Err(Error::Codec {
            table: "object_places",
            message: "value is shorter than two 16-byte hashes".into(),
        });
    };
    let meta = match bytes.get(32..) {
        Some(rest) if !rest.is_empty() => decode("object_places", rest)?,
        _ => RecordMeta::default(),
    };
    Ok((hash, variant, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(kind: RecordKind, texts: &[&str]) -> VariantRecord {
        let mut conversation = Conversation::alternating(kind, texts);
        conversation.label = Some(true);
        VariantRecord {
            tokens: 1234,
            conversation,
        }
    }

    #[test]
    fn a_variant_head_decodes_alone_and_long_texts_are_compressed() {
        let short = record(RecordKind::Kto, &["hello"]);
        let long_text = "I have been feeling anxious about work lately. ".repeat(20);
        let long = record(RecordKind::Chatml, &[&long_text, "That sounds hard."]);
        for (v, compressed) in [(&short, false), (&long, true)] {
            let bytes = encode_variant(v.tokens, &v.conversation);
            let head = decode_variant_head(&bytes).unwrap();
            assert_eq!(head.tokens, 1234);
            assert_eq!(head.kind, v.conversation.kind);
            assert_eq!(head.messages, v.conversation.messages.len() as u64);
            assert_eq!(head.first_role, Some(Role::User));
            assert_eq!(&decode_variant(&bytes).unwrap(), v);
            let plain = encode(&v.conversation).len();
            assert_eq!(
                bytes.len() < plain,
                compressed,
                "{} vs {plain}",
                bytes.len()
            );
        }
        let empty = record(RecordKind::Text, &[]);
        let bytes = encode_variant(0, &empty.conversation);
        assert_eq!(decode_variant_head(&bytes).unwrap().first_role, None);
    }

    #[test]
    fn a_damaged_variant_is_an_error_not_a_panic() {
        let long_text = "the same words again and again ".repeat(30);
        let v = record(RecordKind::Chatml, &[&long_text]);
        let bytes = encode_variant(v.tokens, &v.conversation);
        for cut in [0, 1, 3, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_variant(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(decode_variant(&flipped).is_err());
    }

    proptest! {
        #[test]
        fn any_variant_round_trips(
            texts in proptest::collection::vec("\\PC{0,300}", 0..6),
            tokens in any::<u64>(),
        ) {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut v = record(RecordKind::Chatml, &texts);
            v.tokens = tokens;
            let bytes = encode_variant(v.tokens, &v.conversation);
            prop_assert_eq!(decode_variant(&bytes).unwrap(), v);
        }

        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_variant(&bytes);
            let _ = decode_variant_head(&bytes);
        }
    }
}
