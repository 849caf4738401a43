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

pub fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Codec {
            table,
            message: e.to_string(),
        })
}
