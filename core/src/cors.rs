//! Cross-origin resource sharing: which origins may read the answers, and the fields that
//! tell a browser so.
//!
//! Credentials (cookies, tokens) are only ever granted to origins named in an allow-list;
//! "any origin" answers `*` without credentials, so a foreign page can never read a
//! logged-in user's answers (docs/BEHAVIOUR.md, "CORS and OPTIONS").

use std::borrow::Cow;
use std::fmt;

use crate::http::head::{Method, RequestHead};

/// The methods a preflight may ask for, as announced in `Access-Control-Allow-Methods`.
const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE, HEAD";

/// An origin (`scheme://host[:port]`) as a browser sends it in `Origin`, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is allowed and dropped); anything
    /// with a path, query, user info or white space is refused.
    pub fn parse(text: &str) -> Result<Self, InvalidOrigin> {
        let invalid = || InvalidOrigin(text.to_owned());
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        let (scheme, authority) = trimmed.split_once("://").ok_or_else(invalid)?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let authority_ok = !authority.is_empty()
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
        if !scheme_ok || !authority_ok {
            return Err(invalid());
        }
        Ok(Self(trimmed.to_ascii_lowercase()))
    }

    /// The origin as it is compared and echoed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request's `Origin` value names this origin (scheme and host are
    /// case-insensitive).
    fn matches(&self, sent: &str) -> bool {
        self.0.eq_ignore_ascii_case(sent)
    }
}

/// A CORS origin that is neither `*` nor `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin(pub String);

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid CORS origin {:?}: expected `*` or scheme://host[:port]",
            self.0
        )
    }
}

impl std::error::Error for InvalidOrigin {}

/// Which origins may read the server's answers. The default lets none.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// `*`: any origin may read, without credentials (the original's `cross_origin`).
    any_origin: bool,
    /// Trusted origins: echoed with `Access-Control-Allow-Credentials: true`.
    origins: Vec<Origin>,
    /// The request fields a preflight may ask for (lower-case); `None` allows any
    /// well-formed field name.
    allowed_fields: Option<Vec<String>>,
}

impl CorsPolicy {
    /// Lets any origin read answers, without credentials (`on`), or stops doing so.
    pub(crate) fn set_any_origin(&mut self, on: bool) {
        self.any_origin = on;
    }

    /// Adds an entry to the allow-list: `*` lets any origin read without credentials,
    /// a named origin may read with credentials.
    pub fn allow(&mut self, entry: &str) -> Result<(), InvalidOrigin> {
        if entry == "*" {
            self.any_origin = true;
        } else {
            let origin = Origin::parse(entry)?;
            if !self.origins.contains(&origin) {
                self.origins.push(origin);
            }
        }
        Ok(())
    }

    /// Limits the request fields a preflight may ask for (matched case-insensitively).
    pub fn allow_fields<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allowed_fields = Some(
            names
                .into_iter()
                .map(|n| n.as_ref().trim().to_ascii_lowercase())
                .collect(),
        );
    }

    /// Whether any origin at all may read answers.
    pub(crate) fn is_enabled(&self) -> bool {
        self.any_origin || !self.origins.is_empty()
    }

    /// The fields to put first in the answer to `head` (empty when the origin may not
    /// read it, or when a preflight asks for a method or field that is not allowed).
    pub(crate) fn fields(&self, head: &RequestHead) -> Vec<(Cow<'static, str>, String)> {
        let mut fields = Vec::new();
        if !self.is_enabled() || head.method() == Method::Other {
            return fields;
        }
        // The answer depends on `Origin` whenever some origins get more than others.
        let vary = !self.origins.is_empty();
        let sent = head.field_str("origin").filter(|o| !o.is_empty());
        let listed = sent.filter(|sent| self.origins.iter().any(|o| o.matches(sent)));
        let allowed = listed.is_some() || self.any_origin;
        if !allowed || !self.preflight_allowed(head) {
            if vary {
                fields.push(("Vary".into(), "Origin".to_owned()));
            }
            return fields;
        }
        fields.push((
            "Access-Control-Allow-Methods".into(),
            ALLOWED_METHODS.into(),
        ));
        if let Some(requested) = head.field_str("access-control-request-headers") {
            fields.push(("Access-Control-Allow-Headers".into(), requested.to_owned()));
        }
        match listed {
            Some(origin) => {
                fields.push(("Access-Control-Allow-Origin".into(), origin.to_owned()));
                fields.push(("Access-Control-Allow-Credentials".into(), "true".into()));
            }
            None => fields.push(("Access-Control-Allow-Origin".into(), "*".into())),
        }
        if vary {
            fields.push(("Vary".into(), "Origin".to_owned()));
        }
        if head.method() == Method::Options {
            let with_fields = head.field("access-control-request-headers").is_some();
            let max_age = if with_fields { "0" } else { "600" };
            fields.push(("Access-Control-Max-Age".into(), max_age.into()));
        }
        fields
    }

    /// Whether a preflight's requested method and fields may be granted (true for any
    /// other request).
    fn preflight_allowed(&self, head: &RequestHead) -> bool {
        if head.method() != Method::Options {
            return true;
        }
        if let Some(method) = head.field_str("access-control-request-method") {
            if !ALLOWED_METHODS.split(", ").any(|m| m == method.trim()) {
                return false;
            }
        }
        let Some(requested) = head.field_str("access-control-request-headers") else {
            return true;
        };
        requested
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .all(|name| {
                httparse_token(name)
                    && self
                        .allowed_fields
                        .as_ref()
                        .is_none_or(|allowed| allowed.iter().any(|a| a.eq_ignore_ascii_case(name)))
            })
    }
}

/// Whether `name` is an RFC 9110 token, the form of a field name.
fn httparse_token(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> RequestHead {
        let wire = format!("{text}\r\n\r\n");
        RequestHead::parse(wire.as_bytes(), &crate::Limits::default()).expect("a valid head")
    }

    fn names(fields: &[(Cow<'static, str>, String)]) -> Vec<String> {
        fields.iter().map(|(n, v)| format!("{n}: {v}")).collect()
    }

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(
            Origin::parse("HTTPS://App.Test:8443/").map(|o| o.0),
            Ok("https://app.test:8443".to_owned())
        );
        for bad in [
            "app.test",
            "http://",
            "http://a/b",
            "http://u@a",
            "http://a b",
            "*",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn off_by_default() {
        let policy = CorsPolicy::default();
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nOrigin: http://evil.test");
        assert!(policy.fields(&h).is_empty());
    }

    #[test]
    fn any_origin_never_grants_credentials() {
        let mut policy = CorsPolicy::default();
        policy.set_any_origin(true);
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nOrigin: http://evil.test");
        assert_eq!(
            names(&policy.fields(&h)),
            [
                "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, HEAD",
                "Access-Control-Allow-Origin: *"
            ]
        );
    }

    #[test]
    fn listed_origins_get_credentials_and_others_nothing() {
        let mut policy = CorsPolicy::default();
        policy.allow("http://app.test").expect("valid");
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nOrigin: http://APP.test");
        let fields = names(&policy.fields(&h));
        assert!(fields.contains(&"Access-Control-Allow-Origin: http://APP.test".to_owned()));
        assert!(fields.contains(&"Access-Control-Allow-Credentials: true".to_owned()));
        assert!(fields.contains(&"Vary: Origin".to_owned()));
        for other in ["Origin: http://evil.test", "Origin: null", "X: y"] {
            let h = head(&format!("GET / HTTP/1.1\r\nHost: h\r\n{other}"));
            assert_eq!(names(&policy.fields(&h)), ["Vary: Origin"], "{other}");
        }
    }

    #[test]
    fn star_with_a_list_keeps_credentials_for_the_listed() {
        let mut policy = CorsPolicy::default();
        policy.allow("*").expect("valid");
        policy.allow("http://app.test").expect("valid");
        let foreign = head("GET / HTTP/1.1\r\nHost: h\r\nOrigin: http://evil.test");
        let fields = names(&policy.fields(&foreign));
        assert!(fields.contains(&"Access-Control-Allow-Origin: *".to_owned()));
        assert!(!fields.iter().any(|f| f.contains("Credentials")));
    }

    #[test]
    fn preflight_checks_method_and_fields() {
        let mut policy = CorsPolicy::default();
        policy.allow("http://app.test").expect("valid");
        let ask = |extra: &str| {
            let h = head(&format!(
                "OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: http://app.test\r\n{extra}"
            ));
            names(&policy.fields(&h))
        };
        let granted =
            ask("Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-token");
        assert!(granted.contains(&"Access-Control-Allow-Headers: x-token".to_owned()));
        assert!(granted.contains(&"Access-Control-Max-Age: 0".to_owned()));
        assert_eq!(
            ask("Access-Control-Request-Method: PATCH"),
            ["Vary: Origin"]
        );
        assert_eq!(
            ask("Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: a b"),
            ["Vary: Origin"]
        );
        policy.allow_fields(["Content-Type"]);
        let ask = |extra: &str| {
            let h = head(&format!(
                "OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: http://app.test\r\n{extra}"
            ));
            names(&policy.fields(&h))
        };
        assert!(ask("Access-Control-Request-Headers: content-type").len() > 1);
        assert_eq!(
            ask("Access-Control-Request-Headers: content-type, x-secret"),
            ["Vary: Origin"]
        );
    }
}
