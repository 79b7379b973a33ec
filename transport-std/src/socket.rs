//! A connection's TCP stream and the send timeout last set on it, so that bounding each
//! write by the core's deadline costs a `setsockopt` only when that bound really moves.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// A blocking stream whose writes are bounded by deadlines.
#[derive(Debug)]
pub(crate) struct Socket {
    stream: TcpStream,
    /// `SO_SNDTIMEO` as last set (`None`: unbounded, the default of a new socket).
    write_timeout: Option<Duration>,
}

impl Socket {
    /// Wraps an accepted stream (blocking, no send timeout).
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            write_timeout: None,
        }
    }

    /// The stream itself.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Bounds the next blocking write by `deadline` (`None`: no bound); `TimedOut` if it
    /// has already passed. The timeout in place is kept while it is within a 64th of the
    /// time left: answers one after another each have a fresh deadline the same distance
    /// away, so keep-alive traffic sets it once, and a write overshoots its deadline by
    /// at most that 64th.
    pub(crate) fn bound_write(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let want = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
        };
        let close_enough = match (self.write_timeout, want) {
            (None, None) => true,
            (Some(set), Some(want)) => set.abs_diff(want) <= want / 64,
            _ => false,
        };
        if !close_enough {
            self.stream.set_write_timeout(want)?;
            self.write_timeout = want;
        }
        Ok(())
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Socket::new(server), client)
    }

    #[test]
    fn the_timeout_is_set_again_only_when_the_bound_moves() {
        let (mut socket, _client) = pair();
        let now = Instant::now();
        socket
            .bound_write(Some(now + Duration::from_secs(60)))
            .unwrap();
        let first = socket.stream.write_timeout().unwrap().unwrap();
        assert!(first > Duration::from_secs(59), "{first:?}");
        // A fresh deadline the same distance away keeps the timeout in place.
        std::thread::sleep(Duration::from_millis(5));
        socket
            .bound_write(Some(Instant::now() + Duration::from_secs(60)))
            .unwrap();
        assert_eq!(socket.stream.write_timeout().unwrap(), Some(first));
        // A nearer deadline tightens it; none removes it.
        socket
            .bound_write(Some(Instant::now() + Duration::from_secs(2)))
            .unwrap();
        let tight = socket.stream.write_timeout().unwrap().unwrap();
        assert!(tight <= Duration::from_secs(2), "{tight:?}");
        socket.bound_write(None).unwrap();
        assert_eq!(socket.stream.write_timeout().unwrap(), None);
    }

    #[test]
    fn a_passed_deadline_is_a_timeout() {
        let (mut socket, _client) = pair();
        let error = socket.bound_write(Some(Instant::now())).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
