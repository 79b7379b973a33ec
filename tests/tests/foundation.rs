//! Issue 2 over both transports, plain and TLS: files, HTTP/1.1 framing rules, limits,
//! deadlines, keep-alive, graceful shutdown and overload, all with raw bytes.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use quick_server_core::Limits;
use quick_server_tests::{
    each_setup, fnv1a64, pseudo_random_bytes, Setup, TempDir, TestServer, Tuning,
};

const HELLO: &str = "hello, world\n";
const OTHER: &str = "another file\n";
/// Short deadlines for the timeout tests, and how much later than a deadline a close
/// may come on a loaded machine.
const SHORT: Duration = Duration::from_millis(300);
const SLACK: Duration = Duration::from_secs(3);

/// A server of a folder with two small files. The server stops before the folder goes.
struct Site {
    server: TestServer,
    dir: TempDir,
}

fn site(setup: Setup) -> Site {
    site_with(setup, Limits::default(), Tuning::default())
}

fn site_with(setup: Setup, limits: Limits, tuning: Tuning) -> Site {
    let dir = TempDir::new();
    dir.write("hello.txt", HELLO);
    dir.write("other.txt", OTHER);
    let root = dir.path().to_owned();
    let server = TestServer::start_tuned(setup, tuning, move |mut builder| {
        builder
            .files()
            .bind_path("/", root)
            .expect("bind the folder");
        builder.limits(limits);
        builder
    });
    Site { server, dir }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

#[test]
fn serves_a_file_with_its_headers() {
    each_setup(|setup| {
        let site = site(setup);
        let response = site.server.connect().request(&get("/hello.txt"));
        assert_eq!(
            (
                response.version.as_str(),
                response.status,
                response.reason.as_str()
            ),
            ("HTTP/1.1", 200, "OK")
        );
        assert_eq!(response.text(), HELLO);
        assert_eq!(
            response.header("content-length"),
            Some(HELLO.len().to_string().as_str())
        );
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{response:?}"
        );
        assert!(response
            .header("server")
            .is_some_and(|s| s.starts_with("QuickServer/")));
        assert!(response.header("date").is_some_and(|d| d.ends_with(" GMT")));
        assert!(!response.closes());
    });
}

#[test]
fn missing_file_is_a_404_page_and_keeps_the_connection() {
    each_setup(|setup| {
        let site = site(setup);
        let mut client = site.server.connect();
        let response = client.request(&get("/missing.txt"));
        assert_eq!(response.status, 404);
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));
        assert!(
            response.text().contains("Error code: 404"),
            "{}",
            response.text()
        );
        assert!(!response.closes());
        assert_eq!(client.request(&get("/hello.txt")).text(), HELLO);
    });
}

#[test]
fn head_sends_the_headers_without_the_body() {
    each_setup(|setup| {
        let site = site(setup);
        let mut client = site.server.connect();
        client
            .send(b"HEAD /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let head = client.read_head_response().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(HELLO.len().to_string().as_str())
        );
        assert!(head.body.is_empty());
        // No stray body bytes: the next response starts right away.
        let response = client.request(&get("/other.txt"));
        assert_eq!((response.status, response.text().as_str()), (200, OTHER));
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    each_setup(|setup| {
        let site = site(setup);
        let mut wire = get("/hello.txt");
        wire.extend(get("/missing"));
        wire.extend(get("/other.txt"));
        let responses = site.server.send_raw(&wire);
        let got: Vec<_> = responses.iter().map(|r| r.status).collect();
        assert_eq!(got, [200, 404, 200]);
        assert_eq!(
            (responses[0].text(), responses[2].text()),
            (HELLO.to_owned(), OTHER.to_owned())
        );
    });
}

#[test]
fn http11_keeps_the_connection_alive() {
    each_setup(|setup| {
        let site = site(setup);
        let mut client = site.server.connect();
        for _ in 0..3 {
            let response = client.request(&get("/hello.txt"));
            assert_eq!(response.status, 200);
            assert!(!response.closes());
        }
        assert!(!client.closes_within(Duration::from_millis(100)));
    });
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    each_setup(|setup| {
        let site = site(setup);
        let mut client = site.server.connect();
        let response = client.request(b"GET /hello.txt HTTP/1.0\r\n\r\n");
        assert_eq!((response.status, response.text().as_str()), (200, HELLO));
        assert!(response.closes());
        assert!(client.closes_within(SLACK));

        let mut client = site.server.connect();
        let keep = b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        for round in 0..3 {
            let response = client.request(keep);
            assert_eq!((response.status, response.text().as_str()), (200, HELLO));
            // A 1.0 client is told the connection persists, or it waits for a close.
            assert_eq!(response.header("connection"), Some("keep-alive"), "{round}");
        }
        let missing = client.request(b"GET /nope HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(missing.status, 404);
        assert_eq!(missing.header("connection"), Some("keep-alive"));
        let last = client.request(b"GET /hello.txt HTTP/1.0\r\n\r\n");
        assert_eq!(last.header("connection"), Some("close"));
        assert!(client.closes_within(SLACK));
    });
}

/// `ab` (Debian's `apache2-utils`) speaks HTTP/1.0 and, with `-k`, waits for each answer's
/// end by its length only when told `Connection: keep-alive`: without the field it hangs
/// until its timeout. Bounded: 200 requests, a 10 s socket timeout, killed after 60 s.
#[test]
fn apache_bench_keep_alive_completes() {
    const AB: &str = "/usr/bin/ab";
    if !std::path::Path::new(AB).exists() {
        println!("skipped: {AB} is not installed (apt-get install apache2-utils)");
        return;
    }
    each_setup(|setup| {
        let site = site(setup);
        let scheme = if setup.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}/hello.txt", site.server.addr());
        let mut child = std::process::Command::new(AB)
            .args(["-k", "-n", "200", "-c", "4", "-s", "10", "-q", &url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ab");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait for ab").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{setup}: ab did not finish within 60 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("ab output");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{setup}: {report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let count = |label: &str| {
            report
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .map(|v| v.trim().to_owned())
        };
        assert_eq!(
            count("Complete requests:").as_deref(),
            Some("200"),
            "{report}"
        );
        assert_eq!(count("Failed requests:").as_deref(), Some("0"), "{report}");
        assert_eq!(
            count("Keep-Alive requests:").as_deref(),
            Some("200"),
            "{report}"
        );
    });
}

#[test]
fn connection_close_closes_after_the_response() {
    each_setup(|setup| {
        let site = site(setup);
        let mut client = site.server.connect();
        let response =
            client.request(b"GET /hello.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!((response.status, response.text().as_str()), (200, HELLO));
        assert!(response.closes());
        assert!(client.closes_within(SLACK));
    });
}

/// Sends `request` and expects `status`, `Connection: close` and the close itself.
fn assert_refused(limits: Limits, request: &[u8], status: u16) {
    each_setup(|setup| {
        let site = site_with(setup, limits.clone(), Tuning::default());
        let mut client = site.server.connect();
        let response = client.request(request);
        assert_eq!(response.status, status, "{}", response.text());
        assert!(response.closes(), "the response announces the close");
        assert!(client.closes_within(SLACK), "the connection closes");
    });
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_close() {
    assert_refused(
        Limits::default(),
        b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn transfer_encoding_on_http10_is_400() {
    assert_refused(
        Limits::default(),
        b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn bare_lf_is_400() {
    assert_refused(
        Limits::default(),
        b"GET /hello.txt HTTP/1.1\nHost: test\n\n",
        400,
    );
}

#[test]
fn obs_fold_is_400() {
    assert_refused(
        Limits::default(),
        b"GET /hello.txt HTTP/1.1\r\nHost: test\r\nX-A: one\r\n  two\r\n\r\n",
        400,
    );
}

#[test]
fn missing_host_on_http11_is_400() {
    assert_refused(Limits::default(), b"GET /hello.txt HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn differing_duplicate_content_length_is_400() {
    assert_refused(
        Limits::default(),
        b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    );
}

#[test]
fn chunked_body_is_consumed_then_the_next_request_is_served() {
    each_setup(|setup| {
        let site = site(setup);
        let wire = b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;note=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n\
            GET /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n";
        let responses = site.server.send_raw(wire);
        let got: Vec<_> = responses.iter().map(|r| r.status).collect();
        assert_eq!(
            got,
            [404, 200],
            "POST has no route here; the GET after it is intact"
        );
        assert_eq!(responses[1].text(), HELLO);
    });
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    each_setup(|setup| {
        let site = site(setup);
        let mut client = site.server.connect();
        let interim = client.request(
            b"POST /x HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!((interim.status, interim.reason.as_str()), (100, "Continue"));
        let response = client.request(b"hello");
        assert_eq!(response.status, 404);
        assert_eq!(client.request(&get("/hello.txt")).text(), HELLO);
    });
}

fn small_limits() -> Limits {
    Limits {
        max_request_line: 256,
        max_head_size: 1024,
        max_headers: 10,
        max_body_size: 16,
        ..Limits::default()
    }
}

#[test]
fn long_request_line_is_414() {
    let request = format!("GET /{} HTTP/1.1\r\nHost: test\r\n\r\n", "a".repeat(300));
    assert_refused(small_limits(), request.as_bytes(), 414);
}

#[test]
fn large_head_is_431() {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1100)
    );
    assert_refused(small_limits(), request.as_bytes(), 431);
}

#[test]
fn too_many_headers_is_431() {
    let fields: String = (0..12).map(|i| format!("X-{i}: v\r\n")).collect();
    let request = format!("GET / HTTP/1.1\r\nHost: test\r\n{fields}\r\n");
    assert_refused(small_limits(), request.as_bytes(), 431);
}

#[test]
fn content_length_over_the_body_limit_is_413() {
    assert_refused(
        small_limits(),
        b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 17\r\n\r\n",
        413,
    );
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let request = b"POST /x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n";
    assert_refused(small_limits(), request, 413);
}

#[test]
fn slow_head_gets_408_and_close() {
    each_setup(|setup| {
        let limits = Limits {
            header_timeout: SHORT,
            ..Limits::default()
        };
        let site = site_with(setup, limits, Tuning::default());
        let mut client = site.server.connect();
        let started = Instant::now();
        let response = client.request(b"GET /hello.txt HTTP/1.1\r\nHost: te");
        let waited = started.elapsed();
        assert_eq!(response.status, 408);
        assert!(response.closes());
        assert!(
            waited >= SHORT - Duration::from_millis(50) && waited < SLACK,
            "{waited:?}"
        );
        assert!(client.closes_within(SLACK));
    });
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    each_setup(|setup| {
        let limits = Limits {
            idle_timeout: SHORT,
            ..Limits::default()
        };
        let site = site_with(setup, limits, Tuning::default());
        let mut client = site.server.connect();
        assert_eq!(client.request(&get("/hello.txt")).status, 200);
        let started = Instant::now();
        assert!(client.closes_within(SLACK), "closed without a response");
        let waited = started.elapsed();
        assert!(waited >= SHORT - Duration::from_millis(50), "{waited:?}");
    });
}

#[test]
fn stalled_body_gets_408() {
    each_setup(|setup| {
        let limits = Limits {
            body_timeout: SHORT,
            ..Limits::default()
        };
        let site = site_with(setup, limits, Tuning::default());
        let mut client = site.server.connect();
        let response =
            client.request(b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(response.status, 408);
        assert!(response.closes());
        assert!(client.closes_within(SLACK));
    });
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight() {
    each_setup(|setup| {
        let Site { server, dir: _dir } = site(setup);
        let addr = server.addr();
        let mut idle = server.connect();
        assert_eq!(idle.request(&get("/hello.txt")).status, 200);
        let mut busy = server.connect();
        busy.send(b"GET /hello.txt HTTP/1.1\r\nHost: test\r\n")
            .unwrap();
        thread::sleep(Duration::from_millis(200)); // the server has read the partial head

        server.stopper().shutdown();
        assert!(
            idle.closes_within(SLACK),
            "an idle connection closes at once"
        );
        let deadline = Instant::now() + SLACK;
        while TcpStream::connect(addr).is_ok() {
            assert!(
                Instant::now() < deadline,
                "new connections are still accepted"
            );
            thread::sleep(Duration::from_millis(20));
        }

        busy.send(b"\r\n").unwrap();
        let response = busy.response();
        assert_eq!((response.status, response.text().as_str()), (200, HELLO));
        assert!(response.closes(), "the last response announces the close");
        assert!(busy.closes_within(SLACK));
        // Clients that close promptly end the server's lingering close at once.
        drop((idle, busy));
        let took = server.stop().expect("the transport stops cleanly");
        assert!(
            took < Duration::from_secs(1),
            "nothing left to wait for: {took:?}"
        );
    });
}

#[test]
fn twenty_mebibyte_file_arrives_intact() {
    each_setup(|setup| {
        let site = site(setup);
        let contents = pseudo_random_bytes(20 << 20, 2024);
        site.dir.write("big.bin", &contents);
        let mut client = site.server.connect();
        let response = client.request(&get("/big.bin"));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-length"),
            Some((20u64 << 20).to_string().as_str())
        );
        assert_eq!(response.body.len(), contents.len());
        assert_eq!(fnv1a64(&response.body), fnv1a64(&contents));
        // The connection is still usable after the large body.
        assert_eq!(client.request(&get("/hello.txt")).text(), HELLO);
    });
}

#[test]
fn last_response_survives_unread_bytes_behind_it() {
    each_setup(|setup| {
        let site = site(setup);
        let contents = pseudo_random_bytes(4 << 20, 7);
        site.dir.write("four.bin", &contents);
        let mut wire =
            b"GET /four.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".to_vec();
        // Bytes the server never reads: closing on them unread would reset the connection
        // and drop what is still in the send buffer.
        wire.extend(std::iter::repeat_n(b'x', 32 * 1024));
        let mut client = site.server.connect();
        client.send(&wire).unwrap();
        thread::sleep(Duration::from_millis(300)); // the server is done writing and closes
        let response = client.response();
        assert_eq!(response.status, 200);
        assert_eq!(
            fnv1a64(&response.body),
            fnv1a64(&contents),
            "{} bytes",
            response.body.len()
        );
        assert!(client.closes_within(SLACK));
    });
}

#[test]
fn connections_over_the_limit_get_503() {
    each_setup(|setup| {
        let tuning = Tuning {
            threads: Some(1),
            max_connections: Some(2),
            ..Tuning::default()
        };
        let site = site_with(setup, Limits::default(), tuning);
        let mut first = site.server.connect();
        assert_eq!(first.request(&get("/hello.txt")).status, 200);
        let mut second = site.server.connect();
        let mut third = site.server.connect();
        let response = third.response();
        assert_eq!(response.status, 503);
        assert!(response.closes());
        assert!(third.closes_within(SLACK));
        // Capacity comes back when a connection ends.
        drop(first);
        assert_eq!(second.request(&get("/hello.txt")).text(), HELLO);
    });
}
