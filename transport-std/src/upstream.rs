//! The upstream socket of a proxied request, on the worker thread that serves its client:
//! a blocking connect bounded by the upstream timeout, then a non-blocking socket that the
//! drain loop moves bytes through and the wait watches beside the client socket.
//!
//! The worker serves only this connection, so the blocking connect (and the host-name
//! lookup before it, through the system resolver) costs no other client anything; a
//! shutdown waits for it to end, at most the upstream timeout. An `https://` upstream's
//! bytes go through the core's `TlsPump`, its handshake driven by the same drain loop. A
//! socket the core releases goes into the pool all workers share (with its TLS session),
//! for the next exchange with that upstream.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quick_server_core::proxy::{Connect, IdlePool, Release};
use quick_server_core::tls::{TlsError, TlsPump};
use quick_server_core::Connection;
use rustls::{ClientConfig, ClientConnection};

use crate::poll::Watch;
use crate::wire::is_retry;

/// The TLS session of an `https://` upstream.
type ClientTls = Box<TlsPump<ClientConnection>>;

/// Idle upstream connections (with their TLS sessions), shared by every worker.
pub(crate) type Pool = Mutex<IdlePool<(TcpStream, Option<ClientTls>)>>;

/// A connected upstream.
#[derive(Debug)]
pub(crate) struct Upstream {
    socket: TcpStream,
    /// Where it goes (the pool's key).
    target: Connect,
    /// The TLS session, for an `https://` upstream.
    tls: Option<ClientTls>,
}

impl Upstream {
    /// Connects to the first address of `target` that answers before `deadline`; the
    /// socket is then non-blocking. `TimedOut` when the deadline passed.
    fn connect(target: Connect, tls: Option<ClientTls>, deadline: Instant) -> io::Result<Self> {
        let (host, port) = (target.host.as_str(), target.port);
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"));
        for addr in (host, port).to_socket_addrs()? {
            let Some(left) = time_left(deadline) else {
                return Err(io::ErrorKind::TimedOut.into());
            };
            match connect_one(addr, left) {
                Ok(socket) => {
                    return Ok(Self {
                        socket,
                        target,
                        tls,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// An idle connection to `target` from the pool that the upstream has not closed
    /// meanwhile; `None` when there is none.
    fn reuse(target: Connect, pool: &Pool) -> Option<Self> {
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((mut socket, mut tls)) = pool.take(&target, Instant::now()) {
            let open = match &mut tls {
                Some(tls) => tls.idle_intact(&mut socket),
                None => still_open(&socket),
            };
            if open {
                return Some(Self {
                    socket,
                    target,
                    tls,
                });
            }
        }
        None
    }

    /// What the wait should watch this socket for, given what the core wants now;
    /// `None` when it wants nothing from it.
    pub(crate) fn watch(&self, conn: &mut Connection) -> Option<Watch> {
        let upstream = conn.upstream()?;
        let (read, write) = match &self.tls {
            None => (upstream.wants_read(), upstream.wants_write()),
            Some(tls) => (tls.wants_read(upstream.wants_read()), tls.wants_write()),
        };
        (read || write).then(|| Watch {
            fd: self.fd(),
            read,
            write,
        })
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Writes request bytes until the core has none or the socket is full, then reads
    /// response bytes while the core has room and the socket has data; returns whether
    /// anything moved. An error means the upstream connection is broken.
    fn transfer(&mut self, conn: &mut Connection) -> Result<bool, TlsError> {
        let Some(mut upstream) = conn.upstream() else {
            return Ok(false);
        };
        if let Some(tls) = &mut self.tls {
            return tls.transfer(&mut self.socket, &mut upstream, Instant::now());
        }
        self.transfer_plain(upstream).map_err(TlsError::Io)
    }

    /// [`transfer`](Self::transfer) on plain TCP.
    fn transfer_plain(
        &mut self,
        mut upstream: quick_server_core::Upstream<'_>,
    ) -> io::Result<bool> {
        let mut moved = false;
        while let Some(bytes) = upstream.transmit() {
            match self.socket.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    upstream.transmitted(n, Instant::now());
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            let buf = upstream.read_buf();
            if buf.is_empty() {
                break;
            }
            match self.socket.read(buf) {
                Ok(0) => {
                    upstream.read_eof(Instant::now());
                    return Ok(true);
                }
                Ok(n) => {
                    upstream.commit(n, Instant::now());
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
}

/// The upstream step of the drain loop: starts the connect a proxied request asks for,
/// moves its bytes both ways, and closes the socket once the core no longer uses it;
/// returns whether anything moved. Upstream failures go to the core (502, 504 or close).
pub(crate) fn pump(
    slot: &mut Option<Upstream>,
    conn: &mut Connection,
    pool: &Pool,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> bool {
    let mut moved = false;
    let Some(mut exchange) = conn.upstream() else {
        *slot = None;
        return false;
    };
    if let Some(release) = exchange.poll_release() {
        moved = true;
        if let (Some(old), Release::Pool) = (slot.take(), release) {
            let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
            pool.put(&old.target, (old.socket, old.tls), Instant::now());
        }
    }
    if let Some(target) = exchange.poll_connect() {
        moved = true;
        *slot = None;
        let pooled = if target.fresh {
            None
        } else {
            Upstream::reuse(target.clone(), pool)
        };
        let session = match target.tls {
            true if pooled.is_none() => {
                TlsPump::client(tls, &target.host).map(|p| Some(Box::new(p)))
            }
            _ => Ok(None),
        };
        if let Some(upstream) = pooled {
            *slot = Some(upstream);
            exchange.reused(Instant::now());
        } else if let Err(error) = session {
            exchange.tls_failed(&error.to_string(), Instant::now());
        } else {
            let session = session.ok().flatten();
            match Upstream::connect(target, session, Instant::now() + timeout) {
                Ok(upstream) => {
                    *slot = Some(upstream);
                    exchange.connected(Instant::now());
                }
                // The core's own deadline has passed too: it answers 504.
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    conn.handle_timeout(Instant::now());
                }
                Err(_) => exchange.failed(Instant::now()),
            }
        }
    }
    if let Some(upstream) = slot {
        match upstream.transfer(conn) {
            Ok(step) => moved |= step,
            Err(error) => {
                if let Some(mut exchange) = conn.upstream() {
                    match error {
                        TlsError::Tls(e) => exchange.tls_failed(&e.to_string(), Instant::now()),
                        TlsError::Io(_) => exchange.failed(Instant::now()),
                    }
                }
                moved = true;
            }
        }
    }
    if conn.upstream().is_none() {
        *slot = None;
    }
    moved
}

/// Whether an idle connection is still usable: nothing to read (no FIN, no stray bytes,
/// no error) without blocking.
fn still_open(socket: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(socket.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Time until `deadline`, if any is left.
fn time_left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
}

/// One connect attempt bounded by `timeout`; the socket comes back non-blocking.
fn connect_one(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = TcpStream::connect_timeout(&addr, timeout)?;
    socket.set_nonblocking(true)?;
    // Nagle would only hold back the last piece of a request.
    let _ = socket.set_nodelay(true);
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn connects_to_a_listener_and_fails_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let soon = Instant::now() + Duration::from_secs(5);
        let to = |host: &str| Connect {
            host: host.into(),
            port,
            tls: false,
            fresh: false,
        };
        let upstream = Upstream::connect(to("127.0.0.1"), None, soon).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(
            upstream.socket.peer_addr().unwrap(),
            accepted.local_addr().unwrap()
        );
        drop(listener);
        let refused = Upstream::connect(to("127.0.0.1"), None, soon).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let past = Instant::now() - Duration::from_millis(1);
        let late = Upstream::connect(to("127.0.0.1"), None, past).unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::TimedOut);
        assert!(Upstream::connect(to("no such host name"), None, soon).is_err());
    }

    #[test]
    fn time_left_is_none_once_passed() {
        let now = Instant::now();
        assert_eq!(time_left(now - Duration::from_secs(1)), None);
        assert!(time_left(now + Duration::from_secs(60)).is_some());
    }
}
