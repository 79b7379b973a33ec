//! # quick-server-std
//!
//! The blocking transport of quick-server: one accept thread hands sockets to a pool of
//! worker threads, and each worker drives one connection at a time, from its first request
//! to its close, through the core's drain loop (plain TCP with `sendfile`, or TLS with
//! rustls). Like the original's thread per connection, but bounded: `threads` workers are
//! kept warm, one more starts whenever a connection arrives and none is idle (up to
//! `max_threads`; beyond, connections queue), and the extra ones end after 30 s idle.
//! Request jobs run inline on the worker, which blocks per connection anyway; background
//! jobs have a pool of their own. A proxied request's upstream socket is connected by the
//! same worker (blocking, bounded by the upstream timeout) and then watched beside the
//! client socket.

mod accept;
mod background;
mod control;
mod drive;
mod linger;
mod poll;
mod pool;
mod reject;
mod running;
mod sendfile;
mod socket;
mod tls;
mod upstream;
mod wire;

pub use quick_server_transport::{Options, Running, ShutdownHandle};
pub use running::start;
