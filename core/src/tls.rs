//! The rustls plaintext pump (feature `rustls`), kept once for both transports and both
//! sides: records move between a rustls session and whatever reader or writer the
//! transport lends (its socket), plaintext between the session and the core's machines
//! (the client [`Connection`], or its proxy [`Upstream`]). No socket, no clock: the
//! transport makes the syscalls and passes the time in.
//!
//! Memory stays bounded: the session's outgoing buffer is capped at [`BUFFER_LIMIT`], the
//! core's output enters it only while it has room (files in pieces of at most
//! [`FILE_CHUNK`]), and records should be read only while [`wants_read`](TlsPump::wants_read)
//! says the plaintext will be taken.

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::DerefMut;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, SideData};

use crate::conn::{Connection, Transmit, Upstream};
use crate::wire::FILE_CHUNK;

/// Cap on a session's outgoing buffer: a file chunk plus a head and record overhead.
pub const BUFFER_LIMIT: usize = FILE_CHUNK + 16 * 1024;

/// Why records could not be taken in.
#[derive(Debug)]
pub enum TlsError {
    /// The reader failed.
    Io(io::Error),
    /// The peer broke the protocol or could not be trusted (an unknown CA, a wrong name,
    /// an expired certificate); the alert telling it so is queued.
    Tls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Tls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for io::Error {
    fn from(error: TlsError) -> Self {
        match error {
            TlsError::Io(e) => e,
            TlsError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// What handing plaintext over brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Bytes were handed over.
    Data,
    /// The peer finished sending (`close_notify`, or the stream's end without it: the
    /// same end for HTTP, whose messages carry their own framing); the sink was told.
    Eof,
    /// Nothing this time.
    Nothing,
}

/// Where decrypted bytes go: the client [`Connection`] or its [`Upstream`].
pub trait Sink {
    /// A buffer for input; empty when none is wanted.
    fn read_buf(&mut self) -> &mut [u8];
    /// `n` bytes were read into [`read_buf`](Self::read_buf).
    fn commit(&mut self, n: usize, now: Instant);
    /// The peer finished sending.
    fn read_eof(&mut self, now: Instant);
}

impl Sink for Connection {
    fn read_buf(&mut self) -> &mut [u8] {
        Connection::read_buf(self)
    }
    fn commit(&mut self, n: usize, now: Instant) {
        Connection::commit(self, n, now);
    }
    fn read_eof(&mut self, now: Instant) {
        Connection::read_eof(self, now);
    }
}

impl Sink for Upstream<'_> {
    fn read_buf(&mut self) -> &mut [u8] {
        Upstream::read_buf(self)
    }
    fn commit(&mut self, n: usize, now: Instant) {
        Upstream::commit(self, n, now);
    }
    fn read_eof(&mut self, now: Instant) {
        Upstream::read_eof(self, now);
    }
}

/// A rustls session of either side (`ServerConnection` for clients,
/// `ClientConnection` for HTTPS upstreams) and what pumping it needs to remember.
#[derive(Debug)]
pub struct TlsPump<C> {
    session: C,
    /// Decrypted bytes may be waiting in the session.
    plaintext: bool,
    /// Decrypted bytes the session holds, as of the last records read, less those
    /// delivered since: once none are left, `deliver` stops without asking the sink for
    /// room again (a 4 KiB buffer per request).
    pending: usize,
    /// The last records read ended the stream (`close_notify` or the end of TCP):
    /// `deliver` reads on to report it.
    ending: bool,
    /// `close_notify` is queued.
    close_sent: bool,
}

impl<C, D> TlsPump<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// Pumps `session`, its outgoing buffer capped at [`BUFFER_LIMIT`].
    pub fn new(mut session: C) -> Self {
        session.set_buffer_limit(Some(BUFFER_LIMIT));
        Self {
            session,
            plaintext: false,
            pending: 0,
            ending: false,
            close_sent: false,
        }
    }

    /// The session.
    pub fn session(&self) -> &C {
        &self.session
    }

    /// Whether the handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Whether records should be read now: the session takes them, and the handshake
    /// runs or the plaintext is wanted (`sink_wants`).
    pub fn wants_read(&self, sink_wants: bool) -> bool {
        self.session.wants_read() && (self.session.is_handshaking() || sink_wants)
    }

    /// Whether records wait for the writer.
    pub fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Whether decrypted bytes may be waiting for [`deliver`](Self::deliver).
    pub fn has_plaintext(&self) -> bool {
        self.plaintext
    }

    /// Whether `close_notify` was queued.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Reads records from `socket` once and processes them; `Ok(0)` is the end of the
    /// stream (reported by [`deliver`](Self::deliver) once the plaintext before it is
    /// taken).
    pub fn read_records(&mut self, socket: &mut dyn Read) -> Result<usize, TlsError> {
        let n = self.session.read_tls(socket).map_err(TlsError::Io)?;
        let state = self.session.process_new_packets().map_err(TlsError::Tls)?;
        self.pending = state.plaintext_bytes_to_read();
        self.ending = n == 0 || state.peer_has_closed();
        self.plaintext = true;
        Ok(n)
    }

    /// Writes records to `socket` once; how many bytes it took.
    pub fn write_records(&mut self, socket: &mut dyn Write) -> io::Result<usize> {
        self.session.write_tls(socket)
    }

    /// Hands decrypted bytes to `sink` while it has room.
    pub fn deliver(&mut self, sink: &mut impl Sink, now: Instant) -> io::Result<Input> {
        let mut input = Input::Nothing;
        loop {
            if input == Input::Data && self.pending == 0 && !self.ending {
                self.plaintext = false;
                return Ok(input);
            }
            let buf = sink.read_buf();
            if buf.is_empty() {
                return Ok(input);
            }
            match self.session.reader().read(buf) {
                Ok(0) => break, // close_notify
                Ok(n) => {
                    self.pending = self.pending.saturating_sub(n);
                    sink.commit(n, now);
                    input = Input::Data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.plaintext = false;
                    return Ok(input);
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        self.plaintext = false;
        sink.read_eof(now);
        Ok(Input::Eof)
    }

    /// Takes plaintext to send, as much as the buffer limit lets in.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.session.writer().write(bytes)
    }

    /// Hands the connection's output to the session while it has room (file bytes read
    /// through `scratch`, a chunk only once earlier records left); returns whether any
    /// moved.
    pub fn fill(
        &mut self,
        conn: &mut Connection,
        scratch: &mut [u8],
        now: Instant,
    ) -> io::Result<bool> {
        let mut room = if self.session.wants_write() {
            0
        } else {
            FILE_CHUNK
        };
        let mut moved = false;
        loop {
            let taken = match conn.poll_transmit() {
                None => break,
                Some(Transmit::Bytes(bytes)) => self.session.writer().write(bytes)?,
                Some(Transmit::File(region)) => {
                    let want = usize::try_from(region.len)
                        .unwrap_or(usize::MAX)
                        .min(room)
                        .min(scratch.len());
                    let Some(buf) = scratch.get_mut(..want).filter(|b| !b.is_empty()) else {
                        break;
                    };
                    let got = region.file.read_at(buf, region.offset)?;
                    match buf.get(..got) {
                        Some(bytes) if got > 0 => self.session.writer().write(bytes)?,
                        _ => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while sent",
                            ))
                        }
                    }
                }
            };
            if taken == 0 {
                break; // the session is at its limit
            }
            room = room.saturating_sub(taken);
            conn.transmitted(taken, now);
            moved = true;
        }
        Ok(moved)
    }

    /// Hands the upstream's request bytes to the session while it has room; returns
    /// whether any moved.
    pub fn fill_upstream(&mut self, upstream: &mut Upstream<'_>, now: Instant) -> io::Result<bool> {
        let mut moved = false;
        while let Some(bytes) = upstream.transmit() {
            let taken = self.session.writer().write(bytes)?;
            if taken == 0 {
                break;
            }
            upstream.transmitted(taken, now);
            moved = true;
        }
        Ok(moved)
    }

    /// Moves a proxied request through the session and `socket` (non-blocking): the
    /// upstream's request bytes in, records out and in, plaintext to the upstream, until
    /// the socket would block or nothing more is wanted; returns whether anything moved.
    /// On [`TlsError::Tls`] (say, an untrusted certificate) the alert was tried; report it
    /// with [`Upstream::tls_failed`], any other error with [`Upstream::failed`].
    pub fn transfer<S: Read + Write>(
        &mut self,
        socket: &mut S,
        upstream: &mut Upstream<'_>,
        now: Instant,
    ) -> Result<bool, TlsError> {
        let mut moved = false;
        loop {
            moved |= self.fill_upstream(upstream, now).map_err(TlsError::Io)?;
            while self.wants_write() {
                match self.write_records(socket) {
                    Ok(0) => return Err(TlsError::Io(io::ErrorKind::WriteZero.into())),
                    Ok(_) => moved = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(TlsError::Io(e)),
                }
            }
            match self.deliver(upstream, now).map_err(TlsError::Io)? {
                Input::Eof => return Ok(true),
                Input::Data => moved = true,
                Input::Nothing => {}
            }
            if !self.wants_read(upstream.wants_read()) {
                return Ok(moved);
            }
            match self.read_records(socket) {
                Ok(0) if self.is_handshaking() => {
                    return Err(TlsError::Io(io::ErrorKind::UnexpectedEof.into()))
                }
                Ok(_) => moved = true,
                Err(TlsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(TlsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(TlsError::Tls(e)) => {
                    let _ = self.write_records(socket);
                    return Err(TlsError::Tls(e));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues `close_notify` (once).
    pub fn close(&mut self) {
        if !self.close_sent {
            self.session.send_close_notify();
            self.close_sent = true;
        }
    }

    /// For a session left idle (a pooled upstream connection): takes in what arrived
    /// meanwhile (session tickets, say) without blocking; false when the peer closed,
    /// spoke out of turn or broke the protocol, so the connection cannot be reused.
    pub fn idle_intact(&mut self, socket: &mut dyn Read) -> bool {
        loop {
            match self.read_records(socket) {
                Ok(0) => return false,
                Ok(_) => {
                    let mut byte = [0u8; 1];
                    match self.session.reader().read(&mut byte) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        _ => return false, // plaintext, close_notify or the end
                    }
                }
                Err(TlsError::Io(e)) => return e.kind() == io::ErrorKind::WouldBlock,
                Err(TlsError::Tls(_)) => return false,
            }
        }
    }
}

impl TlsPump<ClientConnection> {
    /// A client session to an `https://` upstream at `host`, whose certificate must be
    /// valid for it (an IP literal as an IP address name) under `config`
    /// ([`Server::upstream_tls`](crate::Server::upstream_tls); without one, nothing is
    /// trusted).
    pub fn client(config: Option<&Arc<ClientConfig>>, host: &str) -> Result<Self, rustls::Error> {
        let config = config.ok_or_else(|| {
            rustls::Error::General("no TLS client configuration for https:// upstreams".into())
        })?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| rustls::Error::General(format!("invalid server name {host:?}")))?;
        Ok(Self::new(ClientConnection::new(Arc::clone(config), name)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{RootCertStore, ServerConnection};

    /// A client configuration trusting a certificate for `localhost`, and a server
    /// configuration presenting it.
    fn configs() -> (Arc<ClientConfig>, Arc<rustls::ServerConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(client), Arc::new(server))
    }

    /// A client session and a server session of [`configs`].
    fn pair() -> (TlsPump<ClientConnection>, TlsPump<ServerConnection>) {
        let (client, server) = configs();
        (
            TlsPump::client(Some(&client), "localhost").unwrap(),
            TlsPump::new(ServerConnection::new(server).unwrap()),
        )
    }

    /// Moves every record `from` holds into `to`.
    fn carry<A, B, DA: SideData, DB: SideData>(
        from: &mut TlsPump<A>,
        to: &mut TlsPump<B>,
    ) -> Result<usize, TlsError>
    where
        A: DerefMut<Target = ConnectionCommon<DA>>,
        B: DerefMut<Target = ConnectionCommon<DB>>,
    {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_records(&mut wire).unwrap();
        }
        let n = wire.len();
        if n > 0 {
            to.read_records(&mut wire.as_slice())?;
        }
        Ok(n)
    }

    /// A sink that keeps what it is given, and counts the times it was asked for room.
    #[derive(Default)]
    struct Kept {
        buf: Vec<u8>,
        got: Vec<u8>,
        eof: bool,
        asked: usize,
    }

    impl Sink for Kept {
        fn read_buf(&mut self) -> &mut [u8] {
            self.asked += 1;
            self.buf.resize(4, 0);
            &mut self.buf
        }
        fn commit(&mut self, n: usize, _: Instant) {
            self.got.extend_from_slice(&self.buf[..n]);
        }
        fn read_eof(&mut self, _: Instant) {
            self.eof = true;
        }
    }

    #[test]
    fn plaintext_crosses_both_ways_and_the_close_is_seen() {
        let (mut client, mut server) = pair();
        let now = Instant::now();
        assert_eq!(
            client.send(b"request").unwrap(),
            7,
            "held until the handshake"
        );
        while client.is_handshaking() || server.is_handshaking() {
            carry(&mut client, &mut server).unwrap();
            carry(&mut server, &mut client).unwrap();
        }
        carry(&mut client, &mut server).unwrap();
        let mut kept = Kept::default();
        assert_eq!(server.deliver(&mut kept, now).unwrap(), Input::Data);
        assert_eq!(kept.got, b"request", "in pieces the sink's size");
        assert_eq!(
            kept.asked, 2,
            "not asked again once the plaintext is all taken"
        );
        assert!(!server.has_plaintext());
        server.send(b"answer").unwrap();
        server.close();
        server.close();
        carry(&mut server, &mut client).unwrap();
        let mut kept = Kept::default();
        assert_eq!(client.deliver(&mut kept, now).unwrap(), Input::Eof);
        assert_eq!((kept.got.as_slice(), kept.eof), (&b"answer"[..], true));
        assert!(server.close_sent());
    }

    #[test]
    fn an_untrusted_certificate_fails_with_rustls_reason() {
        let (mut client, _) = pair();
        let (_, mut stranger) = pair();
        carry(&mut client, &mut stranger).unwrap();
        let error = loop {
            if let Err(e) = carry(&mut stranger, &mut client) {
                break e;
            }
        };
        let TlsError::Tls(reason @ rustls::Error::InvalidCertificate(_)) = &error else {
            panic!("{error:?}");
        };
        assert!(
            error.to_string().starts_with("invalid peer certificate"),
            "{reason}"
        );
        assert!(client.wants_write(), "the alert is queued");
    }

    #[test]
    fn a_client_session_names_its_upstream() {
        let (config, _) = configs();
        assert!(TlsPump::client(Some(&config), "localhost").is_ok());
        assert!(TlsPump::client(Some(&config), "::1").is_ok(), "an IP name");
        let none = TlsPump::client(None, "localhost").unwrap_err();
        assert!(
            none.to_string().contains("no TLS client configuration"),
            "{none}"
        );
        let bad = TlsPump::client(Some(&config), "not a name").unwrap_err();
        assert!(bad.to_string().contains("invalid server name"), "{bad}");
    }

    /// A socket in memory: reads take what the peer sent, or would block.
    #[derive(Default)]
    struct Duplex {
        inbound: Vec<u8>,
        outbound: Vec<u8>,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.inbound.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.inbound.len());
            buf[..n].copy_from_slice(&self.inbound[..n]);
            self.inbound.drain(..n);
            Ok(n)
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.outbound.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_proxied_request_crosses_an_upstream_tls_session() {
        use crate::fs::MemoryFs;
        use crate::request::PeerInfo;
        use crate::server::Server;
        use std::time::SystemTime;

        let (client_config, server_config) = configs();
        let now = Instant::now();
        let mut builder =
            Server::builder_with_fs((now, SystemTime::UNIX_EPOCH), Arc::new(MemoryFs::new()));
        builder
            .bind_proxy("/px/", "https://localhost:8443/")
            .unwrap();
        builder.upstream_tls(Arc::clone(&client_config));
        let server = builder.build();
        let mut conn = Connection::new(Arc::clone(&server), PeerInfo::default(), now);
        conn.feed(b"GET /px/a HTTP/1.1\r\nHost: f\r\n\r\n", now);
        let connect = conn.upstream().unwrap().poll_connect().unwrap();
        assert!(connect.tls);
        let mut pump = TlsPump::client(server.upstream_tls(), &connect.host).unwrap();
        conn.upstream().unwrap().connected(now);
        let mut upstream = TlsPump::new(ServerConnection::new(server_config).unwrap());
        let mut socket = Duplex::default();
        let mut seen = Kept::default();
        for _ in 0..10 {
            let mut up = conn.upstream().unwrap();
            pump.transfer(&mut socket, &mut up, now).unwrap();
            let sent = std::mem::take(&mut socket.outbound);
            if !sent.is_empty() {
                upstream.read_records(&mut sent.as_slice()).unwrap();
            }
            upstream.deliver(&mut seen, now).unwrap();
            if seen.got.ends_with(b"\r\n\r\n") && !upstream.close_sent() {
                upstream
                    .send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
                upstream.close();
            }
            while upstream.wants_write() {
                upstream.write_records(&mut socket.inbound).unwrap();
            }
        }
        let request = String::from_utf8_lossy(&seen.got).into_owned();
        assert!(
            request.starts_with("GET /a HTTP/1.1\r\nHost: localhost:8443\r\n"),
            "{request}"
        );
        let answer =
            String::from_utf8_lossy(&crate::testing::drain(&mut conn, now, None)).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok"),
            "{answer}"
        );
    }

    #[test]
    fn an_idle_session_is_intact_until_the_peer_speaks_or_closes() {
        let (mut client, mut server) = pair();
        while client.is_handshaking() || server.is_handshaking() {
            carry(&mut client, &mut server).unwrap();
            carry(&mut server, &mut client).unwrap();
        }
        let mut quiet = io::Cursor::new(Vec::new());
        struct Blocked;
        impl Read for Blocked {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
        assert!(client.idle_intact(&mut Blocked), "nothing arrived");
        assert!(!client.idle_intact(&mut quiet), "the end of the stream");
        server.send(b"stray").unwrap();
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_records(&mut wire).unwrap();
        }
        assert!(!client.idle_intact(&mut wire.as_slice().chain(Blocked)));
    }
}
