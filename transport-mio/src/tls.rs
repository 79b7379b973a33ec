//! TLS: records pumped through a `rustls::ServerConnection`, plaintext through the core
//! unchanged.
//!
//! Memory stays bounded on both sides: records are read only when rustls holds no
//! unread plaintext, and the core's output enters rustls (capped by its buffer limit) only
//! as fast as the socket takes it. File regions are read in chunks of at most
//! [`FILE_CHUNK`] bytes, and only when rustls has room for the whole chunk.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use quick_server_core::{Connection, Transmit};
use rustls::{ServerConfig, ServerConnection};

use crate::socket::Socket;

use quick_server_core::wire::FILE_CHUNK;
/// Cap on rustls's outgoing buffer: a chunk plus a head and record overhead.
const BUFFER_LIMIT: usize = FILE_CHUNK + 16 * 1024;

/// One connection's TLS state.
#[derive(Debug)]
pub(crate) struct Tls {
    session: ServerConnection,
    /// The handshake must be complete by then (the core's header timeout from accept).
    handshake_deadline: Instant,
    /// A refusal is queued: the connection ends once it went out after the handshake.
    refusal: bool,
    /// `close_notify` is queued.
    close_sent: bool,
}

impl Tls {
    /// A server-side session whose handshake must finish by `handshake_deadline`.
    pub(crate) fn new(
        config: Arc<ServerConfig>,
        handshake_deadline: Instant,
    ) -> Result<Self, rustls::Error> {
        let mut session = ServerConnection::new(config)?;
        session.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(Self {
            session,
            handshake_deadline,
            refusal: false,
            close_sent: false,
        })
    }

    /// Queues `answer` to be sent as soon as the handshake completes, after which the
    /// connection closes (the refusal of a connection over the limit).
    pub(crate) fn refuse(&mut self, answer: &[u8]) -> io::Result<()> {
        self.refusal = true;
        self.session.writer().write_all(answer)
    }

    /// Whether output is still to come: records to write, or a refusal waiting for the
    /// handshake.
    pub(crate) fn holds_output(&self) -> bool {
        self.session.wants_write() || (self.refusal && self.session.is_handshaking())
    }

    /// The handshake deadline, while the handshake runs.
    pub(crate) fn handshake_deadline(&self) -> Option<Instant> {
        self.session
            .is_handshaking()
            .then_some(self.handshake_deadline)
    }

    /// Whether records should be read from the socket now.
    pub(crate) fn wants_read(&self, conn: &Connection) -> bool {
        self.session.wants_read() && (self.session.is_handshaking() || conn.wants_read())
    }

    /// Whether records wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Moves plaintext rustls holds into the core and reads records while both sides
    /// want more; returns whether anything moved. A protocol error sends rustls's alert
    /// (best effort) and fails.
    pub(crate) fn read_input(
        &mut self,
        socket: &mut Socket,
        conn: &mut Connection,
        now: Instant,
    ) -> io::Result<bool> {
        let mut moved = false;
        loop {
            loop {
                let buf = conn.read_buf();
                if buf.is_empty() {
                    break;
                }
                match self.session.reader().read(buf) {
                    Ok(0) => {
                        conn.read_eof(now); // close_notify
                        moved = true;
                        break;
                    }
                    Ok(n) => {
                        conn.commit(n, now);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        conn.read_eof(now); // TCP FIN without close_notify
                        moved = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !socket.may_read() || !self.wants_read(conn) {
                return Ok(moved);
            }
            match self.session.read_tls(socket) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                let _ = self.session.write_tls(socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Encrypts what the core has queued and writes records until both are empty or the
    /// socket is full; queues `close_notify` once the core is closed. Returns whether
    /// anything moved.
    pub(crate) fn transmit(
        &mut self,
        socket: &mut Socket,
        conn: &mut Connection,
        scratch: &mut [u8],
        now: Instant,
    ) -> io::Result<bool> {
        let mut moved = false;
        loop {
            moved |= self.fill(conn, scratch, now)?;
            let refusing = self.refusal && self.session.is_handshaking();
            if conn.is_closed() && !self.close_sent && !refusing {
                self.session.send_close_notify();
                self.close_sent = true;
            }
            if !self.session.wants_write() || !socket.may_write() {
                return Ok(moved);
            }
            while self.session.wants_write() {
                match self.session.write_tls(socket) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => moved = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                    Err(e) => return Err(e),
                }
            }
            if conn.poll_transmit().is_none() {
                return Ok(moved);
            }
        }
    }

    /// Hands the core's output to rustls while it has room; returns whether any did.
    fn fill(
        &mut self,
        conn: &mut Connection,
        scratch: &mut [u8],
        now: Instant,
    ) -> io::Result<bool> {
        // Room for file bytes: a whole chunk once earlier records are flushed.
        let mut room = if self.session.wants_write() {
            0
        } else {
            FILE_CHUNK
        };
        let mut moved = false;
        loop {
            let taken = match conn.poll_transmit() {
                None => break,
                Some(Transmit::Bytes(bytes)) => self.session.writer().write(bytes)?,
                Some(Transmit::File(region)) => {
                    let want = usize::try_from(region.len)
                        .unwrap_or(usize::MAX)
                        .min(room)
                        .min(scratch.len());
                    let Some(buf) = scratch.get_mut(..want).filter(|b| !b.is_empty()) else {
                        break;
                    };
                    let got = region.file.read_at(buf, region.offset)?;
                    match buf.get(..got) {
                        Some(bytes) if got > 0 => self.session.writer().write(bytes)?,
                        _ => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while sent",
                            ))
                        }
                    }
                }
            };
            if taken == 0 {
                break; // rustls is at its limit
            }
            room = room.saturating_sub(taken);
            conn.transmitted(taken, now);
            moved = true;
        }
        Ok(moved)
    }
}
