//! What every connection of one server shares: limits, identity, the wall clock anchor
//! and the routes, and the dispatch of a complete request to a route.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::conn::PeerInfo;
use crate::dynamic::route::{DynamicRoutes, Routed};
use crate::dynamic::{Handler, Method as RouteMethod};
use crate::files::StaticFiles;
use crate::fs::{DiskFs, FileSystem};
use crate::http::head::{Method, RequestHead};
use crate::http::response::{Body, Response};
use crate::limits::Limits;

/// The version the `Server` header announces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A complete request: head, body (when the route wanted it) and peer.
#[derive(Debug)]
pub struct Request {
    /// The parsed head.
    pub head: RequestHead,
    /// The client.
    pub peer: PeerInfo,
    body: Vec<u8>,
    collect: bool,
    body_seen: u64,
}

impl Request {
    pub(crate) fn new(head: RequestHead, peer: PeerInfo, collect: bool) -> Self {
        Self {
            head,
            peer,
            body: Vec::new(),
            collect,
            body_seen: 0,
        }
    }

    /// The body, if the route asked for it (empty otherwise).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn push_body(&mut self, data: &[u8]) {
        self.body_seen += data.len() as u64;
        if self.collect {
            self.body.extend_from_slice(data);
        }
    }

    pub(crate) fn body_seen(&self) -> u64 {
        self.body_seen
    }
}

/// What the server does with a complete request.
pub(crate) enum Dispatch {
    /// Answer at once.
    Respond(Response),
    /// Answer with what this work returns, run by the transport as a [`Job`](crate::Job).
    Run(Box<dyn FnOnce() -> Response + Send>),
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
}

/// Configures a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    limits: Limits,
    app_version: Option<String>,
    anchor: (Instant, SystemTime),
    files: StaticFiles,
    dynamic: DynamicRoutes,
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
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The `Server` header value.
    pub fn server_header(&self) -> &str {
        &self.server_header
    }

    /// The wall time at the monotonic instant `now`.
    pub(crate) fn wall_time(&self, now: Instant) -> SystemTime {
        self.anchor.1 + now.saturating_duration_since(self.anchor.0)
    }

    /// Whether the body of this request is kept for its route (otherwise it is framed and
    /// discarded).
    pub(crate) fn wants_body(&self, head: &RequestHead) -> bool {
        matches!(head.method(), Method::Post | Method::Put | Method::Delete)
            && matches!(self.dynamic.route(head), Routed::Handler(..))
    }

    /// `Cache-Control: max-age` for files and handler answers.
    pub fn max_age(&self) -> u64 {
        self.files.max_age
    }

    /// Routes a complete request (SPEC 2).
    pub(crate) fn dispatch(&self, request: Request, _wall: SystemTime) -> Dispatch {
        if let Routed::Handler(handler, args) = self.dynamic.route(&request.head) {
            return Dispatch::Run(Box::new(self.dynamic.work(handler, args, request)));
        }
        let head = &request.head;
        Dispatch::Respond(match head.method() {
            Method::Get | Method::Head => self.files.serve(head),
            Method::Options => Response::new(200, Body::Empty),
            Method::Post | Method::Put | Method::Delete => {
                Response::error_page(404, Some("File not found"))
            }
            Method::Other => Response::error_page(
                501,
                Some(&format!("Unsupported method ('{}')", head.method_str())),
            ),
        })
    }
}

impl ServerBuilder {
    /// Replaces the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Prefixes the `Server` header with an application version (`update_version_string`).
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// The static-file route, to bind folders and set file options.
    pub fn files(&mut self) -> &mut StaticFiles {
        &mut self.files
    }

    /// Registers `handler` for `method` requests whose target matches `mask`, with an
    /// optional count of extra path segments (`argc`, SPEC 4.4). A later registration of
    /// the same method and mask replaces the earlier one.
    pub fn route(
        &mut self,
        method: RouteMethod,
        mask: &str,
        argc: Option<usize>,
        handler: Handler,
    ) -> &mut Self {
        self.dynamic.table.insert(method, mask, argc, handler);
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
        })
    }
}
