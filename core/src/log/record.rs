//! What the core reports about each answered request, for the facade to print.

use std::time::{Duration, SystemTime};

/// One answered request: everything the original's log line shows, and the peer.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord<'a> {
    /// The client address as the transport gave it.
    pub peer: &'a str,
    /// The request line as sent (empty when the request could not be parsed that far).
    pub request_line: &'a str,
    /// The status answered.
    pub status: u16,
    /// The error page's message, for the original's `code C, message M` line.
    pub message: Option<&'a str>,
    /// The body size when it was known from a file (the original's size column).
    pub size: Option<u64>,
    /// Time from the first byte of the request to its answer.
    pub elapsed: Duration,
    /// Wall time of the answer.
    pub wall: SystemTime,
}

/// A dynamic request that is still running past the slow threshold, or finished after it.
#[derive(Debug, Clone, Copy)]
pub struct SlowRequest<'a> {
    /// The routing method (`GET` for HEAD requests, as the original).
    pub method: &'a str,
    /// The request target.
    pub target: &'a str,
    /// Time since the request started.
    pub elapsed: Duration,
    /// Whether the request has completed.
    pub completed: bool,
}

/// Receives request records; installed with
/// [`ServerBuilder::request_log`](crate::ServerBuilder::request_log). Called on the
/// transport's thread, so it should only format and write.
pub trait RequestLog: Send + Sync {
    /// A request was answered.
    fn request(&self, record: &RequestRecord<'_>);
    /// A dynamic request passed the slow threshold (once while running, once when done).
    fn slow(&self, slow: &SlowRequest<'_>);
    /// Any other message for the log (worker failures, purged results).
    fn note(&self, text: &str);
}
