//! The original's `example.py`: static files from the folder above the working directory,
//! three JSON routes and a console command.
//!
//! ```sh
//! cargo run --example example            # http://localhost:8000/
//! cargo run --example example -- --port 8001
//! ```
//!
//! - `GET /api/uptime/` answers `{"uptime": "  1.234s"}` trimmed: the time since start
//!   in the request log's human-readable form;
//! - `GET /api/<version>/a/b/c/d` answers `{"version": "<version>"}`;
//! - `GET /api/foo/<foo>` answers `{"foo": "<foo>"}` (a trailing capture keeps the query);
//! - files under `..` that match the default white list (`*.html`, `*.js`, …), and an
//!   empty icon for a missing `favicon.ico`.
//!
//! On the console, `requests uptime` (TAB completes `uptime`) prints how often the uptime
//! route was called; `help`, `restart` and `quit` are built in.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use quick_server::{msg, Abort, Completer, QuickServer};
use quick_server_core::log::elapsed_string;
use serde_json::json;

/// The port to listen on: 8000, or the value of `--port N`.
fn port() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = 8000;
    while let Some(flag) = args.next() {
        if flag != "--port" {
            return Err(format!(
                "unknown argument '{flag}' (usage: example [--port N])"
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

fn run(port: u16) -> std::io::Result<()> {
    let mut server = QuickServer::new(SocketAddr::from(([127, 0, 0, 1], port)));
    server
        .bind_path("/", "..")
        .map_err(std::io::Error::other)?
        .add_default_white_list()
        .link_empty_favicon_fallback();

    let start = Instant::now();
    let uptime_calls = Arc::new(AtomicUsize::new(0));

    let calls = Arc::clone(&uptime_calls);
    server.json_get("/api/uptime/", None, move |_req, _args| {
        calls.fetch_add(1, Ordering::SeqCst);
        let uptime = elapsed_string(start.elapsed().as_secs_f64());
        Ok::<_, Abort>(json!({ "uptime": uptime.trim() }))
    });
    server.json_get("/api/:version/a/b/c/d", None, |_req, args| {
        Ok::<_, Abort>(json!({ "version": args.segments.get("version") }))
    });
    server.json_get("/api/foo/:foo", None, |_req, args| {
        Ok::<_, Abort>(json!({ "foo": args.segments.get("foo") }))
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
            eprintln!("example: {e}");
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
