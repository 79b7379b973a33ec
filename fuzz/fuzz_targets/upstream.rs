//! Fuzz target `upstream`: the property check lives in `quick_server_fuzz::upstream`, shared
//! with the corpus replay test of the core crate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quick_server_fuzz::upstream::check(data));
