//! One proxied request as a sans-IO HTTP/1.1 client exchange: the request head and body
//! framed for the upstream, the upstream's answer parsed and re-framed for the client.

use crate::http::chunked::ChunkedDecoder;
use crate::http::head::{Framing, Method, RequestHead, Version};
use crate::limits::Limits;

use super::route::ProxyRoute;

/// Largest upstream response head accepted (502 beyond it).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most fields in an upstream response head.
const MAX_RESPONSE_FIELDS: usize = 128;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Why an exchange failed; each maps to the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyFailure {
    /// The upstream could not be reached or closed early: 502.
    Unreachable,
    /// The upstream answered something that is not HTTP/1.x: 502.
    Malformed,
    /// The upstream did not answer in time: 504.
    Timeout,
}

impl ProxyFailure {
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::Unreachable | Self::Malformed => 502,
            Self::Timeout => 504,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Unreachable => "Bad Gateway (upstream unreachable or closed early)",
            Self::Malformed => "Bad Gateway (malformed upstream response)",
            Self::Timeout => "Gateway Timeout",
        }
    }
}

/// Where the upstream tells us to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// How the upstream response body ends.
#[derive(Debug)]
enum UpstreamBody {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// The response side of the exchange.
#[derive(Debug)]
enum Phase {
    /// Collecting the response head.
    Head,
    /// Relaying the body; `chunked_out` re-frames it as chunked for the client.
    Body {
        body: UpstreamBody,
        chunked_out: bool,
    },
    /// The response has been relayed completely.
    Done,
}

/// What the client gets from the upstream, as the connection should queue it.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    /// Bytes for the client (a response head, body pieces).
    pub(crate) bytes: Vec<u8>,
    /// Status and upstream length, once the head was relayed (for the request log).
    pub(crate) head: Option<(u16, Option<u64>)>,
    /// The client connection must close after this response.
    pub(crate) close: bool,
    /// The response is complete.
    pub(crate) done: bool,
}

/// A proxied request in flight.
#[derive(Debug)]
pub(crate) struct Exchange {
    connect: Option<Connect>,
    pub(crate) connected: bool,
    to_upstream: Vec<u8>,
    sent: usize,
    chunked_request: bool,
    request_done: bool,
    response_buf: Vec<u8>,
    phase: Phase,
    head_only: bool,
    client_keep_alive: bool,
    client_http10: bool,
}

impl Exchange {
    /// Starts an exchange for `head` forwarded to `route` at `target`.
    pub(crate) fn new(
        route: &ProxyRoute,
        target: &str,
        head: &RequestHead,
        peer: &str,
        secure: bool,
    ) -> Self {
        let mut out = Vec::with_capacity(512);
        let method = head.method_str();
        out.extend_from_slice(
            format!(
                "{method} {target} HTTP/1.1\r\nHost: {}\r\n",
                route.authority()
            )
            .as_bytes(),
        );
        let listed: Vec<String> = head
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut forwarded_for = None;
        for (name, value) in head.fields() {
            let lower = name.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str())
                || listed.contains(&lower)
                || matches!(lower.as_str(), "host" | "content-length" | "expect")
            {
                continue;
            }
            if lower == "x-forwarded-for" {
                forwarded_for = Some(String::from_utf8_lossy(value).into_owned());
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        let client_ip = peer
            .rsplit_once(':')
            .map_or(peer, |(ip, _)| ip)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let xff = match forwarded_for {
            Some(prev) => format!("{prev}, {client_ip}"),
            None => client_ip.to_owned(),
        };
        out.extend_from_slice(format!("X-Forwarded-For: {xff}\r\n").as_bytes());
        out.extend_from_slice(
            format!(
                "X-Forwarded-Proto: {}\r\n",
                if secure { "https" } else { "http" }
            )
            .as_bytes(),
        );
        if let Some(host) = head.field_str("host") {
            out.extend_from_slice(format!("X-Forwarded-Host: {host}\r\n").as_bytes());
        }
        let (chunked_request, request_done) = match head.framing() {
            Framing::Chunked => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                (true, false)
            }
            Framing::Length(0) => (false, true),
            Framing::Length(n) => {
                out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
                (false, false)
            }
        };
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        Self {
            connect: Some(Connect {
                host: route.host().to_owned(),
                port: route.port(),
            }),
            connected: false,
            to_upstream: out,
            sent: 0,
            chunked_request,
            request_done,
            response_buf: Vec::new(),
            phase: Phase::Head,
            head_only: head.method() == Method::Head,
            client_keep_alive: head.keep_alive(),
            client_http10: head.version() == Version::Http10,
        }
    }

    /// The connection the transport must open (given once).
    pub(crate) fn take_connect(&mut self) -> Option<Connect> {
        self.connect.take()
    }

    /// Frames a piece of the client's request body for the upstream.
    pub(crate) fn push_body(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.chunked_request {
            self.to_upstream
                .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            self.to_upstream.extend_from_slice(data);
            self.to_upstream.extend_from_slice(b"\r\n");
        } else {
            self.to_upstream.extend_from_slice(data);
        }
    }

    /// The client's body is complete.
    pub(crate) fn finish_body(&mut self) {
        if self.chunked_request && !self.request_done {
            self.to_upstream.extend_from_slice(b"0\r\n\r\n");
        }
        self.request_done = true;
    }

    /// Whether the client's request body has been fully forwarded into the buffer.
    pub(crate) fn request_done(&self) -> bool {
        self.request_done
    }

    /// Bytes waiting for the upstream socket.
    pub(crate) fn pending(&self) -> usize {
        self.to_upstream.len() - self.sent
    }

    /// What to write to the upstream next.
    pub(crate) fn transmit(&self) -> Option<&[u8]> {
        (self.connected && self.pending() > 0).then(|| &self.to_upstream[self.sent..])
    }

    /// `n` bytes of [`transmit`](Self::transmit) were written.
    pub(crate) fn transmitted(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.to_upstream.len());
        if self.sent == self.to_upstream.len() {
            self.to_upstream.clear();
            self.sent = 0;
        }
    }

    /// Whether the upstream's answer is still expected.
    pub(crate) fn awaiting_head(&self) -> bool {
        matches!(self.phase, Phase::Head)
    }

    /// Takes bytes from the upstream and turns them into client bytes.
    pub(crate) fn receive(
        &mut self,
        data: &[u8],
        server: &str,
        date: &[u8],
        limits: &Limits,
    ) -> Result<Relayed, ProxyFailure> {
        let mut relayed = Relayed::default();
        let rest;
        let data = if matches!(self.phase, Phase::Head) {
            self.response_buf.extend_from_slice(data);
            let Some(consumed) = self.parse_head(server, date, &mut relayed)? else {
                if self.response_buf.len() > MAX_RESPONSE_HEAD {
                    return Err(ProxyFailure::Malformed);
                }
                return Ok(relayed);
            };
            rest = self.response_buf.split_off(consumed);
            self.response_buf = Vec::new();
            &rest[..]
        } else {
            data
        };
        self.relay_into(data, limits, &mut relayed)?;
        relayed.done = matches!(self.phase, Phase::Done);
        Ok(relayed)
    }

    /// Decodes body bytes into `relayed`; bytes after the end of the body are dropped (the
    /// upstream connection is not reused).
    fn relay_into(
        &mut self,
        data: &[u8],
        limits: &Limits,
        relayed: &mut Relayed,
    ) -> Result<(), ProxyFailure> {
        let head_only = self.head_only;
        let Phase::Body { body, chunked_out } = &mut self.phase else {
            return Ok(());
        };
        let chunked_out = *chunked_out;
        let emit = |piece: &[u8], out: &mut Vec<u8>| {
            if piece.is_empty() || head_only {
                return;
            }
            if chunked_out {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(piece);
            }
        };
        let done = match body {
            UpstreamBody::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                emit(&data[..take], &mut relayed.bytes);
                *left -= take as u64;
                *left == 0
            }
            UpstreamBody::UntilClose => {
                emit(data, &mut relayed.bytes);
                false
            }
            UpstreamBody::Chunked(decoder) => {
                let mut used = 0;
                while used < data.len() && !decoder.is_done() {
                    let step = decoder
                        .step(&data[used..], limits)
                        .map_err(|_| ProxyFailure::Malformed)?;
                    emit(step.data, &mut relayed.bytes);
                    used += step.consumed;
                    if step.consumed == 0 {
                        break;
                    }
                }
                decoder.is_done()
            }
        };
        if done {
            if chunked_out && !head_only {
                relayed.bytes.extend_from_slice(b"0\r\n\r\n");
            }
            self.phase = Phase::Done;
        }
        Ok(())
    }

    /// The upstream closed its side: ends a close-delimited body, else fails.
    pub(crate) fn eof(&mut self) -> Result<Relayed, ProxyFailure> {
        match &self.phase {
            Phase::Body {
                body: UpstreamBody::UntilClose,
                chunked_out,
            } => {
                let mut relayed = Relayed {
                    done: true,
                    ..Relayed::default()
                };
                if *chunked_out && !self.head_only {
                    relayed.bytes.extend_from_slice(b"0\r\n\r\n");
                }
                self.phase = Phase::Done;
                Ok(relayed)
            }
            Phase::Done => Ok(Relayed {
                done: true,
                ..Relayed::default()
            }),
            _ => Err(ProxyFailure::Unreachable),
        }
    }

    /// Parses the upstream head once complete; writes the client's head into `relayed`.
    fn parse_head(
        &mut self,
        server: &str,
        date: &[u8],
        relayed: &mut Relayed,
    ) -> Result<Option<usize>, ProxyFailure> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
            let mut response = httparse::Response::new(&mut fields);
            let consumed = match response.parse(&self.response_buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(ProxyFailure::Malformed),
            };
            let status = response.code.ok_or(ProxyFailure::Malformed)?;
            if (100..200).contains(&status) {
                // Interim answers are not relayed; the final one follows.
                self.response_buf.drain(..consumed);
                continue;
            }
            let mut length = None;
            let mut chunked = false;
            for field in response.headers.iter() {
                if field.name.eq_ignore_ascii_case("content-length") {
                    let text =
                        std::str::from_utf8(field.value).map_err(|_| ProxyFailure::Malformed)?;
                    let n: u64 = text.trim().parse().map_err(|_| ProxyFailure::Malformed)?;
                    if length.is_some_and(|prev| prev != n) {
                        return Err(ProxyFailure::Malformed);
                    }
                    length = Some(n);
                } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = true;
                }
            }
            let no_body = self.head_only || status == 204 || status == 304;
            let body = if no_body {
                None
            } else if chunked {
                Some(UpstreamBody::Chunked(ChunkedDecoder::default()))
            } else if let Some(n) = length {
                (n > 0).then_some(UpstreamBody::Length(n))
            } else {
                Some(UpstreamBody::UntilClose)
            };
            // To the client: keep the upstream's length; otherwise chunked for 1.1 clients,
            // close-delimited for 1.0 clients.
            let chunked_out = body.is_some() && length.is_none() && !self.client_http10;
            let close_delimited = body.is_some() && length.is_none() && self.client_http10;
            relayed.close = close_delimited || !self.client_keep_alive || !self.request_done;
            let out = &mut relayed.bytes;
            let reason = response
                .reason
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| crate::http::response::reason_phrase(status));
            out.extend_from_slice(
                format!("HTTP/1.1 {status} {reason}\r\nServer: {server}\r\nDate: ").as_bytes(),
            );
            out.extend_from_slice(date);
            out.extend_from_slice(b"\r\n");
            for field in response.headers.iter() {
                let lower = field.name.to_ascii_lowercase();
                if HOP_BY_HOP.contains(&lower.as_str())
                    || matches!(lower.as_str(), "server" | "date" | "content-length")
                {
                    continue;
                }
                out.extend_from_slice(field.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(field.value);
                out.extend_from_slice(b"\r\n");
            }
            if let Some(n) = length {
                if status != 304 && status != 204 {
                    out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
                }
            } else if chunked_out {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            } else if body.is_none() && status != 304 && status != 204 {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
            if relayed.close {
                out.extend_from_slice(b"Connection: close\r\n");
            } else if self.client_http10 {
                // A 1.0 client waits for a close unless told the connection persists.
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
            out.extend_from_slice(b"\r\n");
            relayed.head = Some((status, length));
            self.phase = match body {
                Some(body) => Phase::Body { body, chunked_out },
                None => Phase::Done,
            };
            return Ok(Some(consumed));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    use crate::conn::{Connection, PeerInfo, Transmit};
    use crate::fs::MemoryFs;
    use crate::server::Server;

    fn conn() -> (Connection, Instant) {
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder
            .bind_proxy("/px/", "http://up.test:9000/base")
            .unwrap();
        let peer = PeerInfo {
            addr: "10.0.0.7:5555".into(),
            secure: false,
        };
        (Connection::new(builder.build(), peer, now), now)
    }

    fn client_output(conn: &mut Connection, now: Instant) -> String {
        let mut wire = Vec::new();
        while let Some(Transmit::Bytes(b)) = conn.poll_transmit() {
            wire.extend_from_slice(b);
            let n = b.len();
            conn.transmitted(n, now);
        }
        String::from_utf8_lossy(&wire).into_owned()
    }

    fn upstream_output(conn: &mut Connection, now: Instant) -> String {
        let mut wire = Vec::new();
        while let Some(b) = conn.upstream_transmit() {
            wire.extend_from_slice(b);
            let n = b.len();
            conn.upstream_transmitted(n, now);
        }
        String::from_utf8_lossy(&wire).into_owned()
    }

    fn upstream_send(conn: &mut Connection, data: &[u8], now: Instant) {
        for piece in data.chunks(7) {
            let buf = conn.upstream_read_buf();
            if buf.is_empty() {
                return; // the exchange ended
            }
            buf[..piece.len()].copy_from_slice(piece);
            conn.upstream_commit(piece.len(), now);
        }
    }

    #[test]
    fn forwards_a_get_and_relays_a_sized_answer() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/a/b?x=1 HTTP/1.1\r\nHost: front\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nCookie: c=1\r\n\r\n", now);
        let connect = c.poll_connect().expect("connect action");
        assert_eq!((connect.host.as_str(), connect.port), ("up.test", 9000));
        assert!(c.poll_connect().is_none(), "asked once");
        assert!(c.upstream_transmit().is_none(), "nothing before connected");
        c.upstream_connected(now);
        let sent = upstream_output(&mut c, now);
        assert!(
            sent.starts_with("GET /base/a/b?x=1 HTTP/1.1\r\nHost: up.test:9000\r\n"),
            "{sent}"
        );
        assert!(
            sent.contains("Cookie: c=1\r\n")
                && !sent.contains("X-Hop")
                && !sent.contains("keep-alive")
        );
        assert!(sent.contains(
            "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: front\r\n"
        ));
        assert!(sent.ends_with("Connection: close\r\n\r\n"));
        upstream_send(
            &mut c,
            b"HTTP/1.1 201 Made\r\nServer: up\r\nContent-Length: 5\r\nX-Up: y\r\n\r\nhello",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.starts_with("HTTP/1.1 201 Made\r\nServer: QuickServer/"),
            "{wire}"
        );
        assert!(
            wire.contains("X-Up: y\r\nContent-Length: 5\r\n\r\nhello")
                && !wire.contains("Server: up")
        );
        assert!(!c.upstream_active() && !c.is_closed(), "client kept alive");
    }

    #[test]
    fn a_kept_http10_client_is_told_so() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", now);
        c.poll_connect();
        c.upstream_connected(now);
        upstream_output(&mut c, now);
        upstream_send(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.ends_with("Content-Length: 2\r\nConnection: keep-alive\r\n\r\nok"),
            "{wire}"
        );
        assert!(!c.is_closed());
        // Without a length the answer must end with the close: no keep-alive promised.
        c.feed(b"GET /px/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", now);
        c.poll_connect();
        c.upstream_connected(now);
        upstream_output(&mut c, now);
        upstream_send(&mut c, b"HTTP/1.1 200 OK\r\n\r\nstream", now);
        c.upstream_eof(now);
        let wire = client_output(&mut c, now);
        assert!(wire.contains("Connection: close\r\n") && !wire.contains("keep-alive"));
    }

    #[test]
    fn streams_a_chunked_request_and_rechunks_a_close_delimited_answer() {
        let (mut c, now) = conn();
        c.feed(
            b"POST /px/ HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            now,
        );
        c.poll_connect();
        c.upstream_connected(now);
        let sent = upstream_output(&mut c, now);
        assert!(
            sent.starts_with("POST /base/ HTTP/1.1\r\n")
                && sent.contains("Transfer-Encoding: chunked\r\n")
        );
        assert!(sent.ends_with("\r\n\r\n3\r\nabc\r\n"), "{sent:?}");
        c.feed(b"2\r\nde\r\n0\r\n\r\n", now);
        assert_eq!(upstream_output(&mut c, now), "2\r\nde\r\n0\r\n\r\n");
        upstream_send(&mut c, b"HTTP/1.1 200 OK\r\n\r\npart1", now);
        upstream_send(&mut c, b"part2", now);
        c.upstream_eof(now);
        let wire = client_output(&mut c, now);
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with("Transfer-Encoding: chunked"), "{wire}");
        let mut decoded = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                assert_eq!(tail, "\r\n");
                break;
            }
            decoded.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        assert_eq!(decoded, "part1part2");
        assert!(!c.is_closed());
    }

    #[test]
    fn upstream_failures_map_to_502_and_504() {
        let (mut c, now) = conn();
        c.feed(b"GET /px HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.poll_connect();
        c.upstream_failed(now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));
        assert!(!c.is_closed(), "framing intact: connection kept");

        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream_connected(now);
        upstream_send(&mut c, b"NOT HTTP AT ALL\r\n\r\n", now);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 502 "));

        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream_connected(now);
        let deadline = c.poll_timeout().unwrap();
        c.handle_timeout(deadline);
        assert!(client_output(&mut c, now).starts_with("HTTP/1.1 504 "));

        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.upstream_connected(now);
        upstream_send(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            now,
        );
        c.upstream_eof(now);
        client_output(&mut c, now);
        assert!(c.is_closed(), "a cut body cannot be finished: close");
    }

    #[test]
    fn half_closed_client_still_gets_the_proxied_answer() {
        let (mut c, now) = conn();
        c.feed(b"GET /px/ HTTP/1.1\r\nHost: f\r\n\r\n", now);
        c.read_eof(now);
        assert!(c.upstream_active());
        c.upstream_connected(now);
        upstream_output(&mut c, now);
        upstream_send(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            now,
        );
        let wire = client_output(&mut c, now);
        assert!(
            wire.starts_with("HTTP/1.1 200 OK") && wire.ends_with("\r\n\r\nok"),
            "{wire}"
        );
        assert!(c.is_closed());
    }

    #[test]
    fn client_leaving_mid_exchange_ends_it() {
        let (mut c, now) = conn();
        c.feed(
            b"POST /px/ HTTP/1.1\r\nHost: f\r\nContent-Length: 100\r\n\r\nabc",
            now,
        );
        c.upstream_connected(now);
        c.read_eof(now);
        assert!(!c.upstream_active() && c.is_closed());
    }
}
