//! Responses as a client sees them, and a strict parser for them.

use std::fmt;

/// One response read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Fields in wire order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times field `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Whether the server announced it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why bytes are not a valid response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The status line is malformed.
    StatusLine(String),
    /// A header line has no colon or is not text.
    Header(String),
    /// `Content-Length` is not a number.
    ContentLength(String),
    /// Chunked framing is malformed.
    Chunk(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StatusLine(line) => write!(f, "bad status line {line:?}"),
            Self::Header(line) => write!(f, "bad header line {line:?}"),
            Self::ContentLength(value) => write!(f, "bad Content-Length {value:?}"),
            Self::Chunk(what) => write!(f, "bad chunked body: {what}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The outcome of [`parse_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole response and the bytes it took.
    Complete(Response, usize),
    /// More bytes are needed: at least `need` in all (so a large body is not re-parsed
    /// after every read).
    Incomplete {
        /// The smallest buffer length worth parsing again.
        need: usize,
    },
}

/// Parses one response at the front of `buf`. `head_only`: the request was HEAD (no body
/// follows). `closed`: the connection ended, so a body without length ends with `buf`.
pub fn parse_response(buf: &[u8], head_only: bool, closed: bool) -> Result<Parsed, ParseError> {
    let more = Parsed::Incomplete {
        need: buf.len() + 1,
    };
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(more);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ParseError::Header("not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let bad_status = || ParseError::StatusLine(status_line.to_owned());
    let (version, rest) = status_line.split_once(' ').ok_or_else(bad_status)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(bad_status());
    }
    let status: u16 = code.parse().map_err(|_| bad_status())?;
    let headers = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::Header(line.to_owned()))?;
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let mut response = Response {
        version: version.to_owned(),
        status,
        reason: reason.to_owned(),
        headers,
        body: Vec::new(),
    };
    let body_start = head_end + 4;
    let rest = &buf[body_start..];
    if head_only || status / 100 == 1 || status == 204 || status == 304 {
        return Ok(Parsed::Complete(response, body_start));
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let used = if chunked {
        match dechunk(rest)? {
            Some((body, used)) => {
                response.body = body;
                used
            }
            None => return Ok(more),
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| ParseError::ContentLength(length.to_owned()))?;
        if rest.len() < length {
            return Ok(Parsed::Incomplete {
                need: body_start.saturating_add(length),
            });
        }
        response.body = rest[..length].to_vec();
        length
    } else if closed {
        response.body = rest.to_vec();
        rest.len()
    } else {
        return Ok(more);
    };
    Ok(Parsed::Complete(response, body_start + used))
}

/// Decodes a chunked body at the front of `buf`: the data and the bytes taken.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + line_end])
            .map_err(|_| ParseError::Chunk("size line".into()))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| ParseError::Chunk(line.to_owned()))?;
        at += line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(ParseError::Chunk("data not followed by CRLF".into()));
        }
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(wire: &[u8], head_only: bool, closed: bool) -> (Response, usize) {
        match parse_response(wire, head_only, closed).unwrap() {
            Parsed::Complete(response, used) => (response, used),
            Parsed::Incomplete { need } => panic!("incomplete, needs {need}"),
        }
    }

    #[test]
    fn length_delimited() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\nhiHTTP/1.1";
        let (r, used) = complete(wire, false, false);
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_slice(), used),
            (200, "OK", &b"hi"[..], 46)
        );
        assert_eq!(r.header("x"), Some("y"));
        assert_eq!(
            parse_response(&wire[..45], false, false).unwrap(),
            Parsed::Incomplete { need: 46 }
        );
        assert_eq!(
            parse_response(&wire[..10], false, false).unwrap(),
            Parsed::Incomplete { need: 11 }
        );
    }

    #[test]
    fn head_interim_and_no_content_have_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let (r, used) = complete(wire, true, false);
        assert!(r.body.is_empty() && used == wire.len());
        let (r, _) = complete(b"HTTP/1.1 100 Continue\r\n\r\n", false, false);
        assert_eq!(r.status, 100);
    }

    #[test]
    fn chunked_and_until_close() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\n";
        let (r, used) = complete(wire, false, false);
        assert_eq!((r.body.as_slice(), used), (&b"abcd"[..], wire.len()));
        assert!(matches!(
            parse_response(&wire[..60], false, false).unwrap(),
            Parsed::Incomplete { .. }
        ));
        let open = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert!(matches!(
            parse_response(open, false, false).unwrap(),
            Parsed::Incomplete { .. }
        ));
        assert_eq!(complete(open, false, true).0.body, b"all of it");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n", false, false).is_err());
        assert!(parse_response(b"SMTP 200 OK\r\n\r\n", false, false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", false, false).is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false,
            false
        )
        .is_err());
    }
}
