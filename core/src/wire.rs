//! What both transports answer and bound the same way, kept once so they agree by
//! construction: the refusal beyond the connection cap, the lingering close, the size of
//! a file piece read into memory.

use std::time::Duration;

/// The whole answer to a connection beyond the transport's `max_connections`: no body,
/// and the connection closes.
pub const BUSY_ANSWER: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Longest time one refused connection (TLS handshake and [`BUSY_ANSWER`]) may take.
pub const REFUSE_TIME: Duration = Duration::from_secs(1);

/// Lingering close: how long a closing connection keeps reading (and dropping) after its
/// last byte left, so unread client bytes cannot make the kernel reset the last answer.
pub const LINGER_TIME: Duration = Duration::from_secs(1);

/// Lingering close: how many bytes it drops before it stops waiting for the peer's FIN.
pub const LINGER_BYTES: usize = 64 * 1024;

/// Largest piece of a file read into memory at once (under TLS, or without `sendfile`).
pub const FILE_CHUNK: usize = 64 * 1024;
