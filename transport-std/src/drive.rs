//! One connection on one worker thread: the core's drain loop, run with blocking I/O (and
//! a non-blocking upstream socket while a request is proxied).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use quick_server_core::{Connection, Job, JobKind, PeerInfo, Server};

use crate::accept::Accepted;
use crate::control::Control;
use crate::upstream::{self, Upstream};
use crate::wait::Waiter;
use crate::wire::{is_timeout, End, Input, Wire};
use quick_server_transport::{peer_text, Watcher};

/// What every worker needs to serve a connection.
#[derive(Debug)]
pub(crate) struct Context {
    /// The routes and limits.
    pub(crate) server: Arc<Server>,
    /// TLS configuration, when serving HTTPS.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Stop signal and bookkeeping.
    pub(crate) control: Arc<Control>,
    /// The background job pool.
    pub(crate) background: Sender<Job>,
    /// Idle keep-alive connections to proxy upstreams.
    pub(crate) upstreams: upstream::Pool,
    /// Change notifications for the file cache.
    pub(crate) watcher: Arc<Watcher>,
}

/// Serves an admitted connection on worker `worker`, counted out of the load once done.
pub(crate) fn serve_admitted(
    worker: usize,
    waiter: &mut Waiter,
    accepted: Accepted,
    ctx: &Context,
) {
    let Accepted { socket, peer } = accepted;
    let control = &ctx.control;
    // Past the grace period, what is still queued is dropped unanswered.
    if !control.is_forced() {
        // A panic is a bug, but it must cost one connection, not a pool thread.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            serve(worker, waiter, socket, peer, ctx)
        }));
    }
    control.release();
}

/// Serves one accepted connection until it closes, its socket registered so that a
/// forced shutdown can close it.
fn serve(worker: usize, waiter: &mut Waiter, socket: TcpStream, peer: SocketAddr, ctx: &Context) {
    let now = Instant::now();
    let info = PeerInfo {
        addr: peer_text(peer),
        secure: ctx.tls.is_some(),
    };
    let mut conn = Connection::new(Arc::clone(&ctx.server), info, now);
    let Ok(mut wire) = Wire::new(socket, ctx.tls.as_ref()) else {
        return;
    };
    // Dropped before `wire`, which closes the socket.
    let _registered = ctx.control.register(worker, wire.fd());
    // A handshake is bounded like a request head, from the moment a worker takes it.
    let handshake_deadline = now + ctx.server.limits().header_timeout;
    waiter.begin();
    let end = drive(&mut conn, &mut wire, waiter, ctx, handshake_deadline);
    wire.close(end);
}

/// The drain loop: after every input or command, run the jobs, move the upstream's
/// bytes and write all output, then close if the core is done, else wait for input, the
/// upstream, a deadline or the stop signal.
fn drive(
    conn: &mut Connection,
    wire: &mut Wire,
    waiter: &mut Waiter,
    ctx: &Context,
    handshake_deadline: Instant,
) -> End {
    let control = &ctx.control;
    let mut upstream = None;
    let mut stop_seen = false;
    let mut peer_closed = false;
    let mut fresh = true;
    loop {
        if drain(conn, wire, &mut upstream, ctx).is_err() {
            return End::Abort;
        }
        ctx.watcher.apply(&ctx.server);
        if conn.is_closed() {
            return if peer_closed || !conn.needs_linger() {
                End::PeerClosed
            } else {
                End::Finished
            };
        }
        let input = if conn.wants_read() && wire.has_buffered_input() {
            wire.read_buffered(conn, Instant::now())
        } else if std::mem::take(&mut fresh) && conn.wants_read() {
            // A new connection's first bytes usually came with it (the wait that accepted
            // it read the change notifications already, or another thread is at it).
            ctx.watcher.settle();
            wire.read_now(conn, Instant::now())
        } else {
            let handshake = wire.is_handshaking().then_some(handshake_deadline);
            let deadline = earliest(conn.poll_timeout(), handshake);
            let socket = conn.wants_read().then(|| wire.fd());
            let watch = upstream.as_ref().and_then(|u| u.watch(conn));
            if socket.is_none() && watch.is_none() && stop_seen && deadline.is_none() {
                return End::Finished; // nothing could ever wake this connection again
            }
            let Ok(woken) = waiter.connection(socket, watch, !stop_seen, deadline) else {
                return End::Abort;
            };
            if woken.changes {
                // Before the request that may have been sent after the change.
                ctx.watcher.read_changes(&ctx.server);
            } else {
                ctx.watcher.settle();
            }
            let now = Instant::now();
            // The stop goes first: bytes sent after it must not start a new exchange.
            if !stop_seen && control.is_stopping() {
                stop_seen = true;
                conn.shutdown(now);
                continue;
            }
            // A ready upstream needs nothing here: the drain at the top of the loop moves
            // its bytes.
            if woken.readable {
                wire.read(conn, now)
            } else {
                if deadline.is_some_and(|d| now >= d) {
                    if handshake.is_some_and(|d| now >= d) {
                        return End::Abort; // stalled or garbage handshake
                    }
                    conn.handle_timeout(now);
                }
                Ok(Input::Nothing)
            }
        };
        match input {
            Ok(Input::Eof) => peer_closed = true,
            Ok(Input::Data | Input::Nothing) => {}
            Err(_) => return End::Abort,
        }
    }
}

/// Starts every job the core hands out (request jobs inline: this thread serves only
/// this connection anyway), moves the upstream's bytes while they move, and writes
/// everything the core transmits; a write that runs into the core's send deadline is
/// reported to it as a timeout.
fn drain(
    conn: &mut Connection,
    wire: &mut Wire,
    upstream: &mut Option<Upstream>,
    ctx: &Context,
) -> io::Result<()> {
    let limits = ctx.server.limits();
    loop {
        if let Some(job) = conn.poll_job() {
            match job.kind() {
                JobKind::Request | JobKind::Inline => {
                    let done = job.run();
                    conn.complete(done, Instant::now());
                }
                JobKind::Background => {
                    // The pool outlives every connection; should it be gone, the job
                    // still runs, here.
                    if let Err(returned) = ctx.background.send(job) {
                        let done = returned.0.run();
                        conn.complete(done, Instant::now());
                    }
                }
            }
            continue;
        }
        let tls = ctx.server.upstream_tls();
        if upstream::pump(upstream, conn, &ctx.upstreams, limits.upstream_timeout, tls) {
            continue;
        }
        let deadline = conn.poll_timeout();
        let Some(transmit) = conn.poll_transmit() else {
            break;
        };
        match wire.send(transmit, deadline) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.transmitted(n, Instant::now()),
            Err(e) if is_timeout(&e) => conn.handle_timeout(Instant::now()),
            Err(e) => return Err(e),
        }
    }
    wire.flush(Instant::now() + limits.send_timeout)
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn earliest_deadline() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(later), None), Some(later));
        assert_eq!(earliest(None, Some(now)), Some(now));
        assert_eq!(earliest(Some(later), Some(now)), Some(now));
    }
}
