//! A small server with a console command and restart support, like the original's
//! `example.py`: `GET /api/uptime/` (JSON), `GET /api/pid/` (the serving process id, to
//! watch restarts), `GET /api/sleep/<ms>` (a slow request), and the console command
//! `requests uptime` (TAB completes `uptime`) printing how often uptime was asked for.
//! Type `help`, `restart` or `quit`.
//!
//! Usage: `console_demo [--port PORT] [--slow-ms MS] [--no-restart] [--no-command-loop]`
//! (listens on 127.0.0.1, port 8000 by default; `--slow-ms` reports requests slower than
//! MS milliseconds instead of 5 s; `--no-restart` leaves out `setup_restart`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server::{msg, Abort, QuickServer};

/// What the command line asked for.
struct Options {
    port: u16,
    slow: Option<Duration>,
    restart: bool,
    command_loop: bool,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        port: 8000,
        slow: None,
        restart: true,
        command_loop: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--no-restart" => options.restart = false,
            "--no-command-loop" => options.command_loop = false,
            "--port" | "--slow-ms" => {
                let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                let number: u64 = value
                    .parse()
                    .map_err(|e| format!("bad value '{value}' for {flag}: {e}"))?;
                if flag == "--port" {
                    options.port =
                        u16::try_from(number).map_err(|_| format!("bad port {number}"))?;
                } else {
                    options.slow = Some(Duration::from_millis(number));
                }
            }
            other => return Err(format!("unknown flag '{other}'")),
        }
    }
    Ok(options)
}

fn run(options: Options) -> std::io::Result<()> {
    let mut server = QuickServer::new(SocketAddr::from(([127, 0, 0, 1], options.port)));
    if options.restart {
        // The supervisor process never returns from here.
        server.setup_restart()?;
    }
    let started = Instant::now();
    let uptime_requests = Arc::new(AtomicUsize::new(0));

    let counter = Arc::clone(&uptime_requests);
    server.json_get("/api/uptime/", Some(0), move |_req, _args| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Abort>(serde_json::json!({ "uptime": started.elapsed().as_secs_f64() }))
    });
    server.text_get("/api/pid/", Some(0), |_req, _args| {
        Ok::<_, Abort>(std::process::id().to_string())
    });
    server.text_get("/api/sleep/", Some(1), |_req, args| {
        let millis: u64 = args
            .paths
            .first()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Abort::new(400, "expected /api/sleep/<milliseconds>"))?;
        std::thread::sleep(Duration::from_millis(millis));
        Ok::<_, Abort>(format!("slept {millis} ms"))
    });

    let counter = Arc::clone(&uptime_requests);
    server
        .cmd(
            "requests",
            Some(1),
            move |args| match args.first().map(String::as_str) {
                Some("uptime") => msg(&format!(
                    "requests made to uptime: {}",
                    counter.load(Ordering::SeqCst)
                )),
                other => msg(&format!("unknown request: {}", other.unwrap_or_default())),
            },
            Some(Box::new(|args: &[String], text: &str| {
                if args.is_empty() && "uptime".starts_with(text) {
                    vec!["uptime".to_owned()]
                } else {
                    Vec::new()
                }
            })),
        )
        .map_err(std::io::Error::other)?;

    match options.slow {
        Some(threshold) => server.report_slow_requests_after(threshold),
        None => server.report_slow_requests(true),
    };
    server.no_command_loop(!options.command_loop);
    server.serve_forever()
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("console_demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            msg(&format!("error: {e}"));
            ExitCode::from(1)
        }
    }
}
