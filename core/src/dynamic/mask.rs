//! Route masks (`/api/:version/items`) and the per-method route table (BEHAVIOUR.md: Dynamic routes
//! › Masks and route order).

use std::fmt;

use super::args::Args;
use crate::http::head::Method;

/// A parsed route mask: `/`-separated literal pieces and `:name` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Capture(String),
}

/// Result of a successful [`Mask::matches`]: the captures and the unmatched tail of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskMatch<'t> {
    /// `(name, raw value)` per `:name` capture, in mask order; values are not percent-decoded.
    pub segments: Vec<(String, String)>,
    /// Leftover target: empty or starting with `/`, `?` or `#` (input of [`Args::from_rest`]).
    pub rest: &'t str,
}

impl Mask {
    /// Parses a mask string; empty pieces (from `//` or a trailing `/`) are ignored.
    pub fn new(mask: &str) -> Self {
        let pieces = mask
            .split('/')
            .filter(|piece| !piece.is_empty())
            .map(|piece| match piece.strip_prefix(':') {
                Some(name) => Piece::Capture(name.to_owned()),
                None => Piece::Literal(piece.to_owned()),
            })
            .collect();
        Self {
            text: mask.to_owned(),
            pieces,
        }
    }

    /// The mask string as registered.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches the raw target (still percent-encoded, with `?query` and `#fragment`).
    pub fn matches<'t>(&self, target: &'t str) -> Option<MaskMatch<'t>> {
        let mut rest = target;
        let mut segments = Vec::new();
        for piece in &self.pieces {
            rest = rest.strip_prefix('/')?;
            match piece {
                Piece::Capture(name) => {
                    let end = rest.find('/').unwrap_or(rest.len());
                    let (value, tail) = rest.split_at(end);
                    segments.push((name.clone(), value.to_owned()));
                    rest = tail;
                }
                Piece::Literal(literal) => {
                    let tail = rest.strip_prefix(literal.as_str())?;
                    if !matches!(tail.as_bytes().first(), None | Some(b'/' | b'?' | b'#')) {
                        return None;
                    }
                    rest = tail;
                }
            }
        }
        Some(MaskMatch { segments, rest })
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Dynamic routes per method, longest mask first, equal lengths in registration order.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable<T> {
    routes: [Vec<Route<T>>; 4],
}

#[derive(Debug, Clone)]
struct Route<T> {
    mask: Mask,
    /// Required `args.paths` length; `None` is unrestricted.
    argc: Option<usize>,
    value: T,
}

/// Outcome of [`RouteTable::find`] when some route's mask matched the target.
#[derive(Debug)]
pub(crate) enum RouteHit<'r, T> {
    /// The first matching route accepted the request.
    Matched {
        /// Value registered with the route (the handler).
        value: &'r T,
        /// Arguments computed from the target.
        args: Args,
    },
    /// The first matching route rejected the number of paths: the request falls through to
    /// the static phase (GET/HEAD) or a 404 (other methods); no other route is tried.
    ArgcMismatch,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            routes: [Vec::new(), Vec::new(), Vec::new(), Vec::new()],
        }
    }
}

impl<T> RouteTable<T> {
    /// Registers `value` for `(method, mask)` with an optional argc; re-registering the same
    /// pair replaces the route in place and returns the previous value. `HEAD` shares the
    /// `GET` routes; `OPTIONS` and unknown methods are never routed, so `value` comes back.
    pub(crate) fn insert(
        &mut self,
        method: Method,
        mask: &str,
        argc: Option<usize>,
        value: T,
    ) -> Option<T> {
        let Some(routes) = self.list_mut(method) else {
            return Some(value);
        };
        if let Some(route) = routes.iter_mut().find(|route| route.mask.as_str() == mask) {
            route.argc = argc;
            return Some(std::mem::replace(&mut route.value, value));
        }
        let len = mask_len(mask);
        let at = routes
            .iter()
            .position(|route| mask_len(route.mask.as_str()) < len)
            .unwrap_or(routes.len());
        routes.insert(
            at,
            Route {
                mask: Mask::new(mask),
                argc,
                value,
            },
        );
        None
    }

    /// Finds the first route of `method` matching `target` and applies its argc check.
    pub(crate) fn find(&self, method: Method, target: &str) -> Option<RouteHit<'_, T>> {
        self.list(method).iter().find_map(|route| {
            let found = route.mask.matches(target)?;
            let args = Args::from_rest(found.rest, found.segments);
            Some(match route.argc {
                Some(expected) if expected != args.paths.len() => RouteHit::ArgcMismatch,
                _ => RouteHit::Matched {
                    value: &route.value,
                    args,
                },
            })
        })
    }

    fn list(&self, method: Method) -> &[Route<T>] {
        slot(method).map_or(&[], |i| &self.routes[i])
    }

    fn list_mut(&mut self, method: Method) -> Option<&mut Vec<Route<T>>> {
        slot(method).map(|i| &mut self.routes[i])
    }
}

/// Which of the four route lists serves `method`: `HEAD` uses the `GET` routes.
fn slot(method: Method) -> Option<usize> {
    match method {
        Method::Get | Method::Head => Some(0),
        Method::Post => Some(1),
        Method::Put => Some(2),
        Method::Delete => Some(3),
        Method::Options | Method::Other => None,
    }
}

/// Mask length as the reference measures it (characters, not bytes).
fn mask_len(mask: &str) -> usize {
    mask.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(mask: &str, target: &str) -> Option<(Vec<(String, String)>, String)> {
        Mask::new(mask)
            .matches(target)
            .map(|m| (m.segments, m.rest.to_owned()))
    }

    fn version(target: &str) -> Option<String> {
        let (segments, _) = capture("/api/:version/a/b/c/d", target)?;
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].0, "version");
        Some(segments[0].1.clone())
    }

    #[test]
    fn verified_version_examples() {
        assert_eq!(
            version("/api/:version/a/b/c/d").as_deref(),
            Some(":version")
        );
        assert_eq!(version("/api/123/a/b/c/d").as_deref(), Some("123"));
        assert_eq!(version("/api/api/a/b/c/d?").as_deref(), Some("api"));
        assert_eq!(version("/api/abcd/a/b/c/d#").as_deref(), Some("abcd"));
        assert_eq!(version("/api/abcd/a/b/c/d/").as_deref(), Some("abcd"));
        assert_eq!(version("/api/123?a/b/c/d"), None);
        assert_eq!(version("/api/123/a?b/c/d"), None);
        assert_eq!(version("/api/abcd/"), None);
    }

    #[test]
    fn rest_after_match() {
        let m = Mask::new("/api/:version/a/b/c/d");
        assert_eq!(m.matches("/api/api/a/b/c/d?").map(|m| m.rest), Some("?"));
        assert_eq!(m.matches("/api/abcd/a/b/c/d#").map(|m| m.rest), Some("#"));
        assert_eq!(m.matches("/api/abcd/a/b/c/d/").map(|m| m.rest), Some("/"));
        assert_eq!(m.matches("/api/1/a/b/c/d").map(|m| m.rest), Some(""));
    }

    #[test]
    fn trailing_capture_swallows_query() {
        let foo = |t: &str| capture("/api/foo/:foo", t);
        assert_eq!(
            foo("/api/foo/foo/?ignore=me"),
            Some((vec![("foo".into(), "foo".into())], "/?ignore=me".into()))
        );
        assert_eq!(
            foo("/api/foo/foo?include=me"),
            Some((vec![("foo".into(), "foo?include=me".into())], String::new()))
        );
        // Captures may be empty and stay percent-encoded.
        assert_eq!(
            foo("/api/foo/"),
            Some((vec![("foo".into(), String::new())], String::new()))
        );
        assert_eq!(
            foo("/api/foo/a%20b"),
            Some((vec![("foo".into(), "a%20b".into())], String::new()))
        );
        assert_eq!(foo("/api/foo"), None);
    }

    #[test]
    fn literal_needs_separator() {
        let x = Mask::new("/x");
        assert!(x.matches("/xy").is_none());
        assert_eq!(x.matches("/x").map(|m| m.rest), Some(""));
        assert_eq!(x.matches("/x/y").map(|m| m.rest), Some("/y"));
        assert_eq!(x.matches("/x?a=1").map(|m| m.rest), Some("?a=1"));
        assert_eq!(x.matches("/x#f").map(|m| m.rest), Some("#f"));
        assert!(x.matches("x").is_none());
        assert!(x.matches("").is_none());
        assert!(x.matches("//x").is_none());
    }

    #[test]
    fn mask_parsing_ignores_empty_pieces() {
        assert_eq!(
            Mask::new("//a//b/").matches("/a/b/c").map(|m| m.rest),
            Some("/c")
        );
        assert_eq!(
            Mask::new("/").matches("anything").map(|m| m.rest),
            Some("anything")
        );
        assert_eq!(Mask::new("/api/uptime/").to_string(), "/api/uptime/");
    }

    #[test]
    fn multibyte_targets_do_not_panic() {
        let m = Mask::new("/é/:n");
        assert_eq!(
            m.matches("/é/ü/x").map(|m| (m.segments, m.rest)),
            Some((vec![("n".into(), "ü".into())], "/x"))
        );
        assert!(m.matches("/éé/x").is_none());
        assert!(Mask::new("/a").matches("/aé").is_none());
    }

    #[test]
    fn head_uses_the_get_routes_and_options_is_never_routed() {
        let mut table = RouteTable::default();
        table.insert(Method::Get, "/a", None, "get");
        assert!(table.find(Method::Head, "/a").is_some());
        assert_eq!(
            table.insert(Method::Options, "/a", None, "never"),
            Some("never")
        );
        assert!(table.find(Method::Options, "/a").is_none());
    }

    fn hit_value<'r>(hit: Option<RouteHit<'r, &'static str>>) -> Option<(&'r str, Vec<String>)> {
        match hit? {
            RouteHit::Matched { value, args, .. } => Some((*value, args.paths)),
            RouteHit::ArgcMismatch => None,
        }
    }

    #[test]
    fn longest_mask_first_then_registration_order() {
        let mut table = RouteTable::default();
        table.insert(Method::Get, "/a", None, "short");
        table.insert(Method::Get, "/a/:x", None, "capture");
        table.insert(Method::Get, "/a/bc", None, "literal");
        table.insert(Method::Get, "/a/:y", None, "later-capture");
        // `/a/:x` and `/a/bc` both have length 5: registration order wins.
        assert_eq!(
            hit_value(table.find(Method::Get, "/a/bc")).map(|h| h.0),
            Some("capture")
        );
        assert_eq!(
            hit_value(table.find(Method::Get, "/a")),
            Some(("short", vec![]))
        );
        assert_eq!(table.find(Method::Post, "/a").map(|_| ()), None);
        assert!(table.find(Method::Get, "/b").is_none());
    }

    #[test]
    fn reinsert_replaces_in_place() {
        let mut table = RouteTable::default();
        assert_eq!(table.insert(Method::Get, "/a/:x", None, "one"), None);
        table.insert(Method::Get, "/a/bc", None, "two");
        assert_eq!(
            table.insert(Method::Get, "/a/:x", Some(0), "three"),
            Some("one")
        );
        match table.find(Method::Get, "/a/bc") {
            Some(RouteHit::Matched { value, .. }) => assert_eq!(*value, "three"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            table.find(Method::Get, "/a/q/extra"),
            Some(RouteHit::ArgcMismatch)
        ));
    }

    #[test]
    fn argc_examples() {
        let mut table = RouteTable::default();
        table.insert(Method::Get, "/api/uptime/", Some(1), "uptime");
        assert_eq!(
            hit_value(table.find(Method::Get, "/api/uptime/6")),
            Some(("uptime", vec!["6".to_owned()]))
        );
        assert_eq!(
            hit_value(table.find(Method::Get, "/api/uptime/7/")),
            Some(("uptime", vec!["7".to_owned()]))
        );
        assert!(matches!(
            table.find(Method::Get, "/api/uptime/"),
            Some(RouteHit::ArgcMismatch)
        ));

        let mut zero = RouteTable::default();
        zero.insert(Method::Post, "/x", Some(0), "x");
        for ok in ["/x", "/x/", "/x?a=1"] {
            assert_eq!(
                hit_value(zero.find(Method::Post, ok)),
                Some(("x", vec![])),
                "{ok}"
            );
        }
        assert!(matches!(
            zero.find(Method::Post, "/x/y"),
            Some(RouteHit::ArgcMismatch)
        ));
    }

    #[test]
    fn argc_failure_does_not_try_other_routes() {
        let mut table = RouteTable::default();
        table.insert(Method::Get, "/api/long", Some(0), "long");
        table.insert(Method::Get, "/api", None, "short");
        assert!(matches!(
            table.find(Method::Get, "/api/long/1"),
            Some(RouteHit::ArgcMismatch)
        ));
    }

    #[test]
    fn argc_is_per_method_and_mask() {
        let mut table = RouteTable::default();
        table.insert(Method::Get, "/m", Some(1), "get");
        table.insert(Method::Post, "/m", Some(0), "post");
        assert_eq!(
            hit_value(table.find(Method::Get, "/m/1")).map(|h| h.0),
            Some("get")
        );
        assert_eq!(
            hit_value(table.find(Method::Post, "/m")).map(|h| h.0),
            Some("post")
        );
        // Registering the pair again replaces its argc.
        table.insert(Method::Post, "/m", None, "post");
        assert_eq!(
            hit_value(table.find(Method::Post, "/m/1/2")).map(|h| h.0),
            Some("post")
        );
        assert!(matches!(
            table.find(Method::Get, "/m"),
            Some(RouteHit::ArgcMismatch)
        ));
    }

    #[test]
    fn segments_reach_args() {
        let mut table = RouteTable::default();
        table.insert(Method::Put, "/u/:id/:part", None, ());
        match table.find(Method::Put, "/u/4%2F2/x/rest?q#f") {
            Some(RouteHit::Matched { args, .. }) => {
                assert_eq!(args.segments.get("id").map(String::as_str), Some("4%2F2"));
                assert_eq!(args.segments.get("part").map(String::as_str), Some("x"));
                assert_eq!(args.paths, vec!["rest".to_owned()]);
                assert_eq!(args.fragment, "f");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
