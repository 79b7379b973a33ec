//! The elastic pool of connection threads. An idle thread waits on the listening socket
//! itself (one epoll set per thread, the listener in it with `EPOLLEXCLUSIVE`, so a new
//! connection wakes one thread), accepts, and serves that connection to its close: no
//! hand-off between threads. A few threads are kept warm; when one takes a connection and
//! none is left waiting, one more starts (up to a maximum), and the extra ones end after a
//! spell with nothing to do. A thread per connection, like the original's
//! `ThreadingMixIn`, but bounded and reused. While no thread waits to accept (a burst
//! outran the threads starting, or all are busy at the maximum), the housekeeping thread
//! accepts for them, queues what they take next and starts threads for the queue.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use quick_server_core::Server;
use quick_server_transport::Watcher;

use crate::accept::{Accept, Accepted, Acceptor, RESOURCE_BACKOFF};
use crate::control::Control;
use crate::poll;
use crate::wait::Waiter;

/// How long a thread beyond the warm ones waits for work before it ends: long enough that
/// a burst followed by a pause reuses its threads (starting one costs tens of
/// microseconds), short enough that a spike's threads do not linger for minutes.
pub(crate) const IDLE_WORKER_TIME: Duration = Duration::from_secs(30);

/// How many threads run, and how long an extra one may idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Size {
    /// Threads started at once, which end only at the stop.
    pub(crate) warm: usize,
    /// Most threads alive at once; beyond, connections wait in the queue.
    pub(crate) max: usize,
    /// How long a thread beyond `warm` waits for a connection before it ends.
    pub(crate) idle_time: Duration,
}

/// What a thread does with a connection: called with the thread's id and its waiter. It
/// must release the connection from the load ([`Control::release`]) when done.
type Serve = dyn Fn(usize, &mut Waiter, Accepted) + Send + Sync;

/// What the pool's threads share with whoever runs them.
pub(crate) struct Pool {
    size: Size,
    acceptor: Arc<Acceptor>,
    control: Arc<Control>,
    watcher: Arc<Watcher>,
    server: Arc<Server>,
    serve: Box<Serve>,
    state: Mutex<State>,
    /// Written when no thread is left waiting to accept, so the housekeeping thread
    /// starts accepting; read by it.
    busy_tx: UnixStream,
    busy_rx: UnixStream,
}

/// The queue and the thread accounting, under one lock so that the decision to start a
/// thread, or to have the housekeeper accept, sees exactly the threads that wait.
#[derive(Debug)]
struct State {
    /// Connections the housekeeper accepted while no thread waited to.
    queue: VecDeque<Accepted>,
    /// Threads alive.
    live: usize,
    /// Threads not serving a connection: starting, or waiting to accept.
    idle: usize,
    /// Idle threads that found the queue empty and wait on the listener themselves (or
    /// are about to).
    waiting: usize,
    /// The id of the next thread started (ids are never reused).
    next_id: usize,
    /// The handles of the threads that may still run. A thread that retires takes its own
    /// handle out and drops it (nobody will join it); one that ends at the stop leaves it.
    handles: HashMap<usize, JoinHandle<()>>,
}

impl Pool {
    /// Starts `size.warm` threads accepting from `acceptor` and calling `serve` on what
    /// they accept; they end at the stop, once their connection is done.
    pub(crate) fn start(
        size: Size,
        acceptor: Arc<Acceptor>,
        control: Arc<Control>,
        watcher: Arc<Watcher>,
        server: Arc<Server>,
        serve: impl Fn(usize, &mut Waiter, Accepted) + Send + Sync + 'static,
    ) -> io::Result<Arc<Self>> {
        let (busy_tx, busy_rx) = UnixStream::pair()?;
        busy_tx.set_nonblocking(true)?;
        busy_rx.set_nonblocking(true)?;
        let pool = Arc::new(Self {
            size,
            acceptor,
            control,
            watcher,
            server,
            serve: Box::new(serve),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                live: 0,
                idle: 0,
                waiting: 0,
                next_id: 0,
                handles: HashMap::new(),
            }),
            busy_tx,
            busy_rx,
        });
        {
            let mut state = pool.lock();
            for _ in 0..size.warm {
                // On failure the caller stops the control, which ends those started.
                pool.spawn(&mut state)?;
            }
        }
        Ok(pool)
    }

    /// Starts one thread, counted idle until it takes a connection. The caller holds the
    /// lock, so the thread's handle and counts are in place before it can look at them.
    fn spawn(self: &Arc<Self>, state: &mut State) -> io::Result<()> {
        let id = state.next_id;
        let mut waiter = Waiter::new(
            Arc::clone(&self.acceptor),
            self.control.stop_fd(),
            self.watcher.fd(),
        )?;
        let pool = Arc::clone(self);
        let handle = thread::Builder::new()
            .name(format!("quick-server-std-{id}"))
            .spawn(move || pool.work(id, &mut waiter))?;
        state.next_id += 1;
        state.live += 1;
        state.idle += 1;
        state.handles.insert(id, handle);
        Ok(())
    }

    /// One thread: takes connections from the queue, or accepts them, and serves them
    /// one after the other until the stop, or until it retires.
    fn work(self: &Arc<Self>, id: usize, waiter: &mut Waiter) {
        loop {
            let accepted = match self.queued() {
                Some(queued) => {
                    // It waited in the queue: read the changes made meanwhile first.
                    self.watcher.read_changes(&self.server);
                    queued
                }
                None => match self.accept(id, waiter) {
                    Some(accepted) => accepted,
                    None => return,
                },
            };
            (self.serve)(id, waiter, accepted);
            self.lock().idle += 1;
        }
    }

    /// An idle thread takes the next queued connection (one more thread starts if no
    /// other is idle, below the maximum), or else counts itself waiting to accept (under
    /// the lock the housekeeper queues under, so nothing is left queued while a thread
    /// waits).
    fn queued(self: &Arc<Self>) -> Option<Accepted> {
        let mut state = self.lock();
        let next = state.queue.pop_front();
        if next.is_some() {
            state.idle -= 1;
            if state.idle == 0 && state.live < self.size.max {
                let _ = self.spawn(&mut state);
            }
        } else {
            state.waiting += 1;
        }
        next
    }

    /// Waits for a connection and accepts it; `None` at the stop, or when this thread,
    /// one beyond the warm ones, found nothing for `idle_time` (it then left the counts).
    fn accept(self: &Arc<Self>, id: usize, waiter: &mut Waiter) -> Option<Accepted> {
        let mut idle_until = Instant::now() + self.size.idle_time;
        loop {
            if self.control.is_stopping() {
                let mut state = self.lock();
                state.waiting -= 1;
                state.idle -= 1;
                state.live -= 1;
                return None;
            }
            let Ok(woken) = waiter.idle(Some(idle_until)) else {
                // The wait itself failed: leave, as a retired thread, if another thread
                // still waits; otherwise try again after a pause.
                if self.retire(id, 1) {
                    return None;
                }
                self.pause();
                continue;
            };
            if woken.changes {
                self.watcher.read_changes(&self.server);
            }
            if woken.readable {
                match self.acceptor.accept() {
                    Accept::Admitted(accepted) => {
                        self.took();
                        return Some(accepted);
                    }
                    Accept::Again | Accept::Empty => {}
                    Accept::Backoff => self.pause(),
                }
            }
            let now = Instant::now();
            if now >= idle_until {
                if self.retire(id, self.size.warm) {
                    return None;
                }
                idle_until = now + self.size.idle_time;
            }
        }
    }

    /// Leaves the pool if more than `keep` threads live and another one waits to accept.
    fn retire(&self, id: usize, keep: usize) -> bool {
        let mut state = self.lock();
        if state.live <= keep || state.waiting <= 1 {
            return false;
        }
        state.waiting -= 1;
        state.idle -= 1;
        state.live -= 1;
        // Detach: nobody will join this thread.
        state.handles.remove(&id);
        true
    }

    /// Waits [`RESOURCE_BACKOFF`], or less if the stop comes first.
    fn pause(&self) {
        let until = Instant::now() + RESOURCE_BACKOFF;
        let _ = poll::wait(None, None, Some(self.control.stop_fd()), None, Some(until));
    }

    /// This thread took a connection: if no other is idle, one more starts (below the
    /// maximum); if none is left waiting to accept, the housekeeper accepts until one is.
    fn took(self: &Arc<Self>) {
        let mut state = self.lock();
        state.waiting -= 1;
        state.idle -= 1;
        if state.idle == 0 && state.live < self.size.max {
            let _ = self.spawn(&mut state);
        }
        if state.waiting == 0 {
            // One byte is enough to wake it; a full buffer means one is there.
            let _ = (&self.busy_tx).write(&[1]);
        }
    }

    /// Whether no thread waits to accept, so the housekeeper must.
    pub(crate) fn is_busy(&self) -> bool {
        self.lock().waiting == 0
    }

    /// Readable after the pool became busy; [`clear_busy`](Self::clear_busy) empties it.
    pub(crate) fn busy_fd(&self) -> RawFd {
        self.busy_rx.as_raw_fd()
    }

    /// Empties what [`busy_fd`](Self::busy_fd) holds.
    pub(crate) fn clear_busy(&self) {
        let mut sink = [0; 64];
        while matches!((&self.busy_rx).read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Accepts for the threads while none waits to, queueing what is admitted and
    /// starting a thread (below the maximum) whenever the queue outgrows the idle ones, as
    /// a burst would otherwise start them one after the other. The lock is held so that a
    /// thread coming back takes from the queue or waits to accept, never neither.
    pub(crate) fn accept_for_busy(self: &Arc<Self>) {
        loop {
            let mut state = self.lock();
            if state.waiting > 0 {
                return;
            }
            match self.acceptor.accept() {
                Accept::Admitted(accepted) => {
                    state.queue.push_back(accepted);
                    if state.queue.len() > state.idle && state.live < self.size.max {
                        let _ = self.spawn(&mut state);
                    }
                }
                Accept::Again => {}
                Accept::Empty => return,
                Accept::Backoff => {
                    drop(state);
                    self.pause();
                    return;
                }
            }
        }
    }

    /// Waits for every thread to end: only after the stop do they all end (threads
    /// started later are joined too; retired ones were never waited for).
    pub(crate) fn join(&self) {
        loop {
            let handles = mem::take(&mut self.lock().handles);
            if handles.is_empty() {
                return;
            }
            for handle in handles.into_values() {
                let _ = handle.join();
            }
        }
    }

    /// Threads alive and threads idle, for tests.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.live, state.idle)
    }

    /// Locks the state; a panic elsewhere cannot leave these plain values inconsistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::sync::mpsc::{self, Receiver};
    use std::time::SystemTime;

    use super::*;
    use crate::accept::Loopback;

    /// Long enough for a busy test machine, short enough to keep the tests quick.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// A running pool whose threads report their id for each connection, then hold it
    /// until the client closes; and its housekeeper.
    struct Running {
        pool: Arc<Pool>,
        control: Arc<Control>,
        keeper: JoinHandle<io::Result<()>>,
        addr: std::net::SocketAddr,
        started: Receiver<usize>,
    }

    fn start(size: Size) -> Running {
        let Loopback {
            acceptor,
            control,
            addr,
            ..
        } = Loopback::new(64);
        let server = Server::builder((Instant::now(), SystemTime::now())).build();
        let (started_tx, started) = mpsc::channel();
        let release = Arc::clone(&control);
        let pool = Pool::start(
            size,
            Arc::clone(&acceptor),
            Arc::clone(&control),
            Arc::new(Watcher::new()),
            Arc::clone(&server),
            move |id, _: &mut Waiter, accepted: Accepted| {
                let _ = started_tx.send(id);
                let _ = (&accepted.socket).read(&mut [0; 1]);
                release.release();
            },
        )
        .unwrap();
        let keeper = {
            let (pool, control) = (Arc::clone(&pool), Arc::clone(&control));
            thread::spawn(move || crate::keeper::run(&pool, &acceptor, &control, &server))
        };
        Running {
            pool,
            control,
            keeper,
            addr,
            started,
        }
    }

    impl Running {
        fn connect(&self, count: usize) -> Vec<TcpStream> {
            (0..count)
                .map(|_| TcpStream::connect(self.addr).unwrap())
                .collect()
        }

        /// Waits until the pool's counts are `want`.
        fn counts_become(&self, want: (usize, usize)) -> bool {
            let deadline = Instant::now() + PATIENCE;
            while self.pool.counts() != want {
                if Instant::now() >= deadline {
                    return false;
                }
                thread::sleep(Duration::from_millis(5));
            }
            true
        }

        fn stop(self) {
            self.control.stop();
            self.keeper.join().unwrap().unwrap();
            self.pool.join();
            assert_eq!(self.pool.counts(), (0, 0));
        }
    }

    #[test]
    fn grows_so_that_no_connection_waits_while_below_the_maximum() {
        let size = Size {
            warm: 2,
            max: 16,
            idle_time: IDLE_WORKER_TIME,
        };
        let running = start(size);
        assert!(running.counts_become((2, 2)));
        let clients = running.connect(16);
        let mut ids: Vec<usize> = (0..16)
            .map(|_| {
                running
                    .started
                    .recv_timeout(PATIENCE)
                    .expect("every one served")
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 16, "each connection on its own thread");
        assert!(running.counts_become((16, 0)));
        drop(clients);
        assert!(running.counts_become((16, 16)));
        // Idle threads are reused: no new thread for the next connections.
        let clients = running.connect(15);
        for _ in 0..15 {
            let id = running
                .started
                .recv_timeout(PATIENCE)
                .expect("every one served");
            assert!(id < 16, "served by a thread started before");
        }
        drop(clients);
        running.stop();
    }

    #[test]
    fn at_the_maximum_connections_wait_for_a_thread() {
        let size = Size {
            warm: 1,
            max: 3,
            idle_time: IDLE_WORKER_TIME,
        };
        let running = start(size);
        let mut clients = running.connect(5);
        for _ in 0..3 {
            running
                .started
                .recv_timeout(PATIENCE)
                .expect("three are served");
        }
        assert!(running
            .started
            .recv_timeout(Duration::from_millis(100))
            .is_err());
        assert_eq!(running.pool.counts(), (3, 0));
        // The other two were accepted for the pool, counted, and queued.
        assert!(!running.control.wait_drained(Instant::now()));
        let deadline = Instant::now() + PATIENCE;
        while running.pool.lock().queue.len() < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(running.pool.lock().queue.len(), 2);
        // One finishes: its thread takes a queued connection, whichever client it is.
        drop(clients.remove(0));
        running
            .started
            .recv_timeout(PATIENCE)
            .expect("a queued one is served");
        drop(clients);
        running
            .started
            .recv_timeout(PATIENCE)
            .expect("the last one is served");
        assert!(running.counts_become((3, 3)));
        running.stop();
    }

    #[test]
    fn extra_threads_retire_when_idle_and_warm_ones_stay() {
        let idle_time = Duration::from_millis(100);
        let size = Size {
            warm: 2,
            max: 8,
            idle_time,
        };
        let running = start(size);
        let clients = running.connect(6);
        for _ in 0..6 {
            running
                .started
                .recv_timeout(PATIENCE)
                .expect("every one served");
        }
        // Six serve, and at least one more waits to accept.
        let deadline = Instant::now() + PATIENCE;
        while running.pool.lock().waiting == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let (live, idle) = running.pool.counts();
        assert!(live - idle == 6 && idle >= 1, "{live} live, {idle} idle");
        drop(clients);
        assert!(running.counts_become((2, 2)), "back to the warm threads");
        // The retired ones took their handles out: only the warm ones are left to join.
        assert_eq!(running.pool.lock().handles.len(), 2);
        // Warm threads outlive several idle periods and still serve.
        thread::sleep(idle_time * 3);
        assert_eq!(running.pool.counts(), (2, 2));
        drop(running.connect(1));
        running
            .started
            .recv_timeout(PATIENCE)
            .expect("a warm thread serves");
        running.stop();
    }
}
