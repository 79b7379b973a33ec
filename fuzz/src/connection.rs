//! `connection`: arbitrary bytes, split at arbitrary points, through a whole
//! [`Connection`], with output drained in arbitrary amounts.
//!
//! Properties: no panic; the output is a sequence of complete `HTTP/1.1` responses; once
//! [`Connection::is_closed`] holds, nothing more comes out; the connection never stalls
//! (input left, nothing to send, no job, yet not closed); and without injected timeouts
//! the output is byte-identical to the output for the same input fed whole.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use quick_server_core::dynamic::{Args, Handler};
use quick_server_core::fs::MemoryFs;
use quick_server_core::Method;
use quick_server_core::{Body, Connection, PeerInfo, Request, Response, Server, Transmit};

/// Larger than the core's inline limit (32 KiB), so it leaves as a file region.
const BIG_FILE: usize = 40 * 1024;

/// The first two bytes seed the schedule; the rest is what the peer sends.
///
/// Seed bit 0 selects chaos mode: timeouts at advancing instants, `shutdown` and an
/// early `read_eof` are injected, and the whole-versus-split comparison is skipped (the
/// answers legitimately depend on time then). Bit 1 makes the peer half-close at the end.
pub fn check(data: &[u8]) {
    let [a, b, input @ ..] = data else { return };
    let seed = u16::from_le_bytes([*a, *b]);
    let chaos = seed & 1 == 1;
    let eof_at_end = seed & 2 == 2;
    let (server, start) = server();

    let split = Run::new(server, start).split(input, seed, chaos, eof_at_end);
    walk_responses(&split.wire, split.timed_out);
    if !chaos {
        let whole = Run::new(server, start).whole(input, eof_at_end);
        walk_responses(&whole.wire, false);
        assert!(
            whole.wire == split.wire,
            "whole and split output differ:\nwhole: {:?}\nsplit: {:?}",
            String::from_utf8_lossy(&whole.wire),
            String::from_utf8_lossy(&split.wire)
        );
        assert_eq!(whole.conn.is_closed(), split.conn.is_closed());
    }
}

/// One server for every input, with a few files bound at `/` and two dynamic routes
/// (answered through jobs), and the instant its wall clock anchor refers to (`Date` is
/// then always the epoch).
fn server() -> (&'static Arc<Server>, Instant) {
    static SERVER: OnceLock<(Arc<Server>, Instant)> = OnceLock::new();
    let (server, start) = SERVER.get_or_init(|| {
        let epoch = SystemTime::UNIX_EPOCH;
        let mut fs = MemoryFs::new();
        fs.insert("/www/index.html", "<h1>index</h1>", epoch);
        fs.insert("/www/a.txt", "hello", epoch);
        fs.insert("/www/empty", "", epoch);
        fs.insert("/www/.hidden", "secret", epoch);
        fs.insert("/www/sub/b.json", "{\"b\": 1}", epoch);
        fs.insert("/www/big.bin", vec![b'z'; BIG_FILE], epoch);
        fs.insert("/outside.txt", "outside", epoch);
        fs.link("/www/escape", "/outside.txt");
        let start = Instant::now();
        let mut builder = Server::builder_with_fs((start, epoch), Arc::new(fs));
        if let Err(e) = builder.files().bind_path("/", "/www") {
            panic!("binding / failed: {e}");
        }
        let summary: Handler = Arc::new(|request: &Request, args: &mut Args| {
            let text = format!(
                "body {} paths {:?} query {} post {} files {:?}",
                request.body().len(),
                args.paths,
                args.query.len(),
                args.post,
                args.files.keys().collect::<Vec<_>>(),
            );
            Response::new(200, Body::Bytes(text.into_bytes()))
        });
        builder
            .route(Method::Post, "/echo", None, Arc::clone(&summary))
            .route(Method::Get, "/api", None, summary)
            .max_file_size(64);
        (builder.build(), start)
    });
    (server, *start)
}

/// A small deterministic generator (SplitMix64) for the schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A piece length: mostly tiny, sometimes large.
    fn piece_len(&mut self) -> usize {
        match self.below(8) {
            0..=4 => 1 + self.below(8) as usize,
            5 | 6 => 1 + self.below(64) as usize,
            _ => 1 + self.below(20_000) as usize,
        }
    }
}

/// A connection under test and everything it wrote.
struct Run {
    conn: Connection,
    now: Instant,
    wire: Vec<u8>,
    closed_seen: bool,
    timed_out: bool,
}

impl Run {
    fn new(server: &Arc<Server>, now: Instant) -> Self {
        let conn = Connection::new(Arc::clone(server), PeerInfo::default(), now);
        Self {
            conn,
            now,
            wire: Vec::new(),
            closed_seen: false,
            timed_out: false,
        }
    }

    /// Feeds as much as the connection takes at once, drains everything, runs the jobs,
    /// and repeats until the input is used up or the connection closed.
    fn whole(mut self, mut input: &[u8], eof_at_end: bool) -> Self {
        loop {
            let taken = self.conn.feed(input, self.now);
            input = input.get(taken..).unwrap_or_default();
            self.after_mutation();
            let moved = self.drain(usize::MAX) | self.run_jobs();
            if input.is_empty() {
                break;
            }
            if taken == 0 && !moved {
                self.assert_not_stalled();
                break;
            }
        }
        self.finish(eof_at_end)
    }

    /// Feeds pieces of random size, draining random amounts and running jobs in between;
    /// in chaos mode also injects timeouts, `shutdown` and `read_eof`.
    fn split(mut self, mut input: &[u8], seed: u16, chaos: bool, eof_at_end: bool) -> Self {
        let mut rng = Rng(u64::from(seed));
        let mut idle_rounds = 0;
        while !input.is_empty() && idle_rounds < 4 {
            let piece = rng.piece_len().min(input.len());
            let taken = input
                .get(..piece)
                .map_or(0, |p| self.conn.feed(p, self.now));
            input = input.get(taken..).unwrap_or_default();
            self.after_mutation();
            let mut moved = taken > 0;
            match rng.below(4) {
                0 => {}
                1 => moved |= self.drain(usize::MAX),
                _ => moved |= self.drain(1 + rng.below(300) as usize),
            }
            if rng.below(2) == 0 {
                moved |= self.run_jobs();
            }
            if chaos {
                self.chaos_step(&mut rng);
            }
            if moved {
                idle_rounds = 0;
            } else {
                // Nothing moved this round; a full drain and the jobs must unblock it.
                moved = self.drain(usize::MAX) | self.run_jobs();
                if !moved {
                    idle_rounds += 1;
                    if !chaos {
                        self.assert_not_stalled();
                    }
                }
            }
        }
        self.finish(eof_at_end)
    }

    /// Drains, runs jobs until quiet, optionally half-closes, and checks the end state.
    fn finish(mut self, eof_at_end: bool) -> Self {
        while self.drain(usize::MAX) | self.run_jobs() {}
        if eof_at_end {
            self.conn.read_eof(self.now);
            self.after_mutation();
            while self.drain(usize::MAX) | self.run_jobs() {}
            assert!(
                self.conn.is_closed(),
                "not closed after EOF and a full drain"
            );
        }
        assert!(self.conn.poll_transmit().is_none());
        self
    }

    /// One random injection of time, shutdown or EOF.
    fn chaos_step(&mut self, rng: &mut Rng) {
        match rng.below(16) {
            0..=3 => {
                let step = match rng.below(5) {
                    0 => Duration::from_millis(1),
                    1 => Duration::from_secs(1),
                    2 => Duration::from_secs(11),
                    3 => Duration::from_secs(31),
                    _ => Duration::from_secs(61),
                };
                self.now += step;
                self.timed_out = true;
                self.conn.handle_timeout(self.now);
            }
            4 => {
                if let Some(deadline) = self.conn.poll_timeout() {
                    self.now = self.now.max(deadline);
                    self.timed_out = true;
                    self.conn.handle_timeout(self.now);
                }
            }
            5 => self.conn.shutdown(self.now),
            6 => self.conn.read_eof(self.now),
            _ => return,
        }
        self.after_mutation();
    }

    /// Writes up to `budget` bytes of what the connection queued; returns whether any
    /// byte left.
    fn drain(&mut self, mut budget: usize) -> bool {
        let mut moved = false;
        while budget > 0 {
            let n = match self.conn.poll_transmit() {
                None => break,
                Some(Transmit::Bytes(bytes)) => {
                    let n = bytes.len().min(budget);
                    self.wire
                        .extend_from_slice(bytes.get(..n).unwrap_or_default());
                    n
                }
                Some(Transmit::File(region)) => {
                    let want = usize::try_from(region.len)
                        .unwrap_or(usize::MAX)
                        .min(budget)
                        .min(8192);
                    let mut buf = vec![0; want];
                    let n = match region.file.read_at(&mut buf, region.offset) {
                        Ok(n) => n,
                        Err(e) => panic!("memory file region unreadable: {e}"),
                    };
                    assert!(n > 0 || want == 0, "file region {region:?} yields no bytes");
                    self.wire
                        .extend_from_slice(buf.get(..n).unwrap_or_default());
                    n
                }
            };
            assert!(n > 0, "poll_transmit offered an empty transmit");
            budget -= n;
            self.conn.transmitted(n, self.now);
            self.after_mutation();
            moved = true;
        }
        moved
    }

    /// Runs every queued job and completes it; returns whether there was any.
    fn run_jobs(&mut self) -> bool {
        let mut ran = false;
        while let Some(job) = self.conn.poll_job() {
            let done = job.run();
            self.conn.complete(done, self.now);
            self.after_mutation();
            ran = true;
        }
        ran
    }

    /// Invariants that hold after every call.
    fn after_mutation(&mut self) {
        let conn = &self.conn;
        assert_eq!(
            conn.wants_write(),
            conn.poll_transmit().is_some(),
            "wants_write disagrees"
        );
        if self.closed_seen {
            assert!(conn.is_closed(), "a closed connection reopened");
        }
        if conn.is_closed() {
            self.closed_seen = true;
            assert!(conn.poll_transmit().is_none(), "output after close");
            assert!(!conn.wants_read(), "a closed connection wants input");
            assert!(
                conn.poll_timeout().is_none(),
                "a closed connection wants a timer"
            );
        }
    }

    /// Input is left and the connection took none of it, with nothing to send and no
    /// job to run: it must have finished rather than hang.
    fn assert_not_stalled(&self) {
        assert!(
            self.conn.is_closed(),
            "connection stalled: refuses input, sends nothing, runs nothing, yet is open"
        );
    }
}

/// Checks that `wire` is a sequence of whole responses, each starting with `HTTP/1.1 `.
/// The last may be cut short only when `may_truncate` (a timeout dropped the output).
fn walk_responses(mut wire: &[u8], may_truncate: bool) {
    while !wire.is_empty() {
        assert!(
            wire.starts_with(b"HTTP/1.1 ") || (may_truncate && b"HTTP/1.1 ".starts_with(wire)),
            "output does not start a response here: {:?}",
            String::from_utf8_lossy(wire.get(..wire.len().min(80)).unwrap_or_default())
        );
        let Some(head_len) = find(wire, b"\r\n\r\n").map(|at| at + 4) else {
            assert!(
                may_truncate,
                "unterminated response head: {:?}",
                String::from_utf8_lossy(wire)
            );
            return;
        };
        let head = String::from_utf8_lossy(wire.get(..head_len).unwrap_or_default()).into_owned();
        wire = wire.get(head_len..).unwrap_or_default();
        let status = head.get(9..12).and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            panic!("bad status line: {head:?}")
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            continue;
        }
        let field = |name: &str| {
            head.split("\r\n").skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        if field("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            wire = skip_chunked(wire, may_truncate);
            continue;
        }
        let Some(length) = field("content-length") else {
            // Close-delimited: the body runs to the end.
            return;
        };
        let Ok(length) = length.parse::<usize>() else {
            panic!("bad Content-Length in {head:?}")
        };
        // A HEAD answer announces a length but carries no body: the next response
        // follows at once (no file or error page served here starts like one).
        if length > 0 && (wire.is_empty() || wire.starts_with(b"HTTP/1.1 ")) {
            continue;
        }
        if wire.len() < length {
            assert!(
                may_truncate,
                "body shorter than Content-Length {length} in {head:?}"
            );
            return;
        }
        wire = wire.get(length..).unwrap_or_default();
    }
}

/// Skips a chunked body; returns what follows it.
fn skip_chunked(mut wire: &[u8], may_truncate: bool) -> &[u8] {
    loop {
        let Some(eol) = find(wire, b"\r\n") else {
            assert!(may_truncate, "unterminated chunk size line");
            return &[];
        };
        let line = String::from_utf8_lossy(wire.get(..eol).unwrap_or_default()).into_owned();
        let size = line
            .split(';')
            .next()
            .map(|s| usize::from_str_radix(s.trim(), 16));
        let Some(Ok(size)) = size else {
            panic!("bad chunk size line {line:?}")
        };
        wire = wire.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            // Trailer fields, then the empty line.
            let end = if wire.starts_with(b"\r\n") {
                Some(2)
            } else {
                find(wire, b"\r\n\r\n").map(|at| at + 4)
            };
            let Some(end) = end else {
                assert!(may_truncate, "unterminated trailer section");
                return &[];
            };
            return wire.get(end..).unwrap_or_default();
        }
        let Some(rest) = wire.get(size..).filter(|rest| rest.starts_with(b"\r\n")) else {
            assert!(may_truncate, "chunk of {size} bytes cut short");
            return &[];
        };
        wire = rest.get(2..).unwrap_or_default();
    }
}

/// The offset of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
