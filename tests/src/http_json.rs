//! A facade server under test ([`quick_server::QuickServer`] on 127.0.0.1 port 0 in a
//! given setup) and request builders for JSON, forms and multipart bodies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quick_server::{QuickServer, TransportOptions};
use rustls::ClientConfig;
use serde_json::Value;

use crate::certs::{client_tls_config, server_tls_config};
use crate::client::Client;
use crate::response::Response;
use crate::setup::{Setup, Transport};

/// A running [`QuickServer`], stopped gracefully when dropped.
pub struct FacadeServer {
    addr: SocketAddr,
    client_tls: Option<Arc<ClientConfig>>,
    running: Option<quick_server::Running>,
}

impl FacadeServer {
    /// A fresh facade server listening on 127.0.0.1, port 0.
    pub fn builder() -> QuickServer {
        QuickServer::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves `server` in `setup` (4 pool threads kept warm, 2 s shutdown grace).
    pub fn start(setup: Setup, mut server: QuickServer) -> Self {
        let kind = match setup.transport {
            Transport::Std => quick_server::Transport::Std,
            Transport::Mio => quick_server::Transport::Mio,
        };
        server.transport(
            kind,
            TransportOptions {
                tls: setup.tls.then(server_tls_config),
                threads: Some(4),
                shutdown_grace: Duration::from_secs(2),
                ..TransportOptions::default()
            },
        );
        let running = server.start().expect("start the facade server");
        Self {
            addr: running.local_addr(),
            client_tls: setup.tls.then(client_tls_config),
            running: Some(running),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new client connection (TLS when the server speaks it).
    pub fn connect(&self) -> Client {
        Client::connect(self.addr, self.client_tls.clone())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    /// Sends `request` on a new connection and reads one response.
    pub fn exchange(&self, request: &[u8]) -> Response {
        self.connect().request(request)
    }
}

impl Drop for FacadeServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.handle().shutdown();
            let _ = running.wait();
        }
    }
}

/// A `GET` request for `target`.
pub fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A request with `method`, `target`, a `Content-Type` and a body.
pub fn with_body(method: &str, target: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A `POST` of `body` as JSON.
pub fn post_json(target: &str, body: &Value) -> Vec<u8> {
    with_body(
        "POST",
        target,
        "application/json",
        body.to_string().as_bytes(),
    )
}

/// One part of a multipart body: a field, or a file when it has a content type.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    /// The field name.
    pub name: &'a str,
    /// The file name, for files.
    pub filename: Option<&'a str>,
    /// The part's `Content-Type`; `None` makes it a field.
    pub content_type: Option<&'a str>,
    /// The content.
    pub data: &'a [u8],
}

/// A `multipart/form-data` body with `boundary` and its parts.
pub fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The body of `response` parsed as JSON, panicking with the response if it is not.
pub fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", response.status, response.text()))
}
