//! The command loop, request log, slow-request reports and restart, driven through the
//! `console_demo` example over pipes (stdin for commands, stderr for the log).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use quick_server_core::console::CommandSet;

mod common;

use common::{Process, Terminal, WAIT};

/// `console_demo`, started with `--port 0` and `args`.
struct Demo(Process);

impl Demo {
    /// Starts the demo with stdin piped.
    fn start(args: &[&str]) -> Self {
        Self::start_with(args, |command| {
            command.stdin(Stdio::piped()).stdout(Stdio::null());
        })
    }

    /// Starts the demo with stdin/stdout and the like set by `configure`.
    fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        Self(Process::start("console_demo", args, configure))
    }
}

impl std::ops::Deref for Demo {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.0
    }
}

impl std::ops::DerefMut for Demo {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.0
    }
}

/// Sends `request` on a new connection and returns the whole answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// GETs `path` (closing the connection after the answer): status and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let answer = exchange(addr, request.as_bytes())?;
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad answer {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_owned());
    Ok((status, body))
}

#[test]
fn help_lists_the_commands_and_quit_exits_zero() {
    let mut demo = Demo::start(&[]);
    demo.send("help");
    demo.expect("[SERVER] available commands:");
    let mut listed = Vec::new();
    for _ in 0..4 {
        let line = demo.next_line();
        listed.push(line);
    }
    assert_eq!(
        listed,
        [
            "[SERVER]     requests",
            "[SERVER]     help",
            "[SERVER]     restart",
            "[SERVER]     quit"
        ]
    );
    demo.send("quit");
    demo.expect("[SERVER] shutting down..");
    assert_eq!(demo.wait_exit().code(), Some(0));
}

#[test]
fn user_command_arguments_and_messages() {
    let mut demo = Demo::start(&[]);
    for _ in 0..2 {
        assert_eq!(get(demo.addr, "/api/uptime/").unwrap().0, 200);
    }
    demo.send("requests uptime");
    demo.expect("[SERVER] requests made to uptime: 2");
    demo.send("requests");
    demo.expect("[SERVER] command requests expects 1 argument(s), got 0");
    demo.send("foo bar");
    demo.expect(
        "[SERVER] command \"foo bar\" invalid; type help or use <TAB> for a list of commands",
    );
    demo.send("   # a comment, then a blank line");
    demo.send("");
    demo.send("quit");
    assert_eq!(demo.wait_exit().code(), Some(0));
    assert!(!demo.seen().iter().any(|l| l.contains("comment")));
}

#[test]
fn end_of_input_keeps_serving_until_sigterm() {
    let mut demo = Demo::start(&[]);
    demo.close_stdin();
    demo.expect("[SERVER] no command loop - use CTRL-C to terminate");
    let (status, pid) = get(demo.addr, "/api/pid/").unwrap();
    assert_eq!(status, 200);
    assert_ne!(pid, demo.pid().to_string(), "the supervisor does not serve");
    demo.signal(libc::SIGTERM);
    demo.expect("[SERVER] shutting down..");
    assert_eq!(demo.wait_exit().code(), Some(0));
}

#[test]
fn no_command_loop_ignores_stdin() {
    let mut demo = Demo::start(&["--no-command-loop"]);
    demo.send("help");
    assert_eq!(get(demo.addr, "/api/uptime/").unwrap().0, 200);
    assert!(demo
        .expect_within("available commands", Duration::from_millis(300))
        .is_none());
    demo.signal(libc::SIGTERM);
    assert_eq!(demo.wait_exit().code(), Some(0));
}

#[test]
fn completion_candidates_from_the_core() {
    // The demo's command, as the console registers it.
    let mut set: CommandSet<()> = CommandSet::new();
    set.add(
        "requests",
        Some(1),
        (),
        Some(Box::new(|args: &[String], text: &str| {
            if args.is_empty() && "uptime".starts_with(text) {
                vec!["uptime".to_owned()]
            } else {
                Vec::new()
            }
        })),
    )
    .unwrap();
    set.add_builtins();
    assert_eq!(set.complete(""), ["help", "quit", "requests", "restart"]);
    assert_eq!(set.complete("re"), ["requests", "restart"]);
    assert_eq!(set.complete("req"), ["requests "]);
    assert_eq!(set.complete("requests "), ["uptime"]);
    assert_eq!(set.complete("requests up"), ["uptime"]);
    assert!(set.complete("requests x").is_empty());
    assert!(set.complete("requests uptime ").is_empty());
}

/// `   0.784ms [2026-11-23 21:20:01] ` → the rest after the time, checking the shape.
fn after_elapsed_and_time(line: &str) -> &str {
    let rest = line.strip_prefix("[SERVER] ").expect("prefix");
    let (elapsed, rest) = rest.split_at(10);
    assert!(elapsed.ends_with("ms"), "{line:?}");
    let number = elapsed.trim_end_matches("ms");
    assert_eq!(number.len(), 8, "{line:?}");
    assert!(number.trim_start().parse::<f64>().is_ok(), "{line:?}");
    let (time, rest) = rest.split_at(23);
    let bytes = time.as_bytes();
    assert_eq!(bytes.first(), Some(&b' '), "{line:?}");
    assert_eq!(bytes.get(1), Some(&b'['), "{line:?}");
    assert_eq!(bytes.get(21), Some(&b']'), "{line:?}");
    let shape: String = time
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, " [9999-99-99 99:99:99] ", "{line:?}");
    rest
}

#[test]
fn request_log_lines_and_escaped_control_characters() {
    let demo = Demo::start(&["--no-restart", "--no-command-loop"]);
    assert_eq!(get(demo.addr, "/api/uptime/").unwrap().0, 200);
    let line = demo.expect("\"GET /api/uptime/ HTTP/1.1\"");
    assert_eq!(
        after_elapsed_and_time(&line),
        "\"GET /api/uptime/ HTTP/1.1\" 200"
    );

    let hostile = b"GET /x\x1b[2J\x01\x7f HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let answer = exchange(demo.addr, hostile).unwrap();
    let status = &answer[9..12];
    let line = demo.expect("GET /x");
    assert!(
        line.ends_with(&format!("\"GET /x\\x1b[2J\\x01\\x7f HTTP/1.1\" {status}")),
        "{line:?}"
    );
    for line in demo.seen() {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
}

#[test]
fn slow_request_is_reported_while_it_runs() {
    let demo = Demo::start(&["--no-restart", "--slow-ms", "200"]);
    let done = Arc::new(AtomicBool::new(false));
    let client = {
        let done = Arc::clone(&done);
        let addr = demo.addr;
        thread::spawn(move || {
            let answer = get(addr, "/api/sleep/1500");
            done.store(true, Ordering::SeqCst);
            answer
        })
    };
    let line = demo.expect("request takes longer than expected");
    assert_eq!(
        line,
        "[SERVER] request takes longer than expected: \"GET /api/sleep/1500\""
    );
    assert!(!done.load(Ordering::SeqCst), "warned only after the answer");
    let (status, body) = client.join().unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "slept 1500 ms"));
    let line = demo.expect("request took longer than expected");
    let seconds = line
        .strip_prefix("[SERVER] request took longer than expected: \"GET /api/sleep/1500\"(")
        .and_then(|rest| rest.strip_suffix("s)"))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!((1.5..5.0).contains(&seconds), "{line:?}");
}

/// GETs `/api/pid/` on fresh connections until `stop`, counting failures.
struct Hammer {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
    pids: Arc<Mutex<Vec<String>>>,
    thread: thread::JoinHandle<()>,
}

impl Hammer {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(AtomicUsize::new(0));
        let pids = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, failures, served, pids) = (
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&served),
                Arc::clone(&pids),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match get(addr, "/api/pid/") {
                        Ok((200, pid)) => {
                            served.fetch_add(1, Ordering::SeqCst);
                            let mut pids = pids.lock().unwrap();
                            if pids.last() != Some(&pid) {
                                pids.push(pid);
                            }
                        }
                        Ok((status, body)) => {
                            failures.lock().unwrap().push(format!("{status} {body}"))
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        };
        Self {
            stop,
            failures,
            served,
            pids,
            thread,
        }
    }

    /// Stops hammering: the failures and the distinct process ids in serving order.
    fn finish(self) -> (Vec<String>, Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        let pids = self.pids.lock().unwrap().clone();
        (failures, pids, self.served.load(Ordering::SeqCst))
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Waits until the hammer has `n` more answers than now.
fn wait_for_answers(hammer: &Hammer, n: usize) {
    let target = hammer.served() + n;
    let deadline = Instant::now() + WAIT;
    while hammer.served() < target {
        assert!(Instant::now() < deadline, "the server stopped answering");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn restart_refuses_no_connection_and_fails_no_request() {
    let mut demo = Demo::start(&[]);
    let (_, first_pid) = get(demo.addr, "/api/pid/").unwrap();
    let hammer = Hammer::start(demo.addr);
    wait_for_answers(&hammer, 50);
    demo.send("restart");
    let again = demo.started();
    assert_eq!(again, demo.addr, "same socket");
    wait_for_answers(&hammer, 50);
    let (failures, pids, served) = hammer.finish();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(served >= 100);
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_eq!(pids.first(), Some(&first_pid));
    let (status, second_pid) = get(demo.addr, "/api/pid/").unwrap();
    assert_eq!(status, 200);
    assert_ne!(second_pid, first_pid);
    assert_eq!(pids.last(), Some(&second_pid));
    // The new process has the same routes and commands.
    assert_eq!(get(demo.addr, "/api/uptime/").unwrap().0, 200);
    demo.send("requests uptime");
    demo.expect("[SERVER] requests made to uptime: 1");
    demo.send("quit");
    assert_eq!(demo.wait_exit().code(), Some(0));
}

#[test]
fn restart_without_setup_restart_reruns_the_program() {
    let mut demo = Demo::start(&["--no-restart"]);
    let (_, first_pid) = get(demo.addr, "/api/pid/").unwrap();
    assert_eq!(first_pid, demo.pid().to_string());
    demo.send("restart");
    let line = demo.expect("[SERVER] restarting: ");
    assert!(
        line.contains("console_demo --port 0 --no-restart"),
        "{line:?}"
    );
    assert_eq!(demo.started(), demo.addr);
    let (status, second_pid) = get(demo.addr, "/api/pid/").unwrap();
    assert_eq!(status, 200);
    assert_ne!(second_pid, first_pid);
    // A restart in the child: it exits with 42 and the supervisor runs a third process.
    demo.send("restart");
    assert_eq!(demo.started(), demo.addr);
    let (_, third_pid) = get(demo.addr, "/api/pid/").unwrap();
    assert_ne!(third_pid, second_pid);
    demo.send("quit");
    assert_eq!(demo.wait_exit().code(), Some(0));
}

#[test]
fn sighup_restarts_and_sigint_exits_with_the_error_code() {
    let mut demo = Demo::start(&[]);
    let (_, first_pid) = get(demo.addr, "/api/pid/").unwrap();
    demo.signal(libc::SIGHUP);
    assert_eq!(demo.started(), demo.addr);
    let (_, second_pid) = get(demo.addr, "/api/pid/").unwrap();
    assert_ne!(second_pid, first_pid);
    // Ctrl-C reaches both: the server stops, the supervisor reports the error code.
    let server = second_pid.parse::<libc::pid_t>().unwrap();
    demo.signal(libc::SIGINT);
    // SAFETY (test): signalling the demo's own server process.
    assert_eq!(unsafe { libc::kill(server, libc::SIGINT) }, 0);
    assert_eq!(demo.wait_exit().code(), Some(1));
}

#[test]
fn terminal_line_editor_completes_and_keeps_history() {
    let dir = std::env::temp_dir().join(format!("qs-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".cmd_history"), "help\n").unwrap();
    let mut terminal = Terminal::open();
    let mut demo = Demo::start_with(&["--no-restart"], |command| {
        command.current_dir(&dir);
        terminal.attach(command);
    });
    terminal.shown("> ");
    // TAB completes the command (with its space) and then the argument.
    terminal.keys(b"req\t");
    terminal.shown("> requests \x1b[K");
    terminal.keys(b"up\t");
    terminal.shown("> requests uptime\x1b[K");
    terminal.keys(b"\r");
    demo.expect("[SERVER] requests made to uptime: 0");
    // Up twice recalls the entry loaded from the history file.
    terminal.keys(b"\x1b[A\x1b[A\r");
    demo.expect("[SERVER] available commands:");
    terminal.keys(b"quit\r");
    assert_eq!(demo.wait_exit().code(), Some(0));
    let history = std::fs::read_to_string(dir.join(".cmd_history")).unwrap();
    assert_eq!(history, "help\nrequests uptime\nhelp\nquit\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
