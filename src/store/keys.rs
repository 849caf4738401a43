//! Byte layouts of composite redb keys, chosen so that key order is the order idx wants to read
//! them in: an object's places by (line, record); a row's places by (source, key, line, record);
//! a row's spellings by variant hash. `0x00` separates strings, which never contain it.

use crate::fingerprint::Hash128;

/// `source \0 key`: the identity of one object.
pub fn object_id(source: &str, key: &str) -> String {
    format!("{source}\0{key}")
}

/// Split an object id back into (source, key).
pub fn split_object_id(id: &str) -> (&str, &str) {
    id.split_once('\0').unwrap_or(("", id))
}

/// Start of the range of object ids under one source.
pub fn source_prefix(source: &str) -> String {
    format!("{source}\0")
}

/// `object_id \0 line(be64) record(be32)`.
pub fn object_place(object_id: &str, line: u64, record: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(object_id.len() + 13);
    k.extend_from_slice(object_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&line.to_be_bytes());
    k.extend_from_slice(&record.to_be_bytes());
    k
}

/// Range prefix of all places of one object.
pub fn object_places_prefix(object_id: &str) -> Vec<u8> {
    let mut k = object_id.as_bytes().to_vec();
    k.push(0);
    k
}

/// Decode (line, record) from the tail of an `object_place` key.
pub fn place_tail(key: &[u8]) -> (u64, u32) {
    let n = key.len();
    if n < 12 {
        return (0, 0);
    }
    let line = u64::from_be_bytes(key[n - 12..n - 4].try_into().unwrap_or([0; 8]));
    let record = u32::from_be_bytes(key[n - 4..].try_into().unwrap_or([0; 4]));
    (line, record)
}

/// `hash(16) object_id \0 line record`.
pub fn row_place(hash: Hash128, object_id: &str, line: u64, record: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + object_id.len() + 13);
    k.extend_from_slice(&hash.to_bytes());
    k.extend_from_slice(&object_place(object_id, line, record));
    k
}

/// Decode (object id, line, record) from a `row_place` key.
pub fn split_row_place(key: &[u8]) -> (String, u64, u32) {
    let (line, record) = place_tail(key);
    let id_bytes = key.get(16..key.len().saturating_sub(13)).unwrap_or(&[]);
    (String::from_utf8_lossy(id_bytes).into_owned(), line, record)
}

/// `hash(16) variant(16)`.
pub fn variant(hash: Hash128, variant: Hash128) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&hash.to_bytes());
    k[16..].copy_from_slice(&variant.to_bytes());
    k
}

/// The exclusive upper bound of every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xFF: no finite bound; a longer all-0xFF key is beyond any real key here.
    vec![0xFF; prefix.len() + 64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_place_round_trip() {
        let h = Hash128(42);
        let id = object_id("file:///data", "a/b.jsonl");
        let k = row_place(h, &id, 7, 3);
        assert_eq!(split_row_place(&k), (id.clone(), 7, 3));
        assert_eq!(split_object_id(&id), ("file:///data", "a/b.jsonl"));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
    }
}
