//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the same property
//! checks the cargo-fuzz targets run, so `cargo test` exercises every target on a fixed
//! input set without a nightly toolchain or libFuzzer.

// The fuzz crate exports these modules; included here they are private, so their `pub`
// items cannot be reached from outside this test.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::fs;
use std::path::PathBuf;

/// Runs `check` on every file of `fuzz/corpus/<target>/`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .map(|e| e.path())
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: property failed on {}",
            path.display()
        );
    }
    files.len()
}

#[test]
fn connection_corpus() {
    assert!(replay("connection", targets::connection::check) >= 10);
}

#[test]
fn path_corpus() {
    assert!(replay("path", targets::path::check) >= 10);
}

#[test]
fn range_corpus() {
    assert!(replay("range", targets::range::check) >= 10);
}

#[test]
fn etag_match_corpus() {
    assert!(replay("etag_match", targets::etag_match::check) >= 10);
}

#[test]
fn upstream_corpus() {
    assert!(replay("upstream", targets::upstream::check) >= 10);
}

#[test]
fn multipart_corpus() {
    assert!(replay("multipart", targets::multipart::check) >= 10);
}
