//! `Range` and `If-Range` (RFC 9110 section 14) for one representation of known length.
//!
//! Several ranges are sorted, and overlapping or adjacent ones coalesced (RFC 9110
//! 15.3.7.2); what remains is one range (a plain 206) or several (a `multipart/byteranges`
//! 206, see [`super::byteranges`]). Like nginx against the "Apache killer" pattern, a header
//! with more than [`MAX_RANGES`] ranges, or whose ranges add up to more than the
//! representation, is ignored: the whole representation is the answer.

use super::etag::ETag;

/// At most this many ranges are read from one header; more → the header is ignored.
pub const MAX_RANGES: usize = 16;

/// What to answer for a `Range` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Invalid syntax, another unit, too many ranges or more bytes asked than there are:
    /// serve the whole representation (200).
    Ignore,
    /// Serve this part (206 with [`ByteRange::content_range`]).
    Satisfiable(ByteRange),
    /// Serve these parts, disjoint, not adjacent and in ascending order (206
    /// `multipart/byteranges`).
    Multiple(Vec<ByteRange>),
    /// No range overlaps the representation: 416 with [`unsatisfiable_content_range`].
    Unsatisfiable,
}

/// A byte range of a representation, both ends inclusive.
///
/// [`parse_range`] only returns non-empty ranges inside the representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte (inclusive).
    pub end_inclusive: u64,
}

impl ByteRange {
    /// Number of bytes in the range (0 if `end_inclusive < start`).
    ///
    /// Saturates at `u64::MAX` for the one range `0..=u64::MAX`, which no representation
    /// can have (its length would be `u64::MAX + 1`).
    pub fn len(&self) -> u64 {
        self.end_inclusive
            .checked_sub(self.start)
            .map_or(0, |d| d.saturating_add(1))
    }

    /// Whether the range holds no byte (never true for a range from [`parse_range`]).
    pub fn is_empty(&self) -> bool {
        self.end_inclusive < self.start
    }

    /// The `Content-Range` value of a 206: `bytes <start>-<end>/<len>`.
    pub fn content_range(&self, len: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end_inclusive, len)
    }
}

/// The `Content-Range` value of a 416: `bytes */<len>`.
pub fn unsatisfiable_content_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// Evaluates a `Range` header against a representation of `len` bytes.
///
/// Accepts `bytes=a-b`, `bytes=a-`, `bytes=-n` and comma lists of them with optional
/// whitespace; `b` beyond the end is clamped and ranges outside the representation are
/// dropped. For an empty representation a suffix range is ignored (the whole, empty, body
/// is the answer) and other ranges are unsatisfiable.
pub fn parse_range(header: &str, len: u64) -> RangeOutcome {
    let Some((unit, set)) = header.split_once('=') else {
        return RangeOutcome::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeOutcome::Ignore;
    }
    let mut ranges = Vec::new();
    let mut count = 0;
    let mut asked: u64 = 0;
    let mut suffix_on_empty = false;
    for spec in set.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return RangeOutcome::Ignore;
        }
        let Some(spec) = RangeSpec::parse(spec) else {
            return RangeOutcome::Ignore;
        };
        if len == 0 && matches!(spec, RangeSpec::Suffix(n) if n > 0) {
            suffix_on_empty = true;
        }
        if let Some(range) = spec.resolve(len) {
            asked = asked.saturating_add(range.len());
            ranges.push(range);
        }
    }
    if count == 0 || asked > len {
        return RangeOutcome::Ignore;
    }
    match coalesce(ranges).as_slice() {
        [] if suffix_on_empty => RangeOutcome::Ignore,
        [] => RangeOutcome::Unsatisfiable,
        [one] => RangeOutcome::Satisfiable(*one),
        many => RangeOutcome::Multiple(many.to_vec()),
    }
}

/// Sorts `ranges` and merges those that overlap or touch.
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end_inclusive.saturating_add(1) => {
                last.end_inclusive = last.end_inclusive.max(range.end_inclusive);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// Whether an `If-Range` value still designates our representation, so the `Range` may be
/// honoured (otherwise serve the whole representation).
///
/// An entity tag must match strongly (`"x"`, or our bare form `x`); weak tags never match.
/// A date must equal `Last-Modified` exactly.
pub fn if_range_allows(if_range: &str, etag: &ETag, last_modified_http_date: &str) -> bool {
    let value = if_range.trim();
    if value.is_empty() || value.starts_with("W/") {
        return false;
    }
    if let Some(quoted) = value.strip_prefix('"') {
        return quoted.strip_suffix('"') == Some(etag.bare());
    }
    if value == etag.bare() {
        return true;
    }
    match (
        httpdate::parse_http_date(value),
        httpdate::parse_http_date(last_modified_http_date.trim()),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One syntactically valid range-spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeSpec {
    /// `first-` or `first-last`.
    Int { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// Parses `a-b`, `a-` or `-n`; `None` for anything else (including `last < first`).
    fn parse(spec: &str) -> Option<Self> {
        let (first, last) = spec.split_once('-')?;
        if first.is_empty() {
            return Some(Self::Suffix(parse_digits(last)?));
        }
        let first = parse_digits(first)?;
        let last = if last.is_empty() {
            None
        } else {
            Some(parse_digits(last)?)
        };
        if last.is_some_and(|last| last < first) {
            return None;
        }
        Some(Self::Int { first, last })
    }

    /// The bytes this spec selects of a `len`-byte representation, if any.
    fn resolve(self, len: u64) -> Option<ByteRange> {
        let last_byte = len.checked_sub(1)?;
        match self {
            Self::Int { first, last } if first <= last_byte => Some(ByteRange {
                start: first,
                end_inclusive: last.map_or(last_byte, |last| last.min(last_byte)),
            }),
            Self::Int { .. } => None,
            Self::Suffix(0) => None,
            Self::Suffix(n) => Some(ByteRange {
                start: len.saturating_sub(n),
                end_inclusive: last_byte,
            }),
        }
    }
}

/// Parses a non-empty run of ASCII digits; `None` on any other character or on overflow.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sat(start: u64, end_inclusive: u64) -> RangeOutcome {
        RangeOutcome::Satisfiable(ByteRange {
            start,
            end_inclusive,
        })
    }

    #[test]
    fn simple_forms() {
        assert_eq!(parse_range("bytes=0-499", 1000), sat(0, 499));
        assert_eq!(parse_range("bytes=500-999", 1000), sat(500, 999));
        assert_eq!(parse_range("bytes=500-", 1000), sat(500, 999));
        assert_eq!(parse_range("bytes=-500", 1000), sat(500, 999));
        assert_eq!(parse_range("bytes=-1", 1000), sat(999, 999));
        assert_eq!(parse_range("bytes=0-0", 1000), sat(0, 0));
        assert_eq!(parse_range("bytes=999-999", 1000), sat(999, 999));
    }

    #[test]
    fn clamping_and_bounds() {
        assert_eq!(parse_range("bytes=0-5000", 1000), sat(0, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), sat(0, 999));
        assert_eq!(parse_range("bytes=0-18446744073709551615", 10), sat(0, 9));
        assert_eq!(
            parse_range("bytes=1000-", 1000),
            RangeOutcome::Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=1000-2000", 1000),
            RangeOutcome::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 1000), RangeOutcome::Unsatisfiable);
    }

    #[test]
    fn empty_representation() {
        assert_eq!(parse_range("bytes=0-", 0), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 0), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), RangeOutcome::Ignore);
    }

    #[test]
    fn whitespace_and_case() {
        assert_eq!(
            parse_range("bytes= 0-1 , 5-6 ", 10),
            multi(&[(0, 1), (5, 6)])
        );
        assert_eq!(parse_range(" Bytes =\t2-3", 10), sat(2, 3));
        assert_eq!(parse_range("BYTES=2-3", 10), sat(2, 3));
        assert_eq!(parse_range("bytes=0 - 1", 10), RangeOutcome::Ignore);
    }

    fn multi(ranges: &[(u64, u64)]) -> RangeOutcome {
        RangeOutcome::Multiple(
            ranges
                .iter()
                .map(|&(start, end_inclusive)| ByteRange {
                    start,
                    end_inclusive,
                })
                .collect(),
        )
    }

    #[test]
    fn multiple_ranges_are_sorted_and_coalesced() {
        assert_eq!(parse_range("bytes=0-1,5-6", 10), multi(&[(0, 1), (5, 6)]));
        assert_eq!(parse_range("bytes=5-6,0-1", 10), multi(&[(0, 1), (5, 6)]));
        // Unsatisfiable members are dropped; one left is a plain range.
        assert_eq!(parse_range("bytes=50-60,5-6", 10), sat(5, 6));
        assert_eq!(parse_range("bytes=50-60,-0,-3", 10), sat(7, 9));
        assert_eq!(
            parse_range("bytes=50-60,70-", 10),
            RangeOutcome::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=,,0-1,,", 10), sat(0, 1));
        // Overlapping and adjacent ranges merge.
        assert_eq!(parse_range("bytes=0-2,2-3", 10), sat(0, 3));
        assert_eq!(parse_range("bytes=0-2,3-4", 10), sat(0, 4));
        assert_eq!(parse_range("bytes=3-5,0-1,2-2", 10), sat(0, 5));
        assert_eq!(
            parse_range("bytes=8-9,0-1,1-2,-1", 10),
            multi(&[(0, 2), (8, 9)])
        );
        assert_eq!(
            parse_range("bytes=0-0,2-2,4-4", 10),
            multi(&[(0, 0), (2, 2), (4, 4)])
        );
        // A syntax error anywhere invalidates the whole header.
        assert_eq!(parse_range("bytes=0-1,x", 10), RangeOutcome::Ignore);
    }

    #[test]
    fn ranges_adding_up_to_more_than_the_representation_are_ignored() {
        // The "Apache killer" shape: many overlapping ranges.
        assert_eq!(parse_range("bytes=0-,1-,2-,3-", 10), RangeOutcome::Ignore);
        assert_eq!(
            parse_range("bytes=0-1,0-1,0-1,0-1,0-1,0-1", 10),
            RangeOutcome::Ignore
        );
        assert_eq!(parse_range("bytes=0-,0-", 10), RangeOutcome::Ignore);
        assert_eq!(parse_range("bytes=0-9,0-0", 10), RangeOutcome::Ignore);
        // Exactly the representation is still served as asked.
        assert_eq!(parse_range("bytes=0-4,5-9", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=0-4,4-8", 10), sat(0, 8));
        assert_eq!(parse_range("bytes=0-0,-9", 10), sat(0, 9));
        assert_eq!(parse_range("bytes=0-0,-8", 10), multi(&[(0, 0), (2, 9)]));
        // Dropped (unsatisfiable) members do not count.
        assert_eq!(parse_range("bytes=0-9,10-20", 10), sat(0, 9));
    }

    #[test]
    fn too_many_ranges_ignored() {
        let spaced = |n: usize| {
            let specs: Vec<String> = (0..n).map(|i| format!("{}-{}", 2 * i, 2 * i)).collect();
            format!("bytes={}", specs.join(","))
        };
        let RangeOutcome::Multiple(parts) = parse_range(&spaced(MAX_RANGES), 100) else {
            panic!("expected parts");
        };
        assert_eq!(parts.len(), MAX_RANGES);
        assert_eq!(
            parse_range(&spaced(MAX_RANGES + 1), 100),
            RangeOutcome::Ignore
        );
    }

    #[test]
    fn invalid_syntax_ignored() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=a-b",
            "bytes=1-a",
            "bytes=5-4",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=--1",
            "bytes=1--2",
            "bytes=0x1-2",
            "bytes=1.5-2",
            "bytes=١-٢",
            "items=0-1",
            "bytes 0-1",
            "bytes=18446744073709551616-",
            "bytes=-18446744073709551616",
            "bytes=0-99999999999999999999999",
        ] {
            assert_eq!(parse_range(h, 100), RangeOutcome::Ignore, "{h:?}");
        }
    }

    #[test]
    fn byte_range_accessors() {
        let RangeOutcome::Satisfiable(r) = parse_range("bytes=10-19", 100) else {
            panic!("expected a range");
        };
        assert_eq!(r.start, 10);
        assert_eq!(r.end_inclusive, 19);
        assert_eq!(r.len(), 10);
        assert!(!r.is_empty());
        let backwards = ByteRange {
            start: 5,
            end_inclusive: 4,
        };
        assert_eq!(backwards.len(), 0);
        assert!(backwards.is_empty());
        let whole = ByteRange {
            start: 0,
            end_inclusive: u64::MAX,
        };
        assert_eq!(whole.len(), u64::MAX);
        assert_eq!(r.content_range(100), "bytes 10-19/100");
        assert_eq!(unsatisfiable_content_range(100), "bytes */100");
        let RangeOutcome::Satisfiable(all) = parse_range("bytes=0-", u64::MAX) else {
            panic!("expected a range");
        };
        assert_eq!(all.len(), u64::MAX);
    }

    #[test]
    fn if_range_forms() {
        let tag = ETag::of(b"hello world");
        let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(if_range_allows("\"d4a1185\"", &tag, lm));
        assert!(if_range_allows(" \"d4a1185\" ", &tag, lm));
        assert!(if_range_allows("d4a1185", &tag, lm));
        assert!(!if_range_allows("W/\"d4a1185\"", &tag, lm));
        assert!(!if_range_allows("\"d4a1186\"", &tag, lm));
        assert!(!if_range_allows("\"d4a1185", &tag, lm));
        assert!(!if_range_allows("\"\"d4a1185\"", &tag, lm));
        assert!(!if_range_allows("", &tag, lm));
        assert!(!if_range_allows("*", &tag, lm));

        assert!(if_range_allows(lm, &tag, lm));
        // Same instant in the obsolete formats.
        assert!(if_range_allows("Sunday, 06-Nov-94 08:49:37 GMT", &tag, lm));
        assert!(if_range_allows("Sun Nov  6 08:49:37 1994", &tag, lm));
        assert!(!if_range_allows("Sun, 06 Nov 1994 08:49:38 GMT", &tag, lm));
        assert!(!if_range_allows("not a date", &tag, lm));
        assert!(!if_range_allows(lm, &tag, "garbage"));
    }
}
