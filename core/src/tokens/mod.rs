//! Tokens: server-side session objects, a JSON map per token with sliding expiration
//! (BEHAVIOUR.md: Tokens). Time is passed in as `Instant`s and token randomness by the caller;
//! the storage backend is pluggable through [`TokenStore`], and every write is an atomic
//! read-modify-write against it.

mod store;

pub use store::{
    create_token, Commit, Expire, MemoryTokenStore, Snapshot, TokenStore, Tokens, Ttl,
    DEFAULT_EXPIRATION, UPDATE_ATTEMPTS,
};
