//! `multipart`: the streaming `multipart/form-data` parser never panics, its events are
//! well-formed, and they do not depend on how the body is split.

use quick_server_core::fuzzing::{Event, MultipartParser};

/// Boundaries the body may use; the first byte of the input picks one.
const BOUNDARIES: [&str; 4] = [
    "b",
    "boundary",
    "----WebKitFormBoundary7MA4YWxkTrZu0gW",
    "a-b_c'd",
];

/// Byte 0 picks the boundary (low 2 bits) and the part size limit (bit 2: 64 bytes, else
/// 1 MiB); byte 1 seeds the split points; the rest is the body.
pub fn check(data: &[u8]) {
    let [mode, seed, body @ ..] = data else {
        return;
    };
    let boundary = BOUNDARIES[usize::from(mode & 3)];
    let max_part_size = if mode & 4 == 4 { 64 } else { 1 << 20 };

    let whole = parse(boundary, max_part_size, &[body]);
    let pieces = split(body, *seed);
    let split = parse(boundary, max_part_size, &pieces);
    assert_eq!(
        whole.ok,
        split.ok,
        "outcome depends on the split ({} pieces)",
        pieces.len()
    );
    if whole.ok {
        assert_eq!(whole.events, split.events, "events depend on the split");
    }
    for parsed in [&whole, &split] {
        well_formed(&parsed.events, max_part_size, parsed.ok);
    }
}

/// What a parse produced: events with adjacent data merged, and whether it succeeded.
struct Parsed {
    events: Vec<Event>,
    ok: bool,
}

/// Feeds `pieces` in order, then finishes; stops at the first error.
fn parse(boundary: &str, max_part_size: u64, pieces: &[&[u8]]) -> Parsed {
    let mut parser = MultipartParser::new(boundary, max_part_size);
    let mut raw = Vec::new();
    let mut ok = pieces
        .iter()
        .all(|piece| parser.feed(piece, &mut raw).is_ok());
    if ok {
        ok = parser.finish().is_ok();
    } else {
        // A failed parser keeps failing.
        assert!(parser.feed(b"more", &mut raw).is_err() && parser.finish().is_err());
    }
    Parsed {
        events: merge_data(raw),
        ok,
    }
}

/// Joins consecutive `Data` events: how content is chunked is not part of the contract.
fn merge_data(raw: Vec<Event>) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::with_capacity(raw.len());
    for event in raw {
        match (events.last_mut(), event) {
            (_, Event::Data(data)) if data.is_empty() => panic!("empty Data event"),
            (Some(Event::Data(held)), Event::Data(data)) => held.extend_from_slice(&data),
            (_, event) => events.push(event),
        }
    }
    events
}

/// Events alternate `PartStart`, `Data`*, `PartEnd`; no part exceeds the limit; a
/// successful parse ends outside a part.
fn well_formed(events: &[Event], max_part_size: u64, ok: bool) {
    let mut in_part = false;
    let mut size = 0u64;
    for event in events {
        match event {
            Event::PartStart { .. } => {
                assert!(!in_part, "part started inside a part");
                in_part = true;
                size = 0;
            }
            Event::Data(data) => {
                assert!(in_part, "data outside a part");
                size += data.len() as u64;
                assert!(
                    size <= max_part_size,
                    "part of {size} bytes over {max_part_size}"
                );
            }
            Event::PartEnd => {
                assert!(in_part, "part ended outside a part");
                in_part = false;
            }
        }
    }
    assert!(!(ok && in_part), "successful parse ended inside a part");
}

/// Cuts `body` into pieces of pseudo-random lengths (1 to 64 bytes, or larger) drawn from
/// `seed`.
fn split(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut pieces = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = if state % 8 == 0 {
            1 + state as usize % 20_000
        } else {
            1 + state as usize % 64
        };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}
