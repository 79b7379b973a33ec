//! The two pages a user looks at, rendered by headless Chromium: the directory listing and
//! the worker demo page (`core/assets/worker-demo.html`, served with the workers of the
//! `example2` example). Each test checks the rendered DOM (`--dump-dom`) and saves a
//! screenshot (`--screenshot`) into a temporary folder, checking it is a PNG of the
//! window's size.
//!
//! Needs `/usr/bin/chromium` (Debian's `chromium` package; `tests/run` installs it); without
//! it the tests print a notice and pass.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use quick_server::{Abort, CancelFlag, Custom};
use quick_server_tests::{
    have_chromium, headless_chromium, text_of, FacadeServer, Setup, TempDir, Transport,
};
use serde_json::{json, Value};

const DEMO_PAGE: &str = include_str!("../../core/assets/worker-demo.html");

/// The `example2` message worker's answer.
const MESSAGE: &str = "1234567890 the quick brown fox jumps over the lazy dog";

/// The screenshot window.
const WIDTH: u32 = 800;
const HEIGHT: u32 = 600;

/// Runs headless Chromium on `url` in the screenshot window with `mode` (`--dump-dom` or
/// `--screenshot=…`); returns stdout.
fn chromium(url: &str, mode: &str) -> String {
    let window = format!("--window-size={WIDTH},{HEIGHT}");
    headless_chromium(url, &["--hide-scrollbars", &window, mode])
}

/// Saves a screenshot of `url` into `folder` and checks it is a PNG of the window size.
fn assert_screenshot(url: &str, folder: &Path, name: &str) -> PathBuf {
    let path = folder.join(name);
    chromium(url, &format!("--screenshot={}", path.display()));
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The IHDR chunk comes first: length, "IHDR", width, height (big-endian).
    assert_eq!(png.get(12..16), Some(&b"IHDR"[..]));
    let size = |at: usize| {
        png.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    assert_eq!((size(16), size(20)), (Some(WIDTH), Some(HEIGHT)));
    // A blank page of this size is about 2.7 kB.
    assert!(png.len() > 4000, "{name} looks blank: {} bytes", png.len());
    path
}

/// The `href` and text of every link of a dumped DOM, in order.
fn links(dom: &str) -> Vec<(String, String)> {
    dom.split("<a href=\"")
        .skip(1)
        .filter_map(|rest| {
            let (href, rest) = rest.split_once("\">")?;
            let (text, _) = rest.split_once("</a>")?;
            Some((href.to_owned(), text.to_owned()))
        })
        .collect()
}

const PLAIN_MIO: Setup = Setup {
    transport: Transport::Mio,
    tls: false,
};

#[test]
fn directory_listing_renders_in_chromium() {
    if !have_chromium() {
        return;
    }
    let www = TempDir::new();
    www.write("b.txt", "bee");
    www.write("A.html", "<p>a</p>");
    www.write("a & <b>.txt", "odd name");
    www.write("sub folder/inner.txt", "inner");
    let mut qs = FacadeServer::builder();
    qs.bind_path("/", www.path())
        .expect("bind")
        .directory_listing(true);
    let server = FacadeServer::start(PLAIN_MIO, qs);
    let base = format!("http://127.0.0.1:{}", server.addr().port());

    let dom = chromium(&format!("{base}/"), "--dump-dom");
    assert!(
        dom.contains("<title>Directory listing for /</title>"),
        "{dom}"
    );
    assert!(dom.contains("<h1>Directory listing for /</h1>"), "{dom}");
    // Sorted case-insensitively, names escaped, links percent-encoded, folders with `/`.
    assert_eq!(
        links(&dom),
        [
            ("a%20%26%20%3Cb%3E.txt", "a &amp; &lt;b&gt;.txt"),
            ("A.html", "A.html"),
            ("b.txt", "b.txt"),
            ("sub%20folder/", "sub folder/"),
        ]
        .map(|(h, t)| (h.to_owned(), t.to_owned()))
    );
    assert!(dom.contains("<span class=\"size\">3 B</span>"), "{dom}");

    let dom = chromium(&format!("{base}/sub%20folder/"), "--dump-dom");
    assert!(
        dom.contains("<h1>Directory listing for /sub folder/</h1>"),
        "{dom}"
    );
    assert_eq!(
        links(&dom),
        [("../", "../"), ("inner.txt", "inner.txt")].map(|(h, t)| (h.to_owned(), t.to_owned()))
    );

    let shots = TempDir::new();
    assert_screenshot(&format!("{base}/"), shots.path(), "listing.png");
}

/// A server like `example2` for the demo page: its two workers and `worker.js`.
fn demo_server() -> FacadeServer {
    let mut qs = FacadeServer::builder();
    qs.text_get("/demo", Some(0), |_req, _args| {
        Ok::<_, Abort>(Custom::new(DEMO_PAGE).content_type("text/html; charset=utf-8"))
    });
    qs.link_worker_js("/js/worker.js");
    let start = Instant::now();
    qs.json_worker(
        "/api/uptime_worker",
        None,
        move |payload: Value, cancel: &CancelFlag| {
            let seconds = payload["time"].as_f64().unwrap_or(0.0);
            let until = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 60.0));
            while Instant::now() < until && !cancel.is_cancelled() {
                thread::sleep(Duration::from_millis(10));
            }
            Ok::<_, Abort>(json!({ "uptime": start.elapsed().as_millis() }))
        },
    );
    let chunk_size = qs.max_chunk_size();
    qs.json_worker(
        "/api/message",
        None,
        move |payload: Value, _: &CancelFlag| {
            let split = payload["split"].as_bool().unwrap_or(false);
            chunk_size.store(if split { 10 } else { 10 * 1024 * 1024 }, Ordering::SeqCst);
            Ok::<_, Abort>(MESSAGE)
        },
    );
    FacadeServer::start(PLAIN_MIO, qs)
}

#[test]
fn worker_demo_page_renders_in_chromium() {
    if !have_chromium() {
        return;
    }
    let server = demo_server();
    let url = format!("http://localhost:{}/demo?auto", server.addr().port());
    let dom = chromium(&url, "--dump-dom");
    assert!(
        dom.contains("<title>quick-server worker demo</title>"),
        "{dom}"
    );
    for button in ["run-normal", "run-split", "run-cancel"] {
        assert!(dom.contains(&format!("<button id=\"{button}\">")), "{dom}");
    }
    assert_eq!(text_of(&dom, "errors"), "");
    let normal: Value = serde_json::from_str(text_of(&dom, "result-normal"))
        .unwrap_or_else(|e| panic!("{e}: {dom}"));
    assert!(
        normal["uptime"].as_u64().is_some_and(|ms| ms >= 1000),
        "slept a second: {normal}"
    );
    assert_eq!(
        text_of(&dom, "result-split"),
        format!("{} chars: {MESSAGE}", MESSAGE.len())
    );
    assert_eq!(text_of(&dom, "cancelled"), "cancelled");
    assert_eq!(text_of(&dom, "status"), "0");

    let shots = TempDir::new();
    assert_screenshot(&url, shots.path(), "worker-demo.png");
}
