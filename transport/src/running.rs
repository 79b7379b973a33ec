//! A server running on a transport's threads, and the handle that stops it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// A server running on its own threads, whichever transport started it.
pub struct Running {
    local_addr: SocketAddr,
    handle: ShutdownHandle,
    wait: Box<dyn FnOnce() -> io::Result<()> + Send + Sync>,
}

impl Running {
    /// For a transport: the server listening on `local_addr`, stopped by `handle`, whose
    /// threads `wait` joins.
    pub fn new(
        local_addr: SocketAddr,
        handle: ShutdownHandle,
        wait: impl FnOnce() -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self {
            local_addr,
            handle,
            wait: Box::new(wait),
        }
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from any thread (signal handlers use it).
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Blocks until a shutdown completed: accepting stopped, and every connection closed
    /// or the grace period ran out. Returns the error that ended the server, if one did.
    pub fn wait(self) -> io::Result<()> {
        (self.wait)()
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Stops a running server gracefully: no new connections, every open one finishes its
/// request in progress (within the grace period), then [`Running::wait`] returns.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<dyn Fn() + Send + Sync>);

impl ShutdownHandle {
    /// For a transport: a handle that calls `stop`, which must be harmless to repeat.
    pub fn new(stop: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(stop))
    }

    /// Starts the graceful stop; calling it again does nothing more.
    pub fn shutdown(&self) {
        (self.0)();
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShutdownHandle")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_handle_stops_and_wait_returns_what_the_transport_ended_with() {
        let stops = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&stops);
        let handle = ShutdownHandle::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], 8000));
        let running = Running::new(addr, handle, || Err(io::Error::other("loop failed")));
        assert_eq!(running.local_addr(), addr);
        running.handle().shutdown();
        running.handle().shutdown();
        assert_eq!(stops.load(Ordering::SeqCst), 2);
        assert_eq!(running.wait().unwrap_err().to_string(), "loop failed");
    }
}
