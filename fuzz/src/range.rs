//! `range`: `Range` evaluation never panics and only returns ranges inside the
//! representation; several come sorted, apart and within the caps.

use quick_server_core::files::MAX_RANGES;
use quick_server_core::fuzzing::{parse_range, unsatisfiable_content_range, RangeOutcome};

/// The first 8 bytes (little-endian, zero-padded) are the representation length; the rest
/// is the header value (lossily decoded as UTF-8).
pub fn check(data: &[u8]) {
    let (len_bytes, header) = data.split_at(data.len().min(8));
    let mut le = [0u8; 8];
    le[..len_bytes.len()].copy_from_slice(len_bytes);
    let len = u64::from_le_bytes(le);
    let header = String::from_utf8_lossy(header);
    match parse_range(&header, len) {
        RangeOutcome::Satisfiable(range) => {
            assert!(
                range.start <= range.end_inclusive && range.end_inclusive < len,
                "{range:?} outside 0..{len} for {header:?}"
            );
            assert!(!range.is_empty());
            assert_eq!(range.len(), range.end_inclusive - range.start + 1);
            assert_eq!(
                range.content_range(len),
                format!("bytes {}-{}/{len}", range.start, range.end_inclusive)
            );
        }
        RangeOutcome::Multiple(ranges) => {
            assert!((2..=MAX_RANGES).contains(&ranges.len()), "{ranges:?}");
            for range in &ranges {
                assert!(range.start <= range.end_inclusive && range.end_inclusive < len);
            }
            for pair in ranges.windows(2) {
                assert!(
                    pair[0].end_inclusive + 1 < pair[1].start,
                    "not coalesced: {ranges:?} for {header:?}"
                );
            }
            let total: u64 = ranges.iter().map(|r| r.len()).sum();
            assert!(total <= len, "{total} bytes of {len} for {header:?}");
        }
        RangeOutcome::Unsatisfiable => {
            assert!(
                header.contains('='),
                "no unit, yet unsatisfiable: {header:?}"
            );
            assert_eq!(unsatisfiable_content_range(len), format!("bytes */{len}"));
        }
        RangeOutcome::Ignore => {}
    }
}
