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

/// Writes a line to stderr with the `[SERVER] ` prefix (the original's short form).
pub fn msg(text: &str) {
    for line in text.lines() {
        eprintln!("[SERVER] {line}");
    }
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

/// A value a text route may return: text or bytes, plain or in a `Custom`.
pub trait TextReply {
    /// The body as a `Custom`.
    fn into_custom(self) -> Custom<Vec<u8>>;
}

impl TextReply for String {
    fn into_custom(self) -> Custom<Vec<u8>> {
        Custom::new(self.into_bytes())
    }
}

impl TextReply for &'static str {
    fn into_custom(self) -> Custom<Vec<u8>> {
        Custom::new(self.as_bytes().to_vec())
    }
}

impl TextReply for Vec<u8> {
    fn into_custom(self) -> Custom<Vec<u8>> {
        Custom::new(self)
    }
}

impl<T: TextReply> TextReply for Custom<T> {
    fn into_custom(self) -> Custom<Vec<u8>> {
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
    builder: ServerBuilder,
    transport: TransportOptions,
    max_age: u64,
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
            builder: Server::builder((Instant::now(), SystemTime::now())),
            transport: TransportOptions::default(),
            max_age: 0,
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

    /// A text route for any of the four methods.
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
        let max_age = self.max_age;
        let wrapped: Handler =
            Arc::new(
                move |request: &Request, args: &mut Args| match handler(request, args) {
                    Ok(reply) => {
                        let custom = reply.into_custom();
                        let custom = Custom {
                            value: Some(custom.value),
                            status: custom.status,
                            content_type: custom.content_type,
                            fields: custom.fields,
                        };
                        finish(request, custom, "text/plain", max_age)
                    }
                    Err(abort) => abort_page(&abort),
                },
            );
        self.builder.route(method, mask, argc, wrapped);
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

    fn json<F, R>(
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
        let max_age = self.max_age;
        let wrapped: Handler =
            Arc::new(
                move |request: &Request, args: &mut Args| match handler(request, args) {
                    Ok(reply) => match reply.into_custom() {
                        Ok(custom) => {
                            let custom = Custom {
                                value: custom.value.map(String::into_bytes),
                                status: custom.status,
                                content_type: custom.content_type,
                                fields: custom.fields,
                            };
                            finish(request, custom, "application/json", max_age)
                        }
                        Err(e) => {
                            Response::error_page(500, Some(&format!("JSON encoding failed: {e}")))
                        }
                    },
                    Err(abort) => abort_page(&abort),
                },
            );
        self.builder.route(method, mask, argc, wrapped);
        self
    }

    /// Builds the server, listens and starts the transport without blocking.
    pub fn start(self) -> io::Result<Running> {
        let listener = transport::listen(self.addr)?;
        transport::start(listener, self.builder.build(), self.transport)
    }

    /// Runs until SIGINT or SIGTERM, then stops gracefully; a second SIGINT exits at once.
    pub fn serve_forever(self) -> io::Result<()> {
        let running = self.start()?;
        msg(&format!("starting server at {}", running.local_addr()));
        stop_on_signals(running.handle())?;
        running.wait()?;
        msg("shutting down..");
        Ok(())
    }
}

/// Wires SIGINT/SIGTERM to a graceful stop and a second SIGINT to an immediate exit (130).
pub(crate) fn stop_on_signals(handle: crate::ShutdownHandle) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("quick-server-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                if stopping && signal == SIGINT {
                    std::process::exit(130);
                }
                stopping = true;
                handle.shutdown();
            }
        })?;
    Ok(())
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

fn abort_page(abort: &Abort) -> Response {
    Response::error_page(abort.status, Some(&abort.message))
}

/// Resolves `path` against the working directory once, at configuration time.
fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}
