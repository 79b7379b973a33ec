//! The user-facing server: the original's builder methods over the core and a transport.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use quick_server_core::coding::Compression;
use quick_server_core::dynamic::{Args, Handler};
use quick_server_core::files::{BadPrefix, FallbackHook, Favicon, EMPTY_FAVICON};
use quick_server_core::{InvalidOrigin, Method, Request, Response, Server, ServerBuilder};
use serde::Serialize;

mod process;
mod special;

use crate::logging::msg;
use crate::reply::{json_handler, text_handler, Abort, Custom, JsonReply, TextReply};
use crate::transport::{self, Transport};
use crate::{Running, TransportOptions};

use crate::cache::ResultCache;
use crate::middleware::{with_middlewares, Middleware, PreChain};
use crate::tokens::{on_event_loop, TokenHandle};
use crate::workers::{
    mirror_worker_js, worker_fn, CacheId, CacheSlot, DEFAULT_CACHE_SECTION, WORKER_JS,
    WORKER_JS_CONTENT_TYPE,
};
use quick_server_core::worker::{CancelFlag, MemoryTasks, TaskStore, WorkerFailure};
use serde_json::Value;
use std::sync::atomic::AtomicUsize;

/// A server being configured; [`serve_forever`](Self::serve_forever) runs it.
///
/// Configuration methods return `&mut Self` so that they chain (those that can fail return
/// a `Result` of it). The [crate documentation](crate) is a tour of what they offer.
///
/// ```
/// use quick_server::QuickServer;
///
/// let mut server = QuickServer::new(([127, 0, 0, 1], 8000).into());
/// server
///     .add_default_white_list()
///     .directory_listing(true)
///     .link_empty_favicon_fallback()
///     .suppress_noise(true);
/// ```
pub struct QuickServer {
    addr: SocketAddr,
    /// Console commands and options (see `console.rs`).
    pub(crate) console: crate::console::Console,
    /// Request-log options (see `logging.rs`).
    pub(crate) log: crate::logging::LogOptions,
    builder: ServerBuilder,
    transport: Transport,
    options: TransportOptions,
    max_age: u64,
    routing: Routing,
    /// Set by [`QuickServer::tls_self_signed`]: the folder caching the certificate, if any.
    self_signed: Option<Option<PathBuf>>,
    /// PEM files of CAs trusted for `https://` proxy upstreams besides the system roots.
    proxy_cas: Vec<PathBuf>,
    /// A proxy binding has an `https://` upstream: the roots are loaded at start.
    https_upstreams: bool,
}

/// What route registration keeps besides the core builder.
#[derive(Default)]
struct Routing {
    /// Middlewares of the enclosing [`QuickServer::middlewares`] scopes, outermost first.
    scope: Vec<Middleware>,
    /// Inside a [`QuickServer::non_blocking`] scope: handlers run where the request is read.
    inline: bool,
    /// Inside a [`QuickServer::uncompressed`] scope: answers are never compressed.
    uncompressed: bool,
    /// Pre-middlewares and worker middleware, run before routing.
    pre: PreChain,
    tokens: TokenHandle,
    cache: CacheSlot,
    /// Worker routes registered so far.
    workers: usize,
    /// Where worker tasks live when they are shared.
    #[cfg(feature = "redis")]
    shared: Option<crate::SharedState>,
    /// Inside a [`QuickServer::rerun_lost`] scope: shared tasks lost with their instance
    /// run again elsewhere.
    #[cfg(feature = "redis")]
    rerun: bool,
}

impl fmt::Debug for QuickServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuickServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl QuickServer {
    /// A server that will listen on `addr` (port 0 picks a free port).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            console: crate::console::Console::default(),
            log: crate::logging::LogOptions::default(),
            builder: Server::builder((Instant::now(), SystemTime::now())),
            transport: Transport::default(),
            options: TransportOptions::default(),
            max_age: 0,
            routing: Routing::default(),
            self_signed: None,
            proxy_cas: Vec::new(),
            https_upstreams: false,
        }
    }

    /// Serves `folder` under `prefix` (which must start and end with `/`), tried before
    /// earlier bindings. A relative `folder` is resolved against the working directory now.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.bind_path("/", "www")?.bind_path("/docs/", "target/doc")?;
    /// assert!(server.bind_path("docs", "target/doc").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind_path(
        &mut self,
        prefix: &str,
        folder: impl AsRef<Path>,
    ) -> Result<&mut Self, BadPrefix> {
        self.builder
            .files()
            .bind_path(prefix, absolute(folder.as_ref()))?;
        Ok(self)
    }

    /// Like [`bind_path`](Self::bind_path), tried after every other binding.
    pub fn bind_path_fallback(
        &mut self,
        prefix: &str,
        folder: impl AsRef<Path>,
    ) -> Result<&mut Self, BadPrefix> {
        self.builder
            .files()
            .bind_path_fallback(prefix, absolute(folder.as_ref()))?;
        Ok(self)
    }

    /// Forwards requests under `prefix` (which must start and end with `/`) to the
    /// `http://` or `https://` upstream `url`, before every other route; the newest binding
    /// wins. The part of the target after `prefix` is appended to the path of `url`.
    /// Several upstreams, separated by commas, take requests in turn; one that refuses a
    /// connection is skipped for `Limits::upstream_down_time`. An `https://` upstream's
    /// certificate is verified against the system roots (and [`proxy_ca`](Self::proxy_ca)
    /// files) for its host; a failure answers 502 and logs why.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// // `/api/users?id=1` is fetched from `http://127.0.0.1:9000/v2/users?id=1`.
    /// server.bind_proxy("/api/", "http://127.0.0.1:9000/v2")?;
    /// server.bind_proxy("/lb/", "http://127.0.0.1:9001/,http://127.0.0.1:9002/")?;
    /// server.bind_proxy("/secure/", "https://example.com/")?;
    /// assert!(server.bind_proxy("/api/", "ftp://example.com").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind_proxy(
        &mut self,
        prefix: &str,
        url: &str,
    ) -> Result<&mut Self, quick_server_core::proxy::ProxyError> {
        self.builder.bind_proxy(prefix, url)?;
        self.https_upstreams |= url.split(',').any(|u| u.trim().starts_with("https://"));
        Ok(self)
    }

    /// Trusts the CA certificates in the PEM `file` (one or more) for `https://` proxy
    /// upstreams, besides the system roots: for private back ends. The file is read at
    /// start, which fails if it is missing or holds no valid certificate. There is no way
    /// to turn verification off.
    pub fn proxy_ca(&mut self, file: impl Into<PathBuf>) -> &mut Self {
        self.proxy_cas.push(file.into());
        self
    }

    /// Logs every proxy exchange on the console (the original's `set_debug_proxy`):
    /// `proxy <target> to <METHOD> <url>: headers=<JSON> payload=<bytes>`, then
    /// `response <status> for <target> outlen=<n> headers=<JSON>`, then a summary with
    /// the status, bytes each way and time.
    pub fn debug_proxy(&mut self, on: bool) -> &mut Self {
        self.builder.debug_proxy(on);
        self
    }

    /// Serves only files matching the original's default patterns: `*.css *.csv *.eot *.gif
    /// *.htm *.html *.ico *.jpeg *.jpg *.js *.json *.md *.otf *.pdf *.png *.svg *.tsv *.ttf
    /// *.txt *.woff *.woff2`.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// // Web files and Rust sources, but nothing named `secret*`.
    /// server
    ///     .add_default_white_list()
    ///     .add_file_patterns(["*.rs"], false)
    ///     .add_file_patterns(["*/secret*"], true);
    /// ```
    pub fn add_default_white_list(&mut self) -> &mut Self {
        self.builder.files().filter.add_default_white_list();
        self
    }

    /// Adds shell-style patterns (matched against the absolute file path) to the white
    /// list, or to the black list when `blacklist`.
    pub fn add_file_patterns<I: IntoIterator<Item = S>, S: AsRef<str>>(
        &mut self,
        patterns: I,
        blacklist: bool,
    ) -> &mut Self {
        self.builder.files().filter.add(patterns, blacklist);
        self
    }

    /// Answers missing `favicon.ico` requests with a small empty icon built in, so browsers
    /// stop logging 404s for it.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.link_empty_favicon_fallback();
    /// ```
    pub fn link_empty_favicon_fallback(&mut self) -> &mut Self {
        self.builder.files().favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
        self
    }

    /// Answers missing `favicon.ico` requests with this file (a relative path is resolved
    /// against the working directory now).
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.favicon_fallback("assets/favicon.ico");
    /// ```
    pub fn favicon_fallback(&mut self, file: impl AsRef<Path>) -> &mut Self {
        self.builder.files().favicon_fallback = Some(Favicon::File(absolute(file.as_ref())));
        self
    }

    /// Lists folders that have no index page (off by default): an HTML page linking every
    /// entry the lists allow.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.bind_path("/", ".")?.directory_listing(true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn directory_listing(&mut self, on: bool) -> &mut Self {
        self.builder.files().directory_listing = on;
        self
    }

    /// Answers unknown paths of requests accepting HTML with `file` (single-page apps).
    pub fn spa_fallback(&mut self, file: impl AsRef<Path>) -> &mut Self {
        self.builder.files().spa_fallback = Some(absolute(file.as_ref()));
        self
    }

    /// The original's file fallback hook: `hook` gets the normalised path of a request that
    /// would be answered 404 and may name a file to serve instead (without the white and
    /// black lists), e.g. the `index.html` of a single-page app for its deep links.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.set_file_fallback_hook(|path| path.starts_with("/app/").then(|| "www/app.html".into()));
    /// ```
    pub fn set_file_fallback_hook<F>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(&str) -> Option<PathBuf> + Send + Sync + 'static,
    {
        let base = std::env::current_dir().unwrap_or_default();
        let hook = move |path: &str| hook(path).map(|file| base.join(file));
        self.builder.files().fallback_hook = Some(FallbackHook(Arc::new(hook)));
        self
    }

    /// Compresses answers with `gzip`, `br` or `zstd` for clients that accept them, at
    /// fast levels: files of compressible types from 1 KiB (or their precompressed
    /// `.br`/`.zst`/`.gz` siblings), and handler, worker and listing answers. Off by
    /// default, as in the original; the `quick-server` binary turns it on.
    ///
    /// Over HTTPS, an answer that holds a secret (a token, a CSRF value) next to text
    /// reflected from the request lets an attacker who can watch the sizes of the
    /// encrypted answers guess the secret (BREACH): register such routes inside
    /// [`uncompressed`](Self::uncompressed). docs/BEHAVIOUR.md, "Compression".
    pub fn compress(&mut self, on: bool) -> &mut Self {
        self.builder.files().compression.enabled = on;
        self
    }

    /// Replaces every compression setting (sizes, levels), see [`Compression`].
    pub fn compression(&mut self, settings: Compression) -> &mut Self {
        self.builder.compression(settings);
        self
    }

    /// Runs `register` with the answers of its JSON, text and worker routes never
    /// compressed: for answers that mix a secret with reflected input, which BREACH can
    /// read over HTTPS when compressed (see [`compress`](Self::compress)).
    ///
    /// ```
    /// # use quick_server::{Abort, QuickServer};
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.compress(true).uncompressed(|s| {
    ///     s.text_get("/account", None, |_req, args| {
    ///         // Echoes the query next to the user's token: never compressed.
    ///         Ok::<_, Abort>(format!("token=secret; you searched {:?}", args.query))
    ///     });
    /// });
    /// ```
    pub fn uncompressed(&mut self, register: impl FnOnce(&mut Self)) -> &mut Self {
        let outer = std::mem::replace(&mut self.routing.uncompressed, true);
        register(self);
        self.routing.uncompressed = outer;
        self
    }

    /// `Cache-Control: max-age` for files and handler answers, in seconds.
    pub fn max_age(&mut self, seconds: u64) -> &mut Self {
        self.max_age = seconds;
        self.builder.files().max_age = seconds;
        self
    }

    /// Largest multipart part accepted, in bytes (default 50 MiB); a larger part answers
    /// 413 `Uploaded file is too large! <n> > <max>`.
    ///
    /// ```
    /// # use quick_server::{Abort, QuickServer};
    /// use std::collections::BTreeMap;
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.max_file_size(1 << 20);
    /// server.json_post("/api/upload", None, |_req, args| {
    ///     let sizes: BTreeMap<String, u64> = args
    ///         .files
    ///         .iter()
    ///         .map(|(name, file)| (name.clone(), file.len))
    ///         .collect();
    ///     Ok::<_, Abort>(sizes)
    /// });
    /// ```
    pub fn max_file_size(&mut self, bytes: u64) -> &mut Self {
        self.builder.max_file_size(bytes);
        self
    }

    /// Replaces the connection limits.
    pub fn limits(&mut self, limits: quick_server_core::Limits) -> &mut Self {
        self.builder.limits(limits);
        self
    }

    /// Chooses the transport and its options (TLS, connection cap, threads, grace); both
    /// transports take the same options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use quick_server::{QuickServer, Transport, TransportOptions};
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.transport(Transport::Std, TransportOptions {
    ///     threads: Some(32),
    ///     max_connections: 256,
    ///     shutdown_grace: Duration::from_secs(2),
    ///     ..TransportOptions::default()
    /// });
    /// ```
    pub fn transport(&mut self, kind: Transport, options: TransportOptions) -> &mut Self {
        self.transport = kind;
        self.options = options;
        self
    }

    /// Serves HTTPS with a certificate made at start for `localhost`, `127.0.0.1`, `::1` and
    /// the bound address, replacing [`TransportOptions::tls`]. Its SHA-256 fingerprint is
    /// logged. With a `cache` folder, the certificate and key are kept there as `cert.pem`
    /// and `key.pem` (made again when the names change), so that a client can trust it
    /// once: the log names the `curl --cacert` command.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.tls_self_signed(None);
    /// let running = server.start()?; // logs the fingerprint
    /// running.handle().shutdown();
    /// running.wait()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn tls_self_signed(&mut self, cache: Option<PathBuf>) -> &mut Self {
        self.self_signed = Some(cache);
        self
    }

    /// A JSON `GET` route; `argc` is the required number of extra path segments (`None`:
    /// any).
    ///
    /// `mask` is a path whose `:name` pieces capture a segment into `args.segments`; what
    /// follows it fills `args.paths`, `args.query` and `args.fragment`. The handler runs off
    /// the event loop; its value is sent with [`json_dumps`](quick_server_core::dynamic::json_dumps) (a null value answers 404), an
    /// [`Abort`] answers its error page and a panic answers 500. Middlewares of enclosing
    /// [`middlewares`](Self::middlewares) scopes run first.
    ///
    /// ```
    /// use quick_server::{Abort, QuickServer};
    /// use serde_json::json;
    /// # fn get(addr: std::net::SocketAddr, target: &str) -> String {
    /// #     use std::io::{Read, Write};
    /// #     let mut stream = std::net::TcpStream::connect(addr).unwrap();
    /// #     write!(stream, "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    /// #     let mut answer = String::new();
    /// #     stream.read_to_string(&mut answer).unwrap();
    /// #     answer
    /// # }
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.json_get("/api/:version/users", Some(1), |_req, args| {
    ///     Ok::<_, Abort>(json!({
    ///         "version": args.segments.get("version"),
    ///         "user": args.paths.first(),
    ///         "fields": args.query.get("fields"),
    ///     }))
    /// });
    /// let running = server.start()?;
    /// let answer = get(running.local_addr(), "/api/v2/users/ada?fields=name");
    /// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(answer.ends_with(
    ///     "{\n  \"fields\": \"name\",\n  \"user\": \"ada\",\n  \"version\": \"v2\"\n}"
    /// ));
    /// // Two extra segments where the route wants one: no route matches.
    /// assert!(get(running.local_addr(), "/api/v2/users/ada/x").starts_with("HTTP/1.1 404"));
    /// running.handle().shutdown();
    /// running.wait()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn json_get<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Get, mask, argc, handler)
    }

    /// A JSON `POST` route: the body is in `args.post` (JSON, or the fields of a form or
    /// multipart body) and `args.files` (multipart files).
    ///
    /// ```
    /// # use quick_server::{Abort, QuickServer};
    /// use serde_json::{json, Value};
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.json_post("/api/sum", Some(0), |_req, args| {
    ///     let numbers = args.post.get("numbers").and_then(Value::as_array);
    ///     let sum: f64 = numbers.into_iter().flatten().filter_map(Value::as_f64).sum();
    ///     Ok::<_, Abort>(json!({ "sum": sum }))
    /// });
    /// ```
    pub fn json_post<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Post, mask, argc, handler)
    }

    /// A JSON `PUT` route (see [`json_post`](Self::json_post)).
    pub fn json_put<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Put, mask, argc, handler)
    }

    /// A JSON `DELETE` route (see [`json_post`](Self::json_post)).
    pub fn json_delete<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Delete, mask, argc, handler)
    }

    /// A JSON route for any of the four methods.
    ///
    /// ```
    /// # use quick_server::{Abort, QuickServer};
    /// use quick_server::Method;
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// for method in [Method::Put, Method::Delete] {
    ///     server.json(method, "/api/item/:id", None, |_req, args| {
    ///         Ok::<_, Abort>(serde_json::json!({ "id": args.segments.get("id") }))
    ///     });
    /// }
    /// ```
    pub fn json<F, R>(
        &mut self,
        method: Method,
        mask: &str,
        argc: Option<usize>,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        let handler = with_middlewares(&self.routing.scope, handler);
        self.add_route(method, mask, argc, json_handler(handler, self.max_age))
    }

    /// A text route for any of the four methods: the body is sent as it is (`text/plain`
    /// unless a [`Custom`] says otherwise); `None` answers 404.
    pub fn text<F, R>(
        &mut self,
        method: Method,
        mask: &str,
        argc: Option<usize>,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        let handler = with_middlewares(&self.routing.scope, handler);
        self.add_route(method, mask, argc, text_handler(handler, self.max_age))
    }

    /// Registers a wrapped handler, inline inside a [`non_blocking`](Self::non_blocking)
    /// scope.
    fn add_route(
        &mut self,
        method: Method,
        mask: &str,
        argc: Option<usize>,
        handler: Handler,
    ) -> &mut Self {
        let handler: Handler = if self.routing.uncompressed {
            Arc::new(move |req, args| Response {
                compress: false,
                ..handler(req, args)
            })
        } else {
            handler
        };
        if self.routing.inline {
            let handler: Handler =
                Arc::new(move |request, args| on_event_loop(|| handler(request, args)));
            self.builder.route_inline(method, mask, argc, handler);
        } else {
            self.builder.route(method, mask, argc, handler);
        }
        self
    }

    /// A text `GET` route: the handler returns a `String`, a `&'static str`, bytes, an
    /// `Option` of those (`None` answers 404) or a [`Custom`] of them.
    ///
    /// ```
    /// use quick_server::{Abort, Custom, QuickServer};
    /// # fn get(addr: std::net::SocketAddr, target: &str) -> String {
    /// #     use std::io::{Read, Write};
    /// #     let mut stream = std::net::TcpStream::connect(addr).unwrap();
    /// #     write!(stream, "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    /// #     let mut answer = String::new();
    /// #     stream.read_to_string(&mut answer).unwrap();
    /// #     answer
    /// # }
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.text_get("/hello/:name", Some(0), |_req, args| {
    ///     let name = args.segments.get("name").cloned().unwrap_or_default();
    ///     Ok::<_, Abort>(format!("hello, {name}"))
    /// });
    /// server.text_get("/page", Some(0), |_req, _args| {
    ///     Ok::<_, Abort>(Custom::new("<h1>hi</h1>").content_type("text/html; charset=utf-8"))
    /// });
    /// let running = server.start()?;
    /// let answer = get(running.local_addr(), "/hello/ada");
    /// assert!(answer.contains("Content-Type: text/plain\r\n"));
    /// assert!(answer.ends_with("\r\n\r\nhello, ada"));
    /// running.handle().shutdown();
    /// running.wait()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn text_get<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Get, mask, argc, handler)
    }

    /// A text `POST` route (see [`text_get`](Self::text_get) and
    /// [`json_post`](Self::json_post)).
    pub fn text_post<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Post, mask, argc, handler)
    }

    /// A text `PUT` route (see [`text_get`](Self::text_get)).
    pub fn text_put<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Put, mask, argc, handler)
    }

    /// A text `DELETE` route (see [`text_get`](Self::text_get)).
    pub fn text_delete<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Delete, mask, argc, handler)
    }

    /// Runs `register` with `chain` added to the middleware scope: every route registered
    /// inside (JSON, text, workers, `worker.js`) runs the enclosing scopes' chains and then
    /// `chain` before its handler. Scopes nest (the original's `with middlewares(...)`).
    ///
    /// ```
    /// use quick_server::{middleware, Abort, Next, QuickServer};
    ///
    /// let api_key = middleware(|req, _args| {
    ///     match req.head.field_str("X-Api-Key") {
    ///         Some("let me in") => Ok(Next::Continue),
    ///         _ => Err(Abort::new(401, "an API key is needed")),
    ///     }
    /// });
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.middlewares(&[api_key], |s| {
    ///     s.json_get("/api/private", None, |_req, _args| Ok::<_, Abort>("secret"));
    /// });
    /// server.json_get("/api/public", None, |_req, _args| Ok::<_, Abort>("hello"));
    /// ```
    pub fn middlewares(
        &mut self,
        chain: &[Middleware],
        register: impl FnOnce(&mut Self),
    ) -> &mut Self {
        let depth = self.routing.scope.len();
        self.routing.scope.extend_from_slice(chain);
        register(self);
        self.routing.scope.truncate(depth);
        self
    }

    /// Runs `register` with its JSON and text routes declared non-blocking: their handlers
    /// (and middlewares) must never block and take microseconds, and in exchange run
    /// where the request was read instead of on the job pool, saving two thread hand-offs
    /// per request. On the mio transport that is the event loop, so a handler that sleeps,
    /// waits on a lock or does disk or network I/O there stalls every connection; leave
    /// such handlers outside. Workers always run on their own pool.
    ///
    /// ```
    /// # use quick_server::{Abort, QuickServer};
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.non_blocking(|s| {
    ///     s.json_get("/api/ping", Some(0), |_req, _args| Ok::<_, Abort>("pong"));
    /// });
    /// // Reads a file: stays on the pool.
    /// server.text_get("/api/log", Some(0), |_req, _args| {
    ///     std::fs::read_to_string("server.log").map_err(|_| Abort::new(404, "no log yet"))
    /// });
    /// ```
    pub fn non_blocking(&mut self, register: impl FnOnce(&mut Self)) -> &mut Self {
        let outer = std::mem::replace(&mut self.routing.inline, true);
        register(self);
        self.routing.inline = outer;
        self
    }

    /// Runs `pre` before routing every GET/HEAD/POST/PUT/DELETE request, static files
    /// included, in the order added; an [`Abort`] answers its error page.
    ///
    /// ```
    /// # use quick_server::{Abort, QuickServer};
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.pre_middleware(|req| {
    ///     if req.head.target().contains("/.") {
    ///         return Err(Abort::new(403, "hidden files stay hidden"));
    ///     }
    ///     Ok(())
    /// });
    /// ```
    pub fn pre_middleware<F>(&mut self, pre: F) -> &mut Self
    where
        F: Fn(&Request) -> Result<(), Abort> + Send + Sync + 'static,
    {
        self.routing.pre.add(&mut self.builder, Arc::new(pre));
        self
    }

    /// Lets pages of any origin read answers, without credentials (the original's
    /// `cross_origin`): preflight `OPTIONS` is answered and every answer carries
    /// `Access-Control-Allow-Origin: *`. To let a front end send cookies or tokens, name
    /// it with [`cors_origins`](Self::cors_origins) instead.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// # fn options(addr: std::net::SocketAddr) -> String {
    /// #     use std::io::{Read, Write};
    /// #     let mut stream = std::net::TcpStream::connect(addr).unwrap();
    /// #     stream.write_all(b"OPTIONS /api/x HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:3000\r\nConnection: close\r\n\r\n").unwrap();
    /// #     let mut answer = String::new();
    /// #     stream.read_to_string(&mut answer).unwrap();
    /// #     answer
    /// # }
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.cross_origin(true); // a page served from anywhere may call the API
    /// let running = server.start()?;
    /// let answer = options(running.local_addr());
    /// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(answer.contains("Access-Control-Allow-Origin: *\r\n"));
    /// assert!(!answer.contains("Access-Control-Allow-Credentials"));
    /// running.handle().shutdown();
    /// running.wait()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn cross_origin(&mut self, on: bool) -> &mut Self {
        self.builder.cross_origin(on);
        self
    }

    /// Lets the named origins (`scheme://host[:port]`) read answers **with credentials**:
    /// their `Origin` is echoed with `Access-Control-Allow-Credentials: true` and
    /// `Vary: Origin`; other origins get no CORS fields at all. `*` in the list lets any
    /// other origin read without credentials.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.cors_origins(["http://localhost:3000", "https://app.example"])?;
    /// assert!(server.cors_origins(["localhost:3000"]).is_err()); // no scheme
    /// # Ok::<(), quick_server::InvalidOrigin>(())
    /// ```
    pub fn cors_origins<I, S>(&mut self, origins: I) -> Result<&mut Self, InvalidOrigin>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for origin in origins {
            self.builder.cors().allow(origin.as_ref())?;
        }
        Ok(self)
    }

    /// Limits the request fields a CORS preflight may ask for (by default any); a
    /// preflight asking for another gets no CORS fields.
    pub fn cors_allow_fields<I, S>(&mut self, names: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.builder.cors().allow_fields(names);
        self
    }

    /// The size above which worker results are split into cargo chunks, in characters
    /// (default 10 MiB); change it at any time, also while serving.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// use std::sync::atomic::Ordering;
    ///
    /// let server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// let chunk_size = server.max_chunk_size();
    /// assert_eq!(chunk_size.load(Ordering::SeqCst), 10 * 1024 * 1024);
    /// chunk_size.store(64 * 1024, Ordering::SeqCst);
    /// ```
    pub fn max_chunk_size(&self) -> Arc<AtomicUsize> {
        self.builder.max_chunk_size()
    }

    /// The server's tokens (server-side session objects), to use from handlers; clones share them.
    ///
    /// ```
    /// use quick_server::{Abort, Expire, QuickServer};
    /// use serde_json::{json, Value};
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// let tokens = server.tokens();
    /// server.json_get("/api/visits", None, move |_req, args| {
    ///     let token = args.query.get("token").and_then(Value::as_str).unwrap_or("anonymous");
    ///     // May run more than once when another request changes the token meanwhile.
    ///     let visits = tokens.get_token_obj(token, Expire::Default, false, |session| {
    ///         let visits = session.get("visits").and_then(Value::as_u64).unwrap_or(0) + 1;
    ///         session.insert("visits".into(), json!(visits));
    ///         visits
    ///     })?;
    ///     Ok::<_, Abort>(json!({ "visits": visits }))
    /// });
    /// ```
    pub fn tokens(&self) -> TokenHandle {
        self.routing.tokens.clone()
    }

    /// Keeps tokens, the worker result cache and the tasks of the worker routes
    /// registered from now on in Redis, shared by every instance started with the same
    /// Redis and key prefix (see the crate's guide, "Several instances"). Call it before
    /// registering workers; it replaces a cache installed before.
    #[cfg(feature = "redis")]
    pub fn shared_state(&mut self, state: crate::SharedState) -> &mut Self {
        if self.routing.workers > 0 {
            msg("shared_state after worker routes: their tasks stay in this process");
        }
        self.routing.tokens.set_store(Box::new(state.token_store()));
        self.routing.cache.set(Arc::new(state.cache()));
        self.routing.shared = Some(state);
        self
    }

    /// Runs `register` with its worker routes re-running lost tasks: with
    /// [`shared_state`](Self::shared_state), a task whose instance died (crash, restart)
    /// runs again, from its stored payload, on the instance that answers the next `get`
    /// for it once the lease ran out, at most [`RERUN_MAX`](crate::RERUN_MAX) times; the
    /// client keeps its token. Opt in only for jobs that may safely run twice (the dead
    /// instance may have done part of the work). Without shared state, tasks die with the
    /// process and this changes nothing.
    ///
    /// ```
    /// # use quick_server::{Abort, CancelFlag, QuickServer};
    /// # use serde_json::Value;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.rerun_lost(|s| {
    ///     s.json_worker("/api/render", None, |payload: Value, _: &CancelFlag| {
    ///         Ok::<_, Abort>(payload) // pure: safe to run again
    ///     });
    /// });
    /// ```
    #[cfg(feature = "redis")]
    pub fn rerun_lost(&mut self, register: impl FnOnce(&mut Self)) -> &mut Self {
        let outer = std::mem::replace(&mut self.routing.rerun, true);
        register(self);
        self.routing.rerun = outer;
        self
    }

    /// Installs the store worker results are cached in (see [`json_worker`](Self::json_worker)).
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// use std::sync::Arc;
    /// use quick_server::QuickCache;
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.cache(Arc::new(QuickCache::in_memory(64 << 20)));
    /// ```
    pub fn cache(&mut self, cache: Arc<dyn ResultCache>) -> &mut Self {
        self.routing.cache.set(cache);
        self
    }

    /// A worker route at `mask`: a POST route speaking `start`/`get`/`stop`/`cargo`
    /// whose jobs run on the background pool.
    ///
    /// `job` gets the payload (with the mask's captures written into it) and a
    /// [`CancelFlag`] to poll; its value is sent as [`json_dumps`](quick_server_core::dynamic::json_dumps) text. An error with a
    /// status (an [`Abort`]) answers that error page when the result is collected, one
    /// without (a [`WorkerFailure`] with no status, a panic) answers 500 `worker error`
    /// and is logged. With `cache_id` and an installed [`cache`](Self::cache), results are
    /// cached under the key's JSON text in section `www`.
    ///
    /// ```
    /// use quick_server::{Abort, CancelFlag, QuickServer};
    /// use serde_json::{json, Value};
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.link_worker_js("/js/worker.js");
    /// server.json_worker("/api/count", None, |payload: Value, cancel: &CancelFlag| {
    ///     let to = payload.get("to").and_then(Value::as_u64).unwrap_or(0);
    ///     let mut sum = 0u64;
    ///     for n in 0..=to {
    ///         if cancel.is_cancelled() {
    ///             return Err(Abort::new(409, "cancelled"));
    ///         }
    ///         sum += n;
    ///     }
    ///     Ok(json!({ "sum": sum }))
    /// });
    /// // In the browser, with `/js/worker.js` loaded:
    /// // new quickServer.Worker().process('sum', '/api/count', { to: 1e6 }, (r) => show(r.sum));
    /// ```
    pub fn json_worker<F, T, E>(
        &mut self,
        mask: &str,
        cache_id: Option<CacheId>,
        job: F,
    ) -> &mut Self
    where
        F: Fn(Value, &CancelFlag) -> Result<T, E> + Send + Sync + 'static,
        T: Serialize,
        E: Into<WorkerFailure>,
    {
        self.json_worker_in(mask, DEFAULT_CACHE_SECTION, cache_id, job)
    }

    /// Like [`json_worker`](Self::json_worker), caching in `section`.
    pub fn json_worker_in<F, T, E>(
        &mut self,
        mask: &str,
        section: &str,
        cache_id: Option<CacheId>,
        job: F,
    ) -> &mut Self
    where
        F: Fn(Value, &CancelFlag) -> Result<T, E> + Send + Sync + 'static,
        T: Serialize,
        E: Into<WorkerFailure>,
    {
        let work = worker_fn(
            job,
            self.routing.cache.clone(),
            section.to_owned(),
            cache_id,
        );
        self.routing.workers += 1;
        let store = self
            .shared_tasks(mask)
            .unwrap_or_else(|| Arc::new(MemoryTasks::new()));
        let compress = !self.routing.uncompressed;
        self.builder.worker_in(mask, work, store, compress);
        if !self.routing.scope.is_empty() {
            let chain = self.routing.scope.clone();
            self.routing
                .pre
                .guard_worker(&mut self.builder, mask, chain, self.max_age);
        }
        self
    }

    /// The Redis store of the worker at `mask`, when state is shared.
    #[cfg(feature = "redis")]
    fn shared_tasks(&self, mask: &str) -> Option<Arc<dyn TaskStore>> {
        let shared = self.routing.shared.as_ref()?;
        Some(Arc::new(shared.tasks(mask, self.routing.rerun)))
    }

    /// Without the `redis` feature, tasks are never shared.
    #[cfg(not(feature = "redis"))]
    fn shared_tasks(&self, _mask: &str) -> Option<Arc<dyn TaskStore>> {
        None
    }

    /// Serves the bundled `worker.js` at `mask` (`application/javascript; charset=utf-8`,
    /// with ETag and 304 like every text route): the browser client of worker routes.
    ///
    /// ```
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.link_worker_js("/js/worker.js");
    /// // <script src="/js/worker.js"></script> then `new quickServer.Worker()`.
    /// ```
    pub fn link_worker_js(&mut self, mask: &str) -> &mut Self {
        self.text_get(mask, Some(0), |_req, _args| {
            Ok::<_, Abort>(Custom::new(WORKER_JS).content_type(WORKER_JS_CONTENT_TYPE))
        })
    }

    /// Writes the bundled `worker.js` to `path`, overwriting it.
    pub fn mirror_worker_js(&self, path: impl AsRef<Path>) -> io::Result<()> {
        mirror_worker_js(path)
    }

    /// The configured core server, for the in-crate tests that drive a connection.
    #[cfg(test)]
    pub(crate) fn into_server(self) -> Arc<Server> {
        self.builder.build()
    }

    /// Builds the server, listens and starts the transport without blocking.
    ///
    /// Requests are logged; the command loop and signal handling are left to the caller.
    /// Under a restart supervisor the server listens on the socket it inherited.
    ///
    /// ```
    /// use quick_server::{Abort, QuickServer};
    /// # fn get(addr: std::net::SocketAddr, target: &str) -> String {
    /// #     use std::io::{Read, Write};
    /// #     let mut stream = std::net::TcpStream::connect(addr).unwrap();
    /// #     write!(stream, "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    /// #     let mut answer = String::new();
    /// #     stream.read_to_string(&mut answer).unwrap();
    /// #     answer
    /// # }
    ///
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    /// server.json_get("/api/answer", None, |_req, _args| Ok::<_, Abort>(42));
    /// let running = server.start()?;
    /// assert!(get(running.local_addr(), "/api/answer").ends_with("\r\n\r\n42"));
    /// running.handle().shutdown();
    /// running.wait()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start(self) -> io::Result<Running> {
        let listener = crate::restart::listener(self.addr)?;
        self.start_on(listener)
    }

    /// Serves until `quit`, SIGINT or SIGTERM, then stops gracefully (a second SIGINT exits
    /// at once with status 130), reading console commands from stdin meanwhile. Logs
    /// `starting server at <address>` once listening and `shutting down..` at the end.
    ///
    /// After `restart` (or SIGHUP) the requests in flight finish, then the process does not
    /// return: a supervised child exits with the restart code, an original process re-runs
    /// itself as a supervisor (see [`setup_restart`](Self::setup_restart)).
    ///
    /// ```no_run
    /// # use quick_server::QuickServer;
    /// let mut server = QuickServer::new(([127, 0, 0, 1], 8000).into());
    /// server.bind_path("/", ".")?.add_default_white_list();
    /// server.serve_forever()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn serve_forever(mut self) -> io::Result<()> {
        let console = std::mem::take(&mut self.console);
        let listener = crate::restart::listener(self.addr)?;
        // Keeps the socket open after the transport closes its copy, for a restart.
        let kept = listener.try_clone()?;
        let running = self.start_on(listener)?;
        let handle = running.handle();
        let control = crate::restart::Control::new(move || handle.shutdown(), Some(kept));
        let signals = stop_on_signals(Arc::clone(&control))?;
        // Announced once signals are handled, so a watcher may signal at once.
        msg(&format!(
            "starting server at {}",
            display_addr(running.local_addr())
        ));
        let console = console.start(Arc::clone(&control)).unwrap_or_else(|e| {
            msg(&format!("no command loop: {e}"));
            None
        });
        let served = running.wait();
        // Ends the command loop when the server stopped for another reason.
        control.quit();
        if let Some(thread) = console {
            // A panic there was reported already; nothing is left to clean up.
            let _ = thread.join();
        }
        signals.close();
        msg("shutting down..");
        served?;
        if let Some(listener) = control.restart_listener() {
            crate::restart::restart(&listener);
        }
        Ok(())
    }

    /// Installs the request log and starts the transport on `listener`.
    fn start_on(mut self, listener: std::net::TcpListener) -> io::Result<Running> {
        if let Some(cache) = &self.self_signed {
            let bound = listener.local_addr()?;
            let made =
                crate::tls::self_signed(bound.ip(), cache.as_deref()).map_err(io::Error::other)?;
            msg(&format!(
                "self-signed certificate for {}; SHA-256 fingerprint {}",
                made.names.join(" "),
                made.fingerprint
            ));
            if let Some(file) = &made.cert_file {
                msg(&format!(
                    "trust it with: curl --cacert {} https://localhost:{}/",
                    file.display(),
                    bound.port()
                ));
            }
            self.options.tls = Some(made.config);
        }
        if self.https_upstreams || !self.proxy_cas.is_empty() {
            let config = crate::tls::upstream_config(&self.proxy_cas).map_err(io::Error::other)?;
            self.builder.upstream_tls(config);
        }
        self.log.install(&mut self.builder);
        let wanted = self.options.max_connections;
        // A std worker holds its epoll set's descriptor beside its connection's.
        let (each, note) = match self.transport {
            Transport::Mio => (1, ""),
            Transport::Std => (2, ", two descriptors each"),
        };
        if let Some(open_files) = transport::raise_open_files() {
            if open_files < (wanted as u64).saturating_mul(each) {
                msg(&format!(
                    "the open-file limit ({open_files}) is below the connection limit \
                     ({wanted}{note}): connections past it wait to be accepted"
                ));
            }
        }
        transport::start(listener, self.builder.build(), self.transport, self.options)
    }

    /// The address the server was configured to listen on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Wires SIGINT/SIGTERM to a graceful stop, a second SIGINT to an immediate exit (130)
/// and SIGHUP to a restart; the returned handle ends the wiring.
pub(crate) fn stop_on_signals(
    control: Arc<crate::restart::Control>,
) -> io::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("quick-server-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGHUP => control.restart(),
                    SIGINT if control.is_stopping() => std::process::exit(130),
                    _ => control.quit(),
                }
            }
        })?;
    Ok(handle)
}

/// Resolves `path` against the working directory once, at configuration time.
fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}

/// `localhost:8000` for a loopback address (the original's start line), the address
/// itself otherwise.
fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
