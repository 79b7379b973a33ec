//! A connection's TCP stream and the send timeout last set on it, so that bounding each
//! write by the core's deadline costs a `setsockopt` only when a write has to wait and
//! that bound really moves.

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
    /// The bound of the next write that has to wait.
    deadline: Option<Instant>,
    /// Reads return `WouldBlock` instead of waiting.
    eager: bool,
}

impl Socket {
    /// Wraps an accepted stream (blocking, no send timeout).
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            write_timeout: None,
            deadline: None,
            eager: false,
        }
    }

    /// Makes reads return `WouldBlock` rather than wait (`true`), or wait again.
    pub(crate) fn set_eager(&mut self, eager: bool) {
        self.eager = eager;
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
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.deadline = deadline;
        Ok(())
    }

    /// Sets `SO_SNDTIMEO` for the time left until the deadline, unless the one in place is
    /// close enough; `TimedOut` if the deadline passed. Writes call it before they wait;
    /// call it before any other blocking send (`sendfile`).
    pub(crate) fn apply_bound(&mut self) -> io::Result<()> {
        let want = match self.deadline {
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
        if self.eager {
            return recv(self.stream.as_raw_fd(), buf, libc::MSG_DONTWAIT);
        }
        self.stream.read(buf)
    }
}

impl Write for Socket {
    /// Writes without waiting when the socket has room (the usual case, and no
    /// `setsockopt`); otherwise waits, bounded by the deadline.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match send(self.stream.as_raw_fd(), buf, libc::MSG_DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.apply_bound()?;
                send(self.stream.as_raw_fd(), buf, 0)
            }
            sent => sent,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Sets `TCP_NODELAY` on `listener`, which Linux copies into the sockets it accepts.
pub(crate) fn set_nodelay(listener: &std::net::TcpListener) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is open for the call and `on` is a live `c_int` of the size
    // passed.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recv(2)` with `flags`.
fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fd` is an open socket borrowed for the call; `buf` is a live, exclusively
    // borrowed slice of `buf.len()` writable bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `send(2)` with `flags`, never raising `SIGPIPE`.
fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fd` is an open socket borrowed for the call; `buf` is a live slice of
    // `buf.len()` readable bytes.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
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

    /// Bounds the next write by `deadline` and sets the timeout as a waiting write would.
    fn bound(socket: &mut Socket, deadline: Option<Instant>) -> io::Result<()> {
        socket.bound_write(deadline)?;
        socket.apply_bound()
    }

    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Socket::new(server), client)
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn accepted_sockets_inherit_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_nodelay(&listener).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(server.nodelay().unwrap());
    }

    #[test]
    fn the_timeout_is_set_again_only_when_the_bound_moves() {
        let (mut socket, _client) = pair();
        let now = Instant::now();
        bound(&mut socket, Some(now + Duration::from_secs(60))).unwrap();
        let first = socket.stream.write_timeout().unwrap().unwrap();
        assert!(first > Duration::from_secs(59), "{first:?}");
        // A fresh deadline the same distance away keeps the timeout in place.
        std::thread::sleep(Duration::from_millis(5));
        bound(&mut socket, Some(Instant::now() + Duration::from_secs(60))).unwrap();
        assert_eq!(socket.stream.write_timeout().unwrap(), Some(first));
        // A nearer deadline tightens it; none removes it.
        bound(&mut socket, Some(Instant::now() + Duration::from_secs(2))).unwrap();
        let tight = socket.stream.write_timeout().unwrap().unwrap();
        assert!(tight <= Duration::from_secs(2), "{tight:?}");
        bound(&mut socket, None).unwrap();
        assert_eq!(socket.stream.write_timeout().unwrap(), None);
    }

    #[test]
    fn a_passed_deadline_is_a_timeout() {
        let (mut socket, _client) = pair();
        let error = socket.bound_write(Some(Instant::now())).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
