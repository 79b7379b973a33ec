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

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Waker};
use quick_server_core::Server;

use crate::event_loop::{EventLoop, Setup};
use crate::pool::Jobs;
use crate::slab::{LISTENER, MAX_SLOTS, WAKER, WATCH};
use quick_server_transport::Watcher;

pub use quick_server_transport::{Options, Running, ShutdownHandle};

/// Starts serving `server` on `listener` from `options.loops` new event-loop threads
/// (`max_threads` does not apply: the loops never block on a connection).
pub fn start(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    options: Options,
) -> io::Result<Running> {
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let watcher = Arc::new(Watcher::new());
    let shared = Shared {
        stop: &stop,
        open: &open,
        watcher: &watcher,
    };
    let loops = (0..options.loops.max(1))
        .map(|index| start_loop(&listener, &server, &options, index, &shared))
        .collect::<io::Result<Vec<_>>>()?;
    let handle = Stop {
        stop,
        wakers: loops.iter().map(|(waker, _)| Arc::clone(waker)).collect(),
    };
    let mut running = Loops {
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
    let stop = running.handle.clone();
    Ok(Running::new(
        local_addr,
        ShutdownHandle::new(move || stop.shutdown()),
        move || running.wait(),
    ))
}

/// What all loops share.
struct Shared<'a> {
    stop: &'a Arc<AtomicBool>,
    open: &'a Arc<AtomicUsize>,
    watcher: &'a Arc<Watcher>,
}

/// Sets up loop `index` of `options.loops` on its own copy of the listening socket.
fn start_loop(
    listener: &std::net::TcpListener,
    server: &Arc<Server>,
    options: &Options,
    index: usize,
    shared: &Shared<'_>,
) -> io::Result<(Arc<Waker>, EventLoop)> {
    let mut listener = mio::net::TcpListener::from_std(listener.try_clone()?);
    let poll = Poll::new()?;
    sys::register_exclusive(&poll, &mut listener, LISTENER)?;
    if let Some(fd) = shared.watcher.fd() {
        // Every loop hears of a change: the one about to serve a request must not miss it.
        poll.registry()
            .register(&mut SourceFd(&fd), WATCH, Interest::READABLE)?;
    }
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let loops = options.loops.max(1);
    let all = options.mio_threads();
    let threads = all / loops + usize::from(index < all % loops);
    let jobs = Jobs::new(threads.max(1), &waker)?;
    let event_loop = EventLoop::new(Setup {
        poll,
        listener,
        jobs,
        server: Arc::clone(server),
        tls: options.tls.clone(),
        max_connections: options.max_connections.min(MAX_SLOTS),
        open: Arc::clone(shared.open),
        grace: options.shutdown_grace,
        stop: Arc::clone(shared.stop),
        watcher: Arc::clone(shared.watcher),
    });
    Ok((waker, event_loop))
}

/// The loop threads, and how to stop them.
struct Loops {
    handle: Stop,
    /// One per loop.
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Loops {
    /// Waits until every loop stopped; returns the error that ended a loop, if one did
    /// (the other loops stop then too).
    fn wait(self) -> io::Result<()> {
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

/// Asks every loop to stop: no new connections, and each open one finishes its request
/// in progress (within the grace period).
#[derive(Clone)]
struct Stop {
    stop: Arc<AtomicBool>,
    /// One per loop.
    wakers: Arc<[Arc<Waker>]>,
}

impl Stop {
    /// Starts the graceful stop; calling it again does nothing more.
    fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for waker in self.wakers.iter() {
            // Fails only when the loop is already gone.
            let _ = waker.wake();
        }
    }
}

#[cfg(test)]
mod tests;
