//! TLS with rustls over a blocking socket: the core's [`TlsPump`] moves records between
//! the socket and the session and plaintext between the session and the core; this adds
//! the waits, bounded by deadlines.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server_core::tls::{Input, TlsError, TlsPump};
use quick_server_core::Connection;
use rustls::{ServerConfig, ServerConnection};

use crate::poll;
use crate::socket::Socket;
use crate::wire::is_retry;

/// Time allowed to send `close_notify` when closing.
const CLOSE_TIME: Duration = Duration::from_millis(500);

/// A server-side TLS session.
#[derive(Debug)]
pub(crate) struct TlsSession {
    pump: TlsPump<ServerConnection>,
}

impl TlsSession {
    /// A session for a newly accepted socket.
    pub(crate) fn new(config: Arc<ServerConfig>) -> io::Result<Self> {
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self {
            pump: TlsPump::new(session),
        })
    }

    /// Whether the handshake is still in progress.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.pump.is_handshaking()
    }

    /// Whether decrypted bytes may be waiting for the core.
    pub(crate) fn has_plaintext(&self) -> bool {
        self.pump.has_plaintext()
    }

    /// Reads records from the (readable) socket, decrypts them and hands plaintext to the
    /// core. A protocol error sends the session's alert and fails.
    pub(crate) fn read(
        &mut self,
        socket: &mut Socket,
        conn: &mut Connection,
        now: Instant,
    ) -> io::Result<Input> {
        match self.pump.read_records(socket) {
            // 0 is the end of the TCP stream: the delivery below reports it once the
            // plaintext before it is consumed.
            Ok(_) => {}
            Err(TlsError::Io(e)) if is_retry(&e) => return Ok(Input::Nothing),
            Err(TlsError::Io(e)) => return Err(e),
            Err(e) => {
                let _ = self.flush(socket, Some(Instant::now() + CLOSE_TIME));
                return Err(e.into());
            }
        }
        self.plaintext(conn, now)
    }

    /// Hands decrypted bytes to the core, as many as its read buffer takes.
    pub(crate) fn plaintext(&mut self, conn: &mut Connection, now: Instant) -> io::Result<Input> {
        self.pump.deliver(conn, now)
    }

    /// Takes plaintext to send (after flushing records of earlier sends, so a failed flush
    /// takes nothing); returns how many bytes were taken.
    pub(crate) fn send(
        &mut self,
        socket: &mut Socket,
        data: &[u8],
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        self.flush(socket, deadline)?;
        self.pump.send(data)
    }

    /// Writes every pending record to the socket before `deadline`.
    pub(crate) fn flush(
        &mut self,
        socket: &mut Socket,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        while self.pump.wants_write() {
            socket.bound_write(deadline)?;
            match self.pump.write_records(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Runs the handshake to its end before `deadline`.
    pub(crate) fn handshake(&mut self, socket: &mut Socket, deadline: Instant) -> io::Result<()> {
        while self.pump.is_handshaking() {
            self.flush(socket, Some(deadline))?;
            let woken = poll::wait(Some(socket.as_raw_fd()), None, None, None, Some(deadline))?;
            if !woken.readable {
                if Instant::now() >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                continue;
            }
            match self.pump.read_records(socket) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(TlsError::Io(e)) if is_retry(&e) => {}
                Err(TlsError::Io(e)) => return Err(e),
                Err(e) => {
                    let _ = self.flush(socket, Some(Instant::now() + CLOSE_TIME));
                    return Err(e.into());
                }
            }
        }
        self.flush(socket, Some(deadline))
    }

    /// Sends `close_notify`, best effort.
    pub(crate) fn close(&mut self, socket: &mut Socket) {
        self.pump.close();
        let _ = self.flush(socket, Some(Instant::now() + CLOSE_TIME));
    }
}
