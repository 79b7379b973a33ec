//! Static file serving, the pure parts (BEHAVIOUR.md: Static files): request path sanitising, glob
//! white/black lists, content types, CRC-32 entity tags, byte ranges and the directory
//! listing page, and the route that puts them together (`serve`), which reads files only
//! through the [`FileSystem`](crate::fs::FileSystem) trait and keeps small files in a
//! cache (`cache`).

pub mod byteranges;
pub mod cache;
pub mod etag;
pub mod glob;
pub mod listing;
pub mod mime;
pub mod path;
pub mod precondition;
pub mod range;
pub mod serve;

pub use crate::fs::DirEntry;
pub use cache::{CacheLimits, SETTLE_TIME};
pub use etag::{crc32_hex, if_none_match, ETag, EtagHasher, ListedTag, TagList};
pub use glob::{FileFilter, Pattern};
pub use listing::{html_escape, ListingFormat, QueryError, SortKey, SortOrder};
pub use mime::content_type;
pub use path::{is_hidden_name, redirect_location, sanitize, split_target, PathError, SafePath};
pub use precondition::{Preconditions, Verdict};
pub use range::{
    if_range_allows, parse_range, unsatisfiable_content_range, ByteRange, RangeOutcome, MAX_RANGES,
};
pub use serve::{
    BadPrefix, Deferred, FallbackHook, Favicon, StaticFiles, SymlinkPolicy, EMPTY_FAVICON,
    INLINE_LISTING_ENTRIES,
};
