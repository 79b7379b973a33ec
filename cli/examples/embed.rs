//! `quick-server-core` embedded in a hand-written `mio` event loop, without a transport
//! crate: the contract of the core's verbs, shown for every route kind.
//!
//! `cargo run --example embed -- --port 8081 --www DIR --proxy /up/=http://127.0.0.1:9000/`
//! serves exactly:
//! - files from `--www` (default `.`);
//! - `GET /api/echo?x=V` → `{"x": "V"}`;
//! - `POST /api/work`, a worker route (the start/get/stop/cargo protocol): the payload
//!   `{"n": N}` gives the result `{"n": N}`;
//! - each `--proxy PREFIX=URL` (repeatable): targets under `PREFIX` go to the `http://` upstream.
//!
//! One thread owns the listener, every connection, its upstream socket, the idle upstream
//! pool and the timers; it sleeps in `Poll::poll` until a socket is ready, a job is done (a
//! [`Waker`]) or the nearest deadline. After every event it runs the core's drain rule on the
//! connection concerned: jobs, the upstream's verbs, output, then timer and interests.
//! An inotify descriptor in the same poller carries the server's folder watches, so a
//! cached file is answered without a `stat` until a change in its folder is read.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use quick_server_core::dynamic::{json_dumps, render, Args};
use quick_server_core::files::{WatchOp, WATCH_MASK};
use quick_server_core::proxy::{Connect, IdlePool, Release};
use quick_server_core::worker::{CancelFlag, WorkerFailure};
use quick_server_core::{
    Completion, Connection, Job, JobKind, Method, PeerInfo, Request, Server, Transmit,
};
use serde_json::{json, Value};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// The inotify descriptor; connection tokens count up from 2.
const WATCHES: Token = Token(usize::MAX);
/// How long a closing connection waits for the peer's FIN after its last answer.
const LINGER: Duration = Duration::from_secs(2);

fn main() -> io::Result<()> {
    let options = Options::parse()?;
    let server = build_server(&options)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let mut listener = TcpListener::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let watches = Watches::new()?;
    poll.registry().register(
        &mut SourceFd(&watches.fd.as_raw_fd()),
        WATCHES,
        Interest::READABLE,
    )?;
    let (done_tx, done_rx) = mpsc::channel();
    let limits = server.limits();
    let mut event_loop = EventLoop {
        registry: poll.registry().try_clone()?,
        clients: Vec::new(),
        pool: IdlePool::new(limits.upstream_max_idle, limits.upstream_idle_timeout),
        server,
        jobs: JobRunner {
            waker,
            done: done_tx,
        },
        generation: 0,
    };
    eprintln!(
        "[SERVER] starting server at 127.0.0.1:{}",
        listener.local_addr()?.port()
    );
    let mut events = Events::with_capacity(256);
    loop {
        let timeout = event_loop
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        if events.iter().any(|event| event.token() == WATCHES) {
            // Before any connection: a request sent after a change must see it.
            watches.read(&event_loop.server);
        }
        for event in &events {
            match event.token() {
                LISTENER => event_loop.accept(&listener),
                WAKER => event_loop.completions(&done_rx),
                WATCHES => {}
                token => event_loop.drive(slot_of(token)),
            }
        }
        watches.apply(&event_loop.server);
        event_loop.timers(Instant::now());
    }
}

/// The server's folder watches: an inotify descriptor, non-blocking.
struct Watches {
    fd: OwnedFd,
}

impl Watches {
    fn new() -> io::Result<Self> {
        // SAFETY: no pointer arguments; a descriptor or -1 comes back.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Adds and removes the watches the server asks for (`poll_watch`), telling it how
    /// each addition went (`watch_added`; a failed one means "revalidate those files").
    fn apply(&self, server: &Server) {
        while let Some(op) = server.poll_watch() {
            match op {
                WatchOp::Add(folder) => {
                    let descriptor = CString::new(folder.as_os_str().as_bytes())
                        .ok()
                        // SAFETY: a live descriptor and a NUL-terminated path.
                        .map(|path| unsafe {
                            libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), WATCH_MASK)
                        })
                        .filter(|wd| *wd >= 0);
                    server.watch_added(&folder, descriptor);
                }
                WatchOp::Remove(descriptor) => {
                    // SAFETY: a live descriptor; a stale watch number is only an error.
                    unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), descriptor) };
                }
            }
        }
    }

    /// Hands the server every pending notification (`watch_events`); if they cannot be
    /// read, some may be lost, so every cached file goes (`invalidate`).
    fn read(&self, server: &Server) {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            // SAFETY: a live descriptor and a buffer of `buffer.len()` writable bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            match usize::try_from(n) {
                Ok(n) => server.watch_events(&buffer[..n]),
                Err(_) => match io::Error::last_os_error().kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => return,
                    _ => return server.invalidate(Path::new("/")),
                },
            }
        }
    }
}

/// The command line: `--port N`, `--www DIR`, `--proxy PREFIX=URL` (repeatable).
struct Options {
    port: u16,
    www: String,
    proxies: Vec<(String, String)>,
}

impl Options {
    fn parse() -> io::Result<Self> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let mut options = Self {
            port: 8081,
            www: ".".into(),
            proxies: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| bad(format!("{flag} needs a value")))?;
            match flag.as_str() {
                "--port" => options.port = value.parse().map_err(|_| bad(value))?,
                "--www" => options.www = value,
                "--proxy" => {
                    let (prefix, url) = value
                        .split_once('=')
                        .ok_or_else(|| bad(format!("--proxy PREFIX=URL, got {value}")))?;
                    options.proxies.push((prefix.into(), url.into()));
                }
                _ => return Err(bad(format!("unknown flag {flag}"))),
            }
        }
        Ok(options)
    }
}

/// The routes: files, the echo handler, the worker and the proxy bindings.
fn build_server(options: &Options) -> io::Result<Arc<Server>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut builder = Server::builder((Instant::now(), SystemTime::now()));
    builder
        .files()
        .bind_path("/", std::fs::canonicalize(&options.www)?)
        .map_err(|e| invalid(e.to_string()))?;
    builder.route(
        Method::Get,
        "/api/echo",
        Some(0),
        Arc::new(|request: &Request, args: &mut Args| {
            let x = args.query.get("x").cloned().unwrap_or(Value::Null);
            let body = json_dumps(&json!({ "x": x })).unwrap_or_default();
            render(
                &request.head,
                200,
                "application/json",
                Vec::new(),
                body.into_bytes(),
                0,
            )
        }),
    );
    builder.worker(
        "/api/work",
        Arc::new(|payload: Value, _cancel: &CancelFlag| {
            let n = payload.get("n").cloned().unwrap_or(Value::Null);
            json_dumps(&json!({ "n": n })).map_err(|e| WorkerFailure {
                status: None,
                message: e.to_string(),
            })
        }),
    );
    for (prefix, url) in &options.proxies {
        builder
            .bind_proxy(prefix, url)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(builder.build())
}

/// A client connection: its socket, the core's state machine, and the upstream socket
/// of the request it proxies.
struct Client {
    socket: TcpStream,
    conn: Connection,
    upstream: Option<UpstreamSocket>,
    /// Tells this client's job completions from those of an earlier client in its slot.
    generation: u64,
    /// After the last answer: when to stop waiting for the peer's FIN.
    linger_until: Option<Instant>,
}

/// The upstream socket and the upstream it leads to (the key of the idle pool).
struct UpstreamSocket {
    stream: TcpStream,
    connect: Connect,
    connected: bool,
}

/// Runs jobs off the loop and hands their completions back through the waker.
struct JobRunner {
    waker: Arc<Waker>,
    done: Sender<(usize, u64, Completion)>,
}

impl JobRunner {
    /// An inline job runs on the spot; the others get a thread each (a real transport
    /// keeps two bounded pools: request jobs, and background worker computations).
    fn run(&self, slot: usize, generation: u64, job: Job) -> Option<Completion> {
        if job.kind() == JobKind::Inline {
            return Some(job.run());
        }
        let done = self.done.clone();
        let waker = Arc::clone(&self.waker);
        thread::spawn(move || {
            if done.send((slot, generation, job.run())).is_ok() {
                let _ = waker.wake();
            }
        });
        None
    }
}

struct EventLoop {
    registry: Registry,
    clients: Vec<Option<Client>>,
    pool: IdlePool<TcpStream>,
    server: Arc<Server>,
    jobs: JobRunner,
    generation: u64,
}

/// Client `slot` reads and writes under token `2 + 2 * slot`, its upstream under the next.
fn client_token(slot: usize) -> Token {
    Token(2 + 2 * slot)
}

fn upstream_token(slot: usize) -> Token {
    Token(3 + 2 * slot)
}

fn slot_of(token: Token) -> usize {
    (token.0 - 2) / 2
}

impl EventLoop {
    /// Accepts every waiting connection and reads it at once.
    fn accept(&mut self, listener: &TcpListener) {
        loop {
            let (mut socket, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return, // a connection that failed before we took it
            };
            let _ = socket.set_nodelay(true);
            let slot = self
                .clients
                .iter()
                .position(Option::is_none)
                .unwrap_or_else(|| {
                    self.clients.push(None);
                    self.clients.len() - 1
                });
            if self
                .registry
                .register(
                    &mut socket,
                    client_token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let info = PeerInfo {
                addr: peer.to_string(),
                secure: false,
            };
            self.generation += 1;
            self.clients[slot] = Some(Client {
                socket,
                conn: Connection::new(Arc::clone(&self.server), info, Instant::now()),
                upstream: None,
                generation: self.generation,
                linger_until: None,
            });
            self.drive(slot);
        }
    }

    /// Hands finished jobs to their connection (or to the server if it is gone).
    fn completions(&mut self, done: &Receiver<(usize, u64, Completion)>) {
        while let Ok((slot, generation, completion)) = done.try_recv() {
            let now = Instant::now();
            match self.clients.get_mut(slot).and_then(Option::as_mut) {
                Some(client) if client.generation == generation => {
                    client.conn.complete(completion, now);
                    self.drive(slot);
                }
                _ => self.server.complete(completion, now),
            }
        }
    }

    /// The nearest deadline: the server's, a connection's, a lingering close's, the pool's.
    fn next_deadline(&self) -> Option<Instant> {
        let clients = self.clients.iter().flatten();
        clients
            .flat_map(|c| [c.conn.poll_timeout(), c.linger_until])
            .chain([self.server.poll_timeout(), self.pool.poll_timeout()])
            .flatten()
            .min()
    }

    /// Fires the deadlines that passed.
    fn timers(&mut self, now: Instant) {
        if self.server.poll_timeout().is_some_and(|at| at <= now) {
            self.server.handle_timeout(now);
        }
        self.pool.expire(now);
        for slot in 0..self.clients.len() {
            let Some(client) = self.clients[slot].as_mut() else {
                continue;
            };
            if client.linger_until.is_some_and(|at| at <= now) {
                self.close(slot);
            } else if client.conn.poll_timeout().is_some_and(|at| at <= now) {
                client.conn.handle_timeout(now);
                self.drive(slot);
            }
        }
    }

    /// The drain rule on one connection: after every mutation, drain everything (jobs,
    /// the upstream's verbs, output) until nothing moves; then re-arm the interests and
    /// close the socket once the connection is closed.
    fn drive(&mut self, slot: usize) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if client.linger_until.is_some() {
            if matches!(discard_until_eof(&mut client.socket), Ok(true) | Err(_)) {
                self.close(slot);
            }
            return;
        }
        let healthy = loop {
            let now = Instant::now();
            let mut moved = match read_client(client, now) {
                Ok(moved) => moved,
                Err(_) => break false,
            };
            while let Some(job) = client.conn.poll_job() {
                if let Some(done) = self.jobs.run(slot, client.generation, job) {
                    client.conn.complete(done, now);
                }
                moved = true;
            }
            moved |= upstream_io(client, &mut self.pool, &self.registry, slot, now);
            match write_client(client, now) {
                Ok(wrote) => moved |= wrote,
                Err(_) => break false,
            }
            if !moved {
                break true;
            }
        };
        if !healthy {
            return self.close(slot);
        }
        if client.conn.is_closed() {
            if !client.conn.needs_linger() {
                return self.close(slot);
            }
            // Wait (bounded) for the peer's FIN, so a reset cannot destroy the last answer.
            let _ = client.socket.shutdown(Shutdown::Write);
            client.linger_until = Some(Instant::now() + LINGER);
            return self.drive(slot);
        }
        // Interests as the connection states them (level semantics from an edge-triggered
        // poller: re-registering reports a readiness that is already there).
        let interest = match (client.conn.wants_read(), client.conn.wants_write()) {
            (_, true) if !client.conn.wants_read() => Interest::WRITABLE,
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        let _ = self
            .registry
            .reregister(&mut client.socket, client_token(slot), interest);
    }

    /// Drops a connection, its upstream socket with it.
    fn close(&mut self, slot: usize) {
        if let Some(mut client) = self.clients[slot].take() {
            let _ = self.registry.deregister(&mut client.socket);
            if let Some(mut upstream) = client.upstream.take() {
                let _ = self.registry.deregister(&mut upstream.stream);
            }
        }
    }
}

/// Client input into the core's buffer until it wants no more or the socket would block.
fn read_client(client: &mut Client, now: Instant) -> io::Result<bool> {
    let mut moved = false;
    loop {
        let buf = client.conn.read_buf();
        if buf.is_empty() {
            return Ok(moved);
        }
        match client.socket.read(buf) {
            Ok(0) => {
                client.conn.read_eof(now);
                return Ok(true);
            }
            Ok(n) => {
                client.conn.commit(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The core's output to the socket until it is drained or the socket would block. A file
/// region is read and written in pieces (a real transport uses `sendfile` on plain TCP).
fn write_client(client: &mut Client, now: Instant) -> io::Result<bool> {
    let mut moved = false;
    let mut chunk = Vec::new();
    loop {
        let written = match client.conn.poll_transmit() {
            None => return Ok(moved),
            Some(Transmit::Bytes(bytes)) => client.socket.write(bytes),
            Some(Transmit::File(region)) => {
                chunk.resize(region.len.min(64 * 1024) as usize, 0);
                let n = region.file.read_at(&mut chunk, region.offset)?;
                client.socket.write(&chunk[..n])
            }
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                client.conn.transmitted(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The upstream machine's verbs, in order: release the last socket, connect (or reuse an
/// idle one), then request bytes out and answer bytes in. Returns whether anything moved.
fn upstream_io(
    client: &mut Client,
    pool: &mut IdlePool<TcpStream>,
    registry: &Registry,
    slot: usize,
    now: Instant,
) -> bool {
    let Some(mut upstream) = client.conn.upstream() else {
        // No proxied request: a socket still held has no use.
        if let Some(mut socket) = client.upstream.take() {
            let _ = registry.deregister(&mut socket.stream);
        }
        return false;
    };
    let mut moved = false;
    if let Some(release) = upstream.poll_release() {
        moved = true;
        if let Some(mut socket) = client.upstream.take() {
            let _ = registry.deregister(&mut socket.stream);
            if release == Release::Pool {
                pool.put(&socket.connect, socket.stream, now);
            }
        }
    }
    if let Some(connect) = upstream.poll_connect() {
        moved = true;
        let idle = (!connect.fresh)
            .then(|| pool.take(&connect, now))
            .flatten()
            .filter(still_open);
        let reused = idle.is_some();
        let stream = idle.or_else(|| connect_to(&connect));
        match stream {
            Some(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if registry
                    .register(&mut stream, upstream_token(slot), interest)
                    .is_err()
                {
                    upstream.failed(now);
                    return true;
                }
                client.upstream = Some(UpstreamSocket {
                    stream,
                    connect,
                    connected: reused,
                });
                if reused {
                    upstream.reused(now);
                }
            }
            None => upstream.failed(now),
        }
    }
    let Some(socket) = client.upstream.as_mut() else {
        return moved;
    };
    if !socket.connected {
        match socket.stream.take_error() {
            Ok(None) => match socket.stream.peer_addr() {
                Ok(_) => {
                    socket.connected = true;
                    upstream.connected(now);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return moved,
                Err(_) => return fail_upstream(client, registry, now),
            },
            Ok(Some(_)) | Err(_) => return fail_upstream(client, registry, now),
        }
    }
    match transfer(&mut socket.stream, &mut upstream, now) {
        Ok(step) => moved | step,
        Err(_) => fail_upstream(client, registry, now),
    }
}

/// Request bytes to the upstream socket, answer bytes from it, until it would block.
fn transfer(
    stream: &mut TcpStream,
    upstream: &mut quick_server_core::Upstream<'_>,
    now: Instant,
) -> io::Result<bool> {
    let mut moved = false;
    while let Some(bytes) = upstream.transmit() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                upstream.transmitted(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        let buf = upstream.read_buf();
        if buf.is_empty() {
            return Ok(moved);
        }
        match stream.read(buf) {
            Ok(0) => {
                upstream.read_eof(now);
                return Ok(true);
            }
            Ok(n) => {
                upstream.commit(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The upstream socket failed: the connection answers 502 (or closes mid-answer).
fn fail_upstream(client: &mut Client, registry: &Registry, now: Instant) -> bool {
    if let Some(mut socket) = client.upstream.take() {
        let _ = registry.deregister(&mut socket.stream);
    }
    if let Some(mut upstream) = client.conn.upstream() {
        upstream.failed(now);
    }
    true
}

/// A non-blocking connect to the first address of the upstream that starts one. Name
/// resolution blocks: fine for the loopback names of this example, not for a server.
fn connect_to(connect: &Connect) -> Option<TcpStream> {
    let addrs = (connect.host.as_str(), connect.port)
        .to_socket_addrs()
        .ok()?;
    addrs
        .into_iter()
        .find_map(|addr| TcpStream::connect(addr).ok())
}

/// Whether an idle pooled socket is still usable: nothing to read, no FIN, no error.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Reads and drops what the peer still sends after our last answer; `true` at its FIN.
fn discard_until_eof(socket: &mut TcpStream) -> io::Result<bool> {
    let mut sink = [0u8; 4096];
    loop {
        match socket.read(&mut sink) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
