//! Where the tasks of a worker route live: [`TaskStore`] is the protocol's state as the
//! route drives it; [`MemoryTasks`] keeps it in the process, a remote store (Redis, in
//! the facade) shares it between instances.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;

use super::cancel::CancelFlag;
use super::error::WorkerError;
use super::key::TaskKey;
use super::protocol::{Reply, Token};
use super::registry::{Finished, Purged, TaskOutcome, WorkerRegistry};

/// The task, result and cargo state of one worker route, shared by every thread (and, for
/// a remote store, every instance).
///
/// Each method answers one protocol action; a remote store must make each atomic across
/// instances and must trip the `CancelFlag` given to [`start`](Self::start) when a
/// `stop` for that task arrives anywhere.
pub trait TaskStore: Send + Sync {
    /// Registers a new running task, returns its unused key; `seed` is where the search
    /// for a free key starts, `cancel` is tripped by a later `stop`. A store that re-runs
    /// tasks lost with their instance keeps `payload` for that.
    fn start(&self, seed: u32, payload: &Value, cancel: CancelFlag)
        -> Result<TaskKey, WorkerError>;

    /// Records how the job of `key` ended, at `now`.
    fn finish(
        &self,
        key: TaskKey,
        outcome: TaskOutcome,
        now: Instant,
    ) -> Result<Finished, WorkerError>;

    /// Answers `start` after its wait.
    fn get(&self, token: &Token, max_chunk_size: usize, now: Instant)
        -> Result<Reply, WorkerError>;

    /// Answers `get`; a store whose route re-runs lost tasks may instead claim the task,
    /// when its instance died, to run it again here.
    fn poll(
        &self,
        token: &Token,
        max_chunk_size: usize,
        now: Instant,
    ) -> Result<Polled, WorkerError> {
        self.get(token, max_chunk_size, now).map(Polled::Reply)
    }

    /// Answers `stop`.
    fn stop(&self, token: &Token) -> Result<Reply, WorkerError>;

    /// Answers `cargo`.
    fn cargo(&self, token: &Token) -> Result<Reply, WorkerError>;

    /// The next purge deadline of a store that purges on the server's timer.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Purges what expired by `now`; returns what to log.
    fn handle_timeout(&self, _now: Instant) -> Vec<Purged> {
        Vec::new()
    }

    /// Whether calls are network round trips, which must not run on the event loop.
    fn is_remote(&self) -> bool {
        false
    }
}

/// What [`TaskStore::poll`] found.
#[derive(Debug)]
pub enum Polled {
    /// The answer to send.
    Reply(Reply),
    /// The task's instance died and this one claimed it: run the job again from
    /// `payload` with `cancel` (which a `stop` trips), then answer like `start`.
    Rerun {
        /// The task, unchanged: the client keeps its token.
        key: TaskKey,
        /// The payload the first run got.
        payload: Value,
        /// Tripped by a `stop` from any instance.
        cancel: CancelFlag,
    },
}

/// The in-process [`TaskStore`], the default: the task registry and the cancel flags of the
/// running tasks, behind one mutex.
#[derive(Debug, Default)]
pub struct MemoryTasks {
    tasks: Mutex<Tasks>,
}

#[derive(Debug, Default)]
struct Tasks {
    registry: WorkerRegistry,
    flags: HashMap<TaskKey, CancelFlag>,
}

impl MemoryTasks {
    /// No tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic while holding the lock cannot leave the registry half-updated: every
    /// mutation is a single map operation. Recover the guard rather than propagate.
    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TaskStore for MemoryTasks {
    fn start(
        &self,
        seed: u32,
        _payload: &Value,
        cancel: CancelFlag,
    ) -> Result<TaskKey, WorkerError> {
        let mut tasks = self.tasks();
        let key = tasks.registry.start(seed);
        tasks.flags.insert(key, cancel);
        Ok(key)
    }

    fn finish(
        &self,
        key: TaskKey,
        outcome: TaskOutcome,
        now: Instant,
    ) -> Result<Finished, WorkerError> {
        let mut tasks = self.tasks();
        tasks.flags.remove(&key);
        Ok(tasks.registry.finish(key, outcome, now))
    }

    fn get(
        &self,
        token: &Token,
        max_chunk_size: usize,
        now: Instant,
    ) -> Result<Reply, WorkerError> {
        self.tasks().registry.get(token, max_chunk_size, now)
    }

    fn stop(&self, token: &Token) -> Result<Reply, WorkerError> {
        let mut tasks = self.tasks();
        let stopped = tasks.registry.stop(token);
        if let Some(flag) = token.key().and_then(|key| tasks.flags.remove(&key)) {
            flag.cancel();
        }
        Ok(stopped.reply)
    }

    fn cargo(&self, token: &Token) -> Result<Reply, WorkerError> {
        self.tasks().registry.cargo(token)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.tasks().registry.poll_timeout()
    }

    fn handle_timeout(&self, now: Instant) -> Vec<Purged> {
        self.tasks().registry.handle_timeout(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_trips_the_flag_of_a_running_task() {
        let store = MemoryTasks::new();
        let flag = CancelFlag::default();
        let key = store.start(5, &json!({}), flag.clone()).unwrap();
        assert!(!flag.is_cancelled());
        let reply = store.stop(&Token::from(key)).unwrap();
        assert!(reply.done && !reply.continue_);
        assert!(flag.is_cancelled());
        let now = Instant::now();
        let done = TaskOutcome::Done("1".into());
        assert_eq!(store.finish(key, done, now), Ok(Finished::Discarded));
        assert_eq!(
            store.get(&Token::from(key), 10, now).unwrap().result,
            json!(null)
        );
    }

    #[test]
    fn a_finished_flag_is_forgotten() {
        let store = MemoryTasks::new();
        let flag = CancelFlag::default();
        let key = store.start(5, &json!({}), flag.clone()).unwrap();
        let now = Instant::now();
        let done = TaskOutcome::Done("1".into());
        assert_eq!(store.finish(key, done, now), Ok(Finished::Stored));
        store.stop(&Token::from(key)).unwrap();
        assert!(!flag.is_cancelled());
    }
}
