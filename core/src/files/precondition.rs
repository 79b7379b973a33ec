//! Conditional requests (RFC 9110 section 13): a request's preconditions, parsed once, and
//! their evaluation in the RFC's order (13.2.2): `If-Match`, else `If-Unmodified-Since`;
//! then `If-None-Match`, else `If-Modified-Since` (GET and HEAD only). `If-Range` comes
//! last and belongs to the range code ([`super::range::if_range_allows`]).

use std::time::SystemTime;

use super::etag::{ETag, TagList};
use crate::http::head::RequestHead;

/// The precondition fields of a request. Dates that are not valid HTTP-dates are ignored,
/// as RFC 9110 asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match`.
    pub if_match: Option<TagList>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<SystemTime>,
    /// `If-None-Match`.
    pub if_none_match: Option<TagList>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<SystemTime>,
}

/// The outcome of evaluating [`Preconditions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Perform the method (a range request then checks `If-Range`).
    Proceed,
    /// Answer 304 Not Modified (GET and HEAD only).
    NotModified,
    /// Answer 412 Precondition Failed.
    Failed,
}

impl Preconditions {
    /// The preconditions `head` carries.
    pub fn from_head(head: &RequestHead) -> Self {
        // Most requests carry none: one pass over the names instead of four lookups.
        let conditional = |name: &str| {
            name.get(..3)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("if-"))
        };
        if !head.fields().any(|(name, _)| conditional(name)) {
            return Self::default();
        }
        let date = |name: &str| {
            head.field_str(name)
                .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
        };
        Self {
            if_match: tag_list(head, "if-match"),
            if_unmodified_since: date("if-unmodified-since"),
            if_none_match: tag_list(head, "if-none-match"),
            if_modified_since: date("if-modified-since"),
        }
    }

    /// Whether the request carries no precondition.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Evaluates the preconditions against the target's current representation: its tag
    /// (`None` when there is none, e.g. the resource does not exist yet) and modification
    /// time (`None` when it has none). `safe` is true for GET and HEAD, which get 304 where
    /// other methods get 412. Dates compare in whole seconds, as HTTP-dates carry them.
    pub fn evaluate(
        &self,
        safe: bool,
        current: Option<&ETag>,
        modified: Option<SystemTime>,
    ) -> Verdict {
        if let Some(list) = &self.if_match {
            if !current.is_some_and(|tag| list.matches_strong(tag)) {
                return Verdict::Failed;
            }
        } else if let (Some(since), Some(modified)) = (self.if_unmodified_since, modified) {
            if secs(modified) > secs(since) {
                return Verdict::Failed;
            }
        }
        if let Some(list) = &self.if_none_match {
            if current.is_some_and(|tag| list.matches_weak(tag)) {
                return if safe {
                    Verdict::NotModified
                } else {
                    Verdict::Failed
                };
            }
        } else if let (true, Some(since), Some(modified)) = (safe, self.if_modified_since, modified)
        {
            if secs(modified) <= secs(since) {
                return Verdict::NotModified;
            }
        }
        Verdict::Proceed
    }
}

/// The tags of every `name` field line, as one list (`None` without such a line). A line
/// that is not UTF-8 counts as an empty list.
fn tag_list(head: &RequestHead, name: &str) -> Option<TagList> {
    let mut lines = head.fields_named(name).peekable();
    lines.peek()?;
    let mut tags = Vec::new();
    for line in lines {
        match TagList::parse(std::str::from_utf8(line).unwrap_or_default()) {
            TagList::Any => return Some(TagList::Any),
            TagList::Tags(more) => tags.extend(more),
        }
    }
    Some(TagList::Tags(tags))
}

/// Whole seconds since the epoch (0 before it).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limits::Limits;

    /// 2020-01-01T00:00:00Z, the representation's modification time.
    const MODIFIED: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
    const EARLIER: &str = "Tue, 31 Dec 2019 23:59:59 GMT";
    const LATER: &str = "Wed, 01 Jan 2020 00:00:01 GMT";

    fn verdict(fields: &str, safe: bool) -> Verdict {
        let method = if safe { "GET" } else { "PUT" };
        let raw = format!("{method} / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        let head = RequestHead::parse(raw.as_bytes(), &Limits::default()).unwrap();
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
        Preconditions::from_head(&head).evaluate(
            safe,
            Some(&ETag::of(b"hello world")),
            Some(modified),
        )
    }

    use Verdict::{Failed, NotModified, Proceed};

    #[test]
    fn if_match_forms() {
        for value in [
            "\"d4a1185\"",
            "d4a1185",
            "\"x\", \"d4a1185\"",
            "*",
            " \"d4a1185\" ",
        ] {
            assert_eq!(
                verdict(&format!("If-Match: {value}\r\n"), true),
                Proceed,
                "{value}"
            );
            assert_eq!(
                verdict(&format!("If-Match: {value}\r\n"), false),
                Proceed,
                "{value}"
            );
        }
        // Weak tags never match strongly; garbage and other tags fail.
        for value in ["W/\"d4a1185\"", "\"d4a1186\"", "\"d4a1185", "\"\"", ""] {
            assert_eq!(
                verdict(&format!("If-Match: {value}\r\n"), true),
                Failed,
                "{value}"
            );
        }
    }

    #[test]
    fn a_tag_list_may_span_several_field_lines() {
        let split = "If-Match: \"a\"\r\nIf-Match: \"d4a1185\"\r\n";
        assert_eq!(verdict(split, false), Proceed);
        let split = "If-None-Match: \"a\"\r\nIf-None-Match: W/\"d4a1185\"\r\n";
        assert_eq!(verdict(split, true), NotModified);
        assert_eq!(
            verdict("If-Match: \"a\"\r\nIf-Match: \"b\"\r\n", true),
            Failed
        );
    }

    #[test]
    fn if_unmodified_since_forms() {
        for (since, expected) in [
            (MODIFIED, Proceed),
            (LATER, Proceed),
            ("Wednesday, 01-Jan-20 00:00:00 GMT", Proceed),
            (EARLIER, Failed),
            ("not a date", Proceed),
        ] {
            assert_eq!(
                verdict(&format!("If-Unmodified-Since: {since}\r\n"), true),
                expected,
                "{since}"
            );
        }
    }

    #[test]
    fn the_rfc_order_of_evaluation() {
        for (fields, safe, expected) in [
            // If-Match decides over If-Unmodified-Since, which is then not looked at.
            (
                format!("If-Match: \"d4a1185\"\r\nIf-Unmodified-Since: {EARLIER}\r\n"),
                true,
                Proceed,
            ),
            (
                format!("If-Match: \"nope\"\r\nIf-Unmodified-Since: {LATER}\r\n"),
                true,
                Failed,
            ),
            // A failed If-Match wins over a matching If-None-Match (412, not 304).
            (
                "If-Match: \"nope\"\r\nIf-None-Match: \"d4a1185\"\r\n".to_owned(),
                true,
                Failed,
            ),
            (
                format!("If-Unmodified-Since: {EARLIER}\r\nIf-None-Match: \"d4a1185\"\r\n"),
                true,
                Failed,
            ),
            // Passing step 1 or 2, If-None-Match decides: 304 for GET, 412 otherwise.
            (
                "If-Match: *\r\nIf-None-Match: \"d4a1185\"\r\n".to_owned(),
                true,
                NotModified,
            ),
            (
                "If-Match: *\r\nIf-None-Match: \"d4a1185\"\r\n".to_owned(),
                false,
                Failed,
            ),
            ("If-None-Match: *\r\n".to_owned(), false, Failed),
            // If-None-Match present: If-Modified-Since is not looked at.
            (
                format!("If-None-Match: \"nope\"\r\nIf-Modified-Since: {LATER}\r\n"),
                true,
                Proceed,
            ),
            (
                format!("If-Modified-Since: {MODIFIED}\r\n"),
                true,
                NotModified,
            ),
            (format!("If-Modified-Since: {EARLIER}\r\n"), true, Proceed),
            // If-Modified-Since is for GET and HEAD only.
            (format!("If-Modified-Since: {LATER}\r\n"), false, Proceed),
            (String::new(), true, Proceed),
        ] {
            assert_eq!(verdict(&fields, safe), expected, "{fields:?} safe={safe}");
        }
    }

    #[test]
    fn a_missing_representation_fails_if_match_and_passes_if_none_match() {
        let with = |fields: &str| {
            let raw = format!("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n{fields}\r\n");
            let head = RequestHead::parse(raw.as_bytes(), &Limits::default()).unwrap();
            Preconditions::from_head(&head).evaluate(false, None, None)
        };
        assert_eq!(with("If-Match: *\r\n"), Failed);
        assert_eq!(
            with("If-None-Match: *\r\n"),
            Proceed,
            "create only if absent"
        );
        assert_eq!(
            with(&format!("If-Unmodified-Since: {EARLIER}\r\n")),
            Proceed
        );
        assert!(Preconditions::default().is_empty());
    }
}
