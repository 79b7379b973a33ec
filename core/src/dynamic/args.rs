//! The `args` handed to dynamic handlers and the query-string parser (BEHAVIOUR.md: Dynamic routes
//! › Arguments).

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::files::Preconditions;
use crate::upload::Upload;
use serde_json::{Map, Value};

/// Request arguments derived from the target left over after a mask matched (BEHAVIOUR.md: Dynamic
/// routes › Arguments).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Args {
    /// Percent-decoded path segments after the mask, normalised (`.`/`..`/empty removed).
    pub paths: Vec<String>,
    /// Query map (values are `Value::String` or `Value::Bool(true)`); empty without `?`.
    pub query: Map<String, Value>,
    /// Percent-decoded text after the first `#`, else empty.
    pub fragment: String,
    /// `:name` captures of the mask, raw (still percent-encoded).
    pub segments: BTreeMap<String, String>,
    /// Parsed request body; an empty object until the body layer fills it.
    pub post: Value,
    /// Free space for middleware; starts empty.
    pub meta: Map<String, Value>,
    /// Files uploaded in a `multipart/form-data` body, by field name.
    pub files: BTreeMap<String, Upload>,
    /// The request's `If-Match`, `If-None-Match`, `If-Modified-Since` and
    /// `If-Unmodified-Since`, parsed. GET and HEAD answers are checked against them after
    /// the handler ran; a handler of another method checks them with
    /// [`Preconditions::evaluate`] before its side effect (RFC 9110 §13.2.2), as only it
    /// knows the current tag. Boxed: most requests carry none, and `Args` moves often.
    #[serde(skip)]
    pub preconditions: Box<Preconditions>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            query: Map::new(),
            fragment: String::new(),
            segments: BTreeMap::new(),
            post: Value::Object(Map::new()),
            meta: Map::new(),
            files: BTreeMap::new(),
            preconditions: Box::default(),
        }
    }
}

impl Args {
    /// Builds args from the leftover target `rest` and the mask captures (later names win).
    pub fn from_rest(rest: &str, segments: impl IntoIterator<Item = (String, String)>) -> Self {
        let (before_fragment, fragment) = match rest.split_once('#') {
            Some((before, fragment)) => (before, decode(fragment)),
            None => (rest, String::new()),
        };
        let (path, query) = match before_fragment.split_once('?') {
            Some((path, query)) => (path, parse_query(query)),
            None => (before_fragment, Map::new()),
        };
        Self {
            paths: normalised_pieces(path).into_iter().map(decode).collect(),
            query,
            fragment,
            segments: segments.into_iter().collect(),
            ..Self::default()
        }
    }
}

/// Parses a query string or urlencoded body: `&`-separated, `%XX` decoding only (`+` stays), a part
/// without `=` maps to `true`, later duplicates overwrite (BEHAVIOUR.md: Dynamic routes ›
/// Arguments).
pub(super) fn parse_query(s: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for part in s.split('&') {
        let (key, value) = match part.split_once('=') {
            Some((key, value)) => (key, Value::String(decode(value))),
            None => (part, Value::Bool(true)),
        };
        map.insert(decode(key), value);
    }
    map
}

/// Percent-decodes `%XX` escapes; invalid escapes stay literal, invalid UTF-8 becomes U+FFFD.
fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// POSIX `normpath` followed by splitting: the non-empty, non-`.` pieces of `path`.
/// `..` removes the previous piece; at the root of an absolute path it is dropped, in a
/// relative path with nothing to remove it is kept.
fn normalised_pieces(path: &str) -> Vec<&str> {
    let absolute = path.starts_with('/');
    let mut pieces: Vec<&str> = Vec::new();
    for piece in path.split('/') {
        match piece {
            "" | "." => {}
            ".." if pieces.last().is_some_and(|last| *last != "..") => {
                pieces.pop();
            }
            ".." if absolute => {}
            _ => pieces.push(piece),
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query_json(s: &str) -> Value {
        Value::Object(parse_query(s))
    }

    #[test]
    fn verified_echo_example() {
        let args = Args::from_rest("/a%20b/./c/../d?x=1&y&z=%41+b&x=2&&=5#fr%20ag", Vec::new());
        assert_eq!(args.paths, vec!["a b".to_owned(), "d".to_owned()]);
        assert_eq!(
            Value::Object(args.query),
            json!({"x": "2", "y": true, "z": "A+b", "": "5"})
        );
        assert_eq!(args.fragment, "fr ag");
        assert_eq!(args.post, json!({}));
        assert!(args.meta.is_empty());
        assert!(args.segments.is_empty());
    }

    #[test]
    fn bare_question_mark() {
        assert_eq!(query_json(""), json!({"": true}));
        assert_eq!(
            Value::Object(Args::from_rest("?", []).query),
            json!({"": true})
        );
        assert_eq!(Value::Object(Args::from_rest("", []).query), json!({}));
    }

    #[test]
    fn query_rules() {
        assert_eq!(query_json("a=1&a=2"), json!({"a": "2"}));
        assert_eq!(query_json("a=1&a"), json!({"a": true}));
        assert_eq!(query_json("a=b=c"), json!({"a": "b=c"}));
        assert_eq!(query_json("a+b=c+d"), json!({"a+b": "c+d"}));
        assert_eq!(query_json("%61=%3D%26"), json!({"a": "=&"}));
        assert_eq!(query_json("n=5"), json!({"n": "5"}));
        assert_eq!(query_json("e="), json!({"e": ""}));
        // Invalid escapes stay literal; invalid UTF-8 is replaced, never a panic.
        assert_eq!(query_json("a=%zz%4"), json!({"a": "%zz%4"}));
        assert_eq!(query_json("a=%ff%C3"), json!({"a": "\u{fffd}\u{fffd}"}));
        assert_eq!(query_json("a=%C3%A9"), json!({"a": "é"}));
    }

    #[test]
    fn fragment_splits_before_query() {
        let args = Args::from_rest("/p#frag?not=query", []);
        assert_eq!(args.fragment, "frag?not=query");
        assert!(args.query.is_empty());
        assert_eq!(args.paths, vec!["p".to_owned()]);
        let args = Args::from_rest("?q=a/b#", []);
        assert_eq!(args.fragment, "");
        assert_eq!(Value::Object(args.query), json!({"q": "a/b"}));
        assert!(args.paths.is_empty());
    }

    #[test]
    fn decoding_happens_after_splitting() {
        let args = Args::from_rest("/a%2Fb/%2E%2E/c", []);
        assert_eq!(args.paths, vec!["a/b", "..", "c"]);
    }

    #[test]
    fn path_normalisation() {
        let paths = |rest: &str| Args::from_rest(rest, []).paths;
        assert_eq!(paths("//a///b/"), vec!["a", "b"]);
        assert_eq!(paths("/../../a"), vec!["a"]);
        assert_eq!(paths("/a/b/../../.."), Vec::<String>::new());
        assert_eq!(paths("/./."), Vec::<String>::new());
        assert_eq!(paths("a/../../b"), vec!["..", "b"]);
        assert_eq!(paths("../../b/.."), vec!["..", ".."]);
        assert_eq!(paths("/+x+"), vec!["+x+"]);
    }

    #[test]
    fn segments_later_names_win() {
        let args = Args::from_rest(
            "",
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("a".to_owned(), "2".to_owned()),
            ],
        );
        assert_eq!(args.segments.get("a").map(String::as_str), Some("2"));
    }
}
