//! The user-facing server: the original's builder methods over the core and a transport.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use quick_server_core::dynamic::{json_dumps, render, Args, Handler, Method};
use quick_server_core::files::{BadPrefix, Favicon, EMPTY_FAVICON};
use quick_server_core::{Request, Response, Server, ServerBuilder};
use serde::Serialize;

use crate::transport::{self, Running, TransportOptions};

use crate::cache::ResultCache;
use crate::middleware::{with_middlewares, Middleware, PreChain};
use crate::tokens::TokenHandle;
use crate::workers::{
    mirror_worker_js, worker_fn, CacheId, CacheSlot, DEFAULT_CACHE_SECTION, WORKER_JS,
    WORKER_JS_CONTENT_TYPE,
};
use quick_server_core::worker::{CancelFlag, WorkerFailure};
use serde_json::Value;
use std::sync::atomic::AtomicUsize;

/// Writes each line of `text` with the `[SERVER] ` prefix (the original's short form) to
/// the log: stderr, or the file given to [`set_log_file`](crate::set_log_file).
pub fn msg(text: &str) {
    crate::logging::write_lines(text);
}

/// Stops a handler with an error page: the original's `PreventDefaultResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// The status of the error page.
    pub status: u16,
    /// The message (reason phrase and page text); empty by default as in the original.
    pub message: String,
}

impl Abort {
    /// An error page with `status` and `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for Abort {}

/// A handler result with its own status, content type or extra fields: the original's
/// `Response(value, code, ctype)`.
#[derive(Debug, Clone)]
pub struct Custom<T> {
    /// The value (JSON-encoded on JSON routes, sent as is on text routes).
    pub value: T,
    /// The status (200 by default).
    pub status: u16,
    /// Overrides the route's content type.
    pub content_type: Option<String>,
    /// Extra fields, written before `Content-Type`.
    pub fields: Vec<(String, String)>,
}

impl<T> Custom<T> {
    /// `value` with status 200 and the route's content type.
    pub fn new(value: T) -> Self {
        Self {
            value,
            status: 200,
            content_type: None,
            fields: Vec::new(),
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds a field.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }
}

/// A value a JSON route may return.
pub trait JsonReply {
    /// The value as a `Custom` with its JSON text (`None` for a null value: 404).
    fn into_custom(self) -> Result<Custom<Option<String>>, String>;
}

impl<T: Serialize> JsonReply for T {
    fn into_custom(self) -> Result<Custom<Option<String>>, String> {
        Custom::new(self).into_custom()
    }
}

impl<T: Serialize> JsonReply for Custom<T> {
    fn into_custom(self) -> Result<Custom<Option<String>>, String> {
        let text = json_dumps(&self.value).map_err(|e| e.to_string())?;
        let value = (text != "null").then_some(text);
        Ok(Custom {
            value,
            status: self.status,
            content_type: self.content_type,
            fields: self.fields,
        })
    }
}

/// A value a text route may return: text or bytes, plain, optional or in a `Custom`.
pub trait TextReply {
    /// The body as a `Custom` (`None` for "no value": 404 `File not found`).
    fn into_custom(self) -> Custom<Option<Vec<u8>>>;
}

impl TextReply for String {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self.into_bytes()))
    }
}

impl TextReply for &'static str {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self.as_bytes().to_vec()))
    }
}

impl TextReply for Vec<u8> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self))
    }
}

impl TextReply for &'static [u8] {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self.to_vec()))
    }
}

impl<T: TextReply> TextReply for Option<T> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        self.map_or_else(|| Custom::new(None), TextReply::into_custom)
    }
}

impl<T: TextReply> TextReply for Custom<T> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        let inner = self.value.into_custom();
        Custom {
            value: inner.value,
            status: self.status,
            content_type: self.content_type,
            fields: self.fields,
        }
    }
}

/// A server being configured; [`serve_forever`](Self::serve_forever) runs it.
pub struct QuickServer {
    addr: SocketAddr,
    /// Console commands and options (see `console.rs`).
    pub(crate) console: crate::console::Console,
    /// Request-log options (see `logging.rs`).
    pub(crate) log: crate::logging::LogOptions,
    builder: ServerBuilder,
    transport: TransportOptions,
    max_age: u64,
    routing: Routing,
}

/// What route registration keeps besides the core builder.
#[derive(Default)]
struct Routing {
    /// Middlewares of the enclosing [`QuickServer::middlewares`] scopes, outermost first.
    scope: Vec<Middleware>,
    /// Pre-middlewares and worker middleware, run before routing.
    pre: PreChain,
    tokens: TokenHandle,
    cache: CacheSlot,
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
            transport: TransportOptions::default(),
            max_age: 0,
            routing: Routing::default(),
        }
    }

    /// Serves `folder` under `prefix` (which must start and end with `/`), tried before
    /// earlier bindings.
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
    /// `http://` upstream `url`, before every other route; the newest binding wins.
    pub fn bind_proxy(
        &mut self,
        prefix: &str,
        url: &str,
    ) -> Result<&mut Self, quick_server_core::proxy::ProxyError> {
        self.builder.bind_proxy(prefix, url)?;
        Ok(self)
    }

    /// Serves only files matching the original's default patterns (`*.html`, `*.js`, …).
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

    /// Answers missing `favicon.ico` requests with a small empty icon built in.
    pub fn link_empty_favicon_fallback(&mut self) -> &mut Self {
        self.builder.files().favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
        self
    }

    /// Answers missing `favicon.ico` requests with this file.
    pub fn favicon_fallback(&mut self, file: impl AsRef<Path>) -> &mut Self {
        self.builder.files().favicon_fallback = Some(Favicon::File(absolute(file.as_ref())));
        self
    }

    /// Lists folders that have no index page (off by default).
    pub fn directory_listing(&mut self, on: bool) -> &mut Self {
        self.builder.files().directory_listing = on;
        self
    }

    /// Answers unknown paths of requests accepting HTML with `file` (single-page apps).
    pub fn spa_fallback(&mut self, file: impl AsRef<Path>) -> &mut Self {
        self.builder.files().spa_fallback = Some(absolute(file.as_ref()));
        self
    }

    /// `Cache-Control: max-age` for files and handler answers, in seconds.
    pub fn max_age(&mut self, seconds: u64) -> &mut Self {
        self.max_age = seconds;
        self.builder.files().max_age = seconds;
        self
    }

    /// Largest multipart part accepted, in bytes (default 50 MiB).
    pub fn max_file_size(&mut self, bytes: u64) -> &mut Self {
        self.builder.max_file_size(bytes);
        self
    }

    /// Replaces the connection limits.
    pub fn limits(&mut self, limits: quick_server_core::Limits) -> &mut Self {
        let builder = std::mem::replace(
            &mut self.builder,
            Server::builder((Instant::now(), SystemTime::now())),
        );
        self.builder = builder.limits(limits);
        self
    }

    /// Chooses the transport, TLS and pool settings.
    pub fn transport(&mut self, options: TransportOptions) -> &mut Self {
        self.transport = options;
        self
    }

    /// A JSON `GET` route; `argc` is the required number of extra path segments.
    ///
    /// The handler runs off the event loop with the parsed `args`; its value is sent with
    /// [`json_dumps`] (a null value answers 404), an [`Abort`] answers its error page and
    /// a panic answers 500. Middlewares of enclosing [`middlewares`](Self::middlewares)
    /// scopes run first.
    pub fn json_get<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Get, mask, argc, handler)
    }

    /// A JSON `POST` route.
    pub fn json_post<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Post, mask, argc, handler)
    }

    /// A JSON `PUT` route.
    pub fn json_put<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Put, mask, argc, handler)
    }

    /// A JSON `DELETE` route.
    pub fn json_delete<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: JsonReply,
    {
        self.json(Method::Delete, mask, argc, handler)
    }

    /// A JSON route for any of the four methods.
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
        self.builder
            .route(method, mask, argc, json_handler(handler, self.max_age));
        self
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
        self.builder
            .route(method, mask, argc, text_handler(handler, self.max_age));
        self
    }

    /// A text `GET` route.
    pub fn text_get<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Get, mask, argc, handler)
    }

    /// A text `POST` route.
    pub fn text_post<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Post, mask, argc, handler)
    }

    /// A text `PUT` route.
    pub fn text_put<F, R>(&mut self, mask: &str, argc: Option<usize>, handler: F) -> &mut Self
    where
        F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
        R: TextReply,
    {
        self.text(Method::Put, mask, argc, handler)
    }

    /// A text `DELETE` route.
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

    /// Runs `pre` before routing every GET/HEAD/POST/PUT/DELETE request, static files
    /// included, in the order added; an [`Abort`] answers its error page.
    pub fn pre_middleware<F>(&mut self, pre: F) -> &mut Self
    where
        F: Fn(&Request) -> Result<(), Abort> + Send + Sync + 'static,
    {
        self.routing.pre.add(&mut self.builder, Arc::new(pre));
        self
    }

    /// Answers preflight `OPTIONS` and adds the CORS fields to every answer (SPEC 7). With
    /// credentials allowed, the request's `Origin` is reflected instead of the original's
    /// `*`, which browsers refuse in that combination.
    pub fn cross_origin(&mut self, on: bool) -> &mut Self {
        self.builder.cross_origin(on);
        self
    }

    /// The size above which worker results are split into cargo chunks, in characters
    /// (default 10 MiB); change it at any time, also while serving.
    pub fn max_chunk_size(&self) -> Arc<AtomicUsize> {
        self.builder.max_chunk_size()
    }

    /// The server's tokens (SPEC 6), to use from handlers; clones share them.
    pub fn tokens(&self) -> TokenHandle {
        self.routing.tokens.clone()
    }

    /// Installs the store worker results are cached in (see [`json_worker`](Self::json_worker)).
    pub fn cache(&mut self, cache: Arc<dyn ResultCache>) -> &mut Self {
        self.routing.cache.set(cache);
        self
    }

    /// A worker route at `mask` (SPEC 5): a POST route speaking `start`/`get`/`stop`/`cargo`
    /// whose jobs run on the background pool.
    ///
    /// `job` gets the payload (with the mask's captures written into it) and a
    /// [`CancelFlag`] to poll; its value is sent as [`json_dumps`] text. An error with a
    /// status (an [`Abort`]) answers that error page when the result is collected, one
    /// without (a [`WorkerFailure`] with no status, a panic) answers 500 `worker error`
    /// and is logged. With `cache_id` and an installed [`cache`](Self::cache), results are
    /// cached under the key's JSON text in section `www`.
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
        self.builder.worker(mask, work);
        if !self.routing.scope.is_empty() {
            let chain = self.routing.scope.clone();
            self.routing
                .pre
                .guard_worker(&mut self.builder, mask, chain, self.max_age);
        }
        self
    }

    /// Serves the bundled `worker.js` at `mask` (`application/javascript; charset=utf-8`,
    /// with ETag and 304 like every text route).
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
    pub fn start(self) -> io::Result<Running> {
        let listener = crate::restart::listener(self.addr)?;
        self.start_on(listener)
    }

    /// Serves until `quit`, SIGINT or SIGTERM, then stops gracefully (a second SIGINT exits
    /// at once with status 130), reading console commands from stdin meanwhile.
    ///
    /// After `restart` (or SIGHUP) the requests in flight finish, then the process does not
    /// return: a supervised child exits with the restart code, an original process re-runs
    /// itself as a supervisor (see [`setup_restart`](Self::setup_restart)).
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
        msg(&format!("starting server at {}", running.local_addr()));
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
        self.log.install(&mut self.builder);
        transport::start(listener, self.builder.build(), self.transport)
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

/// A typed JSON handler in the core's shape.
fn json_handler<F, R>(handler: F, max_age: u64) -> Handler
where
    F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
    R: JsonReply,
{
    Arc::new(
        move |request: &Request, args: &mut Args| match handler(request, args) {
            Ok(reply) => json_response(request, reply, max_age),
            Err(abort) => abort_page(&abort),
        },
    )
}

/// A JSON route's value as the response.
pub(crate) fn json_response(request: &Request, reply: impl JsonReply, max_age: u64) -> Response {
    match reply.into_custom() {
        Ok(custom) => {
            let custom = Custom {
                value: custom.value.map(String::into_bytes),
                status: custom.status,
                content_type: custom.content_type,
                fields: custom.fields,
            };
            finish(request, custom, "application/json", max_age)
        }
        Err(e) => Response::error_page(500, Some(&format!("JSON encoding failed: {e}"))),
    }
}

/// A typed text handler in the core's shape.
fn text_handler<F, R>(handler: F, max_age: u64) -> Handler
where
    F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
    R: TextReply,
{
    Arc::new(
        move |request: &Request, args: &mut Args| match handler(request, args) {
            Ok(reply) => finish(request, reply.into_custom(), "text/plain", max_age),
            Err(abort) => abort_page(&abort),
        },
    )
}

/// A handler's value as the response, or the 404 page for a null value.
fn finish(
    request: &Request,
    custom: Custom<Option<Vec<u8>>>,
    default_type: &str,
    max_age: u64,
) -> Response {
    let Some(body) = custom.value else {
        return Response::error_page(404, Some("File not found"));
    };
    let fields = custom
        .fields
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k), v))
        .collect();
    let content_type = custom.content_type.as_deref().unwrap_or(default_type);
    render(
        &request.head,
        custom.status,
        content_type,
        fields,
        body,
        max_age,
    )
}

/// The error page of an [`Abort`].
pub(crate) fn abort_page(abort: &Abort) -> Response {
    Response::error_page(abort.status, Some(&abort.message))
}

/// Resolves `path` against the working directory once, at configuration time.
fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}
