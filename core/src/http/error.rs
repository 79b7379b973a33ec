//! Refusals: every error answer the server gives, with its status, its text and whether
//! the connection must close. Error pages are built here and nowhere else.

use std::fmt;

use crate::http::response::{reason_phrase, Response};

/// A request the server refuses. Every variant names the status sent back, the message of
/// its error page, and whether the connection must close because the framing of what
/// follows can no longer be trusted.
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
    /// A POST or PUT to a dynamic route without `Content-Length` or chunked framing.
    LengthRequired,
    /// An `Expect` other than `100-continue` (RFC 9110 §10.1.1).
    ExpectationFailed,
    /// The head did not arrive within the header-read deadline (slowloris).
    HeadTimeout,
    /// The body stalled for longer than the body inactivity timeout.
    BodyTimeout,
    /// A method the server does not serve; holds its token (501).
    UnsupportedMethod(String),
    /// A request path that cannot name a file (an encoded NUL, invalid UTF-8...); holds
    /// why (400).
    BadPath(String),
    /// A listing's query that names no known order; holds why (400).
    BadListingQuery(String),
    /// No route, folder or file answers the target (404 `File not found`).
    NotFound,
    /// A folder without index page while listings are off (404).
    ListingDenied,
    /// No range of a `Range` request can be served (416).
    RangeNotSatisfiable,
    /// An `If-Match` or `If-Unmodified-Since` failed, or an `If-None-Match` matched on a
    /// method other than GET and HEAD (412, RFC 9110 §13.2.2).
    PreconditionFailed,
    /// A JSON body that does not parse; holds the parser's message (400).
    BadJson(String),
    /// A `multipart/form-data` body without a boundary parameter (400).
    MissingBoundary,
    /// A malformed multipart body; holds the parser's message (400).
    BadUpload(String),
    /// A multipart part over `max_file_size`; holds the message with the sizes (413).
    UploadTooLarge(String),
    /// No disk space left to spill an upload (507).
    InsufficientStorage,
    /// A proxied request's upstream could not be reached or answered badly (502).
    BadGateway(&'static str),
    /// A proxied request's upstream did not answer in time (504).
    GatewayTimeout,
    /// A handler, middleware or worker task refused with its own status and message.
    Refused {
        /// The status of the page.
        status: u16,
        /// Its message (and reason phrase); may be empty.
        message: String,
    },
    /// The server failed while answering; holds the message of the page (500).
    Internal(String),
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
            | Self::BadPath(_)
            | Self::BadListingQuery(_)
            | Self::BadJson(_)
            | Self::MissingBoundary
            | Self::BadUpload(_) => 400,
            Self::RequestLineTooLong => 414,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::UnsupportedVersion => 505,
            Self::UnknownTransferCoding => 501,
            Self::BodyTooLarge => 413,
            Self::LengthRequired => 411,
            Self::ExpectationFailed => 417,
            Self::HeadTimeout | Self::BodyTimeout => 408,
            Self::UnsupportedMethod(_) => 501,
            Self::NotFound | Self::ListingDenied => 404,
            Self::RangeNotSatisfiable => 416,
            Self::PreconditionFailed => 412,
            Self::UploadTooLarge(_) => 413,
            Self::InsufficientStorage => 507,
            Self::BadGateway(_) => 502,
            Self::GatewayTimeout => 504,
            Self::Refused { status, .. } => *status,
            Self::Internal(_) => 500,
        }
    }

    /// Whether the connection must close after the answer: true whenever the bytes that
    /// follow cannot be framed with confidence. An unmet `Expect` counts: the client may be
    /// holding its body back or sending it anyway. (A refusal that leaves a body unread
    /// closes too; the connection knows that, not the error.)
    pub(crate) fn must_close(&self) -> bool {
        matches!(
            self,
            Self::BadSyntax(_)
                | Self::BadLineEnding
                | Self::RequestLineTooLong
                | Self::HeadTooLarge
                | Self::TooManyHeaders
                | Self::UnsupportedVersion
                | Self::BadHost
                | Self::BadContentLength
                | Self::LengthAndTransferEncoding
                | Self::BadTransferEncoding
                | Self::UnknownTransferCoding
                | Self::BadChunk(_)
                | Self::BodyTooLarge
                // The original closes after it, whether or not the body was all read.
                | Self::UploadTooLarge(_)
                | Self::ExpectationFailed
                | Self::HeadTimeout
                | Self::BodyTimeout
        )
    }

    /// The error page answering this refusal: the original's HTML page, its message
    /// also the reason phrase (BEHAVIOUR.md: Error pages).
    pub fn response(&self) -> Response {
        Response::error_page(self.status(), &self.to_string())
    }
}

impl From<HttpError> for Response {
    fn from(error: HttpError) -> Self {
        error.response()
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
            Self::UnsupportedMethod(method) => write!(f, "Unsupported method ('{method}')"),
            Self::BadPath(why) => write!(f, "Bad request path ({why})"),
            Self::BadListingQuery(why) => write!(f, "Bad listing query ({why})"),
            Self::NotFound => f.write_str("File not found"),
            Self::ListingDenied => f.write_str("No permission to list directory"),
            Self::RangeNotSatisfiable => f.write_str(reason_phrase(416)),
            Self::PreconditionFailed => f.write_str(reason_phrase(412)),
            Self::BadJson(e) => write!(f, "request is not JSON formatted! ({e})"),
            Self::MissingBoundary => f.write_str("multipart body without boundary"),
            Self::InsufficientStorage => f.write_str("Insufficient Storage"),
            Self::BadGateway(why) => write!(f, "Bad Gateway ({why})"),
            Self::GatewayTimeout => f.write_str("Gateway Timeout"),
            Self::BadUpload(message)
            | Self::UploadTooLarge(message)
            | Self::Refused { message, .. }
            | Self::Internal(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_errors_close_and_route_refusals_keep_the_connection() {
        assert!(HttpError::BadChunk("x").must_close());
        assert!(HttpError::HeadTimeout.must_close());
        assert!(HttpError::ExpectationFailed.must_close());
        // As the original: closed even when the whole body was read before the refusal.
        assert!(HttpError::UploadTooLarge("big".into()).must_close());
        for kept in [
            HttpError::NotFound,
            HttpError::LengthRequired,
            HttpError::Internal("boom".into()),
        ] {
            assert!(!kept.must_close(), "{kept:?}");
        }
    }

    #[test]
    fn the_page_carries_status_and_message() {
        let page = HttpError::Refused {
            status: 418,
            message: "teapot".into(),
        }
        .response();
        assert_eq!((page.status, page.reason.as_deref()), (418, Some("teapot")));
        let page = HttpError::UnsupportedMethod("BREW".into()).response();
        assert_eq!(page.reason.as_deref(), Some("Unsupported method ('BREW')"));
        assert_eq!(HttpError::LengthRequired.response().status, 411);
    }
}
