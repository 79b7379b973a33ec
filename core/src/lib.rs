//! # quick-server-core
//!
//! The sans-IO engine of quick-server: an HTTP/1.1 server connection as a state machine,
//! and the routes it answers (static files now; dynamic handlers, workers and the proxy
//! leave the core as actions). It opens no socket, starts no thread, reads no clock and
//! draws no random number: bytes, time and results of slow work are passed in.
//!
//! ## Verbs
//! Three machines, each driven by inputs, drained by `poll_*` calls, and told commands.
//!
//! A [`Connection`] (one client):
//! - **input**: [`read_buf`](Connection::read_buf) + [`commit`](Connection::commit) (or
//!   [`feed`](Connection::feed)), [`read_eof`](Connection::read_eof),
//!   [`handle_timeout`](Connection::handle_timeout), [`complete`](Connection::complete)
//!   (the [`Completion`] of a job);
//! - **drain**: [`poll_job`](Connection::poll_job) (slow work: the transport runs
//!   [`Job::run`] off its loop, a [`JobKind::Inline`] job on the spot);
//!   [`poll_transmit`](Connection::poll_transmit) + [`transmitted`](Connection::transmitted);
//!   [`poll_timeout`](Connection::poll_timeout);
//! - **state**: [`wants_read`](Connection::wants_read), [`wants_write`](Connection::wants_write)
//!   (one-to-one readiness interests), [`is_closing`](Connection::is_closing) (the queued
//!   output is the last; it may leave with the FIN), [`is_closed`](Connection::is_closed)
//!   (close the socket), [`needs_linger`](Connection::needs_linger) (wait for the peer's
//!   FIN first);
//! - **command**: [`shutdown`](Connection::shutdown).
//!
//! Its [`Upstream`] (the proxied request's upstream socket), from
//! [`Connection::upstream`] while a request is proxied (`None` otherwise: close any
//! upstream socket still held):
//! - **drain**: [`poll_release`](Upstream::poll_release) (the last exchange's socket goes
//!   to the pool, [`proxy::IdlePool`], or closes), [`poll_connect`](Upstream::poll_connect)
//!   (where to connect), [`transmit`](Upstream::transmit) +
//!   [`transmitted`](Upstream::transmitted);
//! - **input**: [`connected`](Upstream::connected), [`reused`](Upstream::reused) (a pooled
//!   socket) or [`failed`](Upstream::failed) ([`tls_failed`](Upstream::tls_failed) with
//!   the reason, for an `https://` upstream); [`read_buf`](Upstream::read_buf) +
//!   [`commit`](Upstream::commit), [`read_eof`](Upstream::read_eof);
//! - **state**: [`wants_read`](Upstream::wants_read), [`wants_write`](Upstream::wants_write).
//!
//! The [`Server`] (shared by all connections):
//! [`poll_timeout`](Server::poll_timeout) + [`handle_timeout`](Server::handle_timeout)
//! (worker results and cargo expire), [`complete`](Server::complete) (a background job
//! whose connection is gone); and, optionally, the folder watches that spare cached files
//! a `stat` per hit: drain [`poll_watch`](Server::poll_watch) (add or remove an inotify
//! watch) and answer each addition with [`watch_added`](Server::watch_added); feed what
//! the watch descriptor reads to [`watch_events`](Server::watch_events), or call
//! [`invalidate`](Server::invalidate) for changes no watch reports. Without them every
//! hit is revalidated.
//!
//! ## The drain rule
//! A single-mutation invariant: after **every** input or command, on a connection or its
//! upstream, drain everything before the next mutation, in this order, and start again
//! from 1 as long as anything moved (a `complete`, `transmitted` or upstream input is
//! itself a mutation):
//! 1. run what [`poll_job`](Connection::poll_job) hands out until it returns `None`;
//! 2. the upstream, if any: act on `poll_release`, then `poll_connect`, then write what
//!    `transmit` gives and read while `read_buf` is not empty;
//! 3. write what [`poll_transmit`](Connection::poll_transmit) gives until it returns `None`
//!    or the socket would block;
//! 4. re-arm the timer from `poll_timeout` and the interests from `wants_read`/`wants_write`
//!    (and the upstream's);
//! 5. close the socket if `is_closed` (after a bounded linger if `needs_linger`).
//!
//! The server's timer is armed from [`Server::poll_timeout`] beside the connections'.
//! Watch notifications are read before the connections woken with them (a request sent
//! after a change must see it), and `poll_watch` is drained once the connections are.
//! Every transport in this workspace runs this loop in the same order; so does
//! `cli/examples/embed.rs`, a complete embedding in one file.
//!
//! Under TLS (feature `rustls`), `tls::TlsPump` stands between the socket and the
//! connection (a rustls server session) or its upstream (a client session, for
//! `https://` upstreams): the transport lends it the socket, it moves records and
//! plaintext, and the drain rule stays the same.
//!
//! ## Example
//! A request for a handler: the answer leaves as a job, its completion comes back, and
//! the drain writes it.
//! ```
//! use std::sync::Arc;
//! use std::time::{Instant, SystemTime};
//! use quick_server_core::dynamic::{render, Args};
//! use quick_server_core::{Connection, Method, PeerInfo, Request, Server, Transmit};
//!
//! let now = Instant::now();
//! let mut builder = Server::builder((now, SystemTime::UNIX_EPOCH));
//! builder.route(
//!     Method::Get,
//!     "/hello",
//!     None,
//!     Arc::new(|request: &Request, _: &mut Args| {
//!         render(&request.head, 200, "text/plain", Vec::new(), b"hi".to_vec(), 0)
//!     }),
//! );
//! let server = builder.build();
//! let mut conn = Connection::new(Arc::clone(&server), PeerInfo::default(), now);
//!
//! // Input, then the drain rule until nothing moves.
//! conn.feed(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", now);
//! let mut wire = Vec::new();
//! loop {
//!     let mut moved = false;
//!     while let Some(job) = conn.poll_job() {
//!         let done = job.run(); // a transport runs it on a pool
//!         conn.complete(done, now);
//!         moved = true;
//!     }
//!     while let Some(Transmit::Bytes(bytes)) = conn.poll_transmit() {
//!         wire.extend_from_slice(bytes);
//!         let n = bytes.len();
//!         conn.transmitted(n, now);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert!(wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! assert!(wire.ends_with(b"\r\n\r\nhi"));
//! assert!(conn.is_closed()); // the client asked to close: close the socket
//! assert!(conn.poll_timeout().is_none() && server.poll_timeout().is_none());
//! ```
#![forbid(unsafe_code)]

pub mod coding;
mod conn;
pub mod console;
mod cors;
pub mod dynamic;
pub mod files;
pub mod fs;
mod http;
mod job;
mod json;
mod limits;
pub mod log;
mod panic;
pub mod proxy;
mod request;
mod server;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(feature = "rustls")]
pub mod tls;
pub mod tokens;
mod upload;
pub mod wire;
pub mod worker;

pub use conn::{Connection, Transmit, Upstream};

/// The door for the fuzz targets (`fuzz/`): the pure parsers they feed arbitrary bytes,
/// and nothing else. Not part of the API: hidden, and free to change with the internals.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::files::etag::{if_none_match, EtagHasher};
    pub use crate::files::path::{redirect_location, sanitize, split_target, PathError, SafePath};
    pub use crate::files::range::{
        if_range_allows, parse_range, unsatisfiable_content_range, ByteRange, RangeOutcome,
    };
    pub use crate::upload::multipart::{Event, MultipartParser};
}
pub use cors::{CorsPolicy, InvalidOrigin, Origin};
pub use http::error::HttpError;
pub use http::head::{Framing, MediaType, Method, RequestHead, Version};
pub use http::response::{Body, FileRegion, Response};
pub use job::{Completion, Job, JobKind};
pub use limits::Limits;
pub use request::{PeerInfo, Request};
pub use server::{PreMiddleware, Server, ServerBuilder, VERSION};
