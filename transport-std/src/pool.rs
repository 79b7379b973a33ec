//! The elastic pool of worker threads: a few kept warm, one more started whenever an item
//! arrives and no worker is idle (up to a maximum), the extra ones ending after a spell
//! with nothing to do. A thread per connection, like the original's `ThreadingMixIn`, but
//! bounded and reused.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a worker beyond the warm ones waits for work before it ends: long enough that
/// a burst followed by a pause reuses its threads (starting one costs tens of
/// microseconds), short enough that a spike's threads do not linger for minutes.
pub(crate) const IDLE_WORKER_TIME: Duration = Duration::from_secs(30);

/// How many workers run, and how long an extra one may idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Size {
    /// Workers started at once, which end only when the pool closes.
    pub(crate) warm: usize,
    /// Most workers alive at once; beyond, items wait in the queue.
    pub(crate) max: usize,
    /// How long a worker beyond `warm` waits for an item before it ends.
    pub(crate) idle_time: Duration,
}

/// What a worker does with an item: called with the worker's id and the item.
type Serve<T> = Arc<dyn Fn(usize, T) + Send + Sync>;

/// The feeding end of the pool, held by the accept thread. Dropping it closes the queue:
/// the workers take what is still queued, then end.
pub(crate) struct Pool<T> {
    shared: Arc<Shared<T>>,
    serve: Serve<T>,
}

/// The pool's workers, for the one who waits for them to end.
#[derive(Debug)]
pub(crate) struct Workers<T> {
    shared: Arc<Shared<T>>,
}

/// What the feeding end and the workers share.
#[derive(Debug)]
struct Shared<T> {
    size: Size,
    state: Mutex<State<T>>,
    /// Signalled when an item is queued or the pool closes.
    arrived: Condvar,
}

/// The queue and the worker accounting, under one lock so that the decision to start a
/// worker sees exactly the workers that will look at the queue.
#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// Workers alive.
    live: usize,
    /// Workers not serving an item, each of which looks at the queue before it waits or
    /// ends: those waiting, woken but not yet running, or started but not yet running.
    idle: usize,
    /// The feeding end is gone: no item will come.
    closed: bool,
    /// The id of the next worker started (ids are never reused).
    next_id: usize,
    /// The handles of the workers that may still run. A worker that retires takes its own
    /// handle out and drops it (nobody will join it); one that ends at the close leaves it.
    handles: HashMap<usize, JoinHandle<()>>,
}

/// Starts a pool of `size.warm` workers, each calling `serve` on the items it takes.
pub(crate) fn start<T: Send + 'static>(
    size: Size,
    serve: impl Fn(usize, T) + Send + Sync + 'static,
) -> io::Result<(Pool<T>, Workers<T>)> {
    let shared = Arc::new(Shared {
        size,
        state: Mutex::new(State {
            queue: VecDeque::new(),
            live: 0,
            idle: 0,
            closed: false,
            next_id: 0,
            handles: HashMap::new(),
        }),
        arrived: Condvar::new(),
    });
    let pool = Pool {
        shared: Arc::clone(&shared),
        serve: Arc::new(serve),
    };
    {
        let mut state = shared.lock();
        for _ in 0..size.warm {
            // On failure, dropping `pool` closes the queue and ends the workers started.
            pool.spawn(&mut state)?;
        }
    }
    Ok((pool, Workers { shared }))
}

impl<T: Send + 'static> Pool<T> {
    /// Queues `item` for a worker, and starts one more (below the maximum) when the idle
    /// workers are fewer than the queued items. Should the thread not start (out of
    /// threads or memory), the item stays queued for a worker that finishes.
    pub(crate) fn push(&self, item: T) {
        let mut state = self.shared.lock();
        state.queue.push_back(item);
        if state.queue.len() > state.idle && state.live < self.shared.size.max {
            let _ = self.spawn(&mut state);
        }
        self.shared.arrived.notify_one();
    }

    /// Starts one worker, counted idle until it takes an item. The caller holds the lock,
    /// so the worker's handle and counts are in place before it can look at them.
    fn spawn(&self, state: &mut State<T>) -> io::Result<()> {
        let id = state.next_id;
        let shared = Arc::clone(&self.shared);
        let serve = Arc::clone(&self.serve);
        let handle = thread::Builder::new()
            .name(format!("quick-server-std-{id}"))
            .spawn(move || shared.work(id, &*serve))?;
        state.next_id += 1;
        state.live += 1;
        state.idle += 1;
        state.handles.insert(id, handle);
        Ok(())
    }
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_all();
    }
}

impl<T> fmt::Debug for Pool<T>
where
    T: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<T> Workers<T> {
    /// Waits for every worker to end. Only once the pool is closed (its [`Pool`] dropped)
    /// do they all end; workers started later are joined too, retired ones were never
    /// waited for.
    pub(crate) fn join(&self) {
        loop {
            let handles = mem::take(&mut self.shared.lock().handles);
            if handles.is_empty() {
                return;
            }
            for handle in handles.into_values() {
                let _ = handle.join();
            }
        }
    }

    /// Workers alive and workers idle, for tests.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.live, state.idle)
    }
}

impl<T> Shared<T> {
    /// One worker: serves items one after the other until the pool closes, or until it
    /// retires.
    fn work(&self, id: usize, serve: &(dyn Fn(usize, T) + Send + Sync)) {
        let mut served = false;
        while let Some(item) = self.next(id, served) {
            serve(id, item);
            served = true;
        }
    }

    /// The next item for worker `id`, which is idle again if it `served` one (counted
    /// under the same lock it looks at the queue with), waiting for one. `None` when the
    /// pool is closed and the queue empty, or when this worker is one beyond the warm ones
    /// and found nothing for `idle_time`; it has then left the counts.
    fn next(&self, id: usize, served: bool) -> Option<T> {
        let mut state = self.lock();
        if served {
            state.idle += 1;
        }
        let mut idle_until = Instant::now() + self.size.idle_time;
        loop {
            if let Some(item) = state.queue.pop_front() {
                state.idle -= 1;
                return Some(item);
            }
            let now = Instant::now();
            let expired = now >= idle_until;
            if state.closed || (expired && state.live > self.size.warm) {
                state.idle -= 1;
                state.live -= 1;
                if !state.closed {
                    // Retiring: detach, as nobody will join this thread.
                    state.handles.remove(&id);
                }
                return None;
            }
            if expired {
                // A warm worker: it stays.
                idle_until = now + self.size.idle_time;
            }
            let left = idle_until.saturating_duration_since(now);
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Locks the state; a panic elsewhere cannot leave these plain values inconsistent.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{self, Receiver, Sender};

    use super::*;

    /// Long enough for a busy test machine, short enough to keep the tests quick.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// A pool whose items are gates: each worker reports its id, then waits for the gate.
    fn gated(size: Size) -> (Pool<Receiver<()>>, Workers<Receiver<()>>, Receiver<usize>) {
        let (started_tx, started) = mpsc::channel();
        let (pool, workers) = start(size, move |id, gate: Receiver<()>| {
            let _ = started_tx.send(id);
            let _ = gate.recv();
        })
        .unwrap();
        (pool, workers, started)
    }

    /// Queues `count` gated items; returns the senders that open them.
    fn push_gates(pool: &Pool<Receiver<()>>, count: usize) -> Vec<Sender<()>> {
        (0..count)
            .map(|_| {
                let (open, gate) = mpsc::channel();
                pool.push(gate);
                open
            })
            .collect()
    }

    /// Waits until the pool's counts are `want`.
    fn counts_become<T>(workers: &Workers<T>, want: (usize, usize)) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while workers.counts() != want {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn grows_so_that_no_item_waits_while_below_the_maximum() {
        let size = Size {
            warm: 2,
            max: 16,
            idle_time: IDLE_WORKER_TIME,
        };
        let (pool, workers, started) = gated(size);
        assert!(counts_become(&workers, (2, 2)));
        let gates = push_gates(&pool, 16);
        let mut ids: Vec<usize> = (0..16)
            .map(|_| started.recv_timeout(PATIENCE).expect("every item starts"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 16, "each item on its own worker");
        assert_eq!(workers.counts(), (16, 0));
        drop(gates);
        assert!(counts_become(&workers, (16, 16)));
        // Idle workers are reused: no new thread for the next items.
        let gates = push_gates(&pool, 16);
        for _ in 0..16 {
            started.recv_timeout(PATIENCE).expect("every item starts");
        }
        assert_eq!(workers.counts(), (16, 0));
        drop(gates);
        drop(pool);
        workers.join();
        assert_eq!(workers.counts(), (0, 0));
    }

    #[test]
    fn at_the_maximum_items_wait_for_a_worker() {
        let size = Size {
            warm: 1,
            max: 3,
            idle_time: IDLE_WORKER_TIME,
        };
        let (pool, workers, started) = gated(size);
        let mut gates = push_gates(&pool, 5);
        for _ in 0..3 {
            started.recv_timeout(PATIENCE).expect("three items start");
        }
        assert!(started.recv_timeout(Duration::from_millis(100)).is_err());
        assert_eq!(workers.counts(), (3, 0));
        // One finishes: its worker takes the next queued item.
        drop(gates.remove(0));
        started
            .recv_timeout(PATIENCE)
            .expect("a queued item starts");
        drop(gates);
        started
            .recv_timeout(PATIENCE)
            .expect("the last item starts");
        // Closing lets the workers finish what is queued, then end; all are joined.
        drop(pool);
        workers.join();
        assert_eq!(workers.counts(), (0, 0));
    }

    #[test]
    fn extra_workers_retire_when_idle_and_warm_ones_stay() {
        let idle_time = Duration::from_millis(100);
        let size = Size {
            warm: 2,
            max: 8,
            idle_time,
        };
        let (pool, workers, started) = gated(size);
        let gates = push_gates(&pool, 6);
        for _ in 0..6 {
            started.recv_timeout(PATIENCE).expect("every item starts");
        }
        assert_eq!(workers.counts(), (6, 0));
        drop(gates);
        assert!(counts_become(&workers, (2, 2)), "back to the warm workers");
        // The retired ones took their handles out: only the warm ones are left to join.
        assert_eq!(workers.shared.lock().handles.len(), 2);
        // Warm workers outlive several idle periods and still serve.
        thread::sleep(idle_time * 3);
        assert_eq!(workers.counts(), (2, 2));
        drop(push_gates(&pool, 1));
        started
            .recv_timeout(PATIENCE)
            .expect("a warm worker serves");
        drop(pool);
        workers.join();
        assert_eq!(workers.counts(), (0, 0));
    }
}
