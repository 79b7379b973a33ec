//! One HTTP/1.x connection as a state machine: bytes in, responses and actions out. A
//! proxied request's upstream is a machine of its own (`proxy::exchange`), reached
//! through [`Connection::upstream`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coding::answer::{self, Plan};
use crate::coding::{AcceptEncoding, Compression};
use crate::dynamic::route::Routed;
use crate::files::TagList;
use crate::http::body::BodyReader;
use crate::http::chunked::ChunkedDecoder;
use crate::http::error::HttpError;
use crate::http::head::{Framing, HeadScanner, Method, RequestHead, Version};
use crate::http::response::{self, Body, BodyPart, DateCache, FileRegion, Persistence, Response};
use crate::job::{Completion, Job, JobId, JobKind, Output};
use crate::log::{RequestRecord, SlowRequest};
use crate::proxy::exchange::{Exchange, ProxyFailure, Release, Request as ProxyRequest};
use crate::proxy::forward;
use crate::request::{PeerInfo, Request};
use crate::server::{Dispatch, Server};
use crate::worker::route::WorkerRoute;
use crate::worker::{TaskKey, START_WAIT};

mod upstream;

pub use upstream::Upstream;

/// Bodies up to this size are read into the output buffer, so head and body leave in one
/// write; larger ones leave as a file region.
const INLINE_FILE_MAX: u64 = 32 * 1024;
/// Room reserved for a response head in the output buffer: a file's head (validators,
/// `Vary`, `Accept-Ranges`) is near 300 bytes, and outgrowing the room costs a copy.
const HEAD_ROOM: usize = 512;
/// Free space `read_buf` offers for the first read of a request head: most fit, as in
/// nginx's default `client_header_buffer_size`; a longer head grows the buffer by
/// [`READ_CHUNK`]. Small enough for the allocator's per-thread cache, and zeroed anew
/// for every request (the buffer is given back between requests).
const FIRST_READ: usize = 1024;
/// Free space `read_buf` offers once a request needs more (long heads, bodies).
const READ_CHUNK: usize = 16 * 1024;
/// How long a graceful shutdown waits for the first request of a connection accepted just
/// before it: that request is usually already on its way (a restart must not drop it).
const FRESH_CONNECTION_GRACE: Duration = Duration::from_millis(500);

/// What the transport should send next.
#[derive(Debug)]
pub enum Transmit<'a> {
    /// Bytes to write.
    Bytes(&'a [u8]),
    /// A file region to send (`sendfile` on plain TCP, read-and-write under TLS).
    File(&'a FileRegion),
}

/// Where the connection is in the request cycle.
#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading a request body before answering.
    Body {
        request: Box<Request>,
        /// The dynamic route its head chose, if any.
        routed: Routed,
        reader: BodyReader,
    },
    /// A job computes the answer; nothing more is read until it completes.
    Waiting { id: JobId, head_only: bool },
    /// The request is forwarded upstream; `reader` frames what is left of its body.
    Proxy {
        exchange: Box<Exchange>,
        reader: Option<BodyReader>,
    },
    /// A worker task started; its first answer is due at `until` (BEHAVIOUR.md: Workers › Actions).
    Delayed {
        until: Instant,
        route: Arc<WorkerRoute>,
        key: TaskKey,
        head_only: bool,
    },
    /// Nothing more is read; close once the output is flushed.
    Closing,
}

/// The request being answered: what its log record and CORS fields need.
#[derive(Debug)]
struct Current {
    line: String,
    method: &'static str,
    target: String,
    started: Instant,
    cors: Vec<(Cow<'static, str>, String)>,
    /// Whether the slow-request warning was given.
    reported_slow: bool,
}

/// What is queued for the wire.
#[derive(Debug)]
enum Out {
    Bytes { data: Vec<u8>, sent: usize },
    File(FileRegion),
}

/// What a request asks of its answer's representation, kept for compressing the answer.
#[derive(Debug, Clone, Default)]
struct Wanted {
    /// The codings it accepts.
    accept: AcceptEncoding,
    /// Its `If-None-Match`, on a GET or HEAD while compression is on.
    if_none_match: Option<TagList>,
}

impl Wanted {
    fn of(head: &RequestHead, settings: &Compression) -> Self {
        let safe = matches!(head.method(), Method::Get | Method::Head);
        Self {
            accept: AcceptEncoding::parse(head.field_str("accept-encoding")),
            if_none_match: head
                .field_str("if-none-match")
                .filter(|_| safe && settings.enabled)
                .map(TagList::parse),
        }
    }

    /// Compresses `response` as `plan` says. A coded answer whose tag the request's
    /// `If-None-Match` lists becomes a 304: the route could only compare the identity tag,
    /// the client holds the coded one (docs/BEHAVIOUR.md, "Compression").
    fn apply(&self, response: Response, plan: Plan, settings: &Compression) -> Response {
        let response = answer::apply(response, plan, settings);
        let (Plan::Encode(_), Some(TagList::Tags(held))) = (plan, &self.if_none_match) else {
            return response;
        };
        let is = |name: &str, wanted: &str| name.eq_ignore_ascii_case(wanted);
        let sent = response.fields.iter().find(|(n, _)| is(n, "etag"));
        let matched = sent.is_some_and(|(_, tag)| match TagList::parse(tag) {
            TagList::Tags(sent) => sent
                .first()
                .is_some_and(|s| held.iter().any(|h| h.opaque == s.opaque)),
            TagList::Any => false,
        });
        if !matched {
            return response;
        }
        let mut not_modified = Response::new(304, Body::Empty);
        not_modified.fields = response
            .fields
            .into_iter()
            .filter(|(n, _)| is(n, "etag") || is(n, "cache-control") || is(n, "vary"))
            .collect();
        not_modified
    }
}

/// A server-side HTTP/1.x connection. See the crate docs for the drain loop a transport
/// runs around it.
#[derive(Debug)]
pub struct Connection {
    server: Arc<Server>,
    peer: Arc<PeerInfo>,
    input: Vec<u8>,
    /// Bytes of `input` holding received data.
    filled: usize,
    /// Bytes of `input` already consumed.
    consumed: usize,
    scanner: HeadScanner,
    state: State,
    output: VecDeque<Out>,
    pending_output: usize,
    jobs: VecDeque<Job>,
    next_job: u64,
    date: DateCache,
    /// Keep the connection after the current response.
    keep_alive: bool,
    /// The last request was read whole and said it was the client's last (`Connection:
    /// close`, or HTTP/1.0 without keep-alive): closing needs no lingering.
    peer_done: bool,
    /// The request being answered is HTTP/1.0: a kept connection must say so.
    http10: bool,
    /// When the head being read received its first byte.
    head_started: Option<Instant>,
    /// The request being answered.
    current: Option<Current>,
    /// The last answered request's record, kept so the next one reuses its buffers.
    spare: Option<Current>,
    /// Last time bytes arrived or left.
    last_activity: Instant,
    /// When the connection was accepted.
    created: Instant,
    read_closed: bool,
    shutting_down: bool,
    /// Whether a response was ever queued (a fresh connection has none).
    served_any: bool,
    /// What the request being answered asks of its answer's representation.
    wanted: Wanted,
    /// What becomes of the upstream socket of the last exchange, until the transport
    /// takes it.
    released: Option<Release>,
}

impl Current {
    /// A request that failed before its head was parsed.
    fn unparsed(now: Instant) -> Self {
        Self {
            line: String::new(),
            method: "",
            target: String::new(),
            started: now,
            cors: Vec::new(),
            reported_slow: false,
        }
    }

    /// The record of a request whose head starts with `line` (no CRLF), reusing the
    /// buffers of `spare` when there is one.
    fn start(spare: Option<Self>, line: &[u8], started: Instant) -> Self {
        let mut current = spare.unwrap_or_else(|| Self::unparsed(started));
        current.line.clear();
        current.line.push_str(&String::from_utf8_lossy(line));
        current.method = "";
        current.target.clear();
        current.started = started;
        current.cors.clear();
        current.reported_slow = false;
        current
    }
}

impl Connection {
    /// A new connection accepted at `now`.
    pub fn new(server: Arc<Server>, peer: PeerInfo, now: Instant) -> Self {
        Self {
            server,
            peer: Arc::new(peer),
            input: Vec::new(),
            filled: 0,
            consumed: 0,
            scanner: HeadScanner::default(),
            state: State::Head,
            output: VecDeque::new(),
            pending_output: 0,
            jobs: VecDeque::new(),
            next_job: 0,
            date: DateCache::default(),
            keep_alive: true,
            peer_done: false,
            http10: false,
            head_started: None,
            current: None,
            spare: None,
            last_activity: now,
            created: now,
            read_closed: false,
            shutting_down: false,
            served_any: false,
            wanted: Wanted::default(),
            released: None,
        }
    }

    // ----- input -----

    /// A buffer to read socket bytes into; follow with [`commit`](Self::commit).
    /// Empty when the connection does not want input now.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        if self.consumed > 0 {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        let chunk = if self.filled == 0 && matches!(self.state, State::Head) {
            FIRST_READ
        } else {
            READ_CHUNK
        };
        // A buffer kept across reads (a body arriving) is offered whole.
        let want = (self.filled + chunk)
            .max(self.input.len())
            .min(self.input_capacity());
        if self.input.len() < want {
            self.input.resize(want, 0);
        }
        &mut self.input[self.filled..want]
    }

    /// Takes `n` bytes the transport wrote into [`read_buf`](Self::read_buf) and
    /// processes them.
    pub fn commit(&mut self, n: usize, now: Instant) {
        self.filled = (self.filled + n).min(self.input.len());
        if n > 0 {
            self.last_activity = now;
            if matches!(self.state, State::Head) && self.head_started.is_none() {
                self.head_started = Some(now);
            }
        }
        self.process(now);
    }

    /// Copies bytes in and processes them; returns how many were taken (fewer than
    /// `data.len()` when the connection is paused or its buffer is full).
    pub fn feed(&mut self, data: &[u8], now: Instant) -> usize {
        let mut taken = 0;
        while taken < data.len() {
            let buf = self.read_buf();
            let n = buf.len().min(data.len() - taken);
            if n == 0 {
                break;
            }
            buf[..n].copy_from_slice(&data[taken..taken + n]);
            self.commit(n, now);
            taken += n;
        }
        taken
    }

    /// The peer closed its sending side (a read returned 0).
    pub fn read_eof(&mut self, now: Instant) {
        self.read_closed = true;
        self.last_activity = now;
        self.keep_alive = false;
        // A half-closed peer still gets the answers queued and the answer to a complete
        // request being computed (a job, a worker start, a proxied request whose body was
        // all read); a request cut short is dropped.
        let complete = match &self.state {
            State::Waiting { .. } | State::Delayed { .. } => true,
            State::Proxy { reader, .. } => reader.is_none(),
            State::Head | State::Body { .. } | State::Closing => false,
        };
        if !complete {
            self.state = State::Closing;
        }
    }

    // ----- output -----

    /// The next thing to write, if any; after writing call
    /// [`transmitted`](Self::transmitted) with the bytes the socket took.
    pub fn poll_transmit(&self) -> Option<Transmit<'_>> {
        match self.output.front()? {
            Out::Bytes { data, sent } => Some(Transmit::Bytes(&data[*sent..])),
            Out::File(region) => Some(Transmit::File(region)),
        }
    }

    /// Records that `n` bytes of the current [`Transmit`] were written.
    pub fn transmitted(&mut self, mut n: usize, now: Instant) {
        if n > 0 {
            self.last_activity = now;
        }
        while n > 0 {
            let Some(front) = self.output.front_mut() else {
                break;
            };
            let done = match front {
                Out::Bytes { data, sent } => {
                    let take = n.min(data.len() - *sent);
                    *sent += take;
                    n -= take;
                    self.pending_output -= take;
                    *sent == data.len()
                }
                Out::File(region) => {
                    let take = (n as u64).min(region.len);
                    region.offset += take;
                    region.len -= take;
                    n -= take as usize;
                    self.pending_output -= take as usize;
                    region.len == 0
                }
            };
            if done {
                self.output.pop_front();
            }
        }
        // Output drained: requests that waited for room may proceed.
        self.process(now);
    }

    // ----- actions -----

    /// The next job to run; run it and pass its [`Completion`] to
    /// [`complete`](Self::complete).
    pub fn poll_job(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    /// Takes the result of a job handed out by [`poll_job`](Self::poll_job) and answers
    /// with it. A completion arriving after the connection gave up is dropped.
    pub fn complete(&mut self, completion: Completion, now: Instant) {
        let output = match completion.output {
            Output::Worker(done) => return self.server.record_worker(done, now),
            output => output,
        };
        let State::Waiting { id, head_only } = self.state else {
            return;
        };
        if id != completion.id {
            return;
        }
        match output {
            Output::Respond(response) => {
                self.state = State::Head;
                self.deliver(response, head_only, now);
                self.process(now);
            }
            Output::Started { route, key, job } => {
                let id = self.next_id();
                self.jobs.push_back(Job::background(id, job));
                self.state = State::Delayed {
                    until: now + START_WAIT,
                    route,
                    key,
                    head_only,
                };
            }
            Output::Worker(_) => {}
        }
    }

    fn next_id(&mut self) -> JobId {
        self.next_job += 1;
        JobId(self.next_job)
    }

    // ----- time -----

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let limits = &self.server.limits;
        if self.is_closed() {
            return None;
        }
        if !self.output.is_empty() {
            return Some(self.last_activity + limits.send_timeout);
        }
        match &self.state {
            State::Head => Some(match self.head_started {
                Some(start) => start + limits.header_timeout,
                None if self.shutting_down => self.created + FRESH_CONNECTION_GRACE,
                None => self.last_activity + limits.idle_timeout,
            }),
            State::Body { .. } => Some(self.last_activity + limits.body_timeout),
            State::Delayed { until, .. } => Some(*until),
            State::Proxy { exchange, .. } if exchange.is_tunnel() => {
                Some(self.last_activity + limits.tunnel_idle_timeout)
            }
            State::Proxy { .. } => Some(self.last_activity + limits.upstream_timeout),
            State::Waiting { .. } => match (&self.current, self.server.slow_threshold()) {
                (Some(c), Some(threshold)) if !c.reported_slow => Some(c.started + threshold),
                _ => None,
            },
            State::Closing => None,
        }
    }

    /// Applies the deadlines that passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        if !self.output.is_empty() {
            // The peer stopped reading: drop everything.
            self.output.clear();
            self.pending_output = 0;
            self.state = State::Closing;
            return;
        }
        match self.state {
            State::Proxy {
                ref mut exchange, ..
            } => {
                exchange.fail(ProxyFailure::Timeout, now);
                self.settle_upstream(now);
            }
            State::Delayed { .. } => self.answer_start(now),
            State::Waiting { .. } => self.report_slow(now),
            State::Head if self.head_started.is_some() => {
                self.refuse(HttpError::HeadTimeout, false, false, now)
            }
            State::Body { .. } => self.refuse(HttpError::BodyTimeout, false, false, now),
            _ => self.state = State::Closing,
        }
    }

    /// Answers a worker `start` once its wait is over.
    fn answer_start(&mut self, now: Instant) {
        let State::Delayed {
            route,
            key,
            head_only,
            ..
        } = std::mem::replace(&mut self.state, State::Head)
        else {
            return;
        };
        if route.is_remote() {
            // The answer needs a round trip to the store: it leaves as a job.
            let id = self.next_id();
            let work = Box::new(move || Output::Respond(route.answer_start(key, now)));
            self.jobs
                .push_back(Job::request(id, JobKind::Request, work));
            self.state = State::Waiting { id, head_only };
            return;
        }
        let response = route.answer_start(key, now);
        self.deliver(response, head_only, now);
        self.process(now);
    }

    /// Tells the log that the running request passed the slow threshold.
    fn report_slow(&mut self, now: Instant) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.reported_slow = true;
        if let Some(log) = self.server.request_log() {
            let elapsed = now.saturating_duration_since(current.started);
            log.slow(&SlowRequest {
                method: current.method,
                target: &current.target,
                elapsed,
                completed: false,
            });
        }
    }

    // ----- commands and state -----

    /// Starts a graceful close: the request in progress is answered, then the connection
    /// closes; an idle connection closes at once.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.keep_alive = false;
        // A job in flight keeps the connection open until it completes.
        if self.idle_at_shutdown(now) {
            self.state = State::Closing;
        }
        self.process(now);
    }

    /// During a shutdown, whether the connection waits for nothing: no request under way,
    /// and not so freshly accepted that its first request may still be arriving.
    fn idle_at_shutdown(&self, now: Instant) -> bool {
        let fresh = !self.served_any
            && now.saturating_duration_since(self.created) < FRESH_CONNECTION_GRACE;
        matches!(self.state, State::Head) && self.head_started.is_none() && !fresh
    }

    /// Whether the transport should read from the socket.
    pub fn wants_read(&self) -> bool {
        !self.read_closed
            && !matches!(
                self.state,
                State::Closing | State::Waiting { .. } | State::Delayed { .. }
            )
            && self.pending_output < self.server.limits.max_pending_output
            && self.filled - self.consumed < self.input_capacity()
    }

    /// Whether there is output waiting for the socket.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Whether closing should linger: send our FIN, then read until the peer's before
    /// closing. Closing while the peer may still send makes the kernel answer with a
    /// reset, which can destroy our last answer in flight; false only when the client
    /// announced its last request and everything it sent was read.
    pub fn needs_linger(&self) -> bool {
        !(self.peer_done && self.consumed == self.filled)
    }

    /// Whether the connection ends once its queued output is sent: the transport may hold
    /// the last bytes back to leave in one packet with its FIN (`MSG_MORE`).
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// Whether the connection is finished: the transport closes the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closing) && self.output.is_empty()
    }

    // ----- internals -----

    fn input_capacity(&self) -> usize {
        self.server.limits.max_head_size + READ_CHUNK
    }

    /// Runs the request cycle as far as the buffered input and output room allow.
    fn process(&mut self, now: Instant) {
        loop {
            let progressed = match self.state {
                State::Closing | State::Waiting { .. } | State::Delayed { .. } => false,
                State::Head => self.process_head(now),
                State::Body { .. } | State::Proxy { .. } => self.process_body(now),
            };
            if !progressed {
                break;
            }
        }
        if matches!(self.state, State::Head | State::Closing) && self.consumed == self.filled {
            // Between requests nothing is buffered: give the memory back, so idle
            // keep-alive connections cost little.
            self.input = Vec::new();
            self.filled = 0;
            self.consumed = 0;
        }
    }

    /// Tries to read one request head; returns whether anything changed.
    fn process_head(&mut self, now: Instant) -> bool {
        if self.pending_output >= self.server.limits.max_pending_output {
            return false; // answer what is queued before reading more requests
        }
        if self.consumed == self.filled {
            if self.shutting_down && self.idle_at_shutdown(now) {
                self.state = State::Closing;
            }
            return false;
        }
        if self.head_started.is_none() {
            self.head_started = Some(now);
        }
        let limits = &self.server.limits;
        let buf = &self.input[self.consumed..self.filled];
        let range = match self.scanner.scan(buf, limits) {
            Ok(Some(range)) => range,
            Ok(None) => return false,
            Err(e) => {
                self.refuse(e, false, false, now);
                return true;
            }
        };
        let parsed = RequestHead::parse(&buf[range.clone()], limits);
        let line_end = memchr::memchr(b'\r', buf).unwrap_or(0);
        let started = self.head_started.unwrap_or(now);
        self.current = Some(Current::start(self.spare.take(), &buf[..line_end], started));
        self.consumed += range.end;
        self.scanner = HeadScanner::default();
        self.head_started = None;
        match parsed {
            Ok(head) => self.begin(head, now),
            Err(e) => self.refuse(e, false, false, now),
        }
        true
    }

    /// Sets up body reading for a parsed head, or answers at once.
    fn begin(&mut self, head: RequestHead, now: Instant) {
        self.keep_alive = head.keep_alive() && !self.shutting_down;
        self.http10 = head.version() == Version::Http10;
        self.peer_done = false;
        let limits = &self.server.limits;
        let reader = match head.framing() {
            Framing::Length(n) if n > limits.max_body_size => {
                return self.refuse(HttpError::BodyTooLarge, false, false, now);
            }
            Framing::Length(left) => BodyReader::Length(left),
            Framing::Chunked => BodyReader::Chunked(ChunkedDecoder::default()),
        };
        if head.expects_continue() {
            self.push_bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if let Some(current) = self.current.as_mut() {
            current.method = match head.method() {
                Method::Get | Method::Head => "GET",
                Method::Post => "POST",
                Method::Put => "PUT",
                Method::Delete => "DELETE",
                Method::Options => "OPTIONS",
                Method::Other => "",
            };
            current.target.push_str(head.target());
            current.cors = self.server.cors_fields(&head);
        }
        if let Some((route, rest)) = self.server.proxy_for(&head) {
            let tunnel = match forward::upgrade_of(&head) {
                Some(_) => match self.server.tunnel_slot() {
                    Some(slot) => Some(slot),
                    None => {
                        let body_left = !matches!(reader, BodyReader::Length(0));
                        let full = HttpError::Refused {
                            status: 503,
                            message: "Too many tunnels".into(),
                        };
                        return self.refuse(full, body_left, false, now);
                    }
                },
                None => None,
            };
            let request = ProxyRequest {
                head: &head,
                rest,
                peer: &self.peer.addr,
                secure: self.peer.secure,
                debug: self.server.debug_proxy(),
                tunnel,
                max_head: self.server.limits.upstream_max_head,
            };
            let exchange = Exchange::new(route, request, now);
            let reader = (!exchange.request_done()).then_some(reader);
            self.state = State::Proxy {
                exchange: Box::new(exchange),
                reader,
            };
            return;
        }
        let (request, routed) = self.server.request(head, Arc::clone(&self.peer));
        if matches!(reader, BodyReader::Length(0)) {
            return self.answer(request, routed, now); // no body to read
        }
        self.state = State::Body {
            request: Box::new(request),
            routed,
            reader,
        };
    }

    /// Reads body bytes into the request, or frames them for the upstream while its
    /// buffer has room; returns whether anything changed.
    fn process_body(&mut self, now: Instant) -> bool {
        let limits = &self.server.limits;
        let buf = &self.input[self.consumed..self.filled];
        let (step, pushed) = match &mut self.state {
            State::Body {
                request, reader, ..
            } => match reader.step(buf, limits) {
                Ok(step) => {
                    let pushed = request.push_body(step.data);
                    (step, pushed)
                }
                Err(e) => {
                    self.refuse(e, false, false, now);
                    return true;
                }
            },
            State::Proxy {
                exchange,
                reader: Some(reader),
            } => {
                let room = exchange.room();
                if buf.is_empty() || room == 0 {
                    return false;
                }
                match reader.step(&buf[..buf.len().min(room)], limits) {
                    Ok(step) => {
                        exchange.push_body(step.data);
                        (step, Ok(()))
                    }
                    Err(e) => {
                        self.refuse(e, false, false, now);
                        return true;
                    }
                }
            }
            _ => return false,
        };
        let (used, done) = (step.consumed, step.done);
        self.consumed += used;
        if let Err(refusal) = pushed {
            // An upload refused mid-body (too large, malformed, disk full): the rest of the
            // body is not read, so the connection closes after the answer (even when the
            // rest happened to arrive already: the answer must not depend on how bytes split).
            self.refuse(refusal, true, false, now);
            return true;
        }
        match &mut self.state {
            State::Body { request, .. } if request.body_seen() > limits.max_body_size => {
                self.refuse(HttpError::BodyTooLarge, false, false, now);
                true
            }
            State::Body { .. } if done => {
                let State::Body {
                    request, routed, ..
                } = std::mem::replace(&mut self.state, State::Head)
                else {
                    return false;
                };
                self.answer(*request, routed, now);
                true
            }
            State::Proxy { exchange, reader } if done => {
                exchange.finish_body();
                *reader = None;
                true
            }
            _ => used > 0,
        }
    }

    /// Routes a complete request (the state is `Head` again): answers it at once, or
    /// starts the job that will.
    fn answer(&mut self, mut request: Request, routed: Routed, now: Instant) {
        let head_only = request.head.method() == Method::Head;
        self.peer_done = !request.head.keep_alive();
        if let Err(refusal) = request.finish_body() {
            return self.refuse(refusal, false, head_only, now);
        }
        let wall = self.server.wall_time(now);
        self.wanted = Wanted::of(&request.head, self.server.compression());
        match Server::dispatch(&self.server, request, routed, now, wall) {
            Dispatch::Respond(response) => self.deliver(response, head_only, now),
            Dispatch::Run(JobKind::Request, work) => {
                // Already off the event loop: compress the answer there too.
                let (wanted, settings) = (self.wanted.clone(), *self.server.compression());
                self.run(
                    JobKind::Request,
                    Box::new(move || match work() {
                        Output::Respond(response) => {
                            let plan = answer::plan(&response, &wanted.accept, &settings);
                            Output::Respond(wanted.apply(response, plan, &settings))
                        }
                        other => other,
                    }),
                    head_only,
                );
            }
            Dispatch::Run(kind, work) => self.run(kind, work, head_only),
        }
    }

    /// Hands `work` out as a job and waits for its answer.
    fn run(&mut self, kind: JobKind, work: Box<dyn FnOnce() -> Output + Send>, head_only: bool) {
        let id = self.next_id();
        self.jobs.push_back(Job::request(id, kind, work));
        self.state = State::Waiting { id, head_only };
    }

    /// Sends a route's answer, compressed when the request accepts it: on the spot when
    /// the body fits [`Compression::inline_max`](crate::coding::Compression), else in a
    /// job, so the event loop never compresses a large body.
    fn deliver(&mut self, response: Response, head_only: bool, now: Instant) {
        let settings = *self.server.compression();
        match answer::plan(&response, &self.wanted.accept, &settings) {
            Plan::Encode(coding) if response.body.len() > settings.inline_max => {
                let wanted = self.wanted.clone();
                let work = move || {
                    Output::Respond(wanted.apply(response, Plan::Encode(coding), &settings))
                };
                self.run(JobKind::Request, Box::new(work), head_only);
            }
            plan => {
                let response = self.wanted.apply(response, plan, &settings);
                self.send(response, head_only, now);
            }
        }
    }

    // ----- upstream (proxy) -----

    /// The upstream side of the proxied request in progress (or of the last one, until
    /// the transport took its socket's [`Release`]), with its own verbs; `None` otherwise:
    /// the transport then closes any upstream socket it still holds.
    pub fn upstream(&mut self) -> Option<Upstream<'_>> {
        if matches!(self.state, State::Proxy { .. }) || self.released.is_some() {
            Some(Upstream::new(self))
        } else {
            None
        }
    }

    /// Queues what the upstream produced; ends the exchange once it is over, else lets
    /// more of the request body in.
    fn settle_upstream(&mut self, now: Instant) {
        let State::Proxy { exchange, .. } = &mut self.state else {
            return;
        };
        let relayed = exchange.take_relayed();
        if relayed.tunnel {
            // From now on the client's bytes go upstream as they are, until a close.
            if let State::Proxy { reader, .. } = &mut self.state {
                *reader = Some(BodyReader::UntilClose);
            }
        }
        if let Some(log) = self.server.request_log() {
            for note in &relayed.notes {
                log.note(note);
            }
        }
        if let Some((status, size)) = relayed.head {
            if relayed.close {
                self.keep_alive = false;
            }
            if let Some(current) = self.current.take() {
                self.log_status(&current, status, None, size, now);
                self.spare = Some(current);
            }
        }
        self.push_bytes(&relayed.bytes);
        match relayed.end {
            Some(outcome) => self.end_proxy(outcome, now),
            None => self.process(now),
        }
    }

    /// Leaves the proxy state: after a complete response the connection goes on (when its
    /// framing allows); a failure before the head answers 502/504, after it closes.
    fn end_proxy(&mut self, outcome: Result<(), ProxyFailure>, now: Instant) {
        let State::Proxy { exchange, reader } = std::mem::replace(&mut self.state, State::Head)
        else {
            return;
        };
        let body_left = reader.is_some();
        self.released = Some(exchange.release());
        match outcome {
            Ok(()) if !body_left => {}
            Ok(()) => self.keep_alive = false,
            Err(failure) if exchange.awaiting_head() => {
                self.refuse(failure.into(), body_left, exchange.head_only(), now);
            }
            Err(_) => self.keep_alive = false,
        }
        if !self.keep_alive {
            self.state = State::Closing;
        }
        self.process(now);
    }

    /// Answers a refusal. The connection closes when the refusal says its framing is
    /// lost, or when `body_left`: the request's body was not read to its end.
    fn refuse(&mut self, error: HttpError, body_left: bool, head_only: bool, now: Instant) {
        if error.must_close() || body_left {
            self.keep_alive = false;
            self.peer_done = false;
        }
        self.send(error.response(), head_only, now);
    }

    /// Queues a response; closes afterwards unless keep-alive holds.
    fn send(&mut self, mut response: Response, head_only: bool, now: Instant) {
        let close = !self.keep_alive;
        self.served_any = true;
        if self.output.is_empty() {
            // The send deadline counts from when output starts waiting.
            self.last_activity = now;
        }
        if let Some(mut current) = self.current.take() {
            if !current.cors.is_empty() {
                response.fields.splice(0..0, current.cors.drain(..));
            }
            self.log(&current, &response, now);
            self.spare = Some(current);
        } else {
            self.log(&Current::unparsed(now), &response, now);
        }
        let with_body = response.has_content() && !head_only;
        let inline_len = match &response.body {
            Body::Bytes(bytes) => bytes.len(),
            Body::CachedFile(bytes) => bytes.len(),
            Body::File(region) if region.len <= INLINE_FILE_MAX => region.len as usize,
            Body::Parts(parts) => parts
                .iter()
                .map(|part| match part {
                    BodyPart::Bytes(bytes) => bytes.len(),
                    BodyPart::File(region) if region.len <= INLINE_FILE_MAX => region.len as usize,
                    BodyPart::File(_) => 0,
                })
                .sum(),
            _ => 0,
        };
        // Head and body go into the bytes at the back of the queue (pipelined answers
        // share a write), or into a new buffer sized for both.
        let (mut out, sent) = match self.output.pop_back() {
            Some(Out::Bytes { data, sent }) => (data, sent),
            other => {
                self.output.extend(other);
                (Vec::new(), 0)
            }
        };
        let before = out.len();
        out.reserve(HEAD_ROOM + if with_body { inline_len } else { 0 });
        let date = self.date.get(self.server.wall_time(now));
        let persistence = match (close, self.http10) {
            (true, _) => Persistence::Close,
            (false, true) => Persistence::KeepAlive,
            (false, false) => Persistence::Implied,
        };
        response::write_head(
            &mut out,
            &response,
            self.server.server_header(),
            date,
            persistence,
        );
        self.pending_output += out.len() - before;
        self.output.push_back(Out::Bytes { data: out, sent });
        if with_body {
            match response.body {
                Body::Empty => {}
                Body::Bytes(bytes) => self.push_bytes(&bytes),
                Body::CachedFile(bytes) => self.push_bytes(&bytes),
                Body::File(region) => self.push_region(region),
                Body::Parts(parts) => {
                    for part in parts {
                        match part {
                            BodyPart::Bytes(bytes) => self.push_bytes(&bytes),
                            BodyPart::File(region) => self.push_region(region),
                        }
                    }
                }
            }
        }
        if close {
            self.state = State::Closing;
        }
    }

    /// Reports an answered request (and a slow one's completion) to the server's log.
    fn log(&self, current: &Current, response: &Response, now: Instant) {
        let size = match &response.body {
            Body::File(region) => Some(region.file.metadata().len),
            Body::Parts(parts) => parts.iter().find_map(|part| match part {
                BodyPart::File(region) => Some(region.file.metadata().len),
                BodyPart::Bytes(_) => None,
            }),
            Body::CachedFile(bytes) => Some(bytes.len() as u64),
            _ => None,
        };
        let page = response
            .fields
            .iter()
            .any(|(n, v)| n == "Content-Type" && v == response::ERROR_PAGE_TYPE);
        let message = if page {
            response.reason.as_deref()
        } else {
            None
        };
        self.log_status(current, response.status, message, size, now);
    }

    /// Reports one answer (status, error-page message, known size) to the server's log.
    fn log_status(
        &self,
        current: &Current,
        status: u16,
        message: Option<&str>,
        size: Option<u64>,
        now: Instant,
    ) {
        let Some(log) = self.server.request_log() else {
            return;
        };
        let elapsed = now.saturating_duration_since(current.started);
        if current.reported_slow {
            log.slow(&SlowRequest {
                method: current.method,
                target: &current.target,
                elapsed,
                completed: true,
            });
        }
        log.request(&RequestRecord {
            peer: &self.peer.addr,
            request_line: &current.line,
            status,
            message,
            size,
            elapsed,
            wall: self.server.wall_time(now),
        });
    }

    /// Queues a file region: a small one is read into the queued bytes (one write with
    /// the head), a larger one or one that cannot be read whole goes as a region.
    fn push_region(&mut self, region: FileRegion) {
        if region.len == 0 {
            return;
        }
        if region.len <= INLINE_FILE_MAX {
            if let Some(Out::Bytes { data, .. }) = self.output.back_mut() {
                let before = data.len();
                if read_inline(&region, data) {
                    self.pending_output += data.len() - before;
                    return;
                }
            }
        }
        self.pending_output += usize::try_from(region.len).unwrap_or(usize::MAX);
        self.output.push_back(Out::File(region));
    }

    /// Queues bytes, coalescing with queued bytes so pipelined answers share a write.
    fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pending_output += bytes.len();
        if let Some(Out::Bytes { data, .. }) = self.output.back_mut() {
            data.extend_from_slice(bytes);
        } else {
            self.output.push_back(Out::Bytes {
                data: bytes.to_vec(),
                sent: 0,
            });
        }
    }
}

/// Appends a small file region to `out`; false (and `out` unchanged) if the file could
/// not be read whole.
fn read_inline(region: &FileRegion, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let Ok(len) = usize::try_from(region.len) else {
        return false;
    };
    out.resize(start + len, 0);
    let mut done = 0;
    while done < len {
        let offset = region.offset + done as u64;
        match out
            .get_mut(start + done..)
            .map(|buf| region.file.read_at(buf, offset))
        {
            Some(Ok(n)) if n > 0 => done += n,
            _ => {
                out.truncate(start);
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::fs::MemoryFs;
    use crate::limits::Limits;

    const BIG: usize = 100_000;

    fn server_with(limits: Limits) -> Arc<Server> {
        let mut fs = MemoryFs::new();
        fs.insert("/www/a.txt", "hello", SystemTime::UNIX_EPOCH);
        fs.insert("/www/big.bin", vec![7u8; BIG], SystemTime::UNIX_EPOCH);
        let mut builder =
            Server::builder_with_fs((Instant::now(), SystemTime::UNIX_EPOCH), Arc::new(fs));
        builder.limits(limits);
        builder.files().bind_path("/", "/www").unwrap();
        builder.build()
    }

    fn conn() -> (Connection, Instant) {
        let now = Instant::now();
        (
            Connection::new(server_with(Limits::default()), PeerInfo::default(), now),
            now,
        )
    }

    /// Writes everything the connection has queued, file regions included.
    fn drain(conn: &mut Connection, now: Instant) -> Vec<u8> {
        let mut wire = Vec::new();
        loop {
            let n = match conn.poll_transmit() {
                None => break,
                Some(Transmit::Bytes(b)) => {
                    wire.extend_from_slice(b);
                    b.len()
                }
                Some(Transmit::File(region)) => {
                    let mut buf = vec![0; region.len.min(8192) as usize];
                    let n = region.file.read_at(&mut buf, region.offset).unwrap();
                    wire.extend_from_slice(&buf[..n]);
                    n
                }
            };
            conn.transmitted(n, now);
        }
        wire
    }

    fn exchange(conn: &mut Connection, input: &[u8], now: Instant) -> String {
        assert_eq!(conn.feed(input, now), input.len());
        String::from_utf8_lossy(&drain(conn, now)).into_owned()
    }

    fn statuses(wire: &str) -> Vec<&str> {
        wire.match_indices("HTTP/1.1 ")
            .map(|(i, _)| &wire[i + 9..i + 12])
            .collect()
    }

    #[test]
    fn serves_a_file_and_keeps_alive() {
        let (mut c, now) = conn();
        let wire = exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(
            wire.starts_with("HTTP/1.1 200 OK\r\nServer: QuickServer/"),
            "{wire}"
        );
        assert!(wire.contains("\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
        assert!(wire.contains("\r\nContent-Length: 5\r\n"));
        assert!(wire.ends_with("\r\n\r\nhello"));
        assert!(!c.is_closed() && c.wants_read());
    }

    #[test]
    fn a_head_is_read_small_and_a_body_in_large_pieces() {
        let (mut c, now) = conn();
        assert_eq!(c.read_buf().len(), FIRST_READ, "a new head");
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
        c.read_buf()[..head.len()].copy_from_slice(head);
        c.commit(head.len(), now);
        for _ in 0..3 {
            let room = c.read_buf().len();
            assert!(room >= READ_CHUNK, "a body read offers {room} bytes");
            c.commit(room, now); // body bytes, dropped as they arrive
        }
    }

    #[test]
    fn idle_connections_hold_no_input_buffer() {
        let (mut c, now) = conn();
        exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert_eq!(c.input.capacity(), 0);
        exchange(&mut c, b"GET /a.txt HTT", now);
        assert!(c.input.capacity() > 0, "a partial head is kept");
    }

    #[test]
    fn cached_files_answer_like_fresh_ones() {
        // The wall clock is an hour after the file changed: it is cached on first use.
        let mut fs = MemoryFs::new();
        fs.insert("/www/a.txt", "hello", SystemTime::UNIX_EPOCH);
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(3600);
        let mut builder = Server::builder_with_fs((now, wall), Arc::new(fs));
        builder.files().bind_path("/", "/www").unwrap();
        let mut c = Connection::new(builder.build(), PeerInfo::default(), now);
        let get = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
        let wire = exchange(
            &mut c,
            format!("{get}{get}HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            now,
        );
        let answers: Vec<&str> = wire.split_inclusive("hello").collect();
        assert_eq!(answers.len(), 3, "{wire}");
        assert_eq!(answers[0], answers[1], "the hit equals the miss");
        assert!(answers[0].starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(answers[0].ends_with("Accept-Ranges: bytes\r\nContent-Length: 5\r\n\r\nhello"));
        assert_eq!(
            answers[2],
            answers[0].strip_suffix("hello").unwrap(),
            "HEAD from the cache: same head, no body"
        );
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let (mut c, now) = conn();
        let wire = exchange(
            &mut c,
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
            now,
        );
        assert_eq!(statuses(&wire), ["200", "404", "200"]);
        assert!(
            wire.ends_with("Accept-Ranges: bytes\r\nContent-Length: 5\r\n\r\n"),
            "HEAD has no body"
        );
    }

    #[test]
    fn any_split_gives_the_same_answers() {
        let input: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nPOST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let (mut whole, now) = conn();
        let expected = exchange(&mut whole, input, now);
        assert_eq!(statuses(&expected), ["200", "404", "200"]);
        for split in 1..input.len() {
            let (mut c, now) = conn();
            let mut wire = exchange(&mut c, &input[..split], now);
            wire += &exchange(&mut c, &input[split..], now);
            assert_eq!(wire, expected, "split at {split}");
            assert!(c.is_closed());
        }
    }

    #[test]
    fn persistence_follows_version_and_connection_field() {
        let (mut c, now) = conn();
        let wire = exchange(&mut c, b"GET /a.txt HTTP/1.0\r\n\r\n", now);
        assert!(wire.contains("Connection: close") && c.is_closed());
        let (mut c, now) = conn();
        let wire = exchange(
            &mut c,
            b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            now,
        );
        assert!(!c.is_closed());
        assert!(wire.contains("\r\nConnection: keep-alive\r\n"), "{wire}");
        // A 1.1 request on the same connection relies on the default again.
        let wire = exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(!wire.contains("Connection:"), "{wire}");
        let (mut c, now) = conn();
        exchange(
            &mut c,
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            now,
        );
        assert!(c.is_closed());
    }

    #[test]
    fn a_kept_http10_connection_says_keep_alive_until_it_closes() {
        let (mut c, now) = conn();
        let input: &[u8] = b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
            GET /missing HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n\
            GET /a.txt HTTP/1.0\r\n\r\n";
        let wire = exchange(&mut c, input, now);
        let heads: Vec<&str> = wire
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.split("\r\n\r\n").next().unwrap_or(""))
            .collect();
        assert_eq!(heads.len(), 3, "{wire}");
        assert!(heads[0].contains("Connection: keep-alive"), "{wire}");
        assert!(heads[1].starts_with("404") && heads[1].contains("Connection: keep-alive"));
        assert!(heads[2].contains("Connection: close") && !heads[2].contains("keep-alive"));
        assert!(c.is_closed());
    }

    #[test]
    fn lingering_is_skipped_only_after_the_clients_announced_last_request() {
        let cases: [(&[u8], bool); 5] = [
            // The client said it was its last request and sent nothing more.
            (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
            (b"GET /a.txt HTTP/1.0\r\n\r\n", false),
            // Bytes after it were not read: closing now would reset.
            (b"GET /a.txt HTTP/1.0\r\n\r\nGET /a.txt HTTP/1.0\r\n\r\n", true),
            // We close on our own: the client may be sending.
            (b"GET / HTTP/1.1\nHost: x\n\n", true),
            (b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true),
        ];
        for (input, linger) in cases {
            let (mut c, now) = conn();
            exchange(&mut c, input, now);
            assert!(c.is_closed(), "{}", String::from_utf8_lossy(input));
            assert_eq!(
                c.needs_linger(),
                linger,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let (mut c, now) = conn();
        exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(!c.is_closing(), "kept alive");
        c.feed(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            now,
        );
        assert!(
            c.is_closing() && !c.is_closed(),
            "its answer is still queued"
        );
        let (mut c, now) = conn();
        exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        c.shutdown(now);
        assert!(
            c.is_closed() && c.needs_linger(),
            "a shutdown closes a kept-alive client"
        );
    }

    #[test]
    fn framing_errors_answer_and_close() {
        for (input, status) in [
            (&b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..], "400"),
            (b"GET / HTTP/1.1\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\nHost: x\n\n", "400"),
            (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", "505"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400"),
        ] {
            let (mut c, now) = conn();
            let wire = exchange(&mut c, input, now);
            assert_eq!(statuses(&wire), [status], "{}", String::from_utf8_lossy(input));
            assert!(wire.contains("Connection: close"));
            assert!(c.is_closed());
        }
    }

    #[test]
    fn an_unmet_expectation_answers_417_and_closes() {
        let (mut c, now) = conn();
        let wire = exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert_eq!(statuses(&wire), ["417"]);
        assert!(wire.contains("Connection: close"));
        assert!(c.is_closed());
    }

    #[test]
    fn unsupported_method_keeps_the_connection() {
        let (mut c, now) = conn();
        let wire = exchange(&mut c, b"BREW /pot HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert_eq!(statuses(&wire), ["501", "200"]);
        assert!(wire.contains("HTTP/1.1 501 Unsupported method ('BREW')"));
    }

    #[test]
    fn expect_continue_gets_an_interim_response() {
        let (mut c, now) = conn();
        let wire = exchange(
            &mut c,
            b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            now,
        );
        assert_eq!(wire, "HTTP/1.1 100 Continue\r\n\r\n");
        let wire = exchange(&mut c, b"ab", now);
        assert_eq!(statuses(&wire), ["404"]);
    }

    #[test]
    fn size_limits() {
        let limits = Limits::default();
        let (mut c, now) = conn();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(limits.max_request_line));
        assert_eq!(statuses(&exchange(&mut c, long.as_bytes(), now)), ["414"]);
        let (mut c, now) = conn();
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n",
            "a".repeat(limits.max_head_size)
        );
        c.feed(big.as_bytes(), now);
        assert_eq!(
            statuses(&String::from_utf8_lossy(&drain(&mut c, now))),
            ["431"]
        );
        let (mut c, now) = conn();
        let req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            limits.max_body_size + 1
        );
        assert_eq!(statuses(&exchange(&mut c, req.as_bytes(), now)), ["413"]);
        assert!(c.is_closed());
    }

    #[test]
    fn chunked_body_limit() {
        let limits = Limits {
            max_body_size: 10,
            ..Limits::default()
        };
        let now = Instant::now();
        let mut c = Connection::new(server_with(limits), PeerInfo::default(), now);
        let wire = exchange(&mut c, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n", now);
        assert_eq!(statuses(&wire), ["413"]);
        assert!(c.is_closed());
    }

    #[test]
    fn header_deadline_counts_from_the_first_byte() {
        let (mut c, now) = conn();
        let limits = Limits::default();
        let later = now + Duration::from_secs(5);
        exchange(&mut c, b"GET / HT", later);
        assert_eq!(c.poll_timeout(), Some(later + limits.header_timeout));
        // Dribbling more bytes does not move the deadline.
        exchange(&mut c, b"TP/1.1\r\n", later + Duration::from_secs(9));
        c.handle_timeout(later + limits.header_timeout);
        assert_eq!(
            statuses(&String::from_utf8_lossy(&drain(&mut c, now))),
            ["408"]
        );
        assert!(c.is_closed());
    }

    #[test]
    fn idle_and_body_timeouts() {
        let limits = Limits::default();
        let (mut c, now) = conn();
        assert_eq!(c.poll_timeout(), Some(now + limits.idle_timeout));
        c.handle_timeout(now + limits.idle_timeout);
        assert!(c.is_closed());
        assert!(drain(&mut c, now).is_empty(), "idle close sends nothing");

        let (mut c, now) = conn();
        exchange(
            &mut c,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
            now,
        );
        assert_eq!(c.poll_timeout(), Some(now + limits.body_timeout));
        c.handle_timeout(now + limits.body_timeout);
        assert_eq!(
            statuses(&String::from_utf8_lossy(&drain(&mut c, now))),
            ["408"]
        );
    }

    #[test]
    fn send_timeout_drops_a_peer_that_stopped_reading() {
        let (mut c, now) = conn();
        c.feed(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(c.wants_write());
        let deadline = now + Limits::default().send_timeout;
        assert_eq!(c.poll_timeout(), Some(deadline));
        c.handle_timeout(deadline);
        assert!(c.is_closed() && c.poll_transmit().is_none());
    }

    #[test]
    fn large_files_leave_as_regions() {
        let (mut c, now) = conn();
        c.feed(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(matches!(c.poll_transmit(), Some(Transmit::Bytes(_))));
        let Some(Transmit::Bytes(head)) = c.poll_transmit() else {
            unreachable!()
        };
        let n = head.len();
        c.transmitted(n, now);
        let Some(Transmit::File(region)) = c.poll_transmit() else {
            panic!("file region")
        };
        assert_eq!((region.offset, region.len), (0, BIG as u64));
        let wire = drain(&mut c, now);
        assert_eq!(wire.len(), BIG);
    }

    #[test]
    fn byteranges_of_a_large_file_leave_as_regions_between_part_headers() {
        let (mut c, now) = conn();
        c.feed(
            b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-39999,-50000\r\n\r\n",
            now,
        );
        let mut kinds = Vec::new();
        let mut wire = Vec::new();
        while let Some(transmit) = c.poll_transmit() {
            let n = match transmit {
                Transmit::Bytes(b) => {
                    kinds.push(format!("bytes {}", b.len()));
                    wire.extend_from_slice(b);
                    b.len()
                }
                Transmit::File(region) => {
                    kinds.push(format!("file {}+{}", region.offset, region.len));
                    let mut buf = vec![0; region.len as usize];
                    let n = region.file.read_at(&mut buf, region.offset).unwrap();
                    wire.extend_from_slice(&buf[..n]);
                    n
                }
            };
            c.transmitted(n, now);
        }
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!(kinds[1] == "file 0+40000" && kinds[3] == "file 50000+50000");
        let wire = String::from_utf8_lossy(&wire);
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
            "{head}"
        );
        let length: usize = head
            .split("\r\nContent-Length: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(length, body.len());
        assert!(body.contains("Content-Range: bytes 0-39999/100000\r\n\r\n"));
        assert!(body.contains("Content-Range: bytes 50000-99999/100000\r\n\r\n"));
    }

    #[test]
    fn backpressure_stops_reading_new_requests() {
        let (mut c, now) = conn();
        let req = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut fed = 0;
        while c.wants_read() && fed < 100 {
            c.feed(req, now);
            fed += 1;
        }
        assert!(fed < 100, "reading stops once output is pending");
        assert!(c.pending_output >= Limits::default().max_pending_output);
        drain(&mut c, now);
        assert!(c.wants_read());
    }

    #[test]
    fn eof_mid_request_closes_without_answer() {
        let (mut c, now) = conn();
        exchange(&mut c, b"GET /a.txt HTT", now);
        c.read_eof(now);
        assert!(c.is_closed());
        let (mut c, now) = conn();
        c.feed(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        c.read_eof(now);
        assert!(
            !c.is_closed(),
            "a half-closed peer still gets queued answers"
        );
        drain(&mut c, now);
        assert!(c.is_closed());
    }

    #[test]
    fn half_closed_peer_still_gets_a_computed_answer() {
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder.route(
            crate::Method::Get,
            "/job",
            None,
            Arc::new(|_: &Request, _: &mut crate::dynamic::Args| Response::new(200, Body::Empty)),
        );
        let mut c = Connection::new(builder.build(), PeerInfo::default(), now);
        c.feed(b"GET /job HTTP/1.1\r\nHost: x\r\n\r\n", now);
        c.read_eof(now);
        let job = c.poll_job().expect("the request is complete");
        c.complete(job.run(), now);
        let wire = String::from_utf8_lossy(&drain(&mut c, now)).into_owned();
        assert!(
            wire.starts_with("HTTP/1.1 200 OK") && wire.contains("Connection: close"),
            "{wire}"
        );
        assert!(c.is_closed());
    }

    #[test]
    fn an_inline_answer_is_compressed_on_the_spot_only_within_the_budget() {
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder.compression(crate::coding::Compression::on());
        for (mask, len) in [("/small", 10_000), ("/big", 200_000)] {
            builder.route_inline(
                crate::Method::Get,
                mask,
                None,
                Arc::new(move |_: &Request, _: &mut crate::dynamic::Args| {
                    Response::new(200, Body::Bytes(vec![b'a'; len]))
                        .with_field("Content-Type", "text/plain")
                }),
            );
        }
        let mut c = Connection::new(builder.build(), PeerInfo::default(), now);
        // Only the answer past `inline_max` (64 KiB) leaves as a job of its own.
        for (target, jobs) in [("/small", 0), ("/big", 1)] {
            let request =
                format!("GET {target} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
            c.feed(request.as_bytes(), now);
            let handler = c.poll_job().expect("the inline handler");
            assert_eq!(handler.kind(), JobKind::Inline);
            c.complete(handler.run(), now);
            let compressing: Vec<Job> = std::iter::from_fn(|| c.poll_job()).collect();
            assert_eq!(compressing.len(), jobs, "{target}");
            for job in compressing {
                assert_eq!(job.kind(), JobKind::Request, "off the event loop");
                c.complete(job.run(), now);
            }
            let wire = String::from_utf8_lossy(&drain(&mut c, now)).into_owned();
            assert!(wire.contains("\r\nContent-Encoding: gzip\r\n"), "{wire}");
            assert!(wire.contains("\r\nVary: Accept-Encoding\r\n"));
            assert!(wire.len() < 2_000, "{target} compressed");
        }
    }

    #[test]
    fn shutdown_finishes_the_current_request() {
        let (mut c, now) = conn();
        exchange(
            &mut c,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\na",
            now,
        );
        c.shutdown(now);
        assert!(!c.is_closed());
        let wire = exchange(&mut c, b"b", now);
        assert_eq!(statuses(&wire), ["404"]);
        assert!(wire.contains("Connection: close"));
        assert!(c.is_closed());
        let (mut c, now) = conn();
        exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        c.shutdown(now);
        assert!(
            c.is_closed(),
            "an idle keep-alive connection closes at once"
        );
    }

    #[test]
    fn shutdown_waits_briefly_for_the_first_request_of_a_fresh_connection() {
        let (mut c, now) = conn();
        c.shutdown(now);
        assert!(!c.is_closed(), "its request may be on its way");
        let wire = exchange(&mut c, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(wire.starts_with("HTTP/1.1 200") && wire.contains("Connection: close"));
        assert!(c.is_closed());
        let (mut c, now) = conn();
        c.shutdown(now);
        let deadline = c.poll_timeout().expect("the grace has an end");
        assert_eq!(deadline, now + FRESH_CONNECTION_GRACE);
        c.handle_timeout(deadline);
        assert!(c.is_closed() && c.poll_transmit().is_none());
    }
}
