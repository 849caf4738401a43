//! The one place stored values are (de)serialised: bincode 2 (serde mode, standard config) behind
//! two functions, so the encoding can be swapped without touching callers. Keys are not encoded
//! here: they are fixed byte layouts built in `store::keys` so that they sort meaningfully.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

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
        assert_eq!(decode::<VariantRecord>("variants", &bytes).unwrap(), v);
        assert!(decode::<VariantRecord>("variants", &bytes[..3]).is_err());
    }
}
