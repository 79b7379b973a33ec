//! Taking connections from the listening socket: the pool threads accept for themselves
//! (and the housekeeping thread for them while all are busy); each connection is admitted
//! below `max_connections` or passed to the rejecter. The socket closes at the stop, so
//! later connects are refused (or, during a restart, wait for the next process).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::control::Control;

/// Pause after the process ran out of descriptors or memory, before accepting again.
pub(crate) const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);

/// A connection admitted, on its way to a pool thread.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The connection.
    pub(crate) socket: TcpStream,
    /// The client address.
    pub(crate) peer: SocketAddr,
}

/// What one try to accept gave.
#[derive(Debug)]
pub(crate) enum Accept {
    /// A connection, counted in the load: serve it, then release it.
    Admitted(Accepted),
    /// Nothing to serve, but more may wait: the connection was rejected, or failed
    /// before it was taken.
    Again,
    /// No connection waits, or the server is stopping.
    Empty,
    /// The process is out of descriptors or memory: wait [`RESOURCE_BACKOFF`] first.
    Backoff,
}

/// What lives until the stop.
#[derive(Debug)]
struct Open {
    listener: TcpListener,
    /// Sockets to answer with 503; dropping it ends the rejecter once it is done.
    reject: SyncSender<TcpStream>,
}

/// The listening socket, shared by every thread that accepts, and what admission needs.
#[derive(Debug)]
pub(crate) struct Acceptor {
    /// Taken out (and closed) at the stop, under the write lock, so no thread accepts on
    /// a descriptor number that was closed and perhaps reused.
    open: RwLock<Option<Open>>,
    /// The listener's descriptor, to wait on; valid until the stop.
    fd: RawFd,
    /// Stop signal and connection count.
    control: Arc<Control>,
    /// Most connections queued or served at once.
    max_connections: usize,
    /// Accepted sockets have `TCP_NODELAY` from the listener already.
    nodelay_inherited: bool,
    /// Why the listener failed, which stopped the server.
    failure: Mutex<Option<io::Error>>,
}

impl Acceptor {
    /// Accepts from `listener` (non-blocking) for a server with these limits.
    pub(crate) fn new(
        listener: TcpListener,
        reject: SyncSender<TcpStream>,
        control: Arc<Control>,
        max_connections: usize,
        nodelay_inherited: bool,
    ) -> Self {
        Self {
            fd: listener.as_raw_fd(),
            open: RwLock::new(Some(Open { listener, reject })),
            control,
            max_connections,
            nodelay_inherited,
            failure: Mutex::new(None),
        }
    }

    /// The listening descriptor, to wait on until the stop.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Accepts one connection if one waits, and admits it or rejects it. A failure of the
    /// listener itself stops the server.
    pub(crate) fn accept(&self) -> Accept {
        let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
        let Some(open) = open.as_ref() else {
            return Accept::Empty;
        };
        if self.control.is_stopping() {
            return Accept::Empty;
        }
        match open.listener.accept() {
            Ok((socket, peer)) => self.admit(open, socket, peer),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accept::Empty,
            Err(e) if is_transient(&e) => Accept::Again,
            Err(e) if is_out_of_resources(&e) => Accept::Backoff,
            Err(e) => {
                self.failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
                self.control.stop();
                Accept::Empty
            }
        }
    }

    /// Counts a connection in, or hands it to the rejecter when the server is full.
    fn admit(&self, open: &Open, socket: TcpStream, peer: SocketAddr) -> Accept {
        // Accepted sockets may inherit the listener's non-blocking mode on some systems;
        // not on Linux, whose accept4(2) leaves the flag off unless asked.
        if !cfg!(any(target_os = "linux", target_os = "android"))
            && socket.set_nonblocking(false).is_err()
        {
            return Accept::Again;
        }
        if !self.nodelay_inherited {
            let _ = socket.set_nodelay(true);
        }
        if self.control.admit(self.max_connections) {
            return Accept::Admitted(Accepted { socket, peer });
        }
        // When the rejecter is busy too, closing is all that is left.
        let _ = open.reject.try_send(socket);
        Accept::Again
    }

    /// Runs `f` on the listening descriptor while it stays open; `None` once closed.
    pub(crate) fn with_listener<R>(&self, f: impl FnOnce(RawFd) -> R) -> Option<R> {
        let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
        open.as_ref().map(|open| f(open.listener.as_raw_fd()))
    }

    /// Closes the listener (the stop), and lets the rejecter end; threads that accept
    /// find nothing from now on.
    pub(crate) fn close(&self) {
        let open = self
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(open);
    }

    /// Why the listener failed, if it did.
    pub(crate) fn failure(&self) -> Option<io::Error> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A listener on a free loopback port behind an acceptor, for this crate's tests.
#[cfg(test)]
pub(crate) struct Loopback {
    pub(crate) acceptor: Arc<Acceptor>,
    pub(crate) control: Arc<Control>,
    /// What the acceptor passed to the rejecter (up to 4 sockets).
    pub(crate) rejected: std::sync::mpsc::Receiver<TcpStream>,
    pub(crate) addr: SocketAddr,
}

#[cfg(test)]
impl Loopback {
    /// Listens on 127.0.0.1, admitting at most `max_connections` at once.
    pub(crate) fn new(max_connections: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (reject, rejected) = std::sync::mpsc::sync_channel(4);
        let control = Arc::new(Control::new().unwrap());
        let acceptor = Arc::new(Acceptor::new(
            listener,
            reject,
            Arc::clone(&control),
            max_connections,
            false,
        ));
        Self {
            acceptor,
            control,
            rejected,
            addr,
        }
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

    #[test]
    fn admits_up_to_the_limit_and_nothing_after_the_close() {
        let Loopback {
            acceptor,
            control,
            rejected,
            addr,
        } = Loopback::new(1);
        assert!(matches!(acceptor.accept(), Accept::Empty), "none waits");
        let _first = TcpStream::connect(addr).unwrap();
        let _second = TcpStream::connect(addr).unwrap();
        let admit = |acceptor: &Acceptor| loop {
            match acceptor.accept() {
                Accept::Admitted(accepted) => return Some(accepted),
                Accept::Again if rejected.try_recv().is_ok() => return None,
                _ => std::thread::yield_now(),
            }
        };
        assert!(admit(&acceptor).is_some());
        assert!(admit(&acceptor).is_none(), "over the limit: rejected");
        control.release();
        acceptor.close();
        assert!(TcpStream::connect(addr).is_err(), "refused once closed");
        assert!(matches!(acceptor.accept(), Accept::Empty));
        assert!(rejected.recv().is_err(), "the rejecter's queue is closed");
        assert!(acceptor.failure().is_none());
    }
}
