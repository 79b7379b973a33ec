//! The reverse proxy (BEHAVIOUR.md: Proxy) over both transports, plain and TLS towards the
//! client, against real upstreams started here: a second instance of our own server,
//! Python's `http.server`, and small hand-written upstreams for chunked, malformed,
//! stalled and streaming answers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use quick_server_core::dynamic::Handler;
use quick_server_core::Method as RouteMethod;
use quick_server_core::{Body, Limits, Response as CoreResponse, ServerBuilder};
use quick_server_tests::{
    each_setup, fnv1a64, json_of, pseudo_random_bytes, Client, FacadeServer, Setup, TempDir,
    TestCa, TestServer, Transport, Tuning,
};
use serde_json::{json, Value};

const HELLO: &str = "hello, upstream\n";
const LOCAL: &str = "served by the proxy itself\n";
const BIG_LEN: usize = 4 * 1024 * 1024;
const TEN_MIB: usize = 10 * 1024 * 1024;

/// Tests take it shared; the leak test takes it alone, so descriptor and thread counts
/// are not disturbed by other tests of this binary.
static GATE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(PoisonError::into_inner)
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: front.test\r\n\r\n").into_bytes()
}

fn post(target: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: front.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// `len` and FNV-1a of a body, as the upstream's `/up/sum` reports them.
fn digest(body: &[u8]) -> Value {
    json!({ "len": body.len(), "fnv": format!("{:016x}", fnv1a64(body)) })
}

fn json_response(value: &Value) -> CoreResponse {
    CoreResponse::new(200, Body::Bytes(value.to_string().into_bytes()))
        .with_field("Content-Type", "application/json")
}

/// Our own server as the upstream (plain HTTP on the same transport): files under
/// `/up/`, `/up/echo` answering what it received, `/up/sum` digesting the body.
struct OwnUpstream {
    server: TestServer,
    _files: TempDir,
}

impl OwnUpstream {
    fn start(setup: Setup) -> Self {
        let files = TempDir::new();
        files.write("hello.txt", HELLO);
        files.write("big.bin", pseudo_random_bytes(BIG_LEN, 11));
        let root = files.path().to_owned();
        let plain = Setup {
            tls: false,
            ..setup
        };
        let server = TestServer::start(plain, move |mut builder| {
            builder.files().bind_path("/up/", root).expect("bind /up/");
            let echo: Handler = Arc::new(|req, _| {
                let headers: Vec<Value> = req
                    .head
                    .fields()
                    .map(|(n, v)| json!([n.to_ascii_lowercase(), String::from_utf8_lossy(v)]))
                    .collect();
                json_response(&json!({
                    "method": req.head.method_str(),
                    "target": req.head.target(),
                    "headers": headers,
                    "body": String::from_utf8_lossy(req.body()),
                }))
            });
            let sum: Handler = Arc::new(|req, _| json_response(&digest(req.body())));
            for method in [
                RouteMethod::Get,
                RouteMethod::Post,
                RouteMethod::Put,
                RouteMethod::Delete,
            ] {
                builder.route(method, "/up/echo", None, Arc::clone(&echo));
            }
            builder.route(RouteMethod::Post, "/up/sum", None, sum);
            builder
        });
        Self {
            server,
            _files: files,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/up", self.server.addr())
    }
}

/// The server under test: `/px/` forwarded to `url`, `/local.txt` served itself.
struct Proxy {
    server: TestServer,
    _files: TempDir,
}

impl Proxy {
    fn start(setup: Setup, limits: Limits, routes: &[(&str, &str)]) -> Self {
        Self::start_tuned(setup, Tuning::default(), limits, routes)
    }

    /// On one event loop (mio): the idle upstream connections are all in its pool.
    fn one_loop(setup: Setup, limits: Limits, routes: &[(&str, &str)]) -> Self {
        let tuning = Tuning {
            loops: Some(1),
            ..Tuning::default()
        };
        Self::start_tuned(setup, tuning, limits, routes)
    }

    fn start_tuned(setup: Setup, tuning: Tuning, limits: Limits, routes: &[(&str, &str)]) -> Self {
        let files = TempDir::new();
        files.write("local.txt", LOCAL);
        let root = files.path().to_owned();
        let routes: Vec<(String, String)> = routes
            .iter()
            .map(|(p, u)| ((*p).to_owned(), (*u).to_owned()))
            .collect();
        let server = TestServer::start_tuned(setup, tuning, move |mut builder: ServerBuilder| {
            builder.limits(limits);
            builder.files().bind_path("/", root).expect("bind /");
            for (prefix, url) in &routes {
                builder.bind_proxy(prefix, url).expect("bind a proxy");
            }
            builder
        });
        Self {
            server,
            _files: files,
        }
    }

    fn connect(&self) -> Client {
        self.server.connect()
    }
}

/// What the upstream saw, from `/up/echo`'s answer: header values by lower-case name.
fn seen_headers(echo: &Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_owned(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn seen<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn assert_local_file_still_served(client: &mut Client) {
    let local = client.request(&get("/local.txt"));
    assert_eq!((local.status, local.text().as_str()), (200, LOCAL));
}

#[test]
fn get_through_the_proxy_rewrites_the_path_and_adds_forwarded_fields() {
    let _gate = shared();
    each_setup(|setup| {
        let upstream = OwnUpstream::start(setup);
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        let response = client.request(
            b"GET /px/echo?x=1 HTTP/1.1\r\nHost: front.test\r\nConnection: keep-alive, X-Hop\r\n\
              X-Hop: 1\r\nCookie: c=1\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n",
        );
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(!response.closes());
        let echo = json_of(&response);
        assert_eq!(echo["target"], "/up/echo?x=1", "query appended once");
        assert_eq!(echo["method"], "GET");
        let headers = seen_headers(&echo);
        let up = upstream.server.addr();
        assert_eq!(seen(&headers, "host"), Some(up.to_string().as_str()));
        assert_eq!(
            seen(&headers, "x-forwarded-for"),
            Some("10.1.1.1, 127.0.0.1")
        );
        let proto = if setup.tls { "https" } else { "http" };
        assert_eq!(seen(&headers, "x-forwarded-proto"), Some(proto));
        assert_eq!(seen(&headers, "x-forwarded-host"), Some("front.test"));
        assert_eq!(seen(&headers, "cookie"), Some("c=1"));
        assert_eq!(
            seen(&headers, "x-hop"),
            None,
            "listed in Connection: hop-by-hop"
        );
        assert_eq!(
            seen(&headers, "connection"),
            None,
            "HTTP/1.1 persists: the upstream connection may be reused"
        );
        assert_eq!(response.header_count("server"), 1, "{:?}", response.headers);
        assert!(response
            .header("server")
            .is_some_and(|s| s.starts_with("QuickServer/")));

        // Keep-alive on the client side: more proxied requests on the same connection.
        let file = client.request(&get("/px/hello.txt"));
        assert_eq!((file.status, file.text().as_str()), (200, HELLO));
        assert_eq!(file.header("content-length"), Some("16"));
        assert_eq!(file.header_count("date"), 1);
        client
            .send(b"HEAD /px/hello.txt HTTP/1.1\r\nHost: front.test\r\n\r\n")
            .unwrap();
        let head = client.read_head_response().unwrap();
        assert_eq!((head.status, head.body.len()), (200, 0));
        assert_eq!(head.header("content-length"), Some("16"));
        let missing = client.request(&get("/px/missing.txt"));
        assert_eq!(missing.status, 404, "the upstream's status is relayed");
        assert!(!missing.body.is_empty(), "with its body");
        let big = client.request(&get("/px/big.bin"));
        assert_eq!(big.status, 200);
        assert_eq!(big.body.len(), BIG_LEN);
        assert_eq!(
            fnv1a64(&big.body),
            fnv1a64(&pseudo_random_bytes(BIG_LEN, 11))
        );
        assert_local_file_still_served(&mut client);

        // Pipelined: two proxied requests in one write, answered in order.
        let mut both = get("/px/echo?n=1");
        both.extend_from_slice(&get("/px/echo?n=2"));
        client.send(&both).unwrap();
        let first = json_of(&client.response());
        let second = json_of(&client.response());
        assert_eq!(
            (first["target"].as_str(), second["target"].as_str()),
            (Some("/up/echo?n=1"), Some("/up/echo?n=2"))
        );
        assert!(!client.closes_within(Duration::from_millis(50)));
    });
}

#[test]
fn post_of_ten_mib_streams_to_the_upstream_and_back() {
    let _gate = shared();
    each_setup(|setup| {
        let upstream = OwnUpstream::start(setup);
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        let body = pseudo_random_bytes(TEN_MIB, 3);
        let response = client.request(&post("/px/sum", &body));
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(json_of(&response), digest(&body));

        // A chunked request body goes upstream chunked.
        let body = pseudo_random_bytes(2 * 1024 * 1024 + 17, 4);
        let mut request =
            b"POST /px/sum HTTP/1.1\r\nHost: front.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for piece in body.chunks(100_000) {
            request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            request.extend_from_slice(piece);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let response = client.request(&request);
        assert_eq!(json_of(&response), digest(&body));

        // Other methods keep theirs, with their bodies.
        let put = client
            .request(b"PUT /px/echo HTTP/1.1\r\nHost: front.test\r\nContent-Length: 3\r\n\r\nabc");
        let echo = json_of(&put);
        assert_eq!(
            (echo["method"].as_str(), echo["body"].as_str()),
            (Some("PUT"), Some("abc"))
        );
        assert_local_file_still_served(&mut client);
    });
}

/// One request as a hand-written upstream received it.
struct RawRequest {
    target: String,
    head: String,
    /// Body bytes read together with the head.
    rest: Vec<u8>,
}

impl RawRequest {
    fn content_length(&self) -> usize {
        self.head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0)
    }
}

type RawHandler = dyn Fn(RawRequest, &mut TcpStream, &AtomicBool) + Send + Sync;

/// A hand-written upstream: accepts on `ip` (port 0), reads one request head per
/// connection and lets `handler` answer it on a thread of its own.
struct RawUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawUpstream {
    fn start(ip: IpAddr, handler: Arc<RawHandler>) -> io::Result<Self> {
        let listener = TcpListener::bind((ip, 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let handler = Arc::clone(&handler);
                let flag = Arc::clone(&flag);
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    if let Some(request) = read_head(&mut stream) {
                        handler(request, &mut stream, &flag);
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/up", self.addr)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_head(stream: &mut TcpStream) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let target = head.split(' ').nth(1)?.to_owned();
    Some(RawRequest {
        target,
        head,
        rest: buf[end..].to_vec(),
    })
}

/// Targets of stalled requests whose connection the proxy closed (seen as an end of
/// stream by the upstream).
static CLOSED_BY_PROXY: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Holds a connection without answering until the proxy closes it (recorded in
/// [`CLOSED_BY_PROXY`]), the upstream stops, or 10 s pass.
fn stall(target: &str, stream: &mut TcpStream, flag: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs(10);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 1024];
    while !flag.load(Ordering::SeqCst) && Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => {
                let mut closed = CLOSED_BY_PROXY
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                closed.push(target.to_owned());
                return;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Whether the proxy closed its upstream connection for `target` within 3 s.
fn closed_by_proxy(target: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let closed = CLOSED_BY_PROXY
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if closed.iter().any(|t| t == target) {
            return true;
        }
        drop(closed);
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The answers of the hand-written upstream, by target.
fn misbehaving(request: RawRequest, stream: &mut TcpStream, stop: &AtomicBool) {
    let path = request.target.split('?').next().unwrap_or_default();
    let pieces: &[&[u8]] = match path {
        "/up/chunked" => &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n",
            b"5\r\nhello\r\n",
            b"7\r\n, world\r\n",
            b"0\r\n\r\n",
        ],
        "/up/close" => &[
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ",
            b"close",
        ],
        "/up/garbage" => &[b"NOT HTTP AT ALL\r\n\r\n"],
        "/up/cut" => &[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
        "/up/stall-body" => &[b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"],
        _ => &[],
    };
    for piece in pieces {
        if stream.write_all(piece).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if path.starts_with("/up/stall") {
        stall(&request.target, stream, stop);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn raw_upstream() -> RawUpstream {
    RawUpstream::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Arc::new(misbehaving))
        .expect("start the hand-written upstream")
}

#[test]
fn chunked_and_close_delimited_upstream_answers_are_reframed() {
    let _gate = shared();
    let upstream = raw_upstream();
    each_setup(|setup| {
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        for _ in 0..2 {
            let response = client.request(&get("/px/chunked"));
            assert_eq!(
                (response.status, response.text().as_str()),
                (200, "hello, world")
            );
            assert_eq!(response.header("transfer-encoding"), Some("chunked"));
            assert_eq!(response.header("x-up"), Some("1"));
            assert_eq!(response.header("content-length"), None);
            assert!(!response.closes());
        }
        let response = client.request(&get("/px/close"));
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "until close")
        );
        assert_eq!(
            response.header("transfer-encoding"),
            Some("chunked"),
            "an HTTP/1.1 client gets a close-delimited body chunked"
        );
        assert_local_file_still_served(&mut client);

        // An HTTP/1.0 client gets it close-delimited.
        let mut old = proxy.connect();
        old.send(b"GET /px/close HTTP/1.0\r\n\r\n").unwrap();
        let rest = old.read_to_close().unwrap();
        let text = String::from_utf8_lossy(&rest);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(text.ends_with("\r\n\r\nuntil close"), "{text}");
        assert!(!text.contains("chunked"), "{text}");
    });
}

#[test]
fn upstream_down_answers_502_and_keeps_the_connection() {
    let _gate = shared();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/up");
    each_setup(|setup| {
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &url)]);
        let mut client = proxy.connect();
        for target in ["/px/a", "/px"] {
            let response = client.request(&get(target));
            assert_eq!(response.status, 502, "{target}: {}", response.text());
            assert!(!response.closes(), "framing intact: the connection stays");
        }
        let response = client.request(&post("/px/sum", b"some body"));
        assert_eq!(response.status, 502);
        assert_local_file_still_served(&mut proxy.connect());
    });
}

#[test]
fn a_stalled_upstream_answers_504_in_time() {
    let _gate = shared();
    let upstream = raw_upstream();
    let limits = Limits {
        upstream_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    each_setup(|setup| {
        let proxy = Proxy::start(setup, limits.clone(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        let started = Instant::now();
        let response = client.request(&get(&format!("/px/stall?{setup}")));
        let took = started.elapsed();
        assert_eq!(response.status, 504, "{}", response.text());
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(!response.closes());
        assert!(
            closed_by_proxy(&format!("/up/stall?{setup}")),
            "the upstream socket is closed while the client stays"
        );
        assert_local_file_still_served(&mut client);

        // Stalling inside the body: the head went out, so the connection can only close.
        let mut client = proxy.connect();
        client
            .send(&get(&format!("/px/stall-body?{setup}")))
            .unwrap();
        let error = client.read_response().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        assert!(client.is_closed());
        assert!(closed_by_proxy(&format!("/up/stall-body?{setup}")));
    });
}

#[test]
fn malformed_or_cut_upstream_answers() {
    let _gate = shared();
    let upstream = raw_upstream();
    each_setup(|setup| {
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        for target in ["/px/garbage", "/px/silent"] {
            let response = client.request(&get(target));
            assert_eq!(response.status, 502, "{target}: {}", response.text());
            assert!(!response.closes());
        }
        assert_local_file_still_served(&mut client);
        // A body cut short cannot be finished: the client connection closes.
        client.send(&get("/px/cut")).unwrap();
        assert!(client.read_response().is_err());
        assert!(client.is_closed());
        assert_local_file_still_served(&mut proxy.connect());
    });
}

#[test]
fn a_request_body_reaches_the_upstream_before_it_is_complete() {
    let _gate = shared();
    const TOTAL: usize = 4 * 1024 * 1024;
    const SEEN: usize = 512 * 1024;
    let (tx, rx) = mpsc::channel::<()>();
    let tx = Mutex::new(tx);
    let handler = move |request: RawRequest, stream: &mut TcpStream, _: &AtomicBool| {
        let total = request.content_length();
        let mut got = request.rest.len();
        let mut signalled = false;
        let mut buf = vec![0u8; 64 * 1024];
        while got < total {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
            if got >= SEEN && !signalled {
                signalled = true;
                let sender: Sender<()> = tx.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let _ = sender.send(());
            }
        }
        let body = got.to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    };
    let upstream = RawUpstream::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Arc::new(handler))
        .expect("start the upstream");
    let rx = Mutex::new(rx);
    // One setup at a time: they share the signal.
    let serial = Mutex::new(());
    each_setup(|setup| {
        let _serial = serial.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        let body = pseudo_random_bytes(TOTAL, 9);
        let (first, second) = body.split_at(TOTAL / 4);
        let head = format!(
            "POST /px/stream HTTP/1.1\r\nHost: front.test\r\nContent-Length: {TOTAL}\r\n\r\n"
        );
        client.send(head.as_bytes()).unwrap();
        client.send(first).unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the upstream got part of the body while the client still holds the rest");
        client.send(second).unwrap();
        let response = client.response();
        assert_eq!((response.status, response.text()), (200, TOTAL.to_string()));
    });
}

/// `python3 -m http.server` serving a folder on 127.0.0.1, killed when dropped.
struct PythonServer {
    child: Child,
    port: u16,
}

impl PythonServer {
    /// Starts it, or `None` (with a notice) when `python3` is not there.
    fn start(dir: &std::path::Path) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("NOTICE: python3 not available ({e}); skipping the http.server upstream");
                return None;
            }
        };
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "python3 -m http.server did not start"
            );
            thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn python_http_server_as_the_upstream() {
    let _gate = shared();
    let dir = TempDir::new();
    dir.write("hello.txt", HELLO);
    let big = pseudo_random_bytes(TEN_MIB, 5);
    dir.write("big.bin", &big);
    let Some(python) = PythonServer::start(dir.path()) else {
        return;
    };
    let by_ip = format!("http://127.0.0.1:{}", python.port);
    let by_name = format!("http://localhost:{}/", python.port);
    each_setup(|setup| {
        let proxy = Proxy::start(
            setup,
            Limits::default(),
            &[("/py/", &by_ip), ("/pyl/", &by_name)],
        );
        let mut client = proxy.connect();
        for prefix in ["/py", "/pyl"] {
            let hello = client.request(&get(&format!("{prefix}/hello.txt?v=1")));
            assert_eq!((hello.status, hello.text().as_str()), (200, HELLO));
            assert_eq!(hello.header("content-type"), Some("text/plain"));
            assert_eq!(hello.header_count("server"), 1);
            assert!(!hello.closes(), "the client keeps its connection");
        }
        let listing = client.request(&get("/py/"));
        assert_eq!(listing.status, 200);
        assert!(listing.text().contains("hello.txt"), "{}", listing.text());
        let response = client.request(&get("/py/big.bin"));
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), big.len());
        assert_eq!(fnv1a64(&response.body), fnv1a64(&big));
        let refused = client.request(&post("/py/hello.txt", b"x=1"));
        assert_eq!(refused.status, 501, "the upstream's error is relayed");
        let missing = client.request(&get("/py/nope"));
        assert_eq!(missing.status, 404);
        assert_local_file_still_served(&mut client);
    });
}

/// The machine's host name, when it resolves to an IPv4 address of this machine.
fn local_host_name() -> Option<(String, IpAddr)> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_owned();
    let ip = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .find(IpAddr::is_ipv4)?;
    TcpListener::bind((ip, 0)).ok()?;
    Some((name, ip))
}

#[test]
fn host_names_are_looked_up_without_stalling_other_clients() {
    let _gate = shared();
    let Some((name, ip)) = local_host_name() else {
        eprintln!("NOTICE: the host name does not resolve to a local address; skipping");
        return;
    };
    let upstream = RawUpstream::start(ip, Arc::new(misbehaving)).expect("start the upstream");
    let by_name = format!("http://{name}:{}/up", upstream.addr.port());
    let limits = Limits {
        upstream_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    each_setup(|setup| {
        let proxy = Proxy::start(
            setup,
            limits.clone(),
            &[("/px/", &by_name), ("/nx/", "http://nonexistent.invalid/")],
        );
        let mut client = proxy.connect();
        let response = client.request(&get("/px/chunked"));
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "hello, world")
        );
        let response = client.request(&get("/nx/a"));
        assert!(
            matches!(response.status, 502 | 504),
            "an unknown host: {} {}",
            response.status,
            response.text()
        );
        assert_local_file_still_served(&mut client);
    });
}

#[test]
fn the_facade_binds_a_proxy() {
    let _gate = shared();
    each_setup(|setup| {
        let upstream = OwnUpstream::start(setup);
        let mut server = FacadeServer::builder();
        server
            .bind_proxy("/api/", &upstream.url())
            .expect("bind the proxy");
        assert!(server.bind_proxy("api", &upstream.url()).is_err());
        assert!(server.bind_proxy("/x/", "ftp://example.test/").is_err());
        // An https upstream signed by a CA the facade is told to trust.
        let ca = TestCa::new("facade");
        let secure = KeepAliveUpstream::start_tls(KEEP, ca.server_config(&["127.0.0.1"]));
        let files = TempDir::new();
        files.write("ca.pem", ca.pem());
        server
            .bind_proxy("/secure/", &secure.url())
            .expect("bind the https proxy")
            .proxy_ca(files.path().join("ca.pem"));
        let server = FacadeServer::start(setup, server);
        let response = server.exchange(&get("/api/echo?q=1"));
        assert_eq!(json_of(&response)["target"], "/up/echo?q=1");
        let response = server.exchange(&get("/secure/s"));
        assert_eq!(String::from_utf8_lossy(&response.body), "1 /up/s");
    });
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// Waits up to 10 s for `count` to come down to `limit`; returns the last count.
fn settles(count: fn() -> usize, limit: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = count();
        if now <= limit || Instant::now() >= deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clients_leaving_mid_body_cost_nothing() {
    let _alone = GATE.write().unwrap_or_else(PoisonError::into_inner);
    // One setup at a time, so the counts belong to it.
    let serial = Mutex::new(());
    each_setup(|setup| {
        let _serial = serial.lock().unwrap_or_else(PoisonError::into_inner);
        let upstream = OwnUpstream::start(setup);
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let hello = |proxy: &Proxy| {
            let response = proxy.connect().request(&get("/px/hello.txt"));
            assert_eq!((response.status, response.text().as_str()), (200, HELLO));
        };
        hello(&proxy);
        thread::sleep(Duration::from_millis(200));
        let (fds, threads) = (open_fds(), thread_count());
        let body = pseudo_random_bytes(1024 * 1024, 2);
        for _ in 0..5 {
            // Leaves in the middle of its request body.
            let mut client = proxy.connect();
            let head = format!(
                "POST /px/sum HTTP/1.1\r\nHost: front.test\r\nContent-Length: {TEN_MIB}\r\n\r\n"
            );
            client.send(head.as_bytes()).unwrap();
            client.send(&body).unwrap();
            thread::sleep(Duration::from_millis(20));
            drop(client);
            // Leaves in the middle of the response body.
            let mut client = proxy.connect();
            client.send(&get("/px/big.bin")).unwrap();
            let mut some = [0u8; 64 * 1024];
            let mut socket = client.socket();
            assert!(socket.read(&mut some).unwrap() > 0, "the answer started");
            drop(client);
            hello(&proxy);
        }
        let now = settles(open_fds, fds + 2);
        assert!(now <= fds + 2, "descriptors: {fds} before, {now} after");
        let now = settles(thread_count, threads);
        assert!(now <= threads, "threads: {threads} before, {now} after");
        hello(&proxy);
    });
}

/// What a [`KeepAliveUpstream`] does on each of its connections.
#[derive(Clone, Copy)]
struct Policy {
    /// Requests answered per connection; the next one is read and the connection closed
    /// without an answer (a connection the upstream dropped while the proxy reused it).
    answers: usize,
    /// Closes each connection right after its first answer (it is idle in the pool then).
    close_when_idle: bool,
}

/// A keep-alive HTTP/1.1 upstream that counts the connections it accepted and answers
/// each request with `<connection number> <target>`; over TLS when it has a
/// configuration.
struct KeepAliveUpstream {
    addr: SocketAddr,
    tls: bool,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeepAliveUpstream {
    fn start(policy: Policy) -> Self {
        Self::start_with(policy, None)
    }

    /// An HTTPS upstream presenting the certificate of `tls`.
    fn start_tls(policy: Policy, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_with(policy, Some(tls))
    }

    fn start_with(policy: Policy, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let secure = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().expect("its address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (Arc::clone(&accepted), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let number = count.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let port = stream.local_addr().map_or(0, |a| a.port());
                let tls = tls.clone();
                thread::spawn(move || match tls {
                    None => serve_keep_alive(stream, number, port, policy),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let stream = rustls::StreamOwned::new(session, stream);
                        serve_keep_alive(stream, number, port, policy);
                    }
                });
            }
        });
        Self {
            addr,
            tls: secure,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/up", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for KeepAliveUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers requests on one connection (to `port`) as `policy` says.
fn serve_keep_alive(mut stream: impl Read + Write, number: usize, port: u16, policy: Policy) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for served in 0.. {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let request = RawRequest {
            target: head.split(' ').nth(1).unwrap_or_default().to_owned(),
            head,
            rest: Vec::new(),
        };
        let length = request.content_length();
        while buf.len() < end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + length);
        if served >= policy.answers {
            return; // read, then dropped unanswered
        }
        let body = format!("{number} {}", request.target);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nX-Upstream: {port}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() || stream.flush().is_err() {
            return;
        }
        if policy.close_when_idle {
            return;
        }
    }
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let _gate = shared();
    each_setup(|setup| {
        let upstream = KeepAliveUpstream::start(Policy {
            answers: usize::MAX,
            close_when_idle: false,
        });
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        for n in 0..100 {
            // Each on a client connection of its own.
            let response = proxy.connect().request(&get(&format!("/px/n{n}")));
            assert_eq!(response.status, 200, "{}", response.text());
            assert!(response.text().ends_with(&format!(" /up/n{n}")));
        }
        // Each mio loop has its own pool; std's workers share one.
        let loops = match setup.transport {
            Transport::Mio => quick_server_mio::Options::default().loops,
            Transport::Std => 1,
        };
        let accepted = upstream.accepted();
        assert!(
            (1..=loops).contains(&accepted),
            "{accepted} upstream connections for 100 requests over {loops} loops"
        );
    });
}

#[test]
fn idle_upstream_connections_are_bounded_and_expire() {
    let _gate = shared();
    let limits = Limits {
        upstream_max_idle: 1,
        upstream_idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    each_setup(|setup| {
        let upstream = KeepAliveUpstream::start(Policy {
            answers: usize::MAX,
            close_when_idle: false,
        });
        let proxy = Proxy::one_loop(setup, limits.clone(), &[("/px/", &upstream.url())]);
        // Two requests at once need two connections; only one stays idle after them.
        let mut a = proxy.connect();
        let mut b = proxy.connect();
        a.send(&post_slowly_head("/px/a", 1)).unwrap();
        b.send(&post_slowly_head("/px/b", 1)).unwrap();
        thread::sleep(Duration::from_millis(100));
        a.send(b"x").unwrap();
        b.send(b"x").unwrap();
        assert_eq!(a.response().status, 200);
        assert_eq!(b.response().status, 200);
        assert_eq!(upstream.accepted(), 2);
        for _ in 0..2 {
            let response = proxy.connect().request(&get("/px/again"));
            assert_eq!(response.status, 200);
        }
        assert_eq!(upstream.accepted(), 2, "the kept connection serves both");
        // Past the idle timeout the kept connection is not used again.
        thread::sleep(Duration::from_millis(2500));
        let response = proxy.connect().request(&get("/px/late"));
        assert_eq!(response.text(), "3 /up/late");
    });
}

/// The head of a POST whose `len`-byte body follows later.
fn post_slowly_head(target: &str, len: usize) -> Vec<u8> {
    format!("POST {target} HTTP/1.1\r\nHost: front.test\r\nContent-Length: {len}\r\n\r\n")
        .into_bytes()
}

#[test]
fn a_stale_upstream_connection_is_retried_for_get_and_not_for_post() {
    let _gate = shared();
    each_setup(|setup| {
        // One answer per connection: the second request on it finds it closed.
        let upstream = KeepAliveUpstream::start(Policy {
            answers: 1,
            close_when_idle: false,
        });
        let proxy = Proxy::one_loop(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let first = proxy.connect().request(&get("/px/first"));
        assert_eq!(first.text(), "1 /up/first");
        let retried = proxy.connect().request(&get("/px/second"));
        assert_eq!(retried.status, 200, "{}", retried.text());
        assert_eq!(
            retried.text(),
            "2 /up/second",
            "retried on a new connection"
        );

        let upstream = KeepAliveUpstream::start(Policy {
            answers: 1,
            close_when_idle: false,
        });
        let proxy = Proxy::one_loop(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let first = proxy.connect().request(&post("/px/first", b"a=1"));
        assert_eq!(first.text(), "1 /up/first");
        let not_retried = proxy.connect().request(&post("/px/second", b"a=2"));
        assert_eq!(not_retried.status, 502, "{}", not_retried.text());
        assert_eq!(upstream.accepted(), 1, "a POST is never sent twice");
    });
}

#[test]
fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
    let _gate = shared();
    let ca = TestCa::new("idle");
    let policy = Policy {
        answers: usize::MAX,
        close_when_idle: true,
    };
    each_setup(|setup| {
        let plain = KeepAliveUpstream::start(policy);
        let proxy = Proxy::one_loop(setup, Limits::default(), &[("/px/", &plain.url())]);
        let tls = KeepAliveUpstream::start_tls(policy, ca.server_config(&["127.0.0.1"]));
        let (tls_proxy, _) = https_proxy(setup, &tls.url(), ca.client_config());
        for proxy in [&proxy.server, &tls_proxy] {
            assert_eq!(proxy.connect().request(&get("/px/a")).text(), "1 /up/a");
            thread::sleep(Duration::from_millis(500));
            // A POST cannot be retried: it only succeeds if the closed one was skipped.
            let response = proxy.connect().request(&post("/px/b", b"x=1"));
            assert_eq!(
                (response.status, response.text().as_str()),
                (200, "2 /up/b")
            );
        }
    });
}

/// Which upstream (its port) answered.
fn upstream_port(response: &quick_server_tests::Response) -> u16 {
    response
        .header("x-upstream")
        .and_then(|p| p.parse().ok())
        .unwrap_or_default()
}

const KEEP: Policy = Policy {
    answers: usize::MAX,
    close_when_idle: false,
};

#[test]
fn several_upstreams_take_requests_in_turn() {
    let _gate = shared();
    each_setup(|setup| {
        let (a, b) = (
            KeepAliveUpstream::start(KEEP),
            KeepAliveUpstream::start(KEEP),
        );
        let urls = format!("{},{}", a.url(), b.url());
        let proxy = Proxy::one_loop(setup, Limits::default(), &[("/px/", &urls)]);
        let ports: Vec<u16> = (0..6)
            .map(|n| {
                let response = proxy.connect().request(&get(&format!("/px/{n}")));
                assert_eq!(response.status, 200, "{}", response.text());
                upstream_port(&response)
            })
            .collect();
        let (pa, pb) = (a.addr.port(), b.addr.port());
        let expected = if ports[0] == pa { [pa, pb] } else { [pb, pa] };
        assert_eq!(ports, expected.repeat(3), "alternating");
        assert_eq!((a.accepted(), b.accepted()), (1, 1), "each kept alive");
    });
}

/// A request log that keeps the notes (the proxy's debug lines).
#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl quick_server_core::log::RequestLog for Notes {
    fn request(&self, _: &quick_server_core::log::RequestRecord<'_>) {}
    fn slow(&self, _: &quick_server_core::log::SlowRequest<'_>) {}
    fn note(&self, text: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text.to_owned());
    }
}

impl Notes {
    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A proxy for `/px/` to `urls` on one event loop (mio: its pool holds every idle
/// upstream connection), set up further by `configure`; its log's notes go to the
/// returned lines.
fn logged_proxy(
    setup: Setup,
    urls: &str,
    configure: impl FnOnce(&mut ServerBuilder),
) -> (TestServer, Arc<Notes>) {
    let notes = Arc::new(Notes::default());
    let (log, urls) = (Arc::clone(&notes), urls.to_owned());
    let tuning = Tuning {
        loops: Some(1),
        ..Tuning::default()
    };
    let server = TestServer::start_tuned(setup, tuning, move |mut builder| {
        configure(&mut builder);
        builder
            .request_log(log)
            .bind_proxy("/px/", &urls)
            .expect("bind the proxy");
        builder
    });
    (server, notes)
}

/// A proxy for `/px/` to `urls` whose debug log goes to the returned notes.
fn debug_proxy(setup: Setup, urls: &str) -> (TestServer, Arc<Notes>) {
    logged_proxy(setup, urls, |builder| {
        builder.debug_proxy(true);
    })
}

#[test]
fn an_upstream_that_refuses_is_skipped_for_a_while() {
    let _gate = shared();
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    each_setup(|setup| {
        let live = KeepAliveUpstream::start(KEEP);
        let urls = format!("http://127.0.0.1:{dead}/up,{}", live.url());
        let (proxy, notes) = debug_proxy(setup, &urls);
        for n in 0..6 {
            let response = proxy.connect().request(&get(&format!("/px/{n}")));
            assert_eq!(response.status, 200, "{}", response.text());
            assert_eq!(upstream_port(&response), live.addr.port());
        }
        let refused = notes
            .lines()
            .iter()
            .filter(|l| l.contains(&format!("127.0.0.1:{dead}")) && l.contains("refused"))
            .count();
        assert_eq!(refused, 1, "tried once, then skipped: {:?}", notes.lines());
    });
}

#[test]
fn the_debug_log_shows_each_exchange() {
    let _gate = shared();
    each_setup(|setup| {
        let upstream = KeepAliveUpstream::start(KEEP);
        let (proxy, notes) = debug_proxy(setup, &upstream.url());
        let response = proxy.connect().request(&post("/px/echo?q=1", b"it's a=1"));
        assert_eq!(response.status, 200);
        let body = response.text();
        let lines = notes.lines();
        let url = format!("{}/echo?q=1", upstream.url());
        let expected_request = format!(
            "proxy /px/echo?q=1 to POST {url}: headers={{\"Host\":\"{}\",",
            upstream.addr
        );
        assert!(lines[0].starts_with(&expected_request), "{lines:?}");
        assert!(
            lines[0].ends_with("\"Content-Length\":\"8\"} payload=b\"it's a=1\""),
            "{lines:?}"
        );
        let port = upstream.addr.port();
        assert_eq!(
            lines[1],
            format!(
                "response 200 for /px/echo?q=1 outlen={} headers={{\"X-Upstream\":\"{port}\",\"Content-Length\":\"{}\"}}",
                body.len(),
                body.len()
            )
        );
        let summary = format!(
            "proxied POST /px/echo?q=1 to {url}: 200, 8 bytes in, {} bytes out, ",
            body.len()
        );
        assert!(lines[2].starts_with(&summary), "{lines:?}");
        assert!(lines[2].ends_with(" ms"), "{lines:?}");
        assert_eq!(lines.len(), 3, "{lines:?}");
    });
}

/// A proxy for `/px/` to `urls` that verifies `https://` upstreams with `tls`; its log's
/// notes (a TLS failure's reason) go to the returned lines.
fn https_proxy(
    setup: Setup,
    urls: &str,
    tls: Arc<rustls::ClientConfig>,
) -> (TestServer, Arc<Notes>) {
    logged_proxy(setup, urls, |builder| {
        builder.upstream_tls(tls);
    })
}

#[test]
fn an_https_upstream_signed_by_a_trusted_ca_answers_over_kept_connections() {
    let _gate = shared();
    let ca = TestCa::new("upstreams");
    each_setup(|setup| {
        let config = ca.server_config(&["localhost", "127.0.0.1"]);
        let upstream = KeepAliveUpstream::start_tls(KEEP, config);
        // An IP literal: its certificate is checked for the IP address.
        let (proxy, notes) = https_proxy(setup, &upstream.url(), ca.client_config());
        for n in 0..20 {
            // Each on a client connection of its own.
            let response = proxy.connect().request(&get(&format!("/px/n{n}")));
            assert_eq!(response.status, 200, "{}", response.text());
            assert!(response.text().ends_with(&format!(" /up/n{n}")));
        }
        let accepted = upstream.accepted();
        assert_eq!(
            accepted, 1,
            "upstream TLS connections for 20 requests on one loop"
        );
        assert!(notes.lines().is_empty(), "{:?}", notes.lines());
        // A host name, checked as a DNS name, beside a plain upstream in the same binding.
        let plain = KeepAliveUpstream::start(KEEP);
        let urls = format!(
            "https://localhost:{}/up,{}",
            upstream.addr.port(),
            plain.url()
        );
        let (mixed, _) = https_proxy(setup, &urls, ca.client_config());
        let ports: Vec<u16> = (0..2)
            .map(|n| {
                let response = mixed.connect().request(&get(&format!("/px/{n}")));
                assert_eq!(response.status, 200, "{}", response.text());
                upstream_port(&response)
            })
            .collect();
        assert!(ports.contains(&upstream.addr.port()) && ports.contains(&plain.addr.port()));
    });
}

#[test]
fn an_https_upstream_that_cannot_be_trusted_answers_502_and_the_log_says_why() {
    let _gate = shared();
    let (trusted, stranger) = (TestCa::new("trusted"), TestCa::new("stranger"));
    each_setup(|setup| {
        let unknown = KeepAliveUpstream::start_tls(KEEP, stranger.server_config(&["127.0.0.1"]));
        let misnamed =
            KeepAliveUpstream::start_tls(KEEP, trusted.server_config(&["elsewhere.test"]));
        let cases = [
            (&unknown, "invalid peer certificate: UnknownIssuer"),
            (
                &misnamed,
                "invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
            ),
        ];
        for (upstream, why) in cases {
            let (proxy, notes) = https_proxy(setup, &upstream.url(), trusted.client_config());
            let mut client = proxy.connect();
            let response = client.request(&get("/px/a"));
            assert_eq!(response.status, 502, "{}", response.text());
            let again = client.request(&get("/px/b"));
            assert_eq!(again.status, 502, "the client connection goes on");
            let expected = format!("proxy: TLS with {}/a failed: {why}", upstream.url());
            let lines = notes.lines();
            assert!(
                lines.iter().any(|l| l.starts_with(&expected)),
                "{expected} in {lines:?}"
            );
        }
    });
}

/// A masked WebSocket text frame, as a client sends it.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// A WebSocket upstream: answers the upgrade with 101, echoes one text frame unmasked,
/// sends a close frame and closes.
fn websocket_echo(request: RawRequest, stream: &mut TcpStream, _: &AtomicBool) {
    let head = request.head.to_ascii_lowercase();
    if !(head.contains("\r\nconnection: upgrade\r\n")
        && head.contains("\r\nupgrade: websocket\r\n"))
    {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: echo\r\n\r\n";
    if stream.write_all(switch).is_err() {
        return;
    }
    let mut frame = request.rest;
    let mut chunk = [0u8; 256];
    while frame.len() < 2 || frame.len() < 6 + usize::from(frame[1] & 0x7f) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => frame.extend_from_slice(&chunk[..n]),
        }
    }
    let len = usize::from(frame[1] & 0x7f);
    let mask = [frame[2], frame[3], frame[4], frame[5]];
    let payload: Vec<u8> = frame[6..6 + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    let mut echo = vec![0x81, len as u8];
    echo.extend_from_slice(&payload);
    echo.extend_from_slice(&[0x88, 0x00]);
    let _ = stream.write_all(&echo);
    let _ = stream.shutdown(Shutdown::Both);
}

#[test]
fn a_websocket_echo_passes_through_the_proxy() {
    let _gate = shared();
    let upstream = RawUpstream::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Arc::new(websocket_echo))
        .expect("start the WebSocket upstream");
    each_setup(|setup| {
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        client
            .send(
                b"GET /px/chat HTTP/1.1\r\nHost: front.test\r\nConnection: Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
        let switched = client.read_head_response().unwrap();
        assert_eq!(switched.status, 101);
        assert_eq!(switched.header("upgrade"), Some("websocket"));
        assert_eq!(switched.header("sec-websocket-accept"), Some("echo"));
        client.send(&masked_text(b"hello, tunnel")).unwrap();
        let rest = client.read_to_close().unwrap();
        let mut expected = vec![0x81, 13];
        expected.extend_from_slice(b"hello, tunnel");
        expected.extend_from_slice(&[0x88, 0x00]);
        assert_eq!(rest, expected, "the echo, then the upstream's close");
        assert!(client.is_closed(), "the upstream closed: so did the proxy");

        // Without `Connection: upgrade`, `Upgrade` is hop-by-hop and stays here.
        let plain = proxy
            .connect()
            .request(b"GET /px/chat HTTP/1.1\r\nHost: front.test\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(plain.status, 400, "the upstream saw no upgrade");
    });
}

const UPGRADE: &[u8] = b"GET /px/chat HTTP/1.1\r\nHost: front.test\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A WebSocket upstream that switches, then holds its side open, saying nothing, until
/// the proxy closes it; counts the tunnels it saw closed.
fn silent_tunnels(closed: Arc<AtomicUsize>) -> RawUpstream {
    let handler = move |_: RawRequest, stream: &mut TcpStream, _: &AtomicBool| {
        let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        if stream.write_all(switch).is_err() {
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut chunk = [0u8; 256];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    RawUpstream::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Arc::new(handler))
        .expect("start the WebSocket upstream")
}

/// Upgrades a new client connection of `proxy`; the status of the answer.
fn upgrade(proxy: &Proxy) -> (Client, u16) {
    let mut client = proxy.connect();
    client.send(UPGRADE).unwrap();
    let status = client.read_head_response().unwrap().status;
    (client, status)
}

#[test]
fn a_tunnel_silent_past_its_idle_timeout_is_closed_on_both_sides() {
    let _gate = shared();
    let limits = Limits {
        tunnel_idle_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    each_setup(|setup| {
        let closed = Arc::new(AtomicUsize::new(0));
        let upstream = silent_tunnels(Arc::clone(&closed));
        let proxy = Proxy::start(setup, limits.clone(), &[("/px/", &upstream.url())]);
        let (mut client, status) = upgrade(&proxy);
        assert_eq!(status, 101);
        assert!(
            client.closes_within(Duration::from_secs(10)),
            "the silent tunnel is closed towards the client"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(closed.load(Ordering::SeqCst), 1, "and towards the upstream");
    });
}

#[test]
fn tunnels_beyond_the_cap_are_refused_with_503_until_one_closes() {
    let _gate = shared();
    let limits = Limits {
        max_tunnels: 1,
        ..Limits::default()
    };
    each_setup(|setup| {
        let upstream = silent_tunnels(Arc::new(AtomicUsize::new(0)));
        let proxy = Proxy::start(setup, limits.clone(), &[("/px/", &upstream.url())]);
        let (first, status) = upgrade(&proxy);
        assert_eq!(status, 101);
        let (_, status) = upgrade(&proxy);
        assert_eq!(status, 503, "one tunnel at a time");
        let plain = proxy.connect().request(&get("/local.txt"));
        assert_eq!(plain.text(), LOCAL, "other requests are served");
        drop(first);
        // The place comes back once the proxy saw the client leave.
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            let (_, status) = upgrade(&proxy);
            if status == 101 || Instant::now() >= deadline {
                break status;
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status, 101, "the place was given back");
    });
}

#[test]
fn an_upstream_head_past_its_limit_answers_502_without_waiting_for_the_rest() {
    let _gate = shared();
    // 64 KiB + 16 KiB of head and no end, then the upstream waits: only the limit can
    // end the exchange before the upstream timeout.
    let endless_head = |_: RawRequest, stream: &mut TcpStream, _: &AtomicBool| {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
        head.resize(80 * 1024, b'a');
        if stream.write_all(&head).is_ok() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = stream.read(&mut [0u8; 1]); // until the proxy closes it
        }
    };
    let upstream = RawUpstream::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Arc::new(endless_head))
        .expect("start the upstream");
    each_setup(|setup| {
        let proxy = Proxy::start(setup, Limits::default(), &[("/px/", &upstream.url())]);
        let mut client = proxy.connect();
        let response = client.request(&get("/px/big-head"));
        assert_eq!(response.status, 502, "{}", response.text());
        let again = client.request(&get("/local.txt"));
        assert_eq!(again.text(), LOCAL, "the client connection goes on");
    });
}
