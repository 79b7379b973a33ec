//! Where an idle pool thread waits: on the listening socket, the stop signal and the
//! change notifications at once. On Linux each thread has an epoll set of its own that
//! watches the listener with `EPOLLEXCLUSIVE`, so a new connection wakes one idle thread
//! rather than all of them; elsewhere, `poll(2)` (every idle thread wakes).

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::poll::Woken;

/// The descriptors an idle thread waits on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watched {
    /// The listening socket.
    pub(crate) listener: RawFd,
    /// The stop signal.
    pub(crate) stop: RawFd,
    /// Change notifications for the file cache, when there are any.
    pub(crate) changes: Option<RawFd>,
}

/// One thread's wait for a connection; `Woken::readable` means the listener.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[derive(Debug)]
pub(crate) struct IdleWait {
    epoll: std::os::fd::OwnedFd,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl IdleWait {
    const LISTENER: u64 = 0;
    const STOP: u64 = 1;
    const CHANGES: u64 = 2;

    /// An epoll set watching `watched`; the listener with `EPOLLEXCLUSIVE`.
    pub(crate) fn new(watched: Watched) -> io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: no pointers; the result is a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let exclusive = libc::EPOLLIN | libc::EPOLLEXCLUSIVE;
        add(
            epoll.as_raw_fd(),
            watched.listener,
            exclusive,
            Self::LISTENER,
        )?;
        add(epoll.as_raw_fd(), watched.stop, libc::EPOLLIN, Self::STOP)?;
        if let Some(changes) = watched.changes {
            add(epoll.as_raw_fd(), changes, libc::EPOLLIN, Self::CHANGES)?;
        }
        Ok(Self { epoll })
    }

    /// Blocks until a watched descriptor is ready or `deadline` passes.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<Woken> {
        use std::os::fd::AsRawFd;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 3];
        let timeout = crate::poll::timeout_ms(deadline, Instant::now());
        // SAFETY: the epoll descriptor is open while `self` lives; `events` is a live local
        // array of the length passed, which the kernel fills.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout,
            )
        };
        let Ok(n) = usize::try_from(n) else {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(Woken::default());
            }
            return Err(error);
        };
        let mut woken = Woken::default();
        for event in events.iter().take(n) {
            match event.u64 {
                Self::LISTENER => woken.readable = true,
                Self::STOP => woken.stop = true,
                _ => woken.changes = true,
            }
        }
        Ok(woken)
    }
}

/// Adds `fd` to the epoll set `epoll` for `events`, reported as `token`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn add(epoll: RawFd, fd: RawFd, events: libc::c_int, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        // The flags are bit patterns; the cast keeps every bit.
        events: events as u32,
        u64: token,
    };
    // SAFETY: both descriptors are open for the call and `event` is a live `epoll_event`
    // the kernel only reads.
    let rc = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One thread's wait for a connection; `Woken::readable` means the listener.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[derive(Debug)]
pub(crate) struct IdleWait {
    watched: Watched,
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl IdleWait {
    /// Without `EPOLLEXCLUSIVE`, a wait in `poll(2)`.
    pub(crate) fn new(watched: Watched) -> io::Result<Self> {
        Ok(Self { watched })
    }

    /// Blocks until a watched descriptor is ready or `deadline` passes.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<Woken> {
        let w = self.watched;
        crate::poll::wait(Some(w.listener), None, Some(w.stop), w.changes, deadline)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;

    #[test]
    fn reports_the_listener_the_stop_and_the_changes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut stop_tx, stop_rx) = UnixStream::pair().unwrap();
        let (mut changes_tx, changes_rx) = UnixStream::pair().unwrap();
        let wait = IdleWait::new(Watched {
            listener: listener.as_raw_fd(),
            stop: stop_rx.as_raw_fd(),
            changes: Some(changes_rx.as_raw_fd()),
        })
        .unwrap();
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(wait.wait(soon).unwrap(), Woken::default());
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let connected = wait.wait(None).unwrap();
        assert!(connected.readable && !connected.stop && !connected.changes);
        // Level-triggered: the connection is reported until it is accepted.
        assert!(wait.wait(None).unwrap().readable);
        listener.accept().unwrap();
        changes_tx.write_all(b"c").unwrap();
        stop_tx.write_all(b"s").unwrap();
        let both = wait.wait(None).unwrap();
        assert!(!both.readable && both.stop && both.changes);
    }
}
