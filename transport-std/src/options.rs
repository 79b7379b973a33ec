//! The knobs of the transport.

use std::sync::Arc;
use std::time::Duration;

/// Transport options; every field has a default (see [`Options::default`]).
#[derive(Clone, Debug)]
pub struct Options {
    /// TLS configuration; `None` serves plain TCP. The caller picks the crypto provider.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Worker threads, each driving one connection at a time. Default `max(4, 4 × cores)`.
    pub threads: usize,
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
        Self {
            tls: None,
            threads: cores.saturating_mul(4).max(4),
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
        assert_eq!(options.max_connections, 1024);
        assert_eq!(options.shutdown_grace, Duration::from_secs(10));
    }
}
