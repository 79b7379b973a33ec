//! What a state store (tokens, worker tasks) can answer instead of a value: the store is
//! remote (Redis) in a cluster, so any call may fail, and the failure decides the answer.

use std::error::Error;
use std::fmt;

/// Why a store call did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or did not answer within its timeout; holds the cause.
    Unavailable(String),
    /// The store holds a value this server did not write (wrong type or shape).
    BadData(String),
    /// Other writers changed the entry on every one of the bounded retries.
    Contention,
    /// A remote store was called from a handler running on the event loop (a route
    /// registered non-blocking), where a network round trip would stall every connection.
    WouldBlock,
}

impl StoreError {
    /// Status code to answer: 503 when trying again later may work, else 500.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unavailable(_) | Self::Contention => 503,
            Self::BadData(_) | Self::WouldBlock => 500,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(cause) => write!(f, "shared state unavailable: {cause}"),
            Self::BadData(what) => write!(f, "unexpected data in the shared state: {what}"),
            Self::Contention => f.write_str("shared state busy: too many concurrent updates"),
            Self::WouldBlock => f.write_str(
                "a non-blocking route cannot use a remote store; register it as a normal route",
            ),
        }
    }
}

impl Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_texts() {
        let down = StoreError::Unavailable("connection refused".into());
        assert_eq!(down.status(), 503);
        assert_eq!(
            down.to_string(),
            "shared state unavailable: connection refused"
        );
        assert_eq!(StoreError::Contention.status(), 503);
        assert_eq!(StoreError::BadData("x".into()).status(), 500);
        assert_eq!(StoreError::WouldBlock.status(), 500);
    }
}
