//! The dynamic route kind: matching a request to a handler, filling `args` from the body, and
//! rendering a handler's body with the original's ETag/304 rules (BEHAVIOUR.md: Dynamic routes ›
//! Request bodies and › Responses).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::args::{parse_query, Args};
use super::mask::{RouteHit, RouteTable};
use crate::files::{ETag, Preconditions, Verdict};
use crate::http::error::HttpError;
use crate::http::head::{Framing, MediaType, Method, RequestHead};
use crate::http::response::{self, Body, Response};
use crate::job::{JobKind, Output};
use crate::request::Request;
use crate::worker::WorkerRoute;
use std::time::{Instant, SystemTime};

/// A handler as the core stores it: the facade wraps typed user closures into this shape.
/// It runs inside a [`Job`](crate::Job), off the event loop.
pub type Handler = Arc<dyn Fn(&Request, &mut Args) -> Response + Send + Sync>;

/// What a dynamic mask leads to.
#[derive(Clone)]
pub(crate) enum Target {
    /// A JSON or text handler, and how its jobs run (pooled or inline).
    Handler(Handler, JobKind),
    /// A worker route (POST only, argc 0).
    Worker(Arc<WorkerRoute>),
}

/// The dynamic routes of a server and the options they share.
#[derive(Default)]
pub(crate) struct DynamicRoutes {
    pub(crate) table: RouteTable<Target>,
    /// Largest multipart part, in bytes (413 beyond it). Default 50 MiB as the original.
    pub(crate) max_file_size: u64,
}

impl std::fmt::Debug for DynamicRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicRoutes")
            .field("max_file_size", &self.max_file_size)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Handler(_, kind) => f.debug_tuple("Handler").field(kind).finish(),
            Self::Worker(w) => f.debug_tuple("Worker").field(w).finish(),
        }
    }
}

impl Target {
    /// The kind of job that answers with this target.
    pub(crate) fn job_kind(&self) -> JobKind {
        match self {
            Self::Handler(_, kind) => *kind,
            Self::Worker(_) => JobKind::Request,
        }
    }
}

/// What to do with a request, decided from its head.
#[derive(Debug)]
pub(crate) enum Routed {
    /// A route matched: run it with these args (boxed: they are large, `None` is empty).
    Matched(Target, Box<Args>),
    /// No dynamic route (or the argc check failed).
    None,
}

impl DynamicRoutes {
    /// Routes by method and raw target (BEHAVIOUR.md: Dynamic routes; HEAD uses the GET routes).
    pub(crate) fn route(&self, head: &RequestHead) -> Routed {
        match self.table.find(head.method(), head.target()) {
            Some(RouteHit::Matched { value, args, .. }) => {
                Routed::Matched(value.clone(), Box::new(args))
            }
            Some(RouteHit::ArgcMismatch) | None => Routed::None,
        }
    }

    /// The work of answering `request` with `target`, run as a job: parse the body into
    /// `args` and call the handler, or drive the worker protocol.
    pub(crate) fn work(
        &self,
        target: Target,
        mut args: Args,
        mut request: Request,
        now: Instant,
        wall: SystemTime,
    ) -> Box<dyn FnOnce() -> Output + Send> {
        match target {
            Target::Handler(handler, _) => Box::new(move || {
                if let Err(refusal) = parse_body(&mut request, &mut args) {
                    return Output::Respond(refusal.response());
                }
                *args.preconditions = Preconditions::from_head(&request.head);
                Output::Respond(handler(&request, &mut args))
            }),
            Target::Worker(route) => Box::new(move || {
                let segments: Vec<(String, String)> = args.segments.into_iter().collect();
                route.handle(request.body(), &segments, now, wall).into()
            }),
        }
    }
}

/// Fills `args.post` and `args.files` from the body by its `Content-Type` (BEHAVIOUR.md: Dynamic
/// routes › Request bodies).
fn parse_body(request: &mut Request, args: &mut Args) -> Result<(), HttpError> {
    let head = &request.head;
    if !matches!(head.method(), Method::Post | Method::Put | Method::Delete) {
        return Ok(());
    }
    let has_length = head.field("content-length").is_some() || head.framing() == Framing::Chunked;
    if !has_length && matches!(head.method(), Method::Post | Method::Put) {
        return Err(HttpError::LengthRequired);
    }
    let media_type = head.media_type();
    let body = request.body();
    match media_type {
        MediaType::Json => {
            args.post =
                serde_json::from_slice(body).map_err(|e| HttpError::BadJson(e.to_string()))?;
        }
        MediaType::Form => {
            args.post = Value::Object(parse_query(&String::from_utf8_lossy(body)));
        }
        MediaType::Multipart => {
            // Parsed by the connection as it arrived (files spilled to disk past a threshold).
            let Some(crate::upload::Multipart { fields, files }) = request.take_multipart() else {
                return Err(HttpError::MissingBoundary);
            };
            if let Value::Object(post) = &mut args.post {
                post.extend(fields);
            }
            args.files = files;
        }
        MediaType::Other => {}
    }
    Ok(())
}

/// A handler's body as a response: `status`, `content_type`, extra `fields`, and the
/// validators: a CRC-32 ETag of the body, against which a GET or HEAD evaluates its
/// preconditions (304 on a matching `If-None-Match`, whatever the status, as the original
/// does; 412 on a failed `If-Match` when the answer would be a 2xx). Other methods have
/// run their side effect already: their handler evaluates `args.preconditions` itself.
pub fn render(
    head: &RequestHead,
    status: u16,
    content_type: &str,
    fields: Vec<(Cow<'static, str>, String)>,
    body: Vec<u8>,
    max_age: u64,
) -> Response {
    let etag = ETag::of(&body);
    let cache_control = response::max_age(max_age);
    let safe = matches!(head.method(), Method::Get | Method::Head);
    let verdict = if safe {
        Preconditions::from_head(head).evaluate(true, Some(&etag), None)
    } else {
        Verdict::Proceed
    };
    match verdict {
        Verdict::NotModified => {
            return Response::new(304, Body::Empty)
                .with_field("ETag", etag.to_string())
                .with_field("Cache-Control", cache_control);
        }
        Verdict::Failed if (200..300).contains(&status) => {
            return HttpError::PreconditionFailed.response();
        }
        Verdict::Failed | Verdict::Proceed => {}
    }
    let mut response = Response::new(status, Body::Bytes(body));
    response.fields = fields;
    response
        .with_field("Content-Type", content_type.to_owned())
        .with_field("ETag", etag.to_string())
        .with_field("Cache-Control", cache_control)
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;
    use crate::dynamic::json_dumps;
    use crate::fs::MemoryFs;
    use crate::server::Server;

    fn echo() -> Handler {
        Arc::new(|request: &Request, args: &mut Args| {
            let files: Vec<String> = args
                .files
                .iter()
                .map(|(k, f)| format!("{k}={}", f.len))
                .collect();
            let value = serde_json::json!({
                "paths": args.paths, "query": args.query, "post": args.post,
                "segments": args.segments, "files": files,
            });
            let body = json_dumps(&value).unwrap_or_default().into_bytes();
            render(&request.head, 200, "application/json", Vec::new(), body, 0)
        })
    }

    /// Feeds `input`, runs jobs inline, returns everything written.
    fn run(input: &[u8]) -> String {
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder
            .route(Method::Get, "/api/:version/x", Some(0), echo())
            .route(Method::Post, "/api/echo", None, echo())
            .route(
                Method::Post,
                "/api/precondition",
                None,
                Arc::new(|request: &Request, args: &mut Args| {
                    let p = &args.preconditions;
                    let tag = ETag::of(b"whatever");
                    let if_match = p.if_match.as_ref().is_some_and(|l| l.matches_strong(&tag));
                    let any = p.if_none_match == Some(crate::files::TagList::Any);
                    let text = format!(
                        "if-match {}, if-none-match {}",
                        if if_match { "ok" } else { "no" },
                        if any { "*" } else { "-" }
                    );
                    render(&request.head, 200, "text/plain", Vec::new(), text.into(), 0)
                }),
            )
            .route(
                Method::Get,
                "/panic",
                None,
                Arc::new(|_: &Request, _: &mut Args| panic!("boom")),
            )
            .max_file_size(8);
        crate::testing::Pair::new(builder.build(), now).exchange(input)
    }

    #[test]
    fn get_route_with_capture_and_argc() {
        let wire = run(b"GET /api/v1/x?a=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /api/v1/x/extra HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains("\"version\": \"v1\""));
        assert!(wire.contains("\"a\": \"1\""));
        assert!(wire.contains("Content-Type: application/json\r\nETag: \""));
        assert!(
            wire.contains("HTTP/1.1 404 File not found"),
            "argc mismatch falls to static"
        );
    }

    #[test]
    fn post_bodies_json_form_multipart() {
        let wire = run(b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"k\": 1}");
        assert!(wire.contains("\"k\": 1"), "{wire}");
        let wire = run(b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=b&c=d");
        assert!(wire.contains("\"c\": \"d\""), "{wire}");
        let body = "--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\na\0b\r\n--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhi\r\n--XX--\r\n";
        let req = format!("POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let wire = run(req.as_bytes());
        assert!(
            wire.contains("\"f=3\"") && wire.contains("\"t\": \"hi\""),
            "{wire}"
        );
    }

    #[test]
    fn body_errors() {
        let wire = run(b"POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{x}");
        assert!(
            wire.starts_with("HTTP/1.1 400 request is not JSON formatted!"),
            "{wire}"
        );
        let wire = run(b"POST /api/echo HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(wire.starts_with("HTTP/1.1 411 "), "{wire}");
        let body =
            "--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n0123456789\r\n--XX--\r\n";
        let req = format!("POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        assert!(run(req.as_bytes()).starts_with("HTTP/1.1 413 Uploaded file is too large! "));
        let wire = run(b"POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nabGET /panic HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(wire.starts_with("HTTP/1.1 404 "), "{wire}");
        assert!(wire.contains("HTTP/1.1 500 panic: boom"), "{wire}");
    }

    #[test]
    fn render_answers_304_for_a_matching_tag() {
        let wire = run(b"GET /api/v1/x HTTP/1.1\r\nHost: h\r\n\r\n");
        let tag = wire
            .split("ETag: \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let req = format!("GET /api/v1/x HTTP/1.1\r\nHost: h\r\nIf-None-Match: {tag}\r\n\r\n");
        assert!(run(req.as_bytes()).starts_with("HTTP/1.1 304 Not Modified\r\n"));
        // If-Match on a GET is checked against the answer's tag.
        let req = format!("GET /api/v1/x HTTP/1.1\r\nHost: h\r\nIf-Match: \"{tag}\"\r\n\r\n");
        assert!(run(req.as_bytes()).starts_with("HTTP/1.1 200 OK\r\n"));
        let req = "GET /api/v1/x HTTP/1.1\r\nHost: h\r\nIf-Match: \"other\"\r\n\r\n";
        assert!(run(req.as_bytes()).starts_with("HTTP/1.1 412 Precondition Failed\r\n"));
    }

    #[test]
    fn unsafe_methods_hand_their_preconditions_to_the_handler() {
        let body = "{}";
        let tag = ETag::of(b"whatever");
        let req = format!(
            "POST /api/precondition HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nIf-Match: {tag}\r\nIf-None-Match: *\r\n\r\n{body}",
            body.len()
        );
        let wire = run(req.as_bytes());
        // The server did not answer 304 or 412 itself: the handler saw the fields.
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.ends_with("if-match ok, if-none-match *"), "{wire}");
    }
}
