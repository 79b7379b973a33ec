//! TLS: records pumped through a `rustls::ServerConnection` by the core's
//! [`TlsPump`], plaintext through the core unchanged; this adds the socket's readiness,
//! the handshake deadline and the refusal of a connection over the limit.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use quick_server_core::tls::{Input, TlsError, TlsPump};
use quick_server_core::Connection;
use rustls::{ServerConfig, ServerConnection};

use crate::socket::Socket;

/// One connection's TLS state.
#[derive(Debug)]
pub(crate) struct Tls {
    pump: TlsPump<ServerConnection>,
    /// The handshake must be complete by then (the core's header timeout from accept).
    handshake_deadline: Instant,
    /// A refusal is queued: the connection ends once it went out after the handshake.
    refusal: bool,
}

impl Tls {
    /// A server-side session whose handshake must finish by `handshake_deadline`.
    pub(crate) fn new(
        config: Arc<ServerConfig>,
        handshake_deadline: Instant,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            pump: TlsPump::new(ServerConnection::new(config)?),
            handshake_deadline,
            refusal: false,
        })
    }

    /// Queues `answer` to be sent as soon as the handshake completes, after which the
    /// connection closes (the refusal of a connection over the limit).
    pub(crate) fn refuse(&mut self, mut answer: &[u8]) -> io::Result<()> {
        self.refusal = true;
        while !answer.is_empty() {
            match self.pump.send(answer)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => answer = &answer[n..],
            }
        }
        Ok(())
    }

    /// Whether output is still to come: records to write, or a refusal waiting for the
    /// handshake.
    pub(crate) fn holds_output(&self) -> bool {
        self.pump.wants_write() || (self.refusal && self.pump.is_handshaking())
    }

    /// The handshake deadline, while the handshake runs.
    pub(crate) fn handshake_deadline(&self) -> Option<Instant> {
        self.pump
            .is_handshaking()
            .then_some(self.handshake_deadline)
    }

    /// Whether records should be read from the socket now.
    pub(crate) fn wants_read(&self, conn: &Connection) -> bool {
        self.pump.wants_read(conn.wants_read())
    }

    /// Whether records wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.pump.wants_write()
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
            moved |= self.pump.deliver(conn, now)? != Input::Nothing;
            if !socket.may_read() || !self.wants_read(conn) {
                return Ok(moved);
            }
            match self.pump.read_records(socket) {
                Ok(_) => moved = true,
                Err(TlsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(TlsError::Io(e)) => return Err(e),
                Err(e) => {
                    let _ = self.pump.write_records(socket);
                    return Err(e.into());
                }
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
            moved |= self.pump.fill(conn, scratch, now)?;
            let refusing = self.refusal && self.pump.is_handshaking();
            if conn.is_closed() && !refusing {
                self.pump.close();
            }
            if !self.pump.wants_write() || !socket.may_write() {
                return Ok(moved);
            }
            while self.pump.wants_write() {
                match self.pump.write_records(socket) {
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
}
