//! The knobs of the transport.

use std::sync::Arc;
use std::time::Duration;

/// Transport options; every field has a default (see [`Options::default`]).
#[derive(Clone, Debug)]
pub struct Options {
    /// TLS configuration; `None` serves plain TCP. The caller picks the crypto provider.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Worker threads kept warm: started at once, and never ended before a shutdown. Each
    /// drives one connection at a time, from its first request to its close. Default
    /// `max(4, 4 × cores)`.
    pub threads: usize,
    /// Most worker threads at once (default 1 024 like `max_connections`, or `threads` if
    /// more). When a connection arrives and no worker is idle, one more starts, up to
    /// this; beyond, connections wait for a worker. Workers beyond `threads` end after
    /// 30 s idle. [`start`](crate::start) refuses less than `threads`.
    pub max_threads: usize,
    /// Connections queued or being served at once (default 1 024); one more is answered
    /// `503 Service Unavailable` with `Connection: close` and closed.
    pub max_connections: usize,
    /// After [`ShutdownHandle::shutdown`](crate::ShutdownHandle::shutdown), how long
    /// requests in flight may take before their sockets are closed. Default 10 s.
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.saturating_mul(4).max(4);
        Self {
            tls: None,
            threads,
            max_threads: threads.max(1024),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let options = Options::default();
        assert!(options.tls.is_none());
        assert!(options.threads >= 4 && options.threads % 4 == 0);
        assert_eq!(options.max_threads, options.threads.max(1024));
        assert_eq!(options.max_connections, 1024);
        assert_eq!(options.shutdown_grace, Duration::from_secs(10));
    }
}
