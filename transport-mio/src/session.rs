//! One accepted connection as the event loop holds it: socket, HTTP state machine,
//! optional TLS, the upstream socket of a proxied request, and the drain loop that runs
//! after every event.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry};
use quick_server_core::proxy::Release;
use quick_server_core::{Completion, Connection, JobKind};

use crate::plain;
use crate::pool::Jobs;
use crate::slab::{Key, Side};
use crate::socket::Socket;
use crate::timers::TimerSlot;
use crate::tls::Tls;
use crate::upstream::{Link, Pool, Upstream};

use quick_server_core::wire::{LINGER_BYTES, LINGER_TIME};

/// What the loop lends a session for one drive.
pub(crate) struct Context<'a> {
    /// A buffer for file bytes and discarded input, shared by all sessions.
    pub(crate) scratch: &'a mut [u8],
    /// Where jobs (and upstream host lookups) run.
    pub(crate) jobs: &'a Jobs,
    /// Where upstream sockets are registered.
    pub(crate) registry: &'a Registry,
    /// The loop's idle upstream connections.
    pub(crate) pool: &'a mut Pool,
    /// How `https://` upstreams are verified.
    pub(crate) upstream_tls: Option<&'a Arc<rustls::ClientConfig>>,
}

/// What the loop does with a session after driving it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it: register these interests, wake it at this deadline.
    Keep {
        /// Readiness to wait for.
        interest: Interest,
        /// When to call [`Session::timeout`].
        deadline: Option<Instant>,
    },
    /// Drop it (closes the socket).
    Close,
}

/// Where the session is in its life.
#[derive(Debug)]
enum Phase {
    /// Serving HTTP.
    Serving,
    /// Our side is shut down; reading and discarding until the peer's FIN, `until` or
    /// [`LINGER_BYTES`], so unread client bytes do not reset our last answer.
    Lingering { until: Instant, discarded: usize },
}

/// One accepted connection.
#[derive(Debug)]
pub(crate) struct Session {
    socket: Socket,
    conn: Connection,
    tls: Option<Box<Tls>>,
    /// The upstream of the proxied request in progress.
    upstream: Option<Upstream>,
    /// Upstream connections started so far (names the current one's host lookup).
    upstream_attempts: u64,
    phase: Phase,
    /// When our last byte left (bounds the lingering close).
    last_write: Instant,
    /// The interests registered with the poller; `None` until the session first waits.
    pub(crate) interest: Option<Interest>,
    /// This session's entry in the loop's timers.
    pub(crate) timer: TimerSlot,
    /// It only answers 503 (it is over the connection limit).
    pub(crate) refused: bool,
}

impl Session {
    /// A session for an accepted stream, not yet registered with the poller.
    pub(crate) fn new(
        stream: TcpStream,
        conn: Connection,
        tls: Option<Box<Tls>>,
        now: Instant,
    ) -> Self {
        Self {
            socket: Socket::new(stream),
            conn,
            tls,
            upstream: None,
            upstream_attempts: 0,
            phase: Phase::Serving,
            last_write: now,
            interest: None,
            timer: TimerSlot::default(),
            refused: false,
        }
    }

    /// A session over the connection limit: the TLS handshake runs, `answer` goes out,
    /// and the connection closes without reading a request.
    pub(crate) fn refusing(
        stream: TcpStream,
        mut conn: Connection,
        mut tls: Box<Tls>,
        answer: &[u8],
        now: Instant,
    ) -> io::Result<Self> {
        tls.refuse(answer)?;
        conn.shutdown(now);
        let mut session = Self::new(stream, conn, Some(tls), now);
        session.refused = true;
        Ok(session)
    }

    /// The stream, to (re-)register it.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        self.socket.stream_mut()
    }

    /// Records a readiness event of the client socket or of the upstream socket.
    pub(crate) fn on_ready(&mut self, event: &Event, side: Side) {
        match side {
            Side::Client => self.socket.on_ready(event),
            Side::Upstream => {
                if let Some(upstream) = &mut self.upstream {
                    upstream.on_ready(event);
                }
            }
        }
    }

    /// Takes the addresses looked up for upstream attempt `id`.
    pub(crate) fn resolved(&mut self, id: u64, addrs: io::Result<Vec<SocketAddr>>) {
        if let Some(upstream) = &mut self.upstream {
            upstream.resolved(id, addrs);
        }
    }

    /// Hands a finished job to the connection.
    pub(crate) fn complete(&mut self, completion: Completion, now: Instant) {
        self.conn.complete(completion, now);
    }

    /// Starts a graceful close (server shutdown).
    pub(crate) fn shutdown(&mut self, now: Instant) {
        self.conn.shutdown(now);
    }

    /// The deadline passed: false if the session must be dropped now.
    pub(crate) fn timeout(&mut self, now: Instant) -> bool {
        if let Phase::Lingering { until, .. } = self.phase {
            return now < until;
        }
        if let Some(tls) = &self.tls {
            if tls.handshake_deadline().is_some_and(|at| at <= now) {
                return false; // garbage or stalled handshake
            }
            if self.conn.is_closed() && self.last_write + LINGER_TIME <= now {
                return false; // the peer stopped taking our last records
            }
        }
        self.conn.handle_timeout(now);
        true
    }

    /// The drain loop, run after every input: reads what the socket and the connection
    /// allow, starts every job, writes until done or blocked, and repeats while anything
    /// moved; then says which interests and deadline to arm, or to close.
    pub(crate) fn drive(&mut self, key: Key, cx: &mut Context<'_>, now: Instant) -> Next {
        if let Phase::Lingering { .. } = self.phase {
            return self.linger(cx.scratch);
        }
        if self.pump(key, cx, now).is_err() {
            return Next::Close;
        }
        if self.socket.take_wrote() {
            self.last_write = now;
        }
        let flushing = self.tls.as_ref().is_some_and(|tls| tls.holds_output());
        if self.conn.is_closed() && !flushing {
            return self.start_linger(cx.scratch, now);
        }
        Next::Keep {
            interest: self.interest_wanted(),
            deadline: self.deadline(),
        }
    }

    /// Input, jobs, upstream and output until nothing moves; an error of the client
    /// socket ends the connection (one of the upstream socket goes to the core).
    fn pump(&mut self, key: Key, cx: &mut Context<'_>, now: Instant) -> io::Result<()> {
        loop {
            let mut moved = match &mut self.tls {
                None => plain::read_input(&mut self.socket, &mut self.conn, now)?,
                Some(tls) => tls.read_input(&mut self.socket, &mut self.conn, now)?,
            };
            while let Some(job) = self.conn.poll_job() {
                if job.kind() == JobKind::Inline {
                    // Declared non-blocking: answering here saves two thread hand-offs.
                    // The clock is read after it, so the log shows the handler's time.
                    let done = job.run();
                    self.conn.complete(done, Instant::now());
                    moved = true;
                } else {
                    cx.jobs.submit(key, job);
                }
            }
            moved |= self.pump_upstream(key, cx, now);
            moved |= match &mut self.tls {
                None => plain::transmit(&mut self.socket, &mut self.conn, cx.scratch, now)?,
                Some(tls) => tls.transmit(&mut self.socket, &mut self.conn, cx.scratch, now)?,
            };
            if !moved {
                return Ok(());
            }
        }
    }

    /// Releases the upstream socket the core is done with (to the pool or closed), starts
    /// the connect a proxied request asks for (an idle pooled connection first), moves its
    /// bytes both ways, and closes the upstream socket once the core no longer uses it;
    /// returns whether anything moved.
    fn pump_upstream(&mut self, key: Key, cx: &mut Context<'_>, now: Instant) -> bool {
        let link = Link {
            registry: cx.registry,
            jobs: cx.jobs,
            key,
            tls: cx.upstream_tls,
        };
        let mut moved = false;
        if let Some(release) = self.conn.upstream().and_then(|mut u| u.poll_release()) {
            if let Some(old) = self.upstream.take() {
                match release {
                    Release::Pool => old.park(cx.pool, cx.registry, now),
                    Release::Close => old.close(cx.registry),
                }
            }
            moved = true;
        }
        let connect = self.conn.upstream().and_then(|mut u| u.poll_connect());
        if let Some(connect) = connect {
            if let Some(old) = self.upstream.take() {
                old.close(cx.registry);
            }
            self.upstream_attempts += 1;
            let id = self.upstream_attempts;
            let pooled = if connect.fresh {
                None
            } else {
                Upstream::reuse(id, connect.clone(), cx.pool, &link, now)
            };
            self.upstream = match pooled {
                Some(pooled) => {
                    if let Some(mut upstream) = self.conn.upstream() {
                        upstream.reused(now);
                    }
                    Some(pooled)
                }
                None => Some(Upstream::start(id, connect, &link)),
            };
            moved = true;
        }
        if let Some(upstream) = &mut self.upstream {
            moved |= upstream.pump(&mut self.conn, &link, now);
        }
        if self.conn.upstream().is_none() {
            if let Some(upstream) = self.upstream.take() {
                upstream.close(cx.registry);
            }
        }
        moved
    }

    /// Readiness to wait for: readable while input is wanted, writable while output
    /// waits. A session that wants neither (a job runs) stays readable: with edge
    /// triggering that costs at most one event, remembered until input is wanted again.
    fn interest_wanted(&self) -> Interest {
        let (read, write) = match &self.tls {
            None => (self.conn.wants_read(), self.conn.wants_write()),
            Some(tls) => (
                tls.wants_read(&self.conn),
                tls.wants_write() || self.conn.wants_write(),
            ),
        };
        match (read, write) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            _ => Interest::READABLE,
        }
    }

    /// The earliest of the connection's deadline, the TLS handshake's and, once the
    /// connection is closed but records remain, the linger bound.
    fn deadline(&self) -> Option<Instant> {
        let core = self.conn.poll_timeout();
        let Some(tls) = &self.tls else { return core };
        let closing = self
            .conn
            .is_closed()
            .then_some(self.last_write + LINGER_TIME);
        [core, tls.handshake_deadline(), closing]
            .into_iter()
            .flatten()
            .min()
    }

    /// Shuts our side down and starts discarding input, unless there is nothing to
    /// protect: the peer already closed or sends nothing more, or our last byte left long
    /// enough ago.
    fn start_linger(&mut self, scratch: &mut [u8], now: Instant) -> Next {
        let until = self.last_write + LINGER_TIME;
        if until <= now || self.socket.at_eof() || !self.conn.needs_linger() {
            return Next::Close;
        }
        self.socket.shutdown_write();
        self.phase = Phase::Lingering {
            until,
            discarded: 0,
        };
        self.linger(scratch)
    }

    /// Reads and discards until the peer's FIN, an error or the byte bound.
    fn linger(&mut self, scratch: &mut [u8]) -> Next {
        let Phase::Lingering { until, discarded } = &mut self.phase else {
            return Next::Close;
        };
        while self.socket.may_read() {
            match self.socket.read(scratch) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    *discarded += n;
                    if *discarded >= LINGER_BYTES {
                        return Next::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Next::Close,
            }
        }
        Next::Keep {
            interest: Interest::READABLE,
            deadline: Some(*until),
        }
    }
}
