//! The worker route kind: a POST mask whose requests drive a [`WorkerRegistry`]. `start`
//! hands the computation out as a background [`Job`](crate::Job); the connection answers it
//! after [`START_WAIT`](super::START_WAIT) like a `get`.

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{apply_segments, clock_seed, Command, Purged, Reply, TaskKey, TaskOutcome, Token};
use super::{WorkerError, WorkerFailure, WorkerRegistry};
use crate::dynamic::json_dumps;
use crate::http::error::HttpError;
use crate::http::response::{Body, Response};
use crate::panic::panic_message;

/// A worker computation as the core stores it: payload and cancellation flag in, the
/// result's JSON text out. The facade wraps typed user functions into this shape.
pub type WorkerFn = Arc<dyn Fn(Value, &CancelFlag) -> Result<String, WorkerFailure> + Send + Sync>;

/// Cooperative cancellation: set when a client sends `stop` for a running task.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Whether the task was stopped; a long computation should check it and return early.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A finished background computation, to record in its route's registry.
pub struct WorkerDone {
    route: Arc<WorkerRoute>,
    key: TaskKey,
    outcome: TaskOutcome,
}

impl fmt::Debug for WorkerDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerDone")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

struct Tasks {
    registry: WorkerRegistry,
    flags: HashMap<TaskKey, CancelFlag>,
}

/// What a worker request leads to.
pub(crate) enum Answer {
    /// The protocol's answer (or error page), at once.
    Respond(Response),
    /// A task was registered: run `job` in the background, answer after the wait.
    Started {
        route: Arc<WorkerRoute>,
        key: TaskKey,
        job: Box<dyn FnOnce() -> WorkerDone + Send>,
    },
}

/// One worker mask: its computation and its tasks.
pub struct WorkerRoute {
    mask: String,
    work: WorkerFn,
    tasks: Mutex<Tasks>,
    max_chunk_size: Arc<AtomicUsize>,
}

impl fmt::Debug for WorkerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerRoute")
            .field("mask", &self.mask)
            .finish_non_exhaustive()
    }
}

impl WorkerRoute {
    pub(crate) fn new(mask: &str, work: WorkerFn, max_chunk_size: Arc<AtomicUsize>) -> Self {
        let tasks = Tasks {
            registry: WorkerRegistry::new(),
            flags: HashMap::new(),
        };
        Self {
            mask: mask.to_owned(),
            work,
            tasks: Mutex::new(tasks),
            max_chunk_size,
        }
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        // A panic while holding the lock cannot leave the registry half-updated: every
        // mutation is a single map operation. Recover the guard rather than propagate.
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Handles one worker request (BEHAVIOUR.md: Workers › Actions) at `now`; `wall` seeds new task
    /// keys.
    pub(crate) fn handle(
        self: &Arc<Self>,
        body: &[u8],
        segments: &[(String, String)],
        now: Instant,
        wall: SystemTime,
    ) -> Answer {
        let command = serde_json::from_slice(body)
            .map_err(|e| {
                WorkerError::Job(WorkerFailure {
                    status: Some(400),
                    message: format!("request is not JSON formatted! ({e})"),
                })
            })
            .and_then(Command::from_json);
        let command = match command {
            Ok(command) => command,
            Err(e) => return Answer::Respond(error_page(&e)),
        };
        let max_chunk = self.max_chunk_size.load(Ordering::Relaxed);
        let reply = match command {
            Command::Start { mut payload } => {
                let pairs = segments.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                if let Err(e) = apply_segments(&mut payload, pairs) {
                    return Answer::Respond(error_page(&e));
                }
                return self.start(payload, wall);
            }
            Command::Get { token } => self.tasks().registry.get(&token, max_chunk, now),
            Command::Stop { token } => {
                let mut tasks = self.tasks();
                let stopped = tasks.registry.stop(&token);
                if let Some(flag) = token.key().and_then(|k| tasks.flags.remove(&k)) {
                    flag.cancel();
                }
                Ok(stopped.reply)
            }
            Command::Cargo { token } => self.tasks().registry.cargo(&token),
        };
        Answer::Respond(match reply {
            Ok(reply) => reply_response(reply),
            Err(e) => error_page(&e),
        })
    }

    fn start(self: &Arc<Self>, payload: Value, wall: SystemTime) -> Answer {
        let seed = clock_seed(
            wall.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        );
        let flag = CancelFlag::default();
        let key = {
            let mut tasks = self.tasks();
            let key = tasks.registry.start(seed);
            tasks.flags.insert(key, flag.clone());
            key
        };
        let route = Arc::clone(self);
        let job = Box::new(move || {
            let run = catch_unwind(AssertUnwindSafe(|| (route.work)(payload, &flag)));
            let outcome = match run {
                Ok(Ok(text)) => TaskOutcome::Done(text),
                Ok(Err(failure)) => TaskOutcome::Failed(failure),
                Err(panic) => TaskOutcome::Failed(WorkerFailure {
                    status: None,
                    message: panic_message(&*panic),
                }),
            };
            WorkerDone {
                route,
                key,
                outcome,
            }
        });
        Answer::Started {
            route: Arc::clone(self),
            key,
            job,
        }
    }

    /// The answer to `start` once the wait is over: a `get` for the new key.
    pub(crate) fn answer_start(&self, key: TaskKey, now: Instant) -> Response {
        let max_chunk = self.max_chunk_size.load(Ordering::Relaxed);
        match self.tasks().registry.get(&Token::from(key), max_chunk, now) {
            Ok(reply) => reply_response(reply),
            Err(e) => error_page(&e),
        }
    }

    /// The next purge deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.tasks().registry.poll_timeout()
    }

    /// Purges what expired by `now`; returns what to log.
    pub(crate) fn handle_timeout(&self, now: Instant) -> Vec<Purged> {
        self.tasks().registry.handle_timeout(now)
    }
}

impl WorkerDone {
    /// Records the outcome at `now`; returns the log line for a failed computation.
    pub(crate) fn record(self, now: Instant) -> Option<String> {
        let message = match &self.outcome {
            TaskOutcome::Failed(f) if f.status.is_none() => Some(format!(
                "Error in worker for {} ({}): {}",
                self.route.mask, self.key, f.message
            )),
            _ => None,
        };
        let mut tasks = self.route.tasks();
        tasks.flags.remove(&self.key);
        tasks.registry.finish(self.key, self.outcome, now);
        message
    }
}

/// A protocol reply as the original's JSON route answers it: 200, pretty sorted JSON.
fn reply_response(reply: Reply) -> Response {
    match json_dumps(&Value::from(reply)) {
        Ok(text) => Response::new(200, Body::Bytes(text.into_bytes()))
            .with_field("Content-Type", "application/json"),
        Err(e) => HttpError::Internal(e.to_string()).response(),
    }
}

/// The error page for a protocol fault (500) or a failed job (its status, or 500
/// `worker error` as the original).
fn error_page(error: &WorkerError) -> Response {
    let refusal = match error {
        WorkerError::Job(WorkerFailure {
            status: Some(status),
            message,
        }) => HttpError::Refused {
            status: *status,
            message: message.clone(),
        },
        WorkerError::Job(_) => HttpError::Internal("worker error".into()),
        other => HttpError::Internal(other.to_string()),
    };
    refusal.response()
}
