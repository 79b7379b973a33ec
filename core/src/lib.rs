//! # quick-server-core
//!
//! The sans-IO engine of quick-server: an HTTP/1.1 server connection as a state machine,
//! and the routes it answers (static files now; dynamic handlers, workers and the proxy
//! leave the core as actions). It opens no socket, starts no thread, reads no clock and
//! draws no random number: bytes, time and results of slow work are passed in.
//!
//! ## Verbs
//! A [`Connection`] is driven through three kinds of calls:
//! - **input**: [`read_buf`](Connection::read_buf) + [`commit`](Connection::commit) (or
//!   [`feed`](Connection::feed)), [`read_eof`](Connection::read_eof),
//!   [`handle_timeout`](Connection::handle_timeout);
//! - **drain**: [`poll_transmit`](Connection::poll_transmit) +
//!   [`transmitted`](Connection::transmitted) until it returns `None`, then
//!   [`poll_timeout`](Connection::poll_timeout);
//! - **actions**: [`poll_job`](Connection::poll_job) hands out slow work (a user handler,
//!   a worker step); the transport runs [`Job::run`] off its event loop (a
//!   [`JobKind::Inline`] job on the spot) and passes the result to
//!   [`complete`](Connection::complete);
//! - **commands**: [`shutdown`](Connection::shutdown).
//!
//! A proxied request's upstream is a second, smaller machine, reached through
//! [`Connection::upstream`] while the request is proxied (`None` otherwise: close any
//! upstream socket). Its [`Upstream`] verbs, drained in this order:
//! [`poll_release`](Upstream::poll_release) says whether the last exchange's socket goes
//! back to the pool ([`proxy::IdlePool`]) or closes; [`poll_connect`](Upstream::poll_connect)
//! says where to connect, answered by [`connected`](Upstream::connected),
//! [`reused`](Upstream::reused) (a pooled socket) or [`failed`](Upstream::failed);
//! [`transmit`](Upstream::transmit) +
//! [`transmitted`](Upstream::transmitted) send the request;
//! [`read_buf`](Upstream::read_buf) + [`commit`](Upstream::commit) and
//! [`read_eof`](Upstream::read_eof) take the answer; [`wants_read`](Upstream::wants_read)
//! and [`wants_write`](Upstream::wants_write) give the upstream socket's interests. Each
//! is a mutation of the connection: drain it afterwards like any other.
//!
//! [`wants_read`](Connection::wants_read) and [`wants_write`](Connection::wants_write) map
//! one-to-one onto readiness interests; [`is_closed`](Connection::is_closed) says when to
//! close the socket, [`needs_linger`](Connection::needs_linger) whether to wait for the
//! peer's FIN first, and [`is_closing`](Connection::is_closing) that the queued output is
//! the last (it may leave with the FIN).
//!
//! ## The drain rule
//! After **every** input or command, drain everything before the next mutation: write
//! what `poll_transmit` gives until it is empty or the socket would block, then re-arm the
//! timer from `poll_timeout` and the interests from `wants_read`/`wants_write`, then close
//! the socket if `is_closed`. Every transport in this workspace runs this loop in the
//! same order.
//!
//! ## Example
//! ```
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//! use quick_server_core::{Connection, MemoryFs, PeerInfo, Server, Transmit};
//!
//! let mut fs = MemoryFs::new();
//! fs.insert("/www/hello.txt", "hi", SystemTime::UNIX_EPOCH);
//! let now = Instant::now();
//! let mut builder = Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(fs));
//! builder.files().bind_path("/", "/www").unwrap();
//! let mut conn = Connection::new(builder.build(), PeerInfo::default(), now);
//!
//! conn.feed(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", now);
//! let mut wire = Vec::new();
//! while let Some(Transmit::Bytes(bytes)) = conn.poll_transmit() {
//!     wire.extend_from_slice(bytes);
//!     let n = bytes.len();
//!     conn.transmitted(n, now);
//! }
//! assert!(wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! assert!(wire.ends_with(b"\r\n\r\nhi"));
//! ```
#![forbid(unsafe_code)]

pub mod coding;
mod conn;
pub mod console;
mod cors;
pub mod dynamic;
pub mod files;
pub mod fs;
pub mod http;
mod job;
mod limits;
pub mod log;
mod panic;
pub mod proxy;
mod request;
mod server;
pub mod store;
pub mod tokens;
pub mod worker;

pub use conn::{Connection, Transmit, Upstream};
pub use cors::{CorsPolicy, InvalidOrigin, Origin};
pub use fs::{DiskFs, FileSystem, MemoryFs, OpenFile};
pub use http::error::HttpError;
pub use http::head::{Framing, MediaType, Method, RequestHead, Version};
pub use http::response::{Body, FileRegion, Response};
pub use job::{Completion, Job, JobId, JobKind};
pub use limits::Limits;
pub use request::{PeerInfo, Request};
pub use server::{PreMiddleware, Server, ServerBuilder, VERSION};
