//! Issue 6, HTTPS part, on both transports: ALPN, and handshakes that stall or are not
//! TLS at all are bounded by the header deadline and cost other clients nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use quick_server_core::Limits;
use quick_server_tests::{each_tls_setup, Setup, TempDir, TestServer, Tuning};

const SLACK: Duration = Duration::from_secs(3);

fn server(setup: Setup, header_timeout: Duration) -> (TestServer, TempDir) {
    let dir = TempDir::new();
    dir.write("a.txt", "secret\n");
    let root = dir.path().to_owned();
    let server = TestServer::start_tuned(setup, Tuning::default(), move |mut builder| {
        builder
            .files()
            .bind_path("/", root)
            .expect("bind the folder");
        builder.limits(Limits {
            header_timeout,
            ..Limits::default()
        });
        builder
    });
    (server, dir)
}

/// Reads until the server closes; how long that took.
fn time_to_close(socket: &mut TcpStream) -> Duration {
    let started = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = [0; 4096];
    loop {
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn serves_over_tls_with_alpn_http11() {
    each_tls_setup(|setup| {
        let (server, _dir) = server(setup, Duration::from_secs(10));
        let mut client = server.connect();
        let response = client.request(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "secret\n")
        );
        assert_eq!(client.alpn().as_deref(), Some(&b"http/1.1"[..]));
    });
}

#[test]
fn stalled_handshake_is_closed_at_the_header_deadline() {
    each_tls_setup(|setup| {
        let deadline = Duration::from_millis(300);
        let (server, _dir) = server(setup, deadline);
        let mut silent = TcpStream::connect(server.addr()).unwrap();
        let waited = time_to_close(&mut silent);
        assert!(
            waited >= deadline - Duration::from_millis(50) && waited < SLACK,
            "{waited:?}"
        );
    });
}

#[test]
fn plaintext_sent_to_tls_is_closed_quickly() {
    each_tls_setup(|setup| {
        let (server, _dir) = server(setup, Duration::from_secs(10));
        let mut confused = TcpStream::connect(server.addr()).unwrap();
        confused
            .write_all(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let waited = time_to_close(&mut confused);
        assert!(waited < SLACK, "{waited:?}");
    });
}

#[test]
fn a_stalled_handshake_does_not_hold_up_other_clients() {
    each_tls_setup(|setup| {
        let (server, _dir) = server(setup, Duration::from_secs(5));
        let _silent: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(server.addr()).unwrap())
            .collect();
        let started = Instant::now();
        let response = server
            .connect()
            .request(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(response.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    });
}
