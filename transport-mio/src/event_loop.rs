//! An event loop: one thread owning its copy of the listener, its sessions, its timers
//! and its job pools' return channel; the server runs one or more. Each wake-up handles a whole batch of readiness events
//! with one clock read, then the due timers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Poll};
use quick_server_core::{Completion, Connection, PeerInfo, Server};
use rustls::ServerConfig;

use crate::pool::{Done, Jobs};
use crate::session::{Context, Next, Session};
use crate::slab::{Key, Side, Slab, LISTENER, WAKER, WATCH};
use crate::timers::Timers;
use crate::tls::Tls;
use crate::upstream::Pool;
use quick_server_core::wire::{BUSY_ANSWER as BUSY, FILE_CHUNK, REFUSE_TIME};
use quick_server_transport::{peer_text, Watcher};

/// Readiness events taken per wake-up.
const EVENTS_PER_POLL: usize = 1024;
/// Refused TLS connections being answered at once; beyond, they are closed unanswered.
const REFUSING_MAX: usize = 64;
/// Pause before accepting again after the process ran out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Connections accepted per wake-up before the loop turns to other events.
pub(crate) const ACCEPTS_PER_WAKE: usize = 64;

/// What happened to a session.
enum Input<'a> {
    /// It was just accepted.
    Accepted,
    /// Its client or upstream socket is ready.
    Ready(&'a Event, Side),
    /// Its deadline passed.
    Timeout,
    /// Its job finished.
    Done(Completion),
    /// The host name of its upstream attempt `id` was looked up.
    Resolved(u64, io::Result<Vec<SocketAddr>>),
    /// The server is shutting down.
    Shutdown,
}

/// Everything the loop thread owns.
pub(crate) struct EventLoop {
    poll: Poll,
    /// `None` once shutdown began.
    listener: Option<TcpListener>,
    sessions: Slab<Session>,
    timers: Timers,
    jobs: Jobs,
    server: Arc<Server>,
    tls: Option<Arc<ServerConfig>>,
    max_connections: usize,
    /// Sessions open over all loops, refusing ones apart: counted against
    /// `max_connections`.
    open: Arc<AtomicUsize>,
    /// This loop's sessions that only answer 503 (not counted in `open`).
    refusing: usize,
    grace: Duration,
    stop: Arc<AtomicBool>,
    /// File bytes under TLS or without `sendfile`, and discarded input.
    scratch: Vec<u8>,
    /// When the shutdown grace ends, once shutdown began.
    grace_end: Option<Instant>,
    /// Accepting resumes then, after a shortage of descriptors or memory.
    accept_retry: Option<Instant>,
    /// One wake-up's accepts were used up: accept more after the next (non-sleeping) poll.
    accept_more: bool,
    /// Idle keep-alive connections to proxy upstreams, shared by the loop's sessions.
    upstreams: Pool,
    /// Change notifications for the file cache, shared by all loops.
    watcher: Arc<Watcher>,
}

/// How the loop is set up.
pub(crate) struct Setup {
    /// The poller, with the listener and the pool's waker registered.
    pub(crate) poll: Poll,
    /// The listening socket.
    pub(crate) listener: TcpListener,
    /// The pools for jobs.
    pub(crate) jobs: Jobs,
    /// The HTTP server every connection shares.
    pub(crate) server: Arc<Server>,
    /// TLS, if any.
    pub(crate) tls: Option<Arc<ServerConfig>>,
    /// Most sessions at once, over all loops.
    pub(crate) max_connections: usize,
    /// The sessions open over all loops.
    pub(crate) open: Arc<AtomicUsize>,
    /// Time in-flight requests get after shutdown.
    pub(crate) grace: Duration,
    /// Set by the shutdown handle.
    pub(crate) stop: Arc<AtomicBool>,
    /// Change notifications for the file cache.
    pub(crate) watcher: Arc<Watcher>,
}

impl EventLoop {
    /// A loop ready to [`run`](Self::run).
    pub(crate) fn new(setup: Setup) -> Self {
        let limits = setup.server.limits();
        let upstreams = Pool::new(limits.upstream_max_idle, limits.upstream_idle_timeout);
        Self {
            upstreams,
            poll: setup.poll,
            listener: Some(setup.listener),
            sessions: Slab::new(),
            timers: Timers::default(),
            jobs: setup.jobs,
            server: setup.server,
            tls: setup.tls,
            max_connections: setup.max_connections,
            open: setup.open,
            refusing: 0,
            grace: setup.grace,
            stop: setup.stop,
            scratch: vec![0; FILE_CHUNK],
            grace_end: None,
            accept_retry: None,
            accept_more: false,
            watcher: setup.watcher,
        }
    }

    /// Runs until a shutdown completes; waits for the request pool before returning.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let result = loop {
            // Connections left over by the last accepts wait until the events of this
            // poll are handled; it must not sleep then.
            let accept_more = std::mem::take(&mut self.accept_more);
            let timeout = if accept_more {
                Some(Duration::ZERO)
            } else {
                self.poll_timeout(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    self.accept_more = accept_more;
                    continue;
                }
                break Err(e);
            }
            let now = Instant::now();
            if events.iter().any(|event| event.token() == WATCH) {
                // Before any connection: a request sent after a change must see it.
                self.watcher.read_changes(&self.server);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => self.collect(now),
                    WATCH => {}
                    token => {
                        let (key, side) = Key::from_token(token);
                        self.step(key, Input::Ready(event, side), now);
                    }
                }
            }
            if self.stop.load(Ordering::SeqCst) && self.grace_end.is_none() {
                self.begin_shutdown(now);
            }
            if accept_more || self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept(now);
            }
            self.watcher.apply(&self.server);
            self.expire(now);
            self.upstreams.expire(now);
            let sessions = &self.sessions;
            self.timers.prune(sessions.len(), |key, at| {
                sessions.get(key).is_some_and(|s| s.timer.is_queued_at(at))
            });
            if self.server.poll_timeout().is_some_and(|at| at <= now) {
                self.server.handle_timeout(now);
            }
            if let Some(end) = self.grace_end {
                if self.sessions.is_empty() || end <= now {
                    break Ok(());
                }
            }
        };
        // Connections still open when the grace ended close before the pool is awaited.
        let counted = self.sessions.len() - self.refusing;
        self.open.fetch_sub(counted, Ordering::Relaxed);
        self.sessions = Slab::new();
        self.jobs.finish();
        result
    }

    /// How long to sleep: until the earliest connection timer, server timer (worker
    /// results expiring), idle upstream expiry, grace end or accept retry.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        [
            self.timers.next(),
            self.server.poll_timeout(),
            self.upstreams.poll_timeout(),
            self.grace_end,
            self.accept_retry,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    /// Accepts the pending connections, up to [`ACCEPTS_PER_WAKE`]: each is read and may
    /// be answered on the spot, so a stream of new connections must not keep the loop
    /// from the connections it already has.
    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_WAKE {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(stream, addr, now),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset => {}
                    _ => {
                        // Out of descriptors or memory: the pending connection stays
                        // queued and no new edge will come, so retry on a timer.
                        self.accept_retry = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                },
            }
        }
        // More may wait, and the edge that announced them is spent.
        self.accept_more = true;
    }

    /// Sets up a session for an accepted stream. Over the limit, a plain connection is
    /// answered 503 on the spot; a TLS one gets a short-lived session that completes the
    /// handshake to say it.
    fn admit(&mut self, stream: TcpStream, addr: SocketAddr, now: Instant) {
        // A place is taken before the session exists, so loops accepting at the same
        // moment never exceed the limit together.
        let refuse = self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections;
        let opened = self.open_session(stream, addr, refuse, now);
        if refuse || !opened {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// [`admit`](Self::admit) past the count: whether a session was opened.
    fn open_session(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        refuse: bool,
        now: Instant,
    ) -> bool {
        if refuse && (self.tls.is_none() || self.refusing >= REFUSING_MAX) {
            // Plain TCP hears 503 on the spot; TLS beyond the refusing sessions, nothing.
            let answer = if self.tls.is_none() { BUSY } else { b"" };
            turn_away(&stream, &mut self.scratch, answer);
            return false;
        }
        let tls = match &self.tls {
            None => None,
            Some(config) => {
                let deadline = now
                    + if refuse {
                        REFUSE_TIME
                    } else {
                        self.server.limits().header_timeout
                    };
                match Tls::new(config.clone(), deadline) {
                    Ok(tls) => Some(Box::new(tls)),
                    Err(_) => return false,
                }
            }
        };
        let peer = PeerInfo {
            addr: peer_text(addr),
            secure: tls.is_some(),
        };
        let conn = Connection::new(self.server.clone(), peer, now);
        let session = match tls {
            Some(tls) if refuse => match Session::refusing(stream, conn, tls, BUSY, now) {
                Ok(session) => session,
                Err(_) => return false,
            },
            tls => Session::new(stream, conn, tls, now),
        };
        let Ok(key) = self.sessions.insert(session) else {
            return false;
        };
        if refuse {
            self.refusing += 1;
        }
        self.step(key, Input::Accepted, now);
        true
    }

    /// Drops a session (closing its socket, which also removes it from the poller).
    fn close(&mut self, key: Key) {
        match self.sessions.remove(key) {
            Some(session) if session.refused => self.refusing -= 1,
            Some(_) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            None => {}
        }
    }

    /// Feeds finished jobs and host lookups to their sessions. The job result of a
    /// session that closed meanwhile (its slot may have a new occupant, of another
    /// generation) goes to the server, which keeps what outlives a connection (worker
    /// results); its lookup result is dropped.
    fn collect(&mut self, now: Instant) {
        self.jobs.woken();
        while let Some((key, done)) = self.jobs.result() {
            match done {
                Done::Job(completion) => {
                    if self.sessions.get_mut(key).is_some() {
                        self.step(key, Input::Done(completion), now);
                    } else {
                        self.server.complete(completion, now);
                    }
                }
                Done::Resolved { id, addrs } => self.step(key, Input::Resolved(id, addrs), now),
            }
        }
    }

    /// Handles due timers.
    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            if self.timers.fire(&mut session.timer, key, at, now) {
                self.step(key, Input::Timeout, now);
            }
        }
    }

    /// Stops accepting and asks every session to finish.
    fn begin_shutdown(&mut self, now: Instant) {
        self.grace_end = Some(now + self.grace);
        self.accept_retry = None;
        if let Some(listener) = self.listener.take() {
            // Registered by descriptor (`sys::register_exclusive`), so removed by
            // descriptor: mio's own deregister refuses, in debug builds, a source it did
            // not register. The socket stays open in the other loops and for a restart.
            let fd = listener.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        for key in self.sessions.keys() {
            self.step(key, Input::Shutdown, now);
        }
    }

    /// Applies one input to a session, runs its drain loop, and re-arms or closes it.
    fn step(&mut self, key: Key, input: Input<'_>, now: Instant) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let keep = match input {
            Input::Accepted => true,
            Input::Ready(event, side) => {
                session.on_ready(event, side);
                true
            }
            Input::Timeout => session.timeout(now),
            Input::Done(completion) => {
                session.complete(completion, now);
                true
            }
            Input::Resolved(id, addrs) => {
                session.resolved(id, addrs);
                true
            }
            Input::Shutdown => {
                session.shutdown(now);
                true
            }
        };
        let next = if keep {
            let mut cx = Context {
                scratch: &mut self.scratch,
                jobs: &self.jobs,
                registry: self.poll.registry(),
                pool: &mut self.upstreams,
                upstream_tls: self.server.upstream_tls(),
            };
            session.drive(key, &mut cx, now)
        } else {
            Next::Close
        };
        match next {
            Next::Keep { interest, deadline } => {
                if session.interest != Some(interest) {
                    // Registered when it first has to wait, so a connection answered
                    // and closed on accept costs no epoll_ctl.
                    let registry = self.poll.registry();
                    let first = session.interest.is_none();
                    let (stream, token) = (session.stream_mut(), key.token());
                    let registered = if first {
                        registry.register(stream, token, interest)
                    } else {
                        registry.reregister(stream, token, interest)
                    };
                    if registered.is_err() {
                        self.close(key);
                        return;
                    }
                    session.interest = Some(interest);
                }
                self.timers.arm(&mut session.timer, key, deadline);
            }
            Next::Close => self.close(key),
        }
    }
}

/// Closes a connection beyond the limit after writing `answer` (if any). What the client
/// already sent is read first, so closing does not reset the answer.
fn turn_away(mut stream: &TcpStream, scratch: &mut [u8], answer: &[u8]) {
    if !answer.is_empty() {
        let _ = stream.read(scratch);
        let _ = stream.write(answer);
    }
    let _ = stream.shutdown(Shutdown::Write);
}
