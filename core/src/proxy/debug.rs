//! The proxy's debug log (`ServerBuilder::debug_proxy`): what goes upstream, what comes
//! back, and the status, bytes and time of each exchange, in the original's words where
//! it had some (`proxy … headers=… payload=…`, `response … outlen=… headers=…`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Request body bytes shown in a `payload=` (the rest is counted, not shown).
const PAYLOAD_SHOWN: usize = 1024;

/// What one exchange's debug lines need, gathered as it runs.
#[derive(Debug)]
pub(crate) struct Debug {
    started: Instant,
    method: String,
    /// The client's request target.
    target: String,
    payload: Vec<u8>,
    payload_len: u64,
    /// Body bytes relayed to the client.
    out_len: u64,
    /// `status` and the upstream's fields as JSON, once the head arrived.
    response: Option<(u16, String)>,
}

impl Debug {
    /// Starts recording the exchange of the client request `method target`.
    pub(crate) fn new(method: &str, target: &str, now: Instant) -> Self {
        Self {
            started: now,
            method: method.to_owned(),
            target: target.to_owned(),
            payload: Vec::new(),
            payload_len: 0,
            out_len: 0,
            response: None,
        }
    }

    /// A piece of the request body went upstream.
    pub(crate) fn body(&mut self, data: &[u8]) {
        let room = PAYLOAD_SHOWN.saturating_sub(self.payload.len());
        self.payload
            .extend_from_slice(&data[..data.len().min(room)]);
        self.payload_len += data.len() as u64;
    }

    /// The line for the request sent: `head` is its head as the upstream got it.
    pub(crate) fn request_line(&self, head: &[u8], url: &str) -> String {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let method = lines
            .next()
            .and_then(|l| l.split(' ').next())
            .unwrap_or_default();
        let fields = lines.filter_map(|l| l.split_once(": "));
        let mut payload = bytes_repr(&self.payload);
        if self.payload_len > self.payload.len() as u64 {
            let _ = write!(payload, " ({} bytes)", self.payload_len);
        }
        format!(
            "proxy {} to {method} {url}: headers={} payload={payload}",
            self.target,
            json_object(fields)
        )
    }

    /// The upstream's head arrived: `head` is its bytes (interim answers included).
    pub(crate) fn response(&mut self, status: u16, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        // The final head is the last one; interim 1xx heads come before it.
        let last = text
            .trim_end_matches("\r\n")
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default();
        let fields = last.split("\r\n").skip(1).filter_map(|l| l.split_once(':'));
        let fields = fields.map(|(n, v)| (n, v.trim()));
        self.response = Some((status, json_object(fields)));
    }

    /// Body bytes went to the client.
    pub(crate) fn relayed(&mut self, n: usize) {
        self.out_len += n as u64;
    }

    /// The lines for a complete response: the original's `response` line and the summary.
    pub(crate) fn done(&self, url: &str, now: Instant) -> [String; 2] {
        let (status, fields) = self.response.clone().unwrap_or_default();
        [
            format!(
                "response {status} for {} outlen={} headers={fields}",
                self.target, self.out_len
            ),
            self.summary(url, &status.to_string(), now),
        ]
    }

    /// The summary line of an exchange that failed with `why`.
    pub(crate) fn failed(&self, url: &str, why: &str, now: Instant) -> String {
        self.summary(url, why, now)
    }

    fn summary(&self, url: &str, outcome: &str, now: Instant) -> String {
        let elapsed = now.saturating_duration_since(self.started);
        format!(
            "proxied {} {} to {url}: {outcome}, {} bytes in, {} bytes out, {}",
            self.method,
            self.target,
            self.payload_len,
            self.out_len,
            millis(elapsed)
        )
    }
}

/// `1.234 ms`.
fn millis(elapsed: Duration) -> String {
    format!("{:.3} ms", elapsed.as_secs_f64() * 1000.0)
}

/// Fields as a compact JSON object, in order.
fn json_object<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let pairs: Vec<String> = fields
        .map(|(name, value)| format!("{}:{}", json_string(name), json_string(value)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Bytes as Python's `repr` of a `bytes` value: `b'...'`, with escapes.
fn bytes_repr(data: &[u8]) -> String {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from("b");
    out.push(quote as char);
    for &byte in data {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if byte == quote => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out.push(quote as char);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(bytes_repr(b""), "b''");
        assert_eq!(bytes_repr(b"a=1&b=2"), "b'a=1&b=2'");
        assert_eq!(bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(
            bytes_repr(b"\x00\xff\\\r\n\t"),
            "b'\\x00\\xff\\\\\\r\\n\\t'"
        );
    }

    #[test]
    fn lines_have_the_original_shape() {
        let now = Instant::now();
        let mut debug = Debug::new("POST", "/px/a?q=1", now);
        debug.body(b"x=1");
        let line = debug.request_line(
            b"POST /up/a?q=1 HTTP/1.1\r\nHost: h:1\r\nX-A: \"q\"\r\n\r\n",
            "http://h:1/up/a?q=1",
        );
        assert_eq!(
            line,
            "proxy /px/a?q=1 to POST http://h:1/up/a?q=1: \
             headers={\"Host\":\"h:1\",\"X-A\":\"\\\"q\\\"\"} payload=b'x=1'"
        );
        debug.response(
            200,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
        );
        debug.relayed(2);
        let [response, summary] = debug.done("http://h:1/up/a?q=1", now);
        assert_eq!(
            response,
            "response 200 for /px/a?q=1 outlen=2 headers={\"Content-Length\":\"2\"}"
        );
        assert_eq!(
            summary,
            "proxied POST /px/a?q=1 to http://h:1/up/a?q=1: 200, 3 bytes in, 2 bytes out, 0.000 ms"
        );
    }
}
