//! Fixed pools of threads for work that may block (user handlers, worker computations,
//! host-name lookups), so the event loop never does. Results come back through a channel,
//! and the loop is woken through its `mio::Waker` — once per batch, not once per result.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use mio::Waker;
use quick_server_core::{Completion, Job, JobKind};

use crate::slab::Key;
use crate::upstream;

/// Work for the request pool: a core job, or the host name of a proxy upstream to look up
/// (`getaddrinfo` blocks, so it never runs on the loop).
#[derive(Debug)]
pub(crate) enum Task {
    /// A request job of the core.
    Job(Job),
    /// Look up `host`; `id` names the upstream connection that asked.
    Resolve {
        /// The session's upstream attempt this lookup is for.
        id: u64,
        /// Host name.
        host: String,
        /// Port.
        port: u16,
    },
}

/// What the request pool hands back.
#[derive(Debug)]
pub(crate) enum Done {
    /// A job's result.
    Job(Completion),
    /// The addresses of a looked-up host (in the order to try them).
    Resolved {
        /// The upstream attempt that asked.
        id: u64,
        /// The addresses, or why there are none.
        addrs: io::Result<Vec<SocketAddr>>,
    },
}

impl Task {
    fn run(self) -> Done {
        match self {
            Self::Job(job) => Done::Job(job.run()),
            Self::Resolve { id, host, port } => Done::Resolved {
                id,
                addrs: upstream::resolve(&host, port),
            },
        }
    }
}

/// The core's jobs on two pools: request handlers (and upstream lookups), which a client
/// waits for, and background computations, which may run for minutes and must not starve
/// them.
#[derive(Debug)]
pub(crate) struct Jobs {
    requests: Pool<Task, Done>,
    background: Pool<Job, Completion>,
}

impl Jobs {
    /// Two pools of `threads` threads each, waking the loop through `waker`.
    pub(crate) fn new(threads: usize, waker: &Arc<Waker>) -> io::Result<Self> {
        let requests = Pool::new(threads, Task::run, waker.clone(), "job")?;
        let background = Pool::new(threads, Job::run, waker.clone(), "background")?;
        Ok(Self {
            requests,
            background,
        })
    }

    /// Queues a job on the pool its kind belongs on.
    pub(crate) fn submit(&self, key: Key, job: Job) {
        match job.kind() {
            JobKind::Background => self.background.submit(key, job),
            _ => self.requests.submit(key, Task::Job(job)),
        }
    }

    /// Queues the lookup of an upstream host name for the session `key`.
    pub(crate) fn resolve(&self, key: Key, id: u64, host: String, port: u16) {
        self.requests.submit(key, Task::Resolve { id, host, port });
    }

    /// Marks pending wakes as seen; call before collecting with [`result`](Self::result).
    pub(crate) fn woken(&self) {
        self.requests.woken();
        self.background.woken();
    }

    /// A finished job or lookup, if any.
    pub(crate) fn result(&self) -> Option<(Key, Done)> {
        self.requests.result().or_else(|| {
            self.background
                .result()
                .map(|(key, completion)| (key, Done::Job(completion)))
        })
    }

    /// Waits for the request pool to finish its queue; background computations go on
    /// detached (nobody waits for them, and they may run for minutes).
    pub(crate) fn finish(&mut self) {
        self.requests.join();
        self.background.close();
    }
}

/// Wakes the event loop when results wait, coalescing wakes until the loop looks.
#[derive(Debug)]
struct Notify {
    waker: Arc<Waker>,
    /// A wake is pending: the loop has not yet collected results since.
    pending: AtomicBool,
}

/// Threads running tasks of type `T` into results of type `R`, each tagged with the
/// key of the connection that asked.
#[derive(Debug)]
pub(crate) struct Pool<T, R> {
    tasks: Option<Sender<(Key, T)>>,
    results: Receiver<(Key, R)>,
    notify: Arc<Notify>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static, R: Send + 'static> Pool<T, R> {
    /// Starts `threads` threads (at least one, named after `role`) that apply `run` to
    /// each task.
    pub(crate) fn new(
        threads: usize,
        run: fn(T) -> R,
        waker: Arc<Waker>,
        role: &str,
    ) -> io::Result<Self> {
        let (task_tx, task_rx) = mpsc::channel::<(Key, T)>();
        let (result_tx, results) = mpsc::channel();
        let task_rx = Arc::new(Mutex::new(task_rx));
        let notify = Arc::new(Notify {
            waker,
            pending: AtomicBool::new(false),
        });
        let mut pool = Self {
            tasks: Some(task_tx),
            results,
            notify: notify.clone(),
            threads: Vec::new(),
        };
        for n in 0..threads.max(1) {
            let task_rx = task_rx.clone();
            let result_tx = result_tx.clone();
            let notify = notify.clone();
            let handle = thread::Builder::new()
                .name(format!("quick-server-{role}-{n}"))
                .spawn(move || work(&task_rx, &result_tx, &notify, run));
            match handle {
                Ok(handle) => pool.threads.push(handle),
                Err(e) => {
                    pool.join();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a task for the next free thread.
    pub(crate) fn submit(&self, key: Key, task: T) {
        if let Some(tasks) = &self.tasks {
            // Sending fails only when every thread is gone; the connection then waits
            // until its own deadline or the shutdown grace ends it.
            let _ = tasks.send((key, task));
        }
    }

    /// Marks the pending wake as seen; call before collecting with [`result`](Self::result).
    pub(crate) fn woken(&self) {
        self.notify.pending.store(false, Ordering::SeqCst);
    }

    /// A finished result, if any.
    pub(crate) fn result(&self) -> Option<(Key, R)> {
        self.results.try_recv().ok()
    }

    /// Stops taking tasks; the threads finish what is queued, then end.
    pub(crate) fn close(&mut self) {
        self.tasks = None;
    }

    /// [`close`](Self::close)s and waits for the threads to end.
    pub(crate) fn join(&mut self) {
        self.close();
        for handle in self.threads.drain(..) {
            // A panic inside `run` is already turned into a result by `Job::run`; a
            // thread that died anyway has nothing left to report.
            let _ = handle.join();
        }
    }
}

/// One pool thread: takes tasks until the pool closes its sender.
fn work<T, R>(
    tasks: &Mutex<Receiver<(Key, T)>>,
    results: &Sender<(Key, R)>,
    notify: &Notify,
    run: fn(T) -> R,
) {
    loop {
        let next = match tasks.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return, // another thread panicked while holding the lock
        };
        let Ok((key, task)) = next else { return };
        let result = run(task);
        if results.send((key, result)).is_err() {
            return; // the loop is gone
        }
        if !notify.pending.swap(true, Ordering::SeqCst) {
            // Nothing useful to do if waking fails: the loop is shutting down.
            let _ = notify.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Poll};

    use super::*;
    use crate::slab::{Slab, WAKER};

    #[test]
    fn runs_tasks_and_wakes_the_loop() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let mut pool: Pool<u32, u32> = Pool::new(2, |x| x * 10, waker, "t").unwrap();
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..20).map(|_| slab.insert(()).unwrap()).collect();
        for (i, key) in keys.iter().enumerate() {
            pool.submit(*key, i as u32);
        }
        let mut got = Vec::new();
        let mut events = Events::with_capacity(8);
        while got.len() < keys.len() {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(
                events.iter().any(|e| e.token() == WAKER),
                "woken by the pool"
            );
            pool.woken();
            while let Some(result) = pool.result() {
                got.push(result);
            }
        }
        got.sort();
        let want: Vec<(Key, u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as u32 * 10))
            .collect();
        assert_eq!(got, want);
        pool.join();
        assert!(pool.threads.is_empty());
    }

    #[test]
    fn join_finishes_queued_tasks() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let mut pool: Pool<u64, u64> = Pool::new(
            1,
            |ms| {
                thread::sleep(Duration::from_millis(ms));
                ms
            },
            waker,
            "t",
        )
        .unwrap();
        let key = Slab::new().insert(()).unwrap();
        pool.submit(key, 20);
        pool.submit(key, 1);
        pool.join();
        assert_eq!(pool.result(), Some((key, 20)));
        assert_eq!(pool.result(), Some((key, 1)));
        pool.submit(key, 1);
        assert_eq!(pool.result(), None, "a joined pool takes no more work");
    }
}
