//! The one place stored values are (de)serialised: bincode 2 (serde mode, standard config) behind
//! two functions, so the encoding can be swapped without touching callers. Keys are not encoded
//! here: they are fixed byte layouts built in `store::keys` so that they sort meaningfully.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::fingerprint::Hash128;
use crate::model::RecordMeta;

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
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _read)| v)
        .map_err(|e| Error::Codec {
            table,
            message: e.to_string(),
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
    use crate::model::{Conversation, Message, RecordKind, Role};
    use crate::store::VariantRecord;

    #[test]
    fn a_variant_prefix_decodes_alone() {
        let v = VariantRecord {
            tokens: 1234,
            conversation: Conversation {
                kind: RecordKind::Kto,
                messages: vec![Message::new(Role::User, "hello")],
                rejected: None,
                label: Some(true),
            },
        };
        let bytes = encode(&v);
        let (tokens, kind): (u64, RecordKind) = decode_prefix("variants", &bytes).unwrap();
        assert_eq!((tokens, kind), (1234, RecordKind::Kto));
        // The message count and the first role are the next fields (the sequence length, then
        // the first message's role): `ReadView::message_count` reads only those.
        let (_, _, n, role): (u64, RecordKind, u64, Role) =
            decode_prefix("variants", &bytes).unwrap();
        assert_eq!((n, role), (1, Role::User));
        assert_eq!(decode::<VariantRecord>("variants", &bytes).unwrap(), v);
        assert!(decode::<VariantRecord>("variants", &bytes[..3]).is_err());
    }
}
