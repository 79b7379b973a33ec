//! Middleware (BEHAVIOUR.md: Dynamic routes › Middleware): code that runs before a route's handler
//! and may let it run, answer in its place, or stop the request with an error page.
//!
//! A [`Middleware`] is attached to routes in two ways, both keeping the original's shape:
//! - as a scope, [`QuickServer::middlewares`](crate::QuickServer::middlewares): every route
//!   registered inside the closure (JSON, text, `worker.js`, workers) gets the chain, after
//!   the chains of enclosing scopes;
//! - around one handler, [`with_middlewares`] (the original's `@middleware` decorator):
//!   `server.json_get(mask, argc, with_middlewares(&[auth], handler))`.
//!
//! Middlewares run in order; the first that does not answer [`Next::Continue`] decides.
//! In Rust a middleware cannot hand back another middleware's `next` marker, so the
//! original's 500 for that mistake has no equivalent.

use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};

use quick_server_core::dynamic::{json_dumps, Args, Mask};
use quick_server_core::{Method, Request, Response, ServerBuilder};
use serde_json::{Map, Value};

use crate::reply::{abort_page, json_response, Abort, Custom, JsonReply, TextReply};

/// A middleware: sees the request and the shared `args` (it may fill `args.meta`), then
/// says how the request goes on. An `Err` answers with that error page.
///
/// Attach it to every route registered in a scope with
/// [`QuickServer::middlewares`](crate::QuickServer::middlewares), or to one handler with
/// [`with_middlewares`]:
///
/// ```
/// use quick_server::{middleware, with_middlewares, Abort, Next, QuickServer};
/// use serde_json::{json, Value};
///
/// let auth = middleware(|_req, args| {
///     match args.query.get("token").and_then(Value::as_str) {
///         Some("secret") => {
///             args.meta.insert("user".into(), json!("alice"));
///             Ok(Next::Continue)
///         }
///         Some(_) => Err(Abort::new(403, "")),
///         None => Ok(Next::reply_with_status("Authentication Required", 401)),
///     }
/// });
/// let mut server = QuickServer::new("127.0.0.1:0".parse().unwrap());
/// server.middlewares(&[auth.clone()], |s| {
///     s.json_get("/api/me", None, |_req, args| Ok::<_, Abort>(json!(args.meta.get("user"))));
/// });
/// server.json_get(
///     "/api/again",
///     None,
///     with_middlewares(&[auth], |_req, _args| Ok::<_, Abort>(json!(1))),
/// );
/// ```
pub type Middleware = Arc<dyn Fn(&Request, &mut Args) -> Result<Next, Abort> + Send + Sync>;

/// What a middleware decides.
///
/// ```
/// use quick_server::{middleware, Next};
/// use serde_json::json;
///
/// // Answers `/api/...?dry_run` itself, lets every other request through.
/// let dry_run = middleware(|_req, args| {
///     Ok(if args.query.contains_key("dry_run") {
///         Next::reply(json!({ "dry_run": true }))
///     } else {
///         Next::Continue
///     })
/// });
/// ```
#[derive(Debug, Clone)]
pub enum Next {
    /// Run the next middleware, or the handler after the last one.
    Continue,
    /// Answer with this value instead of running the handler: JSON-encoded on JSON routes;
    /// on text routes a string is sent as is and other values as their JSON text. A null
    /// value answers 404 `File not found`, like a handler's null.
    Reply(Custom<Value>),
}

impl Next {
    /// Answers `value` with status 200 in place of the handler.
    pub fn reply(value: impl Into<Value>) -> Self {
        Self::Reply(Custom::new(value.into()))
    }

    /// Answers `value` with `status` in place of the handler (the original's
    /// `return Response(value, status)` from a middleware).
    pub fn reply_with_status(value: impl Into<Value>, status: u16) -> Self {
        Self::Reply(Custom::new(value.into()).status(status))
    }
}

/// Makes a [`Middleware`] from a closure.
pub fn middleware<F>(f: F) -> Middleware
where
    F: Fn(&Request, &mut Args) -> Result<Next, Abort> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// What a handler wrapped in middleware returns: the handler's own value, or the value a
/// middleware answered with. Both JSON and text routes accept it.
#[derive(Debug, Clone)]
pub enum Chained<R> {
    /// The handler ran.
    Handler(R),
    /// A middleware answered.
    Middleware(Custom<Value>),
}

/// Wraps `handler` so that `chain` runs first (the original's `@middleware` decorator,
/// top-most first). Nesting stacks: the outer chain runs before the inner one.
pub fn with_middlewares<F, R>(
    chain: &[Middleware],
    handler: F,
) -> impl Fn(&Request, &mut Args) -> Result<Chained<R>, Abort> + Send + Sync + 'static
where
    F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
{
    let chain = chain.to_vec();
    move |request: &Request, args: &mut Args| match run_chain(&chain, request, args)? {
        Some(custom) => Ok(Chained::Middleware(custom)),
        None => handler(request, args).map(Chained::Handler),
    }
}

/// Runs `chain` in order: `Some` with the first short-circuit value, `None` when every
/// middleware said continue.
pub(crate) fn run_chain(
    chain: &[Middleware],
    request: &Request,
    args: &mut Args,
) -> Result<Option<Custom<Value>>, Abort> {
    for middleware in chain {
        if let Next::Reply(custom) = middleware(request, args)? {
            return Ok(Some(custom));
        }
    }
    Ok(None)
}

/// A pre-middleware as the facade keeps it.
type Pre = Arc<dyn Fn(&Request) -> Result<(), Abort> + Send + Sync>;

/// The code run before routing: the user's pre-middlewares, then the middleware chains
/// of worker routes (the core answers worker requests itself, so their chains run here,
/// for the POST requests their masks take). Installed into the core once, on first use;
/// everything added later runs too, since the lists are shared.
#[derive(Clone, Default)]
pub(crate) struct PreChain(Arc<RwLock<PreLists>>);

#[derive(Default)]
struct PreLists {
    installed: bool,
    pre: Vec<Pre>,
    guards: Vec<Arc<WorkerGuard>>,
}

/// The middleware chain of one worker route.
struct WorkerGuard {
    mask: Mask,
    chain: Vec<Middleware>,
    max_age: u64,
}

impl PreChain {
    /// Adds a pre-middleware.
    pub(crate) fn add(&self, builder: &mut ServerBuilder, pre: Pre) {
        self.lists().pre.push(pre);
        self.install(builder);
    }

    /// Runs `chain` before the worker route at `mask`, as a JSON route would; a
    /// short-circuit value is answered with `max_age` like a JSON route's value.
    pub(crate) fn guard_worker(
        &self,
        builder: &mut ServerBuilder,
        mask: &str,
        chain: Vec<Middleware>,
        max_age: u64,
    ) {
        self.lists().guards.push(Arc::new(WorkerGuard {
            mask: Mask::new(mask),
            chain,
            max_age,
        }));
        self.install(builder);
    }

    fn lists(&self) -> RwLockWriteGuard<'_, PreLists> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn install(&self, builder: &mut ServerBuilder) {
        let mut lists = self.lists();
        if std::mem::replace(&mut lists.installed, true) {
            return;
        }
        drop(lists);
        let chain = self.clone();
        builder.pre_middleware(Arc::new(move |request: &Request| chain.run(request)));
    }

    fn run(&self, request: &Request) -> Result<(), Response> {
        // Copy the lists out so no lock is held while user code runs.
        let (pre, guards) = {
            let lists = self.0.read().unwrap_or_else(PoisonError::into_inner);
            (lists.pre.clone(), lists.guards.clone())
        };
        for pre in &pre {
            pre(request).map_err(|abort| abort_page(&abort))?;
        }
        if request.head.method() == Method::Post {
            for guard in &guards {
                if let Some(response) = guard.check(request) {
                    return Err(response);
                }
            }
        }
        Ok(())
    }
}

impl WorkerGuard {
    /// The answer of the chain if it stops a request for this worker route, else `None`.
    /// The worker's `args` are those of a JSON POST route with argc 0: the mask's captures,
    /// query and fragment, and the JSON body as `post`.
    fn check(&self, request: &Request) -> Option<Response> {
        let hit = self.mask.matches(request.head.target())?;
        let mut args = Args::from_rest(hit.rest, hit.segments);
        if !args.paths.is_empty() {
            return None;
        }
        args.post =
            serde_json::from_slice(request.body()).unwrap_or_else(|_| Value::Object(Map::new()));
        match run_chain(&self.chain, request, &mut args) {
            Ok(None) => None,
            Ok(Some(custom)) => Some(json_response(request, custom, self.max_age)),
            Err(abort) => Some(abort_page(&abort)),
        }
    }
}

impl<R: JsonReply> JsonReply for Chained<R> {
    fn into_custom(self) -> Result<Custom<Option<String>>, String> {
        match self {
            Self::Handler(reply) => reply.into_custom(),
            Self::Middleware(custom) => custom.into_custom(),
        }
    }
}

impl<R: TextReply> TextReply for Chained<R> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        match self {
            Self::Handler(reply) => reply.into_custom(),
            Self::Middleware(custom) => Custom {
                value: text_of(custom.value),
                status: custom.status,
                content_type: custom.content_type,
                fields: custom.fields,
            },
        }
    }
}

/// A short-circuit value as a text route's body: strings as they are, null as "none"
/// (404), anything else as its JSON text.
fn text_of(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.into_bytes()),
        other => Some(json_dumps(&other).unwrap_or_default().into_bytes()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{CancelFlag, QuickServer};
    use quick_server_core::testing::Pair;
    use quick_server_core::Server;
    use serde_json::json;
    use std::time::Instant;

    /// Feeds `input` to a connection of `server`, runs request jobs inline and returns
    /// everything written.
    pub(crate) fn exchange(server: Arc<Server>, input: &[u8]) -> String {
        Pair::new(server, Instant::now()).exchange(input)
    }

    fn get(server: &Arc<Server>, target: &str) -> String {
        let request = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        exchange(Arc::clone(server), request.as_bytes())
    }

    fn body(wire: &str) -> &str {
        wire.split_once("\r\n\r\n").map_or("", |(_, body)| body)
    }

    /// The reference test's middleware: checks `query.token`.
    fn token_check() -> Middleware {
        middleware(|_req, args| {
            let token = args
                .query
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or("");
            match token {
                "secret" => {
                    args.meta.insert("username".into(), json!("user"));
                    Ok(Next::Continue)
                }
                "default" => Ok(Next::reply(json!({"name": "other"}))),
                "except" => Err(Abort::new(403, "")),
                _ => Ok(Next::reply_with_status("Authentication Required", 401)),
            }
        })
    }

    fn user_details(_req: &Request, args: &mut Args) -> Result<Value, Abort> {
        Ok(json!({ "name": args.meta.get("username").cloned() }))
    }

    fn assert_reference_cases(server: &Arc<Server>) {
        let wire = get(server, "/api/user_details?token=secret");
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert_eq!(body(&wire), "{\n  \"name\": \"user\"\n}");
        let wire = get(server, "/api/user_details?token=default");
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert_eq!(body(&wire), "{\n  \"name\": \"other\"\n}");
        for target in ["/api/user_details", "/api/user_details?token=wrong"] {
            let wire = get(server, target);
            assert!(wire.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{wire}");
            assert!(
                wire.contains("Content-Type: application/json\r\n"),
                "{wire}"
            );
            assert_eq!(body(&wire), "\"Authentication Required\"");
        }
        let wire = get(server, "/api/user_details?token=except");
        assert!(wire.starts_with("HTTP/1.1 403 \r\n"), "{wire}");
    }

    #[test]
    fn reference_user_details_in_a_scope() {
        let mut qs = QuickServer::new(([127, 0, 0, 1], 0).into());
        qs.middlewares(&[token_check()], |s| {
            s.json_get("/api/user_details", None, user_details);
        });
        qs.json_get("/api/open", None, user_details);
        let server = qs.into_server();
        assert_reference_cases(&server);
        // Routes registered after the scope do not get its chain.
        let wire = get(&server, "/api/open");
        assert_eq!(body(&wire), "{\n  \"name\": null\n}");
    }

    #[test]
    fn reference_user_details_as_a_decorator() {
        let mut qs = QuickServer::new(([127, 0, 0, 1], 0).into());
        qs.json_get(
            "/api/user_details",
            None,
            with_middlewares(&[token_check()], user_details),
        );
        assert_reference_cases(&qs.into_server());
    }

    /// Appends `name` to `meta.seen`, then answers `next`.
    fn log(name: &'static str, next: Next) -> Middleware {
        middleware(move |_req, args| {
            let seen = args.meta.entry("seen").or_insert_with(|| json!([]));
            if let Value::Array(items) = seen {
                items.push(json!(name));
            }
            Ok(next.clone())
        })
    }

    fn seen(_req: &Request, args: &mut Args) -> Result<Value, Abort> {
        Ok(args.meta.get("seen").cloned().unwrap_or(Value::Null))
    }

    #[test]
    fn nested_scopes_append_and_stop_at_the_first_answer() {
        let mut qs = QuickServer::new(([127, 0, 0, 1], 0).into());
        qs.middlewares(&[log("outer", Next::Continue)], |s| {
            s.middlewares(&[log("inner", Next::Continue)], |s| {
                s.json_get("/both", None, seen);
            });
            s.json_get("/outer", None, seen);
            s.middlewares(
                &[log("stop", Next::reply(7)), log("never", Next::Continue)],
                |s| {
                    s.json_get("/stop", None, seen);
                },
            );
        });
        qs.json_get(
            "/stacked",
            None,
            with_middlewares(
                &[log("a", Next::Continue)],
                with_middlewares(&[log("b", Next::Continue)], seen),
            ),
        );
        let server = qs.into_server();
        let wire = get(&server, "/both");
        assert_eq!(body(&wire), "[\n  \"outer\",\n  \"inner\"\n]");
        assert_eq!(body(&get(&server, "/outer")), "[\n  \"outer\"\n]");
        assert_eq!(body(&get(&server, "/stop")), "7");
        assert_eq!(body(&get(&server, "/stacked")), "[\n  \"a\",\n  \"b\"\n]");
    }

    #[test]
    fn short_circuits_on_text_routes() {
        let mut qs = QuickServer::new(([127, 0, 0, 1], 0).into());
        let handler = |_req: &Request, _args: &mut Args| Ok::<_, Abort>("from handler");
        qs.middlewares(&[log("s", Next::reply("plain"))], |s| {
            s.text_get("/plain", None, handler);
        });
        qs.middlewares(
            &[log(
                "s",
                Next::Reply(Custom::new(json!({"a": 1})).status(202)),
            )],
            |s| {
                s.text_get("/object", None, handler);
            },
        );
        qs.middlewares(&[log("s", Next::reply(Value::Null))], |s| {
            s.text_get("/null", None, handler);
            s.json_get("/json-null", None, seen);
        });
        qs.text_get("/handler", None, handler);
        let server = qs.into_server();
        let wire = get(&server, "/plain");
        assert!(wire.contains("Content-Type: text/plain\r\n"), "{wire}");
        assert_eq!(body(&wire), "plain");
        let wire = get(&server, "/object");
        assert!(wire.starts_with("HTTP/1.1 202 Accepted\r\n"), "{wire}");
        assert_eq!(body(&wire), "{\n  \"a\": 1\n}");
        assert!(get(&server, "/null").starts_with("HTTP/1.1 404 File not found\r\n"));
        assert!(get(&server, "/json-null").starts_with("HTTP/1.1 404 File not found\r\n"));
        assert_eq!(body(&get(&server, "/handler")), "from handler");
    }

    #[test]
    fn pre_middleware_runs_for_every_request() {
        let mut qs = QuickServer::new(([127, 0, 0, 1], 0).into());
        qs.pre_middleware(|request: &Request| {
            if request.head.target().contains("forbidden") {
                Err(Abort::new(403, "no way"))
            } else {
                Ok(())
            }
        });
        qs.json_get("/api/x", None, user_details);
        let server = qs.into_server();
        let wire = get(&server, "/api/x");
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(get(&server, "/api/x?forbidden").starts_with("HTTP/1.1 403 no way\r\n"));
        // Static paths too (no folder is bound: 404 without it).
        assert!(get(&server, "/forbidden.txt").starts_with("HTTP/1.1 403 no way\r\n"));
        assert!(get(&server, "/other.txt").starts_with("HTTP/1.1 404 "));
    }

    #[test]
    fn worker_routes_in_a_scope_run_the_chain() {
        let mut qs = QuickServer::new(([127, 0, 0, 1], 0).into());
        let deny = middleware(
            |_req, args| match args.post.get("token").and_then(Value::as_str) {
                Some("deny") => Err(Abort::new(401, "who are you")),
                Some("short") => Ok(Next::reply(json!({"short": args.segments.get("id")}))),
                _ => Ok(Next::Continue),
            },
        );
        qs.middlewares(&[deny], |s| {
            s.json_worker("/api/w/:id", None, |_: Value, _: &CancelFlag| {
                Ok::<_, Abort>(1)
            });
        });
        let server = qs.into_server();
        let post = |target: &str, body: &str| {
            let request = format!(
                "POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            exchange(Arc::clone(&server), request.as_bytes())
        };
        let wire = post("/api/w/7", r#"{"action": "get", "token": "deny"}"#);
        assert!(wire.starts_with("HTTP/1.1 401 who are you\r\n"), "{wire}");
        let wire = post("/api/w/7", r#"{"action": "get", "token": "short"}"#);
        assert_eq!(body(&wire), "{\n  \"short\": \"7\"\n}");
        let wire = post("/api/w/7", r#"{"action": "get", "token": "1"}"#);
        assert!(wire.contains("\"continue\": false"), "{wire}");
        // Another path under the mask is not the worker route: the chain stays out.
        let wire = post("/api/w/7/more", r#"{"token": "deny"}"#);
        assert!(wire.starts_with("HTTP/1.1 404 "), "{wire}");
    }
}
