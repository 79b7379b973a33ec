//! `upstream`: arbitrary bytes as a proxy upstream's answer (status line, fields, chunked
//! framing, truncation, oversize), split at arbitrary points, through a whole
//! [`Connection`] proxying one request.
//!
//! Properties: no panic; the client gets exactly one well-formed HTTP/1.1 answer (the
//! upstream's re-framed, or 502/504); a body cut short only ever ends with the connection
//! closed; a connection left open has finished the exchange and reads the next request.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use quick_server_core::fs::MemoryFs;
use quick_server_core::{Connection, PeerInfo, Server, Transmit};

/// The requests the client sends, chosen by the first byte.
const REQUESTS: [(&[u8], bool); 4] = [
    (b"GET /px/a?q=1 HTTP/1.1\r\nHost: f\r\n\r\n", false),
    (b"HEAD /px/a HTTP/1.1\r\nHost: f\r\n\r\n", true),
    (
        b"POST /px/a HTTP/1.1\r\nHost: f\r\nContent-Length: 3\r\n\r\nabc",
        false,
    ),
    (
        b"GET /px/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        false,
    ),
];

/// The first byte picks the request (bits 0-1), whether the upstream then closes (bit 2)
/// or the exchange times out (bit 3); the second seeds the split points; the rest is the
/// upstream's answer.
pub fn check(data: &[u8]) {
    let [selector, seed, answer @ ..] = data else {
        return;
    };
    let (request, head_only) = REQUESTS[usize::from(selector & 3)];
    let (server, now) = server();
    let mut conn = Connection::new(Arc::clone(server), PeerInfo::default(), now);
    assert_eq!(conn.feed(request, now), request.len());
    let mut wire = Vec::new();
    {
        let mut upstream = conn.upstream().expect("the request is proxied");
        assert!(upstream.poll_release().is_none());
        upstream.poll_connect().expect("a connect");
        upstream.connected(now);
        while let Some(bytes) = upstream.transmit() {
            let n = bytes.len();
            upstream.transmitted(n, now);
        }
    }
    let mut rng = u64::from(*seed) | 1;
    let mut rest = answer;
    while !rest.is_empty() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let piece = 1 + (rng % 300) as usize;
        let Some(mut upstream) = conn.upstream() else {
            break;
        };
        let buf = upstream.read_buf();
        let n = buf.len().min(piece).min(rest.len());
        if n == 0 {
            break; // the answer ended, or the client takes no more for now
        }
        buf[..n].copy_from_slice(&rest[..n]);
        upstream.commit(n, now);
        rest = &rest[n..];
        drain(&mut conn, &mut wire, now);
    }
    if selector & 8 != 0 {
        if let Some(deadline) = conn.poll_timeout() {
            conn.handle_timeout(deadline);
        }
    } else if let Some(mut upstream) = conn.upstream() {
        upstream.read_eof(now);
    }
    drain(&mut conn, &mut wire, now);
    if let Some(mut upstream) = conn.upstream() {
        assert!(upstream.poll_release().is_some(), "the exchange ended");
    }
    assert!(conn.upstream().is_none(), "nothing left upstream");
    let complete = one_answer(&wire, head_only);
    assert!(
        complete || conn.is_closed(),
        "a cut answer must end with a close: {:?}",
        String::from_utf8_lossy(&wire)
    );
    if !conn.is_closed() {
        assert!(
            conn.wants_read(),
            "an open connection reads the next request"
        );
    }
}

/// One server for every input, proxying `/px/`, and its wall-clock anchor.
fn server() -> (&'static Arc<Server>, Instant) {
    static SERVER: OnceLock<(Arc<Server>, Instant)> = OnceLock::new();
    let (server, start) = SERVER.get_or_init(|| {
        let start = Instant::now();
        let fs = Arc::new(MemoryFs::new());
        let mut builder = Server::builder_with_fs((start, SystemTime::UNIX_EPOCH), fs);
        if let Err(e) = builder.bind_proxy("/px/", "http://up.test:9/base") {
            panic!("binding /px/ failed: {e}");
        }
        (builder.build(), start)
    });
    (server, *start)
}

/// Moves everything the connection transmits into `wire`.
fn drain(conn: &mut Connection, wire: &mut Vec<u8>, now: Instant) {
    while let Some(transmit) = conn.poll_transmit() {
        let Transmit::Bytes(bytes) = transmit else {
            panic!("a proxied answer is bytes, not a file region");
        };
        wire.extend_from_slice(bytes);
        let n = bytes.len();
        conn.transmitted(n, now);
    }
}

/// Checks that `wire` is one HTTP/1.1 answer and nothing more; returns whether its body
/// is complete (false: cut short).
fn one_answer(wire: &[u8], head_only: bool) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut response = httparse::Response::new(&mut fields);
    let head_len = match response.parse(wire) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "not one well-formed answer ({other:?}): {:?}",
            String::from_utf8_lossy(wire)
        ),
    };
    assert_eq!(response.version, Some(1), "HTTP/1.1");
    let status = response.code.unwrap_or_default();
    assert!((200..600).contains(&status), "a final status: {status}");
    let field = |name: &str| {
        let mut values = response
            .headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| String::from_utf8_lossy(f.value).into_owned());
        let first = values.next();
        assert!(values.next().is_none(), "{name} twice");
        first
    };
    let chunked = field("transfer-encoding");
    let length = field("content-length");
    let close = field("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
    assert!(field("server").is_some(), "our Server field");
    let body = &wire[head_len..];
    if head_only || status == 204 || status == 304 {
        assert!(body.is_empty(), "no body after a {status} head");
        return true;
    }
    match (chunked, length) {
        (Some(te), None) => {
            assert!(te.eq_ignore_ascii_case("chunked"), "{te}");
            chunked_complete(body)
        }
        (None, Some(length)) => {
            let length: usize = length.parse().expect("a numeric Content-Length");
            assert!(body.len() <= length, "more body than announced");
            body.len() == length
        }
        (None, None) => {
            assert!(close, "a close-delimited body needs Connection: close");
            true
        }
        (Some(_), Some(_)) => panic!("both Transfer-Encoding and Content-Length"),
    }
}

/// Whether `body` is a complete chunked body with nothing after it (a prefix of one is
/// allowed, and reported as incomplete).
fn chunked_complete(mut body: &[u8]) -> bool {
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = std::str::from_utf8(&body[..eol]).expect("an ASCII chunk-size line");
        let size = usize::from_str_radix(line, 16).expect("a hex chunk size");
        body = &body[eol + 2..];
        if size == 0 {
            if body.is_empty() {
                return false;
            }
            assert_eq!(body, b"\r\n", "nothing after the last chunk");
            return true;
        }
        if body.len() < size + 2 {
            return false;
        }
        assert_eq!(&body[size..size + 2], b"\r\n", "chunk data ends with CRLF");
        body = &body[size + 2..];
    }
}
