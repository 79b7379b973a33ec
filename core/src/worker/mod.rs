//! Worker protocol (BEHAVIOUR.md: Workers): long-running jobs started, polled, cancelled and
//! collected over JSON POSTs.
//!
//! This module is sans-IO like the rest of the core: it parses the request body into a
//! [`Command`], keeps the per-route task and cargo state in a [`WorkerRegistry`] and builds
//! the [`Reply`]. `route.rs` puts this together as a route kind: the computation leaves as
//! a background job, the connection waits [`START_WAIT`] before answering `start`, and the
//! server's timer purges expired entries. The flow for one request is:
//!
//! 1. [`Command::from_json`] on the parsed body; for [`Command::Start`] also
//!    [`apply_segments`] with the mask captures.
//! 2. `Start`: [`WorkerRegistry::start`], hand the payload to the job pool (which calls
//!    [`WorkerRegistry::finish`] when the job ends), wait [`START_WAIT`], then answer with
//!    [`WorkerRegistry::get`] on `Token::from(key)`.
//! 3. `Get` / `Stop` / `Cargo`: the registry method of the same name.
//! 4. After every mutation, re-arm the timer with [`WorkerRegistry::poll_timeout`]; when it
//!    fires, call [`WorkerRegistry::handle_timeout`] and log each returned [`Purged`].
//!
//! Cancellation is cooperative (a departure from the original's thread killing): `stop`
//! marks a running task cancelled, the job may poll [`WorkerRegistry::is_cancelled`]
//! (through the lead's cancel flag), and whatever it returns is discarded.

mod cancel;
mod cargo;
mod error;
mod key;
mod protocol;
mod registry;
pub(crate) mod route;
mod store;

use std::time::Duration;

pub use cancel::CancelFlag;
pub use cargo::cargo_pieces;
pub use error::{WorkerError, WorkerFailure};
pub use key::{clock_seed, TaskKey};
pub use protocol::{apply_segments, Command, Reply, Token};
pub use registry::{Finished, Purged, Stopped, TaskOutcome, WorkerRegistry};
pub use route::{WorkerDone, WorkerFn, WorkerRoute};
pub use store::{MemoryTasks, Polled, TaskStore};

/// How long a finished task whose result was never collected is kept (BEHAVIOUR.md: Workers ›
/// Result retention).
pub const RESULT_RETENTION: Duration = Duration::from_secs(120);

/// How long an unread cargo chunk is kept after it was created (BEHAVIOUR.md: Workers › Result
/// retention).
pub const CARGO_TTL: Duration = Duration::from_secs(600);

/// How long the transport waits after starting a job before answering `start` like a
/// `get`, so that fast jobs finish in the first answer (BEHAVIOUR.md: Workers › Actions).
pub const START_WAIT: Duration = Duration::from_millis(100);
