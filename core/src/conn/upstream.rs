//! The door to a proxied request's upstream: its own verbs, beside the client
//! connection's. The transport opens the socket the exchange asks for and moves bytes
//! through these verbs; each one lets the connection queue what the upstream produced.

use std::time::Instant;

use crate::proxy::exchange::{Answer, Exchange};
use crate::proxy::{Connect, Release};

use super::{Connection, State};

/// The upstream side of the request a [`Connection`] proxies, from
/// [`Connection::upstream`]. Drive it like the connection itself: release the socket
/// [`poll_release`](Self::poll_release) names (to the pool, or closed), connect when
/// [`poll_connect`](Self::poll_connect) asks (an idle pooled socket unless `fresh`),
/// write what [`transmit`](Self::transmit) gives, read into [`read_buf`](Self::read_buf)
/// and [`commit`](Self::commit), then drain the connection. Once the exchange is over the
/// I/O verbs are no-ops, and [`Connection::upstream`] returns `None` after the release.
#[derive(Debug)]
pub struct Upstream<'a> {
    conn: &'a mut Connection,
}

impl<'a> Upstream<'a> {
    pub(super) fn new(conn: &'a mut Connection) -> Self {
        Self { conn }
    }

    /// What to do with the upstream socket the transport holds, once an exchange is
    /// done with it (given once, before any new [`poll_connect`](Self::poll_connect)).
    pub fn poll_release(&mut self) -> Option<Release> {
        if let Some(release) = self.conn.released.take() {
            return Some(release);
        }
        self.exchange_mut()?.take_release()
    }

    /// The connection the transport must open or take from its pool (given once); report
    /// the outcome with [`connected`](Self::connected), [`reused`](Self::reused) or
    /// [`failed`](Self::failed).
    pub fn poll_connect(&mut self) -> Option<Connect> {
        self.exchange_mut()?.take_connect()
    }

    /// A new upstream socket is connected.
    pub fn connected(&mut self, now: Instant) {
        self.attach(false, now);
    }

    /// An idle socket from the pool serves the exchange: should the upstream turn out to
    /// have closed it, an idempotent request without a body is retried once on a fresh
    /// connection.
    pub fn reused(&mut self, now: Instant) {
        self.attach(true, now);
    }

    fn attach(&mut self, reused: bool, now: Instant) {
        if let Some(exchange) = self.exchange_mut() {
            exchange.connected(reused);
            self.conn.last_activity = now;
        }
    }

    /// The upstream could not be reached (it is then skipped for a while, and the
    /// binding's next upstream is asked for), or its socket failed.
    pub fn failed(&mut self, now: Instant) {
        let down_time = self.conn.server.limits.upstream_down_time;
        if let Some(exchange) = self.exchange_mut() {
            exchange.failed(now, down_time);
            self.conn.settle_upstream(now);
        }
    }

    /// The TLS session with an `https://` upstream failed (an untrusted, misnamed or
    /// expired certificate; a broken protocol): the client gets 502 and the log a line
    /// with `reason`, rustls's words. No retry: the next attempt would fail alike.
    pub fn tls_failed(&mut self, reason: &str, now: Instant) {
        if let Some(exchange) = self.exchange_mut() {
            exchange.tls_failed(reason, now);
            self.conn.settle_upstream(now);
        }
    }

    /// Request bytes to write to the upstream socket.
    pub fn transmit(&self) -> Option<&[u8]> {
        self.exchange()?.transmit()
    }

    /// `n` bytes of [`transmit`](Self::transmit) were written.
    pub fn transmitted(&mut self, n: usize, now: Instant) {
        if let Some(exchange) = self.exchange_mut() {
            exchange.transmitted(n);
            if n > 0 {
                self.conn.last_activity = now;
            }
            // Room for more of the request body.
            self.conn.settle_upstream(now);
        }
    }

    /// Whether the transport should read from the upstream socket: the answer is
    /// expected and the client takes it (its output is below the backpressure mark).
    pub fn wants_read(&self) -> bool {
        self.exchange().is_some_and(Exchange::wants_read)
            && self.conn.pending_output < self.conn.server.limits.max_pending_output
    }

    /// Whether request bytes wait for the upstream socket.
    pub fn wants_write(&self) -> bool {
        self.transmit().is_some()
    }

    /// A buffer to read upstream bytes into; follow with [`commit`](Self::commit).
    /// Empty when no upstream input is wanted.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        match &mut self.conn.state {
            State::Proxy { exchange, .. } => exchange.read_buf(),
            _ => &mut [],
        }
    }

    /// Takes `n` bytes the transport read into [`read_buf`](Self::read_buf).
    pub fn commit(&mut self, n: usize, now: Instant) {
        let Connection {
            state,
            server,
            date,
            last_activity,
            ..
        } = &mut *self.conn;
        let State::Proxy { exchange, .. } = state else {
            return;
        };
        if n > 0 {
            *last_activity = now;
        }
        let answer = Answer {
            server: server.server_header(),
            date: date.get(server.wall_time(now)),
            limits: &server.limits,
            now,
        };
        exchange.commit(n, &answer);
        self.conn.settle_upstream(now);
    }

    /// The upstream closed its side (a read returned 0).
    pub fn read_eof(&mut self, now: Instant) {
        if let Some(exchange) = self.exchange_mut() {
            exchange.read_eof(now);
            self.conn.settle_upstream(now);
        }
    }

    fn exchange(&self) -> Option<&Exchange> {
        match &self.conn.state {
            State::Proxy { exchange, .. } => Some(exchange),
            _ => None,
        }
    }

    fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match &mut self.conn.state {
            State::Proxy { exchange, .. } => Some(exchange),
            _ => None,
        }
    }
}
