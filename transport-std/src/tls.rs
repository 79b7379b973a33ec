//! TLS with rustls over a blocking socket: records are pumped between the socket and the
//! session, plaintext between the session and the core, unchanged.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server_core::Connection;
use rustls::{ServerConfig, ServerConnection};

use crate::poll;
use crate::socket::Socket;
use crate::wire::{is_retry, Input};

/// Time allowed to send `close_notify` when closing.
const CLOSE_TIME: Duration = Duration::from_millis(500);

/// A server-side TLS session.
#[derive(Debug)]
pub(crate) struct TlsSession {
    session: ServerConnection,
    /// Decrypted bytes may be waiting in the session.
    plaintext: bool,
}

impl TlsSession {
    /// A session for a newly accepted socket.
    pub(crate) fn new(config: Arc<ServerConfig>) -> io::Result<Self> {
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self {
            session,
            plaintext: false,
        })
    }

    /// Whether the handshake is still in progress.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Whether decrypted bytes may be waiting for the core.
    pub(crate) fn has_plaintext(&self) -> bool {
        self.plaintext
    }

    /// Reads records from the (readable) socket, decrypts them and hands plaintext to the
    /// core. A protocol error sends the session's alert and fails.
    pub(crate) fn read(
        &mut self,
        socket: &mut Socket,
        conn: &mut Connection,
        now: Instant,
    ) -> io::Result<Input> {
        match self.session.read_tls(socket) {
            // 0 is the end of the TCP stream: the reader below reports it once the
            // plaintext before it is consumed.
            Ok(_) => {}
            Err(e) if is_retry(&e) => return Ok(Input::Nothing),
            Err(e) => return Err(e),
        }
        self.process(socket)?;
        self.plaintext = true;
        self.plaintext(conn, now)
    }

    /// Hands decrypted bytes to the core, as many as its read buffer takes.
    pub(crate) fn plaintext(&mut self, conn: &mut Connection, now: Instant) -> io::Result<Input> {
        let buf = conn.read_buf();
        if buf.is_empty() {
            return Ok(Input::Nothing);
        }
        match self.session.reader().read(buf) {
            Ok(0) => {
                // close_notify: the peer is done sending.
                self.plaintext = false;
                conn.read_eof(now);
                Ok(Input::Eof)
            }
            Ok(n) => {
                conn.commit(n, now);
                Ok(Input::Data)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.plaintext = false;
                Ok(Input::Nothing)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // The TCP stream ended without close_notify: the same end for HTTP, whose
                // messages carry their own framing.
                self.plaintext = false;
                conn.read_eof(now);
                Ok(Input::Eof)
            }
            Err(e) => Err(e),
        }
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
        self.session.writer().write(data)
    }

    /// Writes every pending record to the socket before `deadline`.
    pub(crate) fn flush(
        &mut self,
        socket: &mut Socket,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        while self.session.wants_write() {
            socket.bound_write(deadline)?;
            match self.session.write_tls(socket) {
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
        while self.session.is_handshaking() {
            self.flush(socket, Some(deadline))?;
            let woken = poll::wait(Some(socket.as_raw_fd()), None, None, Some(deadline))?;
            if !woken.readable {
                if Instant::now() >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                continue;
            }
            match self.session.read_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => self.process(socket)?,
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.flush(socket, Some(deadline))
    }

    /// Sends `close_notify`, best effort.
    pub(crate) fn close(&mut self, socket: &mut Socket) {
        self.session.send_close_notify();
        let _ = self.flush(socket, Some(Instant::now() + CLOSE_TIME));
    }

    /// Processes received records; on a protocol error, sends the alert and fails.
    fn process(&mut self, socket: &mut Socket) -> io::Result<()> {
        if let Err(error) = self.session.process_new_packets() {
            let _ = self.flush(socket, Some(Instant::now() + CLOSE_TIME));
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(())
    }
}
