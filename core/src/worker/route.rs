//! The worker route kind: a POST mask whose requests drive a [`TaskStore`]. `start`
//! hands the computation out as a background [`Job`](crate::Job); the connection answers it
//! after [`START_WAIT`](super::START_WAIT) like a `get`.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{apply_segments, clock_seed, Command, Purged, Reply, TaskKey, TaskOutcome, Token};
use super::{CancelFlag, Polled, TaskStore, WorkerError, WorkerFailure};
use crate::http::error::HttpError;
use crate::http::response::{Body, Response};
use crate::json::json_dumps;
use crate::panic::panic_message;

/// A worker computation as the core stores it: payload and cancellation flag in, the
/// result's JSON text out. The facade wraps typed user functions into this shape.
pub type WorkerFn = Arc<dyn Fn(Value, &CancelFlag) -> Result<String, WorkerFailure> + Send + Sync>;

/// A finished background computation, to record in its route's store (a remote store
/// has recorded it already, off the event loop).
pub(crate) struct WorkerDone {
    route: Arc<WorkerRoute>,
    key: TaskKey,
    outcome: Option<TaskOutcome>,
    log: Option<String>,
}

impl fmt::Debug for WorkerDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerDone")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
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

/// One worker mask: its computation and the store of its tasks.
pub(crate) struct WorkerRoute {
    mask: String,
    work: WorkerFn,
    store: Arc<dyn TaskStore>,
    max_chunk_size: Arc<AtomicUsize>,
    /// Whether its answers may be compressed (false: the BREACH opt-out).
    compress: bool,
}

impl fmt::Debug for WorkerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerRoute")
            .field("mask", &self.mask)
            .finish_non_exhaustive()
    }
}

impl WorkerRoute {
    pub(crate) fn new(
        mask: &str,
        work: WorkerFn,
        store: Arc<dyn TaskStore>,
        max_chunk_size: Arc<AtomicUsize>,
        compress: bool,
    ) -> Self {
        Self {
            mask: mask.to_owned(),
            work,
            store,
            max_chunk_size,
            compress,
        }
    }

    /// Whether answering needs network round trips (a remote store), so never on the
    /// event loop.
    pub(crate) fn is_remote(&self) -> bool {
        self.store.is_remote()
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
                return self.start(payload, now, wall);
            }
            Command::Get { token } => match self.store.poll(&token, max_chunk, now) {
                Ok(Polled::Reply(reply)) => Ok(reply),
                Ok(Polled::Rerun {
                    key,
                    payload,
                    cancel,
                }) => return self.launch(key, payload, cancel, now),
                Err(e) => Err(e),
            },
            Command::Stop { token } => self.store.stop(&token),
            Command::Cargo { token } => self.store.cargo(&token),
        };
        Answer::Respond(match reply {
            Ok(reply) => self.reply_response(reply),
            Err(e) => error_page(&e),
        })
    }

    /// Registers the task and hands out its computation.
    fn start(self: &Arc<Self>, payload: Value, now: Instant, wall: SystemTime) -> Answer {
        let seed = clock_seed(
            wall.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        );
        let flag = CancelFlag::default();
        match self.store.start(seed, &payload, flag.clone()) {
            Ok(key) => self.launch(key, payload, flag, now),
            Err(e) => Answer::Respond(error_page(&e)),
        }
    }

    /// Hands out the computation of task `key` (new, or claimed to run again). With a
    /// remote store the job records its own outcome when it ends, at the request's `now`
    /// (a remote store keeps time by its own clock), so the event loop never waits on the
    /// store.
    fn launch(
        self: &Arc<Self>,
        key: TaskKey,
        payload: Value,
        flag: CancelFlag,
        now: Instant,
    ) -> Answer {
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
            let log = failure_log(&route.mask, key, &outcome);
            if route.is_remote() {
                let log = match route.store.finish(key, outcome, now) {
                    Ok(_) => log,
                    Err(e) => Some(format!(
                        "Error recording worker for {} ({key}): {e}",
                        route.mask
                    )),
                };
                return WorkerDone {
                    route,
                    key,
                    outcome: None,
                    log,
                };
            }
            WorkerDone {
                route,
                key,
                outcome: Some(outcome),
                log,
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
        match self.store.get(&Token::from(key), max_chunk, now) {
            Ok(reply) => self.reply_response(reply),
            Err(e) => error_page(&e),
        }
    }

    /// A protocol reply as the original's JSON route answers it: 200, pretty sorted JSON,
    /// compressed unless the route opted out.
    fn reply_response(&self, reply: Reply) -> Response {
        match json_dumps(&Value::from(reply)) {
            Ok(text) => Response {
                compress: self.compress,
                ..Response::new(200, Body::Bytes(text.into_bytes()))
                    .with_field("Content-Type", "application/json")
            },
            Err(e) => HttpError::Internal(e.to_string()).response(),
        }
    }

    /// The next purge deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.store.poll_timeout()
    }

    /// Purges what expired by `now`; returns what to log.
    pub(crate) fn handle_timeout(&self, now: Instant) -> Vec<Purged> {
        self.store.handle_timeout(now)
    }
}

impl WorkerDone {
    /// Records the outcome at `now` unless the job did already; returns the log line for
    /// a failed computation.
    pub(crate) fn record(self, now: Instant) -> Option<String> {
        if let Some(outcome) = self.outcome {
            if let Err(e) = self.route.store.finish(self.key, outcome, now) {
                return Some(format!(
                    "Error recording worker for {} ({}): {e}",
                    self.route.mask, self.key
                ));
            }
        }
        self.log
    }
}

/// The log line for a computation that failed without asking for an error page.
fn failure_log(mask: &str, key: TaskKey, outcome: &TaskOutcome) -> Option<String> {
    match outcome {
        TaskOutcome::Failed(f) if f.status.is_none() => {
            Some(format!("Error in worker for {mask} ({key}): {}", f.message))
        }
        _ => None,
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
        WorkerError::Store(store) => HttpError::Refused {
            status: store.status(),
            message: store.to_string(),
        },
        other => HttpError::Internal(other.to_string()),
    };
    refusal.response()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::super::Finished;
    use super::*;

    /// A remote store whose one task was lost and is claimed by the first `get`.
    #[derive(Default)]
    struct Orphan {
        claimed: Mutex<bool>,
        finished: Mutex<Option<TaskOutcome>>,
    }

    impl TaskStore for Orphan {
        fn start(&self, _: u32, _: &Value, _: CancelFlag) -> Result<TaskKey, WorkerError> {
            Err(WorkerError::NotAnObject)
        }

        fn finish(
            &self,
            _: TaskKey,
            outcome: TaskOutcome,
            _: Instant,
        ) -> Result<Finished, WorkerError> {
            *self.finished.lock().unwrap() = Some(outcome);
            Ok(Finished::Stored)
        }

        fn get(&self, token: &Token, _: usize, _: Instant) -> Result<Reply, WorkerError> {
            Ok(Reply::running(token))
        }

        fn poll(&self, token: &Token, size: usize, now: Instant) -> Result<Polled, WorkerError> {
            if std::mem::replace(&mut *self.claimed.lock().unwrap(), true) {
                return self.get(token, size, now).map(Polled::Reply);
            }
            Ok(Polled::Rerun {
                key: token.key().unwrap(),
                payload: json!({"n": 7}),
                cancel: CancelFlag::default(),
            })
        }

        fn stop(&self, token: &Token) -> Result<Reply, WorkerError> {
            Ok(Reply::stopped(token))
        }

        fn cargo(&self, token: &Token) -> Result<Reply, WorkerError> {
            Ok(Reply::unknown(token))
        }

        fn is_remote(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_claimed_get_runs_the_job_again_from_the_stored_payload() {
        let store = Arc::new(Orphan::default());
        let work: WorkerFn = Arc::new(|payload: Value, _: &CancelFlag| Ok(payload.to_string()));
        let route = Arc::new(WorkerRoute::new(
            "/w",
            work,
            store.clone(),
            Arc::new(AtomicUsize::new(1 << 20)),
            true,
        ));
        let get = br#"{"action": "get", "token": "12"}"#;
        let (now, wall) = (Instant::now(), SystemTime::now());
        let Answer::Started { key, job, .. } = route.handle(get, &[], now, wall) else {
            panic!("a claimed task runs again");
        };
        assert_eq!(key.to_string(), "12", "the client keeps its token");
        assert_eq!(job().record(now), None);
        assert_eq!(
            *store.finished.lock().unwrap(),
            Some(TaskOutcome::Done(r#"{"n":7}"#.into()))
        );
        // The next get is a plain answer.
        assert!(matches!(
            route.handle(get, &[], now, wall),
            Answer::Respond(_)
        ));
    }
}
