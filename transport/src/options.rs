//! The knobs of a transport, the same type for both.

use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Default [`Options::max_connections`]: the usual soft limit of open files per process,
/// so the cap answers 503 before `accept` would fail for want of descriptors (on mio; a
/// std worker holds a descriptor of its own beside its connection's, so std needs twice
/// that limit, which the `quick-server` facade raises to the hard one at start).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default [`Options::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Default [`Options::max_threads`] (std only): one thread per connection up to the
/// default connection cap.
pub const STD_MAX_THREADS: usize = DEFAULT_MAX_CONNECTIONS;

/// Transport options; each field means the same on both transports unless it says it
/// applies to one only. Every field has a default (see [`Options::default`]).
#[derive(Clone)]
pub struct Options {
    /// TLS configuration (ALPN and crypto provider chosen by the caller); `None` serves
    /// plain TCP. Default `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most connections served (or, on std, waiting for a thread) at once; one more is
    /// answered `503 Service Unavailable` and closed. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// After [`ShutdownHandle::shutdown`](crate::ShutdownHandle::shutdown), how long
    /// requests in flight may take before the remaining connections are closed. Default
    /// [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// Threads that run request handlers; `None` keeps the transport's default, which
    /// differs because a std thread holds one connection for its whole life while a mio
    /// thread runs one job and returns: see [`Options::mio_threads`] and
    /// [`Options::std_threads`].
    pub threads: Option<usize>,
    /// mio only: event loops, each a thread serving its own share of the connections.
    /// Default one per core.
    pub loops: usize,
    /// std only: most connection threads at once; when a connection arrives and none is
    /// idle, one more starts, up to this, and beyond it connections wait for one. Must be
    /// at least `threads`. Default [`STD_MAX_THREADS`].
    pub max_threads: usize,
}

impl Options {
    /// The handler threads of the mio transport: [`Options::threads`], by default
    /// `max(2, cores)`, shared out among the loops (and as many again for background
    /// worker computations).
    pub fn mio_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| cores().max(2))
    }

    /// The connection threads the std transport keeps warm: [`Options::threads`], by
    /// default `max(4, 4 × cores)` (at most [`Options::max_threads`]), since each one waits
    /// on one connection between its requests.
    pub fn std_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            cores()
                .saturating_mul(4)
                .max(4)
                .min(self.max_threads.max(1))
        })
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            threads: None,
            loops: cores(),
            max_threads: STD_MAX_THREADS,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("threads", &self.threads)
            .field("loops", &self.loops)
            .field("max_threads", &self.max_threads)
            .finish()
    }
}

/// Cores this process may use (1 when unknown).
fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let options = Options::default();
        assert!(options.tls.is_none());
        assert_eq!(options.max_connections, 1024);
        assert_eq!(options.shutdown_grace, Duration::from_secs(10));
        assert_eq!(options.loops, cores());
        assert_eq!(options.max_threads, 1024);
        assert_eq!(options.mio_threads(), cores().max(2));
        assert_eq!(options.std_threads(), (4 * cores()).clamp(4, 1024));
        let set = Options {
            threads: Some(3),
            ..Options::default()
        };
        assert_eq!(
            (set.mio_threads(), set.std_threads()),
            (3, 3),
            "a set value wins"
        );
    }
}
