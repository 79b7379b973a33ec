//! Entity tags: the original's CRC-32 value, sent quoted, and `If-None-Match` matching
//! (BEHAVIOUR.md: Static files › ETags and caching).
//!
//! The original sends the bare lower-case hex (`b60157c2`) and its clients echo it back
//! bare; we send `"b60157c2"` and accept both forms.

use std::fmt;

use crate::coding::Coding;

/// The CRC-32 (zlib/IEEE) of `bytes` as lower-case hex without leading zeros.
pub fn crc32_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(8);
    push_hex(&mut hex, crc32fast::hash(bytes));
    hex
}

/// Appends `n` in lower-case hex without leading zeros (no formatting machinery: a tag
/// is made for every dynamic answer).
fn push_hex(out: &mut String, n: u32) {
    let digits = (32 - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        let nibble = (n >> (shift * 4)) & 0xf;
        out.push(char::from_digit(nibble, 16).unwrap_or('0'));
    }
}

/// A strong entity tag holding the CRC-32 hex of a representation.
///
/// `Display` gives the quoted header form, [`ETag::bare`] the original's unquoted form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ETag {
    /// The header form, `"hex"`: kept quoted so writing the field is one copy.
    quoted: String,
}

impl ETag {
    /// The tag of a representation held in memory.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_crc32(crc32fast::hash(bytes))
    }

    /// The tag for an already computed CRC-32 value.
    pub(crate) fn from_crc32(crc: u32) -> Self {
        let mut quoted = String::with_capacity(10);
        quoted.push('"');
        push_hex(&mut quoted, crc);
        quoted.push('"');
        Self { quoted }
    }

    /// The tag of this representation compressed with `coding`: the coding's token
    /// appended (`"3610a686-br"`), so each representation has its own strong tag.
    pub(crate) fn with_coding(&self, coding: Coding) -> Self {
        let token = coding.token();
        let mut quoted = String::with_capacity(self.quoted.len() + 1 + token.len());
        quoted.push('"');
        quoted.push_str(self.bare());
        quoted.push('-');
        quoted.push_str(token);
        quoted.push('"');
        Self { quoted }
    }

    /// The unquoted hex, as the original sent it and its clients send it back.
    pub fn bare(&self) -> &str {
        let inner = self.quoted.strip_prefix('"').unwrap_or(&self.quoted);
        inner.strip_suffix('"').unwrap_or(inner)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted)
    }
}

/// Computes an [`ETag`] over content fed in chunks (e.g. a file read piece by piece).
#[derive(Clone, Debug, Default)]
pub struct EtagHasher {
    crc: crc32fast::Hasher,
}

impl EtagHasher {
    /// A hasher that has seen no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of content.
    pub fn update(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
    }

    /// The tag of all content fed so far.
    pub fn finish(self) -> ETag {
        ETag::from_crc32(self.crc.finalize())
    }
}

/// Whether an `If-None-Match` header value matches `tag` (then answer 304).
///
/// Weak comparison (RFC 9110 13.1.2) over `*` or a comma list of `"x"`, `W/"x"` and the
/// bare `x` the original's clients send. Malformed input simply does not match.
pub fn if_none_match(header: &str, tag: &ETag) -> bool {
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return false;
        }
        if let Some(after) = rest.strip_prefix('*') {
            if after.is_empty() || after.starts_with(|c: char| c == ',' || c.is_ascii_whitespace())
            {
                return true;
            }
        }
        let Some((opaque, after)) = next_tag(rest) else {
            return false;
        };
        if opaque == tag.bare() {
            return true;
        }
        rest = after;
    }
}

/// A parsed `If-Match` or `If-None-Match` value (RFC 9110 13.1.1, 13.1.2): `*`, or a list
/// of `"x"`, `W/"x"` and the bare `x` the original's clients send. Parsing stops at a
/// malformed member (an unterminated quote); the members before it count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    /// The listed tags, in order.
    Tags(Vec<ListedTag>),
}

/// One member of a [`TagList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTag {
    /// Sent as `W/"…"`: it never matches strongly.
    pub weak: bool,
    /// The opaque value, without `W/` and quotes.
    pub opaque: String,
}

impl TagList {
    /// Parses a field value; never fails (garbage is an empty list).
    pub fn parse(header: &str) -> Self {
        let mut tags = Vec::new();
        let mut rest = header;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix('*') {
                if after.is_empty()
                    || after.starts_with(|c: char| c == ',' || c.is_ascii_whitespace())
                {
                    return Self::Any;
                }
            }
            let weak = rest.starts_with("W/");
            let Some((opaque, after)) = next_tag(rest) else {
                break;
            };
            tags.push(ListedTag {
                weak,
                opaque: opaque.to_owned(),
            });
            rest = after;
        }
        Self::Tags(tags)
    }

    /// Weak comparison, for `If-None-Match`: `*`, or a member with `tag`'s value.
    pub(crate) fn matches_weak(&self, tag: &ETag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t.opaque == tag.bare()),
        }
    }

    /// Strong comparison, for `If-Match`: `*`, or a member that is not weak with `tag`'s
    /// value (our tags are all strong).
    pub(crate) fn matches_strong(&self, tag: &ETag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| !t.weak && t.opaque == tag.bare()),
        }
    }
}

/// Splits the next list member off `input` (which starts at a member): returns the tag's
/// opaque value without `W/` and quotes, and the rest. `None` on an unterminated quote.
fn next_tag(input: &str) -> Option<(&str, &str)> {
    let input = input.strip_prefix("W/").unwrap_or(input);
    if let Some(quoted) = input.strip_prefix('"') {
        let end = quoted.find('"')?;
        Some((quoted.get(..end)?, quoted.get(end + 1..)?))
    } else {
        let end = input
            .find(|c: char| c == ',' || c.is_ascii_whitespace())
            .unwrap_or(input.len());
        Some((input.get(..end)?, input.get(end..)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_vectors() {
        assert_eq!(crc32_hex(b"hello world"), "d4a1185");
        assert_eq!(crc32_hex(b""), "0");
        // python3 -c "import zlib; print(hex(zlib.crc32(b'123456789')))" -> 0xcbf43926
        assert_eq!(crc32_hex(b"123456789"), "cbf43926");
        // python3 -c "import zlib; print(hex(zlib.crc32(b'The quick brown fox jumps over
        // the lazy dog')))" -> 0x414fa339
        assert_eq!(
            crc32_hex(b"The quick brown fox jumps over the lazy dog"),
            "414fa339"
        );
    }

    #[test]
    fn etag_forms() {
        let tag = ETag::of(b"hello world");
        assert_eq!(tag.to_string(), "\"d4a1185\"");
        assert_eq!(tag.bare(), "d4a1185");
        assert_eq!(ETag::from_crc32(0x01b2_6043).bare(), "1b26043");
        assert_eq!(ETag::from_crc32(0).to_string(), "\"0\"");
        assert_eq!(ETag::from_crc32(u32::MAX).bare(), "ffffffff");
        let coded = ETag::from_crc32(0xabc).with_coding(Coding::Br);
        assert_eq!(
            (coded.to_string().as_str(), coded.bare()),
            ("\"abc-br\"", "abc-br")
        );
    }

    #[test]
    fn hasher_matches_one_shot() {
        let data = b"The quick brown fox jumps over the lazy dog";
        let mut h = EtagHasher::new();
        for chunk in data.chunks(7) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), ETag::of(data));
        assert_eq!(EtagHasher::new().finish().bare(), "0");
    }

    #[test]
    fn if_none_match_forms() {
        let tag = ETag::of(b"hello world");
        assert!(if_none_match("d4a1185", &tag));
        assert!(if_none_match("\"d4a1185\"", &tag));
        assert!(if_none_match("W/\"d4a1185\"", &tag));
        assert!(if_none_match("W/d4a1185", &tag));
        assert!(if_none_match("*", &tag));
        assert!(if_none_match("  \"d4a1185\"  ", &tag));
        assert!(if_none_match("\"aaa\", \"d4a1185\"", &tag));
        assert!(if_none_match("\"aaa\",W/\"d4a1185\"", &tag));
        assert!(if_none_match("aaa, d4a1185", &tag));
        assert!(if_none_match(",,\"x\",,\t\"d4a1185\"", &tag));
        assert!(if_none_match("\"a,b\", \"d4a1185\"", &tag));
    }

    #[test]
    fn if_none_match_mismatches() {
        let tag = ETag::of(b"hello world");
        assert!(!if_none_match("", &tag));
        assert!(!if_none_match("   ", &tag));
        assert!(!if_none_match("\"D4A1185\"", &tag));
        assert!(!if_none_match("\"d4a11850\"", &tag));
        assert!(!if_none_match("\"d4a118\"", &tag));
        assert!(!if_none_match("\"d4a1185", &tag));
        assert!(!if_none_match("\"\"", &tag));
        assert!(!if_none_match("w/\"d4a1185\"", &tag));
        assert!(!if_none_match("\"a,d4a1185\"", &tag));
        assert!(!if_none_match("\"x\" \"d4a1185", &tag));
    }

    #[test]
    fn tag_lists_parse_and_compare() {
        let tag = ETag::of(b"hello world");
        assert_eq!(TagList::parse("*"), TagList::Any);
        assert_eq!(TagList::parse("\"a\", *"), TagList::Any);
        assert_eq!(
            TagList::parse(" W/\"a\", \"b\",c \"d"),
            TagList::Tags(vec![
                ListedTag {
                    weak: true,
                    opaque: "a".into()
                },
                ListedTag {
                    weak: false,
                    opaque: "b".into()
                },
                ListedTag {
                    weak: false,
                    opaque: "c".into()
                },
            ])
        );
        for (header, weak, strong) in [
            ("\"d4a1185\"", true, true),
            ("d4a1185", true, true),
            ("W/\"d4a1185\"", true, false),
            ("\"x\", \"d4a1185\"", true, true),
            ("\"x\", W/\"d4a1185\"", true, false),
            ("*", true, true),
            ("\"D4A1185\"", false, false),
            ("\"d4a1185", false, false),
            ("", false, false),
            ("\"*\"", false, false),
        ] {
            let list = TagList::parse(header);
            assert_eq!(list.matches_weak(&tag), weak, "{header}");
            assert_eq!(list.matches_strong(&tag), strong, "{header}");
            // The one-pass If-None-Match check agrees with the parsed list.
            assert_eq!(if_none_match(header, &tag), weak, "{header}");
        }
    }

    #[test]
    fn if_none_match_garbage_never_panics() {
        let tag = ETag::of(b"x");
        for s in [
            "\"", "W/", "W/\"", "W", ",", "\"\"\"", "é\"é\"", "W/é", "\u{0}", "*,*", "\"*\"",
            "W/\"\"", "é,", "\"é",
        ] {
            let _ = if_none_match(s, &tag);
        }
        // Only a bare `*` is the wildcard; quoted it is an ordinary tag value.
        assert!(!if_none_match("\"*\"", &tag));
        assert!(!if_none_match("W/\"*\"", &tag));
        assert!(!if_none_match("*x", &tag));
        assert!(if_none_match("\"a\", *", &tag));
    }
}
