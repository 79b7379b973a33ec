//! Errors of the worker protocol: failures of a job and faults of a request.

use std::error::Error;
use std::fmt;

use crate::store::StoreError;

/// How a job ended when it did not produce a result.
///
/// `status` is set when the job asked for a specific error page (the original's
/// `PreventDefaultResponse(code, message)`); otherwise the request answers 500
/// `worker error` and `message` is the error text that goes to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerFailure {
    /// Status code of the error page the job asked for, if any.
    pub status: Option<u16>,
    /// The error page message (with `status`) or the error text to log (without).
    pub message: String,
}

impl fmt::Display for WorkerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for WorkerFailure {}

/// Why a worker request cannot be answered with a [`Reply`](super::Reply).
///
/// [`WorkerError::Job`] carries a job's own failure; every other variant is a fault of
/// the request or configuration and answers a 500 error page whose explanation is the
/// `Display` text, shaped `<Kind>: <text>` like the original's exception texts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerError {
    /// The request body is not a JSON object.
    NotAnObject,
    /// The body has no `action` key.
    MissingAction,
    /// `action` is not one of `start`, `get`, `stop`, `cargo`; holds its text.
    InvalidAction(String),
    /// A `get`, `stop` or `cargo` request has no `token` key.
    MissingToken,
    /// A `cargo` request names a chunk that does not exist or was already fetched.
    UnknownCargo(String),
    /// The configured `max_chunk_size` is below 1, so a result cannot be split.
    InvalidChunkSize(usize),
    /// Mask captures must be written into the payload but it is not a JSON object.
    PayloadNotObject,
    /// The collected job failed.
    Job(WorkerFailure),
    /// The task's instance stopped (crashed or restarted) before the task ended; holds
    /// the key.
    Lost(String),
    /// The task store (Redis) failed.
    Store(StoreError),
}

impl WorkerError {
    /// Status code of the error page to answer: the job's requested code, else 500.
    pub fn status(&self) -> u16 {
        match self {
            Self::Job(WorkerFailure {
                status: Some(code), ..
            }) => *code,
            Self::Store(error) => error.status(),
            _ => 500,
        }
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("TypeError: worker request must be a JSON object"),
            Self::MissingAction => f.write_str("KeyError: 'action'"),
            Self::InvalidAction(action) => write!(f, "ValueError: invalid action: {action}"),
            Self::MissingToken => f.write_str("KeyError: 'token'"),
            Self::UnknownCargo(key) => write!(f, "KeyError: '{key}'"),
            Self::InvalidChunkSize(size) => write!(f, "ValueError: invalid chunk size: {size}"),
            Self::PayloadNotObject => {
                f.write_str("TypeError: payload must be a JSON object to take mask captures")
            }
            Self::Job(failure) => failure.fmt(f),
            Self::Lost(key) => write!(
                f,
                "LostTask: the server running task {key} stopped before it ended"
            ),
            Self::Store(error) => error.fmt(f),
        }
    }
}

impl Error for WorkerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_original_shapes() {
        assert_eq!(WorkerError::MissingAction.to_string(), "KeyError: 'action'");
        assert_eq!(
            WorkerError::InvalidAction("bogus".into()).to_string(),
            "ValueError: invalid action: bogus"
        );
        assert_eq!(WorkerError::MissingToken.to_string(), "KeyError: 'token'");
        assert_eq!(
            WorkerError::UnknownCargo("17".into()).to_string(),
            "KeyError: '17'"
        );
        assert_eq!(
            WorkerError::InvalidChunkSize(0).to_string(),
            "ValueError: invalid chunk size: 0"
        );
        assert_eq!(
            WorkerError::NotAnObject.to_string(),
            "TypeError: worker request must be a JSON object"
        );
        assert_eq!(
            WorkerError::PayloadNotObject.to_string(),
            "TypeError: payload must be a JSON object to take mask captures"
        );
    }

    #[test]
    fn job_failure_shows_its_message_and_status() {
        let pdr = WorkerError::Job(WorkerFailure {
            status: Some(418),
            message: "teapot".into(),
        });
        assert_eq!(pdr.status(), 418);
        assert_eq!(pdr.to_string(), "teapot");
        let crash = WorkerError::Job(WorkerFailure {
            status: None,
            message: "ZeroDivisionError: division by zero".into(),
        });
        assert_eq!(crash.status(), 500);
        assert_eq!(crash.to_string(), "ZeroDivisionError: division by zero");
        assert_eq!(WorkerError::MissingAction.status(), 500);
        let down = WorkerError::Store(StoreError::Unavailable("refused".into()));
        assert_eq!(down.status(), 503);
        assert_eq!(
            WorkerError::Lost("7".into()).to_string(),
            "LostTask: the server running task 7 stopped before it ended"
        );
    }
}
