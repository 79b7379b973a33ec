//! The original's `example2.py`: restart support, slow requests, uploads, worker routes
//! for the bundled `worker.js`, and a route behind a login middleware.
//!
//! ```sh
//! cd cli && cargo run --example example2     # http://localhost:8000/
//! # then open http://localhost:8000/core/assets/worker-demo.html?auto
//! ```
//!
//! - files under `..` matching the default white list; `examples/favicon.ico` for a
//!   missing `favicon.ico`; only failed requests are logged, and requests still running
//!   after 5 s are reported; `worker.js` at `/js/worker.js`;
//! - `GET /api/uptime/<seconds>?<query>` sleeps that many seconds, then answers the
//!   uptime and every query argument, numbers (`nan`, `inf` and `-inf` too) as numbers and
//!   comma-separated values as lists;
//! - `POST /api/upload` (multipart, every part at most 78 bytes, else 413) answers
//!   `{"0": "<field> is <value>", …, "<n>": "<file> is <size> bytes", "<n+1>": "<line 1>",
//!   …}`: the form fields, then each file followed by its lines;
//! - workers (see `worker.js`): `/api/uptime_worker` with `{"time": <seconds>}` answers
//!   `{"uptime": <milliseconds>}` after sleeping; `/api/message` with `{"split": true}`
//!   answers in cargo chunks of 10 characters, after 2 s;
//! - `GET /api/user_details?token=<t>` runs a login middleware: `secret` reaches the
//!   handler (`{"name": "user"}`), `default` is answered by the middleware
//!   (`{"name": "other"}`), `except` is 403, anything else 401.
//!
//! On the console, `requests uptime` (TAB completes `uptime`) prints how often the uptime
//! route and worker were called; `help`, `restart` and `quit` are built in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server::{
    middleware, msg, Abort, Args, CancelFlag, Completer, Middleware, Next, QuickServer,
};
use quick_server_core::log::elapsed_string;
use serde::Serialize;
use serde_json::{json, Value};

/// The worker result size above which results travel as cargo, by default (10 MiB).
const DEFAULT_CHUNK_SIZE: usize = 10 * 1024 * 1024;

/// The port to listen on: 8000, or the value of `--port N`.
fn port() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = 8000;
    while let Some(flag) = args.next() {
        if flag != "--port" {
            return Err(format!(
                "unknown argument '{flag}' (usage: example2 [--port N])"
            ));
        }
        let value = args.next().ok_or("--port needs a value")?;
        port = value
            .parse()
            .map_err(|e| format!("bad port '{value}': {e}"))?;
    }
    Ok(port)
}

/// Completes the single argument of `requests` to the one known route name.
fn request_names() -> Completer {
    Box::new(|args: &[String], word: &str| {
        if args.is_empty() && "uptime".starts_with(word) {
            vec!["uptime".to_owned()]
        } else {
            Vec::new()
        }
    })
}

/// A query value as the uptime route echoes it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Typed {
    /// Text that reads as a number (`nan`, `inf` and `-inf` too); the response writer
    /// sends NaN and the infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
    Number(f64),
    /// Any other text.
    Text(String),
    /// A comma-separated value, item by item.
    List(Vec<Typed>),
    /// A query argument without `=`.
    Flag(bool),
}

impl Typed {
    /// Reads one query value: a list if it has commas, else a number or text.
    fn of(value: &Value) -> Self {
        match value {
            Value::String(text) if text.contains(',') => {
                Self::List(text.split(',').map(Self::scalar).collect())
            }
            Value::String(text) => Self::scalar(text),
            Value::Bool(flag) => Self::Flag(*flag),
            other => Self::Text(other.to_string()),
        }
    }

    fn scalar(text: &str) -> Self {
        text.parse()
            .map_or_else(|_| Self::Text(text.to_owned()), Self::Number)
    }
}

/// The upload answer: fields, then each file's size and lines, under keys 0, 1, 2, ….
fn describe_upload(args: &Args) -> BTreeMap<usize, String> {
    let mut fields: Vec<(&String, &Value)> = args
        .post
        .as_object()
        .map(|post| post.iter().collect())
        .unwrap_or_default();
    fields.sort_by_key(|(name, _)| *name);
    let mut entries = Vec::new();
    for (name, value) in fields {
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        entries.push(format!("{name} is {value}"));
    }
    for (name, upload) in &args.files {
        entries.push(format!("{name} is {} bytes", upload.len));
        // A large upload lives in a temporary file; reading it back cannot fail unless
        // the file was removed under us, and then it is listed as empty.
        let content = upload.bytes().unwrap_or_default();
        // Like the original: the text split on "\n" (a final newline gives a last empty
        // entry, "\r" stays), or the bytes' Python repr when they are not UTF-8.
        let text = match std::str::from_utf8(&content) {
            Ok(text) => text.to_owned(),
            Err(_) => python_bytes_repr(&content),
        };
        entries.extend(text.split('\n').map(str::to_owned));
    }
    entries.into_iter().enumerate().collect()
}

/// Python's `repr()` of a `bytes` value: `b'…'` (or `b"…"` when it holds a `'` but no
/// `"`), with `\t`, `\n`, `\r`, `\\` and the quote escaped and other bytes outside
/// printable ASCII as `\xNN`.
fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("b{quote}");
    for &b in bytes {
        match b {
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\\' => out.push_str("\\\\"),
            _ if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

/// Sleeps `seconds` in small steps, returning early when the task is cancelled.
fn sleep_unless_cancelled(seconds: f64, cancel: &CancelFlag) {
    let until = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0));
    while !cancel.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// The login check of `/api/user_details`, on the `token` query argument.
fn login() -> Middleware {
    middleware(
        |_req, args| match args.query.get("token").and_then(Value::as_str) {
            Some("secret") => {
                args.meta.insert("username".into(), json!("user"));
                Ok(Next::Continue)
            }
            Some("default") => Ok(Next::reply(json!({ "name": "other" }))),
            Some("except") => Err(Abort::new(403, "Forbidden")),
            _ => Ok(Next::reply_with_status("Authentication Required", 401)),
        },
    )
}

fn run(port: u16) -> std::io::Result<()> {
    let mut server = QuickServer::new(SocketAddr::from(([127, 0, 0, 1], port)));
    // From here on this code runs in a child process that the original one re-runs after
    // every `restart`.
    server.setup_restart()?;
    let favicon = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/favicon.ico");
    server
        .bind_path("/", "..")
        .map_err(std::io::Error::other)?
        .add_default_white_list()
        .favicon_fallback(favicon)
        .suppress_noise(true)
        .report_slow_requests(true)
        .link_worker_js("/js/worker.js")
        .max_file_size(78);

    let start = Instant::now();
    let uptime_calls = Arc::new(AtomicUsize::new(0));

    let calls = Arc::clone(&uptime_calls);
    server.json_get("/api/uptime/", Some(1), move |_req, args| {
        let seconds = args
            .paths
            .first()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| (0.0..=3600.0).contains(s))
            .ok_or_else(|| Abort::new(400, "expected /api/uptime/<seconds>"))?;
        std::thread::sleep(Duration::from_secs_f64(seconds));
        calls.fetch_add(1, Ordering::SeqCst);
        let uptime = elapsed_string(start.elapsed().as_secs_f64());
        let mut answer = BTreeMap::from([("uptime".to_owned(), Typed::Text(uptime.trim().into()))]);
        for (key, value) in &args.query {
            answer.insert(key.clone(), Typed::of(value));
        }
        Ok::<_, Abort>(answer)
    });

    server.json_post("/api/upload", None, |_req, args| {
        Ok::<_, Abort>(describe_upload(args))
    });

    let calls = Arc::clone(&uptime_calls);
    server.json_worker(
        "/api/uptime_worker",
        None,
        move |payload: Value, cancel: &CancelFlag| {
            let seconds = payload.get("time").and_then(Value::as_f64).unwrap_or(0.0);
            sleep_unless_cancelled(seconds, cancel);
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Abort>(json!({ "uptime": start.elapsed().as_millis() }))
        },
    );

    let chunk_size = server.max_chunk_size();
    server.json_worker(
        "/api/message",
        None,
        move |payload: Value, cancel: &CancelFlag| {
            let split = payload
                .get("split")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let size = if split { 10 } else { DEFAULT_CHUNK_SIZE };
            chunk_size.store(size, Ordering::SeqCst);
            sleep_unless_cancelled(2.0, cancel);
            Ok::<_, Abort>("1234567890 the quick brown fox jumps over the lazy dog")
        },
    );

    server.middlewares(&[login()], |s| {
        s.json_get("/api/user_details", None, |_req, args| {
            Ok::<_, Abort>(json!({ "name": args.meta.get("username") }))
        });
    });

    let calls = Arc::clone(&uptime_calls);
    server
        .cmd(
            "requests",
            Some(1),
            move |args| match args.first().map(String::as_str) {
                Some("uptime") => msg(&format!(
                    "requests made to uptime: {}",
                    calls.load(Ordering::SeqCst)
                )),
                other => msg(&format!("unknown request: {}", other.unwrap_or_default())),
            },
            Some(request_names()),
        )
        .map_err(std::io::Error::other)?;

    // Prints `starting server at …`, reads commands until `quit` or Ctrl-C, then prints
    // `shutting down..`.
    server.serve_forever()
}

fn main() -> ExitCode {
    let port = match port() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("example2: {e}");
            return ExitCode::from(2);
        }
    };
    match run(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            msg(&format!("error: {e}"));
            ExitCode::from(1)
        }
    }
}
