//! Restart (BEHAVIOUR.md: Restart and shutdown): a supervisor process re-runs the program (current
//! executable, same arguments and environment) while it exits with the restart code.
//!
//! Beyond the original, the supervisor owns the listening socket and passes it to every
//! child (its descriptor number in `QUICK_SERVER_LISTEN_FD`), so during a restart new
//! connections wait in the backlog instead of being refused, and the old child finishes
//! its requests in flight before it exits.
//!
//! Two ways in, as in the original: [`QuickServer::setup_restart`] makes the process a
//! supervisor before it serves; without it, a `restart` in the original process logs
//! `restarting: <command line>` once the server stopped and the process then supervises
//! (keeping the socket `serve_forever` listened on). In that second form every child is a
//! re-run, so all of them get `QUICK_SERVER_SUBSEQ=1` (the original sets it from the
//! second child on). The supervisor forwards SIGTERM and SIGHUP to the child; SIGINT
//! (which the terminal sends to the child too) makes it exit with the error code.

use std::env;
use std::ffi::OsString;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::logging::msg;
use crate::transport;

/// Set in children to the restart exit code; its presence means a supervisor exists.
const RESTART_VAR: &str = "QUICK_SERVER_RESTART";
/// `1` in the second and later children.
const SUBSEQ_VAR: &str = "QUICK_SERVER_SUBSEQ";
/// The descriptor number of the listening socket a child inherits.
const LISTEN_FD_VAR: &str = "QUICK_SERVER_LISTEN_FD";

static RESTART_CODE: AtomicI32 = AtomicI32::new(42);
static ERROR_CODE: AtomicI32 = AtomicI32::new(1);
/// The inherited socket is handed to the first server of the process only.
static INHERITED_TAKEN: AtomicBool = AtomicBool::new(false);

/// Sets the exit status that asks the supervisor for a restart (default 42).
pub fn set_restart_exit_code(code: i32) {
    RESTART_CODE.store(code, Ordering::Relaxed);
}

/// Sets the exit status of a supervisor that failed or was interrupted (default 1).
pub fn set_error_exit_code(code: i32) {
    ERROR_CODE.store(code, Ordering::Relaxed);
}

/// Whether this process was not started by a restart supervisor.
pub fn is_original() -> bool {
    env::var_os(RESTART_VAR).is_none()
}

/// Whether this process is a re-run after a restart.
pub fn has_been_restarted() -> bool {
    env::var_os(SUBSEQ_VAR).is_some_and(|v| v == "1")
}

/// The listening socket: the one inherited from a supervisor, else a new one on `addr`.
pub(crate) fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    match inherited()? {
        Some(listener) => Ok(listener),
        None => transport::listen(addr),
    }
}

/// Takes the socket named by `QUICK_SERVER_LISTEN_FD`, once per process, after checking
/// that the descriptor is an open listening socket.
fn inherited() -> io::Result<Option<TcpListener>> {
    let Some(fd) = env::var(LISTEN_FD_VAR)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return Ok(None);
    };
    if INHERITED_TAKEN.swap(true, Ordering::SeqCst) || !is_listening_socket(fd) {
        return Ok(None);
    }
    // Processes this server starts must not keep the socket open.
    set_cloexec(fd, true)?;
    // SAFETY: `fd` is an open listening socket (checked above) that this process inherited
    // for exactly this purpose and that nothing else in the process owns; the flag above
    // guarantees it is wrapped only once.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // A previous child's transport may have left it non-blocking (a shared file status).
    listener.set_nonblocking(false)?;
    Ok(Some(listener))
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut accepting: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(0);
    // SAFETY: `accepting` and `len` are valid for writes of the sizes given; an invalid
    // descriptor only makes the call fail.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && accepting != 0
}

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only read and write the descriptor flags of `fd`; an
    // invalid descriptor only makes the calls fail.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            flags
        } else if on {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
        }
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// How a serving process asks to stop or restart; shared by the console, the signal
/// thread and `serve_forever`.
pub(crate) struct Control {
    shutdown: Box<dyn Fn() + Send + Sync>,
    /// A copy of the listening socket kept open for a restart; dropped on a plain stop so
    /// that new connections are refused rather than queued.
    listener: Mutex<Option<TcpListener>>,
    stopping: AtomicBool,
    restart: AtomicBool,
}

impl Control {
    /// A control that calls `shutdown` to stop the server gracefully, keeping `listener`
    /// for a restart.
    pub(crate) fn new(
        shutdown: impl Fn() + Send + Sync + 'static,
        listener: Option<TcpListener>,
    ) -> Arc<Self> {
        Arc::new(Self {
            shutdown: Box::new(shutdown),
            listener: Mutex::new(listener),
            stopping: AtomicBool::new(false),
            restart: AtomicBool::new(false),
        })
    }

    /// Stops the server gracefully (`quit`, SIGINT, SIGTERM).
    pub(crate) fn quit(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) && !self.restart_requested() {
            self.listener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        (self.shutdown)();
    }

    /// Stops the server gracefully and restarts the program afterwards (`restart`,
    /// SIGHUP); a stop already under way stays a plain stop.
    pub(crate) fn restart(&self) {
        if !self.is_stopping() {
            self.restart.store(true, Ordering::SeqCst);
        }
        self.quit();
    }

    /// Whether a stop was asked for.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The kept listening socket, if the stop is a restart.
    pub(crate) fn restart_listener(&self) -> Option<TcpListener> {
        if !self.restart_requested() {
            return None;
        }
        self.listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Whether the stop is a restart.
    pub(crate) fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::SeqCst)
    }
}

/// Restarts after the server stopped: a child exits with its supervisor's restart code;
/// the original process logs `restarting: <command line>` and becomes the supervisor,
/// handing `listener` (still open) to its children.
pub(crate) fn restart(listener: &TcpListener) -> ! {
    if let Some(code) = env::var(RESTART_VAR).ok().and_then(|v| v.parse().ok()) {
        exit(code);
    }
    let line: Vec<String> = env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    msg(&format!("restarting: {}", line.join(" ")));
    supervise(listener, true)
}

/// Runs the program again and again while it exits with the restart code, passing it
/// `listener`; then exits with the last child's status. SIGINT is only noted (the child
/// gets it from the terminal) and makes the supervisor exit with the error code; SIGTERM
/// and SIGHUP are forwarded to the child.
pub(crate) fn supervise(listener: &TcpListener, restarted: bool) -> ! {
    match run_children(listener, restarted) {
        Ok(code) => exit(code),
        Err(e) => {
            msg(&format!("ERROR in err_restart: error during restart:\n{e}"));
            exit(ERROR_CODE.load(Ordering::Relaxed))
        }
    }
}

fn run_children(listener: &TcpListener, mut subsequent: bool) -> io::Result<i32> {
    let fd = listener.as_raw_fd();
    set_cloexec(fd, false)?;
    let program = program()?;
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted))?;
    let supervised = Arc::new(Supervised::default());
    forward_signals(Arc::clone(&supervised))?;
    let restart_code = RESTART_CODE.load(Ordering::Relaxed);
    loop {
        let mut command = Command::new(&program);
        command
            .args(&args)
            .env(RESTART_VAR, restart_code.to_string())
            .env(LISTEN_FD_VAR, fd.to_string());
        if subsequent {
            command.env(SUBSEQ_VAR, "1");
        } else {
            command.env_remove(SUBSEQ_VAR);
        }
        let mut child = command.spawn()?;
        supervised.started(child.id());
        let status = child.wait();
        supervised.ended();
        let status = status?;
        if interrupted.load(Ordering::SeqCst) {
            return Ok(ERROR_CODE.load(Ordering::Relaxed));
        }
        let terminated = supervised.terminated.load(Ordering::SeqCst);
        match (status.code(), status.signal()) {
            (Some(code), _) if code == restart_code && !terminated => subsequent = true,
            (Some(code), _) if code == restart_code => return Ok(0),
            (Some(code), _) => return Ok(code),
            // Like a shell: 128 + the signal that ended the child.
            (None, Some(signal)) => return Ok(128 + signal),
            (None, None) => return Ok(ERROR_CODE.load(Ordering::Relaxed)),
        }
    }
}

/// The supervisor's running child, shared with the signal-forwarding thread.
#[derive(Default)]
struct Supervised {
    child: Mutex<Child>,
    /// SIGTERM arrived: run no further child.
    terminated: AtomicBool,
}

/// The running child's id and the signals that arrived while none was known.
#[derive(Default)]
struct Child {
    /// 0 between two children (and until the new one's id is recorded).
    pid: u32,
    pending: Vec<i32>,
}

impl Supervised {
    /// Sends `signal` to the child, or keeps it for the next one: a child may already run
    /// (and announce itself) before its id is recorded.
    fn forward(&self, signal: i32) {
        if signal == signal_hook::consts::SIGTERM {
            self.terminated.store(true, Ordering::SeqCst);
        }
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if child.pid != 0 {
            send_signal(child.pid, signal);
        } else if !child.pending.contains(&signal) {
            child.pending.push(signal);
        }
    }

    /// Records the running child and delivers the signals kept for it.
    fn started(&self, pid: u32) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.pid = pid;
        for signal in std::mem::take(&mut child.pending) {
            send_signal(pid, signal);
        }
    }

    /// The child has exited.
    fn ended(&self) {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pid = 0;
    }
}

/// The executable to re-run. After a rebuild replaced the file, Linux names the running
/// image `<path> (deleted)`: the new file at `<path>` is the one to run.
fn program() -> io::Result<PathBuf> {
    let exe = env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Forwards SIGTERM and SIGHUP to the running child, if any.
fn forward_signals(supervised: Arc<Supervised>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("quick-server-supervisor".into())
        .spawn(move || {
            for signal in signals.forever() {
                supervised.forward(signal);
            }
        })?;
    Ok(())
}

/// Sends `signal` to the process `pid`; nothing for 0 or out-of-range ids, so it never
/// addresses a process group.
fn send_signal(pid: u32, signal: i32) {
    let Some(pid) = libc::pid_t::try_from(pid).ok().filter(|pid| *pid > 0) else {
        return;
    };
    // SAFETY: kill() has no memory effects; `pid` names a single process (checked > 0).
    unsafe { libc::kill(pid, signal) };
}

/// Exits after flushing stdout (`process::exit` runs no destructors).
fn exit(code: i32) -> ! {
    let _ = io::stdout().flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn signals_before_the_child_is_known_reach_it() {
        let supervised = Supervised::default();
        supervised.forward(signal_hook::consts::SIGTERM);
        supervised.forward(signal_hook::consts::SIGTERM);
        assert!(supervised.terminated.load(Ordering::SeqCst));
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        supervised.started(child.id());
        let status = child.wait().unwrap();
        supervised.ended();
        assert_eq!(status.signal(), Some(signal_hook::consts::SIGTERM));
        let state = supervised.child.lock().unwrap();
        assert_eq!((state.pid, state.pending.len()), (0, 0));
    }

    #[test]
    fn signals_go_to_the_running_child() {
        let supervised = Supervised::default();
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        supervised.started(child.id());
        supervised.forward(signal_hook::consts::SIGHUP);
        assert_eq!(
            child.wait().unwrap().signal(),
            Some(signal_hook::consts::SIGHUP)
        );
        assert!(!supervised.terminated.load(Ordering::SeqCst));
    }

    fn control(listener: Option<TcpListener>) -> (Arc<Control>, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let control = Control::new(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
            listener,
        );
        (control, calls)
    }

    fn socket() -> Option<TcpListener> {
        Some(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    #[test]
    fn quit_drops_the_kept_socket() {
        let (control, calls) = control(socket());
        assert!(!control.is_stopping());
        control.quit();
        assert!(control.is_stopping());
        assert!(control.restart_listener().is_none());
        // A restart asked for during a stop stays a stop.
        control.restart();
        assert!(control.restart_listener().is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn restart_keeps_the_socket_once() {
        let (control, calls) = control(socket());
        control.restart();
        assert!(control.is_stopping());
        // A later quit (SIGINT during the restart) keeps the restart.
        control.quit();
        assert!(control.restart_listener().is_some());
        assert!(control.restart_listener().is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn listening_socket_check() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(is_listening_socket(listener.as_raw_fd()));
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!is_listening_socket(stream.as_raw_fd()));
        assert!(!is_listening_socket(-1));
        assert!(!is_listening_socket(0x7fff_0000));
    }

    #[test]
    fn cloexec_toggles() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        // SAFETY (test): F_GETFD on an open descriptor.
        let flags = || unsafe { libc::fcntl(fd, libc::F_GETFD) };
        set_cloexec(fd, false).unwrap();
        assert_eq!(flags() & libc::FD_CLOEXEC, 0);
        set_cloexec(fd, true).unwrap();
        assert_ne!(flags() & libc::FD_CLOEXEC, 0);
        assert!(set_cloexec(-1, true).is_err());
    }
}
