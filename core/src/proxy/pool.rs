//! Idle upstream connections kept for reuse: bounded per upstream in count and in age.
//! Generic over the socket type, so each transport keeps its own sockets in it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::exchange::Connect;

/// Idle keep-alive connections by upstream (host, port, TLS or not), newest last.
#[derive(Debug)]
pub struct IdlePool<S> {
    idle: HashMap<(String, u16, bool), VecDeque<(S, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<S> IdlePool<S> {
    /// A pool keeping at most `max_idle` connections per upstream, each for at most
    /// `idle_timeout` (see `Limits::upstream_max_idle` and `upstream_idle_timeout`).
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: HashMap::new(),
            max_idle,
            idle_timeout,
        }
    }

    /// Keeps `socket`, idle since `now`, for the upstream of `connect`; the oldest one
    /// of that upstream is dropped (closed) when it is full.
    pub fn put(&mut self, connect: &Connect, socket: S, now: Instant) {
        self.expire(now);
        if self.max_idle == 0 {
            return;
        }
        let idle = self.idle.entry(key(connect)).or_default();
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back((socket, now));
    }

    /// The most recently idle connection to the upstream of `connect`, if one is left
    /// that has not expired. The caller still checks that the peer did not close it.
    pub fn take(&mut self, connect: &Connect, now: Instant) -> Option<S> {
        self.expire(now);
        let key = key(connect);
        let idle = self.idle.get_mut(&key)?;
        let socket = idle.pop_back().map(|(socket, _)| socket);
        if idle.is_empty() {
            self.idle.remove(&key);
        }
        socket
    }

    /// Drops (closes) the connections idle for longer than the idle timeout.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.idle_timeout;
        self.idle.retain(|_, idle| {
            while idle
                .front()
                .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= timeout)
            {
                idle.pop_front();
            }
            !idle.is_empty()
        });
    }

    /// When the next idle connection expires, for the caller's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.idle
            .values()
            .filter_map(|idle| idle.front())
            .map(|(_, since)| *since + self.idle_timeout)
            .min()
    }

    /// Idle connections held, over all upstreams.
    pub fn len(&self) -> usize {
        self.idle.values().map(VecDeque::len).sum()
    }

    /// Whether no idle connection is held.
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }
}

/// The pool's key for the upstream of `connect`: a plain and a TLS connection to the same
/// host and port are not interchangeable.
fn key(connect: &Connect) -> (String, u16, bool) {
    (connect.host.clone(), connect.port, connect.tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(host: &str, port: u16) -> Connect {
        Connect {
            host: host.into(),
            port,
            tls: false,
            fresh: false,
        }
    }

    #[test]
    fn keeps_a_bounded_number_per_upstream_newest_first() {
        let now = Instant::now();
        let mut pool = IdlePool::new(2, Duration::from_secs(10));
        for n in 1..=3 {
            pool.put(&to("a", 1), n, now);
        }
        pool.put(&to("b", 1), 9, now);
        assert_eq!(pool.len(), 3, "the oldest of a went");
        assert_eq!(pool.take(&to("a", 1), now), Some(3));
        assert_eq!(pool.take(&to("a", 1), now), Some(2));
        assert_eq!(pool.take(&to("a", 1), now), None);
        assert_eq!(pool.take(&to("a", 2), now), None, "another port");
        let tls = Connect {
            tls: true,
            ..to("b", 1)
        };
        assert_eq!(pool.take(&tls, now), None, "the same port over TLS");
        assert_eq!(pool.take(&to("b", 1), now), Some(9));
        assert!(pool.is_empty());
        let mut none = IdlePool::new(0, Duration::from_secs(10));
        none.put(&to("a", 1), 1, now);
        assert!(none.is_empty(), "max_idle 0 keeps nothing");
    }

    #[test]
    fn idle_connections_expire() {
        let now = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut pool = IdlePool::new(4, timeout);
        pool.put(&to("a", 1), 1, now);
        pool.put(&to("a", 1), 2, now + Duration::from_secs(5));
        assert_eq!(pool.poll_timeout(), Some(now + timeout));
        pool.expire(now + timeout);
        assert_eq!(pool.len(), 1);
        assert_eq!(
            pool.take(&to("a", 1), now + Duration::from_secs(14)),
            Some(2)
        );
        pool.put(&to("a", 1), 3, now);
        assert_eq!(
            pool.take(&to("a", 1), now + timeout),
            None,
            "expired on take"
        );
        assert_eq!(pool.poll_timeout(), None);
    }
}
