//! End-to-end tests: a real server on 127.0.0.1:0, std clients speaking raw bytes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use quick_server_core::dynamic::{Args, Handler};
use quick_server_core::Method;
use quick_server_core::{Body, Limits, Request, Response, Server, ServerBuilder};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::*;
use crate::event_loop::ACCEPTS_PER_WAKE;

const HELLO: &[u8] = b"hello, world\n";
const BIG_LEN: usize = 20 * 1024 * 1024;

/// A folder with `hello.txt` and a patterned 20 MiB `big.bin`, removed on drop.
struct Site(PathBuf);

impl Site {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("qs-mio-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.txt"), HELLO).unwrap();
        std::fs::write(dir.join("big.bin"), big()).unwrap();
        Self(dir)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn big() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i % 251) as u8).collect()
}

fn serve(site: &Site, limits: Limits, options: Options) -> Running {
    serve_with(site, limits, options, |_| {})
}

fn serve_with(
    site: &Site,
    limits: Limits,
    options: Options,
    routes: impl FnOnce(&mut ServerBuilder),
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    start(listener, server(site, limits, routes), options).unwrap()
}

/// Like [`serve_with`] (default options) on a listener with room for `backlog` pending
/// connections.
fn serve_listening(
    site: &Site,
    limits: Limits,
    backlog: i32,
    routes: impl FnOnce(&mut ServerBuilder),
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: the descriptor is a bound socket owned by `listener`; listening again only
    // changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), backlog) }, 0);
    // One loop: a stalled loop must leave connections in the backlog.
    let options = Options {
        loops: 1,
        ..Options::default()
    };
    start(listener, server(site, limits, routes), options).unwrap()
}

/// The site's folder at `/`, with `limits` and the `routes` added.
fn server(site: &Site, limits: Limits, routes: impl FnOnce(&mut ServerBuilder)) -> Arc<Server> {
    let mut builder = Server::builder((Instant::now(), SystemTime::now()));
    builder.limits(limits);
    builder.files().bind_path("/", &site.0).unwrap();
    routes(&mut builder);
    builder.build()
}

fn connect(running: &Running) -> TcpStream {
    let stream = TcpStream::connect(running.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn stop(running: Running) {
    running.handle().shutdown();
    running.wait().unwrap();
}

/// One response read off `stream`: head text and body (by Content-Length).
fn response(stream: &mut impl Read) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection ended inside a head: {head:?}"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0; len];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Reads until the server closes; the bytes that came.
fn rest(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    all
}

#[test]
fn serves_a_file_with_keep_alive() {
    let site = Site::new("get");
    let running = serve(&site, Limits::default(), Options::default());
    let mut c = connect(&running);
    for _ in 0..3 {
        c.write_all(&get("/hello.txt")).unwrap();
        let (head, body) = response(&mut c);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, HELLO);
    }
    c.write_all(&get("/missing")).unwrap();
    assert!(response(&mut c).0.starts_with("HTTP/1.1 404 "));
    stop(running);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let site = Site::new("pipe");
    let running = serve(&site, Limits::default(), Options::default());
    let mut c = connect(&running);
    let mut batch = Vec::new();
    for path in ["/hello.txt", "/nope", "/hello.txt"] {
        batch.extend(get(path));
    }
    batch.extend(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.write_all(&batch).unwrap();
    let statuses: Vec<String> = (0..4)
        .map(|_| response(&mut c).0[9..12].to_owned())
        .collect();
    assert_eq!(statuses, ["200", "404", "200", "200"]);
    assert!(rest(&mut c).is_empty(), "closed after the last answer");
    stop(running);
}

#[test]
fn a_slow_head_gets_408_and_close() {
    let site = Site::new("slow");
    let limits = Limits {
        header_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let running = serve(&site, limits, Options::default());
    let mut c = connect(&running);
    let started = Instant::now();
    c.write_all(b"GET /hello.txt HTTP/1.1\r\nHost").unwrap();
    let all = String::from_utf8(rest(&mut c)).unwrap();
    assert!(all.starts_with("HTTP/1.1 408 "), "{all}");
    assert!(started.elapsed() < Duration::from_secs(3));
    stop(running);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let site = Site::new("idle");
    let limits = Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let running = serve(&site, limits, Options::default());
    let mut c = connect(&running);
    c.write_all(&get("/hello.txt")).unwrap();
    response(&mut c);
    assert!(rest(&mut c).is_empty(), "nothing is sent on an idle close");
    stop(running);
}

#[test]
fn a_20_mib_file_arrives_intact() {
    let site = Site::new("big");
    let running = serve(&site, Limits::default(), Options::default());
    let mut c = connect(&running);
    c.write_all(&get("/big.bin")).unwrap();
    let (head, body) = response(&mut c);
    assert!(
        head.contains(&format!("Content-Length: {BIG_LEN}\r\n")),
        "{head}"
    );
    assert!(body == big(), "body differs");
    // The connection is still usable after a large body.
    c.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut c).1, HELLO);
    stop(running);
}

#[test]
fn pipelined_large_files_under_backpressure() {
    let site = Site::new("bigpipe");
    let running = serve(&site, Limits::default(), Options::default());
    let mut c = connect(&running);
    let mut batch = Vec::new();
    for path in ["/big.bin", "/big.bin", "/hello.txt"] {
        batch.extend(get(path));
    }
    c.write_all(&batch).unwrap();
    let expected = big();
    for _ in 0..2 {
        let (_, body) = response(&mut c);
        assert!(body == expected, "body differs");
    }
    assert_eq!(response(&mut c).1, HELLO);
    stop(running);
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let site = Site::new("stuck");
    let limits = Limits {
        send_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let running = serve(&site, limits, Options::default());
    let mut stuck = connect(&running);
    stuck.write_all(&get("/big.bin")).unwrap();
    thread::sleep(Duration::from_millis(1000));
    // Others are served meanwhile.
    let mut other = connect(&running);
    other.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut other).1, HELLO);
    let mut got = Vec::new();
    let _ = stuck.read_to_end(&mut got);
    assert!(
        got.len() < BIG_LEN,
        "the response was cut off: {}",
        got.len()
    );
    stop(running);
}

#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let site = Site::new("half");
    let running = serve(&site, Limits::default(), Options::default());
    let mut c = connect(&running);
    c.write_all(&get("/hello.txt")).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(response(&mut c).1, HELLO);
    assert!(rest(&mut c).is_empty());
    stop(running);
}

#[test]
fn lingering_close_keeps_the_error_answer_readable() {
    let site = Site::new("linger");
    let running = serve(&site, Limits::default(), Options::default());
    let mut c = connect(&running);
    // No Host: 400 and close, while the client still has a body's worth of bytes in flight.
    let mut input = b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".to_vec();
    input.extend(vec![b'x'; 100_000]);
    let writer = {
        let mut c = c.try_clone().unwrap();
        thread::spawn(move || {
            let _ = c.write_all(&input);
        })
    };
    thread::sleep(Duration::from_millis(100));
    let (head, _) = response(&mut c);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(head.contains("Connection: close"));
    writer.join().unwrap();
    stop(running);
}

#[test]
fn two_hundred_concurrent_connections() {
    let site = Site::new("many");
    let running = serve(&site, Limits::default(), Options::default());
    let mut clients: Vec<TcpStream> = (0..200).map(|_| connect(&running)).collect();
    for c in &mut clients {
        c.write_all(&get("/hello.txt")).unwrap();
    }
    for c in &mut clients {
        assert_eq!(response(c).1, HELLO);
    }
    let addr = running.local_addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..25 {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").unwrap();
                    let (head, body) = response(&mut c);
                    assert!(head.starts_with("HTTP/1.1 200 OK"));
                    assert_eq!(body, HELLO);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    stop(running);
}

#[test]
fn a_backlog_larger_than_one_wake_ups_accepts_is_served() {
    let site = Site::new("backlog");
    // An inline handler that stalls the loop, so that connections pile up in the backlog
    // (raised from std's 128, so that none waits for a SYN retry).
    let running = serve_listening(&site, Limits::default(), 1024, |b| {
        b.route_inline(Method::Get, "/stall", None, sleeper(b"stalled"));
    });
    let mut staller = connect(&running);
    staller.write_all(&get("/stall")).unwrap();
    thread::sleep(Duration::from_millis(50));
    // While the loop stalls, the backlog fills with more than two wake-ups' worth: the
    // arrivals raise one edge, and the rest must be accepted without another.
    let mut clients: Vec<TcpStream> = (0..3 * ACCEPTS_PER_WAKE)
        .map(|_| {
            let mut c = connect(&running);
            c.write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n").unwrap();
            c
        })
        .collect();
    assert_eq!(response(&mut staller).1, b"stalled");
    for c in &mut clients {
        assert_eq!(response(c).1, HELLO);
    }
    stop(running);
}

#[test]
fn connections_beyond_the_limit_get_503() {
    let site = Site::new("full");
    let options = Options {
        max_connections: 2,
        ..Options::default()
    };
    let running = serve(&site, Limits::default(), options);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&running)).collect();
    for c in &mut held {
        c.write_all(&get("/hello.txt")).unwrap();
        response(c); // both are admitted
    }
    let mut extra = connect(&running);
    extra.write_all(&get("/hello.txt")).unwrap();
    let all = String::from_utf8(rest(&mut extra)).unwrap();
    assert_eq!(
        all,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    drop(held);
    thread::sleep(Duration::from_millis(100));
    let mut again = connect(&running);
    again.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut again).1, HELLO, "a freed slot is used again");
    stop(running);
}

#[test]
fn shutdown_finishes_the_request_in_progress_and_stops_accepting() {
    let site = Site::new("stop");
    let running = serve(&site, Limits::default(), Options::default());
    let addr = running.local_addr();
    let mut busy = connect(&running);
    let mut idle = connect(&running);
    busy.write_all(b"GET /hello.txt HTTP/1.1\r\nHo").unwrap();
    thread::sleep(Duration::from_millis(100));
    let handle = running.handle();
    handle.shutdown();
    thread::sleep(Duration::from_millis(100));
    assert!(
        rest(&mut idle).is_empty(),
        "an idle connection closes at once"
    );
    busy.write_all(b"st: x\r\n\r\n").unwrap();
    let (head, body) = response(&mut busy);
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(body, HELLO);
    let started = Instant::now();
    running.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    handle.shutdown(); // harmless after the end
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn shutdown_grace_bounds_a_stuck_request() {
    let site = Site::new("grace");
    let options = Options {
        shutdown_grace: Duration::from_millis(300),
        ..Options::default()
    };
    let running = serve(&site, Limits::default(), options);
    let mut c = connect(&running);
    c.write_all(b"GET /hello.txt HTTP/1.1\r\nHo").unwrap();
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    running.handle().shutdown();
    running.wait().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(rest(&mut c).is_empty());
}

// ----- several loops -----

/// Where inline handlers meet: each waits until `parties` are inside and the gate is open.
#[derive(Default)]
struct Gate {
    /// Handlers inside, and whether the gate is open.
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Enters and waits (at most 10 s) for `parties` handlers and an open gate; whether
    /// that happened.
    fn pass(&self, parties: usize) -> bool {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        self.changed.notify_all();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| s.0 < parties || !s.1)
            .unwrap();
        state.0 >= parties && state.1
    }

    /// Waits until `n` handlers are inside.
    fn inside(&self, n: usize) {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| s.0 < n)
            .unwrap();
        assert!(state.0 >= n, "{} of {n} handlers inside", state.0);
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// Two loops; `/meet` is an inline handler, so it holds its loop until two requests are
/// inside it at once: it answers "together", or "alone" after 10 s.
fn serve_meeting(site: &Site, gate: &Arc<Gate>) -> Running {
    let options = Options {
        loops: 2,
        ..Options::default()
    };
    let gate = Arc::clone(gate);
    serve_with(site, Limits::default(), options, move |b| {
        let meet: Handler = Arc::new(move |_: &Request, _: &mut Args| {
            let body: &[u8] = if gate.pass(2) { b"together" } else { b"alone" };
            Response::new(200, Body::Bytes(body.to_vec()))
        });
        b.route_inline(Method::Get, "/meet", None, meet);
    })
}

#[test]
fn a_second_loop_accepts_while_the_first_is_busy() {
    let site = Site::new("loops");
    let gate = Arc::new(Gate::default());
    gate.open();
    let running = serve_meeting(&site, &gate);
    let mut first = connect(&running);
    first.write_all(&get("/meet")).unwrap();
    // The first loop now runs the handler; with one loop the second request would wait
    // behind it and both would answer "alone".
    gate.inside(1);
    let mut second = connect(&running);
    second.write_all(&get("/meet")).unwrap();
    assert_eq!(response(&mut first).1, b"together");
    assert_eq!(response(&mut second).1, b"together");
    stop(running);
}

#[test]
fn shutdown_with_several_loops_finishes_the_requests_of_each() {
    let site = Site::new("loops-stop");
    let gate = Arc::new(Gate::default());
    let running = serve_meeting(&site, &gate);
    let addr = running.local_addr();
    let mut first = connect(&running);
    first.write_all(&get("/meet")).unwrap();
    gate.inside(1);
    let mut second = connect(&running);
    second.write_all(&get("/meet")).unwrap();
    gate.inside(2);
    // Both loops hold a request in flight when the stop comes.
    let handle = running.handle();
    handle.shutdown();
    gate.open();
    for client in [&mut first, &mut second] {
        assert_eq!(response(client).1, b"together");
        assert!(rest(client).is_empty(), "closed after the answer");
    }
    running.wait().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "every loop closed its listener"
    );
}

#[test]
fn the_connection_limit_holds_over_all_loops() {
    let site = Site::new("loops-full");
    let options = Options {
        loops: 3,
        max_connections: 2,
        ..Options::default()
    };
    let running = serve(&site, Limits::default(), options);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&running)).collect();
    for c in &mut held {
        c.write_all(&get("/hello.txt")).unwrap();
        response(c);
    }
    for _ in 0..4 {
        let mut extra = connect(&running);
        extra.write_all(&get("/hello.txt")).unwrap();
        let all = String::from_utf8(rest(&mut extra)).unwrap();
        assert!(all.starts_with("HTTP/1.1 503 "), "{all}");
    }
    stop(running);
}

// ----- jobs -----

/// A handler that answers `body` after 300 ms.
fn sleeper(body: &'static [u8]) -> Handler {
    Arc::new(move |_: &Request, _: &mut Args| {
        thread::sleep(Duration::from_millis(300));
        Response::new(200, Body::Bytes(body.to_vec()))
    })
}

/// `/sleep` answers "slept" after 300 ms; `/boom` panics.
fn handlers(builder: &mut ServerBuilder) {
    builder.route(Method::Get, "/sleep", None, sleeper(b"slept"));
    builder.route(
        Method::Get,
        "/boom",
        None,
        Arc::new(|_: &Request, _: &mut Args| panic!("boom")),
    );
}

#[test]
fn handlers_run_off_the_loop_and_answer_in_order() {
    let site = Site::new("jobs");
    let running = serve_with(&site, Limits::default(), Options::default(), handlers);
    let mut slow = connect(&running);
    let mut batch = get("/sleep");
    batch.extend(get("/hello.txt"));
    batch.extend(get("/boom"));
    slow.write_all(&batch).unwrap();
    thread::sleep(Duration::from_millis(50));
    // While the handler sleeps, another client is served at once.
    let started = Instant::now();
    let mut fast = connect(&running);
    fast.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut fast).1, HELLO);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "the loop is not blocked"
    );
    let (head, body) = response(&mut slow);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"slept");
    assert_eq!(response(&mut slow).1, HELLO);
    assert!(
        response(&mut slow).0.starts_with("HTTP/1.1 500 "),
        "a panic is a 500"
    );
    stop(running);
}

#[test]
fn a_job_outliving_its_connection_is_harmless() {
    let site = Site::new("orphan");
    let running = serve_with(&site, Limits::default(), Options::default(), handlers);
    for _ in 0..4 {
        let mut c = connect(&running);
        c.write_all(&get("/sleep")).unwrap();
    } // closed while the jobs run
    thread::sleep(Duration::from_millis(400));
    let mut c = connect(&running);
    c.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut c).1, HELLO);
    stop(running);
}

#[test]
fn shutdown_waits_for_a_running_handler() {
    let site = Site::new("jobstop");
    let running = serve_with(&site, Limits::default(), Options::default(), handlers);
    let mut c = connect(&running);
    c.write_all(&get("/sleep")).unwrap();
    thread::sleep(Duration::from_millis(50));
    running.handle().shutdown();
    let (head, body) = response(&mut c);
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(body, b"slept");
    running.wait().unwrap();
}

// ----- TLS -----

struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Pki {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

fn tls_connect(
    running: &Running,
    pki: &Pki,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client.clone(), name).unwrap();
    rustls::StreamOwned::new(conn, connect(running))
}

#[test]
fn tls_round_trip_with_keep_alive_and_a_big_file() {
    let site = Site::new("tls");
    let pki = pki();
    let options = Options {
        tls: Some(pki.server.clone()),
        ..Options::default()
    };
    let running = serve(&site, Limits::default(), options);
    let mut c = tls_connect(&running, &pki);
    c.write_all(&get("/hello.txt")).unwrap();
    let (head, body) = response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, HELLO);
    c.write_all(&get("/big.bin")).unwrap();
    let (_, body) = response(&mut c);
    assert!(body == big(), "TLS body differs");
    c.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(response(&mut c).1, HELLO);
    let mut tail = Vec::new();
    c.read_to_end(&mut tail).unwrap();
    assert!(tail.is_empty(), "close_notify ends the stream cleanly");
    stop(running);
}

#[test]
fn tls_pipelining_and_concurrency() {
    let site = Site::new("tlsmany");
    let pki = pki();
    let options = Options {
        tls: Some(pki.server.clone()),
        ..Options::default()
    };
    let running = serve(&site, Limits::default(), options);
    let mut clients: Vec<_> = (0..20).map(|_| tls_connect(&running, &pki)).collect();
    for c in &mut clients {
        let mut batch = get("/hello.txt");
        batch.extend(get("/nope"));
        batch.extend(get("/hello.txt"));
        c.write_all(&batch).unwrap();
    }
    for c in &mut clients {
        let statuses: Vec<String> = (0..3).map(|_| response(c).0[9..12].to_owned()).collect();
        assert_eq!(statuses, ["200", "404", "200"]);
    }
    stop(running);
}

#[test]
fn a_stalled_or_garbage_handshake_is_dropped_by_the_header_deadline() {
    let site = Site::new("tlsbad");
    let pki = pki();
    let limits = Limits {
        header_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let options = Options {
        tls: Some(pki.server.clone()),
        ..Options::default()
    };
    let running = serve(&site, limits, options);

    let started = Instant::now();
    let mut silent = connect(&running);
    let _ = rest(&mut silent);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let mut garbage = connect(&running);
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP is not answered in plain text"
    );

    // Other clients are unaffected.
    let mut good = tls_connect(&running, &pki);
    good.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut good).1, HELLO);
    stop(running);
}

#[test]
fn tls_connections_beyond_the_limit_get_503_after_the_handshake() {
    let site = Site::new("tlsfull");
    let pki = pki();
    let options = Options {
        tls: Some(pki.server.clone()),
        max_connections: 1,
        ..Options::default()
    };
    let running = serve(&site, Limits::default(), options);
    let mut held = tls_connect(&running, &pki);
    held.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut held).1, HELLO);
    for _ in 0..3 {
        let mut extra = tls_connect(&running, &pki);
        let (head, body) = response(&mut extra);
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("Connection: close") && body.is_empty());
        let mut tail = Vec::new();
        extra.read_to_end(&mut tail).unwrap();
        assert!(tail.is_empty());
    }
    drop(held);
    thread::sleep(Duration::from_millis(100));
    let mut again = tls_connect(&running, &pki);
    again.write_all(&get("/hello.txt")).unwrap();
    assert_eq!(response(&mut again).1, HELLO, "refusals do not hold a slot");
    stop(running);
}
