//! The example servers of the README (`example`, `example2`, `embed`), run as built: each
//! test starts one in a fresh working folder on a free port, talks HTTP to it, types
//! console commands into its stdin and reads its log from stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::{Process, Terminal, WAIT};

/// A fresh folder tree for one run: `<root>/www` is the working folder, so the examples
/// serve `<root>` (`..`).
struct Folder {
    root: PathBuf,
}

impl Folder {
    fn new(test: &str) -> Self {
        let root = std::env::temp_dir().join(format!("qs-examples-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::write(root.join("hello.txt"), "hello from the folder above\n").unwrap();
        std::fs::write(root.join("www/index.html"), "<h1>www</h1>\n").unwrap();
        // Not on the default white list.
        std::fs::write(root.join("secret.bin"), "not served").unwrap();
        Self { root }
    }

    fn work(&self) -> PathBuf {
        self.root.join("www")
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A running example in its own fresh folder.
struct Example {
    process: Process,
    _folder: Folder,
}

impl Example {
    /// Starts `name` with stdin piped, in a fresh folder named after `test`.
    fn start(name: &str, test: &str) -> Self {
        Self::start_with(name, test, |command| {
            command.stdin(Stdio::piped()).stdout(Stdio::null());
        })
    }

    /// Starts `name` with stdin and stdout as `configure` sets them.
    fn start_with(name: &str, test: &str, configure: impl FnOnce(&mut Command)) -> Self {
        let folder = Folder::new(test);
        let work = folder.work();
        let process = Process::start(name, &[], |command| {
            command.current_dir(work);
            configure(command);
        });
        Self {
            process,
            _folder: folder,
        }
    }

    /// Types `quit` and checks the goodbye and the exit status.
    fn quit(mut self) {
        self.send("quit");
        self.expect("[SERVER] shutting down..");
        assert_eq!(self.wait_exit().code(), Some(0));
    }

    fn get(&self, target: &str) -> Answer {
        let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        exchange(self.addr, request.as_bytes())
    }

    fn post(&self, target: &str, content_type: &str, body: &[u8]) -> Answer {
        let mut request = format!(
            "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        exchange(self.addr, &request)
    }
}

impl std::ops::Deref for Example {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Example {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, checking the content type and status 200.
    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "{self:?} {}", self.text());
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Sends `request` (which asks to close the connection) and reads the whole answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut wire = Vec::new();
    stream.read_to_end(&mut wire).unwrap();
    let split = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&wire)));
    let head = String::from_utf8_lossy(&wire[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let reason = parts.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Answer {
        status,
        reason,
        headers,
        body: wire[split + 4..].to_vec(),
    }
}

/// `  1.234s` trimmed: a number with three decimals and a unit of the request log.
fn assert_elapsed_shape(text: &str) {
    let unit_at = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or_else(|| panic!("no unit in {text:?}"));
    let (number, unit) = text.split_at(unit_at);
    assert!(["ms", "s", "min", "h", "d"].contains(&unit), "{text:?}");
    let (_, decimals) = number.split_once('.').expect("decimals");
    assert_eq!(decimals.len(), 3, "{text:?}");
    assert!(number.parse::<f64>().is_ok(), "{text:?}");
}

/// Static files from `..`, the default white list and the favicon fallback.
fn assert_serves_the_folder_above(example: &Example) {
    let answer = example.get("/hello.txt");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello from the folder above\n");
    assert_eq!(example.get("/www/index.html").text(), "<h1>www</h1>\n");
    assert_eq!(example.get("/secret.bin").status, 404, "not white-listed");
    assert_eq!(example.get("/missing.txt").status, 404);
}

#[test]
fn example_serves_files_json_routes_and_the_requests_command() {
    let mut example = Example::start("example", "example");
    assert_serves_the_folder_above(&example);
    let icon = example.get("/favicon.ico");
    assert_eq!(icon.status, 200);
    assert_eq!(
        icon.header("Content-Type"),
        Some("image/vnd.microsoft.icon")
    );
    assert_eq!(icon.body, quick_server_core::files::EMPTY_FAVICON);

    for _ in 0..3 {
        let uptime = example.get("/api/uptime/").json();
        let text = uptime["uptime"].as_str().expect("a string");
        assert_elapsed_shape(text);
        assert_eq!(uptime.as_object().unwrap().len(), 1);
    }
    assert_eq!(
        example.get("/api/123/a/b/c/d").json(),
        json!({"version": "123"})
    );
    assert_eq!(
        example.get("/api/v%202/a/b/c/d/?x=1").json(),
        json!({"version": "v%202"}),
        "captures stay raw"
    );
    assert_eq!(example.get("/api/123/a/b/c").status, 404);
    assert_eq!(example.get("/api/foo/bar").json(), json!({"foo": "bar"}));
    assert_eq!(
        example.get("/api/foo/foo?include=me").json(),
        json!({"foo": "foo?include=me"})
    );

    example.send("requests uptime");
    example.expect("[SERVER] requests made to uptime: 3");
    example.send("requests foo");
    example.expect("[SERVER] unknown request: foo");
    example.send("requests");
    example.expect("[SERVER] command requests expects 1 argument(s), got 0");
    // Without suppress_noise every request is logged.
    assert!(example
        .seen()
        .iter()
        .any(|l| l.ends_with("\"GET /api/foo/bar HTTP/1.1\" 200")));
    example.quit();
}

#[test]
fn example2_files_favicon_worker_js_and_quiet_log() {
    let example = Example::start("example2", "files");
    assert_serves_the_folder_above(&example);
    let icon = example.get("/favicon.ico");
    assert_eq!(icon.status, 200);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/favicon.ico");
    assert_eq!(icon.body, std::fs::read(shipped).unwrap());

    let script = example.get("/js/worker.js");
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("Content-Type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_eq!(script.body, quick_server::WORKER_JS);

    // suppress_noise: successful requests are not logged, failed ones are.
    example.get("/missing.txt");
    example.expect("\"GET /missing.txt HTTP/1.1\" 404");
    let noisy: Vec<String> = example
        .seen()
        .into_iter()
        .filter(|l| l.contains("/hello.txt") || l.contains("/js/worker.js"))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    example.quit();
}

#[test]
fn example2_uptime_echoes_typed_query_arguments_and_reports_slow_requests() {
    let mut example = Example::start("example2", "uptime");
    let answer = example
        .get("/api/uptime/0?int=1&float=-2.5&nan=nan&inf=inf&neg=-inf&list=1,x,inf&text=abc&flag")
        .json();
    assert_elapsed_shape(answer["uptime"].as_str().expect("uptime"));
    let mut rest = answer.clone();
    rest.as_object_mut().unwrap().remove("uptime");
    // Non-finite numbers go out as the strings the original's json_dumps writes.
    assert_eq!(
        rest,
        json!({
            "int": 1.0, "float": -2.5, "nan": "NaN", "inf": "Infinity", "neg": "-Infinity",
            "list": [1.0, "x", "Infinity"], "text": "abc", "flag": true,
        })
    );
    let text = example.get("/api/uptime/0?a=1").text();
    assert!(text.contains("\"a\": 1.0"), "numbers are floats: {text}");

    // Exactly one extra segment.
    assert_eq!(example.get("/api/uptime/").status, 404);
    assert_eq!(example.get("/api/uptime/1/2").status, 404);

    let started = Instant::now();
    assert_eq!(example.get("/api/uptime/1").status, 200);
    assert!(started.elapsed() >= Duration::from_secs(1), "it slept");

    // A request running past 5 s is reported while it runs and when it ends.
    let addr = example.addr;
    let slow = thread::spawn(move || {
        let request = b"GET /api/uptime/6 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        exchange(addr, request)
    });
    let line = example.expect("request takes longer than expected");
    assert_eq!(
        line,
        "[SERVER] request takes longer than expected: \"GET /api/uptime/6\""
    );
    assert_eq!(slow.join().unwrap().status, 200);
    example.expect("[SERVER] request took longer than expected: \"GET /api/uptime/6\"(");

    example.send("requests uptime");
    example.expect("[SERVER] requests made to uptime: 4");
    example.send("requests download");
    example.expect("[SERVER] unknown request: download");
    example.quit();
}

/// A multipart body: `(name, None, data)` fields and `(name, Some(filename), data)` files.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(b"--XyZ\r\n");
        match filename {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

#[test]
fn example2_upload_lists_fields_files_and_lines_and_refuses_big_parts() {
    let example = Example::start("example2", "upload");
    let body = multipart(&[
        ("zeta", None, b"last"),
        ("alpha", None, b"first"),
        ("notes", Some("notes.txt"), b"line one\nline two\n"),
        ("blob", Some("blob.bin"), b"ok\n\xff\xfe"),
        ("empty", Some("empty.txt"), b""),
        ("crlf", Some("crlf.txt"), b"a\r\nb'\""),
        ("quotes", Some("q.bin"), b"'\"\xff"),
    ]);
    let answer = example
        .post("/api/upload", "multipart/form-data; boundary=XyZ", &body)
        .json();
    // The original's answer (Python 3.11): the text split on "\n", so a final newline
    // gives a last empty entry and "\r" stays; bytes that are not UTF-8 are one entry,
    // their `repr()`.
    assert_eq!(
        answer,
        json!({
            "0": "alpha is first",
            "1": "zeta is last",
            "2": "blob is 5 bytes",
            "3": "b'ok\\n\\xff\\xfe'",
            "4": "crlf is 6 bytes",
            "5": "a\r",
            "6": "b'\"",
            "7": "empty is 0 bytes",
            "8": "",
            "9": "notes is 18 bytes",
            "10": "line one",
            "11": "line two",
            "12": "",
            "13": "quotes is 3 bytes",
            "14": "b'\\'\"\\xff'",
        })
    );
    // Keys are sorted as numbers: "10" after "9".
    let lines = multipart(&[("n", Some("n.txt"), b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk")]);
    let text = example
        .post("/api/upload", "multipart/form-data; boundary=XyZ", &lines)
        .text();
    let at = |key: &str| text.find(&format!("\"{key}\": ")).unwrap_or(0);
    assert!(
        (1..=11).all(|n| at(&(n - 1).to_string()) < at(&n.to_string())),
        "{text}"
    );

    // max_file_size is 78 bytes for every part.
    let fits = multipart(&[("f", Some("f.txt"), &[b'a'; 78])]);
    let answer = example.post("/api/upload", "multipart/form-data; boundary=XyZ", &fits);
    assert_eq!(answer.json()["0"], "f is 78 bytes");
    let big = multipart(&[("f", Some("f.txt"), &[b'a'; 79])]);
    let answer = example.post("/api/upload", "multipart/form-data; boundary=XyZ", &big);
    assert_eq!(answer.status, 413);
    assert_eq!(answer.reason, "Uploaded file is too large! 79 > 78");
    example.expect("code 413, message Uploaded file is too large! 79 > 78");
    example.quit();
}

#[test]
fn example2_login_middleware() {
    let example = Example::start("example2", "login");
    assert_eq!(
        example.get("/api/user_details?token=secret").json(),
        json!({"name": "user"})
    );
    assert_eq!(
        example.get("/api/user_details?token=default").json(),
        json!({"name": "other"})
    );
    let forbidden = example.get("/api/user_details?token=except");
    assert_eq!(
        (forbidden.status, forbidden.reason.as_str()),
        (403, "Forbidden")
    );
    for target in ["/api/user_details", "/api/user_details?token=wrong"] {
        let answer = example.get(target);
        assert_eq!(answer.status, 401, "{target}");
        assert_eq!(answer.header("Content-Type"), Some("application/json"));
        assert_eq!(answer.text(), "\"Authentication Required\"");
    }
    example.quit();
}

/// Runs a worker task to the end like `worker.js` does: `start`, `get` until done, then
/// the cargo chunks if the result was split. Returns the parsed result and the chunks it
/// came in (none: in one piece).
fn run_worker(addr: SocketAddr, mask: &str, payload: Value) -> (Value, Vec<String>) {
    let post = |body: Value| {
        let text = body.to_string();
        let request = format!(
            "POST {mask} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        let answer = exchange(addr, request.as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.text());
        serde_json::from_slice::<Value>(&answer.body).unwrap()
    };
    let mut reply = post(json!({"action": "start", "payload": payload}));
    let token = reply["token"].clone();
    let deadline = Instant::now() + WAIT;
    while reply["done"] != json!(true) {
        assert_eq!(reply["continue"], json!(true), "{reply}");
        assert!(Instant::now() < deadline, "the task never finished");
        thread::sleep(Duration::from_millis(100));
        reply = post(json!({"action": "get", "token": token}));
    }
    match &reply["result"] {
        Value::String(text) => (serde_json::from_str(text).unwrap(), Vec::new()),
        Value::Array(keys) => {
            assert_eq!(reply["continue"], json!(true));
            let mut chunks = Vec::new();
            for key in keys {
                let chunk = post(json!({"action": "cargo", "token": key}));
                assert_eq!(&chunk["token"], key);
                chunks.push(chunk["result"].as_str().unwrap().to_owned());
            }
            (serde_json::from_str(&chunks.concat()).unwrap(), chunks)
        }
        other => panic!("unexpected result {other}"),
    }
}

const MESSAGE: &str = "1234567890 the quick brown fox jumps over the lazy dog";

#[test]
fn example2_workers_sleep_count_and_split_into_cargo() {
    let mut example = Example::start("example2", "workers");
    let addr = example.addr;
    let (quick, _) = run_worker(addr, "/api/uptime_worker", json!({"time": 0}));
    let slow = thread::spawn(move || run_worker(addr, "/api/uptime_worker", json!({"time": 1})));
    let (slow, chunks) = slow.join().unwrap();
    assert!(chunks.is_empty());
    let (quick, slow) = (quick["uptime"].as_u64(), slow["uptime"].as_u64());
    assert!(
        quick.zip(slow).is_some_and(|(q, s)| s >= q + 1000),
        "uptimes in ms: {quick:?} then {slow:?}"
    );

    // The split worker lowers the chunk size to 10 characters, the other restores it.
    let (text, chunks) = run_worker(addr, "/api/message", json!({"split": true}));
    assert_eq!(text, MESSAGE);
    // The result's JSON text (the string in quotes) in chunks of 10 characters.
    assert_eq!(
        chunks,
        [
            "\"123456789",
            "0 the quic",
            "k brown fo",
            "x jumps ov",
            "er the laz",
            "y dog\""
        ]
    );
    let (text, chunks) = run_worker(addr, "/api/message", json!({"split": false}));
    assert_eq!(text, MESSAGE);
    assert!(chunks.is_empty(), "{chunks:?}");

    example.send("requests uptime");
    example.expect("[SERVER] requests made to uptime: 2");
    example.quit();
}

#[test]
fn example2_restart_serves_again_on_the_same_socket() {
    let mut example = Example::start("example2", "restart");
    assert_eq!(example.get("/api/uptime/0").status, 200);
    example.send("restart");
    assert_eq!(example.started(), example.addr);
    assert_eq!(example.get("/hello.txt").status, 200);
    // A fresh process: its count starts again.
    example.send("requests uptime");
    example.expect("[SERVER] requests made to uptime: 0");
    example.quit();
}

#[test]
fn tab_completes_the_requests_argument_in_both_examples() {
    for name in ["example", "example2"] {
        let mut terminal = Terminal::open();
        let example = Example::start_with(name, &format!("tab-{name}"), |command| {
            terminal.attach(command);
        });
        terminal.shown("> ");
        terminal.keys(b"requests u\t");
        terminal.shown("> requests uptime\x1b[K");
        terminal.keys(b"\r");
        example.expect("[SERVER] requests made to uptime: 0");
        terminal.keys(b"quit\r");
        example.expect("[SERVER] shutting down..");
        let mut example = example;
        assert_eq!(example.wait_exit().code(), Some(0), "{name}");
    }
}

/// The `embed` example is the contract of the core's verbs: files, a JSON handler, a worker
/// and the proxy, each answered by its hand-written `mio` loop. The proxy's upstream is a
/// second `embed`, so every route kind also runs through the upstream verbs.
#[test]
fn embed_serves_files_a_handler_a_worker_and_the_proxy() {
    let folder = Folder::new("embed");
    let www = folder.root.to_str().unwrap().to_owned();
    let quiet = |command: &mut Command| {
        command.stdout(Stdio::null());
    };
    let upstream = Process::start("embed", &["--www", &www], quiet);
    let binding = format!("/up/=http://{}/", upstream.addr);
    let unreachable = "/down/=http://127.0.0.1:1/";
    let front = Process::start(
        "embed",
        &["--www", &www, "--proxy", &binding, "--proxy", unreachable],
        quiet,
    );
    let get = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        exchange(front.addr, request.as_bytes())
    };
    for prefix in ["", "/up"] {
        let file = get(&format!("{prefix}/hello.txt"));
        assert_eq!(file.status, 200, "{prefix}: {}", file.text());
        assert_eq!(file.text(), "hello from the folder above\n", "{prefix}");
        assert_eq!(
            get(&format!("{prefix}/missing.txt")).status,
            404,
            "{prefix}"
        );
        assert_eq!(
            get(&format!("{prefix}/api/echo?x=V{prefix}")).json(),
            json!({ "x": format!("V{prefix}") })
        );
        let (result, chunks) =
            run_worker(front.addr, &format!("{prefix}/api/work"), json!({"n": 7}));
        assert_eq!(result, json!({"n": 7}), "{prefix}");
        assert!(chunks.is_empty());
    }
    assert_eq!(get("/down/hello.txt").status, 502);
    // Pipelined on one connection, proxied and local answers come back in order.
    let mut stream = TcpStream::connect(front.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"GET /up/api/echo?x=1 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /api/echo?x=2 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /up/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut wire = String::new();
    stream.read_to_string(&mut wire).unwrap();
    assert_eq!(wire.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{wire}");
    let first = wire.find("\"1\"").expect("the first answer");
    let second = wire.find("\"2\"").expect("the second answer");
    let third = wire
        .find("hello from the folder above")
        .expect("the third answer");
    assert!(first < second && second < third, "{wire}");
    // Once settled, the file is cached and its folder watched, so hits need no `stat`.
    // Saved by rename, as editors do: the notification, read before the next request,
    // drops the cached file, which then comes back changed.
    thread::sleep(quick_server_core::files::SETTLE_TIME + Duration::from_millis(200));
    for _ in 0..3 {
        assert_eq!(get("/hello.txt").text(), "hello from the folder above\n");
    }
    let saved = folder.root.join(".hello.txt.swp");
    std::fs::write(&saved, "changed\n").unwrap();
    std::fs::rename(&saved, folder.root.join("hello.txt")).unwrap();
    assert_eq!(get("/hello.txt").text(), "changed\n");
}
