//! Responses: the value routes produce, and how its head is written on the wire.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use crate::fs::OpenFile;

/// The content type of error pages (the original's spelling, no space).
pub(crate) const ERROR_PAGE_TYPE: &str = "text/html;charset=utf-8";

/// What a route answers: status, extra fields and a body. `Server`, `Date`,
/// `Content-Length` and `Connection` are added by the connection when it writes the head.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase; `None` uses the standard phrase of the status.
    pub reason: Option<String>,
    /// Fields in the order they are written, after `Server` and `Date`.
    pub fields: Vec<(Cow<'static, str>, String)>,
    /// More fields, already rendered as `Name: value\r\n` lines and written after
    /// `fields`: a cached file's fields, shared by every answer from the cache.
    pub field_block: Option<Arc<[u8]>>,
    /// The body (omitted on the wire for HEAD, 1xx, 204 and 304).
    pub body: Body,
    /// Whether the body may be compressed for a client that accepts it (true unless the
    /// route opted out: an answer mixing a secret with reflected input over HTTPS is open
    /// to BREACH, docs/BEHAVIOUR.md, "Compression").
    pub compress: bool,
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// No body; `Content-Length: 0` unless the status forbids the field.
    Empty,
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// The whole content of a small file, shared with the file cache (logged with the
    /// file's size, like [`Body::File`]).
    CachedFile(Arc<[u8]>),
    /// A region of an open file, sent by the transport (with `sendfile` where it can).
    File(FileRegion),
    /// Bytes and file regions sent one after the other: a `multipart/byteranges` body,
    /// whose part headers are bytes and whose file parts are regions.
    Parts(Vec<BodyPart>),
}

/// One piece of a [`Body::Parts`] body.
#[derive(Debug)]
pub enum BodyPart {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// A region of an open file.
    File(FileRegion),
}

impl BodyPart {
    /// The piece's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::File(r) => r.len,
        }
    }

    /// Whether the piece has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `len` bytes of `file` from `offset`.
#[derive(Debug, Clone)]
pub struct FileRegion {
    /// The open file.
    pub file: Arc<dyn OpenFile>,
    /// First byte to send.
    pub offset: u64,
    /// Bytes to send.
    pub len: u64,
}

impl Body {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Bytes(b) => b.len() as u64,
            Self::CachedFile(b) => b.len() as u64,
            Self::File(r) => r.len,
            Self::Parts(parts) => parts.iter().map(BodyPart::len).sum(),
        }
    }

    /// Whether the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Response {
    /// A response with the standard reason phrase and no fields.
    pub fn new(status: u16, body: Body) -> Self {
        Self {
            status,
            reason: None,
            fields: Vec::new(),
            field_block: None,
            body,
            compress: true,
        }
    }

    /// Adds a field.
    pub fn with_field(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The HTML error page of the original: `message` is the reason phrase and the page's
    /// message; the explanation is the standard one for the status. Only
    /// [`HttpError::response`](crate::HttpError::response) builds one.
    pub(crate) fn error_page(status: u16, message: &str) -> Self {
        let message = sanitize_reason(message);
        let page = format!(
            "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
             <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
             <p>Error code: {status}</p>\n        <p>Message: {}.</p>\n        \
             <p>Error code explanation: {status} - {}.</p>\n    </body>\n</html>\n",
            escape_page_text(&message),
            escape_page_text(explanation(status)),
        );
        Self {
            status,
            reason: Some(message),
            fields: vec![("Content-Type".into(), ERROR_PAGE_TYPE.to_owned())],
            field_block: None,
            body: Body::Bytes(page.into_bytes()),
            compress: true,
        }
    }

    /// Whether the status allows a body and `Content-Length` (RFC 9110 §6.4.1, §8.6).
    pub(crate) fn has_content(&self) -> bool {
        !(self.status < 200 || self.status == 204 || self.status == 304)
    }
}

/// What a response head says about the connection after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// Nothing: HTTP/1.1 stays open by default.
    Implied,
    /// `Connection: close`: the connection ends after this response.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client that asked to persist is told it does,
    /// or it would wait for a close (RFC 9112 section 9.3 and its appendix C.2.2).
    KeepAlive,
}

/// Writes `HTTP/1.1 <status> <reason>`, `Server` and `Date`, then `fields` and the
/// `field_block`, the length and the `Connection` field `persistence` asks for; ends with
/// the empty line.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    response: &Response,
    server: &str,
    date: &[u8],
    persistence: Persistence,
) {
    let reason = response
        .reason
        .as_deref()
        .unwrap_or_else(|| reason_phrase(response.status));
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status(out, response.status);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(server.as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    render_fields(out, &response.fields);
    if let Some(block) = &response.field_block {
        out.extend_from_slice(block);
    }
    if response.has_content() {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, response.body.len());
        out.extend_from_slice(b"\r\n");
    }
    match persistence {
        Persistence::Implied => {}
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Persistence::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `fields` as `Name: value\r\n` lines.
pub(crate) fn render_fields(out: &mut Vec<u8>, fields: &[(Cow<'static, str>, String)]) {
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The `Cache-Control` value `max-age=<seconds>`, written without the formatting
/// machinery: every dynamic answer carries one.
pub(crate) fn max_age(seconds: u64) -> String {
    let mut value = Vec::with_capacity(28); // "max-age=" and u64::MAX's 20 digits
    value.extend_from_slice(b"max-age=");
    push_decimal(&mut value, seconds);
    String::from_utf8(value).unwrap_or_default()
}

/// Appends `n` in decimal without allocating.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn push_status(out: &mut Vec<u8>, status: u16) {
    let status = status.clamp(100, 999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
}

/// The wall-clock `Date` value, rendered once per second.
#[derive(Debug, Default)]
pub(crate) struct DateCache {
    second: u64,
    rendered: Vec<u8>,
}

impl DateCache {
    /// The IMF-fixdate for `now`, re-rendered only when the second changed.
    pub(crate) fn get(&mut self, now: SystemTime) -> &[u8] {
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.rendered.is_empty() {
            self.second = second;
            self.rendered = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.rendered
    }
}

/// The standard reason phrase (the original's table), `???` when unknown.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a Teapot",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "???",
    }
}

/// The standard long explanation used in error pages (BEHAVIOUR.md: Error pages), `???` when
/// unknown.
pub(crate) fn explanation(status: u16) -> &'static str {
    match status {
        400 => "Bad request syntax or unsupported method",
        401 => "No permission -- see authorization schemes",
        403 => "Request forbidden -- authorization will not help",
        404 => "Nothing matches the given URI",
        405 => "Specified method is invalid for this resource",
        408 => "Request timed out; try again later",
        409 => "Request conflict",
        411 => "Client must specify Content-Length",
        413 => "Entity is too large",
        414 => "URI is too long",
        416 => "Cannot satisfy request range",
        417 => "Expect condition could not be satisfied",
        418 => "Server refuses to brew coffee because it is a teapot.",
        431 => {
            "The server is unwilling to process the request because its header fields are too large"
        }
        500 => "Server got itself in trouble",
        501 => "Server does not support this operation",
        502 => "Invalid responses from another server/proxy",
        503 => "The server cannot process the request due to a high load",
        504 => "The gateway server did not receive a timely response",
        505 => "Cannot fulfill request",
        507 => "The server has no room left to store the representation",
        _ => "???",
    }
}

/// A reason phrase may not hold CR, LF or other controls: they would split the head.
fn sanitize_reason(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The original escapes only `&`, `<` and `>` in error pages.
fn escape_page_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page_matches_the_original_layout() {
        let page = crate::HttpError::NotFound.response();
        assert_eq!(page.reason.as_deref(), Some("File not found"));
        let Body::Bytes(body) = &page.body else {
            panic!("bytes body")
        };
        let body = String::from_utf8(body.clone()).unwrap();
        assert_eq!(
            body,
            "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
             <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
             <p>Error code: 404</p>\n        <p>Message: File not found.</p>\n        \
             <p>Error code explanation: 404 - Nothing matches the given URI.</p>\n    </body>\n</html>\n"
        );
    }

    #[test]
    fn error_page_escapes_and_sanitizes_messages() {
        let page = Response::error_page(400, "a<b>&\r\nX-Injected: 1");
        assert_eq!(page.reason.as_deref(), Some("a<b>&  X-Injected: 1"));
        let Body::Bytes(body) = &page.body else {
            panic!("bytes body")
        };
        assert!(String::from_utf8_lossy(body).contains("Message: a&lt;b&gt;&amp;  X-Injected: 1."));
        assert_eq!(reason_phrase(599), "???");
        assert_eq!(explanation(599), "???");
    }

    #[test]
    fn head_layout() {
        let mut out = Vec::new();
        let response = Response::new(200, Body::Bytes(b"hi".to_vec())).with_field("X-A", "1");
        write_head(&mut out, &response, "QS", b"DATE", Persistence::Close);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: QS\r\nDate: DATE\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        write_head(
            &mut out,
            &Response::new(304, Body::Empty),
            "QS",
            b"D",
            Persistence::KeepAlive,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 304 Not Modified\r\nServer: QS\r\nDate: D\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn field_block_follows_the_fields() {
        let mut response =
            Response::new(200, Body::CachedFile(Arc::from(&b"abc"[..]))).with_field("X-A", "1");
        response.field_block = Some(Arc::from(&b"ETag: \"e\"\r\n"[..]));
        let mut out = Vec::new();
        write_head(&mut out, &response, "QS", b"D", Persistence::Implied);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: QS\r\nDate: D\r\nX-A: 1\r\nETag: \"e\"\r\nContent-Length: 3\r\n\r\n"
        );
        assert_eq!(response.body.len(), 3);
    }

    #[test]
    fn decimal_lengths() {
        for n in [0, 7, 10, 1024, 65_535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        assert_eq!(max_age(0), "max-age=0");
        assert_eq!(max_age(u64::MAX), format!("max-age={}", u64::MAX));
    }

    #[test]
    fn date_cache_renders_imf_fixdate() {
        let mut cache = DateCache::default();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(cache.get(t), b"Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
