//! The accept thread: takes connections until the stop signal, admits them into the
//! worker pool, or passes them to the rejecter when the server is full.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server_core::Server;

use crate::control::Control;
use crate::drive::Accepted;
use crate::poll;
use crate::pool::Pool;
use quick_server_transport::Watcher;

/// Pause after the process ran out of descriptors or memory, before accepting again.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest sleep between two runs of the server's timer: a deadline it gains while this
/// thread sleeps (a worker result recorded elsewhere) is late by at most this much.
const SERVER_TICK: Duration = Duration::from_secs(1);

/// Where accepted sockets go.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The worker pool; dropped with this, which closes its queue.
    pub(crate) pool: Pool<Accepted>,
    /// Sockets to answer with 503.
    pub(crate) reject: SyncSender<TcpStream>,
    /// Stop signal and connection count.
    pub(crate) control: Arc<Control>,
    /// Most connections queued or served at once.
    pub(crate) max_connections: usize,
    /// The server, whose own timer (expiry of worker results) this thread runs.
    pub(crate) server: Arc<Server>,
    /// Change notifications for the file cache, read here too while no worker waits.
    pub(crate) watcher: Arc<Watcher>,
    /// Accepted sockets have `TCP_NODELAY` from the listener already.
    pub(crate) nodelay_inherited: bool,
}

/// Accepts until the stop signal; the listener closes when this returns, so later
/// connects are refused. A failure of the listener stops the server too.
pub(crate) fn run(listener: TcpListener, admission: Admission) -> io::Result<()> {
    let result = accept_until_stopped(&listener, &admission);
    admission.control.stop();
    result
}

fn accept_until_stopped(listener: &TcpListener, admission: &Admission) -> io::Result<()> {
    let control = &admission.control;
    let server = &admission.server;
    loop {
        let tick = Instant::now() + SERVER_TICK;
        let deadline = server.poll_timeout().map_or(tick, |d| d.min(tick));
        let woken = poll::wait(
            Some(listener.as_raw_fd()),
            None,
            Some(control.stop_fd()),
            admission.watcher.fd(),
            Some(deadline),
        )?;
        if woken.stop || control.is_stopping() {
            return Ok(());
        }
        if woken.changes {
            admission.watcher.read_changes(server);
        }
        let now = Instant::now();
        if server.poll_timeout().is_some_and(|d| now >= d) {
            server.handle_timeout(now);
        }
        if !woken.readable {
            continue;
        }
        loop {
            match listener.accept() {
                Ok((socket, peer)) => admission.admit(socket, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_transient(&e) => {}
                Err(e) if is_out_of_resources(&e) => {
                    poll::wait(
                        None,
                        None,
                        Some(control.stop_fd()),
                        None,
                        Some(Instant::now() + RESOURCE_BACKOFF),
                    )?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Admission {
    /// Hands a connection to the worker pool, or to the rejecter when full.
    fn admit(&self, socket: TcpStream, peer: SocketAddr) {
        // Accepted sockets may inherit the listener's non-blocking mode on some systems;
        // not on Linux, whose accept4(2) leaves the flag off unless asked.
        if !cfg!(any(target_os = "linux", target_os = "android"))
            && socket.set_nonblocking(false).is_err()
        {
            return;
        }
        if !self.nodelay_inherited {
            let _ = socket.set_nodelay(true);
        }
        // Admission bounds the pool's queue: it never holds more than `max_connections`.
        if self.control.admit(self.max_connections) {
            self.pool.push(Accepted { socket, peer });
            return;
        }
        // When the rejecter is busy too, closing is all that is left.
        let _ = self.reject.try_send(socket);
    }
}

/// Errors that concern one connection that never was, not the listener.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) || matches!(error.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// The process is out of descriptors or memory: accepting again at once would spin.
fn is_out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_error_classes() {
        assert!(is_transient(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(is_transient(&io::Error::from_raw_os_error(libc::EPROTO)));
        assert!(!is_transient(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_out_of_resources(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_out_of_resources(&io::Error::from_raw_os_error(
            libc::EBADF
        )));
    }
}
