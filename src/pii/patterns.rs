//! The detection patterns and the checks a pattern cannot express: digit values in every
//! Unicode script, SSN ranges, Luhn and card issuers, phone lengths, IP parsing, profile URLs.

use super::PiiKind;

/// Detection patterns, by kind, in the order they are applied (structured kinds first, so a card
/// number is not taken for a phone number).
pub(super) const PATTERNS: &[(PiiKind, &str)] = &[
    (
        PiiKind::Email,
        r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}\b",
    ),
    (PiiKind::Url, r"(?i)\b(?:https?://|www\.)[^\s<>()\[\]]+"),
    (PiiKind::Card, r"\b\d(?:[ -]?\d){12,18}\b"),
    (PiiKind::Ssn, r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"),
    (
        PiiKind::Ip,
        r"(?i)\b(?:\d{1,3}\.){3}\d{1,3}\b|(?:\b[0-9a-f]{1,4}|\B)(?::[0-9a-f]{0,4}){2,7}\b",
    ),
    (
        PiiKind::Phone,
        r"(?:\+\d{1,3}[ .-]?|\b1[ .-])?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b|\+\d{7,14}\b|\b0\d{9,10}\b|\b0\d{4}[ -]?\d{6}\b|\b\d{3}\.\d{3}\.\d{4}\b",
    ),
    (
        PiiKind::DateOfBirth,
        r"(?i)\b(?:born(?: on| in)?|date of birth(?: is)?|d\.?o\.?b\.?|birthday(?: is)?(?: on)?)[:\s]+(?P<v>\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}|(?:\d{1,2}(?:st|nd|rd|th)? )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?: \d{1,2}(?:st|nd|rd|th)?)?,? \d{4})",
    ),
    (
        PiiKind::Address,
        r"\b\d{1,5}(?: \p{Lu}\p{L}+){1,3} (?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|close|crescent)\b\.?(?:,? (?i:apt|apartment|unit|suite|#) ?\w+)?",
    ),
    (
        PiiKind::Name,
        r"(?:\b(?P<im>(?i:i am|i\\?['’]m|im))|\b(?P<its>(?i:it['’]s|this is))|\b(?P<intro>(?i:my name(?: is|['’]s)?|call me))|\b(?P<third>(?i:(?:my|our) (?:ex-?|best |new |old |little |big |older |younger )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl|kid|child|baby|youngest|oldest|eldest)(?:['’]?s)? name is))|(?P<greet>\b(?i:hi|hello|hey|dear))[,!]?|\b(?P<thanks>Thanks|Thank you|Regards|Cheers|Best|Sincerely|Love|Yours|Warmly)[,!])[ ,]*(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\b(?P<after>['’][a-z]| [a-z]+)?",
    ),
    (
        PiiKind::Name,
        r"(?:\b(?P<im>(?i:i am|i\\?['’]m|im))|\b(?P<intro>(?i:my name(?: is|['’]s)?|call me))|\b(?P<third>(?i:(?:my|our) (?:ex-?|best |new |old |little |big |older |younger )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl|kid|child|baby|youngest|oldest|eldest)(?:['’]?s)? name is))|(?P<greet>\b(?i:hi|hello|hey)),?|\b(?i:my|our) (?i:(?:ex-?|best |new |old |little |big |older |younger )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl|kid|child|baby|youngest|oldest|eldest))(?P<relation>),?)[ ,]*(?P<v>\p{Ll}{2,})\b",
    ),
    (
        PiiKind::Name,
        r"\b(?:(?i:this (?:guy|girl|man|woman|boy),)|(?i:my|our) (?i:(?:ex-?|best |new |old )?(?:boyfriend|girlfriend|husband|wife|partner|fianc[eé]e?|friend|brother|sister|mother|father|mom|mum|dad|son|daughter|cousin|aunt|uncle|boss|coworker|co-worker|roommate|flatmate|neighbou?r|guy|girl)))(?P<relation>),? (?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\b(?P<after>['’][a-z])?",
    ),
    (
        PiiKind::Name,
        r"(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\.)?(?: \p{Lu}\p{Ll}+){1,2}),? (?P<credential>LMFT|LPC|LCSW|LMSW|LMAC|PhD|Ph\.D|PsyD|MFT|LMHC|NCC|LPCC|LCPC|MSW|MSc|LADC|LCADC)\b",
    ),
    (
        PiiKind::Name,
        r"(?:^|[\s,.;:!?])[-—–] ?(?P<v>\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)?)\s*$",
    ),
];

/// The zero of every block of Unicode decimal digits (general category Nd). Each block holds the
/// ten digits 0-9 in order (a Unicode stability guarantee), so a digit's value is its distance
/// from the greatest zero at or below it. A test holds this table against the regex engine's own
/// `\d`, which is what the patterns match with.
pub(super) const DIGIT_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE, 0x1D7D8,
    0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit in any script (`'7'`, `'٧'`, `'७'`, `'７'` are all 7).
pub fn digit_value(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    let cp = c as u32;
    let block = DIGIT_ZEROS
        .partition_point(|&zero| zero <= cp)
        .checked_sub(1)?;
    let offset = cp - DIGIT_ZEROS[block];
    (offset < 10).then_some(offset)
}

/// The values of the decimal digits in a text, in order, whatever their script.
pub(super) fn digits_of(text: &str) -> Vec<u32> {
    text.chars().filter_map(digit_value).collect()
}

/// The text with every decimal digit written in ASCII (other characters kept).
/// The digits of a text, in ASCII, whatever script they are written in; nothing else.
pub(super) fn digit_string(text: &str) -> String {
    digits_of(text)
        .into_iter()
        .filter_map(|d| char::from_digit(d, 10))
        .collect()
}

pub(super) fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|c| {
            digit_value(c)
                .and_then(|d| char::from_digit(d, 10))
                .unwrap_or(c)
        })
        .collect()
}

/// Whether a card number's prefix and length are an issuer's: Visa, Mastercard, American
/// Express, Discover, JCB, Diners Club.
pub(super) fn card_issuer_fits(d: &[u32]) -> bool {
    let n = d.len();
    let prefix = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + x);
    match d.first() {
        Some(4) => matches!(n, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&prefix(2)) && n == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && n == 16,
        Some(3) => {
            (matches!(prefix(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n))
                || (((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38))
                    && (14..=19).contains(&n))
        }
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&n)
        }
        _ => false,
    }
}

/// Whether the words just before a number speak of cards or payment.
pub(super) fn card_context(before: &str) -> bool {
    let tail: String = before
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    [
        "card",
        "visa",
        "mastercard",
        "amex",
        "credit",
        "debit",
        "cc",
        "cvv",
        "payment",
        "paid",
        "pay with",
        "account",
    ]
    .iter()
    .any(|w| tail.contains(w))
}

/// The Luhn checksum of a card number's digits.
pub(super) fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Checks a pattern cannot express: checksums, valid ranges, context, the allow-list.
pub(super) fn accept(kind: PiiKind, value: &str, text: &str, start: usize, end: usize) -> bool {
    let before = &text[..start];
    let next = text[end..].chars().next();
    match kind {
        PiiKind::Card => {
            let digits = digits_of(value);
            // Card numbers are written in one run or in groups of four (Amex: 4-6-5), unlike
            // ISBNs and other hyphenated codes that pass Luhn by chance. Groups are counted
            // in digits, whatever script they are written in.
            let groups: Vec<usize> = value
                .split([' ', '-'])
                .filter(|g| !g.is_empty())
                .map(|g| g.chars().count())
                .collect();
            let grouped = match groups.split_last() {
                None => false,
                Some((_, [])) => true,
                Some((_, leading)) => groups == [4, 6, 5] || leading.iter().all(|&g| g == 4),
            };
            // Luhn alone passes one number in ten (products, ids): a card also needs an
            // issuer's prefix and length, or a word about cards or payment just before it.
            (13..=19).contains(&digits.len())
                && grouped
                && luhn(&digits)
                && (card_issuer_fits(&digits) || card_context(before))
        }
        PiiKind::Ssn => {
            // Validated on digit values, so an SSN in Arabic-Indic or full-width digits is
            // judged like one in ASCII.
            let d = digits_of(value);
            let [a0, a1, a2, g0, g1, s0, s1, s2, s3] = d[..] else {
                return false;
            };
            let area = a0 * 100 + a1 * 10 + a2;
            let group = g0 * 10 + g1;
            let serial = s0 * 1000 + s1 * 100 + s2 * 10 + s3;
            area != 0 && area != 666 && a0 != 9 && group != 0 && serial != 0
        }
        PiiKind::Ip => {
            let preceded_by_version = before.trim_end().rsplit(' ').next().is_some_and(|w| {
                let w = w.to_ascii_lowercase();
                w == "version" || w == "v" || w == "ver" || w == "release"
            });
            !preceded_by_version && {
                let value = ascii_digits(value);
                value.parse::<std::net::Ipv4Addr>().is_ok()
                    || (value.contains(':') && value.parse::<std::net::Ipv6Addr>().is_ok())
            }
        }
        PiiKind::Url => {
            let lower = value.to_ascii_lowercase();
            let path = lower
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_start_matches("www.");
            let social = [
                "facebook.com/",
                "instagram.com/",
                "twitter.com/",
                "x.com/",
                "tiktok.com/",
                "linkedin.com/in/",
                "reddit.com/user/",
                "reddit.com/u/",
                "github.com/",
                "youtube.com/@",
            ];
            lower.contains('?')
                || path.contains("/@")
                || path.contains("/~")
                || path.contains("/u/")
                || path.contains("/user/")
                || social
                    .iter()
                    .any(|s| path.starts_with(s) && path.len() > s.len())
        }
        PiiKind::Phone => {
            let all = digit_string(value);
            let digits = all.len();
            // North American toll-free numbers belong to services (crisis lines), not people.
            let national = all
                .strip_prefix('1')
                .filter(|_| digits == 11)
                .unwrap_or(&all);
            if digits >= 10
                && ["800", "833", "844", "855", "866", "877", "888"]
                    .iter()
                    .any(|p| national.starts_with(p))
            {
                return false;
            }
            // Not a year range, a time or a price: phone numbers have 7-15 digits and are not
            // glued to a currency sign or a decimal point.
            let prev = before.chars().next_back();
            // Nor a piece of a longer hyphenated code (an ISBN, a part number).
            (7..=15).contains(&digits)
                && !matches!(
                    prev,
                    Some('$' | '£' | '€' | '.' | ',' | '-' | '/' | '=' | '#')
                )
                && !matches!(next, Some('-'))
                && !value.contains("..")
        }
        // Names are judged by `name_end`, in their context.
        PiiKind::Email | PiiKind::Address | PiiKind::DateOfBirth | PiiKind::Name => true,
    }
}
