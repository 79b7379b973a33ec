//! The two pages a user looks at, rendered by headless Chromium: the directory listing and
//! the worker demo page (`core/assets/worker-demo.html`, served with the workers of the
//! `example2` example). Each test checks the rendered DOM (`--dump-dom`) and saves
//! screenshots (`--screenshot`; the listing in light and dark, desktop and phone width)
//! into a temporary folder, or into `$QS_SCREENSHOTS` to look at them, checking each is a
//! PNG of the window's size.
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

/// A browser window: its size and the colour scheme the page is told the user prefers.
#[derive(Clone, Copy)]
struct Window {
    width: u32,
    height: u32,
    dark: bool,
}

/// The window of the screenshots that are not about the listing.
const DESKTOP: Window = Window {
    width: WIDTH,
    height: HEIGHT,
    dark: false,
};

/// Runs headless Chromium on `url` in the screenshot window with `mode` (`--dump-dom` or
/// `--screenshot=…`); returns stdout.
fn chromium(url: &str, mode: &str) -> String {
    chromium_in(DESKTOP, url, mode)
}

/// [`chromium`] in `window`.
fn chromium_in(window: Window, url: &str, mode: &str) -> String {
    let size = format!("--window-size={},{}", window.width, window.height);
    // Blink's preferred colour scheme: 0 is dark, 1 is light.
    let scheme = format!(
        "--blink-settings=preferredColorScheme={}",
        if window.dark { 0 } else { 1 }
    );
    headless_chromium(url, &["--hide-scrollbars", &size, &scheme, mode])
}

/// Saves a screenshot of `url` into `folder` and checks it is a PNG of the window size.
fn assert_screenshot(url: &str, folder: &Path, name: &str) -> PathBuf {
    assert_screenshot_in(DESKTOP, url, folder, name)
}

/// [`assert_screenshot`] in `window`.
fn assert_screenshot_in(window: Window, url: &str, folder: &Path, name: &str) -> PathBuf {
    let path = folder.join(name);
    chromium_in(window, url, &format!("--screenshot={}", path.display()));
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The IHDR chunk comes first: length, "IHDR", width, height (big-endian).
    assert_eq!(png.get(12..16), Some(&b"IHDR"[..]));
    let size = |at: usize| {
        png.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    assert_eq!(
        (size(16), size(20)),
        (Some(window.width), Some(window.height))
    );
    // A blank page of this size is about 2.7 kB.
    assert!(png.len() > 4000, "{name} looks blank: {} bytes", png.len());
    path
}

/// Where screenshots go: `$QS_SCREENSHOTS` when set (kept, to look at), else `fallback`.
fn screenshot_folder(fallback: &TempDir) -> PathBuf {
    std::env::var_os("QS_SCREENSHOTS").map_or_else(|| fallback.path().to_owned(), PathBuf::from)
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
    www.write("report-2026.pdf", vec![b'%'; 3 * 1024 * 1024 + 300_000]);
    www.write(
        "a rather long file name that has to wrap on a phone screen.md",
        "# long",
    );
    www.write(".env", "hidden");
    www.write("notes/todo.txt", "todo");
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
    assert!(
        dom.contains("<h1>Directory listing for <a href=\"./\">/</a></h1>"),
        "{dom}"
    );
    // Folders first, then files case-insensitively; names escaped, links percent-encoded;
    // the hidden file left out. The column headers come first.
    let rows: Vec<(String, String)> = links(&dom).into_iter().skip(4).collect();
    assert_eq!(
        rows,
        [
            ("notes/", "notes/"),
            ("sub%20folder/", "sub folder/"),
            ("a%20%26%20%3Cb%3E.txt", "a &amp; &lt;b&gt;.txt"),
            (
                "a%20rather%20long%20file%20name%20that%20has%20to%20wrap%20on%20a%20phone%20screen.md",
                "a rather long file name that has to wrap on a phone screen.md"
            ),
            ("A.html", "A.html"),
            ("b.txt", "b.txt"),
            ("report-2026.pdf", "report-2026.pdf"),
        ]
        .map(|(h, t)| (h.to_owned(), t.to_owned()))
    );
    assert!(
        dom.contains("<td class=\"size\" title=\"3445728 bytes\">3.3 MiB</td>"),
        "{dom}"
    );

    let dom = chromium(&format!("{base}/sub%20folder/"), "--dump-dom");
    assert!(
        dom.contains("<title>Directory listing for /sub folder/</title>"),
        "{dom}"
    );
    let rows: Vec<(String, String)> = links(&dom).into_iter().skip(5).collect();
    assert_eq!(
        rows,
        [("../", "../"), ("inner.txt", "inner.txt")].map(|(h, t)| (h.to_owned(), t.to_owned()))
    );

    let temp = TempDir::new();
    let shots = screenshot_folder(&temp);
    let phone = Window {
        width: 390,
        height: 844,
        dark: false,
    };
    let mut sizes = Vec::new();
    for (window, name) in [
        (DESKTOP, "listing-light.png"),
        (
            Window {
                dark: true,
                ..DESKTOP
            },
            "listing-dark.png",
        ),
        (phone, "listing-phone-light.png"),
        (
            Window {
                dark: true,
                ..phone
            },
            "listing-phone-dark.png",
        ),
    ] {
        let path = assert_screenshot_in(
            window,
            &format!("{base}/?sort=size&order=desc"),
            &shots,
            name,
        );
        sizes.push(std::fs::read(path).map(|png| png.len()).unwrap_or(0));
    }
    // The dark rendering differs from the light one.
    assert_ne!(sizes[0], sizes[1]);
    assert_ne!(sizes[2], sizes[3]);
    // A folder below the root: breadcrumbs and the parent row.
    assert_screenshot_in(
        Window {
            dark: true,
            ..DESKTOP
        },
        &format!("{base}/sub%20folder/"),
        &shots,
        "listing-sub-dark.png",
    );
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

    let temp = TempDir::new();
    assert_screenshot(&url, &screenshot_folder(&temp), "worker-demo.png");
}
