//! The RFC 9112 conformance and request-smuggling suite of issue 10: every case of
//! `tests/conformance/cases.txt` (format in the README beside it) is sent as raw bytes to a
//! real server over both transports, plain and TLS, and the statuses that come back, and
//! whether the connection then closes or still serves, are checked.
//!
//! The summary lines go straight to the process's stderr (not through the test harness's
//! capture), so the test command's log always holds the pass counts.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use quick_server_core::Limits;
use quick_server_tests::{each_setup, Client, Setup, TempDir, TestServer, Tuning};

/// The case table.
const CASES: &str = include_str!("../conformance/cases.txt");
/// What `/hello.txt` holds (`/` serves a small `index.html`).
const HELLO: &str = "hello\n";
/// The request sent after an `open` case to prove the connection still frames correctly;
/// its file is named in no case, so an unexpected extra answer cannot pass for it.
const PROBE: &[u8] = b"GET /probe.txt HTTP/1.1\r\nHost: t\r\n\r\n";
/// What `/probe.txt` holds.
const PROBE_BODY: &str = "probe\n";
/// How long the server may take to close after its last answer.
const CLOSE_SLACK: Duration = Duration::from_secs(5);
/// Client connections run at once per setup.
const PARALLEL: usize = 8;

/// One status a case expects, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    status: u16,
    /// The answer is to a HEAD request: no body follows its head.
    head: bool,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Case {
    id: String,
    rfc: String,
    bytes: Vec<u8>,
    expect: Vec<Expected>,
    /// The server must close after the expected answers (else it must keep serving).
    close: bool,
    /// The client ends its sending side after the bytes.
    eof: bool,
    /// A known deviation of the server: the case is expected to fail, for this reason.
    xfail: Option<String>,
}

/// The limits the suite's server runs with; the table's size cases are written for them.
fn suite_limits() -> Limits {
    Limits {
        max_request_line: 1024,
        max_head_size: 4096,
        max_headers: 32,
        max_body_size: 1024,
        max_chunk_line: 256,
        max_trailer_size: 512,
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

// ----- the table format -------------------------------------------------------------------

/// Decodes the escapes of a `send:`/`line:` value: `\r \n \t \0 \\ \xHH` and the repeat
/// `\{N:text}` (the text may hold escapes, `}` is written `\x7d`).
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&kind) = bytes.get(i + 1) else {
            return Err("a lone backslash at the end".to_owned());
        };
        i += 2;
        match kind {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = text
                    .get(i..i + 2)
                    .ok_or_else(|| "\\x needs two hex digits".to_owned())?;
                let value =
                    u8::from_str_radix(hex, 16).map_err(|_| format!("bad hex escape \\x{hex}"))?;
                out.push(value);
                i += 2;
            }
            b'{' => {
                let close = find_repeat_end(bytes, i)?;
                let inner = &text[i..close];
                let (count, body) = inner
                    .split_once(':')
                    .ok_or_else(|| format!("repeat {inner:?} lacks N:"))?;
                let count: usize = count
                    .parse()
                    .map_err(|_| format!("bad repeat count {count:?}"))?;
                let body = unescape(body)?;
                for _ in 0..count {
                    out.extend_from_slice(&body);
                }
                i = close + 1;
            }
            other => return Err(format!("unknown escape \\{}", char::from(other))),
        }
    }
    Ok(out)
}

/// The index of the `}` closing a repeat whose text starts at `from`; nested repeats count.
fn find_repeat_end(bytes: &[u8], from: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'\\' => i += 1,
            b'}' if depth == 0 => return Ok(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    Err("an unclosed \\{ repeat".to_owned())
}

/// Parses `expect:`: statuses (`200`, or `200h` for an answer to HEAD) then `open` or
/// `close`.
fn parse_expect(value: &str) -> Result<(Vec<Expected>, bool), String> {
    let mut words: Vec<&str> = value.split_whitespace().collect();
    let close = match words.pop() {
        Some("close") => true,
        Some("open") => false,
        other => return Err(format!("expect must end in open or close, not {other:?}")),
    };
    let expect = words
        .iter()
        .map(|word| {
            let (digits, head) = match word.strip_suffix('h') {
                Some(digits) => (digits, true),
                None => (*word, false),
            };
            match digits.parse::<u16>() {
                Ok(status) if (100..600).contains(&status) && digits.len() == 3 => {
                    Ok(Expected { status, head })
                }
                _ => Err(format!("bad status {word:?}")),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    if expect.is_empty() && !close {
        return Err("a case with no answer must close".to_owned());
    }
    Ok((expect, close))
}

/// Parses the whole table; errors name the line.
fn parse_cases(text: &str) -> Result<Vec<Case>, String> {
    let mut cases: Vec<Case> = Vec::new();
    let mut current: Option<(Case, bool)> = None;
    let finish = |current: Option<(Case, bool)>, cases: &mut Vec<Case>| -> Result<(), String> {
        if let Some((case, has_expect)) = current {
            if !has_expect || case.rfc.is_empty() || case.bytes.is_empty() {
                return Err(format!("case {} needs rfc:, bytes and expect:", case.id));
            }
            if cases.iter().any(|c| c.id == case.id) {
                return Err(format!("case id {} is used twice", case.id));
            }
            cases.push(case);
        }
        Ok(())
    };
    for (number, raw) in text.lines().enumerate() {
        let at = |e: String| format!("cases.txt line {}: {e}", number + 1);
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(id) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            finish(current.take(), &mut cases).map_err(at)?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(at(format!("bad case id {id:?}")));
            }
            current = Some((
                Case {
                    id: id.to_owned(),
                    rfc: String::new(),
                    bytes: Vec::new(),
                    expect: Vec::new(),
                    close: false,
                    eof: false,
                    xfail: None,
                },
                false,
            ));
            continue;
        }
        let Some((case, has_expect)) = current.as_mut() else {
            return Err(at("a field before the first [case]".to_owned()));
        };
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| at(format!("not key: value: {line:?}")))?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        match key {
            "rfc" => case.rfc = value.to_owned(),
            "note" => {}
            "send" => case.bytes.extend(unescape(value).map_err(at)?),
            "line" => {
                case.bytes.extend(unescape(value).map_err(at)?);
                case.bytes.extend_from_slice(b"\r\n");
            }
            "expect" => {
                (case.expect, case.close) = parse_expect(value).map_err(at)?;
                *has_expect = true;
            }
            "eof" => case.eof = value == "yes",
            "xfail" => case.xfail = Some(value.to_owned()),
            other => return Err(at(format!("unknown key {other:?}"))),
        }
    }
    finish(current, &mut cases)?;
    Ok(cases)
}

// ----- running ------------------------------------------------------------------------------

/// Statuses as the table writes them, for messages.
fn describe(statuses: &[Expected]) -> String {
    let words: Vec<String> = statuses
        .iter()
        .map(|e| format!("{}{}", e.status, if e.head { "h" } else { "" }))
        .collect();
    format!("[{}]", words.join(" "))
}

/// Sends one case on a new connection and checks what comes back.
fn run_case(server: &TestServer, case: &Case) -> Result<(), String> {
    let mut client = server.try_connect().map_err(|e| format!("connect: {e}"))?;
    // The server may refuse and close before taking every byte: the answer still counts.
    let _ = client.send(&case.bytes);
    if case.eof {
        let _ = client.half_close();
    }
    let mut got = Vec::new();
    for expected in &case.expect {
        let read = if expected.head {
            client.read_head_response()
        } else {
            client.read_response()
        };
        let response = read.map_err(|e| {
            format!(
                "expected {}, got {} then no answer: {e}",
                describe(&case.expect),
                describe(&got)
            )
        })?;
        got.push(Expected {
            status: response.status,
            head: expected.head,
        });
        if response.status != expected.status {
            return Err(format!(
                "expected {}, got {} ({} {})",
                describe(&case.expect),
                describe(&got),
                response.status,
                response.reason
            ));
        }
        let last = got.len() == case.expect.len();
        if last && case.close && !case.eof && !response.closes() {
            return Err(format!(
                "the last answer ({}) does not announce Connection: close",
                response.status
            ));
        }
        if !case.close && response.closes() {
            return Err(format!(
                "answer {} announces Connection: close",
                response.status
            ));
        }
    }
    if case.close {
        if !client.closes_within(CLOSE_SLACK) {
            return Err(close_failure(&mut client, case));
        }
        return Ok(());
    }
    let probe = client
        .send(PROBE)
        .map_err(|e| format!("the connection is not usable after the answers: {e}"))
        .and_then(|()| {
            client
                .read_response()
                .map_err(|e| format!("no answer to the probe after the answers: {e}"))
        })?;
    if probe.status != 200 || probe.text() != PROBE_BODY {
        return Err(format!(
            "the probe after the answers got {} {:?}: the framing went wrong",
            probe.status,
            probe.text()
        ));
    }
    Ok(())
}

/// Why the connection did not close cleanly: more answers, or it stayed open.
fn close_failure(client: &mut Client, case: &Case) -> String {
    if client.is_closed() {
        let extra = client.read_to_close().unwrap_or_default();
        return format!(
            "after {} the server sent more: {:?}",
            describe(&case.expect),
            String::from_utf8_lossy(&extra[..extra.len().min(120)])
        );
    }
    match client.read_response() {
        Ok(response) => format!(
            "after {} the server answered again: {} {}",
            describe(&case.expect),
            response.status,
            response.reason
        ),
        Err(_) => format!(
            "after {} the connection stayed open",
            describe(&case.expect)
        ),
    }
}

/// What one setup's run came to.
#[derive(Debug, Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    /// Known deviations that still fail as documented, with what happened.
    known: Vec<String>,
}

/// Runs every case against one server, `PARALLEL` connections at a time.
fn run_setup(setup: Setup, cases: &[Case]) -> Tally {
    let dir = TempDir::new();
    dir.write("hello.txt", HELLO);
    dir.write("index.html", "<p>index</p>\n");
    dir.write("probe.txt", PROBE_BODY);
    let root = dir.path().to_owned();
    let tuning = Tuning {
        threads: Some(2 * PARALLEL),
        ..Tuning::default()
    };
    let server = TestServer::start_tuned(setup, tuning, move |mut builder| {
        builder
            .files()
            .bind_path("/", root)
            .expect("bind the folder");
        builder.limits(suite_limits());
        builder
    });
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let outcome = run_case(&server, case);
                    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                    match (outcome, &case.xfail) {
                        (Ok(()), None) => tally.passed += 1,
                        (Err(e), Some(_)) => tally.known.push(format!("{}: {e}", case.id)),
                        (Ok(()), Some(why)) => tally.failed.push(format!(
                            "{} ({}): passes now, remove its xfail ({why})",
                            case.id, case.rfc
                        )),
                        (Err(e), None) => {
                            tally
                                .failed
                                .push(format!("{} (RFC {}): {e}", case.id, case.rfc));
                        }
                    }
                }
            });
        }
    });
    drop(server);
    let mut tally = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    tally.failed.sort();
    tally.known.sort();
    tally
}

/// Writes to the process's stderr directly, past the harness's output capture.
fn report(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

#[test]
fn conformance_suite_over_every_setup() {
    let cases = parse_cases(CASES).unwrap_or_else(|e| panic!("{e}"));
    let totals = Mutex::new((0usize, 0usize, 0usize));
    each_setup(|setup| {
        let tally = run_setup(setup, &cases);
        let mut text = format!(
            "conformance {setup}: {} passed, {} failed, {} known deviations\n",
            tally.passed,
            tally.failed.len(),
            tally.known.len()
        );
        for failure in &tally.failed {
            text.push_str(&format!("  FAIL {setup} {failure}\n"));
        }
        for known in &tally.known {
            text.push_str(&format!("  known {setup} {known}\n"));
        }
        report(&text);
        {
            let mut totals = totals.lock().unwrap_or_else(|p| p.into_inner());
            totals.0 += tally.passed;
            totals.1 += tally.failed.len();
            totals.2 += tally.known.len();
        }
        assert!(
            tally.failed.is_empty(),
            "{} conformance case(s) failed:\n{}",
            tally.failed.len(),
            tally.failed.join("\n")
        );
    });
    let (passed, failed, known) = *totals.lock().unwrap_or_else(|p| p.into_inner());
    report(&format!(
        "conformance table: {} cases x {} setups; known deviations (xfail) count as skipped\n\
         conformance: {passed} passed, {failed} failed, {known} skipped\n",
        cases.len(),
        (passed + failed + known) / cases.len().max(1)
    ));
}

// ----- the table itself ---------------------------------------------------------------------

#[test]
fn table_is_large_and_well_formed() {
    let cases = parse_cases(CASES).unwrap_or_else(|e| panic!("{e}"));
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    for case in &cases {
        assert!(
            case.rfc.starts_with("9112 §")
                || case.rfc.starts_with("9110 §")
                || case.rfc.starts_with("6585 §"),
            "{}: rfc {:?} does not name a section",
            case.id,
            case.rfc
        );
    }
    let refused = cases.iter().filter(|c| c.id.starts_with("bad-")).count();
    let served = cases.iter().filter(|c| c.id.starts_with("ok-")).count();
    assert!(refused >= 100 && served >= 50, "{refused} bad, {served} ok");
}

#[test]
fn escapes_decode() {
    assert_eq!(unescape(r"a\r\n\t\0\\b").unwrap(), b"a\r\n\t\0\\b");
    assert_eq!(unescape(r"\x00\x7f\xFF").unwrap(), [0, 0x7f, 0xff]);
    assert_eq!(unescape(r"\{3:ab}c").unwrap(), b"abababc");
    assert_eq!(unescape(r"\{2:x\{2:y}}").unwrap(), b"xyyxyy");
    assert_eq!(unescape(r"\{2:\x7d}").unwrap(), b"}}");
    assert_eq!(unescape(r"\{0:abc}").unwrap(), b"");
    for bad in [
        r"\", r"\q", r"\x4", r"\xzz", r"\{3:ab", r"\{x:ab}", r"\{3ab}",
    ] {
        assert!(unescape(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn table_syntax_errors_are_reported() {
    let ok = "[a]\nrfc: 9112 §3\nline: GET / HTTP/1.1\nexpect: 200h 404 open\n";
    let cases = parse_cases(ok).unwrap();
    assert_eq!(cases[0].bytes, b"GET / HTTP/1.1\r\n");
    assert_eq!(
        cases[0].expect,
        [
            Expected {
                status: 200,
                head: true
            },
            Expected {
                status: 404,
                head: false
            }
        ]
    );
    assert!(!cases[0].close);
    let eof = parse_cases("[b]\nrfc: 9112 §8\nsend: GET\neof: yes\nexpect: close\n").unwrap();
    assert!(eof[0].eof && eof[0].close && eof[0].expect.is_empty());
    for bad in [
        "rfc: 9112 §3\n",
        "[a]\nrfc: 9112 §3\nsend: x\n",
        "[a]\nrfc: 9112 §3\nsend: x\nexpect: 200\n",
        "[a]\nrfc: 9112 §3\nsend: x\nexpect: open\n",
        "[a]\nrfc: 9112 §3\nsend: x\nexpect: 2000 close\n",
        "[a]\nsend: x\nexpect: close\n",
        "[a]\nrfc: 9112 §3\nsend: x\nexpect: close\n[a]\nrfc: 9112 §3\nsend: x\nexpect: close\n",
        "[a b]\n",
        "[a]\nrfc: 9112 §3\nbogus: 1\n",
    ] {
        assert!(parse_cases(bad).is_err(), "{bad:?}");
    }
}
