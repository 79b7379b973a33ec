//! What the console and example tests share: starting a built example with its log read
//! line by line, and driving it through a pseudo-terminal.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for a line, an exit or a screen.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// The built example `name`: examples sit next to the `deps` folder holding this test.
pub(crate) fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout");
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --examples` (tests/run does)",
        path.display()
    );
    path
}

/// A running example (or the binary) started with `--port 0`: its stdin, the lines of its log (stderr)
/// and the address it announced.
pub(crate) struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every log line seen so far, for failure messages.
    seen: Arc<Mutex<Vec<String>>>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Process {
    /// Starts example `name` with `args`; `configure` sets stdin, stdout, the folder.
    pub(crate) fn start(name: &str, args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        Self::start_program(example_path(name), args, configure)
    }

    /// Starts the program at `path` like [`start`](Self::start).
    pub(crate) fn start_program(
        path: PathBuf,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let mut command = Command::new(path);
        command.args(["--port", "0"]).args(args);
        configure(&mut command);
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the example");
        drop(command);
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                record.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut process = Self {
            child,
            stdin,
            lines,
            seen,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        process.addr = process.started();
        process
    }

    /// Waits for `starting server at <host>:<port>` and returns 127.0.0.1:<port>.
    pub(crate) fn started(&self) -> SocketAddr {
        let line = self.expect("[SERVER] starting server at ");
        let at = line.rsplit(' ').next().unwrap();
        let (host, port) = at.rsplit_once(':').unwrap();
        assert!(host == "localhost" || host == "127.0.0.1", "{line:?}");
        SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()))
    }

    /// Waits for a log line containing `needle`; returns it.
    pub(crate) fn expect(&self, needle: &str) -> String {
        self.expect_within(needle, WAIT)
            .unwrap_or_else(|| panic!("no line with {needle:?} in {:#?}", self.seen()))
    }

    /// Like [`expect`](Self::expect), `None` after `wait`.
    pub(crate) fn expect_within(&self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next log line.
    pub(crate) fn next_line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a log line")
    }

    /// Closes stdin (end of input for the command loop).
    pub(crate) fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// The process id (the restart supervisor's, when there is one).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Types `line` on the console.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY (test): signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit; log: {:#?}",
                self.seen()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    /// Stops a process a failed test left running (SIGTERM reaches the server through the
    /// restart supervisor), then kills it if it does not stop.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY (test): signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pseudo-terminal: what the program under test draws is collected on the controller
/// side; keys are written to it.
pub(crate) struct Terminal {
    /// The controller side: write keys here.
    pub(crate) controller: std::fs::File,
    /// The path of the terminal side, for the child's stdin and stdout.
    pub(crate) path: PathBuf,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// A new pty whose output is collected from now on.
    pub(crate) fn open() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY (test): plain pty set-up calls; `name` has room for the path and the
        // descriptor returned by posix_openpt is owned by the File from here on.
        let (controller, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(fd >= 0);
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
            let path = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_str()
                .unwrap()
                .to_owned();
            (std::fs::File::from_raw_fd(fd), PathBuf::from(path))
        };
        let screen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&screen);
        let mut reader = controller.try_clone().unwrap();
        thread::spawn(move || {
            let mut buf = [0; 4096];
            // Ends with an error once the terminal side is closed.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                record.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            controller,
            path,
            screen,
        }
    }

    /// Makes the child's stdin and stdout this terminal.
    pub(crate) fn attach(&self, command: &mut Command) {
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .unwrap()
        };
        command
            .stdin(Stdio::from(open()))
            .stdout(Stdio::from(open()));
    }

    /// Waits until `text` has been drawn.
    pub(crate) fn shown(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if String::from_utf8_lossy(&self.screen.lock().unwrap()).contains(text) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{text:?} not shown: {:?}",
            String::from_utf8_lossy(&self.screen.lock().unwrap())
        );
    }

    /// Types `keys`.
    pub(crate) fn keys(&mut self, keys: &[u8]) {
        self.controller.write_all(keys).unwrap();
    }
}
