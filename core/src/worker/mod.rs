//! Worker protocol (BEHAVIOUR.md: Workers): long-running jobs started, polled, cancelled and
//! collected over JSON POSTs.
//!
//! Sans-IO like the rest of the core: `protocol.rs` parses a request body into a command
//! and builds the [`Reply`], `registry.rs` keeps the per-route task and cargo state, and
//! `route.rs` makes them a route kind (the computation leaves as a background job, the
//! connection waits 100 ms before answering `start`, the server's timer purges what was
//! never collected). Public is what a worker function sees ([`WorkerFn`], [`CancelFlag`])
//! and what a task store of one's own trades in ([`TaskStore`] and its types).
//!
//! Cancellation is cooperative (a departure from the original's thread killing): `stop`
//! marks a running task cancelled, the job may poll its [`CancelFlag`], and whatever it
//! returns is discarded.

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
pub(crate) use key::clock_seed;
pub use key::TaskKey;
pub(crate) use protocol::{apply_segments, Command};
pub use protocol::{Reply, Token};
pub use registry::{Finished, Purged, Stopped, TaskOutcome};
pub use route::WorkerFn;
pub(crate) use route::{WorkerDone, WorkerRoute};
pub use store::{MemoryTasks, Polled, TaskStore};

/// How long a finished task whose result was never collected is kept (BEHAVIOUR.md: Workers ›
/// Result retention).
pub const RESULT_RETENTION: Duration = Duration::from_secs(120);

/// How long an unread cargo chunk is kept after it was created (BEHAVIOUR.md: Workers › Result
/// retention).
pub const CARGO_TTL: Duration = Duration::from_secs(600);

/// How long the transport waits after starting a job before answering `start` like a
/// `get`, so that fast jobs finish in the first answer (BEHAVIOUR.md: Workers › Actions).
pub(crate) const START_WAIT: Duration = Duration::from_millis(100);
