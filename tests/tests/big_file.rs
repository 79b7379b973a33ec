//! Issue 3, "large bodies leave memory flat": a 1 GiB file is served byte-exact on every
//! setup (std and mio, plain and TLS) while the resident memory of this process — the
//! servers run in it — grows by under 2 MiB, before/after and at the peak.
//!
//! The file is sparse (`set_len`) with a few markers written at known offsets, so it costs
//! no disk; the body is checked byte by byte as it streams in (zeros everywhere but the
//! markers) and never held in memory. The server's ETag reads the file once (expected;
//! one server is served by each transport in turn, so later setups find it cached) and
//! must equal Python's `zlib.crc32` of the same bytes.
//!
//! Setups run one after another so that their memory figures do not mix; the figures are
//! printed with `eprintln!` (`cargo test --test big_file -- --nocapture`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use quick_server_core::Server;
use quick_server_tests::{client_tls_config, Setup, TempDir, TestServer, Tuning, SETUPS_VAR};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

/// 1 GiB.
const LEN: u64 = 1 << 30;
/// The file's CRC-32 as Python computes it (zeros plus [`markers`]):
/// `crc = 0; for piece in pieces: crc = zlib.crc32(piece, crc)` -> `format(crc, "x")`.
const ETAG: &str = "\"cc42ef4\"";
/// How much the process may grow while serving.
const RSS_BUDGET_KIB: u64 = 2 * 1024;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 256 * 1024;

/// `(offset, bytes)` written into the sparse file: `@<offset in hex>@` at the start, in
/// the first page, past 192 KiB, in the middle and 11 bytes before the end.
fn markers() -> Vec<(u64, Vec<u8>)> {
    [0, 4093, 196_613, LEN / 2 - 3, LEN - 11]
        .into_iter()
        .map(|offset| (offset, format!("@{offset:x}@").into_bytes()))
        .collect()
}

/// The resident set size of this process in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Samples the RSS every few milliseconds until dropped; keeps the largest value.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(vm_rss_kib()));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(vm_rss_kib(), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the sampler thread");
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// A sparse file of [`LEN`] bytes holding [`markers`].
fn make_big_file(path: &Path) {
    let file = std::fs::File::create(path).expect("create the big file");
    file.set_len(LEN).expect("make it 1 GiB");
    for (offset, bytes) in markers() {
        file.write_all_at(&bytes, offset).expect("write a marker");
    }
}

/// A connection that does not keep what it reads.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(server: &TestServer) -> Box<dyn Stream> {
    let socket = TcpStream::connect(server.addr()).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    if server.setup().tls {
        let name = ServerName::try_from("localhost").expect("a server name");
        let session = ClientConnection::new(client_tls_config(), name).expect("a TLS client");
        Box::new(StreamOwned::new(session, socket))
    } else {
        Box::new(socket)
    }
}

/// A response head, and the body bytes that came with it.
struct Head {
    status: u16,
    fields: Vec<(String, String)>,
    early_body: Vec<u8>,
}

impl Head {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> u64 {
        self.field("content-length")
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length")
    }
}

/// Sends `request` and reads up to the end of the response head.
fn send_and_read_head(stream: &mut dyn Stream, request: &str) -> Head {
    stream.write_all(request.as_bytes()).expect("send");
    stream.flush().expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).expect("read the head");
        assert!(n > 0, "closed before the end of the head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    Head {
        status,
        fields,
        early_body: buf.split_off(end + 4),
    }
}

/// Zeros to compare the holes of the file with (slice comparison is a `memcmp`, fast
/// even in a debug build).
static ZEROS: [u8; READ_CHUNK] = [0; READ_CHUNK];

/// Checks file bytes `data` found at `offset`: zeros except where a marker lies
/// (`markers` sorted by offset, not overlapping).
fn check_piece(offset: u64, data: &[u8], markers: &[(u64, Vec<u8>)]) {
    let end = offset + data.len() as u64;
    let mut at = offset;
    let expect = |from: u64, want: &[u8]| {
        let start = usize::try_from(from - offset).expect("inside the piece");
        let got = &data[start..start + want.len()];
        if got != want {
            let bad = got.iter().zip(want).position(|(a, b)| a != b);
            panic!("wrong byte at offset {}", from + bad.unwrap_or(0) as u64);
        }
    };
    for (mark, bytes) in markers {
        let mark_end = mark + bytes.len() as u64;
        if mark_end <= at || *mark >= end {
            continue;
        }
        if *mark > at {
            expect(
                at,
                &ZEROS[..usize::try_from(mark - at).expect("a small gap")],
            );
        }
        let (from, to) = ((*mark).max(at), mark_end.min(end));
        expect(from, &bytes[(from - mark) as usize..(to - mark) as usize]);
        at = to;
    }
    if at < end {
        expect(
            at,
            &ZEROS[..usize::try_from(end - at).expect("a small gap")],
        );
    }
}

/// Reads `len` body bytes starting at file offset `offset`, checking each as it comes;
/// returns how many arrived.
fn stream_body(stream: &mut dyn Stream, head: &Head, offset: u64, len: u64) -> u64 {
    let markers = markers();
    let mut got = head.early_body.len() as u64;
    check_piece(offset, &head.early_body, &markers);
    let mut buf = vec![0; READ_CHUNK];
    while got < len {
        let want = usize::try_from(len - got).map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading the body after {got} bytes: {e}"),
        };
        check_piece(offset + got, &buf[..n], &markers);
        got += n as u64;
    }
    got
}

/// The whole body of a small response.
fn small_body(stream: &mut dyn Stream, head: &Head) -> Vec<u8> {
    let mut body = head.early_body.clone();
    let len = usize::try_from(head.content_length()).expect("a small body");
    let start = body.len();
    body.resize(len, 0);
    stream
        .read_exact(&mut body[start..])
        .expect("read the body");
    body
}

/// What serving the file cost on one setup.
struct Figures {
    before_kib: u64,
    after_kib: u64,
    peak_kib: u64,
    elapsed: Duration,
    /// Until the head arrived (the first setup: after the ETag's one read of the file).
    first_byte: Duration,
}

fn serve_big_file(setup: Setup, server: &Arc<Server>) -> Figures {
    let server = TestServer::serve(setup, Tuning::default(), Arc::clone(server));
    let mut stream = connect(&server);
    // Warm up: thread pools, TLS session, buffers — everything but the big body.
    for _ in 0..3 {
        let head = send_and_read_head(&mut *stream, "GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(head.status, 200);
        assert_eq!(small_body(&mut *stream, &head), b"abc");
    }
    let before_kib = vm_rss_kib();
    let sampler = PeakSampler::start();
    let started = Instant::now();
    let head = send_and_read_head(&mut *stream, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200, "{setup}: {:?}", head.fields);
    assert_eq!(head.content_length(), LEN, "{setup}");
    assert_eq!(head.field("etag"), Some(ETAG), "{setup}");
    let first_byte = started.elapsed();
    let got = stream_body(&mut *stream, &head, 0, LEN);
    assert_eq!(got, LEN, "{setup}: body length");
    let elapsed = started.elapsed();
    // The connection is still usable, and a range deep in the file is exact.
    let (from, to) = (LEN / 2 - 3, LEN / 2 + 6);
    let request = format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={from}-{to}\r\n\r\n");
    let head = send_and_read_head(&mut *stream, &request);
    assert_eq!(head.status, 206, "{setup}");
    assert_eq!(
        head.field("content-range"),
        Some(format!("bytes {from}-{to}/{LEN}").as_str())
    );
    assert_eq!(stream_body(&mut *stream, &head, from, to - from + 1), 10);
    let head = send_and_read_head(
        &mut *stream,
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-11\r\n\r\n",
    );
    assert_eq!(head.status, 206, "{setup}");
    assert_eq!(stream_body(&mut *stream, &head, LEN - 11, 11), 11);
    let peak_kib = sampler.finish().max(vm_rss_kib());
    let after_kib = vm_rss_kib();
    drop(stream);
    drop(server);
    Figures {
        before_kib,
        after_kib,
        peak_kib,
        elapsed,
        first_byte,
    }
}

#[test]
fn one_gib_file_with_flat_memory() {
    let dir = TempDir::new();
    dir.write("small.txt", "abc");
    make_big_file(&dir.path().join("big.bin"));
    // One server for every setup: the ETag is read once (in the first setup's window),
    // then comes from the cache.
    let mut builder = Server::builder((Instant::now(), SystemTime::now()));
    builder
        .files()
        .bind_path("/", dir.path())
        .expect("bind the folder");
    let server = builder.build();
    let filter = std::env::var(SETUPS_VAR).ok();
    let mut over = Vec::new();
    for setup in Setup::ALL {
        if filter.as_deref().is_some_and(|f| !setup.selected_by(f)) {
            continue;
        }
        let f = serve_big_file(setup, &server);
        let (growth, peak_growth) = (
            f.after_kib.saturating_sub(f.before_kib),
            f.peak_kib.saturating_sub(f.before_kib),
        );
        eprintln!(
            "{setup}: 1 GiB in {:.2?} (head after {:.2?}); VmRSS before {} KiB, after {} KiB \
             (+{growth} KiB), peak {} KiB (+{peak_growth} KiB)",
            f.elapsed, f.first_byte, f.before_kib, f.after_kib, f.peak_kib,
        );
        if peak_growth >= RSS_BUDGET_KIB {
            over.push(format!("{setup}: +{peak_growth} KiB at the peak"));
        }
    }
    assert!(
        over.is_empty(),
        "RSS grew by 2 MiB or more: {}",
        over.join(", ")
    );
}

/// Reading a big file once for its ETag is expected, but it must not hold up other
/// clients: the first request for `big.bin` is sent, and while its head is pending a
/// second connection asks for a small file. That answer must not wait for the ETag.
#[test]
fn computing_a_big_etag_does_not_stall_other_clients() {
    let dir = TempDir::new();
    dir.write("small.txt", "abc");
    make_big_file(&dir.path().join("big.bin"));
    let filter = std::env::var(SETUPS_VAR).ok();
    let mut stalled = Vec::new();
    for setup in Setup::ALL.into_iter().filter(|s| !s.tls) {
        if filter.as_deref().is_some_and(|f| !setup.selected_by(f)) {
            continue;
        }
        // A new server each time: an empty ETag cache.
        let root = dir.path().to_owned();
        let server = TestServer::start(setup, move |mut builder| {
            builder
                .files()
                .bind_path("/", root)
                .expect("bind the folder");
            builder
        });
        let mut big = connect(&server);
        let mut small = connect(&server);
        let started = Instant::now();
        big.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send");
        thread::sleep(Duration::from_millis(50));
        let head = send_and_read_head(&mut *small, "GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(small_body(&mut *small, &head), b"abc");
        let small_at = started.elapsed();
        let head = send_and_read_head(&mut *big, "");
        assert_eq!(head.field("etag"), Some(ETAG), "{setup}");
        let big_at = started.elapsed();
        eprintln!("{setup}: small answered after {small_at:.2?}, big head after {big_at:.2?}");
        if small_at * 2 > big_at {
            stalled.push(format!(
                "{setup}: the small file waited {small_at:.2?} (big head at {big_at:.2?})"
            ));
        }
    }
    assert!(stalled.is_empty(), "{}", stalled.join("; "));
}
