//! A nonblocking TCP stream and what the loop knows about its readiness.
//!
//! Readiness is edge-triggered: an event says "something changed", so the socket
//! remembers it (`readable`, `writable`) until a call proves otherwise. A short read or a
//! short write also ends the readiness (the kernel buffer was drained or filled), which
//! saves the `EAGAIN` call per request; a new arrival or new room raises a new edge. When
//! the peer's FIN was announced, reads go on until they return 0 so the end is seen.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::RawFd;

use mio::event::Event;
use mio::net::TcpStream;

use crate::sys;

/// One accepted connection's socket.
#[derive(Debug)]
pub(crate) struct Socket {
    stream: TcpStream,
    /// A read may return data.
    readable: bool,
    /// A write may take bytes.
    writable: bool,
    /// The peer announced its FIN: read until 0 even after short reads.
    peer_closed: bool,
    /// A read returned 0.
    eof: bool,
    /// Bytes left since the last [`take_wrote`](Self::take_wrote).
    wrote: bool,
    /// Bytes ever left: from the second write on, Nagle could hold ours back.
    wrote_before: bool,
    /// `TCP_NODELAY` is set.
    nodelay: bool,
}

impl Socket {
    /// Wraps a freshly accepted stream: writable until proven otherwise, and read at once
    /// (a client sends its request right after the handshake, so it is often already
    /// there; a connection answered and closed then never meets the poller).
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            readable: true,
            writable: true,
            peer_closed: false,
            eof: false,
            wrote: false,
            wrote_before: false,
            nodelay: false,
        }
    }

    /// Wraps a stream whose non-blocking connect is under way: not writable until the
    /// poller says the connect ended (see [`connect_done`](Self::connect_done)).
    pub(crate) fn connecting(stream: TcpStream) -> Self {
        Self {
            readable: false,
            writable: false,
            ..Self::new(stream)
        }
    }

    /// For a socket made with [`connecting`](Self::connecting): whether the connect
    /// succeeded (`Ok(true)`) or is still under way (`Ok(false)`: wait for the next
    /// writable edge); an error is why it failed. Checked only after a readiness event.
    pub(crate) fn connect_done(&mut self) -> io::Result<bool> {
        if !self.writable {
            return Ok(false);
        }
        if let Some(error) = self.stream.take_error()? {
            return Err(error);
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                self.writable = false; // a spurious edge: the connect goes on
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The stream, to register it with the poller.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The stream itself, to keep it idle (a pooled upstream connection).
    pub(crate) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Records what a readiness event announced.
    pub(crate) fn on_ready(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_read_closed() {
            self.peer_closed = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }

    /// Whether a read may return something.
    pub(crate) fn may_read(&self) -> bool {
        self.readable && !self.eof
    }

    /// Whether a write may take bytes.
    pub(crate) fn may_write(&self) -> bool {
        self.writable
    }

    /// Whether the peer closed its sending side (a read returned 0).
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Whether bytes left since the last call; resets the mark.
    pub(crate) fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }

    /// Sends our FIN (the first step of a lingering close).
    pub(crate) fn shutdown_write(&self) {
        // A peer that already reset the connection has nothing left to protect.
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Sends up to `len` bytes of the file `fd` from `offset` with `sendfile`; the file
    /// ending early is `UnexpectedEof`; `sendfile_falls_back` tells the rest apart.
    pub(crate) fn send_file(&mut self, fd: RawFd, offset: u64, len: u64) -> io::Result<usize> {
        self.before_write();
        let result = loop {
            match sys::send_file(&self.stream, fd, offset, len) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) if len > 0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while sent",
            )),
            other => self.note_write(
                other,
                len.min(sys::MAX_CHUNK).try_into().unwrap_or(usize::MAX),
            ),
        }
    }

    /// Turns Nagle's algorithm off before any write but the first. Nagle holds a small
    /// segment back only while earlier bytes are unacknowledged, so the first write never
    /// waits, and a connection closed after one answer (`Connection: close`) saves the
    /// `setsockopt`.
    fn before_write(&mut self) {
        if self.wrote_before && !self.nodelay {
            // Failing leaves Nagle on: answers may be late, never lost.
            let _ = self.stream.set_nodelay(true);
            self.nodelay = true;
        }
    }

    /// Writes the last bytes before a close: a partial last segment waits for the FIN
    /// and leaves with it, one packet fewer per closed connection.
    pub(crate) fn write_last(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.before_write();
        let result = loop {
            match sys::send_more(&self.stream, buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::Unsupported => return self.write(buf),
                other => break other,
            }
        };
        self.note_write(result, buf.len())
    }

    /// Updates readiness after a write of `asked` bytes.
    fn note_write(&mut self, result: io::Result<usize>, asked: usize) -> io::Result<usize> {
        match &result {
            Ok(n) => {
                self.wrote |= *n > 0;
                self.wrote_before |= *n > 0;
                if *n < asked {
                    self.writable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
            Err(_) => {}
        }
        result
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&self.stream).read(buf) {
                Ok(0) if !buf.is_empty() => {
                    self.eof = true;
                    self.readable = false;
                    return Ok(0);
                }
                Ok(n) => {
                    if n < buf.len() && !self.peer_closed {
                        self.readable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.readable = false;
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.before_write();
        let result = loop {
            match (&self.stream).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.note_write(result, buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let asked = bufs.iter().map(|b| b.len()).sum();
        self.before_write();
        let result = loop {
            match (&self.stream).write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.note_write(result, asked)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn pair() -> (Socket, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (Socket::new(TcpStream::from_std(server)), client)
    }

    #[test]
    fn would_block_and_short_reads_end_readiness() {
        let (mut socket, mut client) = pair();
        assert!(socket.may_read() && socket.may_write(), "tried at once");
        let mut buf = [0u8; 64];
        assert_eq!(
            socket.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(!socket.may_read());
        client.write_all(b"hello").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        socket.readable = true;
        assert_eq!(socket.read(&mut buf).unwrap(), 5);
        assert!(!socket.may_read(), "a short read drained the buffer");
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(20));
        socket.readable = true;
        assert_eq!(socket.read(&mut buf).unwrap(), 0);
        assert!(socket.at_eof() && !socket.may_read());
    }

    #[test]
    fn a_connect_is_done_once_the_peer_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut socket = Socket::connecting(TcpStream::connect(addr).unwrap());
        assert!(!socket.may_write());
        assert!(!socket.connect_done().unwrap(), "no event yet");
        let _accepted = listener.accept().unwrap();
        socket.writable = true; // what the writable edge records
        assert!(socket.connect_done().unwrap());

        drop(listener);
        let mut refused = Socket::connecting(TcpStream::connect(addr).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        refused.writable = true;
        assert!(refused.connect_done().is_err(), "nobody listens any more");
    }

    #[test]
    fn writes_mark_progress() {
        let (mut socket, _client) = pair();
        assert!(!socket.take_wrote());
        assert_eq!(socket.write(b"abc").unwrap(), 3);
        assert!(socket.take_wrote());
        assert!(!socket.take_wrote(), "the mark resets");
        assert!(socket.may_write());
    }

    #[test]
    fn nagle_goes_off_before_the_second_write() {
        let (mut socket, _client) = pair();
        assert!(!socket.stream.nodelay().unwrap());
        socket.write_all(b"first answer").unwrap();
        assert!(
            !socket.stream.nodelay().unwrap(),
            "the first write cannot wait"
        );
        socket.write_all(b"second answer").unwrap();
        assert!(socket.stream.nodelay().unwrap());
    }
}
