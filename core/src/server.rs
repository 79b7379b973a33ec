//! What every connection of one server shares: limits, identity, the wall clock anchor
//! and the routes, and the dispatch of a complete request to a route.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::coding::Compression;
use crate::cors::CorsPolicy;
use crate::dynamic::route::{DynamicRoutes, Routed, Target};
use crate::dynamic::Handler;
use crate::files::{StaticFiles, WatchOp};
use crate::fs::{DiskFs, FileSystem};
use crate::http::error::HttpError;
use crate::http::head::{MediaType, Method, RequestHead};
use crate::http::response::{Body, Response};
use crate::job::{Completion, JobKind, Output};
use crate::limits::Limits;
use crate::log::RequestLog;
use crate::proxy::exchange::TunnelSlot;
use crate::proxy::route::Rest;
use crate::proxy::{ProxyError, ProxyRoute};
use crate::request::{BodySink, PeerInfo, Request};
use crate::upload::multipart::boundary_from_content_type;
use crate::upload::Collector;
use crate::worker::{MemoryTasks, TaskStore, WorkerDone, WorkerFn, WorkerRoute};
use std::sync::atomic::AtomicUsize;

/// Code run before routing for every GET/HEAD/POST/PUT/DELETE request (the original's
/// pre-middleware); an `Err` answers with that response instead.
pub type PreMiddleware = Arc<dyn Fn(&Request) -> Result<(), Response> + Send + Sync>;

/// Options every route shares: CORS, pre-middleware, logging.
#[derive(Default)]
struct Shared {
    cors: CorsPolicy,
    pre_middleware: Vec<PreMiddleware>,
    request_log: Option<Arc<dyn RequestLog>>,
    slow_threshold: Option<Duration>,
    /// Proxy exchanges are logged in detail (the original's `set_debug_proxy`).
    debug_proxy: bool,
    /// How `https://` upstreams are verified.
    #[cfg(feature = "rustls")]
    upstream_tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cors", &self.cors)
            .field("pre_middleware", &self.pre_middleware.len())
            .field("slow_threshold", &self.slow_threshold)
            .field("debug_proxy", &self.debug_proxy)
            .finish_non_exhaustive()
    }
}

/// The version the `Server` header announces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the server does with a complete request.
pub(crate) enum Dispatch {
    /// Answer at once.
    Respond(Response),
    /// Answer with what this work returns, run by the transport as a [`Job`](crate::Job)
    /// of this kind.
    Run(JobKind, Box<dyn FnOnce() -> Output + Send>),
}

/// Shared, read-only-after-start description of a server. Build it with
/// [`Server::builder`] and hand an `Arc` of it to every [`Connection`](crate::Connection).
#[derive(Debug)]
pub struct Server {
    pub(crate) limits: Limits,
    server_header: String,
    /// A monotonic instant and the wall time it corresponds to: `Date` values are derived
    /// from it, so the core never reads a clock.
    anchor: (Instant, SystemTime),
    files: StaticFiles,
    dynamic: DynamicRoutes,
    shared: Shared,
    workers: Vec<Arc<WorkerRoute>>,
    proxies: Vec<ProxyRoute>,
    /// Proxy tunnels open now (see `Limits::max_tunnels`).
    tunnels: Arc<AtomicUsize>,
}

/// Configures a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    limits: Limits,
    app_version: Option<String>,
    anchor: (Instant, SystemTime),
    files: StaticFiles,
    dynamic: DynamicRoutes,
    shared: Shared,
    workers: Vec<Arc<WorkerRoute>>,
    max_chunk_size: Arc<AtomicUsize>,
    proxies: Vec<ProxyRoute>,
}

impl Server {
    /// A builder. `anchor` pairs a monotonic instant with the wall time at that instant
    /// (transports pass `(Instant::now(), SystemTime::now())`).
    pub fn builder(anchor: (Instant, SystemTime)) -> ServerBuilder {
        Self::builder_with_fs(anchor, Arc::new(DiskFs))
    }

    /// A builder whose files are read through `fs` (tests and fuzzing use a memory tree).
    pub fn builder_with_fs(
        anchor: (Instant, SystemTime),
        fs: Arc<dyn FileSystem>,
    ) -> ServerBuilder {
        ServerBuilder {
            limits: Limits::default(),
            app_version: None,
            anchor,
            files: StaticFiles::new(fs),
            dynamic: DynamicRoutes {
                max_file_size: 50 * 1024 * 1024,
                ..DynamicRoutes::default()
            },
            shared: Shared::default(),
            workers: Vec::new(),
            max_chunk_size: Arc::new(AtomicUsize::new(10 * 1024 * 1024)),
            proxies: Vec::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The `Server` header value.
    pub(crate) fn server_header(&self) -> &str {
        &self.server_header
    }

    /// The wall time at the monotonic instant `now`.
    pub(crate) fn wall_time(&self, now: Instant) -> SystemTime {
        self.anchor.1 + now.saturating_duration_since(self.anchor.0)
    }

    /// Whether the body of this request is kept for its route (otherwise it is framed and
    /// discarded).
    /// A request for `head`: its dynamic route is looked up once, here, and decides where
    /// the body goes (dropped, kept, or parsed as multipart as it arrives).
    pub(crate) fn request(&self, head: RequestHead, peer: Arc<PeerInfo>) -> (Request, Routed) {
        let routed = self.dynamic.route(&head);
        let sink = match routed {
            Routed::Matched(..)
                if matches!(head.method(), Method::Post | Method::Put | Method::Delete) =>
            {
                self.body_sink(&head)
            }
            _ => BodySink::Discard,
        };
        (Request::new(head, peer, sink), routed)
    }

    /// Where the body of a request for a dynamic route goes.
    fn body_sink(&self, head: &RequestHead) -> BodySink {
        if head.media_type() != MediaType::Multipart {
            return BodySink::Collect;
        }
        match boundary_from_content_type(head.media_params()) {
            Some(boundary) => BodySink::Multipart(Box::new(Collector::new(
                boundary,
                self.dynamic.max_file_size,
                self.limits.upload_memory,
                Arc::clone(self.files.fs()),
            ))),
            // No boundary: the route answers 400 when it parses the (kept) body.
            None => BodySink::Collect,
        }
    }

    /// When answers are compressed.
    pub(crate) fn compression(&self) -> &Compression {
        &self.files.compression
    }

    /// `Cache-Control: max-age` for files and handler answers.
    pub fn max_age(&self) -> u64 {
        self.files.max_age
    }

    /// The next folder watch the file cache asks the transport to add (with
    /// [`WATCH_MASK`](crate::files::WATCH_MASK)) or remove; a cached file is answered
    /// without `stat` once every folder above it is watched.
    pub fn poll_watch(&self) -> Option<WatchOp> {
        self.files.poll_watch()
    }

    /// How adding the watch of `folder` went: its descriptor, or `None` if it failed
    /// (files under it are then revalidated on every hit).
    pub fn watch_added(&self, folder: &Path, descriptor: Option<i32>) {
        self.files.watch_added(folder, descriptor);
    }

    /// The change notifications read from the watch descriptor (whole inotify records):
    /// drops the cached files they make stale, or all of them after an overflow.
    pub fn watch_events(&self, records: &[u8]) {
        self.files.watch_events(records);
    }

    /// Forgets every cached file at or under `path` (a file, or everything in a folder),
    /// for changes no watch announces.
    pub fn invalidate(&self, path: &Path) {
        self.files.invalidate(path);
    }

    /// Records a finished worker computation whose connection is gone (a connection
    /// forwards its own background completions here itself). Other completions are dropped.
    pub fn complete(&self, completion: Completion, now: Instant) {
        if let Output::Worker(done) = completion.output {
            self.record_worker(done, now);
        }
    }

    pub(crate) fn record_worker(&self, done: WorkerDone, now: Instant) {
        if let Some(message) = done.record(now) {
            if let Some(log) = self.request_log() {
                log.note(&message);
            }
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must run: when
    /// an unread worker result or cargo chunk expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.workers.iter().filter_map(|w| w.poll_timeout()).min()
    }

    /// Purges worker results and cargo that expired by `now` (BEHAVIOUR.md: Workers › Result
    /// retention), logging each.
    pub fn handle_timeout(&self, now: Instant) {
        for worker in &self.workers {
            for purged in worker.handle_timeout(now) {
                if let Some(log) = self.request_log() {
                    log.note(&purged.to_string());
                }
            }
        }
    }

    /// The proxy binding that takes this request, and the upstream target (BEHAVIOUR.md: Proxy;
    /// checked before dynamic routes and files, newest binding first).
    pub(crate) fn proxy_for(&self, head: &RequestHead) -> Option<(&ProxyRoute, Rest)> {
        if !matches!(
            head.method(),
            Method::Get | Method::Head | Method::Post | Method::Put | Method::Delete
        ) {
            return None;
        }
        self.proxies
            .iter()
            .find_map(|p| p.rest(head.target()).map(|rest| (p, rest)))
    }

    /// The request log, if one is installed.
    pub(crate) fn request_log(&self) -> Option<&dyn RequestLog> {
        self.shared.request_log.as_deref()
    }

    /// How long a dynamic request may run before it is reported as slow.
    pub(crate) fn slow_threshold(&self) -> Option<Duration> {
        self.shared.slow_threshold
    }

    /// A place for one more proxy tunnel, if `Limits::max_tunnels` allows it.
    pub(crate) fn tunnel_slot(&self) -> Option<TunnelSlot> {
        TunnelSlot::take(&self.tunnels, self.limits.max_tunnels)
    }

    /// How `https://` upstreams are verified (roots, extra CAs); without it a transport
    /// answers their requests 502.
    #[cfg(feature = "rustls")]
    pub fn upstream_tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.shared.upstream_tls.as_ref()
    }

    /// Whether proxy exchanges are logged in detail.
    pub(crate) fn debug_proxy(&self) -> bool {
        self.shared.debug_proxy && self.shared.request_log.is_some()
    }

    /// The CORS fields for a request's answer, first in the head.
    pub(crate) fn cors_fields(&self, head: &RequestHead) -> Vec<(Cow<'static, str>, String)> {
        self.shared.cors.fields(head)
    }

    /// Routes a complete request (BEHAVIOUR.md: Request pipeline): pre-middleware, then dynamic
    /// routes, then files.
    pub(crate) fn dispatch(
        server: &Arc<Self>,
        request: Request,
        routed: Routed,
        now: Instant,
        wall: SystemTime,
    ) -> Dispatch {
        let routable = matches!(
            request.head.method(),
            Method::Get | Method::Head | Method::Post | Method::Put | Method::Delete
        );
        if routable && !server.shared.pre_middleware.is_empty() {
            // User code may block: run the whole request as a job.
            let server = Arc::clone(server);
            return Dispatch::Run(
                JobKind::Request,
                Box::new(move || {
                    for pre in &server.shared.pre_middleware {
                        if let Err(response) = pre(&request) {
                            return Output::Respond(response);
                        }
                    }
                    match Server::route(&server, request, routed, now, wall) {
                        Dispatch::Respond(response) => Output::Respond(response),
                        Dispatch::Run(_, work) => work(),
                    }
                }),
            );
        }
        Server::route(server, request, routed, now, wall)
    }

    /// Dynamic routes first, then static files, then the fixed answers.
    fn route(
        server: &Arc<Self>,
        request: Request,
        routed: Routed,
        now: Instant,
        wall: SystemTime,
    ) -> Dispatch {
        if let Routed::Matched(target, args) = routed {
            let kind = target.job_kind();
            return Dispatch::Run(kind, server.dynamic.work(target, *args, request, now, wall));
        }
        let head = &request.head;
        Dispatch::Respond(match head.method() {
            Method::Get | Method::Head => match server.files.serve(head, wall) {
                Ok(response) => response,
                Err(deferred) => {
                    // Work that grows with the file or folder: finish it off the event loop.
                    let server = Arc::clone(server);
                    return Dispatch::Run(
                        JobKind::Request,
                        Box::new(move || {
                            Output::Respond(server.files.finish(deferred, &request.head))
                        }),
                    );
                }
            },
            Method::Options => Response::new(200, Body::Empty),
            Method::Post | Method::Put | Method::Delete => HttpError::NotFound.response(),
            Method::Other => HttpError::UnsupportedMethod(head.method_str().to_owned()).response(),
        })
    }
}

impl ServerBuilder {
    /// Replaces the limits.
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// Prefixes the `Server` header with an application version (`update_version_string`).
    pub fn app_version(&mut self, version: impl Into<String>) -> &mut Self {
        self.app_version = Some(version.into());
        self
    }

    /// Compresses answers for clients that accept it (files and in-memory answers alike).
    pub fn compression(&mut self, compression: Compression) -> &mut Self {
        self.files.compression = compression;
        self
    }

    /// The static-file route, to bind folders and set file options.
    pub fn files(&mut self) -> &mut StaticFiles {
        &mut self.files
    }

    /// Registers `handler` for `method` requests whose target matches `mask`, with an
    /// optional count of extra path segments (`argc`). A later registration of
    /// the same method and mask replaces the earlier one.
    pub fn route(
        &mut self,
        method: Method,
        mask: &str,
        argc: Option<usize>,
        handler: Handler,
    ) -> &mut Self {
        let target = Target::Handler(handler, JobKind::Request);
        self.dynamic.table.insert(method, mask, argc, target);
        self
    }

    /// Like [`route`](Self::route), for a handler that never blocks and takes
    /// microseconds: its jobs are [`JobKind::Inline`], which the transport runs on the
    /// spot instead of on its pool. A handler that blocks here stalls every connection the
    /// same thread drives (the whole event loop, on the mio transport).
    pub fn route_inline(
        &mut self,
        method: Method,
        mask: &str,
        argc: Option<usize>,
        handler: Handler,
    ) -> &mut Self {
        let target = Target::Handler(handler, JobKind::Inline);
        self.dynamic.table.insert(method, mask, argc, target);
        self
    }

    /// Forwards requests under `prefix` to the `http://` or `https://` upstream `url` (or
    /// several, comma-separated), before any other route (BEHAVIOUR.md: Proxy); the newest
    /// binding wins. `https://` needs `upstream_tls` (feature `rustls`).
    pub fn bind_proxy(&mut self, prefix: &str, url: &str) -> Result<&mut Self, ProxyError> {
        self.proxies.insert(0, ProxyRoute::new(prefix, url)?);
        Ok(self)
    }

    /// Registers a worker at `mask`: a POST route (argc 0) speaking the start/get/stop/cargo
    /// protocol (BEHAVIOUR.md: Workers), whose computations run as background jobs.
    pub fn worker(&mut self, mask: &str, work: WorkerFn) -> &mut Self {
        self.worker_in(mask, work, Arc::new(MemoryTasks::new()), true)
    }

    /// Like [`worker`](Self::worker), keeping the tasks in `store` (for example in Redis,
    /// shared by several instances); `compress: false` keeps its answers uncompressed, for
    /// results that mix a secret with reflected input (BEHAVIOUR.md: Compression).
    pub fn worker_in(
        &mut self,
        mask: &str,
        work: WorkerFn,
        store: Arc<dyn TaskStore>,
        compress: bool,
    ) -> &mut Self {
        let route = Arc::new(WorkerRoute::new(
            mask,
            work,
            store,
            Arc::clone(&self.max_chunk_size),
            compress,
        ));
        self.workers.push(Arc::clone(&route));
        self.dynamic
            .table
            .insert(Method::Post, mask, Some(0), Target::Worker(route));
        self
    }

    /// The worker result split size in characters (default 10 MiB), shared so it can be
    /// changed while the server runs (the original's `max_chunk_size`).
    pub fn max_chunk_size(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.max_chunk_size)
    }

    /// Lets any origin read answers, without credentials (the original's
    /// `cross_origin`): CORS fields on every answer and preflight `OPTIONS` answered.
    pub fn cross_origin(&mut self, on: bool) -> &mut Self {
        self.shared.cors.set_any_origin(on);
        self
    }

    /// The CORS policy, to name the origins that may read answers with credentials.
    pub fn cors(&mut self) -> &mut CorsPolicy {
        &mut self.shared.cors
    }

    /// Runs `pre` before routing every GET/HEAD/POST/PUT/DELETE request, in the order added.
    pub fn pre_middleware(&mut self, pre: PreMiddleware) -> &mut Self {
        self.shared.pre_middleware.push(pre);
        self
    }

    /// Receives a record of every answered request.
    pub fn request_log(&mut self, log: Arc<dyn RequestLog>) -> &mut Self {
        self.shared.request_log = Some(log);
        self
    }

    /// Logs each proxy exchange to the request log's notes: the request as sent upstream
    /// (headers, payload), the response (status, length, headers), and its status,
    /// bytes and time (the original's `set_debug_proxy`).
    pub fn debug_proxy(&mut self, on: bool) -> &mut Self {
        self.shared.debug_proxy = on;
        self
    }

    /// The TLS client configuration of `https://` proxy upstreams: the roots and CAs
    /// their certificates are verified against (there is no way to skip verification).
    #[cfg(feature = "rustls")]
    pub fn upstream_tls(&mut self, config: Arc<rustls::ClientConfig>) -> &mut Self {
        self.shared.upstream_tls = Some(config);
        self
    }

    /// Reports dynamic requests that run longer than `threshold` (the original: 5 s).
    pub fn slow_threshold(&mut self, threshold: Option<Duration>) -> &mut Self {
        self.shared.slow_threshold = threshold;
        self
    }

    /// Largest multipart part accepted, in bytes (default 50 MiB; 413 beyond).
    pub fn max_file_size(&mut self, bytes: u64) -> &mut Self {
        self.dynamic.max_file_size = bytes;
        self
    }

    /// The finished server.
    pub fn build(self) -> Arc<Server> {
        let base = format!("QuickServer/{VERSION} Rust");
        let server_header = match self.app_version {
            Some(app) => format!("{app} {base}"),
            None => base,
        };
        Arc::new(Server {
            limits: self.limits,
            server_header,
            anchor: self.anchor,
            files: self.files,
            dynamic: self.dynamic,
            shared: self.shared,
            workers: self.workers,
            proxies: self.proxies,
            tunnels: Arc::new(AtomicUsize::new(0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::conn::Connection;
    use crate::dynamic::Args;
    use crate::fs::MemoryFs;
    use crate::log::{RequestRecord, SlowRequest};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl RequestLog for Recorder {
        fn request(&self, r: &RequestRecord<'_>) {
            let line = format!(
                "{} {} {:?} {:?} {}",
                r.request_line, r.status, r.message, r.size, r.peer
            );
            self.0.lock().unwrap().push(line);
        }
        fn slow(&self, s: &SlowRequest<'_>) {
            let line = format!("slow {} {} {}", s.method, s.target, s.completed);
            self.0.lock().unwrap().push(line);
        }
        fn note(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_owned());
        }
    }

    fn build(configure: impl FnOnce(&mut ServerBuilder)) -> (Arc<Server>, Instant) {
        let now = Instant::now();
        let mut fs = MemoryFs::new();
        fs.insert("/www/a.txt", "hello", SystemTime::UNIX_EPOCH);
        let mut builder = Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(fs));
        builder.files().bind_path("/", "/www").unwrap();
        configure(&mut builder);
        (builder.build(), now)
    }

    /// Feeds `input` and drains, running jobs inline, at time `now`.
    fn run(conn: &mut Connection, input: &[u8], now: Instant) -> String {
        conn.feed(input, now);
        String::from_utf8_lossy(&crate::testing::drain(conn, now, None)).into_owned()
    }

    #[test]
    fn cors_fields_and_preflight() {
        let (server, now) = build(|b| {
            b.cross_origin(true);
        });
        let mut conn = Connection::new(server, PeerInfo::default(), now);
        let wire = run(
            &mut conn,
            b"OPTIONS /x HTTP/1.1\r\nHost: h\r\nAccess-Control-Request-Headers: X-A\r\n\r\n",
            now,
        );
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(wire.contains("Access-Control-Allow-Methods: GET, POST, PUT, DELETE, HEAD\r\nAccess-Control-Allow-Headers: X-A\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Max-Age: 0\r\nContent-Length: 0\r\n"), "{wire}");
        let wire = run(
            &mut conn,
            b"GET /a.txt HTTP/1.1\r\nHost: h\r\nOrigin: http://app.test\r\n\r\n",
            now,
        );
        assert!(
            wire.contains("Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nAccess-Control-Allow-Methods: "),
            "CORS first: {wire}"
        );
        assert!(
            wire.contains("Access-Control-Allow-Origin: *\r\n"),
            "{wire}"
        );
        assert!(
            !wire.contains("Credentials"),
            "any origin never gets credentials"
        );
        let wire = run(&mut conn, b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n", now);
        assert!(
            wire.contains("404") && wire.contains("Access-Control-Allow-Origin: *"),
            "error pages too"
        );
    }

    #[test]
    fn cors_allow_list_echoes_only_listed_origins() {
        let (server, now) = build(|b| {
            b.cors().allow("http://app.test").expect("a valid origin");
        });
        let mut conn = Connection::new(server, PeerInfo::default(), now);
        let wire = run(
            &mut conn,
            b"GET /a.txt HTTP/1.1\r\nHost: h\r\nOrigin: http://app.test\r\n\r\n",
            now,
        );
        assert!(wire.contains("Access-Control-Allow-Origin: http://app.test\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"), "{wire}");
        let wire = run(
            &mut conn,
            b"GET /a.txt HTTP/1.1\r\nHost: h\r\nOrigin: http://evil.test\r\n\r\n",
            now,
        );
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(!wire.contains("Access-Control"), "{wire}");
        assert!(wire.contains("Vary: Origin\r\n"), "{wire}");
    }

    #[test]
    fn options_without_cors_is_bare() {
        let (server, now) = build(|_| {});
        let mut conn = Connection::new(server, PeerInfo::default(), now);
        let wire = run(&mut conn, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", now);
        assert!(wire.ends_with("GMT\r\nContent-Length: 0\r\n\r\n"), "{wire}");
    }

    #[test]
    fn pre_middleware_runs_first_and_may_answer() {
        let (server, now) = build(|b| {
            b.pre_middleware(Arc::new(|r: &Request| match r.head.target() {
                "/blocked" => Err(HttpError::Refused {
                    status: 403,
                    message: "nope".into(),
                }
                .response()),
                _ => Ok(()),
            }));
        });
        let mut conn = Connection::new(server, PeerInfo::default(), now);
        let wire = run(
            &mut conn,
            b"GET /blocked HTTP/1.1\r\nHost: h\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: h\r\n\r\n",
            now,
        );
        assert!(wire.starts_with("HTTP/1.1 403 nope\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nhello"));
    }

    #[test]
    fn request_records_and_slow_reports() {
        let log = Arc::new(Recorder::default());
        let (server, now) = build(|b| {
            b.request_log(log.clone())
                .slow_threshold(Some(Duration::from_secs(5)));
            b.route(
                Method::Get,
                "/slow",
                None,
                Arc::new(|_: &Request, _: &mut Args| Response::new(200, Body::Empty)),
            );
        });
        let peer = PeerInfo {
            addr: "127.0.0.1:9".into(),
            secure: false,
        };
        let mut conn = Connection::new(Arc::clone(&server), peer.clone(), now);
        run(
            &mut conn,
            b"GET /a.txt HTTP/1.1\r\nHost: h\r\n\r\nGET /x\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
            now,
        );
        assert!(conn.is_closed(), "a control character in the target closes");
        let mut conn = Connection::new(server, peer, now);
        conn.feed(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n", now);
        let job = conn.poll_job().expect("handler job");
        assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(5)));
        conn.handle_timeout(now + Duration::from_secs(5));
        conn.complete(job.run(), now + Duration::from_secs(6));
        let lines = log.0.lock().unwrap().clone();
        assert_eq!(lines[0], "GET /a.txt HTTP/1.1 200 None Some(5) 127.0.0.1:9");
        assert!(
            lines[1].starts_with("GET /x\u{1} HTTP/1.1 400 Some("),
            "{lines:?}"
        );
        assert_eq!(
            lines[2..],
            [
                "slow GET /slow false",
                "slow GET /slow true",
                "GET /slow HTTP/1.1 200 None None 127.0.0.1:9"
            ]
        );
    }

    fn post(target: &str, body: &str) -> Vec<u8> {
        format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    }

    /// Runs request jobs inline and keeps background jobs for the test to run.
    fn step(
        conn: &mut Connection,
        input: &[u8],
        now: Instant,
        background: &mut Vec<crate::Job>,
    ) -> String {
        conn.feed(input, now);
        String::from_utf8_lossy(&crate::testing::drain(conn, now, Some(background))).into_owned()
    }

    fn token_of(wire: &str) -> String {
        let body = &wire[wire.find("\r\n\r\n").unwrap() + 4..];
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        value["token"].as_str().unwrap().to_owned()
    }

    #[test]
    fn worker_protocol_through_a_connection() {
        let log = Arc::new(Recorder::default());
        let mut chunk = None;
        let (server, now) = build(|b| {
            chunk = Some(b.max_chunk_size());
            b.request_log(log.clone());
            b.worker(
                "/api/work/:n",
                Arc::new(
                    |payload: serde_json::Value, flag: &crate::worker::CancelFlag| {
                        if flag.is_cancelled() {
                            return Ok("null".into());
                        }
                        match payload["n"].as_str() {
                            Some("fail") => Err(crate::worker::WorkerFailure {
                                status: None,
                                message: "broken".into(),
                            }),
                            Some(n) => Ok(format!("\"{}\"", n.repeat(3))),
                            None => Ok("null".into()),
                        }
                    },
                ),
            );
        });
        chunk
            .unwrap()
            .store(4, std::sync::atomic::Ordering::Relaxed);
        let mut conn = Connection::new(Arc::clone(&server), PeerInfo::default(), now);
        let mut background = Vec::new();
        // start: nothing until the wait is over, then the first answer.
        let wire = step(
            &mut conn,
            &post("/api/work/ab", r#"{"action": "start", "payload": {}}"#),
            now,
            &mut background,
        );
        assert_eq!(wire, "");
        assert_eq!(background.len(), 1);
        assert_eq!(conn.poll_timeout(), Some(now + crate::worker::START_WAIT));
        let later = now + crate::worker::START_WAIT;
        conn.handle_timeout(later);
        let wire = step(&mut conn, b"", later, &mut background);
        assert!(
            wire.contains("\"continue\": true") && wire.contains("\"done\": false"),
            "{wire}"
        );
        let token = token_of(&wire);
        // The computation finishes; get returns the result split into cargo.
        conn.complete(background.pop().unwrap().run(), later);
        let wire = step(
            &mut conn,
            &post(
                "/api/work/ab",
                &format!(r#"{{"action": "get", "token": {token}}}"#),
            ),
            later,
            &mut background,
        );
        assert!(
            wire.contains("\"done\": true") && wire.contains("\"continue\": true"),
            "{wire}"
        );
        let body = &wire[wire.find("\r\n\r\n").unwrap() + 4..];
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        let keys: Vec<String> = value["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let mut text = String::new();
        for key in &keys {
            let wire = step(
                &mut conn,
                &post(
                    "/api/work/ab",
                    &format!(r#"{{"action": "cargo", "token": "{key}"}}"#),
                ),
                later,
                &mut background,
            );
            let body = &wire[wire.find("\r\n\r\n").unwrap() + 4..];
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            text.push_str(value["result"].as_str().unwrap());
        }
        assert_eq!(text, "\"ababab\"");
        let wire = step(
            &mut conn,
            &post(
                "/api/work/ab",
                &format!(r#"{{"action": "cargo", "token": "{}"}}"#, keys[0]),
            ),
            later,
            &mut background,
        );
        assert!(
            wire.starts_with("HTTP/1.1 500 "),
            "cargo is one-shot: {wire}"
        );
        // A failing computation: logged and answered 500 worker error.
        step(
            &mut conn,
            &post("/api/work/fail", r#"{"action": "start"}"#),
            later,
            &mut background,
        );
        server.complete(background.pop().unwrap().run(), later);
        conn.handle_timeout(later + crate::worker::START_WAIT);
        let wire = step(&mut conn, b"", later, &mut background);
        assert!(wire.starts_with("HTTP/1.1 500 worker error"), "{wire}");
        assert!(log
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("Error in worker for /api/work/:n (")));
        // stop on an unknown token still answers done.
        let wire = step(
            &mut conn,
            &post("/api/work/x", r#"{"action": "stop", "token": "1"}"#),
            later,
            &mut background,
        );
        assert!(
            wire.contains("\"done\": true") && wire.contains("\"token\": \"1\""),
            "{wire}"
        );
        let wire = step(
            &mut conn,
            &post("/api/work/x", r#"{"action": "dance"}"#),
            later,
            &mut background,
        );
        assert!(wire.starts_with("HTTP/1.1 500 "), "{wire}");
    }

    #[test]
    fn worker_results_expire_on_the_server_timer() {
        let log = Arc::new(Recorder::default());
        let (server, now) = build(|b| {
            b.request_log(log.clone());
            b.worker(
                "/w",
                Arc::new(|_: serde_json::Value, _: &crate::worker::CancelFlag| Ok("1".into())),
            );
        });
        let mut conn = Connection::new(Arc::clone(&server), PeerInfo::default(), now);
        let mut background = Vec::new();
        for _ in 0..3 {
            step(
                &mut conn,
                &post("/w", r#"{"action": "start"}"#),
                now,
                &mut background,
            );
            server.complete(background.pop().unwrap().run(), now);
            conn.handle_timeout(now + crate::worker::START_WAIT);
            step(&mut conn, b"", now, &mut background);
        }
        assert_eq!(
            server.poll_timeout(),
            None,
            "results collected by the start answers"
        );
        step(
            &mut conn,
            &post("/w", r#"{"action": "start"}"#),
            now,
            &mut background,
        );
        let abandoned = background.pop().unwrap();
        conn.handle_timeout(now + crate::worker::START_WAIT);
        step(&mut conn, b"", now, &mut background);
        server.complete(abandoned.run(), now);
        let deadline = server.poll_timeout().expect("an unread result waits");
        assert_eq!(deadline, now + crate::worker::RESULT_RETENTION);
        server.handle_timeout(deadline);
        assert_eq!(server.poll_timeout(), None);
        assert!(log
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("purged result that was never read (")));
    }

    #[test]
    fn file_fallback_hook_answers_unknown_paths() {
        let (server, now) = build(|b| {
            b.files().fallback_hook = Some(crate::files::FallbackHook(Arc::new(|path: &str| {
                path.starts_with("/app/")
                    .then(|| std::path::PathBuf::from("/www/a.txt"))
            })));
        });
        let mut conn = Connection::new(server, PeerInfo::default(), now);
        let wire = run(
            &mut conn,
            b"GET /app/deep/link HTTP/1.1\r\nHost: h\r\n\r\n",
            now,
        );
        assert!(
            wire.starts_with("HTTP/1.1 200 OK") && wire.ends_with("hello"),
            "{wire}"
        );
        let wire = run(&mut conn, b"GET /other HTTP/1.1\r\nHost: h\r\n\r\n", now);
        assert!(wire.starts_with("HTTP/1.1 404 "), "{wire}");
    }

    #[test]
    fn a_full_disk_during_an_upload_is_507_and_leaves_no_file() {
        let now = Instant::now();
        let fs = Arc::new(MemoryFs::new().with_temp_quota(64 * 1024));
        let mut builder = Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), fs.clone());
        builder.limits(Limits {
            upload_memory: 4096,
            ..Limits::default()
        });
        builder.route(
            Method::Post,
            "/up",
            None,
            Arc::new(|_: &Request, _: &mut Args| Response::new(200, Body::Empty)),
        );
        let mut conn = Connection::new(builder.build(), PeerInfo::default(), now);
        let file = vec![b'x'; 200 * 1024];
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        body.extend_from_slice(&file);
        body.extend_from_slice(b"\r\n--B--\r\n");
        let head = format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n", body.len());
        let mut input = head.into_bytes();
        input.extend_from_slice(&body);
        let wire = run(&mut conn, &input, now);
        assert!(
            wire.starts_with("HTTP/1.1 507 Insufficient Storage"),
            "{}",
            &wire[..wire.len().min(200)]
        );
        assert!(wire.contains("Connection: close") && conn.is_closed());
        drop(conn);
        assert_eq!(fs.live_temp_files(), 0, "the partial file is removed");
    }

    #[test]
    fn a_failed_upstream_tls_session_answers_502_and_logs_why() {
        let log = Arc::new(Recorder::default());
        let (server, now) = build(|b| {
            b.bind_proxy("/px/", "http://plain:1/,https://up.test/")
                .unwrap()
                .request_log(log.clone());
        });
        let mut conn = Connection::new(server, PeerInfo::default(), now);
        conn.feed(b"GET /px/a HTTP/1.1\r\nHost: h\r\n\r\n", now);
        let mut upstream = conn.upstream().unwrap();
        let first = upstream.poll_connect().unwrap();
        assert!(!first.tls && first.port == 1);
        upstream.failed(now); // refused: the next upstream, over TLS
        upstream.poll_release();
        let second = upstream.poll_connect().unwrap();
        assert!(second.tls && second.port == 443 && second.host == "up.test");
        upstream.connected(now);
        let sent = String::from_utf8_lossy(upstream.transmit().unwrap()).into_owned();
        assert!(sent.contains("\r\nHost: up.test\r\n"), "{sent}");
        assert!(
            sent.contains("\r\nX-Forwarded-Proto: http\r\n"),
            "what the client used, not the upstream's scheme: {sent}"
        );
        let n = sent.len();
        upstream.transmitted(n, now);
        upstream.tls_failed("invalid peer certificate: UnknownIssuer", now);
        let wire =
            String::from_utf8_lossy(&crate::testing::drain(&mut conn, now, None)).into_owned();
        assert!(wire.starts_with("HTTP/1.1 502 "), "{wire}");
        assert_eq!(
            conn.upstream().and_then(|mut u| u.poll_connect()),
            None,
            "no retry"
        );
        let lines = log.0.lock().unwrap();
        assert!(
            lines.contains(&"proxy: TLS with https://up.test/a failed: invalid peer certificate: UnknownIssuer".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("GET /px/a HTTP/1.1 502 ")),
            "{lines:?}"
        );
    }
}
