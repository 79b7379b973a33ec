//! Errors caused by what a peer sent, each mapped to the status it answers with.

use std::fmt;

/// A request the core refuses. Every variant names the status sent back and whether the
/// connection must close because the framing of what follows can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line or a header is malformed (RFC 9112 §2-§5).
    BadSyntax(&'static str),
    /// A bare CR, a bare LF or an obs-fold line in the head (RFC 9112 §2.2, §5.2).
    BadLineEnding,
    /// The request line is longer than [`Limits::max_request_line`](crate::Limits).
    RequestLineTooLong,
    /// The head is larger than [`Limits::max_head_size`](crate::Limits).
    HeadTooLarge,
    /// More header fields than [`Limits::max_headers`](crate::Limits).
    TooManyHeaders,
    /// The version is well formed but not 1.x.
    UnsupportedVersion,
    /// HTTP/1.1 without a `Host`, or more than one `Host` (RFC 9112 §3.2).
    BadHost,
    /// An invalid, signed, listed or conflicting `Content-Length` (RFC 9112 §6.3).
    BadContentLength,
    /// `Transfer-Encoding` together with `Content-Length` (RFC 9112 §6.3 rule 3).
    LengthAndTransferEncoding,
    /// `Transfer-Encoding` whose final coding is not `chunked`, or sent with HTTP/1.0.
    BadTransferEncoding,
    /// A transfer coding other than `chunked` that we cannot decode (RFC 9112 §6.1).
    UnknownTransferCoding,
    /// Malformed chunked framing (RFC 9112 §7.1).
    BadChunk(&'static str),
    /// The body exceeds [`Limits::max_body_size`](crate::Limits).
    BodyTooLarge,
    /// A body-carrying request without a length (RFC 9112 §6.3: 411).
    LengthRequired,
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1).
    ExpectationFailed,
    /// The head did not arrive within the header-read deadline (slowloris).
    HeadTimeout,
    /// The body stalled for longer than the body inactivity timeout.
    BodyTimeout,
    /// The peer closed the connection in the middle of a request.
    Truncated,
}

impl HttpError {
    /// The status answered for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadSyntax(_)
            | Self::BadLineEnding
            | Self::BadHost
            | Self::BadContentLength
            | Self::LengthAndTransferEncoding
            | Self::BadTransferEncoding
            | Self::BadChunk(_)
            | Self::Truncated => 400,
            Self::RequestLineTooLong => 414,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::UnsupportedVersion => 505,
            Self::UnknownTransferCoding => 501,
            Self::BodyTooLarge => 413,
            Self::LengthRequired => 411,
            Self::ExpectationFailed => 417,
            Self::HeadTimeout | Self::BodyTimeout => 408,
        }
    }

    /// Whether the connection must close after the answer: true whenever the bytes that
    /// follow cannot be framed with confidence.
    pub fn must_close(&self) -> bool {
        !matches!(self, Self::ExpectationFailed)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSyntax(what) => write!(f, "Bad request syntax ({what})"),
            Self::BadLineEnding => f.write_str("Bad request syntax (line endings must be CRLF)"),
            Self::RequestLineTooLong => f.write_str("Request line too long"),
            Self::HeadTooLarge => f.write_str("Line too long"),
            Self::TooManyHeaders => f.write_str("Too many headers"),
            Self::UnsupportedVersion => f.write_str("Invalid HTTP version"),
            Self::BadHost => f.write_str("Bad request (missing or duplicate Host)"),
            Self::BadContentLength => f.write_str("Bad request (invalid Content-Length)"),
            Self::LengthAndTransferEncoding => {
                f.write_str("Bad request (Content-Length with Transfer-Encoding)")
            }
            Self::BadTransferEncoding => f.write_str("Bad request (invalid Transfer-Encoding)"),
            Self::UnknownTransferCoding => f.write_str("Unsupported transfer coding"),
            Self::BadChunk(what) => write!(f, "Bad chunked body ({what})"),
            Self::BodyTooLarge => f.write_str("Request body too large"),
            Self::LengthRequired => f.write_str("Length Required"),
            Self::ExpectationFailed => f.write_str("Expectation Failed"),
            Self::HeadTimeout => f.write_str("Request Timeout"),
            Self::BodyTimeout => f.write_str("Request Timeout (body stalled)"),
            Self::Truncated => f.write_str("Bad request (connection closed mid-request)"),
        }
    }
}

impl std::error::Error for HttpError {}
