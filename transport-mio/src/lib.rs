//! # quick-server-mio
//!
//! The event-loop transport of quick-server: event-loop threads (one per core by default)
//! each run a `mio` poller over the shared listening socket and their own connections
//! (plain TCP with `sendfile`, or TLS through rustls), and drive each
//! [`quick_server_core::Connection`] by the core's drain rule. Every loop watches the one
//! listening socket with `EPOLLEXCLUSIVE`, so a new connection wakes one idle loop, and a
//! restart hands over a single socket as before. Slow work the
//! core hands out runs on small thread pools and comes back through a `mio::Waker`. A
//! proxied request's upstream socket is a second socket of its session on the same loop
//! (non-blocking connect; host names other than IP literals and `localhost` are looked up
//! on the request pool, never on the loop).

mod event_loop;
mod plain;
mod pool;
mod session;
mod slab;
mod socket;
mod sys;
mod timers;
mod tls;
mod upstream;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Poll, Waker};
use quick_server_core::Server;

use crate::event_loop::{EventLoop, Setup};
use crate::pool::Jobs;
use crate::slab::{LISTENER, MAX_SLOTS, WAKER};

/// Transport options.
#[derive(Clone)]
pub struct Options {
    /// TLS configuration (ALPN and crypto provider chosen by the caller); `None` serves
    /// plain TCP. Default `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Event loops, each a thread serving its own share of the connections. Default one
    /// per core.
    pub loops: usize,
    /// Threads of each job pool: one runs request handlers, one runs background worker
    /// computations; they are shared out among the loops (each gets at least one).
    /// Default `max(2, cores)`.
    pub threads: usize,
    /// Most connections served at once, over all loops; one more is answered `503 Service
    /// Unavailable` and closed. Default 10 000.
    pub max_connections: usize,
    /// After [`ShutdownHandle::shutdown`], how long in-flight requests may take before the
    /// remaining connections are dropped. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            tls: None,
            loops: cores,
            threads: cores.max(2),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("tls", &self.tls.is_some())
            .field("loops", &self.loops)
            .field("threads", &self.threads)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// Starts serving `server` on `listener` from `options.loops` new event-loop threads.
pub fn start(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    options: Options,
) -> io::Result<Running> {
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let loops = (0..options.loops.max(1))
        .map(|index| start_loop(&listener, &server, &options, index, &stop, &open))
        .collect::<io::Result<Vec<_>>>()?;
    let handle = ShutdownHandle {
        stop,
        wakers: loops.iter().map(|(waker, _)| Arc::clone(waker)).collect(),
    };
    let mut running = Running {
        local_addr,
        handle: handle.clone(),
        threads: Vec::with_capacity(loops.len()),
    };
    for (index, (_, event_loop)) in loops.into_iter().enumerate() {
        let handle = handle.clone();
        let spawned = thread::Builder::new()
            .name(format!("quick-server-mio-{index}"))
            .spawn(move || {
                let result = event_loop.run();
                if result.is_err() {
                    // One loop's failure stops the server, not just that loop.
                    handle.shutdown();
                }
                result
            });
        match spawned {
            Ok(thread) => running.threads.push(thread),
            Err(e) => {
                // The loops already started stop before the error is returned.
                running.handle.shutdown();
                let _ = running.wait();
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// Sets up loop `index` of `options.loops` on its own copy of the listening socket.
fn start_loop(
    listener: &std::net::TcpListener,
    server: &Arc<Server>,
    options: &Options,
    index: usize,
    stop: &Arc<AtomicBool>,
    open: &Arc<AtomicUsize>,
) -> io::Result<(Arc<Waker>, EventLoop)> {
    let mut listener = mio::net::TcpListener::from_std(listener.try_clone()?);
    let poll = Poll::new()?;
    sys::register_exclusive(&poll, &mut listener, LISTENER)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let loops = options.loops.max(1);
    let threads = options.threads / loops + usize::from(index < options.threads % loops);
    let jobs = Jobs::new(threads.max(1), &waker)?;
    let event_loop = EventLoop::new(Setup {
        poll,
        listener,
        jobs,
        server: Arc::clone(server),
        tls: options.tls.clone(),
        max_connections: options.max_connections.min(MAX_SLOTS),
        open: Arc::clone(open),
        grace: options.shutdown_grace,
        stop: Arc::clone(stop),
    });
    Ok((waker, event_loop))
}

/// A server running on its own threads.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    handle: ShutdownHandle,
    /// One per loop.
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from any thread.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Waits until the server stopped (after a [`ShutdownHandle::shutdown`] completed);
    /// returns the error that ended a loop, if one did (the other loops stop then too).
    pub fn wait(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            let ended = thread.join().unwrap_or_else(|_| {
                // A panicked loop did not stop the others itself.
                self.handle.shutdown();
                Err(io::Error::other("an event loop panicked"))
            });
            result = result.and(ended);
        }
        result
    }
}

/// Stops a running server gracefully: no new connections, every open one finishes its
/// request in progress (within the grace period), then [`Running::wait`] returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    /// One per loop.
    wakers: Arc<[Arc<Waker>]>,
}

impl ShutdownHandle {
    /// Starts the graceful stop; calling it again does nothing more.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for waker in self.wakers.iter() {
            // Fails only when the loop is already gone.
            let _ = waker.wake();
        }
    }
}

#[cfg(test)]
mod tests;
