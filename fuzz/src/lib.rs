//! Property checks behind the fuzz targets of quick-server-core, one module per target.
//!
//! Each module exposes `check(data: &[u8])`, which panics when a property fails. The
//! fuzz targets in `fuzz_targets/` call it on libFuzzer input, and the core crate's test
//! `core/tests/fuzz_corpus.rs` includes this file with `#[path]` and calls it on every
//! file of `fuzz/corpus/<target>/`, so the checked-in corpus runs under `cargo test`.
//! Only the public API of `quick_server_core` is used, and its hidden `fuzzing` door to the
//! parsers the targets feed.

pub mod connection;
pub mod etag_match;
pub mod multipart;
pub mod path;
pub mod range;
pub mod upstream;
