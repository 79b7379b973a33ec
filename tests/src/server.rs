//! A server under test: a core `Server` on 127.0.0.1 port 0, served by the chosen
//! transport, stopped (gracefully) when dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use quick_server::{Running, TransportOptions as Options};
use quick_server_core::{Server, ServerBuilder};
use rustls::ClientConfig;

use crate::certs::{client_tls_config, server_tls_config};
use crate::client::Client;
use crate::response::Response;
use crate::setup::{Setup, Transport};

/// Transport knobs a test may change; `None` keeps the transport's default.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Worker threads (std) or job threads (mio).
    pub threads: Option<usize>,
    /// Most connections at once before 503.
    pub max_connections: Option<usize>,
    /// Grace period of a shutdown.
    pub shutdown_grace: Duration,
    /// Event loops (mio; std has none).
    pub loops: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            threads: Some(4),
            max_connections: None,
            shutdown_grace: Duration::from_secs(2),
            loops: None,
        }
    }
}

/// Stops a [`TestServer`] from another thread.
pub type Stopper = quick_server::ShutdownHandle;

/// A running server and how to reach it.
pub struct TestServer {
    setup: Setup,
    addr: SocketAddr,
    client_tls: Option<Arc<ClientConfig>>,
    stopper: Stopper,
    running: Option<Running>,
}

impl TestServer {
    /// Builds a server with `configure` (given a builder anchored now) and serves it with
    /// the default [`Tuning`].
    pub fn start(setup: Setup, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        Self::start_tuned(setup, Tuning::default(), configure)
    }

    /// Like [`start`](Self::start) with transport knobs.
    pub fn start_tuned(
        setup: Setup,
        tuning: Tuning,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> Self {
        let server = configure(Server::builder((Instant::now(), SystemTime::now()))).build();
        Self::serve(setup, tuning, server)
    }

    /// Serves a built server.
    pub fn serve(setup: Setup, tuning: Tuning, server: Arc<Server>) -> Self {
        // The binary's listen: a backlog of 1024, so bursts of connects are not dropped.
        let listener =
            quick_server::listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0");
        let defaults = Options::default();
        let options = Options {
            tls: setup.tls.then(server_tls_config),
            threads: tuning.threads,
            max_connections: tuning.max_connections.unwrap_or(defaults.max_connections),
            shutdown_grace: tuning.shutdown_grace,
            loops: tuning.loops.unwrap_or(defaults.loops),
            ..defaults
        };
        let kind = match setup.transport {
            Transport::Std => quick_server::Transport::Std,
            Transport::Mio => quick_server::Transport::Mio,
        };
        let running = quick_server::start(listener, server, kind, options)
            .unwrap_or_else(|e| panic!("start the {kind:?} transport: {e}"));
        let stopper = running.handle();
        let addr = running.local_addr();
        let client_tls = setup.tls.then(client_tls_config);
        Self {
            setup,
            addr,
            client_tls,
            stopper,
            running: Some(running),
        }
    }

    /// The setup this server runs in.
    pub fn setup(&self) -> Setup {
        self.setup
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new client connection (TLS when the server speaks it).
    pub fn connect(&self) -> Client {
        self.try_connect()
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
    }

    /// A new client connection, or the connect error.
    pub fn try_connect(&self) -> io::Result<Client> {
        Client::connect(self.addr, self.client_tls.clone())
    }

    /// Sends `bytes` on a new connection, ends the sending side, and parses every
    /// response until the server closes (no request may be HEAD). Panics if what came
    /// back is not a sequence of whole responses.
    pub fn send_raw(&self, bytes: &[u8]) -> Vec<Response> {
        let mut client = self.connect();
        client.send(bytes).unwrap_or_else(|e| panic!("send: {e}"));
        // The server may answer and close before reading all of it: then this fails.
        let _ = client.half_close();
        let mut responses = Vec::new();
        loop {
            match client.read_response() {
                Ok(response) => responses.push(response),
                Err(_) if client.is_closed() => break,
                Err(e) => panic!("reading responses: {e}"),
            }
        }
        let rest = client
            .read_to_close()
            .unwrap_or_else(|e| panic!("reading to close: {e}"));
        assert!(
            rest.is_empty(),
            "bytes after the last response: {:?}",
            String::from_utf8_lossy(&rest)
        );
        responses
    }

    /// A handle that starts a shutdown from anywhere.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Shuts down gracefully and waits until the transport returns; how long that took.
    pub fn stop(mut self) -> io::Result<Duration> {
        self.stop_and_wait()
    }

    fn stop_and_wait(&mut self) -> io::Result<Duration> {
        let started = Instant::now();
        self.stopper.shutdown();
        if let Some(running) = self.running.take() {
            running.wait()?;
        }
        Ok(started.elapsed())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_and_wait();
    }
}
