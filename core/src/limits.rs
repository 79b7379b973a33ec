//! Named limits that bound what one peer can make the server hold or wait for.

use std::time::Duration;

/// Every bound the connection enforces. Each has a default chosen for a development
/// server that may still face hostile input; all are tested by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, in bytes (414 beyond it). Default 8 KiB.
    pub max_request_line: usize,
    /// Largest request head (request line and all fields), in bytes (431). Default 16 KiB.
    pub max_head_size: usize,
    /// Most header fields in one request (431). Default 100.
    pub max_headers: usize,
    /// Largest request body, in bytes (413). Default 64 MiB.
    pub max_body_size: u64,
    /// Bytes of one uploaded file kept in memory; beyond, it is spilled to a temporary
    /// file (removed when the request is done). Default 1 MiB.
    pub upload_memory: usize,
    /// Longest chunk-size line including extensions, in bytes (400). Default 4 KiB.
    pub max_chunk_line: usize,
    /// Largest trailer section of a chunked body, in bytes (400). Default 8 KiB.
    pub max_trailer_size: usize,
    /// Time from the first byte of a request head to its end (408 and close). Default 10 s.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests. Default 60 s.
    pub idle_timeout: Duration,
    /// Time a request body may go without a byte arriving (408 and close). Default 30 s.
    pub body_timeout: Duration,
    /// Time a response may go without the peer taking a byte before the connection is
    /// dropped. Default 60 s.
    pub send_timeout: Duration,
    /// Time a proxied request may wait on its upstream (to connect, to answer, or between
    /// body bytes) before the client gets 504 (or the connection closes). Default 30 s.
    pub upstream_timeout: Duration,
    /// Idle keep-alive connections kept per proxy upstream for the next request. Default 16.
    pub upstream_max_idle: usize,
    /// Time an idle upstream connection is kept before it is closed instead of reused.
    /// Default 15 s, below the usual keep-alive timeout of back ends.
    pub upstream_idle_timeout: Duration,
    /// How long an upstream that refused a connection is skipped by its binding's
    /// round-robin. Default 10 s.
    pub upstream_down_time: Duration,
    /// Largest upstream response head (interim `1xx` heads included): the client gets 502
    /// as soon as it is crossed. Default 64 KiB.
    pub upstream_max_head: usize,
    /// Most fields in one upstream response head (502 beyond). Default 128.
    pub upstream_max_fields: usize,
    /// Upgraded connections (WebSocket) tunnelled through the proxy at once; more are
    /// answered 503. Default 256.
    pub max_tunnels: usize,
    /// Time a tunnel may go without a byte either way before both sides close. Default
    /// 300 s.
    pub tunnel_idle_timeout: Duration,
    /// Buffered output above which the connection stops reading new requests. Default 256 KiB.
    pub max_pending_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_head_size: 16 * 1024,
            max_headers: 100,
            max_body_size: 64 * 1024 * 1024,
            upload_memory: 1024 * 1024,
            max_chunk_line: 4 * 1024,
            max_trailer_size: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(30),
            upstream_max_idle: 16,
            upstream_idle_timeout: Duration::from_secs(15),
            upstream_down_time: Duration::from_secs(10),
            upstream_max_head: 64 * 1024,
            upstream_max_fields: 128,
            max_tunnels: 256,
            tunnel_idle_timeout: Duration::from_secs(300),
            max_pending_output: 256 * 1024,
        }
    }
}
