//! # quick-server
//!
//! The server a back-end developer sets up in ten lines: static files from bound folders,
//! JSON and text handlers with path captures and parsed arguments, on a `mio` event loop
//! or a blocking thread pool, over plain TCP or TLS.
//!
//! ```no_run
//! use quick_server::{Abort, QuickServer};
//!
//! let mut server = QuickServer::new("127.0.0.1:8000".parse().unwrap());
//! server.bind_path("/", "www").unwrap();
//! server.add_default_white_list();
//! server.json_get("/api/:version/hello", None, |_req, args| {
//!     let version = args.segments.get("version").cloned().unwrap_or_default();
//!     Ok::<_, Abort>(serde_json::json!({ "version": version }))
//! });
//! server.serve_forever().unwrap();
//! ```
#![warn(missing_docs)]

mod facade;
mod tls;
mod transport;

pub use facade::{msg, Abort, Custom, QuickServer};
pub use quick_server_core::dynamic::{Args, Upload};
pub use quick_server_core::{Limits, Request};
pub use tls::{load_tls, TlsError};
pub use transport::{listen, start, Running, ShutdownHandle, Transport, TransportOptions};
