//! Fuzz target `etag_match`: the property check lives in `quick_server_fuzz::etag_match`, shared with
//! the corpus replay test of the core crate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quick_server_fuzz::etag_match::check(data));
