//! A session's connection to a proxy upstream (plain HTTP, or TLS for `https://` through
//! the core's `TlsPump`). The core says where to connect and moves the bytes; this takes
//! an idle connection from the loop's pool when one is left open, else opens a socket
//! without blocking the loop: IP literals and `localhost` need no lookup, other host
//! names are looked up on the request pool; each address is tried in turn with a
//! non-blocking connect, whose end is seen on the first writable edge. A socket the core
//! releases to the pool (with its TLS session) leaves the poller until reused.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;
use std::vec;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry};
use quick_server_core::proxy::{Connect, IdlePool};
use quick_server_core::tls::{TlsError, TlsPump};
use quick_server_core::Connection;
use rustls::{ClientConfig, ClientConnection};

use crate::pool::Jobs;
use crate::slab::Key;
use crate::socket::Socket;

/// What the loop lends the upstream for one pump.
pub(crate) struct Link<'a> {
    /// Where upstream sockets are registered.
    pub(crate) registry: &'a Registry,
    /// Where host names are looked up.
    pub(crate) jobs: &'a Jobs,
    /// The session the upstream belongs to.
    pub(crate) key: Key,
    /// How `https://` upstreams are verified.
    pub(crate) tls: Option<&'a Arc<ClientConfig>>,
}

/// Where the upstream connection is.
#[derive(Debug)]
enum Phase {
    /// The host name is being looked up on the pool.
    Resolving,
    /// Addresses left to try, in order; the next pump connects to the first.
    Addresses(vec::IntoIter<SocketAddr>),
    /// A connect is under way; `rest` are the addresses to try if it fails.
    Connecting {
        socket: Socket,
        rest: vec::IntoIter<SocketAddr>,
    },
    /// Connected: request bytes go out, response bytes come in.
    Open(Socket),
    /// No TLS session could be made (no configuration, a bad server name): the next pump
    /// tells the core why.
    Unusable(rustls::Error),
    /// The core was told the upstream failed; nothing more happens.
    Failed,
}

/// The TLS session of an `https://` upstream.
type ClientTls = Box<TlsPump<ClientConnection>>;

/// An idle upstream connection, with its TLS session if it has one.
#[derive(Debug)]
pub(crate) struct Parked {
    stream: TcpStream,
    tls: Option<ClientTls>,
}

/// Idle upstream connections of one event loop.
pub(crate) type Pool = IdlePool<Parked>;

/// One upstream connection of a session (one per proxied request).
#[derive(Debug)]
pub(crate) struct Upstream {
    /// Tells this attempt's lookup result from a stale one of an earlier attempt.
    id: u64,
    /// Where it goes (the pool's key).
    target: Connect,
    phase: Phase,
    /// The TLS session, for an `https://` upstream.
    tls: Option<ClientTls>,
}

impl Upstream {
    /// Starts connecting to `target` for the attempt `id`: at once for IP literals and
    /// `localhost`, after a lookup on the pool for other names.
    pub(crate) fn start(id: u64, target: Connect, link: &Link<'_>) -> Self {
        let tls = match target.tls {
            true => match TlsPump::client(link.tls, &target.host) {
                Ok(pump) => Some(Box::new(pump)),
                Err(e) => {
                    let phase = Phase::Unusable(e);
                    return Self {
                        id,
                        target,
                        phase,
                        tls: None,
                    };
                }
            },
            false => None,
        };
        let phase = match without_lookup(&target.host, target.port) {
            Some(addrs) => Phase::Addresses(addrs.into_iter()),
            None => {
                link.jobs
                    .resolve(link.key, id, target.host.clone(), target.port);
                Phase::Resolving
            }
        };
        Self {
            id,
            target,
            phase,
            tls,
        }
    }

    /// An idle connection to `target` from the pool that the upstream has not closed
    /// meanwhile, registered for the session; `None` when there is none.
    pub(crate) fn reuse(
        id: u64,
        target: Connect,
        pool: &mut Pool,
        link: &Link<'_>,
        now: Instant,
    ) -> Option<Self> {
        while let Some(Parked {
            mut stream,
            mut tls,
        }) = pool.take(&target, now)
        {
            let open = match &mut tls {
                Some(tls) => tls.idle_intact(&mut stream),
                None => still_open(&stream),
            };
            if !open {
                continue; // closed (or spoke out of turn) while idle: dropped
            }
            let interest = Interest::READABLE | Interest::WRITABLE;
            if link
                .registry
                .register(&mut stream, link.key.upstream_token(), interest)
                .is_ok()
            {
                let phase = Phase::Open(Socket::new(stream));
                return Some(Self {
                    id,
                    target,
                    phase,
                    tls,
                });
            }
        }
        None
    }

    /// Puts an open connection back into the pool, out of the poller; one that is not
    /// open is closed.
    pub(crate) fn park(self, pool: &mut Pool, registry: &Registry, now: Instant) {
        if let Phase::Open(mut socket) = self.phase {
            if registry.deregister(socket.stream_mut()).is_ok() {
                let parked = Parked {
                    stream: socket.into_stream(),
                    tls: self.tls,
                };
                pool.put(&self.target, parked, now);
            }
        } else {
            self.close(registry);
        }
    }

    /// Takes the result of the lookup for attempt `id` (a stale one is ignored).
    pub(crate) fn resolved(&mut self, id: u64, addrs: io::Result<Vec<SocketAddr>>) {
        if id == self.id && matches!(self.phase, Phase::Resolving) {
            // A failed lookup leaves no address to try: the next pump reports it.
            self.phase = Phase::Addresses(addrs.unwrap_or_default().into_iter());
        }
    }

    /// Records a readiness event of the upstream socket.
    pub(crate) fn on_ready(&mut self, event: &Event) {
        match &mut self.phase {
            Phase::Connecting { socket, .. } | Phase::Open(socket) => socket.on_ready(event),
            _ => {}
        }
    }

    /// Connects, writes the core's request bytes and reads the response while the core
    /// wants it; returns whether anything moved. Failures are reported to the core
    /// (`Upstream::failed`), which answers 502 or closes.
    pub(crate) fn pump(&mut self, conn: &mut Connection, link: &Link<'_>, now: Instant) -> bool {
        let mut moved = false;
        loop {
            match &mut self.phase {
                Phase::Resolving | Phase::Failed => return moved,
                Phase::Unusable(error) => {
                    let reason = error.to_string();
                    self.phase = Phase::Failed;
                    if let Some(mut upstream) = conn.upstream() {
                        upstream.tls_failed(&reason, now);
                    }
                    return true;
                }
                Phase::Addresses(rest) => {
                    moved = true;
                    self.phase = match connect_next(rest, link) {
                        Some(socket) => Phase::Connecting {
                            socket,
                            rest: std::mem::take(rest),
                        },
                        None => return self.fail(conn, now),
                    };
                }
                Phase::Connecting { socket, rest } => match socket.connect_done() {
                    Ok(false) => return moved,
                    Ok(true) => {
                        if let Some(mut upstream) = conn.upstream() {
                            upstream.connected(now);
                        }
                        moved = true;
                        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
                        if let Phase::Connecting { socket, .. } = phase {
                            self.phase = Phase::Open(socket);
                        }
                    }
                    Err(_) => {
                        moved = true;
                        let _ = link.registry.deregister(socket.stream_mut());
                        self.phase = Phase::Addresses(std::mem::take(rest));
                    }
                },
                Phase::Open(socket) => {
                    let step = match &mut self.tls {
                        None => transfer(socket, conn, now).map_err(TlsError::Io),
                        Some(tls) => match conn.upstream() {
                            Some(mut upstream) => tls.transfer(socket, &mut upstream, now),
                            None => Ok(false),
                        },
                    };
                    return match step {
                        Ok(step) => moved | step,
                        Err(TlsError::Tls(error)) => {
                            self.phase = Phase::Failed;
                            if let Some(mut upstream) = conn.upstream() {
                                upstream.tls_failed(&error.to_string(), now);
                            }
                            true
                        }
                        Err(TlsError::Io(_)) => self.fail(conn, now),
                    };
                }
            }
        }
    }

    /// Takes the socket out of the poller before it is dropped.
    pub(crate) fn close(mut self, registry: &Registry) {
        if let Phase::Connecting { socket, .. } | Phase::Open(socket) = &mut self.phase {
            // Dropping the socket removes it from the poller anyway.
            let _ = registry.deregister(socket.stream_mut());
        }
    }

    /// Tells the core the upstream failed; returns that something moved.
    fn fail(&mut self, conn: &mut Connection, now: Instant) -> bool {
        self.phase = Phase::Failed;
        if let Some(mut upstream) = conn.upstream() {
            upstream.failed(now);
        }
        true
    }
}

/// Whether an idle connection is still usable: nothing to read (no FIN, no stray bytes,
/// no error) without blocking.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Starts a non-blocking connect to the next address that takes one, registered under
/// the session's upstream token for both readiness kinds (edge-triggered, so it is never
/// re-registered). `None` once every address failed.
fn connect_next(rest: &mut vec::IntoIter<SocketAddr>, link: &Link<'_>) -> Option<Socket> {
    for addr in rest.by_ref() {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if link
            .registry
            .register(&mut stream, link.key.upstream_token(), interest)
            .is_ok()
        {
            return Some(Socket::connecting(stream));
        }
    }
    None
}

/// Writes request bytes until the core has none or the socket is full, then reads
/// response bytes while the core has room and the socket has data; returns whether
/// anything moved. An error means the upstream connection is broken.
fn transfer(socket: &mut Socket, conn: &mut Connection, now: Instant) -> io::Result<bool> {
    let Some(mut upstream) = conn.upstream() else {
        return Ok(false);
    };
    let mut moved = false;
    while socket.may_write() {
        let Some(bytes) = upstream.transmit() else {
            break;
        };
        match socket.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                upstream.transmitted(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    while socket.may_read() {
        let buf = upstream.read_buf();
        if buf.is_empty() {
            break;
        }
        match socket.read(buf) {
            Ok(0) => {
                upstream.read_eof(now);
                return Ok(true);
            }
            Ok(n) => {
                upstream.commit(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

/// The addresses of `host` when they need no lookup: an IP literal, or `localhost`
/// (always loopback, RFC 6761; IPv4 first). `None`: the name must be looked up.
pub(crate) fn without_lookup(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    host.eq_ignore_ascii_case("localhost").then(|| {
        vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        ]
    })
}

/// Looks `host` up with the system resolver. This blocks: it runs on the request pool.
pub(crate) fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no address for {host}"),
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_need_no_lookup() {
        assert_eq!(
            without_lookup("127.0.0.1", 80),
            Some(vec!["127.0.0.1:80".parse().unwrap()])
        );
        assert_eq!(
            without_lookup("::1", 9000),
            Some(vec!["[::1]:9000".parse().unwrap()])
        );
        assert_eq!(
            without_lookup("LocalHost", 1),
            Some(vec![
                "127.0.0.1:1".parse().unwrap(),
                "[::1]:1".parse().unwrap()
            ])
        );
        assert_eq!(without_lookup("example.com", 80), None);
        assert_eq!(without_lookup("localhost.", 80), None);
        assert_eq!(without_lookup("127.0.0.1.nip.io", 80), None);
    }

    #[test]
    fn a_stale_lookup_is_ignored() {
        let target = Connect {
            host: "h".into(),
            port: 1,
            tls: false,
            fresh: false,
        };
        let mut upstream = Upstream {
            id: 2,
            target: target.clone(),
            phase: Phase::Resolving,
            tls: None,
        };
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        upstream.resolved(1, Ok(vec![addr]));
        assert!(
            matches!(upstream.phase, Phase::Resolving),
            "an earlier attempt's"
        );
        upstream.resolved(2, Ok(vec![addr]));
        let Phase::Addresses(rest) = &upstream.phase else {
            panic!("addresses to try: {:?}", upstream.phase);
        };
        assert_eq!(rest.as_slice(), [addr]);
        upstream.resolved(2, Err(io::ErrorKind::NotFound.into()));
        assert!(
            matches!(&upstream.phase, Phase::Addresses(rest) if rest.len() == 1),
            "only a lookup still awaited is taken"
        );
        let mut failed = Upstream {
            id: 3,
            target,
            phase: Phase::Resolving,
            tls: None,
        };
        failed.resolved(3, Err(io::ErrorKind::NotFound.into()));
        assert!(matches!(&failed.phase, Phase::Addresses(rest) if rest.as_slice().is_empty()));
    }

    #[test]
    fn resolves_names_and_reports_failures() {
        let addrs = resolve("127.0.0.1", 8).unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8".parse().unwrap()]);
        assert!(resolve("no such host name", 80).is_err());
    }
}
