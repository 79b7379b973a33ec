//! `multipart/byteranges` bodies (RFC 9110 section 14.6): each part's header block is
//! bytes and its content a region of the open file, so a big file leaves through
//! `sendfile` (or the TLS record pump) without being copied through memory.

use std::sync::Arc;

use super::etag::ETag;
use super::range::ByteRange;
use crate::fs::OpenFile;
use crate::http::response::{BodyPart, FileRegion};

/// The boundary of a byteranges body for the representation tagged `etag`.
///
/// The core has no randomness; a boundary naming the content's CRC-32 cannot be predicted
/// from outside the content, and ordinary files do not hold their own checksum.
pub(crate) fn boundary(etag: &ETag) -> String {
    let tag: String = etag
        .bare()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("quick-server-byteranges-{tag}")
}

/// The `Content-Type` of a byteranges body with `boundary`.
pub(crate) fn content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// The body: for each range (disjoint, ascending) a delimiter and the part's
/// `Content-Type` and `Content-Range`, then that range of `file` (of `len` bytes in all)
/// as a region; a closing delimiter ends it.
pub(crate) fn body(
    file: &Arc<dyn OpenFile>,
    len: u64,
    ranges: &[ByteRange],
    part_type: &str,
    boundary: &str,
) -> Vec<BodyPart> {
    let mut parts = Vec::with_capacity(2 * ranges.len() + 1);
    for (index, range) in ranges.iter().enumerate() {
        // The CRLF before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
        let lead = if index == 0 { "" } else { "\r\n" };
        let head = format!(
            "{lead}--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: {}\r\n\r\n",
            range.content_range(len)
        );
        parts.push(BodyPart::Bytes(head.into_bytes()));
        parts.push(BodyPart::File(FileRegion {
            file: Arc::clone(file),
            offset: range.start,
            len: range.len(),
        }));
    }
    parts.push(BodyPart::Bytes(
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    ));
    parts
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::SystemTime;

    use super::*;
    use crate::fs::{FileSystem, MemoryFs};

    /// The body as bytes, reading the regions.
    fn flatten(parts: &[BodyPart]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            match part {
                BodyPart::Bytes(bytes) => out.extend_from_slice(bytes),
                BodyPart::File(region) => {
                    let mut buf = vec![0; region.len as usize];
                    let n = region.file.read_at(&mut buf, region.offset).unwrap();
                    assert_eq!(n, buf.len());
                    out.extend_from_slice(&buf);
                }
            }
        }
        out
    }

    #[test]
    fn parts_carry_their_headers_and_the_file_as_regions() {
        let mut fs = MemoryFs::new();
        fs.insert("/d.txt", "0123456789abcdefghij", SystemTime::UNIX_EPOCH);
        let file = fs.open(Path::new("/d.txt")).unwrap();
        let ranges = [
            ByteRange {
                start: 0,
                end_inclusive: 1,
            },
            ByteRange {
                start: 10,
                end_inclusive: 19,
            },
        ];
        let parts = body(&file, 20, &ranges, "text/plain", "B");
        assert!(matches!(
            parts.as_slice(),
            [
                BodyPart::Bytes(_),
                BodyPart::File(FileRegion {
                    offset: 0,
                    len: 2,
                    ..
                }),
                BodyPart::Bytes(_),
                BodyPart::File(FileRegion {
                    offset: 10,
                    len: 10,
                    ..
                }),
                BodyPart::Bytes(_),
            ]
        ));
        assert_eq!(
            String::from_utf8(flatten(&parts)).unwrap(),
            "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/20\r\n\r\n01\
             \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-19/20\r\n\r\n\
             abcdefghij\r\n--B--\r\n"
        );
    }

    #[test]
    fn the_boundary_is_a_token_naming_the_tag() {
        let tag = ETag::of(b"hello world");
        assert_eq!(boundary(&tag), "quick-server-byteranges-d4a1185");
        assert_eq!(
            content_type(&boundary(&tag)),
            "multipart/byteranges; boundary=quick-server-byteranges-d4a1185"
        );
    }
}
