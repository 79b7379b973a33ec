//! Request path sanitising: from a raw request path to segments that can be joined under
//! a served folder without ever leaving it (BEHAVIOUR.md: Static files › Path translation).
//!
//! Literal `.` and `..` segments are resolved (`..` clamped at the root, as the original);
//! anything that only *decodes* to a separator, a dot segment, a control character or
//! invalid UTF-8 is refused, so no decoded segment can escape the folder.

use std::fmt;

/// Splits a request target into its path, query and fragment parts (all still encoded).
///
/// The query starts at the first `?`, the fragment at the first `#`; a `?` after the `#`
/// belongs to the fragment.
pub fn split_target(target: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, fragment) = match target.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (target, None),
    };
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query), fragment),
        None => (rest, None, fragment),
    }
}

/// Sanitises the path component of a target (query and fragment already removed).
///
/// Strips `;params` from the last segment, resolves literal `.`/`..`, percent-decodes each
/// segment once and validates it. Any path that does not start with `/` is read as if it
/// did (the HTTP layer only hands over origin-form paths).
pub fn sanitize(raw_path: &str) -> Result<SafePath, PathError> {
    let path = strip_params(raw_path);
    let is_folder = path.len() <= 1 || path.ends_with('/');
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        match raw {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(decode_segment(raw)?),
        }
    }
    let is_hidden = segments.iter().any(|s| is_hidden_name(s));
    Ok(SafePath {
        segments,
        is_folder,
        is_hidden,
    })
}

/// Whether a single (decoded) file or folder name is hidden, i.e. starts with a dot.
///
/// Hidden names are never served (a 404).
pub(crate) fn is_hidden_name(name: &str) -> bool {
    name.starts_with('.')
}

/// The `Location` for the 301 that adds a missing trailing slash to a directory (BEHAVIOUR.md:
/// Static files › Directories).
///
/// The slash goes at the end of the path, before any `;params` of the last segment, and
/// query and fragment are kept verbatim. A leading run of two or more `/` or `\` collapses
/// to one `/`, so the result can never be read as a scheme-relative (`//host`) URL.
pub fn redirect_location(target: &str) -> String {
    let (path, query, fragment) = split_target(target);
    let bare = strip_params(path);
    let params = path.get(bare.len()..).unwrap_or("");
    let mut out = String::with_capacity(target.len() + 2);
    out.push_str(bare);
    out.push('/');
    out.push_str(params);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    let is_slash = |c: &char| *c == '/' || *c == '\\';
    if out.chars().take(2).filter(is_slash).count() == 2 {
        let rest = out.trim_start_matches(['/', '\\']);
        return format!("/{rest}");
    }
    out
}

/// A request path reduced to validated, decoded segments.
///
/// No segment is empty, `.` or `..`, or contains `/`, `\` or a control character, so
/// joining the segments under a folder stays inside that folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafePath {
    segments: Vec<String>,
    is_folder: bool,
    is_hidden: bool,
}

impl SafePath {
    /// The decoded segments, root first; empty for the root.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether the request named a folder (path of length <= 1 or ending in `/`).
    pub fn is_folder(&self) -> bool {
        self.is_folder
    }

    /// Whether any segment is hidden (starts with `.`); such paths are answered with 404.
    ///
    /// The original only checks the segments after the binding prefix: use
    /// [`is_hidden_name`] on the result of [`SafePath::strip_prefix`] for that.
    pub fn is_hidden(&self) -> bool {
        self.is_hidden
    }

    /// The normalised path: `/a/b`, or `/a/b/` for a folder.
    ///
    /// The root is `/`, not the original's `//`: the binding match is the same, and the
    /// file-fallback hook sees a sane path.
    pub fn normalized(&self) -> String {
        let mut out = String::from("/");
        out.push_str(&self.segments.join("/"));
        if self.is_folder && !self.segments.is_empty() {
            out.push('/');
        }
        out
    }

    /// The path of `name` inside this folder, a folder itself when `is_folder`; refused
    /// as a request path holding `name` would be (a listing shows only what a GET reaches).
    pub fn child(&self, name: &str, is_folder: bool) -> Result<SafePath, PathError> {
        let name = check_segment(name.to_owned())?;
        let mut segments = self.segments.clone();
        segments.push(name);
        Ok(SafePath {
            is_hidden: segments.iter().any(|s| is_hidden_name(s)),
            segments,
            is_folder,
        })
    }

    /// The folder of the first `depth` segments (the root for 0).
    pub fn ancestor(&self, depth: usize) -> SafePath {
        let segments: Vec<String> = self.segments.iter().take(depth).cloned().collect();
        SafePath {
            is_hidden: segments.iter().any(|s| is_hidden_name(s)),
            segments,
            is_folder: true,
        }
    }

    /// Matches a binding prefix (starting and ending with `/`) against `N` as a string
    /// prefix, returning the segments that remain below it.
    ///
    /// `None` if the prefix is malformed or does not match; note `N` = `/foo` does not
    /// match the binding `/foo/`.
    pub fn strip_prefix(&self, prefix: &str) -> Option<Vec<&str>> {
        if !prefix.starts_with('/') || !prefix.ends_with('/') {
            return None;
        }
        if !self.normalized().starts_with(prefix) {
            return None;
        }
        // `N` has exactly one `/` before each segment, so a prefix of it ending in `/`
        // covers exactly (number of slashes - 1) whole segments.
        let covered = prefix.matches('/').count().saturating_sub(1);
        let rest = self.segments.get(covered..)?;
        Some(rest.iter().map(String::as_str).collect())
    }
}

/// Why a request path was refused; every variant is answered with 400 Bad Request.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hexadecimal digits.
    BadPercentEncoding,
    /// A decoded segment is not valid UTF-8 (this includes overlong encodings).
    InvalidUtf8,
    /// A decoded segment contains `/` or `\`.
    Separator,
    /// A decoded segment contains NUL or another ASCII control character.
    ControlCharacter,
    /// A segment decodes to `.` or `..` (e.g. `%2e%2e`).
    DotSegment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadPercentEncoding => "malformed percent-encoding in path",
            Self::InvalidUtf8 => "path segment is not valid UTF-8",
            Self::Separator => "path segment contains an encoded separator",
            Self::ControlCharacter => "path segment contains a control character",
            Self::DotSegment => "path segment decodes to a dot segment",
        })
    }
}

impl std::error::Error for PathError {}

/// Removes the `;params` of the last segment (as Python's `urlparse` does).
fn strip_params(path: &str) -> &str {
    let last_start = path.rfind('/').map_or(0, |i| i + 1);
    match path.get(last_start..).and_then(|last| last.find(';')) {
        Some(i) => path.get(..last_start + i).unwrap_or(path),
        None => path,
    }
}

/// Percent-decodes one segment strictly and validates the result.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut iter = raw.bytes();
    while let Some(b) = iter.next() {
        if b == b'%' {
            let hi = iter.next().and_then(hex_value);
            let lo = iter.next().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => bytes.push((hi << 4) | lo),
                _ => return Err(PathError::BadPercentEncoding),
            }
        } else {
            bytes.push(b);
        }
    }
    let segment = String::from_utf8(bytes).map_err(|_| PathError::InvalidUtf8)?;
    check_segment(segment)
}

/// Refuses a decoded segment that could leave its folder or cannot be named in a URL.
fn check_segment(segment: String) -> Result<String, PathError> {
    if segment.contains(['/', '\\']) {
        return Err(PathError::Separator);
    }
    if segment.bytes().any(|b| b.is_ascii_control()) {
        return Err(PathError::ControlCharacter);
    }
    if segment == "." || segment == ".." {
        return Err(PathError::DotSegment);
    }
    Ok(segment)
}

/// The value of one hexadecimal digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Component, Path, PathBuf};

    fn segs(raw: &str) -> Vec<String> {
        sanitize(raw).unwrap().segments().to_vec()
    }

    #[test]
    fn child_refuses_what_no_request_can_name() {
        let dir = sanitize("/a/").unwrap();
        let file = dir.child("b c.txt", false).unwrap();
        assert_eq!(file, sanitize("/a/b%20c.txt").unwrap());
        assert_eq!(dir.child("d", true).unwrap(), sanitize("/a/d/").unwrap());
        assert!(dir.child(".git", true).unwrap().is_hidden());
        assert_eq!(dir.child("x\\y", false), Err(PathError::Separator));
        assert_eq!(dir.child("x/y", false), Err(PathError::Separator));
        assert_eq!(dir.child("x\ny", false), Err(PathError::ControlCharacter));
        assert_eq!(dir.child("..", true), Err(PathError::DotSegment));
        let deep = sanitize("/a/.b/c.txt").unwrap();
        assert_eq!(deep.ancestor(0), sanitize("/").unwrap());
        assert_eq!(deep.ancestor(2), sanitize("/a/.b/").unwrap());
        assert!(deep.ancestor(2).is_hidden() && !deep.ancestor(1).is_hidden());
    }

    #[test]
    fn split_target_parts() {
        assert_eq!(split_target("/a/b"), ("/a/b", None, None));
        assert_eq!(split_target("/a?x=1"), ("/a", Some("x=1"), None));
        assert_eq!(split_target("/a#frag"), ("/a", None, Some("frag")));
        assert_eq!(split_target("/a?x#f?y"), ("/a", Some("x"), Some("f?y")));
        assert_eq!(split_target("/a#f?y"), ("/a", None, Some("f?y")));
        assert_eq!(split_target("/a?"), ("/a", Some(""), None));
        assert_eq!(split_target(""), ("", None, None));
    }

    #[test]
    fn examples_verified_on_the_original() {
        let p = sanitize("/").unwrap();
        assert!(p.segments().is_empty());
        assert!(p.is_folder());
        assert_eq!(p.normalized(), "/");

        assert_eq!(segs("/sub/../index.html"), ["index.html"]);
        let p = sanitize("/../../etc/passwd").unwrap();
        assert_eq!(p.segments(), ["etc", "passwd"]);
        assert_eq!(p.normalized(), "/etc/passwd");
        assert!(!p.is_hidden());

        let p = sanitize("/.hidden/s.txt").unwrap();
        assert!(p.is_hidden());
        assert_eq!(p.segments(), [".hidden", "s.txt"]);
        let p = sanitize("/.git/").unwrap();
        assert!(p.is_hidden());
        assert!(p.is_folder());
        assert_eq!(p.normalized(), "/.git/");
    }

    #[test]
    fn folder_detection() {
        assert!(sanitize("").unwrap().is_folder());
        assert!(sanitize("/").unwrap().is_folder());
        assert!(sanitize("/sub/").unwrap().is_folder());
        assert!(!sanitize("/sub").unwrap().is_folder());
        assert_eq!(sanitize("/sub/").unwrap().normalized(), "/sub/");
        assert_eq!(sanitize("/sub").unwrap().normalized(), "/sub");
        // `..` at the end is resolved but does not make a folder (length > 1, no `/`).
        let p = sanitize("/a/..").unwrap();
        assert!(!p.is_folder());
        assert_eq!(p.normalized(), "/");
    }

    #[test]
    fn normalisation_collapses_and_resolves() {
        assert_eq!(segs("//a///b/./c/"), ["a", "b", "c"]);
        assert_eq!(segs("/a/b/../../../c"), ["c"]);
        assert_eq!(segs("/./a/."), ["a"]);
        assert_eq!(sanitize("/a/./").unwrap().normalized(), "/a/");
        assert_eq!(segs("a/b"), ["a", "b"]);
    }

    #[test]
    fn hidden_after_resolution() {
        assert!(!sanitize("/.hidden/../x").unwrap().is_hidden());
        assert!(sanitize("/a/%2eenv").unwrap().is_hidden());
        assert!(sanitize("/a/.env").unwrap().is_hidden());
        assert!(!sanitize("/a/b.env").unwrap().is_hidden());
        assert!(is_hidden_name(".x"));
        assert!(!is_hidden_name("x."));
    }

    #[test]
    fn params_of_last_segment_stripped() {
        assert_eq!(segs("/a;x/b;y=1"), ["a;x", "b"]);
        let p = sanitize("/dir/;x").unwrap();
        assert!(p.is_folder());
        assert_eq!(p.segments(), ["dir"]);
        assert_eq!(segs("/file.txt;jsessionid=1"), ["file.txt"]);
        assert!(!sanitize("/dir;x").unwrap().is_folder());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(segs("/a%20b/%C3%A9"), ["a b", "é"]);
        assert_eq!(segs("/%41%62"), ["Ab"]);
        assert_eq!(segs("/a+b"), ["a+b"]);
        assert_eq!(sanitize("/%"), Err(PathError::BadPercentEncoding));
        assert_eq!(sanitize("/%4"), Err(PathError::BadPercentEncoding));
        assert_eq!(sanitize("/%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(sanitize("/%4g"), Err(PathError::BadPercentEncoding));
        assert_eq!(sanitize("/a%+1"), Err(PathError::BadPercentEncoding));
        assert_eq!(sanitize("/%ff"), Err(PathError::InvalidUtf8));
    }

    #[test]
    fn escape_attempts() {
        assert_eq!(sanitize("/%2e%2e/etc/passwd"), Err(PathError::DotSegment));
        assert_eq!(sanitize("/%2E%2E"), Err(PathError::DotSegment));
        assert_eq!(sanitize("/a/%2e/b"), Err(PathError::DotSegment));
        assert_eq!(sanitize("/.%2e/x"), Err(PathError::DotSegment));
        assert_eq!(sanitize("/..%2fetc"), Err(PathError::Separator));
        assert_eq!(sanitize("/a%2fb"), Err(PathError::Separator));
        assert_eq!(sanitize("/a%2Fb"), Err(PathError::Separator));
        assert_eq!(sanitize("/..%5c..%5cwin.ini"), Err(PathError::Separator));
        assert_eq!(sanitize("/..\\..\\x"), Err(PathError::Separator));
        assert_eq!(sanitize("/\\evil"), Err(PathError::Separator));
        assert_eq!(sanitize("/%c0%ae%c0%ae/x"), Err(PathError::InvalidUtf8));
        assert_eq!(sanitize("/%e0%80%ae"), Err(PathError::InvalidUtf8));
        assert_eq!(sanitize("/a%00.txt"), Err(PathError::ControlCharacter));
        assert_eq!(sanitize("/a\0b"), Err(PathError::ControlCharacter));
        assert_eq!(
            sanitize("/x%0d%0aSet-Cookie:1"),
            Err(PathError::ControlCharacter)
        );
        assert_eq!(sanitize("/x%09"), Err(PathError::ControlCharacter));
        assert_eq!(sanitize("/x%7f"), Err(PathError::ControlCharacter));

        // Double encoding decodes once to a harmless literal name.
        assert_eq!(segs("/%252e%252e/x"), ["%2e%2e", "x"]);
        assert_eq!(segs("/%252f"), ["%2f"]);
        // A scheme-relative looking path is just segments below the root.
        let p = sanitize("//host/x").unwrap();
        assert_eq!(p.segments(), ["host", "x"]);
        assert_eq!(p.normalized(), "/host/x");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            PathError::DotSegment.to_string(),
            "path segment decodes to a dot segment"
        );
        assert_eq!(
            PathError::BadPercentEncoding.to_string(),
            "malformed percent-encoding in path"
        );
    }

    #[test]
    fn strip_prefix_matches_bindings() {
        let p = sanitize("/foo/bar/baz.txt").unwrap();
        assert_eq!(p.strip_prefix("/"), Some(vec!["foo", "bar", "baz.txt"]));
        assert_eq!(p.strip_prefix("/foo/"), Some(vec!["bar", "baz.txt"]));
        assert_eq!(p.strip_prefix("/foo/bar/"), Some(vec!["baz.txt"]));
        assert_eq!(p.strip_prefix("/fo/"), None);
        assert_eq!(p.strip_prefix("/foo"), None);
        assert_eq!(p.strip_prefix("foo/"), None);
        assert_eq!(p.strip_prefix(""), None);
        assert_eq!(p.strip_prefix("//"), None);

        // As in the original: `/foo` does not match the binding `/foo/`.
        let p = sanitize("/foo").unwrap();
        assert_eq!(p.strip_prefix("/foo/"), None);
        assert_eq!(p.strip_prefix("/"), Some(vec!["foo"]));
        let p = sanitize("/foo/").unwrap();
        assert_eq!(p.strip_prefix("/foo/"), Some(vec![]));

        let root = sanitize("/").unwrap();
        assert_eq!(root.strip_prefix("/"), Some(vec![]));
        assert_eq!(root.strip_prefix("/foo/"), None);

        // Hidden check relative to a binding, before any file lookup.
        let p = sanitize("/.well-known/a").unwrap();
        assert!(p.is_hidden());
        let rest = p.strip_prefix("/.well-known/").unwrap();
        assert!(!rest.iter().any(|s| is_hidden_name(s)));
    }

    #[test]
    fn redirect_location_appends_slash() {
        assert_eq!(redirect_location("/sub"), "/sub/");
        assert_eq!(redirect_location("/sub?x=1"), "/sub/?x=1");
        assert_eq!(redirect_location("/a/b?x=1&y#frag"), "/a/b/?x=1&y#frag");
        assert_eq!(redirect_location("/a%20b"), "/a%20b/");
        assert_eq!(redirect_location("/sub#f"), "/sub/#f");
        assert_eq!(redirect_location("/dir;p?q"), "/dir/;p?q");
        // Never scheme-relative.
        assert_eq!(redirect_location("//evil.com"), "/evil.com/");
        assert_eq!(redirect_location("/\\evil.com"), "/evil.com/");
        assert_eq!(redirect_location("/\\/\\//evil.com?x"), "/evil.com/?x");
        assert_eq!(redirect_location("\\\\evil.com"), "/evil.com/");
        assert_eq!(redirect_location("\\/evil.com"), "/evil.com/");
        assert_eq!(redirect_location("/a//b"), "/a//b/");
        assert_eq!(redirect_location(""), "/");
    }

    /// Tiny deterministic generator for the property test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn property_joined_segments_stay_under_root() {
        const TOKENS: &[&str] = &[
            "/", "/", "/", ".", "..", "...", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "%00",
            "%", "%2", "%25", "%c0%ae", "%c0", "%ae", "a", "b", "é", "%C3%A9", ";", "?", "~", ":",
            "C:", "%3a", " ", "%20", "\0", "\n", "%0a", "%7f", "//", ".%2e",
        ];
        let root = Path::new("/srv/root");
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.next() % 12;
            let mut raw = String::new();
            for _ in 0..len {
                let i = usize::try_from(rng.next() % TOKENS.len() as u64).unwrap();
                raw.push_str(TOKENS[i]);
            }
            let Ok(safe) = sanitize(&raw) else { continue };
            accepted += 1;
            let mut joined = PathBuf::from(root);
            for s in safe.segments() {
                assert!(!s.is_empty(), "{raw:?}");
                assert!(!s.contains(['/', '\\', '\0']), "{raw:?}");
                joined.push(s);
            }
            assert!(joined.starts_with(root), "{raw:?} -> {joined:?}");
            let below = joined.strip_prefix(root).unwrap();
            for c in below.components() {
                assert!(matches!(c, Component::Normal(_)), "{raw:?} -> {c:?}");
            }
            assert_eq!(below.components().count(), safe.segments().len(), "{raw:?}");
        }
        assert!(accepted > 1000, "generator too hostile: {accepted}");
    }
}
