//! Load and fault tests of issue 10, all on 127.0.0.1 and bounded in time:
//!
//! - Slowloris connections dribbling a request head, one byte every 100-200 ms, while a
//!   normal client is served, each request within a client timeout shorter than the head
//!   deadline (so no request waited for a dribbler), on mio with 2,000 dribblers and on std
//!   (a thread per connection, up to 1,024) with 500; the head deadline cuts them all. The
//!   latencies are reported, not asserted: speed belongs to the bench.
//! - More keep-alive connections than std keeps warm threads, all answered at once.
//! - 10,000 idle keep-alive connections held by the mio transport (the clients live in a
//!   child process, so each process stays under its descriptor limit), with the server's RSS.
//! - Clients vanishing mid-upload and mid-download leak neither descriptors nor memory.
//! - An upload over the body limit gets 413 and a close.
//!
//! The tests measure the whole process (descriptors, RSS), so they take a lock and run one
//! at a time. Their figures go straight to stderr, past the harness's capture, so the CI
//! log keeps them.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use quick_server_core::dynamic::{Args, Handler};
use quick_server_core::Method as RouteMethod;
use quick_server_core::{Body, Limits, Request, Response as CoreResponse};
use quick_server_tests::{
    each_setup, parse_response, Client, Parsed, Setup, TempDir, TestServer, Transport, Tuning,
};

const HELLO: &[u8] = b"hello\n";
const GET_HELLO: &[u8] = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";
/// Size of `/big.bin`, the file downloads are cut short in.
const BIG: usize = 8 << 20;

// ----- measuring the process ----------------------------------------------------------------

/// The tests measure the whole process: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the lock, and pins the allocator's thresholds once per process: glibc raises its
/// mmap and trim thresholds as large buffers come and go (up to 32 and 64 MiB), after which
/// each thread's arena keeps tens of MiB of freed memory resident and RSS no longer says
/// what is live. Fixed thresholds make RSS track live memory.
fn serial() -> MutexGuard<'static, ()> {
    static PIN: Once = Once::new();
    PIN.call_once(|| {
        #[cfg(target_env = "gnu")]
        // SAFETY: mallopt takes plain integers and only changes allocator settings.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        }
    });
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes to the process's stderr directly, past the harness's output capture.
fn report(text: &str) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
    let _ = stderr.flush();
}

/// Resident set size of this process, in KiB (`VmRSS` of /proc/self/status), after
/// handing the allocator's free pages back to the system, so that memory freed by an
/// earlier test does not hide what a later one holds.
fn rss_kib() -> u64 {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers; it only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of this process.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Open descriptors less one per thread of the std transport: each of its pool threads
/// waits in an epoll set of its own that lives as long as the thread (an extra thread
/// retires after 30 s idle), so a pool that grew holds no leaked descriptor.
fn held_fd_count() -> usize {
    // Thread names are cut to 15 bytes: every std thread reads "quick-server-st".
    let std_threads = std::fs::read_dir("/proc/self/task").map_or(0, |tasks| {
        tasks
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.starts_with("quick-server-st"))
            })
            .count()
    });
    fd_count().saturating_sub(std_threads)
}

/// Open descriptors once sockets still closing (an earlier test's server, a warm-up's
/// connections) are gone: the count when it has not changed for 300 ms (at most 5 s).
fn settled_fd_count() -> usize {
    let mut last = fd_count();
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && stable_since.elapsed() < Duration::from_millis(300) {
        thread::sleep(Duration::from_millis(50));
        let now = fd_count();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    last
}

/// Threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |dir| dir.count())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Signed difference in MiB, for printing.
fn delta_mib(before: u64, after: u64) -> f64 {
    (after as f64 - before as f64) / 1024.0
}

/// Raises the soft descriptor limit towards `want` (up to the hard limit); returns it.
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    if limit.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

/// Waits up to `within` for `done`; true if it came.
fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The nearest-rank percentile `p` (0-100) of `samples`.
fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ----- the server ---------------------------------------------------------------------------

/// A server of a folder with `/hello.txt` and `/big.bin`, and a `POST /upload` route that
/// buffers the body and answers its length. The server stops before the folder goes.
struct Site {
    server: TestServer,
    _dir: TempDir,
}

fn site(setup: Setup, limits: Limits, tuning: Tuning) -> Site {
    let dir = TempDir::new();
    dir.write("hello.txt", HELLO);
    dir.write("big.bin", vec![b'z'; BIG]);
    let root = dir.path().to_owned();
    let upload: Handler = Arc::new(|request: &Request, _args: &mut Args| {
        CoreResponse::new(
            200,
            Body::Bytes(request.body().len().to_string().into_bytes()),
        )
    });
    let server = TestServer::start_tuned(setup, tuning, move |mut builder| {
        builder
            .files()
            .bind_path("/", root)
            .expect("bind the folder");
        builder.route(RouteMethod::Post, "/upload", None, upload);
        builder.limits(limits);
        builder
    });
    Site { server, _dir: dir }
}

fn plain(transport: Transport) -> Setup {
    Setup {
        transport,
        tls: false,
    }
}

/// How one timed request of the normal client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 200 with the file, after this long.
    Served(Duration),
    /// Another status (503 when the server is full).
    Refused(u16, Duration),
    /// The connection closed (or was reset) without an answer.
    Dropped(Duration),
    /// Nothing within the timeout.
    TimedOut,
}

/// A new plain connection, `GET /hello.txt`, timed from before the connect to the end of
/// the answer.
fn timed_get(addr: SocketAddr, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return Outcome::Dropped(started.elapsed());
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(GET_HELLO).is_err() {
        return Outcome::Dropped(started.elapsed());
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Outcome::TimedOut;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Outcome::Dropped(started.elapsed()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Outcome::TimedOut
            }
            Err(_) => return Outcome::Dropped(started.elapsed()),
        }
        if let Ok(Parsed::Complete(response, _)) = parse_response(&buf, false, false) {
            return match response.status {
                200 if response.body == HELLO => Outcome::Served(started.elapsed()),
                status => Outcome::Refused(status, started.elapsed()),
            };
        }
    }
}

/// `count` timed requests `gap` apart.
fn normal_client(addr: SocketAddr, count: usize, gap: Duration, timeout: Duration) -> Vec<Outcome> {
    (0..count)
        .map(|_| {
            let outcome = timed_get(addr, timeout);
            thread::sleep(gap);
            outcome
        })
        .collect()
}

/// Latencies of the served requests, and a one-line account of all of them.
fn summarize(outcomes: &[Outcome]) -> (Vec<Duration>, String) {
    let served: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Served(d) => Some(*d),
            _ => None,
        })
        .collect();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Refused(..)))
        .count();
    let dropped = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Dropped(_)))
        .count();
    let timed_out = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::TimedOut))
        .count();
    let mut text = format!(
        "{} served, {refused} refused, {dropped} dropped, {timed_out} timed out",
        served.len()
    );
    let each: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Served(d) => format!("{:.1}", ms(*d)),
            Outcome::Refused(status, d) => format!("{status}@{:.1}", ms(*d)),
            Outcome::Dropped(d) => format!("x@{:.1}", ms(*d)),
            Outcome::TimedOut => "t".to_owned(),
        })
        .collect();
    text.push_str(&format!(" (ms: {})", each.join(" ")));
    if !served.is_empty() {
        text.push_str(&format!(
            "; served in p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(&served, 50)),
            ms(percentile(&served, 99)),
            ms(percentile(&served, 100))
        ));
    }
    (served, text)
}

// ----- slowloris ----------------------------------------------------------------------------

/// Dribblers against mio, past the default `max_connections` (the test raises it).
const SLOW_COUNT: usize = 2_000;
/// Dribblers against std: below its `max_threads` and `max_connections`.
const SLOW_COUNT_STD: usize = 500;
/// What a dribbler sends, one byte at a time; then `a`s forever.
const SLOW_HEAD: &[u8] = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ";

/// One slowloris connection.
struct Dribbler {
    stream: TcpStream,
    sent: usize,
    due: Instant,
    every: Duration,
    /// A write failed: the server closed the connection.
    cut: bool,
    got: Vec<u8>,
}

/// Opens `count` connections that will each send a byte every 100-200 ms, starting within
/// the first 150 ms.
fn open_dribblers(addr: SocketAddr, count: usize) -> Vec<Dribbler> {
    let now = Instant::now();
    (0..count)
        .map(|i| {
            if i % 25 == 24 {
                // The test server listens with a backlog of 128: a faster burst of connects
                // would overflow it and cost a 1 s SYN retry.
                thread::sleep(Duration::from_millis(2));
            }
            let stream = TcpStream::connect(addr).expect("connect a dribbler");
            stream.set_nodelay(true).expect("nodelay");
            stream.set_nonblocking(true).expect("non-blocking");
            let offset = u64::try_from(i % 150).unwrap_or(0);
            let spread = u64::try_from(i.wrapping_mul(7919) % 101).unwrap_or(0);
            Dribbler {
                stream,
                sent: 0,
                due: now + Duration::from_millis(offset),
                every: Duration::from_millis(100 + spread),
                cut: false,
                got: Vec::new(),
            }
        })
        .collect()
}

/// Dribbles until `stop`; counts the connections the server cut in `cut`.
fn dribble(mut dribblers: Vec<Dribbler>, stop: &AtomicBool, cut: &AtomicUsize) -> Vec<Dribbler> {
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for d in dribblers.iter_mut().filter(|d| !d.cut && d.due <= now) {
            let byte = SLOW_HEAD.get(d.sent).copied().unwrap_or(b'a');
            match d.stream.write(&[byte]) {
                Ok(1) => d.sent += 1,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    d.cut = true;
                    cut.fetch_add(1, Ordering::SeqCst);
                }
            }
            d.due += d.every;
        }
        thread::sleep(Duration::from_millis(5));
    }
    dribblers
}

/// What the dribblers got back once the attack ends.
#[derive(Debug, Default)]
struct Answers {
    timeout_408: usize,
    busy_503: usize,
    other: usize,
    closed_silently: usize,
    still_open: usize,
}

/// Reads what each dribbler was sent, for up to `within`, and sorts them by outcome.
fn collect_answers(dribblers: &mut [Dribbler], within: Duration) -> Answers {
    let deadline = Instant::now() + within;
    let mut done = vec![false; dribblers.len()];
    let mut chunk = [0u8; 1024];
    loop {
        for (d, done) in dribblers.iter_mut().zip(done.iter_mut()) {
            while !*done {
                match d.stream.read(&mut chunk) {
                    Ok(0) => *done = true,
                    Ok(n) => d.got.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => *done = true,
                }
            }
        }
        if done.iter().all(|d| *d) || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut answers = Answers::default();
    for (d, done) in dribblers.iter().zip(&done) {
        match (d.got.get(..12), done) {
            (Some(b"HTTP/1.1 408"), _) => answers.timeout_408 += 1,
            (Some(b"HTTP/1.1 503"), _) => answers.busy_503 += 1,
            (Some(_), _) => answers.other += 1,
            (None, true) => answers.closed_silently += 1,
            (None, false) => answers.still_open += 1,
        }
    }
    answers
}

/// The running attack: the dribbler thread and its counters.
struct Attack {
    started: Instant,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicUsize>,
    thread: thread::JoinHandle<Vec<Dribbler>>,
}

fn start_attack(addr: SocketAddr, count: usize) -> Attack {
    let started = Instant::now();
    let dribblers = open_dribblers(addr, count);
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let (stop2, cut2) = (Arc::clone(&stop), Arc::clone(&cut));
    let thread = thread::Builder::new()
        .name("dribbler".to_owned())
        .spawn(move || dribble(dribblers, &stop2, &cut2))
        .expect("spawn the dribbler thread");
    Attack {
        started,
        stop,
        cut,
        thread,
    }
}

impl Attack {
    fn finish(self) -> Vec<Dribbler> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the dribbler thread")
    }
}

/// The outcome a slowloris attack of `dribblers` connections must have: every one of the
/// normal client's `asked` requests served within its timeout, which is shorter than the
/// head deadline, and every dribbler cut at that deadline, nine in ten or more with a 408.
fn assert_served_and_cut(
    served: &[Duration],
    asked: usize,
    account: &str,
    answers: &Answers,
    dribblers: usize,
) {
    assert_eq!(served.len(), asked, "{account}");
    assert_eq!(
        answers.timeout_408 + answers.closed_silently,
        dribblers,
        "every dribbler is cut at the head deadline: {answers:?}"
    );
    assert!(answers.timeout_408 * 10 >= dribblers * 9, "{answers:?}");
}

#[test]
fn slowloris_on_mio_does_not_delay_a_normal_client() {
    let _serial = serial();
    raise_fd_limit(8_192);
    let header_timeout = Duration::from_secs(4);
    let limits = Limits {
        header_timeout,
        ..Limits::default()
    };
    // Room for every dribbler: past the default cap they would get 503, not a deadline.
    let tuning = Tuning {
        max_connections: Some(SLOW_COUNT + 100),
        ..Tuning::default()
    };
    let site = site(plain(Transport::Mio), limits, tuning);
    let addr = site.server.addr();
    let fds_before = fd_count();
    let attack = start_attack(addr, SLOW_COUNT);
    let opened_in = attack.started.elapsed();
    thread::sleep(Duration::from_millis(300));
    let held_by_server = fd_count().saturating_sub(fds_before + SLOW_COUNT);
    let outcomes = normal_client(addr, 20, Duration::from_millis(50), Duration::from_secs(2));
    let measured_at = attack.started.elapsed();
    let cut_early = attack.cut.load(Ordering::SeqCst);
    let (served, account) = summarize(&outcomes);

    // Past the head deadline every dribbler must have been answered 408 and closed.
    let settle = (attack.started + header_timeout + Duration::from_secs(2))
        .saturating_duration_since(Instant::now());
    thread::sleep(settle);
    let mut dribblers = attack.finish();
    let answers = collect_answers(&mut dribblers, Duration::from_secs(3));
    report(&format!(
        "load slowloris mio: {SLOW_COUNT} dribblers opened in {:.0} ms, {held_by_server} held \
         by the server; normal client during the attack: {account}; dribblers cut before \
         {:.1} s: {cut_early}; after the {} s head deadline: {answers:?}",
        ms(opened_in),
        measured_at.as_secs_f64(),
        header_timeout.as_secs()
    ));
    assert!(
        measured_at < header_timeout && cut_early == 0,
        "the server held every dribbler while the client was timed"
    );
    assert!(held_by_server >= SLOW_COUNT, "{held_by_server} held");
    assert_served_and_cut(&served, outcomes.len(), &account, &answers, SLOW_COUNT);
}

#[test]
fn slowloris_below_the_limits_on_std_does_not_delay_a_normal_client() {
    // The std transport gives each connection a worker thread of its own, starting one
    // whenever none is idle, up to `max_threads` (1,024): dribblers below that hold threads
    // but delay no one, and the head deadline cuts them. At `max_connections` (1,024)
    // queued or in service, a new connection gets 503 from the rejecter instead (see
    // `connections_over_the_limit_get_503` in foundation.rs), which bounds what an attack
    // can hold; this test stays below it so that its runtime and thread count stay small.
    let _serial = serial();
    raise_fd_limit(8_192);
    let header_timeout = Duration::from_secs(3);
    let limits = Limits {
        header_timeout,
        ..Limits::default()
    };
    let tuning = Tuning::default();
    let threads = tuning.threads.unwrap_or(4);
    let site = site(plain(Transport::Std), limits, tuning);
    let addr = site.server.addr();
    let (fds_before, threads_before) = (fd_count(), thread_count());
    let attack = start_attack(addr, SLOW_COUNT_STD);
    let opened_in = attack.started.elapsed();
    thread::sleep(Duration::from_millis(300));
    let held_by_server = fd_count().saturating_sub(fds_before + SLOW_COUNT_STD);
    let threads_started = thread_count().saturating_sub(threads_before);
    let outcomes = normal_client(addr, 20, Duration::from_millis(50), Duration::from_secs(2));
    let measured_at = attack.started.elapsed();
    let cut_early = attack.cut.load(Ordering::SeqCst);
    let (served, account) = summarize(&outcomes);

    // Past the head deadline every dribbler must have been answered 408 and closed.
    let settle = (attack.started + header_timeout + Duration::from_secs(2))
        .saturating_duration_since(Instant::now());
    thread::sleep(settle);
    let mut dribblers = attack.finish();
    let answers = collect_answers(&mut dribblers, Duration::from_secs(3));
    drop(dribblers);
    let after = normal_client(addr, 10, Duration::from_millis(20), Duration::from_secs(2));
    let (served_after, after_account) = summarize(&after);
    report(&format!(
        "load slowloris std ({threads} warm threads): {SLOW_COUNT_STD} dribblers opened in \
         {:.0} ms, {held_by_server} sockets held by the server, {threads_started} threads \
         started; normal client during the attack: {account}; dribblers cut before {:.1} s: \
         {cut_early}; after the {} s head deadline: {answers:?}; then: {after_account}",
        ms(opened_in),
        measured_at.as_secs_f64(),
        header_timeout.as_secs()
    ));
    assert!(
        measured_at < header_timeout && cut_early == 0,
        "the server held every dribbler while the client was timed"
    );
    // Each dribbler's socket, and its duplicate kept to force a shutdown.
    assert!(
        (SLOW_COUNT_STD..=2 * SLOW_COUNT_STD + 16).contains(&held_by_server),
        "{held_by_server} sockets held"
    );
    assert!(
        threads_started + threads >= SLOW_COUNT_STD,
        "a thread per dribbler: {threads_started} started"
    );
    assert_served_and_cut(&served, outcomes.len(), &account, &answers, SLOW_COUNT_STD);
    assert_eq!(served_after.len(), after.len(), "{after_account}");
}

// ----- more keep-alive connections than pool threads ----------------------------------------

/// Keep-alive connections held open at once, four times the pool threads of [`Tuning`].
const HELD_OPEN: usize = 16;

#[test]
fn more_keep_alive_connections_than_threads_are_all_served() {
    // A worker keeps its connection between keep-alive requests; the std pool must grow
    // rather than leave the connections beyond its warm threads unanswered in the queue.
    let _serial = serial();
    each_setup(|setup| {
        let tuning = Tuning {
            threads: Some(4),
            ..Tuning::default()
        };
        let site = site(setup, Limits::default(), tuning);
        let within = Duration::from_secs(3);
        let started = Instant::now();
        let mut clients: Vec<Client> = (0..HELD_OPEN)
            .map(|_| {
                let client = site.server.connect();
                let socket = client.socket();
                socket.set_read_timeout(Some(within)).expect("read timeout");
                socket
                    .set_write_timeout(Some(within))
                    .expect("write timeout");
                client
            })
            .collect();
        for round in 1..=2 {
            // Every request goes out before any answer is read; no connection closes.
            for client in &mut clients {
                client.send(GET_HELLO).expect("send a request");
            }
            for (index, client) in clients.iter_mut().enumerate() {
                let response = client.read_response().unwrap_or_else(|e| {
                    panic!("{setup}: connection {index} got no answer {round}: {e}")
                });
                assert_eq!(response.status, 200, "{setup}: connection {index}");
                assert_eq!(response.body, HELLO, "{setup}: connection {index}");
                assert!(!response.closes(), "{setup}: connection {index} stays open");
            }
        }
        let elapsed = started.elapsed();
        report(&format!(
            "load keep-alive {setup}: {HELD_OPEN} connections on 4 threads, 2 requests each, \
             in {:.0} ms",
            ms(elapsed)
        ));
        assert!(elapsed < 2 * within, "{setup}: {elapsed:?}");
    });
}

// ----- 10,000 idle keep-alive connections ---------------------------------------------------

const IDLE_COUNT: usize = 10_000;
/// Tells the holder process where to connect and how many connections to hold.
const HOLD_ADDR_VAR: &str = "QS_LOAD_HOLD_ADDR";
const HOLD_COUNT_VAR: &str = "QS_LOAD_HOLD_COUNT";

/// Not a test: the child process of `ten_thousand_idle_keep_alive_connections_on_mio`. It
/// opens the connections, makes one request on each, prints `held N`, and keeps them
/// until its stdin closes.
#[test]
#[ignore = "helper process of ten_thousand_idle_keep_alive_connections_on_mio"]
fn idle_connection_holder() {
    let (Ok(addr), Ok(count)) = (std::env::var(HOLD_ADDR_VAR), std::env::var(HOLD_COUNT_VAR))
    else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("an address");
    let count: usize = count.parse().expect("a count");
    raise_fd_limit(u64::try_from(count).unwrap_or(u64::MAX) + 256);
    let started = Instant::now();
    let per_thread = count.div_ceil(8);
    let failures = AtomicUsize::new(0);
    let clients: Vec<Client> = thread::scope(|scope| {
        let runs: Vec<_> = (0..8)
            .map(|t| {
                let n = per_thread.min(count.saturating_sub(t * per_thread));
                let failures = &failures;
                scope.spawn(move || {
                    let mut held = Vec::with_capacity(n);
                    for _ in 0..n {
                        let ok = Client::connect(addr, None).and_then(|mut client| {
                            client.send(GET_HELLO)?;
                            let response = client.read_response()?;
                            if response.status == 200 && !response.closes() {
                                Ok(client)
                            } else {
                                Err(io::Error::other(format!("status {}", response.status)))
                            }
                        });
                        match ok {
                            Ok(client) => held.push(client),
                            Err(_) => {
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    held
                })
            })
            .collect();
        runs.into_iter()
            .flat_map(|run| run.join().unwrap_or_default())
            .collect()
    });
    println!(
        "held {} failed {} in {} ms",
        clients.len(),
        failures.load(Ordering::SeqCst),
        started.elapsed().as_millis()
    );
    let _ = io::stdout().flush();
    // Hold until the parent closes our stdin.
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
    drop(clients);
}

#[test]
fn ten_thousand_idle_keep_alive_connections_on_mio() {
    let _serial = serial();
    // The server's side of every connection is in this process, the clients' in a child.
    let limit = raise_fd_limit(u64::try_from(IDLE_COUNT).unwrap_or(u64::MAX) + 1_024);
    let count = IDLE_COUNT.min(usize::try_from(limit.saturating_sub(1_024)).unwrap_or(0));
    let tuning = Tuning {
        max_connections: Some(IDLE_COUNT + 100),
        ..Tuning::default()
    };
    let site = site(plain(Transport::Mio), Limits::default(), tuning);
    let addr = site.server.addr();
    // Warm up the allocator and the loop before the baseline.
    let (_, warm) = summarize(&normal_client(
        addr,
        20,
        Duration::ZERO,
        Duration::from_secs(5),
    ));
    assert!(warm.starts_with("20 served"), "{warm}");
    let (fds_before, rss_before) = (settled_fd_count(), rss_kib());

    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "idle_connection_holder",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HOLD_ADDR_VAR, addr.to_string())
        .env(HOLD_COUNT_VAR, count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the holder process");
    let stdout = child.stdout.take().expect("the holder's stdout");
    let (lines, held_line) = mpsc::channel();
    thread::spawn(move || {
        // The harness may print its "test ... " prefix on the same line.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("held ") {
                let _ = lines.send(line[at..].to_owned());
            }
        }
    });
    let held = held_line
        .recv_timeout(Duration::from_secs(60))
        .expect("the holder reports its connections");
    let held_count: usize = held
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The server has accepted them all.
    let all_in = wait_for(Duration::from_secs(10), || {
        fd_count() >= fds_before + held_count
    });
    let (fds_held, rss_held) = (fd_count(), rss_kib());
    let with_idle = normal_client(addr, 20, Duration::from_millis(10), Duration::from_secs(5));
    let (served, with_idle_account) = summarize(&with_idle);
    // They stay: the default idle timeout is 60 s.
    thread::sleep(Duration::from_secs(1));
    let fds_later = fd_count();

    drop(child.stdin.take());
    let _ = child.wait();
    let released = Instant::now();
    let back = wait_for(Duration::from_secs(15), || fd_count() <= fds_before);
    let release_time = released.elapsed();
    let (fds_after, rss_after) = (fd_count(), rss_kib());
    let per_connection = (rss_held.saturating_sub(rss_before) * 1024)
        .checked_div(u64::try_from(held_count).unwrap_or(0))
        .unwrap_or(0);
    report(&format!(
        "load idle mio: {held} (asked {count}); server fds {fds_before} -> {fds_held} \
         (1 s later {fds_later}) -> {fds_after} after release ({:.0} ms); RSS {:.1} MiB -> \
         {:.1} MiB ({:+.1} MiB, {per_connection} bytes per connection) -> {:.1} MiB after \
         release; normal client with them idle: {with_idle_account}",
        ms(release_time),
        mib(rss_before),
        mib(rss_held),
        delta_mib(rss_before, rss_held),
        mib(rss_after),
    ));
    assert_eq!(held_count, count, "{held}");
    assert!(all_in, "the server accepted every connection");
    assert!(
        fds_later >= fds_before + held_count,
        "idle connections stay"
    );
    assert_eq!(served.len(), with_idle.len(), "{with_idle_account}");
    assert!(back, "every connection is closed after the clients go");
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per idle connection"
    );
}

// ----- vanishing clients --------------------------------------------------------------------

/// Uploads (and downloads) each round starts and abandons.
const ROUNDS: usize = 40;
const UPLOAD_DECLARED: usize = 4 << 20;
const UPLOAD_SENT: usize = 1 << 20;
const DOWNLOAD_READ: usize = 64 << 10;

/// Starts an upload of `UPLOAD_DECLARED` bytes to the buffering route, sends
/// `UPLOAD_SENT` of them (all when `finish`), and returns the connection.
fn upload(server: &TestServer, finish: bool) -> io::Result<Client> {
    let mut client = server.try_connect()?;
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {UPLOAD_DECLARED}\r\n\r\n");
    client.send(head.as_bytes())?;
    let body = vec![b'u'; if finish { UPLOAD_DECLARED } else { UPLOAD_SENT }];
    client.send(&body)?;
    if finish {
        let response = client.read_response()?;
        if response.text() != UPLOAD_DECLARED.to_string() {
            return Err(io::Error::other(format!(
                "upload answered {}",
                response.status
            )));
        }
    }
    Ok(client)
}

/// Downloads `/big.bin`, whole or only its first `DOWNLOAD_READ` bytes.
fn download(server: &TestServer, finish: bool) -> io::Result<Client> {
    let mut client = server.try_connect()?;
    client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")?;
    if finish {
        let response = client.read_response()?;
        if response.body.len() != BIG {
            return Err(io::Error::other("a short download"));
        }
    } else if server.setup().tls {
        // The records must go through the TLS client: read for a moment, then vanish.
        let _ = client.closes_within(Duration::from_millis(20));
    } else {
        let mut taken = 0;
        let mut buf = [0u8; 16 << 10];
        while taken < DOWNLOAD_READ {
            match client.socket().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => taken += n,
            }
        }
    }
    Ok(client)
}

/// Runs `rounds` uploads and downloads on 8 threads; `finish` completes them, otherwise
/// each client vanishes mid-transfer. Returns the highest descriptor count seen.
fn transfers(server: &TestServer, rounds: usize, finish: bool) -> usize {
    let next = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::SeqCst) < rounds {
                    let up = upload(server, finish).expect("an upload");
                    let down = download(server, finish).expect("a download");
                    peak.fetch_max(fd_count(), Ordering::SeqCst);
                    // Dropped unread: the server sees a reset or an early end of stream.
                    drop((up, down));
                }
            });
        }
    });
    peak.into_inner()
}

#[test]
fn clients_vanishing_mid_transfer_leak_nothing() {
    let _serial = serial();
    for setup in Setup::ALL {
        let limits = Limits {
            max_body_size: 16 << 20,
            ..Limits::default()
        };
        // Warm std threads for every transfer in flight (8 clients, an upload and a
        // download each), so the pool does not grow during the measurement.
        let tuning = Tuning {
            threads: Some(32),
            ..Tuning::default()
        };
        let site = site(setup, limits, tuning);
        // Warm-up with whole transfers, so the allocator holds its working set already.
        transfers(&site.server, 16, true);
        let settled = wait_for(Duration::from_secs(5), || {
            site.server.connect().request(GET_HELLO).status == 200
        });
        assert!(settled);
        let (fds_before, rss_before) = (held_fd_count(), rss_kib());
        let started = Instant::now();
        let peak = transfers(&site.server, ROUNDS, false);
        let cut_in = started.elapsed();
        let back = wait_for(Duration::from_secs(10), || held_fd_count() <= fds_before);
        let settle = started.elapsed() - cut_in;
        let (fds_after, rss_after) = (held_fd_count(), rss_kib());
        // The server still serves, and holds nothing of the abandoned transfers.
        let after_ok = site.server.connect().request(GET_HELLO).status == 200;
        report(&format!(
            "load vanish {setup}: {ROUNDS} uploads cut at {} KiB of {} KiB and {ROUNDS} \
             downloads cut at {} KiB of {} KiB in {:.0} ms; fds held {fds_before} -> {fds_after} \
             ({:.0} ms to settle; {peak} open at the peak); RSS {:.1} -> {:.1} MiB ({:+.1} MiB)",
            UPLOAD_SENT >> 10,
            UPLOAD_DECLARED >> 10,
            DOWNLOAD_READ >> 10,
            BIG >> 10,
            ms(cut_in),
            ms(settle),
            mib(rss_before),
            mib(rss_after),
            delta_mib(rss_before, rss_after)
        ));
        assert!(back, "{setup}: fds {fds_before} -> {fds_after}");
        assert!(after_ok, "{setup}: still serving");
        assert!(
            rss_after < rss_before + 8 * 1024,
            "{setup}: RSS {rss_before} KiB -> {rss_after} KiB"
        );
    }
}

// ----- uploads over the limit ---------------------------------------------------------------

#[test]
fn upload_over_the_body_limit_is_413_and_closes() {
    let _serial = serial();
    each_setup(|setup| {
        let limits = Limits {
            max_body_size: 1 << 20,
            ..Limits::default()
        };
        let site = site(setup, limits, Tuning::default());
        let rss_before = rss_kib();

        // Declared too large: refused before any body byte is read.
        let mut client = site.server.connect();
        let response = client.request(
            format!(
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                8 << 20
            )
            .as_bytes(),
        );
        assert_eq!(response.status, 413, "{setup}");
        assert!(response.closes() && client.closes_within(Duration::from_secs(5)));

        // Chunked, so the size shows only as it streams: refused once past the limit.
        let mut client = site.server.connect();
        client
            .send(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("send the head");
        let chunk = [b"10000\r\n".as_slice(), &[b'c'; 0x10000], b"\r\n"].concat();
        // Just past the limit: what the server leaves unread it drains before closing.
        let mut sent = 0usize;
        while sent <= 1 << 20 {
            client.send(&chunk).expect("send a chunk");
            sent += 0x10000;
        }
        let response = client.response();
        assert_eq!(response.status, 413, "{setup}");
        assert!(response.closes() && client.closes_within(Duration::from_secs(5)));
        // The refused body was not kept.
        assert!(
            rss_kib() < rss_before + 16 * 1024,
            "{setup}: RSS grew by {} KiB",
            rss_kib().saturating_sub(rss_before)
        );
        // The route itself works under the limit.
        let mut client = site.server.connect();
        let ok =
            client.request(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((ok.status, ok.text().as_str()), (200, "5"), "{setup}");
        report(&format!(
            "load upload {setup}: 8 MiB declared -> 413 and close; chunked upload refused 413 \
             after {} KiB sent, connection closed",
            sent >> 10
        ));
    });
}
