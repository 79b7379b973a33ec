//! `worker.js` in a real browser: headless Chromium loads the worker demo page from a
//! test server (both transports, plain and TLS), runs a job to completion, receives a
//! split result, cancels another job, and reports its active-request counts.
//!
//! Needs `/usr/bin/chromium` (Debian's `chromium` package; `tests/run` installs it); without
//! it the test prints a notice and passes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use quick_server::{Abort, CancelFlag, Custom, Request};
use quick_server_tests::{
    each_setup, have_chromium, headless_chromium, text_of, FacadeServer, Setup,
};
use serde_json::{json, Value};

const DEMO_PAGE: &str = include_str!("../../core/assets/worker-demo.html");

/// The split result: long enough for several cargo chunks of [`CHUNK`] characters.
fn message() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(100)
}

const CHUNK: usize = 1000;

/// What the server saw of the page's worker requests.
#[derive(Default)]
struct Seen {
    cargo: AtomicUsize,
    stops: AtomicUsize,
    cancelled: AtomicBool,
}

fn demo_server(setup: Setup, seen: Arc<Seen>) -> FacadeServer {
    let mut qs = FacadeServer::builder();
    qs.text_get("/demo", Some(0), |_req, _args| {
        Ok::<_, Abort>(Custom::new(DEMO_PAGE).content_type("text/html; charset=utf-8"))
    });
    qs.link_worker_js("/js/worker.js");
    let job_seen = Arc::clone(&seen);
    qs.json_worker(
        "/api/uptime_worker",
        None,
        move |payload: Value, cancel: &CancelFlag| {
            let seconds = payload["time"].as_f64().unwrap_or(0.0);
            let started = Instant::now();
            while started.elapsed().as_secs_f64() < seconds {
                if cancel.is_cancelled() {
                    job_seen.cancelled.store(true, Ordering::SeqCst);
                    return Ok(json!("cancelled"));
                }
                thread::sleep(Duration::from_millis(10));
            }
            Ok::<_, Abort>(json!({"slept": seconds}))
        },
    );
    qs.json_worker("/api/message", None, |_: Value, _: &CancelFlag| {
        Ok::<_, Abort>(message())
    });
    qs.max_chunk_size().store(CHUNK, Ordering::SeqCst);
    qs.pre_middleware(move |request: &Request| {
        let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Null);
        match body["action"].as_str() {
            Some("cargo") => seen.cargo.fetch_add(1, Ordering::SeqCst),
            Some("stop") => seen.stops.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        Ok(())
    });
    FacadeServer::start(setup, qs)
}

#[test]
fn worker_js_in_headless_chromium() {
    if !have_chromium() {
        return;
    }
    each_setup(|setup| {
        let seen = Arc::new(Seen::default());
        let server = demo_server(setup, Arc::clone(&seen));
        let scheme = if setup.tls { "https" } else { "http" };
        let url = format!("{scheme}://localhost:{}/demo?auto", server.addr().port());
        let dom = headless_chromium(&url, &["--dump-dom"]);
        // The page's result lines, for the messages below.
        let shown = dom.find("<p>active").map_or(dom.as_str(), |start| {
            &dom[start..dom.find("<script>").unwrap_or(dom.len()).max(start)]
        });
        let dom = dom.as_str();
        assert_eq!(text_of(dom, "errors"), "", "{shown}");
        assert_eq!(text_of(dom, "result-normal"), "{\"slept\":1}", "{shown}");
        let text = message();
        let expected = format!("{} chars: {}", text.len(), &text[..60]);
        assert_eq!(text_of(dom, "result-split"), expected, "{shown}");
        assert_eq!(text_of(dom, "cancelled"), "cancelled", "{shown}");
        assert_eq!(text_of(dom, "status"), "0", "{shown}");
        let history: Vec<i64> = text_of(dom, "status-history")
            .split(' ')
            .map(|n| n.parse().expect("a count"))
            .collect();
        assert_eq!(
            history.iter().max(),
            Some(&3),
            "three requests at once: {history:?}"
        );
        assert!(!history.contains(&-1), "no error state: {history:?}");
        assert_eq!(history.last(), Some(&0));
        // The split result came as cargo, and the cancel reached the running job.
        let chunks = text.len().div_ceil(CHUNK);
        assert!(
            seen.cargo.load(Ordering::SeqCst) >= chunks,
            "fetched every chunk"
        );
        assert!(seen.stops.load(Ordering::SeqCst) >= 1);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !seen.cancelled.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            seen.cancelled.load(Ordering::SeqCst),
            "the job saw the cancel flag"
        );
    });
}
