//! The benchmark's JSON handler (tests/bench/run, row d): `GET /api/hello` answers
//! `{"hello": "world"}` through `json_get`, the same body the hyper peer sends. With
//! `--json-file FILE` (row g), `GET /big.json` also answers that file's JSON text from a
//! handler, compressed for clients that accept it.
//!
//! Usage: `bench_json [--transport mio|std] [--port PORT] [--json-file FILE]` (listens on
//! 127.0.0.1).

use std::net::SocketAddr;
use std::process::ExitCode;

use quick_server::{Abort, Custom, QuickServer, Transport, TransportOptions};

/// What the command line asked for.
struct Options {
    transport: Transport,
    port: u16,
    json_file: Option<std::path::PathBuf>,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        transport: Transport::Mio,
        port: 8000,
        json_file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--transport" => options.transport = value.parse()?,
            "--port" | "-p" => {
                options.port = value
                    .parse()
                    .map_err(|e| format!("bad port '{value}': {e}"))?
            }
            "--json-file" => options.json_file = Some(value.into()),
            other => return Err(format!("unknown flag '{other}'")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!(
                "bench_json: {e}\nusage: bench_json [--transport mio|std] [--port PORT] [--json-file FILE]"
            );
            return ExitCode::from(2);
        }
    };
    let mut server = QuickServer::new(SocketAddr::from(([127, 0, 0, 1], options.port)));
    // The handler builds a constant: declared non-blocking, it answers on the event
    // loop like the hyper peer's `service_fn`, without a pool hand-off.
    server.non_blocking(|s| {
        s.json_get("/api/hello", None, |_req, _args| {
            Ok::<_, Abort>(serde_json::json!({ "hello": "world" }))
        });
    });
    if let Some(path) = &options.json_file {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("bench_json: cannot read {}: {e}", path.display());
                return ExitCode::from(1);
            }
        };
        // Compressed per request, as a handler's answer is (only file answers are cached).
        server.compress(true);
        server.text_get("/big.json", None, move |_req, _args| {
            Ok::<_, Abort>(Custom::new(text.clone()).content_type("application/json"))
        });
    }
    server.transport(options.transport, TransportOptions::default());
    // Like nginx with `access_log off` and the hyper peer: no line per request; no
    // command loop reading the benchmark's stdin.
    server.suppress_noise(true).no_command_loop(true);
    match server.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_json: cannot serve on port {}: {e}", options.port);
            ExitCode::from(1)
        }
    }
}
