//! Per-route state of the worker protocol: tasks, cancelled keys and cargo, with their
//! purge deadlines (BEHAVIOUR.md: Workers).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cargo::{exceeds_chars, split_chars};
use super::error::{WorkerError, WorkerFailure};
use super::key::TaskKey;
use super::protocol::{Reply, Token};
use super::{CARGO_TTL, RESULT_RETENTION};

/// How a job ended, as reported by the transport to `WorkerRegistry::finish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    /// The job returned; holds the JSON text of its return value (`"null"` for none).
    Done(String),
    /// The job failed or asked for an error page.
    Failed(WorkerFailure),
}

/// What `WorkerRegistry::finish` did with an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The outcome is kept until collected or purged.
    Stored,
    /// The outcome was dropped: the task was stopped, already finished or never started.
    Discarded,
}

/// Answer of `WorkerRegistry::stop`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stopped {
    /// The reply to send: always done, no result, no continue.
    pub reply: Reply,
    /// Whether a running task was cancelled, so the caller flips its cancel flag.
    pub was_running: bool,
}

/// Something `WorkerRegistry::handle_timeout` removed unread; its `Display` is the
/// original's log text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purged {
    /// A result nobody collected (logged as a plain message).
    Result(TaskKey),
    /// A failure nobody collected (logged with source `err_worker`).
    Failure(TaskKey, WorkerFailure),
    /// A cargo chunk nobody fetched (logged as a plain message).
    Cargo(TaskKey),
}

impl fmt::Display for Purged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Result(key) => write!(f, "purged result that was never read ({key})"),
            Self::Failure(key, failure) => {
                write!(f, "Error in purged worker for {key}: {failure}")
            }
            Self::Cargo(key) => write!(f, "purged cargo that was never read ({key})"),
        }
    }
}

/// Task, cancellation and cargo state of one worker route.
///
/// Memory stays bounded by the work in flight: a finished task is removed when collected
/// or [`RESULT_RETENTION`] after it finished, a chunk when fetched or [`CARGO_TTL`] after
/// it was created, and a cancelled key as soon as its job finishes. Only running tasks
/// have no deadline; they end when the transport calls [`finish`](Self::finish).
#[derive(Debug, Default)]
pub(super) struct WorkerRegistry {
    tasks: HashMap<TaskKey, Task>,
    cancelled: HashSet<TaskKey>,
    cargo: HashMap<TaskKey, Chunk>,
    deadlines: BTreeSet<(Instant, Expiry)>,
}

#[derive(Debug)]
enum Task {
    Running,
    Finished {
        outcome: TaskOutcome,
        purge_at: Instant,
    },
}

#[derive(Debug)]
struct Chunk {
    text: String,
    purge_at: Instant,
}

/// What a deadline in the purge queue removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Expiry {
    Result(TaskKey),
    Cargo(TaskKey),
}

impl WorkerRegistry {
    /// Registers a new running task and returns its key: `seed` (e.g. from
    /// [`clock_seed`](super::clock_seed)), incremented until unused among tasks, cargo and
    /// cancelled keys.
    pub(super) fn start(&mut self, seed: u32) -> TaskKey {
        let key = self.unused_key(TaskKey::new(seed));
        self.tasks.insert(key, Task::Running);
        key
    }

    /// Records the end of a job at `now`. A cancelled task's outcome is dropped and its
    /// key freed; otherwise it is kept for [`RESULT_RETENTION`].
    pub(super) fn finish(&mut self, key: TaskKey, outcome: TaskOutcome, now: Instant) -> Finished {
        if self.cancelled.remove(&key) {
            return Finished::Discarded;
        }
        let Some(task @ Task::Running) = self.tasks.get_mut(&key) else {
            return Finished::Discarded;
        };
        let purge_at = deadline(now, RESULT_RETENTION);
        *task = Task::Finished { outcome, purge_at };
        self.deadlines.insert((purge_at, Expiry::Result(key)));
        Finished::Stored
    }

    /// Answers `get` (and `start` after its wait, with `Token::from(key)`).
    ///
    /// A finished task is removed by this call. A result longer than `max_chunk_size`
    /// characters is split into cargo and the reply lists the chunk keys in order. A failed
    /// task yields [`WorkerError::Job`]. With `max_chunk_size` 0 a result that needs
    /// splitting yields [`WorkerError::InvalidChunkSize`] and the task stays collectable.
    pub(super) fn get(
        &mut self,
        token: &Token,
        max_chunk_size: usize,
        now: Instant,
    ) -> Result<Reply, WorkerError> {
        let Some(key) = token.key() else {
            return Ok(Reply::unknown(token));
        };
        let split = match self.tasks.get(&key) {
            None => return Ok(Reply::unknown(token)),
            Some(Task::Running) => return Ok(Reply::running(token)),
            Some(Task::Finished {
                outcome: TaskOutcome::Done(text),
                ..
            }) if exceeds_chars(text, max_chunk_size) => Some(
                NonZeroUsize::new(max_chunk_size)
                    .ok_or(WorkerError::InvalidChunkSize(max_chunk_size))?,
            ),
            Some(Task::Finished { .. }) => None,
        };
        let Some(Task::Finished { outcome, purge_at }) = self.tasks.remove(&key) else {
            return Ok(Reply::unknown(token));
        };
        self.deadlines.remove(&(purge_at, Expiry::Result(key)));
        match (outcome, split) {
            (TaskOutcome::Done(text), None) => {
                Ok(Reply::finished(token, false, Value::String(text)))
            }
            (TaskOutcome::Done(text), Some(size)) => {
                let keys = self.store_cargo(key, &text, size, now);
                Ok(Reply::finished(token, true, Value::Array(keys)))
            }
            (TaskOutcome::Failed(failure), _) => Err(WorkerError::Job(failure)),
        }
    }

    /// Answers `stop`: a running task is removed and marked cancelled (its outcome will be
    /// dropped), a finished one loses its result, an unknown one is ignored.
    pub(super) fn stop(&mut self, token: &Token) -> Stopped {
        let reply = Reply::stopped(token);
        let Some(key) = token.key() else {
            return Stopped {
                reply,
                was_running: false,
            };
        };
        let was_running = match self.tasks.remove(&key) {
            Some(Task::Running) => {
                self.cancelled.insert(key);
                true
            }
            Some(Task::Finished { purge_at, .. }) => {
                self.deadlines.remove(&(purge_at, Expiry::Result(key)));
                false
            }
            None => false,
        };
        Stopped { reply, was_running }
    }

    /// Answers `cargo`: removes and returns one chunk; a second fetch (or an unknown key)
    /// yields [`WorkerError::UnknownCargo`].
    pub(super) fn cargo(&mut self, token: &Token) -> Result<Reply, WorkerError> {
        let chunk = token
            .key()
            .and_then(|key| Some((key, self.cargo.remove(&key)?)));
        let Some((key, chunk)) = chunk else {
            return Err(WorkerError::UnknownCargo(token.text()));
        };
        self.deadlines.remove(&(chunk.purge_at, Expiry::Cargo(key)));
        Ok(Reply::finished(token, false, Value::String(chunk.text)))
    }

    /// Whether the task was stopped while running and its job has not finished yet (jobs
    /// see it through their `CancelFlag`; tests look here).
    #[cfg(test)]
    fn is_cancelled(&self, key: TaskKey) -> bool {
        self.cancelled.contains(&key)
    }

    /// Whether nothing is stored: no task, no cancelled key, no cargo.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.cancelled.is_empty() && self.cargo.is_empty()
    }

    /// The next purge deadline, if anything is waiting to be collected.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Purges every result and chunk whose deadline is at or before `now` and returns
    /// them in deadline order for logging.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Vec<Purged> {
        let mut purged = Vec::new();
        while let Some(&(at, expiry)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match expiry {
                Expiry::Result(key) => match self.tasks.remove(&key) {
                    Some(Task::Finished {
                        outcome: TaskOutcome::Done(_),
                        ..
                    }) => purged.push(Purged::Result(key)),
                    Some(Task::Finished {
                        outcome: TaskOutcome::Failed(failure),
                        ..
                    }) => purged.push(Purged::Failure(key, failure)),
                    // Every Result deadline belongs to a finished task (it is removed
                    // with the task); put anything else back untouched.
                    Some(running @ Task::Running) => {
                        self.tasks.insert(key, running);
                    }
                    None => {}
                },
                Expiry::Cargo(key) => {
                    if self.cargo.remove(&key).is_some() {
                        purged.push(Purged::Cargo(key));
                    }
                }
            }
        }
        purged
    }

    /// Stores the pieces of `text` as chunks expiring [`CARGO_TTL`] after `now` and
    /// returns their keys, in order, as JSON strings.
    fn store_cargo(
        &mut self,
        task: TaskKey,
        text: &str,
        size: NonZeroUsize,
        now: Instant,
    ) -> Vec<Value> {
        let purge_at = deadline(now, CARGO_TTL);
        let mut seed = task.scattered();
        let mut keys = Vec::new();
        for piece in split_chars(text, size) {
            let key = self.unused_key(seed);
            self.cargo.insert(
                key,
                Chunk {
                    text: piece.to_owned(),
                    purge_at,
                },
            );
            self.deadlines.insert((purge_at, Expiry::Cargo(key)));
            keys.push(Value::String(key.to_string()));
            seed = key.next();
        }
        keys
    }

    /// The first key from `seed` on (wrapping) not used by a task, chunk or cancelled key.
    ///
    /// Terminates because the stored keys are far fewer than 2^32: each one holds memory.
    fn unused_key(&self, seed: TaskKey) -> TaskKey {
        let mut key = seed;
        while self.tasks.contains_key(&key)
            || self.cargo.contains_key(&key)
            || self.cancelled.contains(&key)
        {
            key = key.next();
        }
        key
    }
}

/// `now + after`, or `now` in the (unreachable in practice) case the clock would overflow,
/// so that an entry is purged early rather than kept forever.
fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BIG: usize = 10_485_760;

    fn token(value: Value) -> Token {
        Token::from_json(value)
    }

    fn done(text: &str) -> TaskOutcome {
        TaskOutcome::Done(text.to_owned())
    }

    fn failed(status: Option<u16>, message: &str) -> TaskOutcome {
        TaskOutcome::Failed(WorkerFailure {
            status,
            message: message.to_owned(),
        })
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn start_uses_seed_then_increments_past_used_keys() {
        let mut reg = WorkerRegistry::default();
        assert_eq!(reg.start(10).to_string(), "10");
        assert_eq!(reg.start(10).to_string(), "11");
        assert_eq!(reg.start(10).to_string(), "12");
        assert_eq!(reg.start(u32::MAX).to_string(), "4294967295");
        assert_eq!(reg.start(u32::MAX).to_string(), "0");
    }

    #[test]
    fn start_skips_cancelled_and_cargo_keys() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let cancelled = reg.start(5);
        assert!(reg.stop(&Token::from(cancelled)).was_running);
        assert_eq!(reg.start(5).to_string(), "6");

        let big = reg.start(100);
        reg.finish(big, done("abcd"), now);
        let reply = reg.get(&Token::from(big), 2, now).unwrap();
        let first_chunk = reply.result[0].as_str().unwrap().to_owned();
        let seed: u32 = first_chunk.parse().unwrap();
        let next = reg.start(seed);
        assert_ne!(next.to_string(), first_chunk);
        assert_ne!(Some(next.to_string().as_str()), reply.result[1].as_str());
    }

    #[test]
    fn get_unknown_task() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        for tok in [
            json!("123"),
            json!(123),
            json!(null),
            json!([1]),
            json!("x"),
        ] {
            let reply = reg.get(&token(tok.clone()), BIG, now).unwrap();
            assert_eq!(
                reply.to_json_value(),
                json!({"continue": false, "done": false, "result": null, "token": tok})
            );
        }
    }

    #[test]
    fn get_running_task() {
        let mut reg = WorkerRegistry::default();
        let key = reg.start(1);
        let reply = reg.get(&Token::from(key), BIG, Instant::now()).unwrap();
        assert_eq!(
            reply.to_json_value(),
            json!({"continue": true, "done": false, "result": null, "token": "1"})
        );
        // Still there after a get.
        assert!(
            reg.get(&Token::from(key), BIG, Instant::now())
                .unwrap()
                .continue_
        );
    }

    #[test]
    fn get_small_result_delivers_and_removes() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(42);
        assert_eq!(reg.finish(key, done("{\"a\": 1}"), now), Finished::Stored);
        let reply = reg.get(&token(json!("42")), BIG, now).unwrap();
        assert_eq!(
            reply.to_json_value(),
            json!({"continue": false, "done": true, "result": "{\"a\": 1}", "token": "42"})
        );
        let again = reg.get(&token(json!("42")), BIG, now).unwrap();
        assert!(!again.done && !again.continue_);
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn numeric_token_finds_task_and_echoes_number() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(3_163_488_080);
        reg.finish(key, done("null"), now);
        let reply = reg.get(&token(json!(3_163_488_080u64)), BIG, now).unwrap();
        assert_eq!(
            reply.to_json_value(),
            json!({"continue": false, "done": true, "result": "null", "token": 3163488080u64})
        );
    }

    #[test]
    fn result_of_exactly_max_chars_is_inline() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(1);
        reg.finish(key, done("€€€"), now);
        let reply = reg.get(&Token::from(key), 3, now).unwrap();
        assert_eq!(reply.result, json!("€€€"));
        assert!(!reply.continue_);
    }

    #[test]
    fn big_result_becomes_one_shot_cargo_in_order() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(7);
        let text = "[\"héllo wörld 😀\", 12345]";
        reg.finish(key, done(text), now);
        let reply = reg.get(&Token::from(key), 4, now).unwrap();
        assert!(reply.done && reply.continue_);
        assert_eq!(reply.token, json!("7"));
        let keys: Vec<String> = reply
            .result
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(keys.len(), text.chars().count().div_ceil(4));
        let mut joined = String::new();
        for (i, k) in keys.iter().enumerate() {
            // Alternate string and numeric tokens: both must work.
            let tok = if i % 2 == 0 {
                token(json!(k))
            } else {
                token(json!(k.parse::<u64>().unwrap()))
            };
            let chunk = reg.cargo(&tok).unwrap();
            assert_eq!(chunk.token, *tok.value());
            assert!(chunk.done && !chunk.continue_);
            let piece = chunk.result.as_str().unwrap();
            assert!(piece.chars().count() <= 4);
            joined.push_str(piece);
            assert_eq!(
                reg.cargo(&token(json!(k))),
                Err(WorkerError::UnknownCargo(k.clone()))
            );
        }
        assert_eq!(joined, text);
        assert!(!reg.get(&Token::from(key), 4, now).unwrap().done);
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn multi_byte_split_counts_characters() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(1);
        reg.finish(key, done("😀😀😀😀😀"), now);
        let reply = reg.get(&Token::from(key), 2, now).unwrap();
        let pieces: Vec<String> = reply
            .result
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                reg.cargo(&token(k.clone()))
                    .unwrap()
                    .result
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(pieces, ["😀😀", "😀😀", "😀"]);
    }

    #[test]
    fn unknown_cargo_is_key_error() {
        let mut reg = WorkerRegistry::default();
        let err = reg.cargo(&token(json!("999"))).unwrap_err();
        assert_eq!(err.to_string(), "KeyError: '999'");
        assert_eq!(err.status(), 500);
        assert_eq!(
            reg.cargo(&token(json!(null))).unwrap_err().to_string(),
            "KeyError: 'null'"
        );
    }

    #[test]
    fn failed_task_is_error_and_removed() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(1);
        reg.finish(key, failed(None, "ValueError: boom"), now);
        let err = reg.get(&Token::from(key), BIG, now).unwrap_err();
        assert_eq!(
            err,
            WorkerError::Job(WorkerFailure {
                status: None,
                message: "ValueError: boom".into()
            })
        );
        assert_eq!(err.status(), 500);
        assert!(!reg.get(&Token::from(key), BIG, now).unwrap().done);
        assert!(reg.is_empty());
    }

    #[test]
    fn pdr_failure_carries_its_code() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(1);
        reg.finish(key, failed(Some(403), "forbidden"), now);
        let err = reg.get(&Token::from(key), BIG, now).unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(err.to_string(), "forbidden");
    }

    #[test]
    fn zero_chunk_size_errors_and_keeps_task() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(1);
        reg.finish(key, done("\"x\""), now);
        let err = reg.get(&Token::from(key), 0, now).unwrap_err();
        assert_eq!(err.to_string(), "ValueError: invalid chunk size: 0");
        let reply = reg.get(&Token::from(key), BIG, now).unwrap();
        assert_eq!(reply.result, json!("\"x\""));
    }

    #[test]
    fn stop_running_task_cancels_and_discards_result() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(9);
        let stopped = reg.stop(&token(json!(9)));
        assert!(stopped.was_running);
        assert_eq!(
            stopped.reply.to_json_value(),
            json!({"continue": false, "done": true, "result": null, "token": 9})
        );
        assert!(reg.is_cancelled(key));
        assert!(!reg.get(&Token::from(key), BIG, now).unwrap().done);
        assert_eq!(reg.finish(key, done("1"), now), Finished::Discarded);
        assert!(!reg.is_cancelled(key));
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn stop_finished_task_drops_result() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(9);
        reg.finish(key, done("1"), now);
        let stopped = reg.stop(&Token::from(key));
        assert!(!stopped.was_running);
        assert!(stopped.reply.done);
        assert!(!reg.is_cancelled(key));
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);
        assert!(reg.handle_timeout(now + secs(1000)).is_empty());
    }

    #[test]
    fn stop_unknown_answers_the_same() {
        let mut reg = WorkerRegistry::default();
        for tok in [json!("5"), json!(null), json!({})] {
            let stopped = reg.stop(&token(tok.clone()));
            assert!(!stopped.was_running);
            assert_eq!(
                stopped.reply.to_json_value(),
                json!({"continue": false, "done": true, "result": null, "token": tok})
            );
        }
        assert!(reg.is_empty());
    }

    #[test]
    fn finish_twice_or_unknown_is_discarded() {
        let mut reg = WorkerRegistry::default();
        let now = Instant::now();
        let key = reg.start(1);
        assert_eq!(reg.finish(key, done("1"), now), Finished::Stored);
        assert_eq!(reg.finish(key, done("2"), now), Finished::Discarded);
        assert_eq!(
            reg.get(&Token::from(key), BIG, now).unwrap().result,
            json!("1")
        );
        assert_eq!(
            reg.finish(TaskKey::new(77), done("3"), now),
            Finished::Discarded
        );
        assert!(reg.is_empty());
    }

    #[test]
    fn uncollected_result_is_purged_after_retention() {
        let mut reg = WorkerRegistry::default();
        let t0 = Instant::now();
        let ok = reg.start(1);
        let bad = reg.start(50);
        let running = reg.start(90);
        reg.finish(ok, done("1"), t0);
        reg.finish(bad, failed(None, "RuntimeError: nope"), t0 + secs(1));
        assert_eq!(reg.poll_timeout(), Some(t0 + RESULT_RETENTION));
        assert!(reg
            .handle_timeout(t0 + RESULT_RETENTION - Duration::from_millis(1))
            .is_empty());
        let purged = reg.handle_timeout(t0 + RESULT_RETENTION);
        assert_eq!(purged, [Purged::Result(ok)]);
        assert_eq!(
            purged[0].to_string(),
            "purged result that was never read (1)"
        );
        assert_eq!(reg.poll_timeout(), Some(t0 + secs(121)));
        let purged = reg.handle_timeout(t0 + secs(500));
        assert_eq!(purged.len(), 1);
        assert_eq!(
            purged[0].to_string(),
            "Error in purged worker for 50: RuntimeError: nope"
        );
        assert_eq!(reg.poll_timeout(), None);
        // A running task is never purged.
        assert!(
            reg.get(&Token::from(running), BIG, t0 + secs(500))
                .unwrap()
                .continue_
        );
    }

    #[test]
    fn unread_cargo_is_purged_after_ttl() {
        let mut reg = WorkerRegistry::default();
        let t0 = Instant::now();
        let key = reg.start(1);
        reg.finish(key, done("abcdef"), t0);
        let reply = reg.get(&Token::from(key), 2, t0 + secs(10)).unwrap();
        let keys = reply.result.as_array().unwrap().clone();
        assert_eq!(keys.len(), 3);
        reg.cargo(&token(keys[0].clone())).unwrap();
        assert_eq!(reg.poll_timeout(), Some(t0 + secs(10) + CARGO_TTL));
        assert!(reg.handle_timeout(t0 + secs(609)).is_empty());
        let purged = reg.handle_timeout(t0 + secs(610));
        let texts: Vec<String> = purged.iter().map(ToString::to_string).collect();
        let mut expected: Vec<String> = keys[1..]
            .iter()
            .map(|k| format!("purged cargo that was never read ({})", k.as_str().unwrap()))
            .collect();
        let mut sorted = texts.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }

    /// Memory bound: abandoned tasks and their cargo do not outlive the retention times.
    #[test]
    fn abandoned_tasks_and_cargo_are_all_purged() {
        let mut reg = WorkerRegistry::default();
        let t0 = Instant::now();
        let keys: Vec<TaskKey> = (0..1000u32)
            .map(|i| reg.start(i.wrapping_mul(2_654_435_761)))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let outcome = if i % 10 == 0 {
                failed(None, "boom")
            } else {
                done("1")
            };
            assert_eq!(reg.finish(*key, outcome, t0), Finished::Stored);
        }
        assert!(!reg.is_empty());
        let purged = reg.handle_timeout(t0 + secs(121));
        assert_eq!(purged.len(), 1000);
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);

        // Results collected as cargo and then abandoned.
        let keys: Vec<TaskKey> = (0..1000u32).map(|i| reg.start(i)).collect();
        for key in &keys {
            reg.finish(*key, done("0123456789"), t0);
            assert!(reg.get(&Token::from(*key), 3, t0).unwrap().continue_);
        }
        assert!(!reg.is_empty());
        assert!(reg.handle_timeout(t0 + secs(121)).is_empty());
        let purged = reg.handle_timeout(t0 + secs(601));
        assert_eq!(purged.len(), 4000);
        assert!(purged.iter().all(|p| matches!(p, Purged::Cargo(_))));
        assert!(reg.is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }
}
