//! # quick-server-transport
//!
//! The shape both transports of quick-server share, so that a caller picks one at run time
//! without wrappers: one [`Options`] type with one set of defaults, and one [`Running`] /
//! [`ShutdownHandle`] pair that `quick_server_mio::start` and `quick_server_std::start`
//! both return; how both read a failed `sendfile(2)` and write a client's address
//! ([`peer_text`]); and the inotify [`Watcher`] that keeps the core's file cache current. It lives apart from the core because it holds
//! threads' results, a rustls configuration, OS error numbers and a descriptor, which the
//! sans-IO core does not know.

mod options;
mod peer;
mod running;
mod sendfile;
mod watch;

pub use options::{Options, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE, STD_MAX_THREADS};
pub use peer::peer_text;
pub use running::{Running, ShutdownHandle};
pub use sendfile::sendfile_falls_back;
pub use watch::Watcher;
