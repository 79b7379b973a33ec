//! A deterministic driver for tests (the `testing` feature): a fake client paired with a
//! [`Connection`] and a clock that moves only when told, like quinn-proto's `Pair`.
//! It runs the drain rule of the crate docs with every job inline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{Connection, Transmit};
use crate::job::{Job, JobKind};
use crate::request::PeerInfo;
use crate::server::Server;

/// A client and a connection on a stepped clock. The client's bytes go in with
/// [`send`](Self::send); [`drive`](Self::drive) runs the drain rule; what the connection
/// wrote piles up in [`received`](Self::received).
#[derive(Debug)]
pub struct Pair {
    /// The connection under test.
    pub conn: Connection,
    /// The current time; only [`advance`](Self::advance) moves it.
    pub now: Instant,
    /// Background jobs handed out and not run yet, when they are held back.
    pub background: Vec<Job>,
    hold_background: bool,
    received: Vec<u8>,
}

impl Pair {
    /// A connection of `server` from a default peer, at `now`.
    pub fn new(server: Arc<Server>, now: Instant) -> Self {
        Self::with_peer(server, PeerInfo::default(), now)
    }

    /// A connection of `server` from `peer`, at `now`.
    pub fn with_peer(server: Arc<Server>, peer: PeerInfo, now: Instant) -> Self {
        Self {
            conn: Connection::new(server, peer, now),
            now,
            background: Vec::new(),
            hold_background: false,
            received: Vec::new(),
        }
    }

    /// Keeps background jobs in [`background`](Self::background) instead of running them,
    /// so a test can decide when a worker computation ends.
    pub fn hold_background(mut self) -> Self {
        self.hold_background = true;
        self
    }

    /// The client sends `bytes`; returns how many the connection took (then drives).
    pub fn send(&mut self, bytes: &[u8]) -> usize {
        let taken = self.conn.feed(bytes, self.now);
        self.drive();
        taken
    }

    /// The drain rule until nothing moves: jobs run inline (background ones held back if
    /// asked), output (file regions read) goes to the client, due timers fire.
    pub fn drive(&mut self) -> &mut Self {
        let held = self.hold_background.then_some(&mut self.background);
        let wire = drain(&mut self.conn, self.now, held);
        self.received.extend_from_slice(&wire);
        self
    }

    /// Moves the clock by `by` and drives (timers that fell due fire).
    pub fn advance(&mut self, by: Duration) -> &mut Self {
        self.now += by;
        self.drive()
    }

    /// Takes everything the client received so far.
    pub fn received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    /// Sends `bytes` and returns what came back, as text.
    pub fn exchange(&mut self, bytes: &[u8]) -> String {
        self.send(bytes);
        String::from_utf8_lossy(&self.received()).into_owned()
    }
}

/// The drain rule on `conn` at `now` until nothing moves; returns what it wrote. Jobs run
/// inline, except background ones when `held` takes them; due timers fire.
pub fn drain(conn: &mut Connection, now: Instant, mut held: Option<&mut Vec<Job>>) -> Vec<u8> {
    let mut wire = Vec::new();
    loop {
        let mut moved = false;
        while let Some(job) = conn.poll_job() {
            match held.as_deref_mut() {
                Some(held) if job.kind() == JobKind::Background => held.push(job),
                _ => {
                    let done = job.run();
                    conn.complete(done, now);
                }
            }
            moved = true;
        }
        while let Some(transmit) = conn.poll_transmit() {
            let n = match transmit {
                Transmit::Bytes(bytes) => {
                    wire.extend_from_slice(bytes);
                    bytes.len()
                }
                Transmit::File(region) => {
                    let mut chunk = vec![0; region.len.min(64 * 1024) as usize];
                    let n = region.file.read_at(&mut chunk, region.offset).unwrap_or(0);
                    wire.extend_from_slice(&chunk[..n]);
                    n
                }
            };
            if n == 0 {
                break; // a file that shrank: left to the connection's timers
            }
            conn.transmitted(n, now);
            moved = true;
        }
        if conn.poll_timeout().is_some_and(|at| at <= now) {
            conn.handle_timeout(now);
            moved = true;
        }
        if !moved {
            return wire;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::fs::MemoryFs;
    use crate::limits::Limits;

    #[test]
    fn a_pair_answers_and_its_clock_fires_the_idle_timeout() {
        let now = Instant::now();
        let mut fs = MemoryFs::new();
        fs.insert("/www/a.txt", "hello", SystemTime::UNIX_EPOCH);
        let mut builder = Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(fs));
        builder.files().bind_path("/", "/www").unwrap();
        let mut pair = Pair::new(builder.build(), now);
        let wire = pair.exchange(b"GET /a.txt HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            wire.starts_with("HTTP/1.1 200 OK\r\n") && wire.ends_with("hello"),
            "{wire}"
        );
        pair.advance(Limits::default().idle_timeout - Duration::from_millis(1));
        assert!(!pair.conn.is_closed());
        pair.advance(Duration::from_millis(1));
        assert!(pair.conn.is_closed());
    }
}
