//! Request heads: finding where one ends without rescanning, then parsing and validating it.

use std::ops::Range;

use crate::http::error::HttpError;
use crate::limits::Limits;

/// Finds the end of a request head in a growing buffer, one line at a time, so each byte is
/// looked at once however the head is split across reads. It also enforces the line-ending,
/// obs-fold and size rules before `httparse` sees the head.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// First byte not yet scanned.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Start of the request line (leading empty lines are skipped, RFC 9112 §2.2).
    head_start: usize,
    /// Complete lines seen, the request line included.
    lines: usize,
}

impl HeadScanner {
    /// Scans what arrived since the last call. Returns the head's byte range once its
    /// closing empty line is in `buf`.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<Range<usize>>, HttpError> {
        loop {
            let Some(found) = memchr::memchr(b'\n', buf.get(self.pos..).unwrap_or_default()) else {
                self.pos = buf.len();
                return self.check_partial(buf.len(), limits).map(|()| None);
            };
            let nl = self.pos + found;
            if nl == 0 || buf[nl - 1] != b'\r' {
                return Err(HttpError::BadLineEnding);
            }
            let line = &buf[self.line_start..nl - 1];
            if memchr::memchr(b'\r', line).is_some() {
                return Err(HttpError::BadLineEnding);
            }
            self.pos = nl + 1;
            if self.lines == 0 && line.is_empty() {
                // An empty line before the request line is ignored (RFC 9112 §2.2).
                self.head_start = self.pos;
                self.line_start = self.pos;
                // Skipped lines still fill the buffer: they count toward the head size.
                if self.pos > limits.max_head_size {
                    return Err(HttpError::HeadTooLarge);
                }
                continue;
            }
            if self.lines == 0 {
                if line.len() > limits.max_request_line {
                    return Err(HttpError::RequestLineTooLong);
                }
            } else if line.is_empty() {
                return Ok(Some(self.head_start..self.pos));
            } else if matches!(line[0], b' ' | b'\t') {
                // obs-fold, or whitespace between the request line and the first field.
                return Err(HttpError::BadLineEnding);
            } else if self.lines > limits.max_headers {
                return Err(HttpError::TooManyHeaders);
            }
            self.lines += 1;
            self.line_start = self.pos;
            if self.pos - self.head_start > limits.max_head_size {
                return Err(HttpError::HeadTooLarge);
            }
        }
    }

    /// Limits on a head whose end has not arrived yet.
    fn check_partial(&self, end: usize, limits: &Limits) -> Result<(), HttpError> {
        if self.lines == 0 && end - self.line_start > limits.max_request_line {
            return Err(HttpError::RequestLineTooLong);
        }
        if end - self.head_start > limits.max_head_size + 2 {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(())
    }
}

/// Fields a head is parsed into without a heap allocation; a head with more (up to
/// `Limits::max_headers`) is parsed again into a heap array.
const STACK_FIELDS: usize = 32;

/// The request methods the server implements; anything else is answered with 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: routed like `GET`, answered without a body.
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`: CORS preflight, never routed.
    Options,
    /// Any other token; kept so the 501 page can name it.
    Other,
}

impl Method {
    fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }
}

/// HTTP/1.0 or HTTP/1.1; other versions never get past parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes follow (0: no body).
    Length(u64),
    /// A chunked body follows.
    Chunked,
}

/// The body kinds a route parses, named by the request's `Content-Type` (its media type,
/// case-insensitive, parameters aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json`
    Json,
    /// `application/x-www-form-urlencoded`
    Form,
    /// `multipart/form-data`
    Multipart,
    /// Any other type, or none: the body is not parsed.
    Other,
}

impl MediaType {
    fn of(content_type: &[u8]) -> Self {
        let essence = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        let essence = trim(essence);
        if essence.eq_ignore_ascii_case(b"application/json") {
            Self::Json
        } else if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
            Self::Form
        } else if essence.eq_ignore_ascii_case(b"multipart/form-data") {
            Self::Multipart
        } else {
            Self::Other
        }
    }
}

/// A parsed, validated request head. Field values are kept as raw bytes; the text
/// accessors only hand out what is valid UTF-8.
#[derive(Debug, Clone)]
pub struct RequestHead {
    raw: Vec<u8>,
    method: Method,
    method_range: Range<usize>,
    target_range: Range<usize>,
    version: Version,
    fields: Vec<(Range<usize>, Range<usize>)>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    media_type: MediaType,
}

impl RequestHead {
    /// Parses the bytes `HeadScanner` delimited (request line through the empty line).
    pub(crate) fn parse(raw: &[u8], limits: &Limits) -> Result<Self, HttpError> {
        let mut stack = [httparse::EMPTY_HEADER; STACK_FIELDS];
        let room = limits.max_headers.min(STACK_FIELDS);
        match Self::parse_into(raw, stack.get_mut(..room).unwrap_or_default()) {
            Err(HttpError::TooManyHeaders) if limits.max_headers > STACK_FIELDS => {
                let mut heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
                Self::parse_into(raw, &mut heap)
            }
            parsed => parsed,
        }
    }

    /// Parses `raw` with room for `fields.len()` fields.
    fn parse_into<'b>(
        raw: &'b [u8],
        fields: &mut [httparse::Header<'b>],
    ) -> Result<Self, HttpError> {
        let mut req = httparse::Request::new(fields);
        match req.parse(raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HttpError::BadSyntax("incomplete head")),
            Err(httparse::Error::Version) => return Err(version_error(raw)),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(httparse::Error::HeaderName) => return Err(HttpError::BadSyntax("field name")),
            Err(httparse::Error::HeaderValue) => return Err(HttpError::BadSyntax("field value")),
            Err(httparse::Error::Token) => return Err(HttpError::BadSyntax("method")),
            Err(_) => return Err(HttpError::BadSyntax("request line")),
        }
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HttpError::BadSyntax("request line"));
        };
        let base = raw.as_ptr() as usize;
        let range_of = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let version = if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        let mut head = Self {
            method: Method::from_token(method),
            method_range: range_of(method.as_bytes()),
            target_range: range_of(target.as_bytes()),
            version,
            fields: req
                .headers
                .iter()
                .map(|h| (range_of(h.name.as_bytes()), range_of(h.value)))
                .collect(),
            raw: raw.to_vec(),
            framing: Framing::Length(0),
            keep_alive: false,
            expect_continue: false,
            media_type: MediaType::Other,
        };
        head.validate_target()?;
        head.validate_fields()?;
        Ok(head)
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent (useful for `Other`).
    pub fn method_str(&self) -> &str {
        std::str::from_utf8(&self.raw[self.method_range.clone()]).unwrap_or_default()
    }

    /// The request target in origin form (`/path?query`); an absolute-form target
    /// (`http://host/path`) is reduced to its path and query.
    pub fn target(&self) -> &str {
        let target = std::str::from_utf8(&self.raw[self.target_range.clone()]).unwrap_or_default();
        origin_form(target)
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The request line as sent, without its CRLF (for logs).
    pub fn request_line(&self) -> &str {
        let end = memchr::memchr(b'\r', &self.raw).unwrap_or(self.raw.len());
        std::str::from_utf8(&self.raw[..end]).unwrap_or_default()
    }

    /// All fields in order as `(name, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(move |(n, v)| {
            (
                std::str::from_utf8(&self.raw[n.clone()]).unwrap_or_default(),
                &self.raw[v.clone()],
            )
        })
    }

    /// The first field named `name` (case-insensitive), as bytes.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        let raw = |r: &Range<usize>| self.raw.get(r.clone()).unwrap_or_default();
        self.fields
            .iter()
            .find(|(n, _)| raw(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| raw(v))
    }

    /// Every field line named `name`, in order: a list-valued field may be split over
    /// several lines (RFC 9110 §5.3).
    pub fn fields_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let raw = |r: &Range<usize>| self.raw.get(r.clone()).unwrap_or_default();
        self.fields
            .iter()
            .filter(move |(n, _)| raw(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| raw(v))
    }

    /// The first field named `name` as text, if it is valid UTF-8.
    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The body kind `Content-Type` announces.
    pub fn media_type(&self) -> MediaType {
        self.media_type
    }

    /// The parameters of `Content-Type` (the text after its first `;`, trimmed), if any.
    pub fn media_params(&self) -> &str {
        self.field_str("content-type")
            .and_then(|value| value.split_once(';'))
            .map_or("", |(_, params)| params.trim())
    }

    /// How the body is delimited.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the client allows the connection to stay open after this exchange.
    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub(crate) fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    fn validate_target(&self) -> Result<(), HttpError> {
        let target = &self.raw[self.target_range.clone()];
        if target == b"*" {
            return match self.method {
                Method::Options => Ok(()),
                _ => Err(HttpError::BadSyntax("asterisk-form target")),
            };
        }
        let text = std::str::from_utf8(target).unwrap_or_default();
        let origin = origin_form(text);
        if !origin.starts_with('/') {
            return Err(HttpError::BadSyntax("request target"));
        }
        if origin.len() != text.len() {
            // Absolute form: the authority must be a valid host, without userinfo
            // (RFC 9110 §4.2.4).
            let after_scheme = text.split_once("://").map_or("", |(_, rest)| rest);
            let authority = after_scheme
                .split(['/', '?', '#'])
                .next()
                .unwrap_or_default();
            if authority.is_empty() || !valid_authority(authority.as_bytes()) {
                return Err(HttpError::BadSyntax("request target authority"));
            }
        }
        Ok(())
    }

    /// Applies RFC 9112 §3.2 (Host), §6 (framing), §9.3 (persistence) and Expect.
    fn validate_fields(&mut self) -> Result<(), HttpError> {
        let mut hosts = 0;
        let mut length: Option<u64> = None;
        let mut codings: Vec<Vec<u8>> = Vec::new();
        let mut close = false;
        let mut keep_alive = false;
        let mut expect_continue = false;
        let mut media_type = None;
        for (name, value) in self.fields() {
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                if !valid_authority(trim(value)) {
                    return Err(HttpError::BadHost);
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(value)?;
                if length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::BadContentLength);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in value.split(|&b| b == b',') {
                    let coding = trim(coding);
                    if coding.is_empty() {
                        return Err(HttpError::BadTransferEncoding);
                    }
                    codings.push(coding.to_ascii_lowercase());
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(|&b| b == b',') {
                    let token = trim(token);
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("content-type") {
                media_type = media_type.or(Some(MediaType::of(value)));
            } else if name.eq_ignore_ascii_case("expect") {
                if !trim(value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(HttpError::ExpectationFailed);
                }
                expect_continue = self.version == Version::Http11;
            }
        }
        if hosts > 1 || (hosts == 0 && self.version == Version::Http11) {
            return Err(HttpError::BadHost);
        }
        self.framing = if codings.is_empty() {
            Framing::Length(length.unwrap_or(0))
        } else {
            if length.is_some() {
                return Err(HttpError::LengthAndTransferEncoding);
            }
            if self.version == Version::Http10 {
                return Err(HttpError::BadTransferEncoding);
            }
            let chunked = |c: &Vec<u8>| c.as_slice() == b"chunked";
            match codings.split_last() {
                Some((last, rest)) if chunked(last) && !rest.iter().any(chunked) => {
                    if !rest.is_empty() {
                        return Err(HttpError::UnknownTransferCoding);
                    }
                }
                _ => return Err(HttpError::BadTransferEncoding),
            }
            Framing::Chunked
        };
        self.keep_alive = match self.version {
            Version::Http11 => !close,
            Version::Http10 => keep_alive && !close,
        };
        self.expect_continue = expect_continue && self.framing != Framing::Length(0);
        self.media_type = media_type.unwrap_or(MediaType::Other);
        Ok(())
    }
}

/// `Content-Length` must be 1*DIGIT (no sign, no list) and fit in a u64.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Strips optional whitespace (SP / HTAB) from both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `value` is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a
/// bracketed IP literal or a reg-name / IPv4 of unreserved, sub-delims and `%`, then an
/// optional port of digits. Empty is allowed (a Host for a target without authority).
fn valid_authority(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        let literal_ok = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !literal_ok {
            return false;
        }
        (&[][..], &rest[end + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &[][..]),
        }
    };
    let host_ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// `http://host/p?q` -> `/p?q`; `http://host` -> `/`; origin-form is returned unchanged.
fn origin_form(target: &str) -> &str {
    let lower_starts = |p: &str| {
        target
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    let scheme_len = if lower_starts("http://") {
        7
    } else if lower_starts("https://") {
        8
    } else {
        return target;
    };
    let rest = &target[scheme_len..];
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        _ => "/",
    }
}

/// `HTTP/x.y` with x != 1 is an unsupported version (505); anything else is bad syntax.
fn version_error(raw: &[u8]) -> HttpError {
    let line_end = memchr::memchr(b'\r', raw).unwrap_or(raw.len());
    let line = &raw[..line_end];
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1' =>
        {
            HttpError::UnsupportedVersion
        }
        _ => HttpError::BadSyntax("version"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Option<Range<usize>>, HttpError> {
        HeadScanner::default().scan(input, &Limits::default())
    }

    fn parse(input: &str) -> Result<RequestHead, HttpError> {
        let range = scan_all(input.as_bytes())?.expect("complete head");
        RequestHead::parse(&input.as_bytes()[range], &Limits::default())
    }

    #[test]
    fn scanner_finds_end_across_any_split() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nBODY";
        for split in 0..req.len() {
            let mut scanner = HeadScanner::default();
            let first = scanner.scan(&req[..split], &Limits::default()).unwrap();
            let end = first.or_else(|| scanner.scan(req, &Limits::default()).unwrap());
            assert_eq!(end, Some(0..req.len() - 4), "split at {split}");
        }
    }

    #[test]
    fn scanner_skips_leading_empty_lines() {
        assert_eq!(
            scan_all(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n").unwrap(),
            Some(4..22)
        );
    }

    #[test]
    fn scanner_rejects_bare_lf_bare_cr_and_folding() {
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
            Err(HttpError::BadLineEnding)
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
            Err(HttpError::BadLineEnding)
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            Err(HttpError::BadLineEnding)
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            Err(HttpError::BadLineEnding)
        );
    }

    #[test]
    fn scanner_limits() {
        let limits = Limits::default();
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(limits.max_request_line));
        assert_eq!(
            scan_all(long_line.as_bytes()),
            Err(HttpError::RequestLineTooLong)
        );
        // Also detected before the line ends.
        let partial = format!("GET /{}", "a".repeat(limits.max_request_line));
        assert_eq!(
            scan_all(partial.as_bytes()),
            Err(HttpError::RequestLineTooLong)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n",
            "a".repeat(limits.max_head_size)
        );
        assert_eq!(scan_all(big.as_bytes()), Err(HttpError::HeadTooLarge));
        let many: String = (0..=limits.max_headers)
            .map(|i| format!("X{i}: 1\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(scan_all(req.as_bytes()), Err(HttpError::TooManyHeaders));
        let ok: String = (0..limits.max_headers - 1)
            .map(|i| format!("X{i}: 1\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{ok}\r\n");
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn heads_beyond_the_stack_fields_still_parse() {
        let fields: String = (0..STACK_FIELDS + 5)
            .map(|i| format!("X{i}: {i}\r\n"))
            .collect();
        let head = parse(&format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n")).unwrap();
        assert_eq!(head.fields().count(), STACK_FIELDS + 6);
        assert_eq!(head.field_str("x36"), Some("36"));
        let few = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
        assert_eq!(
            RequestHead::parse(raw, &few).unwrap_err(),
            HttpError::TooManyHeaders
        );
    }

    #[test]
    fn parses_a_simple_head() {
        let head = parse("GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(head.method(), Method::Get);
        assert_eq!(head.target(), "/a?b=c");
        assert_eq!(head.version(), Version::Http11);
        assert_eq!(head.field_str("accept"), Some("*/*"));
        assert_eq!(head.request_line(), "GET /a?b=c HTTP/1.1");
        assert!(head.keep_alive());
        assert_eq!(head.framing(), Framing::Length(0));
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            parse("GET / HTTP/1.1\r\n\r\n").unwrap_err(),
            HttpError::BadHost
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err(),
            HttpError::BadHost
        );
        assert!(parse("GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn host_values_are_validated() {
        let host = |v: &str| parse(&format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n"));
        for good in [
            "a",
            "example.test:8080",
            "127.0.0.1",
            "[::1]:80",
            "a-b_c.d~",
            "",
        ] {
            assert!(host(good).is_ok(), "{good:?}");
        }
        for bad in ["a b", "a/b", "user@t", "a:b", "[::1", "[zz]", "a:80:90"] {
            assert_eq!(host(bad).unwrap_err(), HttpError::BadHost, "{bad:?}");
        }
        let abs = |t: &str| parse(&format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(abs("http://t/x").is_ok());
        assert!(matches!(
            abs("http://user@t/x").unwrap_err(),
            HttpError::BadSyntax(_)
        ));
        assert!(matches!(
            abs("http:///x").unwrap_err(),
            HttpError::BadSyntax(_)
        ));
    }

    #[test]
    fn a_flood_of_empty_lines_counts_toward_the_head_size() {
        let flood = format!("{}GET / HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n".repeat(20_000));
        assert_eq!(scan_all(flood.as_bytes()), Err(HttpError::HeadTooLarge));
        assert!(scan_all(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
    }

    #[test]
    fn content_length_rules() {
        let cl = |v: &str| parse(&format!("POST / HTTP/1.1\r\nHost: a\r\n{v}\r\n\r\n"));
        assert_eq!(
            cl("Content-Length: 5").unwrap().framing(),
            Framing::Length(5)
        );
        assert_eq!(
            cl("Content-Length: 5\r\nContent-Length: 5")
                .unwrap()
                .framing(),
            Framing::Length(5)
        );
        for bad in [
            "Content-Length: +5",
            "Content-Length: -5",
            "Content-Length: 5, 5",
            "Content-Length: 5 5",
            "Content-Length: 0x5",
            "Content-Length: ",
            "Content-Length: 99999999999999999999",
            "Content-Length: 5\r\nContent-Length: 6",
        ] {
            assert_eq!(cl(bad).unwrap_err(), HttpError::BadContentLength, "{bad}");
        }
    }

    #[test]
    fn transfer_encoding_rules() {
        let te = |v: &str, version: &str| {
            parse(&format!("POST / HTTP/{version}\r\nHost: a\r\n{v}\r\n\r\n"))
        };
        assert_eq!(
            te("Transfer-Encoding: chunked", "1.1").unwrap().framing(),
            Framing::Chunked
        );
        assert_eq!(
            te("Transfer-Encoding: Chunked", "1.1").unwrap().framing(),
            Framing::Chunked
        );
        assert_eq!(
            te("Transfer-Encoding: chunked\r\nContent-Length: 3", "1.1").unwrap_err(),
            HttpError::LengthAndTransferEncoding
        );
        assert_eq!(
            te("Transfer-Encoding: chunked", "1.0").unwrap_err(),
            HttpError::BadTransferEncoding
        );
        for bad in [
            "Transfer-Encoding: xchunked",
            "Transfer-Encoding: chunked, identity",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: ,chunked",
        ] {
            assert_eq!(
                te(bad, "1.1").unwrap_err(),
                HttpError::BadTransferEncoding,
                "{bad}"
            );
        }
        assert_eq!(
            te("Transfer-Encoding: gzip, chunked", "1.1").unwrap_err(),
            HttpError::UnknownTransferCoding
        );
        // A space before the colon is not a field name httparse accepts.
        assert!(matches!(
            te("Transfer-Encoding : chunked", "1.1").unwrap_err(),
            HttpError::BadSyntax(_)
        ));
    }

    #[test]
    fn persistence_rules() {
        let ka =
            |v: &str, f: &str| parse(&format!("GET / HTTP/{v}\r\nHost: a\r\n{f}\r\n")).unwrap();
        assert!(ka("1.1", "").keep_alive());
        assert!(!ka("1.1", "Connection: close\r\n").keep_alive());
        assert!(!ka("1.1", "Connection: keep-alive, Close\r\n").keep_alive());
        assert!(!ka("1.0", "").keep_alive());
        assert!(ka("1.0", "Connection: keep-alive\r\n").keep_alive());
    }

    #[test]
    fn media_type_is_parsed_once_with_the_head() {
        let ct = |v: &str| {
            parse(&format!(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: {v}\r\n\r\n"
            ))
        };
        let multipart = ct("Multipart/Form-Data ; boundary=xyz").unwrap();
        assert_eq!(multipart.media_type(), MediaType::Multipart);
        assert_eq!(multipart.media_params(), "boundary=xyz");
        assert_eq!(
            ct("application/json; charset=utf-8").unwrap().media_type(),
            MediaType::Json
        );
        assert_eq!(
            ct("application/x-www-form-urlencoded")
                .unwrap()
                .media_type(),
            MediaType::Form
        );
        assert_eq!(ct("text/plain").unwrap().media_type(), MediaType::Other);
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .media_type(),
            MediaType::Other
        );
    }

    #[test]
    fn expect_rules() {
        let e = |f: &str| parse(&format!("POST / HTTP/1.1\r\nHost: a\r\n{f}\r\n"));
        assert!(e("Expect: 100-continue\r\nContent-Length: 3\r\n")
            .unwrap()
            .expects_continue());
        assert!(!e("Expect: 100-continue\r\n").unwrap().expects_continue());
        assert_eq!(
            e("Expect: teapot\r\n").unwrap_err(),
            HttpError::ExpectationFailed
        );
    }

    #[test]
    fn version_and_target_rules() {
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            HttpError::UnsupportedVersion
        );
        assert!(matches!(
            parse("GET / HTTP/1.x\r\n\r\n").unwrap_err(),
            HttpError::BadSyntax(_)
        ));
        assert!(matches!(
            parse("GET x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err(),
            HttpError::BadSyntax(_)
        ));
        assert!(matches!(
            parse("GET * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err(),
            HttpError::BadSyntax(_)
        ));
        assert!(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        let abs = parse("GET http://example.test/x?y HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(abs.target(), "/x?y");
        let bare = parse("GET http://example.test HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(bare.target(), "/");
        assert_eq!(
            parse("BREW / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .method(),
            Method::Other
        );
    }

    #[test]
    fn control_characters_in_fields_are_rejected() {
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n").is_err());
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n").is_err());
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\nX\x01: ab\r\n\r\n").is_err());
    }
}
