//! Cooperative cancellation of a running worker task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cooperative cancellation: set when a client sends `stop` for a running task.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Whether the task was stopped; a long computation should check it and return early.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Marks the task stopped; called by the task store when a `stop` arrives.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
