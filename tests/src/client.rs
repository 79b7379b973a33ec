//! A raw HTTP client over plain TCP or TLS: it sends exact bytes and parses what comes
//! back, and tells a closed connection from an open one.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::response::{parse_response, Parsed, Response};

/// How long a read waits before a test gives up on the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// One client connection.
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    closed: bool,
}

impl Client {
    /// Connects to `addr`; with `tls`, speaks TLS to "localhost" (the handshake runs with
    /// the first write or read).
    pub fn connect(addr: SocketAddr, tls: Option<Arc<ClientConfig>>) -> io::Result<Self> {
        let socket = TcpStream::connect(addr)?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        socket.set_write_timeout(Some(READ_TIMEOUT))?;
        socket.set_nodelay(true)?;
        let stream = match tls {
            Some(config) => {
                let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
                let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
                Stream::Tls(Box::new(StreamOwned::new(session, socket)))
            }
            None => Stream::Plain(socket),
        };
        Ok(Self {
            stream,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// The TCP socket underneath.
    pub fn socket(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// The ALPN protocol agreed on (TLS only, after the handshake).
    pub fn alpn(&self) -> Option<Vec<u8>> {
        match &self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.conn.alpn_protocol().map(<[u8]>::to_vec),
        }
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(socket) => socket.write_all(bytes),
            Stream::Tls(tls) => tls.write_all(bytes).and_then(|()| tls.flush()),
        }
    }

    /// Ends the sending side (after `close_notify` under TLS); reading goes on.
    pub fn half_close(&mut self) -> io::Result<()> {
        if let Stream::Tls(tls) = &mut self.stream {
            tls.conn.send_close_notify();
            tls.flush()?;
        }
        self.socket().shutdown(Shutdown::Write)
    }

    /// Reads the next response (the request was not HEAD).
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.next_response(false)
    }

    /// Reads the next response to a HEAD request (no body follows its head).
    pub fn read_head_response(&mut self) -> io::Result<Response> {
        self.next_response(true)
    }

    /// Reads the next response, panicking with context if there is none.
    pub fn response(&mut self) -> Response {
        self.read_response()
            .unwrap_or_else(|e| panic!("no response: {e}"))
    }

    /// Sends `request` and reads one response, panicking if either fails.
    pub fn request(&mut self, request: &[u8]) -> Response {
        self.send(request)
            .unwrap_or_else(|e| panic!("send failed: {e}"));
        self.response()
    }

    /// Reads until the server closes; returns the bytes after the last parsed response.
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        while !self.closed {
            self.fill()?;
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Waits up to `within` for the server to close the connection; true if it did with
    /// no unread bytes left, false if it stayed open or sent more.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.socket().set_read_timeout(Some(left)).is_err() {
                break;
            }
            if self.fill().is_err() {
                break;
            }
        }
        let _ = self.socket().set_read_timeout(Some(READ_TIMEOUT));
        self.closed && self.buf.is_empty()
    }

    /// Whether the server closed the connection (as far as reads so far have shown).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn next_response(&mut self, head_only: bool) -> io::Result<Response> {
        loop {
            let parsed = parse_response(&self.buf, head_only, self.closed)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let need = match parsed {
                Parsed::Complete(response, used) => {
                    self.buf.drain(..used);
                    return Ok(response);
                }
                Parsed::Incomplete { .. } if self.closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "closed with {} bytes of an incomplete response",
                            self.buf.len()
                        ),
                    ));
                }
                Parsed::Incomplete { need } => need,
            };
            while self.buf.len() < need && !self.closed {
                self.fill()?;
            }
        }
    }

    /// One read into the buffer; an end of stream or a reset marks the connection closed.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0; 64 * 1024];
        let read = match &mut self.stream {
            Stream::Plain(socket) => socket.read(&mut chunk),
            Stream::Tls(tls) => tls.read(&mut chunk),
        };
        match read {
            Ok(0) => self.closed = true,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_close(&e) => self.closed = true,
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Errors that mean the server is gone (TLS without `close_notify` included).
fn is_close(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}
