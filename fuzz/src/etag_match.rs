//! `etag_match`: `If-None-Match` and `If-Range` evaluation never panic, and a tag always
//! matches its own forms.

use quick_server_core::files::ETag;
use quick_server_core::fuzzing::{if_none_match, if_range_allows, EtagHasher};

/// The first byte splits the rest into content (hashed into the tag) and a header value.
pub fn check(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (content, header) = rest.split_at(usize::from(split).min(rest.len()));
    let tag = ETag::of(content);
    // Hashing in two pieces gives the same tag as hashing at once.
    let mut hasher = EtagHasher::new();
    let (a, b) = content.split_at(content.len() / 2);
    hasher.update(a);
    hasher.update(b);
    assert_eq!(hasher.finish(), tag);

    let header = String::from_utf8_lossy(header);
    let matched = if_none_match(&header, &tag);
    if_range_allows(&header, &tag, "Thu, 01 Jan 1970 00:00:00 GMT");

    let quoted = tag.to_string();
    assert!(if_none_match(&quoted, &tag), "{quoted}");
    assert!(if_none_match(tag.bare(), &tag), "{}", tag.bare());
    assert!(if_none_match(&format!("W/{quoted}"), &tag), "W/{quoted}");
    assert!(if_none_match("*", &tag));
    assert!(if_range_allows(&quoted, &tag, ""), "If-Range {quoted}");
    assert!(
        !if_range_allows(&format!("W/{quoted}"), &tag, ""),
        "weak If-Range matched"
    );
    if !header.contains('"') {
        // Without quotes every member ends at a comma or space, so an appended tag is
        // always read as its own member.
        assert!(
            if_none_match(&format!("{header}, {quoted}"), &tag),
            "{header:?}, {quoted}"
        );
        assert!(
            if_none_match(&format!("{header} , {}", tag.bare()), &tag),
            "{header:?}"
        );
    }
    // A header that matched still matches with more members after it.
    if matched {
        assert!(
            if_none_match(&format!("{header}, \"zz\""), &tag),
            "{header:?}"
        );
    }
}
