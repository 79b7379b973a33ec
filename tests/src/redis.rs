//! Real `redis-server` processes and instances of the `cluster` example for the
//! shared-state tests: each test starts its own Redis on a free loopback port with a
//! temporary folder, and stops it when dropped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;
use crate::dir::TempDir;
use crate::http_json::{get, post_json};
use crate::response::Response;

/// How long a process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `redis-server` can be run; tests that need it say they skipped otherwise.
pub fn have_redis() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A free port on 127.0.0.1 (bound and released; fine for tests on one machine).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `addr` accepts connections.
fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process for {addr} exited: {status}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// One `redis-server` on loopback, its data in a temporary folder.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    appendonly: bool,
    /// Extra arguments, e.g. TLS or a password.
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts Redis with snapshots off; with `appendonly`, every write goes to the
    /// append-only file so that a stop and start keeps everything.
    pub fn start(appendonly: bool) -> Self {
        Self::start_with(appendonly, &[])
    }

    /// Starts Redis with further arguments; `{port}` in them stands for its port, and with
    /// `--tls-port {port}` the plain port is closed.
    pub fn start_with(appendonly: bool, extra: &[&str]) -> Self {
        let port = free_port();
        let extra = extra
            .iter()
            .map(|arg| arg.replace("{port}", &port.to_string()))
            .collect();
        let mut server = Self {
            port,
            dir: TempDir::new(),
            appendonly,
            extra,
            child: None,
        };
        server.resume();
        server
    }

    /// The port Redis listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops Redis at once (SIGKILL); the data folder stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes Redis (SIGSTOP) or thaws it (SIGCONT): a Redis that accepts connections
    /// and never answers, as a stalled one does.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("redis-server runs");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} redis-server");
    }

    /// Starts Redis again on the same port and folder.
    pub fn resume(&mut self) {
        let tls = self.extra.iter().any(|arg| arg == "--tls-port");
        let plain = if tls { 0 } else { self.port };
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &plain.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("start redis-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_listening(addr, &mut child);
        self.child = Some(child);
    }

    /// Sends one command in RESP and returns the raw first line of the answer.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        let mut line = String::new();
        self.send(args)?.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    /// Sends one command whose answer is a bulk string (`GET`, `HGET`) and returns it, or
    /// `None` for nil.
    pub fn value(&self, args: &[&str]) -> io::Result<Option<String>> {
        let mut reader = self.send(args)?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let Some(length) = line.trim_end().strip_prefix('$') else {
            return Err(io::Error::other(format!("not a bulk string: {line:?}")));
        };
        let Ok(length) = length.parse::<usize>() else {
            return Ok(None);
        };
        let mut value = vec![0; length + 2];
        reader.read_exact(&mut value)?;
        value.truncate(length);
        String::from_utf8(value).map(Some).map_err(io::Error::other)
    }

    /// Sends one command in RESP on a new connection, returns the connection to read.
    fn send(&self, args: &[&str]) -> io::Result<BufReader<TcpStream>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        Ok(BufReader::new(stream))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `cluster` example binary, built once per test run.
pub fn cluster_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new(env!("CARGO"))
                .current_dir(&workspace)
                .args(["build", "-q", "-p", "quick-server", "--features", "redis"])
                .args(["--example", "cluster"])
                .status()
                .expect("run cargo");
            assert!(status.success(), "cargo build --example cluster failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace.join("target"), PathBuf::from);
            target.join("debug").join("examples").join("cluster")
        })
        .clone()
}

/// One running instance of the `cluster` example; its log lines (stderr) go to a file.
pub struct Instance {
    addr: SocketAddr,
    child: Child,
    args: Vec<String>,
    logs: TempDir,
}

impl Instance {
    /// Starts an instance on a free port with `--redis url` (none: in-memory state) and
    /// any further arguments.
    pub fn start(redis: Option<&str>, extra: &[&str]) -> Self {
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if let Some(url) = redis {
            args.extend(["--redis".to_owned(), url.to_owned()]);
        }
        Self::spawn(free_port(), args, TempDir::new())
    }

    fn spawn(port: u16, args: Vec<String>, logs: TempDir) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.path().join("stderr"))
            .expect("a log file");
        let mut child = Command::new(cluster_binary())
            .args(["--port", &port.to_string()])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the cluster example");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(addr, &mut child);
        Self {
            addr,
            child,
            args,
            logs,
        }
    }

    /// The lines the instance logged so far (after a restart, both processes').
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.logs.path().join("stderr"))
            .expect("the log file")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the instance with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the instance and starts a new process on the same port and arguments.
    pub fn restart(mut self) -> Self {
        self.kill();
        let port = self.addr.port();
        let args = std::mem::take(&mut self.args);
        let logs = std::mem::take(&mut self.logs);
        Self::spawn(port, args, logs)
    }

    /// Sends `request` on a fresh connection.
    pub fn request(&self, request: &[u8]) -> Response {
        Client::connect(self.addr, None)
            .expect("connect to the instance")
            .request(request)
    }

    /// `GET target`.
    pub fn get(&self, target: &str) -> Response {
        self.request(&get(target))
    }

    /// `POST target` with a JSON body.
    pub fn post(&self, target: &str, body: &Value) -> Response {
        self.request(&post_json(target, body))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
