//! Slow work leaves the core as a [`Job`]: the transport runs it off the event loop (or
//! inline, if it blocks per connection anyway) and feeds the [`Completion`] back.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::http::response::Response;

/// Identifies a job within its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub(crate) u64);

/// Work the transport must run: a user handler, a worker step, anything that may block.
pub struct Job {
    id: JobId,
    work: Box<dyn FnOnce() -> Response + Send>,
}

/// The result of a [`Job`], to hand to [`Connection::complete`](crate::Connection::complete).
#[derive(Debug)]
pub struct Completion {
    pub(crate) id: JobId,
    pub(crate) response: Response,
}

impl Job {
    pub(crate) fn new(id: JobId, work: impl FnOnce() -> Response + Send + 'static) -> Self {
        Self {
            id,
            work: Box::new(work),
        }
    }

    /// Which job this is.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Runs the work. A panic inside becomes a 500 answer, so one faulty handler never
    /// takes a thread or the server down.
    pub fn run(self) -> Completion {
        let response = catch_unwind(AssertUnwindSafe(self.work)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_owned());
            Response::error_page(500, Some(&format!("panic: {what}")))
        });
        Completion {
            id: self.id,
            response,
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::Body;

    #[test]
    fn run_returns_the_response_and_survives_panics() {
        let done = Job::new(JobId(1), || Response::new(201, Body::Empty)).run();
        assert_eq!((done.id, done.response.status), (JobId(1), 201));
        let done = Job::new(JobId(2), || panic!("boom")).run();
        assert_eq!(done.response.status, 500);
        assert_eq!(done.response.reason.as_deref(), Some("panic: boom"));
    }
}
