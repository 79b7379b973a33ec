//! `path`: request path sanitising never yields a segment that leaves the served folder.

use std::path::{Component, Path};

use quick_server_core::fuzzing::{redirect_location, sanitize, split_target};

/// The input is a request target (lossily decoded as UTF-8).
pub fn check(data: &[u8]) {
    let target = String::from_utf8_lossy(data);
    let (raw_path, _, _) = split_target(&target);
    if let Ok(safe) = sanitize(raw_path) {
        let root = Path::new("/root");
        let mut joined = root.to_path_buf();
        for segment in safe.segments() {
            assert!(!segment.is_empty(), "empty segment from {target:?}");
            assert!(
                segment != "." && segment != "..",
                "dot segment from {target:?}"
            );
            assert!(
                !segment.contains(['/', '\\', '\0']),
                "separator or NUL in {segment:?} from {target:?}"
            );
            assert!(
                !segment.chars().any(|c| c.is_ascii_control()),
                "control character in {segment:?} from {target:?}"
            );
            joined.push(segment);
        }
        assert!(
            joined.starts_with(root),
            "{joined:?} escapes the root ({target:?})"
        );
        // Each segment is exactly one normal component: nothing collapses or climbs.
        let normal = joined
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        assert_eq!(
            normal,
            1 + safe.segments().len(),
            "{joined:?} from {target:?}"
        );
        assert!(!joined.components().any(|c| c == Component::ParentDir));
        let normalized = safe.normalized();
        assert!(normalized.starts_with('/'), "{normalized:?}");
        assert_eq!(
            safe.strip_prefix("/").map(|rest| rest.len()),
            Some(safe.segments().len())
        );
    }
    // The trailing-slash redirect never becomes a scheme-relative (`//host`) URL.
    let location = redirect_location(&target);
    let slashes = location
        .chars()
        .take(2)
        .filter(|c| matches!(c, '/' | '\\'))
        .count();
    assert!(slashes < 2, "{location:?} from {target:?} reads as //host");
}
