//! A request as routes see it, and the facts about its peer: shared by the connection,
//! the server and every route kind, so it sits below all of them.

use std::sync::Arc;

use crate::http::error::HttpError;
use crate::http::head::RequestHead;
use crate::upload::{Collector, Multipart};

/// Facts about the peer the transport knows and the core cannot look up.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The client address as text (`127.0.0.1:5555`), for logs and `X-Forwarded-For`.
    pub addr: String,
    /// Whether the connection is TLS.
    pub secure: bool,
}

/// A complete request: head, body (when the route wanted it) and peer.
#[derive(Debug)]
pub struct Request {
    /// The parsed head.
    pub head: RequestHead,
    /// The client (shared with its connection: a request does not copy it).
    pub peer: Arc<PeerInfo>,
    body: Vec<u8>,
    sink: BodySink,
    body_seen: u64,
}

/// Where the bytes of a request body go.
#[derive(Debug)]
pub(crate) enum BodySink {
    /// Framed and dropped (no route wants them).
    Discard,
    /// Kept in memory for the route.
    Collect,
    /// Parsed as they arrive, files spilled to disk past a threshold.
    Multipart(Box<Collector>),
    /// The multipart body was complete and parsed.
    Parsed(Multipart),
}

impl Request {
    /// A request for `head` whose body goes to `sink`.
    pub(crate) fn new(head: RequestHead, peer: Arc<PeerInfo>, sink: BodySink) -> Self {
        Self {
            head,
            peer,
            body: Vec::new(),
            sink,
            body_seen: 0,
        }
    }

    /// The body, if the route asked for it (empty otherwise; a multipart body is parsed
    /// into `args` as it arrives and not kept).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes a piece of the body; an upload that cannot be accepted gives its error page.
    pub(crate) fn push_body(&mut self, data: &[u8]) -> Result<(), HttpError> {
        self.body_seen += data.len() as u64;
        match &mut self.sink {
            BodySink::Discard | BodySink::Parsed(_) => Ok(()),
            BodySink::Collect => {
                self.body.extend_from_slice(data);
                Ok(())
            }
            BodySink::Multipart(collector) => collector.feed(data).map_err(HttpError::from),
        }
    }

    /// The body is complete: finishes a multipart parse.
    pub(crate) fn finish_body(&mut self) -> Result<(), HttpError> {
        if let BodySink::Multipart(_) = self.sink {
            let BodySink::Multipart(collector) =
                std::mem::replace(&mut self.sink, BodySink::Discard)
            else {
                return Ok(());
            };
            match collector.finish() {
                Ok(parsed) => self.sink = BodySink::Parsed(parsed),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The parsed multipart fields and files, once (for the route's `args`).
    pub(crate) fn take_multipart(&mut self) -> Option<Multipart> {
        match std::mem::replace(&mut self.sink, BodySink::Discard) {
            BodySink::Parsed(parsed) => Some(parsed),
            other => {
                self.sink = other;
                None
            }
        }
    }

    pub(crate) fn body_seen(&self) -> u64 {
        self.body_seen
    }
}
