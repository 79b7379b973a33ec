//! # quick-server
//!
//! The server a back-end developer sets up in ten lines: static files from bound folders,
//! JSON and text handlers with path captures and parsed arguments, long-running workers,
//! a command loop; on a `mio` event loop or a blocking thread pool, over plain TCP or TLS.
//! A Rust re-creation of the Python library `quick_server`, with the same routes, worker
//! protocol, console and log texts.
//!
//! ```no_run
//! use quick_server::{Abort, QuickServer};
//!
//! let mut server = QuickServer::new(([127, 0, 0, 1], 8000).into());
//! server.bind_path("/", "www")?;
//! server.add_default_white_list().link_empty_favicon_fallback();
//! server.json_get("/api/:version/hello", None, |_req, args| {
//!     Ok::<_, Abort>(serde_json::json!({ "version": args.segments.get("version") }))
//! });
//! server.serve_forever()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`serve_forever`](QuickServer::serve_forever) blocks: it logs `starting server at …`,
//! reads console commands from stdin and stops on `quit`, SIGINT or SIGTERM. Inside a
//! program of your own or a test, [`start`](QuickServer::start) serves in the background
//! and hands back the [`Running`] server:
//!
//! ```
//! use std::io::{Read, Write};
//! use quick_server::{Abort, QuickServer};
//!
//! let mut server = QuickServer::new(([127, 0, 0, 1], 0).into()); // port 0: any free port
//! server.text_get("/ping", None, |_req, _args| Ok::<_, Abort>("pong"));
//! let running = server.start()?;
//!
//! let mut client = std::net::TcpStream::connect(running.local_addr())?;
//! client.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(answer.ends_with("\r\n\r\npong"));
//!
//! running.handle().shutdown();
//! running.wait()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Files
//! [`bind_path`](QuickServer::bind_path) serves a folder under a URL prefix (the newest
//! binding is tried first, [`bind_path_fallback`](QuickServer::bind_path_fallback) last).
//! Which files are served is decided by white and black lists of shell-style patterns
//! ([`add_default_white_list`](QuickServer::add_default_white_list),
//! [`add_file_patterns`](QuickServer::add_file_patterns)); folders without an index page
//! can be listed ([`directory_listing`](QuickServer::directory_listing)); a missing
//! `favicon.ico` can be answered with an icon
//! ([`link_empty_favicon_fallback`](QuickServer::link_empty_favicon_fallback),
//! [`favicon_fallback`](QuickServer::favicon_fallback)), and unknown pages of a
//! single-page app with its index ([`spa_fallback`](QuickServer::spa_fallback)).
//! Answers carry ETags and honour the preconditions of RFC 9110 (`If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`, `If-Range`) and ranges.
//!
//! ## Dynamic routes
//! [`json_get`](QuickServer::json_get), [`text_post`](QuickServer::text_post) and their
//! siblings register handlers on *masks*: `/api/:version/items` captures `version` into
//! [`Args::segments`]; what follows the mask becomes [`Args::paths`] (whose length `argc`
//! can fix), [`Args::query`] and [`Args::fragment`]. Bodies are parsed into [`Args::post`]
//! (JSON, forms, multipart fields) and [`Args::files`] (multipart files, each part at most
//! [`max_file_size`](QuickServer::max_file_size) bytes). A handler returns any
//! `Serialize` value (JSON routes) or text and bytes (text routes), a [`Custom`] for
//! another status, content type or extra fields, or an [`Abort`] for an error page.
//! GET and HEAD answers are checked against the request's preconditions after the handler
//! ran; a POST, PUT or DELETE handler finds them in [`Args::preconditions`] and checks them
//! against its resource's current [`ETag`] before changing anything:
//! `if args.preconditions.evaluate(false, Some(&tag), None) != Verdict::Proceed` → 412.
//! [`Middleware`] runs before handlers, for a scope of routes
//! ([`middlewares`](QuickServer::middlewares)) or around one ([`with_middlewares`]).
//!
//! ## Workers
//! A computation that outlives a request goes in a worker
//! ([`json_worker`](QuickServer::json_worker)): the client starts it, polls for the result
//! and may cancel it ([`CancelFlag`]); results larger than
//! [`max_chunk_size`](QuickServer::max_chunk_size) travel in chunks. The browser side is
//! the bundled `worker.js` ([`link_worker_js`](QuickServer::link_worker_js)); results can
//! be cached ([`cache`](QuickServer::cache), [`QuickCache`]).
//!
//! ## Tokens
//! [`tokens`](QuickServer::tokens) gives the server-side session objects: a JSON map per
//! token ([`create_token`]), with sliding expiration. Every write is an atomic
//! read-modify-write: when another request changed the token meanwhile, the closure runs
//! again on the new map, so keep side effects out of it. Calls return a [`StoreError`]
//! (503 through `?` in a handler) when the store cannot be reached.
//!
//! ## Several instances
//! With the cargo feature `redis`, [`shared_state`](QuickServer::shared_state) keeps the
//! tokens, the worker tasks and the result cache in Redis (`SharedState`), so that any
//! number of instances behind a load balancer serve one application without sticky
//! sessions; the `quick-server` binary takes `--redis URL`, and the `cluster` example
//! shows the whole mode.
//!
//! - **Where jobs run**: on the instance that received `start`. `get`, `stop` and `cargo`
//!   work on any instance; task and chunk keys are claimed in Redis, so they are unique
//!   across the cluster. A `stop` reaches the running job within about 50 ms
//!   (`STOP_POLL`): the owner polls the states of its running tasks and trips their
//!   [`CancelFlag`].
//! - **Lease**: every instance renews a lease key (`WORKER_LEASE`, 10 s by default); a
//!   task whose instance died (crash, `kill -9`, restart) answers `get` with a
//!   `LostTask` error once the lease ran out. Jobs are never run twice by themselves.
//! - **Re-running lost tasks** is opt-in per route, since a handler may not be
//!   idempotent: workers registered inside [`rerun_lost`](QuickServer::rerun_lost) keep
//!   their payload in Redis, and once the lease of a task's instance ran out, the
//!   instance answering the next `get` claims the task (one Lua script compares the old
//!   owner's lease and sets itself as owner, so exactly one instance wins) and runs it
//!   again from the payload. The client keeps polling the same token and gets the
//!   re-run's result; `stop` reaches the re-run like any job. After `RERUN_MAX` (3)
//!   re-runs the task is lost as on other routes. A task nobody polls any more is not
//!   run again: its result would have no reader.
//! - **Atomicity**: each token load and compare-and-set commit, and each worker action,
//!   is one Lua script in Redis, so 300 increments over three instances end at 300.
//!   Expiry uses Redis' clock (`PEXPIRE`); results (120 s) and cargo (600 s) expire by
//!   Redis TTLs.
//! - **Cache**: a byte budget (`CACHE_QUOTA`), oldest entry out first, and no entry
//!   larger than `CACHE_MAX_ENTRY`.
//! - **Failure**: Redis calls go through a pool (`POOL_SIZE`) with connect, read and write
//!   timeouts (`REDIS_TIMEOUT`); a request that needs an unreachable Redis answers 503
//!   within about twice that, never hangs; files and stateless routes keep serving. One
//!   log line when Redis becomes unreachable and one when it answers again. A job that
//!   ends during an outage keeps its result: its task polls "running" until the lease
//!   thread records it, once Redis answers. A value in Redis that this server did not
//!   write is an error answer and a log line. A route registered
//!   [`non_blocking`](QuickServer::non_blocking) runs on the event loop, so a token call
//!   from it fails with [`StoreError::WouldBlock`]: register such routes normally.
//!
//! ## CORS, proxy, HTTPS
//! [`cors_origins`](QuickServer::cors_origins) names the front ends that may read answers
//! with credentials (others read nothing); [`cross_origin`](QuickServer::cross_origin)
//! lets any page read them without credentials; [`bind_proxy`](QuickServer::bind_proxy) forwards a prefix to an `http://`
//! upstream; [`load_tls`] reads a PEM certificate and key for
//! [`TransportOptions::tls`]:
//!
//! ```no_run
//! use std::path::Path;
//! use quick_server::{load_tls, QuickServer, Transport, TransportOptions};
//!
//! let mut server = QuickServer::new(([0, 0, 0, 0], 8443).into());
//! server.cors_origins(["https://app.example"])?.bind_proxy("/api/", "http://127.0.0.1:9000/")?;
//! let tls = load_tls(Path::new("cert.pem"), Path::new("key.pem"))?;
//! let options = TransportOptions { tls: Some(tls), ..TransportOptions::default() };
//! server.transport(Transport::default(), options);
//! server.serve_forever()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Command loop and log
//! While [`serve_forever`](QuickServer::serve_forever) runs, stdin takes commands: yours
//! ([`cmd`](QuickServer::cmd), with TAB completion on a terminal) and the built-ins
//! `help`, `restart` and `quit`. [`setup_restart`](QuickServer::setup_restart) makes
//! `restart` re-run the program without closing the listening socket. Requests are logged
//! in the original's format ([`suppress_noise`](QuickServer::suppress_noise),
//! [`report_slow_requests`](QuickServer::report_slow_requests)); [`msg`] writes your own
//! lines to the same log.
//!
//! ## Crates and examples
//! The HTTP engine is the sans-IO crate `quick-server-core`; `quick-server-mio` and
//! `quick-server-std` are its transports ([`Transport`]). The repository's
//! `cli/examples/` hold `example` and `example2` (the original's example servers),
//! `console_demo`, `embed` (the core in a hand-written loop) and `bench_json`.

mod cache;
mod console;
mod facade;
mod logging;
mod middleware;
mod reply;
mod restart;
#[cfg(feature = "redis")]
mod shared;
mod tls;
mod tokens;
mod transport;
mod workers;

pub use cache::{QuickCache, ResultCache};
pub use facade::QuickServer;
pub use logging::{msg, set_log_file};
pub use middleware::{middleware, with_middlewares, Chained, Middleware, Next};
pub use quick_server_core::coding::{Compression, Levels};
pub use quick_server_core::console::{CommandError, Completer};
pub use quick_server_core::dynamic::{Args, Upload};
pub use quick_server_core::files::{ETag, Preconditions, TagList, Verdict};
pub use quick_server_core::store::StoreError;
pub use quick_server_core::tokens::{Commit, Expire, MemoryTokenStore, Snapshot, TokenStore, Ttl};
pub use quick_server_core::worker::{CancelFlag, WorkerFailure};
pub use quick_server_core::Method;
pub use quick_server_core::{InvalidOrigin, Limits, Request};
pub use quick_server_transport::{Options as TransportOptions, Running, ShutdownHandle};
pub use reply::{Abort, Custom, JsonReply, TextReply};
pub use restart::{has_been_restarted, is_original, set_error_exit_code, set_restart_exit_code};
#[cfg(feature = "redis")]
pub use shared::{
    RedisCache, SharedState, SharedStateError, SharedStateOptions, CACHE_MAX_ENTRY, CACHE_QUOTA,
    POOL_SIZE, REDIS_TIMEOUT, RERUN_MAX, STOP_POLL, WORKER_LEASE,
};
pub use tls::{load_tls, TlsError};
pub use tokens::{create_token, TokenHandle};
pub use transport::{listen, start, Transport};
pub use workers::{mirror_worker_js, CacheId, WORKER_JS, WORKER_JS_CONTENT_TYPE};

/// The README's code, compiled as a doctest so that it keeps building.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
