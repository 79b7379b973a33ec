//! What crosses the proxy: the request head as the upstream gets it, and the upstream's
//! response head as the client gets it. Hop-by-hop fields stop here (RFC 9110 §7.6.1).

use crate::http::body::BodyReader;
use crate::http::chunked::ChunkedDecoder;
use crate::http::head::{Framing, RequestHead};

use super::route::Target;

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

/// How the forwarded request body is framed for the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// No body.
    None,
    /// `Content-Length` framing: bytes pass as they are.
    Length,
    /// Chunked framing: each piece is re-chunked.
    Chunked,
    /// A tunnel after `101 Switching Protocols`: bytes pass as they are, until a close.
    Raw,
}

/// The request line and `Host` of the request as `upstream` gets it, at `path`.
pub(crate) fn request_line(method: &str, path: &str, upstream: &Target) -> Vec<u8> {
    let host = upstream.authority();
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes()
}

/// The protocol a request asks to switch to (`Connection: upgrade` with `Upgrade`), as
/// a WebSocket handshake does.
pub(crate) fn upgrade_of(head: &RequestHead) -> Option<&str> {
    let asked = connection_options(head.fields())
        .iter()
        .any(|t| t == "upgrade");
    head.field_str("upgrade").filter(|_| asked)
}

/// The rest of the request head as the upstream gets it (after its `Host`): the
/// end-to-end fields, the `X-Forwarded-*` fields, the upgrade asked for (if it is to
/// pass) and the body framing.
pub(crate) fn request_fields(
    head: &RequestHead,
    peer: &str,
    secure: bool,
    upgrade: Option<&str>,
) -> (Vec<u8>, RequestBody) {
    let mut out = Vec::with_capacity(512);
    let listed = connection_options(head.fields());
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
        push_field(&mut out, name, value);
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
    let proto = if secure { "https" } else { "http" };
    out.extend_from_slice(format!("X-Forwarded-Proto: {proto}\r\n").as_bytes());
    if let Some(host) = head.field_str("host") {
        out.extend_from_slice(format!("X-Forwarded-Host: {host}\r\n").as_bytes());
    }
    if let Some(protocol) = upgrade {
        out.extend_from_slice(format!("Connection: Upgrade\r\nUpgrade: {protocol}\r\n").as_bytes());
    }
    let body = match head.framing() {
        Framing::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            RequestBody::Chunked
        }
        Framing::Length(0) => RequestBody::None,
        Framing::Length(n) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            RequestBody::Length
        }
    };
    // HTTP/1.1 persists by default: the connection may go back to the pool.
    out.extend_from_slice(b"\r\n");
    (out, body)
}

/// The lower-case field names a `Connection` field lists: hop-by-hop too.
fn connection_options<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<String> {
    fields
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Why an upstream response head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// What the client is owed for the request being answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientSide {
    /// A HEAD request: no body follows any head.
    pub(crate) head_only: bool,
    /// The client asked to keep its connection.
    pub(crate) keep_alive: bool,
    /// An HTTP/1.0 client: no chunked framing.
    pub(crate) http10: bool,
    /// The client's request body has been read whole.
    pub(crate) request_done: bool,
    /// The client asked for an upgrade that may pass (a `101` answer opens a tunnel).
    pub(crate) upgrade: bool,
}

/// A final response head, re-written for the client.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// Bytes of the upstream input the head used (interim answers included).
    pub(crate) consumed: usize,
    /// The status.
    pub(crate) status: u16,
    /// The upstream's `Content-Length`, if it sent one.
    pub(crate) length: Option<u64>,
    /// How the upstream body is read; `None` when there is none.
    pub(crate) body: Option<BodyReader>,
    /// The body goes to the client re-chunked.
    pub(crate) chunked_out: bool,
    /// The client connection must close after this response.
    pub(crate) close: bool,
    /// The upstream keeps its connection after this response (HTTP/1.1 without
    /// `Connection: close`).
    pub(crate) persistent: bool,
    /// A `101 Switching Protocols` to an upgrade request: both connections become a
    /// tunnel.
    pub(crate) tunnel: bool,
}

/// Parses the upstream's answer from `input` once a final head is complete (`Ok(None)`
/// until then; interim 1xx answers are skipped) and writes the client's head to `out`.
/// A head of more than `max_fields` fields is malformed.
pub(crate) fn response_head(
    input: &[u8],
    max_fields: usize,
    client: ClientSide,
    server: &str,
    date: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, Malformed> {
    let mut skipped = 0;
    loop {
        let mut fields = vec![httparse::EMPTY_HEADER; max_fields];
        let mut response = httparse::Response::new(&mut fields);
        let consumed = match response.parse(&input[skipped..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Malformed),
        };
        let status = response.code.ok_or(Malformed)?;
        if !(100..600).contains(&status) {
            return Err(Malformed); // RFC 9110 §15: status codes run from 100 to 599
        }
        if status == 101 {
            if !client.upgrade {
                return Err(Malformed); // a switch nobody asked for
            }
            let protocol = response
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("upgrade"))
                .ok_or(Malformed)?;
            let listed = connection_options(response.headers.iter().map(|f| (f.name, f.value)));
            out.extend_from_slice(
                format!("HTTP/1.1 101 Switching Protocols\r\nServer: {server}\r\nDate: ")
                    .as_bytes(),
            );
            out.extend_from_slice(date);
            out.extend_from_slice(b"\r\n");
            for field in response.headers.iter() {
                let lower = field.name.to_ascii_lowercase();
                if HOP_BY_HOP.contains(&lower.as_str())
                    || listed.contains(&lower)
                    || matches!(lower.as_str(), "server" | "date" | "content-length")
                {
                    continue;
                }
                push_field(out, field.name, field.value);
            }
            out.extend_from_slice(b"Connection: Upgrade\r\n");
            push_field(out, "Upgrade", protocol.value);
            out.extend_from_slice(b"\r\n");
            return Ok(Some(ResponseHead {
                consumed: skipped + consumed,
                status,
                length: None,
                body: None,
                chunked_out: false,
                close: true,
                persistent: false,
                tunnel: true,
            }));
        }
        if (100..200).contains(&status) {
            // Interim answers are not relayed; the final one follows.
            skipped += consumed;
            continue;
        }
        let listed = connection_options(response.headers.iter().map(|f| (f.name, f.value)));
        let persistent = response.version == Some(1) && !listed.iter().any(|t| t == "close");
        let mut length = None;
        let mut chunked = false;
        for field in response.headers.iter() {
            if field.name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(field.value).map_err(|_| Malformed)?;
                let n: u64 = text.trim().parse().map_err(|_| Malformed)?;
                if length.is_some_and(|prev| prev != n) {
                    return Err(Malformed);
                }
                length = Some(n);
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            }
        }
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which must not go on
        // (the client would frame the body by it); the connection is not reused after.
        let persistent = persistent && !(chunked && length.is_some());
        let length = if chunked { None } else { length };
        let no_body = client.head_only || status == 204 || status == 304;
        let body = if no_body {
            None
        } else if chunked {
            Some(BodyReader::Chunked(ChunkedDecoder::default()))
        } else if let Some(n) = length {
            (n > 0).then_some(BodyReader::Length(n))
        } else {
            Some(BodyReader::UntilClose)
        };
        // To the client: keep the upstream's length; otherwise chunked for 1.1 clients,
        // close-delimited for 1.0 clients.
        let chunked_out = body.is_some() && length.is_none() && !client.http10;
        let close_delimited = body.is_some() && length.is_none() && client.http10;
        let close = close_delimited || !client.keep_alive || !client.request_done;
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
                || listed.contains(&lower)
                || matches!(lower.as_str(), "server" | "date" | "content-length")
            {
                continue;
            }
            push_field(out, field.name, field.value);
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
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if client.http10 {
            // A 1.0 client waits for a close unless told the connection persists.
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        return Ok(Some(ResponseHead {
            consumed: skipped + consumed,
            status,
            length,
            body,
            chunked_out,
            close,
            persistent,
            tunnel: false,
        }));
    }
}
