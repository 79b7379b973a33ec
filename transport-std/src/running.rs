//! Starting the server threads, and stopping them gracefully.

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use quick_server_core::proxy::IdlePool;
use quick_server_core::Server;

use crate::accept::Acceptor;
use crate::control::Control;
use crate::drive::{serve_admitted, Context};
use crate::pool::{self, Pool};
use crate::{background, keeper, reject, Options, Running, ShutdownHandle};
use quick_server_transport::Watcher;

/// How long to wait for connections cut at the end of the grace period to let go of
/// their threads before `wait` returns without them.
const FORCE_WAIT: Duration = Duration::from_secs(2);

/// Starts serving `server` on `listener` with the given options (`loops` does not apply:
/// there is no event loop); returns at once.
pub fn start(listener: TcpListener, server: Arc<Server>, options: Options) -> io::Result<Running> {
    let threads = options.std_threads();
    if threads == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "threads must be at least 1",
        ));
    }
    if options.max_threads < threads {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "max_threads must be at least threads",
        ));
    }
    let local_addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    // Linux copies `TCP_NODELAY` from the listener into every accepted socket: set once
    // here, not once per connection.
    let nodelay_inherited = cfg!(any(target_os = "linux", target_os = "android"))
        && crate::socket::set_nodelay(&listener).is_ok();
    let control = Arc::new(Control::new()?);
    // From here on, a failure stops the control, which ends every thread started.
    let started = spawn(listener, server, options, nodelay_inherited, &control);
    let threads = started.inspect_err(|_| control.stop())?;
    let stop = Arc::clone(&control);
    Ok(Running::new(
        local_addr,
        // Stops accepting (new connects are refused), lets each connection finish the
        // request in progress and close, and closes the rest when the grace period ends.
        ShutdownHandle::new(move || stop.stop()),
        move || threads.wait(),
    ))
}

/// Starts the threads: the rejecter, the background jobs, the pool and the housekeeper.
fn spawn(
    listener: TcpListener,
    server: Arc<Server>,
    options: Options,
    nodelay_inherited: bool,
    control: &Arc<Control>,
) -> io::Result<Threads> {
    let background = background::spawn(background::thread_count(), &server)?;
    let watcher = Arc::new(Watcher::new());
    let (reject, rejecter) = reject::spawn(options.tls.clone(), Arc::clone(control))?;
    let acceptor = Arc::new(Acceptor::new(
        listener,
        reject,
        Arc::clone(control),
        options.max_connections,
        nodelay_inherited,
    ));
    let ctx = Context {
        watcher: Arc::clone(&watcher),
        server: Arc::clone(&server),
        tls: options.tls.clone(),
        control: Arc::clone(control),
        background,
        upstreams: Mutex::new(IdlePool::new(
            server.limits().upstream_max_idle,
            server.limits().upstream_idle_timeout,
        )),
    };
    let size = pool::Size {
        warm: options.std_threads(),
        max: options.max_threads,
        idle_time: pool::IDLE_WORKER_TIME,
    };
    let pool = Pool::start(
        size,
        Arc::clone(&acceptor),
        Arc::clone(control),
        watcher,
        Arc::clone(&server),
        move |worker, waiter, accepted| serve_admitted(worker, waiter, accepted, &ctx),
    )?;
    let keeper = {
        let (pool, acceptor, control) = (
            Arc::clone(&pool),
            Arc::clone(&acceptor),
            Arc::clone(control),
        );
        thread::Builder::new()
            .name("quick-server-std-keeper".to_owned())
            .spawn(move || keeper::run(&pool, &acceptor, &control, &server))?
    };
    Ok(Threads {
        grace: options.shutdown_grace,
        control: Arc::clone(control),
        acceptor,
        keeper,
        pool,
        rejecter,
    })
}

/// The threads of a running server.
struct Threads {
    grace: Duration,
    control: Arc<Control>,
    acceptor: Arc<Acceptor>,
    keeper: JoinHandle<io::Result<()>>,
    pool: Arc<Pool>,
    rejecter: JoinHandle<()>,
}

impl Threads {
    /// Blocks until a shutdown completed: accepting stopped, and every connection closed
    /// or the grace period ran out (its socket is then closed under it). Fails if the
    /// listener failed.
    fn wait(self) -> io::Result<()> {
        let kept = self.keeper.join();
        // The housekeeper also ends when its wait fails: stop everything then too.
        self.control.stop();
        let grace_end = self.control.stopped_at().unwrap_or_else(Instant::now) + self.grace;
        let mut drained = self.control.wait_drained(grace_end);
        if !drained {
            self.control.force();
            drained = self.control.wait_drained(Instant::now() + FORCE_WAIT);
        }
        // A handler that never returns keeps its thread: leave it rather than hang. The
        // stop ends every idle thread and no thread starts after it.
        if drained {
            self.pool.join();
            let _ = self.rejecter.join();
        }
        if let Some(failure) = self.acceptor.failure() {
            return Err(failure);
        }
        kept.unwrap_or_else(|_| Err(io::Error::other("the housekeeping thread panicked")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn try_start(threads: usize, max_threads: usize) -> io::Result<Running> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let server = Server::builder((Instant::now(), SystemTime::now())).build();
        let options = Options {
            threads: Some(threads),
            max_threads,
            ..Options::default()
        };
        start(listener, server, options)
    }

    #[test]
    fn pool_sizes_are_checked() {
        for (threads, max_threads) in [(0, 4), (4, 3)] {
            let refused = try_start(threads, max_threads).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        }
        let running = try_start(2, 2).unwrap();
        running.handle().shutdown();
        running.wait().unwrap();
    }
}
