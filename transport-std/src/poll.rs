//! Blocking until a socket is readable, a proxy upstream is ready, the stop signal fires
//! or a deadline passes, with `poll(2)`: the wait of the housekeeper, and of a worker
//! whose wait its epoll set does not fit.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// What ended a [`wait`]. All false: the deadline passed or a signal interrupted the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Woken {
    /// The socket has bytes, an end of stream or an error to read.
    pub(crate) readable: bool,
    /// The upstream socket is ready for what it was watched for (or failed).
    pub(crate) upstream: bool,
    /// The stop signal fired.
    pub(crate) stop: bool,
    /// Change notifications for the file cache wait to be read.
    pub(crate) changes: bool,
}

/// A descriptor watched for reading, writing or both (a proxy upstream socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watch {
    /// The descriptor.
    pub(crate) fd: RawFd,
    /// Wake when it is readable.
    pub(crate) read: bool,
    /// Wake when it is writable.
    pub(crate) write: bool,
}

/// Blocks until `socket` is readable, `upstream` is ready as asked, `stop` or `changes`
/// is readable or `deadline` passes. A `None` descriptor is not watched; a `None`
/// deadline waits without limit.
pub(crate) fn wait(
    socket: Option<RawFd>,
    upstream: Option<Watch>,
    stop: Option<RawFd>,
    changes: Option<RawFd>,
    deadline: Option<Instant>,
) -> io::Result<Woken> {
    let mut fds = [
        pollfd(socket),
        watched(upstream),
        pollfd(stop),
        pollfd(changes),
    ];
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
    let [socket, upstream, stop, changes] = fds;
    Ok(Woken {
        readable: fired(&socket),
        upstream: fired(&upstream),
        stop: fired(&stop),
        changes: fired(&changes),
    })
}

/// The `pollfd` of a watched upstream; hang-up and errors are always reported.
fn watched(watch: Option<Watch>) -> libc::pollfd {
    let Some(watch) = watch else {
        return pollfd(None);
    };
    let mut events = 0;
    if watch.read {
        events |= libc::POLLIN;
    }
    if watch.write {
        events |= libc::POLLOUT;
    }
    libc::pollfd {
        fd: watch.fd,
        events,
        revents: 0,
    }
}

fn pollfd(fd: Option<RawFd>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Hang-up, error and invalid descriptor count as ready: the read or write that follows
/// reports what happened.
fn fired(fd: &libc::pollfd) -> bool {
    let ready = libc::POLLIN | libc::POLLOUT | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    fd.fd >= 0 && fd.revents & ready != 0
}

/// Milliseconds until `deadline`, rounded up so the wait never ends before it; -1 waits
/// without limit.
pub(crate) fn timeout_ms(deadline: Option<Instant>, now: Instant) -> libc::c_int {
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
        let quiet = wait(Some(b.as_raw_fd()), None, Some(d.as_raw_fd()), None, soon).unwrap();
        assert_eq!(quiet, Woken::default());
        c.write_all(b"x").unwrap();
        let stop = wait(Some(b.as_raw_fd()), None, Some(d.as_raw_fd()), None, None).unwrap();
        assert_eq!(
            stop,
            Woken {
                stop: true,
                ..Woken::default()
            }
        );
        a.write_all(b"y").unwrap();
        let both = wait(Some(b.as_raw_fd()), None, Some(d.as_raw_fd()), None, None).unwrap();
        assert_eq!(
            both,
            Woken {
                readable: true,
                stop: true,
                ..Woken::default()
            }
        );
        let socket_only = wait(Some(b.as_raw_fd()), None, None, None, None).unwrap();
        assert_eq!(
            socket_only,
            Woken {
                readable: true,
                ..Woken::default()
            }
        );
        drop(a);
        let (e, f) = UnixStream::pair().unwrap();
        drop(e);
        let hangup = wait(Some(f.as_raw_fd()), None, None, None, None).unwrap();
        assert!(hangup.readable, "a closed peer is readable (end of stream)");
        let (mut g, h) = UnixStream::pair().unwrap();
        g.write_all(b"z").unwrap();
        let changes = wait(Some(f.as_raw_fd()), None, None, Some(h.as_raw_fd()), None).unwrap();
        assert!(changes.changes && changes.readable);
    }

    #[test]
    fn watches_an_upstream_for_what_is_asked() {
        let (mut up, up_peer) = UnixStream::pair().unwrap();
        let fd = up_peer.as_raw_fd();
        let soon = Some(Instant::now() + Duration::from_millis(20));
        let read_only = Watch {
            fd,
            read: true,
            write: false,
        };
        assert_eq!(
            wait(None, Some(read_only), None, None, soon).unwrap(),
            Woken::default(),
            "nothing to read yet"
        );
        let write = Watch {
            read: false,
            write: true,
            ..read_only
        };
        assert_eq!(
            wait(None, Some(write), None, None, soon).unwrap(),
            Woken {
                upstream: true,
                ..Woken::default()
            },
            "an empty send buffer is writable"
        );
        up.write_all(b"z").unwrap();
        let woken = wait(None, Some(read_only), None, None, None).unwrap();
        assert!(woken.upstream && !woken.readable && !woken.stop);
        drop(up);
        let (_, hung) = UnixStream::pair().unwrap();
        let hung_up = Watch {
            fd: hung.as_raw_fd(),
            read: false,
            write: false,
        };
        assert!(
            wait(None, Some(hung_up), None, None, None)
                .unwrap()
                .upstream,
            "a hang-up is reported even when nothing is asked"
        );
    }
}
