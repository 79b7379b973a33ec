//! What the pool threads, the housekeeper and the shutdown handle share: the stop signal,
//! the count of admitted connections, and each worker's socket so a shutdown whose grace
//! ran out can close it.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// The control block of one running server.
#[derive(Debug)]
pub(crate) struct Control {
    /// Written once by [`stop`](Self::stop) and never read, so its peer stays readable:
    /// every thread waiting in `poll` on [`stop_fd`](Self::stop_fd) wakes.
    stop_tx: UnixStream,
    stop_rx: UnixStream,
    stopping: AtomicBool,
    stopped_at: Mutex<Option<Instant>>,
    /// Sockets are closed under the workers' feet: the grace period is over.
    forced: AtomicBool,
    /// Connections queued or being served: counted without a lock, as every thread that
    /// accepts or serves changes it once per connection.
    load: AtomicUsize,
    /// Held to wait for, and to signal, `load` dropping to zero.
    drained_lock: Mutex<()>,
    /// Signalled when `load` drops to zero.
    drained: Condvar,
    /// The socket descriptor each busy worker serves, by worker id (workers come and go);
    /// a worker unregisters before it closes its socket, so no number here is reused.
    sockets: Mutex<HashMap<usize, RawFd>>,
}

impl Control {
    /// A control block with no connection yet.
    pub(crate) fn new() -> io::Result<Self> {
        let (stop_tx, stop_rx) = UnixStream::pair()?;
        stop_tx.set_nonblocking(true)?;
        Ok(Self {
            stop_tx,
            stop_rx,
            stopping: AtomicBool::new(false),
            stopped_at: Mutex::new(None),
            forced: AtomicBool::new(false),
            load: AtomicUsize::new(0),
            drained_lock: Mutex::new(()),
            drained: Condvar::new(),
            sockets: Mutex::new(HashMap::new()),
        })
    }

    /// Starts a graceful stop (idempotent).
    pub(crate) fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        *lock(&self.stopped_at) = Some(Instant::now());
        // One byte is enough: nobody reads it, so the descriptor stays readable. A full
        // buffer would mean a byte is already there.
        let _ = (&self.stop_tx).write(&[1]);
    }

    /// Whether a stop was requested.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// When the stop was requested.
    pub(crate) fn stopped_at(&self) -> Option<Instant> {
        *lock(&self.stopped_at)
    }

    /// A descriptor that becomes readable, for good, once a stop is requested.
    pub(crate) fn stop_fd(&self) -> RawFd {
        self.stop_rx.as_raw_fd()
    }

    /// Whether the grace period is over and connections are being cut.
    pub(crate) fn is_forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }

    /// Counts one more connection if fewer than `max` are admitted; false otherwise.
    pub(crate) fn admit(&self, max: usize) -> bool {
        self.load
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |load| {
                (load < max).then_some(load + 1)
            })
            .is_ok()
    }

    /// A connection admitted by [`admit`](Self::admit) is finished.
    pub(crate) fn release(&self) {
        let before = self
            .load
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |load| {
                Some(load.saturating_sub(1))
            })
            .unwrap_or_default();
        if before <= 1 {
            // Under the lock: a waiter that saw a load above zero is waiting by now.
            let _waiters = lock(&self.drained_lock);
            self.drained.notify_all();
        }
    }

    /// Waits until no connection is left or `deadline` passes; true if none is left.
    pub(crate) fn wait_drained(&self, deadline: Instant) -> bool {
        let mut guard = lock(&self.drained_lock);
        while self.load.load(Ordering::Acquire) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .drained
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Records the socket worker `worker` serves, so [`force`](Self::force) can close it,
    /// until the returned guard drops: drop it before the socket closes.
    pub(crate) fn register(&self, worker: usize, socket: RawFd) -> Registered<'_> {
        lock(&self.sockets).insert(worker, socket);
        Registered {
            control: self,
            worker,
        }
    }

    /// Ends the grace period: shuts down every socket being served, so blocked reads and
    /// writes return at once, and makes workers drop what is still queued.
    pub(crate) fn force(&self) {
        self.forced.store(true, Ordering::SeqCst);
        for &socket in lock(&self.sockets).values() {
            // SAFETY: a registered descriptor is open (its worker unregisters before
            // closing it, under this lock); shutdown(2) touches nothing else.
            unsafe { libc::shutdown(socket, libc::SHUT_RDWR) };
        }
    }
}

/// A worker's socket registered with [`Control::register`]; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registered<'a> {
    control: &'a Control,
    worker: usize,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.control.sockets).remove(&self.worker);
    }
}

/// Locks a mutex; a panic elsewhere cannot leave these plain values inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;
    use crate::poll;

    #[test]
    fn admission_is_bounded_and_drains() {
        let control = Control::new().unwrap();
        assert!(control.admit(2) && control.admit(2));
        assert!(!control.admit(2), "the third is over the limit");
        control.release();
        assert!(control.admit(2));
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(!control.wait_drained(soon));
        control.release();
        control.release();
        assert!(control.wait_drained(Instant::now()));
    }

    #[test]
    fn stop_wakes_pollers_for_good() {
        let control = Control::new().unwrap();
        assert!(!control.is_stopping() && control.stopped_at().is_none());
        control.stop();
        control.stop();
        assert!(control.is_stopping() && control.stopped_at().is_some());
        for _ in 0..2 {
            let woken = poll::wait(None, None, Some(control.stop_fd()), None, None).unwrap();
            assert!(woken.stop);
        }
    }

    #[test]
    fn force_closes_registered_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let control = Control::new().unwrap();
        // Worker ids grow without bound as workers come and go.
        let registered = control.register(1_000, server.as_raw_fd());
        control.force();
        assert!(control.is_forced());
        let mut buf = [0; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the peer sees the close");
        drop(registered);
        assert!(lock(&control.sockets).is_empty());
    }
}
