//! # quick-server-mio
//!
//! The event-loop transport of quick-server: one thread runs a `mio` poller over the
//! listener and every connection (plain TCP with `sendfile`, or TLS through rustls), and
//! drives each [`quick_server_core::Connection`] by the core's drain rule. Slow work the
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Interest, Poll, Waker};
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
    /// Threads of each job pool: one runs request handlers, one runs background worker
    /// computations; the event loop itself is one more thread. Default `max(2, cores)`.
    pub threads: usize,
    /// Most connections served at once; one more is answered `503 Service Unavailable`
    /// and closed. Default 10 000.
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
            .field("threads", &self.threads)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// Starts serving `server` on `listener` from a new event-loop thread.
pub fn start(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    options: Options,
) -> io::Result<Running> {
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let jobs = Jobs::new(options.threads, &waker)?;
    let stop = Arc::new(AtomicBool::new(false));
    let event_loop = EventLoop::new(Setup {
        poll,
        listener,
        jobs,
        server,
        tls: options.tls,
        max_connections: options.max_connections.min(MAX_SLOTS),
        grace: options.shutdown_grace,
        stop: stop.clone(),
    });
    let thread = thread::Builder::new()
        .name("quick-server-mio".to_owned())
        .spawn(move || event_loop.run())?;
    Ok(Running {
        local_addr,
        handle: ShutdownHandle { stop, waker },
        thread,
    })
}

/// A server running on its own threads.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    handle: ShutdownHandle,
    thread: JoinHandle<io::Result<()>>,
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
    /// returns the error that ended the loop, if one did.
    pub fn wait(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the event loop panicked")))
    }
}

/// Stops a running server gracefully: no new connections, every open one finishes its
/// request in progress (within the grace period), then [`Running::wait`] returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Starts the graceful stop; calling it again does nothing more.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Fails only when the loop is already gone.
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests;
