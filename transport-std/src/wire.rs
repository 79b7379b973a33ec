//! One connection's socket, plain or TLS: input goes into the core's read buffer, what
//! the core transmits goes out, and the close is done so the last answer arrives.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

pub(crate) use quick_server_core::tls::Input;
use quick_server_core::{Connection, FileRegion, Transmit};

use crate::linger::{linger, LINGER_TIME, REJECT_LINGER_TIME};
use quick_server_transport::sendfile_falls_back;

use crate::sendfile::sendfile;
use quick_server_core::wire::FILE_CHUNK;

use crate::socket::Socket;
use crate::tls::TlsSession;

/// How a connection ended, which decides how its socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The core finished: say goodbye (TLS `close_notify`) and linger.
    Finished,
    /// A connection over the limit got its 503: linger only briefly, so a flood of them
    /// cannot keep the rejecter busy.
    Rejected,
    /// The peer closed its side, or announced it sends nothing more and all it sent was
    /// read: say goodbye, no need to linger.
    PeerClosed,
    /// The socket failed or the peer misbehaved: close at once.
    Abort,
}

/// A connection's socket and, under TLS, its session.
#[derive(Debug)]
pub(crate) struct Wire {
    socket: Socket,
    tls: Option<Box<TlsSession>>,
    /// File bytes on their way when `sendfile` cannot be used.
    scratch: Vec<u8>,
    /// Cleared once `sendfile` reported it cannot serve this socket or file.
    sendfile: bool,
}

impl Wire {
    /// Wraps an accepted socket, starting a TLS session when `tls` is given.
    pub(crate) fn new(
        socket: TcpStream,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        let tls = match tls {
            Some(config) => Some(Box::new(TlsSession::new(Arc::clone(config))?)),
            None => None,
        };
        Ok(Self {
            socket: Socket::new(socket),
            tls,
            scratch: Vec::new(),
            sendfile: true,
        })
    }

    /// The socket descriptor, to wait on.
    pub(crate) fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Whether a TLS handshake is still in progress.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// Whether decrypted input may be waiting, so the socket need not be read first.
    pub(crate) fn has_buffered_input(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.has_plaintext())
    }

    /// Hands input already decrypted to the core.
    pub(crate) fn read_buffered(
        &mut self,
        conn: &mut Connection,
        now: Instant,
    ) -> io::Result<Input> {
        match &mut self.tls {
            Some(tls) => tls.plaintext(conn, now),
            None => Ok(Input::Nothing),
        }
    }

    /// Reads from the socket without waiting, when bytes are likely there already (a new
    /// connection's first request usually arrived with it): spares a `poll`.
    pub(crate) fn read_now(&mut self, conn: &mut Connection, now: Instant) -> io::Result<Input> {
        self.socket.set_eager(true);
        let input = self.read(conn, now);
        self.socket.set_eager(false);
        input
    }

    /// Reads from the socket (which is readable) and hands what arrived to the core.
    pub(crate) fn read(&mut self, conn: &mut Connection, now: Instant) -> io::Result<Input> {
        if let Some(tls) = &mut self.tls {
            return tls.read(&mut self.socket, conn, now);
        }
        let buf = conn.read_buf();
        if buf.is_empty() {
            return Ok(Input::Nothing);
        }
        match self.socket.read(buf) {
            Ok(0) => {
                conn.read_eof(now);
                Ok(Input::Eof)
            }
            Ok(n) => {
                conn.commit(n, now);
                Ok(Input::Data)
            }
            Err(e) if is_retry(&e) => Ok(Input::Nothing),
            Err(e) => Err(e),
        }
    }

    /// Sends (part of) `transmit`, blocking at most until `deadline`; returns how many of
    /// its bytes were taken. A timeout is an error of kind `WouldBlock` or `TimedOut`.
    pub(crate) fn send(
        &mut self,
        transmit: Transmit<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        if let Some(tls) = &mut self.tls {
            let bytes = match transmit {
                Transmit::Bytes(bytes) => bytes,
                Transmit::File(region) => read_chunk(&mut self.scratch, region)?,
            };
            return tls.send(&mut self.socket, bytes, deadline);
        }
        self.socket.bound_write(deadline)?;
        match transmit {
            Transmit::Bytes(bytes) => self.socket.write(bytes),
            Transmit::File(region) => {
                if self.sendfile {
                    if let Some(file) = region.file.raw_fd() {
                        self.socket.apply_bound()?;
                        match sendfile(self.socket.as_raw_fd(), file, region.offset, region.len) {
                            Ok(0) => return Err(short_file()),
                            Ok(n) => return Ok(n),
                            Err(e) if sendfile_falls_back(&e) => self.sendfile = false,
                            Err(e) => return Err(e),
                        }
                    }
                }
                let chunk = read_chunk(&mut self.scratch, region)?;
                self.socket.write(chunk)
            }
        }
    }

    /// Writes all of `bytes`, then flushes, all before `deadline`.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.send(Transmit::Bytes(bytes), Some(deadline))? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => bytes = bytes.get(n..).unwrap_or_default(),
            }
        }
        self.flush(deadline)
    }

    /// Sends what TLS still holds (records of earlier sends, handshake messages).
    pub(crate) fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.flush(&mut self.socket, Some(deadline)),
            None => Ok(()),
        }
    }

    /// Completes the TLS handshake before `deadline` (nothing to do on plain TCP).
    pub(crate) fn handshake(&mut self, deadline: Instant) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.handshake(&mut self.socket, deadline),
            None => Ok(()),
        }
    }

    /// Ends the connection the way `end` calls for; the socket closes when the wire drops.
    pub(crate) fn close(&mut self, end: End) {
        if end == End::Abort {
            return;
        }
        if let Some(tls) = &mut self.tls {
            tls.close(&mut self.socket);
        }
        match end {
            End::Finished => linger(self.socket.stream_mut(), LINGER_TIME),
            End::Rejected => linger(self.socket.stream_mut(), REJECT_LINGER_TIME),
            End::PeerClosed | End::Abort => {}
        }
    }
}

/// Reads the next piece of `region` into `scratch`.
fn read_chunk<'a>(scratch: &'a mut Vec<u8>, region: &FileRegion) -> io::Result<&'a [u8]> {
    let want = usize::try_from(region.len)
        .unwrap_or(FILE_CHUNK)
        .min(FILE_CHUNK);
    scratch.resize(want, 0);
    let n = region.file.read_at(&mut scratch[..want], region.offset)?;
    if n == 0 && want > 0 {
        return Err(short_file());
    }
    Ok(scratch.get(..n).unwrap_or_default())
}

/// A file shrank below the region its response announced: the response cannot be
/// completed, so the connection must end.
fn short_file() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "file shorter than the region being sent",
    )
}

/// Whether a failed read or write only has to be tried again later.
pub(crate) fn is_retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Whether a failed write ran into its deadline.
pub(crate) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
