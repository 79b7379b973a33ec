//! # quick-server-std
//!
//! The blocking transport of quick-server: a pool of worker threads, each of which, when
//! idle, waits on the listening socket itself (an epoll set per thread, the listener in it
//! with `EPOLLEXCLUSIVE`, so a connection wakes one idle worker), accepts, and drives that
//! connection from its first request to its close through the core's drain loop (plain
//! TCP with `sendfile`, or TLS with rustls), with no hand-off between threads. Like the
//! original's thread per connection, but bounded: `threads` workers are kept warm, one
//! more starts whenever a worker takes a connection and no other is idle (up to
//! `max_threads`), and the extra ones end after 30 s idle. While no worker waits to
//! accept (a burst, or all busy at the maximum), a housekeeping thread accepts for them
//! and queues; it also runs the server's timer and closes the listener at the stop.
//! Between two requests of a connection the worker waits in the same epoll set, its
//! socket in place of the listener; each worker holds that set's descriptor beside its
//! connection's. Request jobs run inline on the worker, which blocks per connection
//! anyway; background jobs have a pool of their own. A proxied request's upstream socket
//! is connected by the same worker (blocking, bounded by the upstream timeout) and then
//! watched beside the client socket.

mod accept;
mod background;
mod control;
mod drive;
mod keeper;
mod linger;
mod poll;
mod pool;
mod reject;
mod running;
mod sendfile;
mod socket;
mod tls;
mod upstream;
mod wait;
mod wire;

pub use quick_server_transport::{Options, Running, ShutdownHandle};
pub use running::start;
