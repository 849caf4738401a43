//! Encoding repair, before normalisation and fingerprinting: text that went through a broken
//! encoding is put back, and only text that is clearly broken is touched.
//!
//! - Bytes: a UTF-16 object (BOM, or the NUL pattern of ASCII in UTF-16) is decoded as such; a
//!   line or document that is not valid UTF-8 is decoded as Windows-1252 (the usual culprit).
//! - Strings: mojibake — UTF-8 bytes that were decoded as Windows-1252 or Latin-1 (`donâ€™t`,
//!   `Ã©`, and the same twice over) — is reversed run by run: a run of characters that all map to
//!   single Windows-1252/Latin-1 bytes is re-encoded to bytes, and replaced only when those bytes
//!   are valid UTF-8 holding at least one multi-byte character. Correct text in any language is
//!   left alone: its non-ASCII runs are either outside Windows-1252 (Greek, CJK, Cyrillic…) or do
//!   not form valid UTF-8 (`café`, `Straße`, `naïve`).
//! - Stray BOMs (U+FEFF) and C0/C1 control characters (other than tab and newlines) are removed;
//! - JSON text whose `\u` escapes hold lone UTF-16 surrogates (which a strict JSON reader refuses)
//!   has those escapes replaced by `\uFFFD`, so the record is kept and the damage visible.

use std::borrow::Cow;

/// What was repaired in one piece of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Repairs {
    /// Mojibake runs reversed.
    pub mojibake: u64,
    /// BOMs and control characters removed.
    pub controls: u64,
    /// Documents decoded from another encoding (UTF-16, Windows-1252).
    pub decoded: u64,
    /// Lone UTF-16 surrogates in JSON `\u` escapes replaced by U+FFFD.
    pub surrogates: u64,
}

impl Repairs {
    pub fn total(&self) -> u64 {
        self.mojibake + self.controls + self.decoded + self.surrogates
    }

    pub fn add(&mut self, other: Repairs) {
        self.mojibake += other.mojibake;
        self.controls += other.controls;
        self.decoded += other.decoded;
        self.surrogates += other.surrogates;
    }
}

/// Windows-1252 bytes 0x80–0x9F: the characters they decode to (undefined bytes map to the C1
/// control of the same value, as Latin-1 would).
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
];

/// The single byte a character came from under Windows-1252 or Latin-1, for non-ASCII characters.
fn mojibake_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if (0xA0..=0xFF).contains(&u) || (0x80..=0x9F).contains(&u) {
        return Some(u as u8);
    }
    CP1252_HIGH
        .iter()
        .position(|&x| x == c)
        .map(|i| 0x80 + i as u8)
}

/// Decode bytes that are not valid UTF-8 as Windows-1252.
pub fn decode_cp1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_HIGH[(b - 0x80) as usize],
            _ => b as char,
        })
        .collect()
}

/// Whether bytes that are not UTF-8 read as Windows-1252 text: every byte defined there, no
/// control characters but tab and line ends, non-ASCII bytes a minority (accented letters and
/// typographic marks between ASCII text), and no well-formed UTF-8 sequence among them — a line
/// that holds UTF-8 and broken bytes is damaged UTF-8, not Windows-1252, and is rejected.
pub fn plausible_cp1252(bytes: &[u8]) -> bool {
    let mut high = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\t' | b'\n' | b'\r' | 0x20..=0x7E => {}
            0x00..=0x1F | 0x7F => return false,
            0x81 | 0x8D | 0x8F | 0x90 | 0x9D => return false,
            _ => {
                high += 1;
                let continuation =
                    |j: usize| bytes.get(j).is_some_and(|c| (0x80..=0xBF).contains(c));
                let utf8 = match b {
                    0xC2..=0xDF => continuation(i + 1),
                    0xE0..=0xEF => continuation(i + 1) && continuation(i + 2),
                    0xF0..=0xF4 => {
                        continuation(i + 1) && continuation(i + 2) && continuation(i + 3)
                    }
                    _ => false,
                };
                if utf8 {
                    return false;
                }
            }
        }
        i += 1;
    }
    high * 10 <= bytes.len() * 3
}

/// Whether a decoded text is binary data rather than text: NUL bytes, or more than 1 in 100
/// characters a control character other than tab, line ends and form feed.
pub fn looks_binary(text: &str) -> bool {
    let mut chars = 0usize;
    let mut controls = 0usize;
    for c in text.chars() {
        chars += 1;
        if c == '\0' {
            return true;
        }
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{0C}') {
            controls += 1;
        }
    }
    controls * 100 > chars
}

/// Whether `bytes` start like UTF-16 (a BOM, or NULs in every other byte of the first ones), and
/// if so, little-endian or not and how many BOM bytes to skip.
pub fn sniff_utf16(bytes: &[u8]) -> Option<(bool, usize)> {
    match bytes {
        [0xFF, 0xFE, ..] => Some((true, 2)),
        [0xFE, 0xFF, ..] => Some((false, 2)),
        _ => {
            let head = &bytes[..bytes.len().min(64) & !1];
            if head.len() < 4 {
                return None;
            }
            let odd_nuls = head.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
            let even_nuls = head.iter().step_by(2).filter(|&&b| b == 0).count();
            let pairs = head.len() / 2;
            if odd_nuls * 10 >= pairs * 9 && even_nuls == 0 {
                Some((true, 0))
            } else if even_nuls * 10 >= pairs * 9 && odd_nuls == 0 {
                Some((false, 0))
            } else {
                None
            }
        }
    }
}

/// If `bytes` look like UTF-16 (see [`sniff_utf16`]), decode them.
pub fn decode_utf16(bytes: &[u8]) -> Option<String> {
    let (le, skip) = sniff_utf16(bytes)?;
    let body = &bytes[skip..];
    let units = body.chunks_exact(2).map(|p| {
        if le {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    Some(
        char::decode_utf16(units)
            .map(|r| r.unwrap_or('\u{FFFD}'))
            .collect(),
    )
}

/// Replace `\u` escapes of lone surrogates in JSON text by `\uFFFD`; `None` when there were none.
pub fn replace_lone_surrogates(json: &str) -> Option<(String, u64)> {
    fn unit_at(b: &[u8], i: usize) -> Option<u16> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let b = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let (mut i, mut last, mut fixed) = (0usize, 0usize, 0u64);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit_at(b, i) {
            Some(0xD800..=0xDBFF) => {
                let paired = unit_at(b, i + 6).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l));
                if paired {
                    i += 12;
                    continue;
                }
                out.push_str(&json[last..i]);
                out.push_str("\\uFFFD");
                fixed += 1;
                i += 6;
                last = i;
            }
            Some(0xDC00..=0xDFFF) => {
                out.push_str(&json[last..i]);
                out.push_str("\\uFFFD");
                fixed += 1;
                i += 6;
                last = i;
            }
            // Any other escape, `\\` included, is two characters long at least: skip both.
            _ => i += 2,
        }
    }
    if fixed == 0 {
        return None;
    }
    out.push_str(&json[last..]);
    Some((out, fixed))
}

/// Reverse mojibake and strip stray BOMs and control characters; `Cow::Borrowed` when the text
/// was fine (the common case costs one scan).
pub fn repair_text(text: &str) -> (Cow<'_, str>, Repairs) {
    let suspicious = if text.is_ascii() {
        text.bytes()
            .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7F)
    } else {
        text.chars()
            .any(|c| !c.is_ascii() && mojibake_byte(c).is_some() || is_stray(c))
    };
    if !suspicious {
        return (Cow::Borrowed(text), Repairs::default());
    }
    let mut repairs = Repairs::default();
    let mut current = text.to_string();
    // Mojibake first (a C1 control can be part of a run: "â€\u{9d}" is a right quote), then
    // strays; and again while that changed something, since a stray stripped can join a run
    // ("Â\u{feff}¡"): repairing repaired text changes nothing (the property tests check it).
    for _ in 0..3 {
        let before = repairs.total();
        // Double encoding needs a second pass; a third changes nothing on real data.
        for _ in 0..2 {
            let (next, fixed) = reverse_mojibake(&current);
            if fixed == 0 {
                break;
            }
            repairs.mojibake += fixed;
            current = next;
        }
        let chars = current.chars().count();
        current.retain(|c| !is_stray(c));
        let stripped = (chars - current.chars().count()) as u64;
        repairs.controls += stripped;
        if stripped == 0 || repairs.total() == before {
            break;
        }
    }
    if repairs.total() == 0 {
        return (Cow::Borrowed(text), repairs);
    }
    (Cow::Owned(current), repairs)
}

fn is_stray(c: char) -> bool {
    c == '\u{FEFF}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn reverse_mojibake(text: &str) -> (String, u64) {
    let mut out = String::with_capacity(text.len());
    let mut fixed = 0;
    let mut run: Vec<(char, u8)> = Vec::new();
    let mut flush = |run: &mut Vec<(char, u8)>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().map(|&(_, b)| b).collect();
        match std::str::from_utf8(&bytes) {
            Ok(decoded) if decoded.chars().count() < run.len() => {
                out.push_str(decoded);
                fixed += 1;
            }
            _ => out.extend(run.iter().map(|&(c, _)| c)),
        }
        run.clear();
    };
    for c in text.chars() {
        match mojibake_byte(c) {
            Some(b) if !c.is_ascii() => run.push((c, b)),
            _ => {
                flush(&mut run, &mut out);
                out.push(c);
            }
        }
    }
    flush(&mut run, &mut out);
    (out, fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(s: &str) -> String {
        repair_text(s).0.into_owned()
    }

    #[test]
    fn reverses_classic_mojibake() {
        assert_eq!(fix("donâ€™t"), "don’t");
        assert_eq!(fix("cafÃ©"), "café");
        assert_eq!(fix("Iâ€™m â€œfineâ€\u{9d}"), "I’m “fine”");
        assert_eq!(fix("naÃ¯ve rÃ©sumÃ©"), "naïve résumé");
        // UTF-8 decoded as Latin-1: C1 controls instead of Windows-1252 punctuation.
        assert_eq!(fix("don\u{e2}\u{80}\u{99}t"), "don’t");
    }

    #[test]
    fn reverses_double_encoding() {
        assert_eq!(fix("donÃ¢â‚¬â„¢t"), "don’t");
        assert_eq!(fix("cafÃƒÂ©"), "café");
    }

    #[test]
    fn leaves_correct_text_in_any_language_alone() {
        for s in [
            "café, naïve, Straße, façade, São Paulo, Ångström, Øresund",
            "Ich fühle mich müde und ängstlich.",
            "Je suis très fatigué, à bientôt.",
            "¿Cómo estás? Estoy bien, ¡gracias!",
            "Я чувствую тревогу.",
            "我今天很难过。",
            "今日はとても疲れました。",
            "Σήμερα νιώθω άγχος.",
            "مرحبا، كيف حالك؟",
            "I’m “fine” — really… 100 € · ½ · ©2024",
            "plain ascii with tabs\tand\nnewlines",
        ] {
            let (out, r) = repair_text(s);
            assert_eq!(out, s, "changed correct text");
            assert_eq!(r, Repairs::default(), "{s}");
        }
    }

    #[test]
    fn strips_stray_boms_and_controls() {
        let (out, r) = repair_text("\u{feff}hello\u{0}\u{7} world\u{85}!");
        assert_eq!(out, "hello world!");
        assert_eq!(r.controls, 4);
    }

    #[test]
    fn repairing_twice_changes_nothing() {
        for s in ["donâ€™t", "donÃ¢â‚¬â„¢t", "cafÃ©\u{0}", "café"] {
            let once = fix(s);
            assert_eq!(fix(&once), once, "{s}");
        }
    }

    #[test]
    fn lone_surrogate_escapes_become_replacement_characters() {
        let (fixed, n) =
            replace_lone_surrogates(r#"{"text": "a\ud83d b \udc00 \ud83d\ude00 \\ud800"}"#)
                .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            fixed,
            r#"{"text": "a\uFFFD b \uFFFD \ud83d\ude00 \\ud800"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v["text"], "a\u{fffd} b \u{fffd} 😀 \\ud800");
        assert_eq!(
            replace_lone_surrogates(r#"{"text": "\ud83d\ude00 fine"}"#),
            None
        );
    }

    #[test]
    fn decodes_cp1252_and_utf16() {
        assert_eq!(decode_cp1252(b"caf\xe9 \x93quoted\x94"), "café “quoted”");
        let le: Vec<u8> = "\u{feff}héllo"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(decode_utf16(&le).unwrap(), "héllo");
        let no_bom: Vec<u8> = "{\"text\": \"hi\"}"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode_utf16(&no_bom).unwrap(), "{\"text\": \"hi\"}");
        assert_eq!(decode_utf16(b"{\"text\": \"plain utf-8\"}"), None);
    }
}
