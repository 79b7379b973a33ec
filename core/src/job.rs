//! Slow work leaves the core as a [`Job`]: the transport runs it off the event loop and
//! feeds the [`Completion`] back.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::http::error::HttpError;
use crate::http::response::Response;
use crate::panic::panic_message;
use crate::worker::route::{Answer, WorkerRoute};
use crate::worker::{TaskKey, WorkerDone};
use std::sync::Arc;

/// Identifies a job within its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct JobId(pub(crate) u64);

/// Which pool a job belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Computes the answer to a request (a handler); the connection waits for it.
    Request,
    /// Computes the answer to a request with a handler registered as non-blocking
    /// ([`ServerBuilder::route_inline`](crate::ServerBuilder::route_inline)): it takes
    /// microseconds, so the transport runs it on the spot, on the thread driving the
    /// connection, and saves the hand-off to a pool and back.
    Inline,
    /// A worker computation that may run for minutes; nobody waits on it. Run it on a
    /// separate bounded pool so it cannot starve request jobs, and hand its completion to
    /// the connection, or to [`Server::complete`](crate::Server::complete) if the
    /// connection is gone.
    Background,
}

/// What a job produced.
pub(crate) enum Output {
    /// The answer to the request.
    Respond(Response),
    /// A worker task was registered: run `job` in the background, answer after the wait.
    Started {
        route: Arc<WorkerRoute>,
        key: TaskKey,
        job: Box<dyn FnOnce() -> WorkerDone + Send>,
    },
    /// A worker computation ended.
    Worker(WorkerDone),
}

impl From<Answer> for Output {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Respond(response) => Self::Respond(response),
            Answer::Started { route, key, job } => Self::Started { route, key, job },
        }
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Respond(r) => f.debug_tuple("Respond").field(r).finish(),
            Self::Started { key, .. } => f
                .debug_struct("Started")
                .field("key", key)
                .finish_non_exhaustive(),
            Self::Worker(w) => f.debug_tuple("Worker").field(w).finish(),
        }
    }
}

/// Work the transport must run: a user handler, a worker computation, anything that may
/// block.
pub struct Job {
    id: JobId,
    kind: JobKind,
    work: Box<dyn FnOnce() -> Output + Send>,
}

/// The result of a [`Job`], to hand to [`Connection::complete`](crate::Connection::complete).
#[derive(Debug)]
pub struct Completion {
    pub(crate) id: JobId,
    pub(crate) output: Output,
}

impl Job {
    /// A job answering a request; `kind` is [`JobKind::Request`] or [`JobKind::Inline`].
    pub(crate) fn request(
        id: JobId,
        kind: JobKind,
        work: Box<dyn FnOnce() -> Output + Send>,
    ) -> Self {
        Self { id, kind, work }
    }

    /// A worker computation.
    pub(crate) fn background(
        id: JobId,
        work: impl FnOnce() -> WorkerDone + Send + 'static,
    ) -> Self {
        Self {
            id,
            kind: JobKind::Background,
            work: Box::new(move || Output::Worker(work())),
        }
    }

    /// Which pool it belongs on.
    pub fn kind(&self) -> JobKind {
        self.kind
    }

    /// Runs the work. A panic inside a request job becomes a 500 answer; inside a worker
    /// it becomes a failed task. One faulty handler never takes a thread or the server down.
    pub fn run(self) -> Completion {
        let output = match catch_unwind(AssertUnwindSafe(self.work)) {
            Ok(output) => output,
            Err(panic) => Output::Respond(HttpError::Internal(panic_message(&*panic)).response()),
        };
        Completion {
            id: self.id,
            output,
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::Body;

    fn status(done: Completion) -> u16 {
        match done.output {
            Output::Respond(r) => r.status,
            _ => 0,
        }
    }

    #[test]
    fn run_returns_the_response_and_survives_panics() {
        let done = Job::request(
            JobId(1),
            JobKind::Request,
            Box::new(|| Output::Respond(Response::new(201, Body::Empty))),
        )
        .run();
        assert_eq!(done.id, JobId(1));
        assert_eq!(status(done), 201);
        let done = Job::request(JobId(2), JobKind::Inline, Box::new(|| panic!("boom"))).run();
        assert_eq!(status(done), 500);
    }
}
