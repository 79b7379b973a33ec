//! One proxied request as a sans-IO HTTP/1.1 client, a state machine of its own beside
//! the client connection: it says where to connect, frames the request (the head, then
//! the client's body as it arrives) for the upstream, reads the upstream's answer into its
//! own buffer and re-frames it as bytes for the client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::body::BodyReader;
use crate::http::error::HttpError;
use crate::http::head::{Method, RequestHead, Version};
use crate::limits::Limits;

use super::debug::Debug;
use super::forward::{self, ClientSide, RequestBody};
use super::route::{ProxyRoute, Rest, Upstreams};

/// Request body bytes buffered for the upstream before the client is read again.
const REQUEST_BUFFER: usize = 64 * 1024;
/// Size of the buffer upstream bytes are read into.
const READ_SIZE: usize = 16 * 1024;

/// Why an exchange failed; each maps to the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyFailure {
    /// The upstream could not be reached or closed early: 502.
    Unreachable,
    /// The upstream answered something that is not HTTP/1.x: 502.
    Malformed,
    /// The upstream did not answer in time: 504.
    Timeout,
    /// The TLS session with an `https://` upstream failed (its certificate is not
    /// trusted, names another host or expired; or the protocol broke): 502.
    Tls,
}

impl From<ProxyFailure> for HttpError {
    fn from(failure: ProxyFailure) -> Self {
        match failure {
            ProxyFailure::Unreachable => Self::BadGateway("upstream unreachable or closed early"),
            ProxyFailure::Malformed => Self::BadGateway("malformed upstream response"),
            ProxyFailure::Timeout => Self::GatewayTimeout,
            ProxyFailure::Tls => Self::BadGateway("upstream TLS session failed"),
        }
    }
}

/// Where the upstream tells us to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Speak TLS (`https://`), verifying the certificate for `host`.
    pub tls: bool,
    /// Open a new connection: an idle one from the pool just failed this request.
    pub fresh: bool,
}

/// What the transport does with an upstream socket once an exchange is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The response ended cleanly on a persistent connection: keep it idle for reuse.
    Pool,
    /// Close it.
    Close,
}

/// The response side of the exchange.
#[derive(Debug)]
enum Phase {
    /// Collecting the response head.
    Head,
    /// Relaying the body; `chunked_out` re-frames it as chunked for the client.
    Body { body: BodyReader, chunked_out: bool },
    /// After `101 Switching Protocols`: bytes pass both ways as they are.
    Tunnel,
    /// The response has been relayed completely.
    Done,
    /// The exchange failed.
    Failed(ProxyFailure),
}

/// What the exchange produced for the client since the connection last asked.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    /// Bytes for the client (a response head, body pieces).
    pub(crate) bytes: Vec<u8>,
    /// Status and upstream length, once the head was relayed (for the request log).
    pub(crate) head: Option<(u16, Option<u64>)>,
    /// The client connection must close after this response.
    pub(crate) close: bool,
    /// How the exchange ended, once it has.
    pub(crate) end: Option<Result<(), ProxyFailure>>,
    /// Debug log lines (when the server logs the proxy).
    pub(crate) notes: Vec<String>,
    /// The exchange became a tunnel: the client's further bytes go upstream as they are.
    pub(crate) tunnel: bool,
}

/// Who the exchange is for and what it asks, as the client sent it.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// The client's request head.
    pub(crate) head: &'a RequestHead,
    /// The part of its target the binding forwards.
    pub(crate) rest: Rest,
    /// The client address.
    pub(crate) peer: &'a str,
    /// Whether the client connection is TLS.
    pub(crate) secure: bool,
    /// Whether the proxy's debug log is on.
    pub(crate) debug: bool,
    /// For an upgrade request, its place among the server's tunnels (without one the
    /// upgrade is not passed on).
    pub(crate) tunnel: Option<TunnelSlot>,
    /// `Limits::upstream_max_head`.
    pub(crate) max_head: usize,
}

/// A proxied request in flight.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The binding's upstreams, and which one this exchange uses.
    upstreams: Arc<Upstreams>,
    current: usize,
    /// Upstreams that refused this exchange's connection.
    tried: Vec<usize>,
    /// A connect the transport has not taken yet.
    connect: Option<Connect>,
    connected: bool,
    /// The method, the forwarded part of the target and the head after `Host`, to build
    /// the request head again for another upstream or a retry.
    method: String,
    rest: Rest,
    fields: Vec<u8>,
    /// Bytes of `to_upstream` that are the request head, until any was sent.
    head_len: usize,
    to_upstream: Vec<u8>,
    sent: usize,
    request_body: RequestBody,
    request_done: bool,
    /// The buffer the transport reads upstream bytes into.
    input: Vec<u8>,
    /// The response head collected so far, and its limit.
    head_buf: Vec<u8>,
    max_head: usize,
    phase: Phase,
    client: ClientSide,
    relayed: Relayed,
    /// The client's response head has been handed to the connection.
    head_relayed: bool,
    /// The socket came from the pool of idle connections.
    reused: bool,
    /// An idempotent request without a body: retried once on a fresh connection when a
    /// reused one turns out closed.
    retryable: bool,
    /// A socket to release before the next connect.
    release: Option<Release>,
    /// The upstream keeps its connection after this response.
    persistent: bool,
    /// Bytes arrived after the end of the response: the connection is out of step.
    overrun: bool,
    debug: Option<Box<Debug>>,
    /// Held while an upgrade may become, or is, a tunnel.
    _tunnel: Option<TunnelSlot>,
}

impl Exchange {
    /// Starts an exchange for `request` through `route`, at `now`.
    pub(crate) fn new(route: &ProxyRoute, request: Request<'_>, now: Instant) -> Self {
        let head = request.head;
        let upstreams = Arc::clone(route.targets());
        // A first pick always finds one: nothing was tried yet.
        let current = upstreams.pick(now, &[]).unwrap_or(0);
        let upgrade = request.tunnel.as_ref().and(forward::upgrade_of(head));
        let (fields, request_body) =
            forward::request_fields(head, request.peer, request.secure, upgrade);
        let idempotent = matches!(
            head.method(),
            Method::Get | Method::Head | Method::Put | Method::Delete
        );
        let mut exchange = Self {
            connect: Some(upstreams.get(current).connect()),
            upstreams,
            current,
            tried: Vec::new(),
            connected: false,
            method: head.method_str().to_owned(),
            rest: request.rest,
            fields,
            head_len: 0,
            to_upstream: Vec::new(),
            sent: 0,
            request_body,
            request_done: request_body == RequestBody::None,
            input: Vec::new(),
            head_buf: Vec::new(),
            max_head: request.max_head,
            phase: Phase::Head,
            client: ClientSide {
                head_only: head.method() == Method::Head,
                keep_alive: head.keep_alive(),
                http10: head.version() == Version::Http10,
                request_done: false,
                upgrade: upgrade.is_some(),
            },
            relayed: Relayed::default(),
            head_relayed: false,
            reused: false,
            retryable: idempotent && request_body == RequestBody::None,
            release: None,
            persistent: false,
            overrun: false,
            debug: request
                .debug
                .then(|| Box::new(Debug::new(head.method_str(), head.target(), now))),
            _tunnel: request.tunnel,
        };
        exchange.to_upstream = exchange.request_head();
        exchange.head_len = exchange.to_upstream.len();
        if exchange.request_done {
            exchange.note_request();
        }
        exchange
    }

    // ----- the upstream socket -----

    /// The connection the transport must open (given once).
    pub(crate) fn take_connect(&mut self) -> Option<Connect> {
        self.connect.take()
    }

    /// The upstream socket is connected: request bytes may leave. `reused`: it is an
    /// idle connection from the pool.
    pub(crate) fn connected(&mut self, reused: bool) {
        self.connected = true;
        self.reused = reused;
    }

    /// A socket to release before the next connect (a retry's), given once.
    pub(crate) fn take_release(&mut self) -> Option<Release> {
        self.release.take()
    }

    /// What becomes of the socket once the exchange is over: back to the pool only after
    /// a complete response on a persistent connection with the whole request sent.
    pub(crate) fn release(&self) -> Release {
        let clean = matches!(self.phase, Phase::Done)
            && self.persistent
            && !self.overrun
            && self.request_done
            && self.pending() == 0;
        if self.connected && clean {
            Release::Pool
        } else {
            Release::Close
        }
    }

    /// What to write to the upstream next.
    pub(crate) fn transmit(&self) -> Option<&[u8]> {
        (self.connected && self.pending() > 0).then(|| &self.to_upstream[self.sent..])
    }

    /// `n` bytes of [`transmit`](Self::transmit) were written.
    pub(crate) fn transmitted(&mut self, n: usize) {
        if n > 0 {
            self.head_len = 0; // the head is on its way: it stays as it is
        }
        self.sent = (self.sent + n).min(self.to_upstream.len());
        if self.sent == self.to_upstream.len() {
            self.to_upstream.clear();
            self.sent = 0;
        }
    }

    /// Whether response bytes are expected from the upstream socket.
    pub(crate) fn wants_read(&self) -> bool {
        self.connected && matches!(self.phase, Phase::Head | Phase::Body { .. } | Phase::Tunnel)
    }

    /// Whether the client asked with HEAD: its answers carry no body, error pages neither.
    pub(crate) fn head_only(&self) -> bool {
        self.client.head_only
    }

    /// Whether the exchange is a tunnel now.
    pub(crate) fn is_tunnel(&self) -> bool {
        matches!(self.phase, Phase::Tunnel)
    }

    /// A buffer to read upstream bytes into; empty when none are expected. While the head
    /// is collected it reaches one byte past `Limits::upstream_max_head` at most, so the
    /// exchange fails with the first byte over the limit and never holds more.
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        let size = match self.phase {
            Phase::Head => READ_SIZE.min(self.max_head + 1 - self.head_buf.len()),
            _ => READ_SIZE,
        };
        self.input.resize(size, 0);
        &mut self.input
    }

    /// Takes `n` bytes read into [`read_buf`](Self::read_buf) and turns them into client
    /// bytes, with `server` and `date` for the client's response head.
    pub(crate) fn commit(&mut self, n: usize, answer: &Answer<'_>) {
        let input = std::mem::take(&mut self.input);
        let n = n.min(input.len());
        if n > 0 && self.wants_read() {
            self.receive(&input[..n], answer);
        }
        self.input = input;
    }

    /// The upstream closed its side: ends a close-delimited body, else fails.
    pub(crate) fn read_eof(&mut self, now: Instant) {
        self.persistent = false;
        match &self.phase {
            Phase::Body {
                body: BodyReader::UntilClose,
                ..
            } => self.finish_response(now),
            Phase::Tunnel => self.phase = Phase::Done,
            Phase::Done | Phase::Failed(_) => {}
            _ => self.fail(ProxyFailure::Unreachable, now),
        }
    }

    /// The upstream socket failed. Before it connected, the upstream is skipped by the
    /// binding for `down_time` and the next one not yet tried gets the request (nothing
    /// of it was sent); after, the exchange fails.
    pub(crate) fn failed(&mut self, now: Instant, down_time: Duration) {
        if self.connected || !matches!(self.phase, Phase::Head) {
            return self.fail(ProxyFailure::Unreachable, now);
        }
        self.upstreams.mark_down(self.current, now + down_time);
        self.tried.push(self.current);
        let Some(next) = self.upstreams.pick(now, &self.tried) else {
            return self.fail(ProxyFailure::Unreachable, now);
        };
        if let Some(debug) = &self.debug {
            let line = debug.failed(&self.url(), "refused, trying the next upstream", now);
            self.relayed.notes.push(line);
        }
        self.current = next;
        let head = self.request_head();
        self.to_upstream
            .splice(..self.head_len, head.iter().copied());
        self.head_len = head.len();
        self.release = Some(Release::Close);
        self.connect = Some(self.upstreams.get(next).connect());
    }

    /// The TLS session with the upstream failed for `reason` (rustls's words): always
    /// logged, as a certificate problem is a set-up error the operator must see.
    pub(crate) fn tls_failed(&mut self, reason: &str, now: Instant) {
        if matches!(self.phase, Phase::Done | Phase::Failed(_)) {
            return;
        }
        let line = format!("proxy: TLS with {} failed: {reason}", self.url());
        self.fail(ProxyFailure::Tls, now);
        self.relayed.notes.push(line);
    }

    /// The exchange failed: what was not yet handed to the connection is dropped, so a
    /// client that saw no head gets an error answer instead.
    pub(crate) fn fail(&mut self, failure: ProxyFailure, now: Instant) {
        if matches!(self.phase, Phase::Done | Phase::Failed(_)) {
            return;
        }
        let nothing_back = matches!(self.phase, Phase::Head) && self.head_buf.is_empty();
        if failure == ProxyFailure::Unreachable && self.reused && nothing_back && self.retryable {
            // The pooled connection was closed by the upstream in the meantime: the
            // request was not processed, so it goes again on a new connection.
            self.retryable = false;
            self.release = Some(Release::Close);
            self.connect = Some(Connect {
                fresh: true,
                ..self.upstreams.get(self.current).connect()
            });
            self.connected = false;
            self.reused = false;
            self.to_upstream = self.request_head();
            self.sent = 0;
            return;
        }
        self.phase = Phase::Failed(failure);
        if !self.head_relayed {
            let notes = std::mem::take(&mut self.relayed.notes);
            self.relayed = Relayed {
                notes,
                ..Relayed::default()
            };
        }
        if let Some(debug) = &self.debug {
            let why = HttpError::from(failure).to_string();
            let line = debug.failed(&self.url(), &why, now);
            self.relayed.notes.push(line);
        }
    }

    // ----- the client connection -----

    /// Room for more request body bytes.
    pub(crate) fn room(&self) -> usize {
        REQUEST_BUFFER.saturating_sub(self.pending())
    }

    /// Frames a piece of the client's request body for the upstream.
    pub(crate) fn push_body(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(debug) = &mut self.debug {
            debug.body(data);
        }
        if self.request_body == RequestBody::Chunked {
            self.to_upstream
                .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            self.to_upstream.extend_from_slice(data);
            self.to_upstream.extend_from_slice(b"\r\n");
        } else {
            self.to_upstream.extend_from_slice(data);
        }
    }

    /// The client's body is complete.
    pub(crate) fn finish_body(&mut self) {
        if self.request_body == RequestBody::Chunked && !self.request_done {
            self.to_upstream.extend_from_slice(b"0\r\n\r\n");
        }
        self.request_done = true;
        self.note_request();
    }

    /// Whether the client's request body has been fully forwarded into the buffer.
    pub(crate) fn request_done(&self) -> bool {
        self.request_done
    }

    /// Whether the client has been given no response head yet (a failure can still be
    /// answered with a status).
    pub(crate) fn awaiting_head(&self) -> bool {
        !self.head_relayed
    }

    /// Hands over what was produced for the client, and how the exchange ended once it
    /// has.
    pub(crate) fn take_relayed(&mut self) -> Relayed {
        let mut relayed = std::mem::take(&mut self.relayed);
        self.head_relayed |= relayed.head.is_some();
        relayed.end = match self.phase {
            Phase::Done => Some(Ok(())),
            Phase::Failed(failure) => Some(Err(failure)),
            Phase::Head | Phase::Body { .. } | Phase::Tunnel => None,
        };
        relayed
    }

    // ----- internals -----

    /// The request head for the current upstream.
    fn request_head(&self) -> Vec<u8> {
        let target = self.upstreams.get(self.current);
        let mut head = forward::request_line(&self.method, &target.path(&self.rest), target);
        head.extend_from_slice(&self.fields);
        head
    }

    /// The current upstream URL, for the debug log.
    fn url(&self) -> String {
        let target = self.upstreams.get(self.current);
        let (scheme, authority) = (target.scheme(), target.authority());
        format!("{scheme}://{authority}{}", target.path(&self.rest))
    }

    /// Logs the request once its body is complete (the payload is known then).
    fn note_request(&mut self) {
        if let Some(debug) = &self.debug {
            let line = debug.request_line(&self.request_head(), &self.url());
            self.relayed.notes.push(line);
        }
    }

    /// Bytes waiting for the upstream socket.
    fn pending(&self) -> usize {
        self.to_upstream.len() - self.sent
    }

    /// Takes bytes from the upstream: the head until it is complete, then the body.
    fn receive(&mut self, data: &[u8], answer: &Answer<'_>) {
        if !matches!(self.phase, Phase::Head) {
            return self.relay(data, answer);
        }
        self.head_buf.extend_from_slice(data);
        let client = ClientSide {
            request_done: self.request_done,
            ..self.client
        };
        let parsed = forward::response_head(
            &self.head_buf,
            answer.limits.upstream_max_fields,
            client,
            answer.server,
            answer.date,
            &mut self.relayed.bytes,
        );
        match parsed {
            Ok(Some(head)) => {
                if let Some(debug) = &mut self.debug {
                    debug.response(head.status, &self.head_buf[..head.consumed]);
                }
                self.relayed.head = Some((head.status, head.length));
                self.relayed.close = head.close;
                self.persistent = head.persistent;
                let rest = self.head_buf.split_off(head.consumed);
                self.head_buf = Vec::new();
                if head.tunnel {
                    self.phase = Phase::Tunnel;
                    self.request_body = RequestBody::Raw;
                    self.relayed.tunnel = true;
                    return self.relay(&rest, answer);
                }
                match head.body {
                    Some(body) => {
                        self.phase = Phase::Body {
                            body,
                            chunked_out: head.chunked_out,
                        };
                        self.relay(&rest, answer);
                    }
                    None => {
                        self.overrun = !rest.is_empty();
                        self.finish_response(answer.now);
                    }
                }
            }
            Ok(None) if self.head_buf.len() > self.max_head => {
                self.fail(ProxyFailure::Malformed, answer.now);
            }
            Ok(None) => {}
            Err(_) => self.fail(ProxyFailure::Malformed, answer.now),
        }
    }

    /// Decodes body bytes for the client; bytes after the end of the body are dropped (and
    /// the upstream connection is not reused).
    fn relay(&mut self, data: &[u8], answer: &Answer<'_>) {
        if let Phase::Tunnel = self.phase {
            return self.relayed.bytes.extend_from_slice(data);
        }
        let Phase::Body { body, chunked_out } = &mut self.phase else {
            return;
        };
        let out = &mut self.relayed.bytes;
        let mut used = 0;
        loop {
            let step = match body.step(&data[used..], answer.limits) {
                Ok(step) => step,
                Err(_) => return self.fail(ProxyFailure::Malformed, answer.now),
            };
            emit(out, step.data, *chunked_out);
            if let Some(debug) = &mut self.debug {
                debug.relayed(step.data.len());
            }
            used += step.consumed;
            if step.done {
                self.overrun = used < data.len();
                return self.finish_response(answer.now);
            }
            if step.consumed == 0 || used == data.len() {
                return;
            }
        }
    }

    /// The response is complete: the client's framing is closed too (a HEAD request's
    /// answer has no body, so no terminating chunk).
    fn finish_response(&mut self, now: Instant) {
        if let Phase::Body {
            chunked_out: true, ..
        } = self.phase
        {
            self.relayed.bytes.extend_from_slice(b"0\r\n\r\n");
        }
        self.phase = Phase::Done;
        if let Some(debug) = &self.debug {
            let lines = debug.done(&self.url(), now);
            self.relayed.notes.extend(lines);
        }
    }
}

/// What the exchange needs from the connection to answer the client.
#[derive(Debug)]
pub(crate) struct Answer<'a> {
    /// The `Server` field value.
    pub(crate) server: &'a str,
    /// The `Date` field value.
    pub(crate) date: &'a [u8],
    /// The limits (chunked framing).
    pub(crate) limits: &'a Limits,
    /// The time now.
    pub(crate) now: Instant,
}

/// A place among the tunnels a server allows at once, given back when dropped.
#[derive(Debug)]
pub(crate) struct TunnelSlot(Arc<AtomicUsize>);

impl TunnelSlot {
    /// Takes a place in `open` if fewer than `max` are taken.
    pub(crate) fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self(Arc::clone(open)))
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Appends a body piece for the client, as a chunk when `chunked`.
fn emit(out: &mut Vec<u8>, piece: &[u8], chunked: bool) {
    if piece.is_empty() {
        return;
    }
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    use crate::conn::{Connection, Transmit};
    use crate::fs::MemoryFs;
    use crate::proxy::{Connect, Release};
    use crate::request::PeerInfo;
    use crate::server::Server;

    fn conn() -> (Connection, Instant) {
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder
            .bind_proxy("/px/", "http://up.test:9000/base")
            .unwrap();
        let peer = PeerInfo {
            addr: "10.0.0.7:5555".into(),
            secure: false,
        };
        (Connection::new(builder.build(), peer, now), now)
    }

    fn client_output(conn: &mut Connection, now: Instant) -> String {
        let mut wire = Vec::new();
        while let Some(Transmit::Bytes(b)) = conn.poll_transmit() {
            wire.extend_from_slice(b);
            let n = b.len();
            conn.transmitted(n, now);
        }
        String::from_utf8_lossy(&wire).into_owned()
    }

    fn upstream_output(conn: &mut Connection, now: Instant) -> String {
        let mut wire = Vec::new();
        while let Some(mut upstream) = conn.upstream() {
            let Some(b) = upstream.transmit() else { break };
            wire.extend_from_slice(b);
            let n = b.len();
            upstream.transmitted(n, now);
        }
        String::from_utf8_lossy(&wire).into_owned()
    }

    /// Takes the release of the last exchange's socket.
    fn release(conn: &mut Connection) -> Option<Release> {
        conn.upstream()?.poll_release()
    }

    fn upstream_send(conn: &mut Connection, data: &[u8], now: Instant) {
        for piece in data.chunks(7) {
            let Some(mut upstream) = conn.upstream() else {
                return; // the exchange ended
            };
            let buf = upstream.read_buf();
            if buf.is_empty() {
                return; // the exchange ended
            }
            buf[..piece.len()].copy_from_slice(piece);
            upstream.commit(piece.len(), now);
        }
    }

    #[test]
    fn forwards_a_get_and_relays_a_sized_answer() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/a/b?x=1 HTTP/1.1\r\nHost: front\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nCookie: c=1\r\n\r\n", now);
        let connect = c
            .upstream()
            .unwrap()
            .poll_connect()
            .expect("connect action");
        assert_eq!((connect.host.as_str(), connect.port), ("up.test", 9000));
        assert!(c.upstream().unwrap().poll_connect().is_none(), "asked once");
        assert!(
            c.upstream().unwrap().transmit().is_none(),
            "nothing before connected"
        );
        c.upstream().unwrap().connected(now);
        let sent = upstream_output(&mut c, now);
        assert!(
            sent.starts_with("GET /base/a/b?x=1 HTTP/1.1\r\nHost: up.test:9000\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("Cookie: c=1\r\n")
                && !sent.contains("X-Hop")
                && !sent.contains("keep-alive")
        );
        assert!(sent.contains(
            "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: front\r\n"
        ));
        assert!(
            !sent.contains("Connection:"),
            "persistent by default: {sent}"
        );
        upstream_send(
            &mut c,
            b"HTTP/1.1 201 Made\r\nServer: up\r\nContent-Length: 5\r\nX-Up: y\r\n\r\nhello",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.starts_with("HTTP/1.1 201 Made\r\nServer: QuickServer/"),
            "{wire}"
        );
        assert!(
            wire.contains("X-Up: y\r\nContent-Length: 5\r\n\r\nhello")
                && !wire.contains("Server: up")
        );
        assert_eq!(release(&mut c), Some(Release::Pool), "a clean 1.1 answer");
        assert!(
            c.upstream().is_none() && !c.is_closed(),
            "client kept alive"
        );
    }

    /// Runs one GET through `c` with `answer` from the upstream; returns the client's
    /// bytes and the release.
    fn one_get(c: &mut Connection, answer: &[u8], now: Instant) -> (String, Option<Release>) {
        c.feed(b"GET /px/a HTTP/1.1\r\nHost: f\r\n\r\n", now);
        let mut upstream = c.upstream().unwrap();
        assert!(upstream.poll_release().is_none());
        upstream.poll_connect().expect("a connect");
        upstream.connected(now);
        upstream_output(c, now);
        upstream_send(c, answer, now);
        (client_output(c, now), release(c))
    }

    #[test]
    fn only_a_clean_persistent_answer_returns_the_socket_to_the_pool() {
        let cases: [(&[u8], Release); 6] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Release::Pool,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                Release::Pool,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Release::Pool),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                Release::Close,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Release::Close,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                Release::Close,
            ),
        ];
        for (answer, expected) in cases {
            let (mut c, now) = conn();
            let (wire, release) = one_get(&mut c, answer, now);
            assert!(wire.starts_with("HTTP/1.1 2"), "{wire}");
            assert_eq!(
                release,
                Some(expected),
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn a_refused_connect_moves_the_request_to_the_next_upstream() {
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder
            .bind_proxy("/px/", "http://a:1/x,http://b:2/y")
            .unwrap();
        let mut c = Connection::new(builder.build(), PeerInfo::default(), now);
        c.feed(
            b"POST /px/p HTTP/1.1\r\nHost: f\r\nContent-Length: 2\r\n\r\nhi",
            now,
        );
        let mut upstream = c.upstream().unwrap();
        let first = upstream.poll_connect().unwrap();
        assert_eq!((first.host.as_str(), first.port), ("a", 1));
        upstream.failed(now);
        assert_eq!(upstream.poll_release(), Some(Release::Close));
        let second = upstream.poll_connect().expect("the next upstream");
        assert_eq!((second.host.as_str(), second.port), ("b", 2));
        upstream.connected(now);
        let sent = upstream_output(&mut c, now);
        assert!(
            sent.starts_with("POST /y/p HTTP/1.1\r\nHost: b:2\r\n"),
            "{sent}"
        );
        assert!(
            sent.ends_with("\r\n\r\nhi"),
            "the body follows the new head: {sent}"
        );
        // The next request skips `a` while it is down.
        upstream_send(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now);
        client_output(&mut c, now);
        release(&mut c);
        c.feed(b"GET /px/q HTTP/1.1\r\nHost: f\r\n\r\n", now);
        let next = c.upstream().unwrap().poll_connect().unwrap();
        assert_eq!(next.host, "b", "a is skipped");
    }

    #[test]
    fn an_upgrade_becomes_a_tunnel_until_a_side_closes() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/ws HTTP/1.1\r\nHost: f\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n", now);
        c.upstream().unwrap().connected(now);
        let sent = upstream_output(&mut c, now);
        assert!(
            sent.contains("Sec-WebSocket-Key: k\r\n")
                && sent.ends_with("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{sent}"
        );
        upstream_send(
            &mut c,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\nfrom-up",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{wire}"
        );
        assert!(
            wire.ends_with("Sec-WebSocket-Accept: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nfrom-up"),
            "{wire}"
        );
        c.feed(b"\x81\x05hello", now);
        assert_eq!(
            upstream_output(&mut c, now),
            "\u{fffd}\u{5}hello",
            "as they are"
        );
        let limits = crate::limits::Limits::default();
        assert_eq!(c.poll_timeout(), Some(now + limits.tunnel_idle_timeout));
        upstream_send(&mut c, b"more", now);
        assert_eq!(client_output(&mut c, now), "more");
        c.upstream().unwrap().read_eof(now);
        assert!(c.is_closed(), "the upstream closed: so does the client");
        assert_eq!(release(&mut c), Some(Release::Close));
    }

    #[test]
    fn a_switch_nobody_asked_for_is_refused_and_tunnels_are_counted() {
        let (mut c, now) = conn();
        let (wire, _) = one_get(
            &mut c,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            now,
        );
        assert!(wire.starts_with("HTTP/1.1 502 "), "{wire}");

        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder.limits(crate::limits::Limits {
            max_tunnels: 1,
            ..crate::limits::Limits::default()
        });
        builder.bind_proxy("/px/", "http://up.test:9/").unwrap();
        let server = builder.build();
        let upgrade =
            b"GET /px/ws HTTP/1.1\r\nHost: f\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let mut first = Connection::new(Arc::clone(&server), PeerInfo::default(), now);
        first.feed(upgrade, now);
        assert!(first.upstream().is_some());
        let mut second = Connection::new(Arc::clone(&server), PeerInfo::default(), now);
        second.feed(upgrade, now);
        assert!(client_output(&mut second, now).starts_with("HTTP/1.1 503 "));
        drop(first);
        let mut third = Connection::new(server, PeerInfo::default(), now);
        third.feed(upgrade, now);
        assert!(third.upstream().is_some(), "the place was given back");
    }

    #[test]
    fn hop_by_hop_response_fields_stop_at_the_proxy() {
        let (mut c, now) = conn();
        let (wire, _) = one_get(
            &mut c,
            b"HTTP/1.1 200 OK\r\nConnection: X-Trace, keep-alive\r\nX-Trace: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n",
            now,
        );
        assert!(wire.contains("X-End: 2\r\n"), "{wire}");
        for hop in ["X-Trace", "Keep-Alive", "keep-alive"] {
            assert!(!wire.contains(hop), "{hop} in {wire}");
        }
    }

    #[test]
    fn a_stale_pooled_connection_is_retried_once_for_idempotent_requests_only() {
        // A GET: the reused socket is found closed before any answer; the request goes
        // again on a fresh connection.
        let (mut c, now) = conn();
        c.feed(b"GET /px/a HTTP/1.1\r\nHost: f\r\n\r\n", now);
        let mut upstream = c.upstream().unwrap();
        assert!(!upstream.poll_connect().unwrap().fresh);
        upstream.reused(now);
        let first = upstream_output(&mut c, now);
        c.upstream().unwrap().read_eof(now);
        assert_eq!(client_output(&mut c, now), "", "no answer yet");
        let mut upstream = c.upstream().unwrap();
        assert_eq!(upstream.poll_release(), Some(Release::Close));
        let again: Connect = upstream.poll_connect().expect("a new connect");
        assert!(again.fresh, "not from the pool");
        upstream.reused(now); // even so, a second failure is final
        assert_eq!(upstream_output(&mut c, now), first, "the same request");
        c.upstream().unwrap().failed(now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));

        // A POST is never retried.
        let (mut c, now) = conn();
        c.feed(
            b"POST /px/a HTTP/1.1\r\nHost: f\r\nContent-Length: 0\r\n\r\n",
            now,
        );
        let mut upstream = c.upstream().unwrap();
        upstream.poll_connect();
        upstream.reused(now);
        upstream_output(&mut c, now);
        c.upstream().unwrap().read_eof(now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));
        assert_eq!(release(&mut c), Some(Release::Close));

        // Nor is a GET on a fresh connection, or one whose answer had begun.
        let (mut c, now) = conn();
        c.feed(b"GET /px/a HTTP/1.1\r\nHost: f\r\n\r\n", now);
        let mut upstream = c.upstream().unwrap();
        upstream.poll_connect();
        upstream.connected(now);
        upstream.read_eof(now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));
        let (mut c, now) = conn();
        c.feed(b"GET /px/a HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream().unwrap().reused(now);
        upstream_send(&mut c, b"HTTP/1.1 20", now);
        c.upstream().unwrap().read_eof(now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));
    }

    #[test]
    fn streams_a_chunked_request_and_rechunks_a_close_delimited_answer() {
        let (mut c, now) = conn();
        c.feed(
            b"POST /px/ HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            now,
        );
        c.upstream().unwrap().poll_connect();
        c.upstream().unwrap().connected(now);
        let sent = upstream_output(&mut c, now);
        assert!(
            sent.starts_with("POST /base/ HTTP/1.1\r\n")
                && sent.contains("Transfer-Encoding: chunked\r\n")
        );
        assert!(sent.ends_with("\r\n\r\n3\r\nabc\r\n"), "{sent:?}");
        c.feed(b"2\r\nde\r\n0\r\n\r\n", now);
        assert_eq!(upstream_output(&mut c, now), "2\r\nde\r\n0\r\n\r\n");
        upstream_send(&mut c, b"HTTP/1.1 200 OK\r\n\r\npart1", now);
        upstream_send(&mut c, b"part2", now);
        c.upstream().unwrap().read_eof(now);
        let wire = client_output(&mut c, now);
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with("Transfer-Encoding: chunked"), "{wire}");
        let mut decoded = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                assert_eq!(tail, "\r\n");
                break;
            }
            decoded.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        assert_eq!(decoded, "part1part2");
        assert!(!c.is_closed());
    }

    #[test]
    fn upstream_failures_map_to_502_and_504() {
        let (mut c, now) = conn();
        c.feed(b"GET /px HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream().unwrap().poll_connect();
        c.upstream().unwrap().failed(now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));
        assert!(!c.is_closed(), "framing intact: connection kept");

        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream().unwrap().connected(now);
        upstream_send(&mut c, b"NOT HTTP AT ALL\r\n\r\n", now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));

        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream().unwrap().connected(now);
        let deadline = c.poll_timeout().unwrap();
        c.handle_timeout(deadline);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 504 "));

        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream().unwrap().connected(now);
        upstream_send(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            now,
        );
        c.upstream().unwrap().read_eof(now);
        client_output(&mut c, now);
        assert!(c.is_closed(), "a cut body cannot be finished: close");
    }

    #[test]
    fn a_response_head_over_the_limit_fails_with_its_first_extra_byte() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream().unwrap().connected(now);
        upstream_output(&mut c, now);
        let limit = crate::limits::Limits::default().upstream_max_head;
        // One long field: the head is partial until its end, fields are not counted yet.
        let mut head = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
        head.resize(limit, b'a');
        let mut sent = 0;
        while sent < limit {
            let mut upstream = c.upstream().unwrap();
            let buf = upstream.read_buf();
            assert!(!buf.is_empty(), "still reading after {sent} bytes");
            assert!(
                sent + buf.len() <= limit + 1,
                "never more than one byte over"
            );
            let n = buf.len().min(limit - sent);
            buf[..n].copy_from_slice(&head[sent..sent + n]);
            upstream.commit(n, now);
            sent += n;
        }
        assert_eq!(
            client_output(&mut c, now),
            "",
            "at the limit: still waiting"
        );
        let mut upstream = c.upstream().unwrap();
        assert_eq!(upstream.read_buf().len(), 1);
        upstream.read_buf()[0] = b'X';
        upstream.commit(1, now);
        let wire = client_output(&mut c, now);
        assert!(wire.starts_with("HTTP/1.1 502 "), "{wire}");
        assert_eq!(release(&mut c), Some(Release::Close));
    }

    #[test]
    fn an_upstream_head_with_too_many_fields_answers_502() {
        for (fields, status) in [(2, "200"), (3, "502")] {
            let now = Instant::now();
            let mut builder =
                Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
            builder.limits(crate::limits::Limits {
                upstream_max_fields: 2,
                ..crate::limits::Limits::default()
            });
            builder.bind_proxy("/px/", "http://up.test:9/").unwrap();
            let mut c = Connection::new(builder.build(), PeerInfo::default(), now);
            let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
            for n in 1..fields {
                answer.extend_from_slice(format!("X-{n}: v\r\n").as_bytes());
            }
            answer.extend_from_slice(b"\r\n");
            let (wire, _) = one_get(&mut c, &answer, now);
            assert!(
                wire.starts_with(&format!("HTTP/1.1 {status} ")),
                "{fields}: {wire}"
            );
        }
    }

    #[test]
    fn a_kept_http10_client_is_told_so() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", now);
        c.upstream().unwrap().poll_connect();
        c.upstream().unwrap().connected(now);
        upstream_output(&mut c, now);
        upstream_send(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.ends_with("Content-Length: 2\r\nConnection: keep-alive\r\n\r\nok"),
            "{wire}"
        );
        assert!(!c.is_closed());
        // Without a length the answer must end with the close: no keep-alive promised.
        c.feed(b"GET /px/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", now);
        c.upstream().unwrap().poll_connect();
        c.upstream().unwrap().connected(now);
        upstream_output(&mut c, now);
        upstream_send(&mut c, b"HTTP/1.1 200 OK\r\n\r\nstream", now);
        c.upstream().unwrap().read_eof(now);
        let wire = client_output(&mut c, now);
        assert!(wire.contains("Connection: close\r\n") && !wire.contains("keep-alive"));
    }

    #[test]
    fn a_failure_before_the_head_left_still_answers_502() {
        // Head and broken chunked framing in one read: the head never reaches the client.
        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        let mut upstream = c.upstream().unwrap();
        upstream.connected(now);
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        upstream.read_buf()[..answer.len()].copy_from_slice(answer);
        upstream.commit(answer.len(), now);
        let wire = client_output(&mut c, now);
        assert!(wire.starts_with("HTTP/1.1 502 "), "{wire}");
        assert_eq!(wire.matches("HTTP/1.1").count(), 1, "{wire}");
        assert_eq!(release(&mut c), Some(Release::Close));
        assert!(c.upstream().is_none() && !c.is_closed());
    }

    #[test]
    fn half_closed_client_still_gets_the_proxied_answer() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.read_eof(now);
        assert!(c.upstream().is_some());
        c.upstream().unwrap().connected(now);
        upstream_output(&mut c, now);
        upstream_send(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.starts_with("HTTP/1.1 200 OK") && wire.ends_with("\r\n\r\nok"),
            "{wire}"
        );
        assert!(c.is_closed());
    }

    #[test]
    fn client_leaving_mid_exchange_ends_it() {
        let (mut c, now) = conn();
        c.feed(
            b"POST /px/ HTTP/1.1\r\nHost: f\r\nContent-Length: 100\r\n\r\nabc",
            now,
        );
        c.upstream().unwrap().connected(now);
        c.read_eof(now);
        assert!(c.upstream().is_none() && c.is_closed());
    }
}
