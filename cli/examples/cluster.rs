//! Several instances, one state: run this example N times on different ports with the
//! same `--redis URL` and put any load balancer in front (no sticky sessions needed).
//!
//! ```sh
//! redis-server --port 6379 &
//! cargo run -p quick-server --features redis --example cluster -- --port 8001 --redis redis://127.0.0.1:6379
//! cargo run -p quick-server --features redis --example cluster -- --port 8002 --redis redis://127.0.0.1:6379
//! ```
//!
//! - `POST /api/count/:name` adds 1 to the field `count` of the token `:name` (created
//!   with an expiry of 600 s) and answers `{"count": <new value>}`;
//!   `GET /api/count/:name` answers `{"count": <value or 0>}` and creates nothing;
//! - worker `POST /api/sleep` with the payload `{"seconds": s, "echo": x}` sleeps `s`
//!   seconds unless stopped, then answers `{"echo": x, "pid": <pid of the instance that
//!   ran it>}`; with `"cache": true` the result is cached under the payload's JSON (keys
//!   sorted), so the same payload started on any instance is answered from the cache;
//!   a job whose instance dies is reported lost;
//! - worker `POST /api/sleep-again`: the same job, registered in `rerun_lost`, so a job
//!   whose instance dies runs again on the instance that answers the next `get` for it
//!   (at most 3 times), and `pid` names that instance;
//! - files from `--www DIR` if given.
//!
//! Without `--redis` the state stays in the process (one instance).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server::{
    msg, Abort, CancelFlag, Expire, QuickCache, QuickServer, SharedState, SharedStateOptions,
};
use serde_json::{json, Value};

/// Lifetime of a counter token, restarted at every increment.
const COUNTER_EXPIRY: Duration = Duration::from_secs(600);

/// RAM budget of the result cache when it stays in the process.
const LOCAL_CACHE_QUOTA: u64 = 64 << 20;

struct Options {
    port: u16,
    redis: Option<String>,
    www: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        port: 8000,
        redis: None,
        www: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => {
                let port = value()?;
                options.port = port
                    .parse()
                    .map_err(|e| format!("bad port {port:?}: {e}"))?;
            }
            "--redis" => options.redis = Some(value()?),
            "--www" => options.www = Some(value()?.into()),
            _ => {
                return Err(format!(
                "unknown argument {flag:?} (usage: cluster [--port N] [--redis URL] [--www DIR])"
            ))
            }
        }
    }
    Ok(options)
}

/// The cache key of a sleep job: the whole payload when it asks for caching.
fn cache_key(payload: &Value) -> Option<Value> {
    (payload.get("cache") == Some(&Value::Bool(true))).then(|| payload.clone())
}

/// Sleeps `seconds` unless stopped, then answers `echo` and the pid of this process.
fn sleep(payload: Value, cancel: &CancelFlag) -> Result<Value, Abort> {
    let seconds = payload
        .get("seconds")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let until = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 3600.0));
    while Instant::now() < until {
        if cancel.is_cancelled() {
            return Err(Abort::new(409, "stopped"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let echo = payload.get("echo").cloned().unwrap_or(Value::Null);
    Ok(json!({ "echo": echo, "pid": std::process::id() }))
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("cluster: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let mut server = QuickServer::new(addr);
    if let Some(url) = &options.redis {
        match SharedState::open(url, SharedStateOptions::default()) {
            Ok(state) => {
                server.shared_state(state);
            }
            Err(e) => {
                eprintln!("cluster: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        server.cache(Arc::new(QuickCache::in_memory(LOCAL_CACHE_QUOTA)));
    }
    if let Some(www) = &options.www {
        if let Err(e) = server.bind_path("/", www) {
            eprintln!("cluster: --www: {e}");
            return ExitCode::from(2);
        }
    }

    let tokens = server.tokens();
    server.json_post("/api/count/:name", None, move |_req, args| {
        let name = args.segments.get("name").cloned().unwrap_or_default();
        let count = tokens.get_token_obj(&name, Expire::After(COUNTER_EXPIRY), false, |map| {
            let count = map.get("count").and_then(Value::as_u64).unwrap_or(0) + 1;
            map.insert("count".into(), json!(count));
            count
        })?;
        Ok::<_, Abort>(json!({ "count": count }))
    });
    let tokens = server.tokens();
    server.json_get("/api/count/:name", None, move |_req, args| {
        let name = args.segments.get("name").cloned().unwrap_or_default();
        let map = tokens.peek_token_obj(&name)?;
        let count = map
            .and_then(|map| map.get("count").and_then(Value::as_u64))
            .unwrap_or(0);
        Ok::<_, Abort>(json!({ "count": count }))
    });
    server.json_worker("/api/sleep", Some(cache_key), sleep);
    server.rerun_lost(|s| {
        // Sleeping twice is harmless: safe to run again when its instance dies.
        s.json_worker("/api/sleep-again", Some(cache_key), sleep);
    });
    msg(&format!(
        "cluster instance {} on http://{addr}/",
        std::process::id()
    ));
    match server.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster: cannot serve on {addr}: {e}");
            ExitCode::from(1)
        }
    }
}
