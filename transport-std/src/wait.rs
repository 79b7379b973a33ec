//! Where a pool thread waits: idle, on the listening socket; on a connection, on its
//! socket. Both with the stop signal and the change notifications. On Linux each thread
//! has one epoll set: idle, the listener is in it with `EPOLLEXCLUSIVE` (a new
//! connection wakes one idle thread, not all); once its connection has to wait a second
//! time, the listener leaves and the socket joins, so the set is not rebuilt per wait as
//! `poll(2)` would, and a connection answered after at most one wait (`Connection:
//! close`) costs no change of the set at all. The listener joins and leaves under the acceptor's lock, so never once it is
//! closed: during a restart it lives on in the next process, and a set that kept it would
//! take that process's wake-ups. Waits the set does not fit (a proxy upstream, no stop
//! watched, the listener closed while in the set) use `poll(2)`, as everything does on
//! other systems.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use crate::accept::Acceptor;
use crate::poll::{self, Watch, Woken};

/// One thread's waits.
#[derive(Debug)]
pub(crate) struct Waiter {
    acceptor: Arc<Acceptor>,
    /// The stop signal.
    stop: RawFd,
    /// Change notifications for the file cache, when there are any.
    changes: Option<RawFd>,
    /// `None` once the set may hold a listener that was closed: `poll(2)` from then on.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    set: Option<epoll::Set>,
}

impl Waiter {
    /// A thread's waiter, idle, for connections from `acceptor`.
    pub(crate) fn new(
        acceptor: Arc<Acceptor>,
        stop: RawFd,
        changes: Option<RawFd>,
    ) -> io::Result<Self> {
        Ok(Self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            set: Some(epoll::Set::new(stop, changes)?),
            acceptor,
            stop,
            changes,
        })
    }

    /// Waits, idle, until the listener has a connection, the stop fires, changes are
    /// pending or `deadline` passes; `Woken::readable` means the listener.
    pub(crate) fn idle(&mut self, deadline: Option<Instant>) -> io::Result<Woken> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(set) = &mut self.set {
            // Closed: nothing to accept, and the stop in the set fires.
            self.acceptor.with_listener(|fd| set.watch_listener(fd));
            return set.wait(deadline);
        }
        let listener = self.acceptor.fd();
        poll::wait(
            Some(listener),
            None,
            Some(self.stop),
            self.changes,
            deadline,
        )
    }

    /// A new connection begins on this thread: the last one's socket is closed, which
    /// took it out of the set.
    pub(crate) fn begin(&mut self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(set) = &mut self.set {
            set.forget_socket();
        }
    }

    /// Waits on a connection's `socket` (when reading), its `upstream`, the stop (unless
    /// `stop` is false) and the changes until one is ready or `deadline` passes.
    pub(crate) fn connection(
        &mut self,
        socket: Option<RawFd>,
        upstream: Option<Watch>,
        stop: bool,
        deadline: Option<Instant>,
    ) -> io::Result<Woken> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let (Some(socket), None, true) = (socket, upstream, stop) {
            if let Some(set) = &mut self.set {
                if set.waited_before() {
                    if !set.unwatch_listener(&self.acceptor) {
                        self.set = None;
                    } else {
                        set.watch_socket(socket)?;
                        return set.wait(deadline);
                    }
                }
            }
        }
        let stop = stop.then_some(self.stop);
        poll::wait(socket, upstream, stop, self.changes, deadline)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::time::Instant;

    use crate::accept::Acceptor;
    use crate::poll::{timeout_ms, Woken};

    /// Reports the listener, or the connection's socket: the set holds one at a time.
    const SOCKET: u64 = 0;
    const STOP: u64 = 1;
    const CHANGES: u64 = 2;

    /// A thread's epoll set, holding the stop and the changes, and either the listener
    /// or the socket of the connection it serves (or neither, between the two).
    #[derive(Debug)]
    pub(super) struct Set {
        epoll: OwnedFd,
        /// The listener is in the set.
        listening: bool,
        /// The socket in the set.
        socket: Option<RawFd>,
        /// The connection served has waited before: its next waits are worth changing
        /// the set for.
        waited: bool,
    }

    impl Set {
        /// A set with the stop and the changes in it.
        pub(super) fn new(stop: RawFd, changes: Option<RawFd>) -> io::Result<Self> {
            // SAFETY: no pointers; the result is a new descriptor or -1.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just opened and nothing else owns it.
            let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
            let set = Self {
                epoll,
                listening: false,
                socket: None,
                waited: false,
            };
            set.control(libc::EPOLL_CTL_ADD, stop, libc::EPOLLIN, STOP)?;
            if let Some(changes) = changes {
                set.control(libc::EPOLL_CTL_ADD, changes, libc::EPOLLIN, CHANGES)?;
            }
            Ok(set)
        }

        /// Puts the open `listener` in the set (the connection's socket is gone by
        /// then). Should that fail (out of memory), the wait sees no connection: the
        /// other threads accept, and the next idle wait tries again.
        pub(super) fn watch_listener(&mut self, listener: RawFd) {
            if !self.listening {
                let exclusive = libc::EPOLLIN | libc::EPOLLEXCLUSIVE;
                let added = self.control(libc::EPOLL_CTL_ADD, listener, exclusive, SOCKET);
                self.listening = added.is_ok();
            }
        }

        /// Takes the listener out, so that a waiter busy with a connection takes no
        /// wake-up meant for an idle one; false if it could not (it was closed).
        pub(super) fn unwatch_listener(&mut self, acceptor: &Acceptor) -> bool {
            if self.listening {
                let removed =
                    acceptor.with_listener(|fd| self.control(libc::EPOLL_CTL_DEL, fd, 0, SOCKET));
                if !matches!(removed, Some(Ok(()))) {
                    return false;
                }
                self.listening = false;
            }
            true
        }

        /// Puts the connection's `socket` in the set, once per connection.
        pub(super) fn watch_socket(&mut self, socket: RawFd) -> io::Result<()> {
            if self.socket != Some(socket) {
                self.control(libc::EPOLL_CTL_ADD, socket, libc::EPOLLIN, SOCKET)?;
                self.socket = Some(socket);
            }
            Ok(())
        }

        /// A new connection: the last one's socket was closed, which removed it.
        pub(super) fn forget_socket(&mut self) {
            self.socket = None;
            self.waited = false;
        }

        /// Whether the connection waited before (true from its second wait on).
        pub(super) fn waited_before(&mut self) -> bool {
            std::mem::replace(&mut self.waited, true)
        }

        /// Blocks until something in the set is ready or `deadline` passes.
        pub(super) fn wait(&self, deadline: Option<Instant>) -> io::Result<Woken> {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 3];
            let timeout = timeout_ms(deadline, Instant::now());
            // SAFETY: the epoll descriptor is open while `self` lives; `events` is a live
            // local array of the length passed, which the kernel fills.
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
                    SOCKET => woken.readable = true,
                    STOP => woken.stop = true,
                    _ => woken.changes = true,
                }
            }
            Ok(woken)
        }

        /// `epoll_ctl(2)` on `fd` for `events`, reported as `token`.
        fn control(
            &self,
            op: libc::c_int,
            fd: RawFd,
            events: libc::c_int,
            token: u64,
        ) -> io::Result<()> {
            let mut event = libc::epoll_event {
                // The flags are bit patterns; the cast keeps every bit.
                events: events as u32,
                u64: token,
            };
            // SAFETY: both descriptors are open for the call and `event` is a live
            // `epoll_event` the kernel only reads.
            let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;
    use crate::accept::{Accept, Accepted, Loopback};

    fn accept(acceptor: &Acceptor) -> Accepted {
        loop {
            if let Accept::Admitted(accepted) = acceptor.accept() {
                return accepted;
            }
        }
    }

    #[test]
    fn idle_then_on_a_connection_then_idle_again() {
        let Loopback {
            acceptor,
            control,
            addr,
            ..
        } = Loopback::new(8);
        let (mut changes_tx, changes_rx) = UnixStream::pair().unwrap();
        let mut waiter = Waiter::new(
            Arc::clone(&acceptor),
            control.stop_fd(),
            Some(changes_rx.as_raw_fd()),
        )
        .unwrap();
        let soon = || Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(waiter.idle(soon()).unwrap(), Woken::default());
        let mut client = TcpStream::connect(addr).unwrap();
        // Level-triggered: the connection is reported until it is accepted.
        assert!(waiter.idle(None).unwrap().readable);
        assert!(waiter.idle(None).unwrap().readable);
        let server = accept(&acceptor).socket;
        waiter.begin();
        // On the connection, another connecting client does not wake this thread.
        let _other = TcpStream::connect(addr).unwrap();
        let fd = server.as_raw_fd();
        // The first wait is `poll(2)`'s, the next ones the set's.
        for _ in 0..2 {
            let quiet = waiter.connection(Some(fd), None, true, soon()).unwrap();
            assert_eq!(quiet, Woken::default());
        }
        client.write_all(b"x").unwrap();
        assert!(
            waiter
                .connection(Some(fd), None, true, None)
                .unwrap()
                .readable
        );
        drop(server);
        // Idle again: the waiting client is reported, and so are the changes.
        assert!(waiter.idle(None).unwrap().readable);
        let server = accept(&acceptor).socket;
        waiter.begin();
        changes_tx.write_all(b"c").unwrap();
        let changes = waiter.connection(Some(server.as_raw_fd()), None, true, soon());
        assert!(changes.unwrap().changes);
        // The listener joins the set again only when the thread is idle again; should it
        // close (the stop) while still in the set, `poll(2)` takes over.
        drop(server);
        let _third = TcpStream::connect(addr).unwrap();
        assert!(waiter.idle(None).unwrap().readable);
        let server = accept(&acceptor).socket;
        waiter.begin();
        let first = waiter.connection(Some(server.as_raw_fd()), None, true, soon());
        assert!(first.unwrap().changes);
        control.stop();
        acceptor.close();
        let woken = waiter
            .connection(Some(server.as_raw_fd()), None, true, None)
            .unwrap();
        assert!(woken.stop && woken.changes, "{woken:?}");
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert!(waiter.set.is_none());
        let woken = waiter
            .connection(Some(server.as_raw_fd()), None, false, None)
            .unwrap();
        assert!(!woken.stop && woken.changes, "{woken:?}");
    }
}
