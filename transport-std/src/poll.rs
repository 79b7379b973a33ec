//! Blocking until a socket is readable, the stop signal fires or a deadline passes, with
//! `poll(2)`: the one wait every thread of the transport does.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// What ended a [`wait`]. Both false: the deadline passed or a signal interrupted the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Woken {
    /// The socket has bytes, an end of stream or an error to read.
    pub(crate) readable: bool,
    /// The stop signal fired.
    pub(crate) stop: bool,
}

/// Blocks until `socket` is readable, `stop` is readable or `deadline` passes. A `None`
/// descriptor is not watched; a `None` deadline waits without limit.
pub(crate) fn wait(
    socket: Option<RawFd>,
    stop: Option<RawFd>,
    deadline: Option<Instant>,
) -> io::Result<Woken> {
    let mut fds = [pollfd(socket), pollfd(stop)];
    let timeout = timeout_ms(deadline, Instant::now());
    let nfds = fds.len() as libc::nfds_t;
    // SAFETY: `fds` is a live local array of initialised `pollfd` values, borrowed mutably
    // for the duration of the call, and `nfds` is its exact length. Negative descriptors
    // are ignored by poll(2).
    let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout) };
    if n < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(Woken::default());
        }
        return Err(error);
    }
    let [socket, stop] = fds;
    Ok(Woken {
        readable: fired(&socket),
        stop: fired(&stop),
    })
}

fn pollfd(fd: Option<RawFd>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Hang-up, error and invalid descriptor count as readable: the read that follows
/// reports what happened.
fn fired(fd: &libc::pollfd) -> bool {
    fd.fd >= 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Milliseconds until `deadline`, rounded up so the wait never ends before it; -1 waits
/// without limit.
fn timeout_ms(deadline: Option<Instant>, now: Instant) -> libc::c_int {
    let Some(deadline) = deadline else { return -1 };
    let ms = deadline
        .saturating_duration_since(now)
        .as_nanos()
        .div_ceil(1_000_000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;

    #[test]
    fn timeout_rounds_up_and_saturates() {
        let now = Instant::now();
        assert_eq!(timeout_ms(None, now), -1);
        assert_eq!(timeout_ms(Some(now), now), 0);
        assert_eq!(timeout_ms(Some(now - Duration::from_secs(1)), now), 0);
        assert_eq!(timeout_ms(Some(now + Duration::from_micros(1)), now), 1);
        assert_eq!(timeout_ms(Some(now + Duration::from_millis(250)), now), 250);
        assert_eq!(
            timeout_ms(Some(now + Duration::from_secs(1 << 40)), now),
            libc::c_int::MAX
        );
    }

    #[test]
    fn reports_which_descriptor_fired() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        let soon = Some(Instant::now() + Duration::from_millis(20));
        let quiet = wait(Some(b.as_raw_fd()), Some(d.as_raw_fd()), soon).unwrap();
        assert_eq!(quiet, Woken::default());
        c.write_all(b"x").unwrap();
        let stop = wait(Some(b.as_raw_fd()), Some(d.as_raw_fd()), None).unwrap();
        assert_eq!(
            stop,
            Woken {
                readable: false,
                stop: true
            }
        );
        a.write_all(b"y").unwrap();
        let both = wait(Some(b.as_raw_fd()), Some(d.as_raw_fd()), None).unwrap();
        assert_eq!(
            both,
            Woken {
                readable: true,
                stop: true
            }
        );
        let socket_only = wait(Some(b.as_raw_fd()), None, None).unwrap();
        assert_eq!(
            socket_only,
            Woken {
                readable: true,
                stop: false
            }
        );
        drop(a);
        let (e, f) = UnixStream::pair().unwrap();
        drop(e);
        let hangup = wait(Some(f.as_raw_fd()), None, None).unwrap();
        assert!(hangup.readable, "a closed peer is readable (end of stream)");
    }
}
