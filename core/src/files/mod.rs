//! Static file serving, the pure parts (BEHAVIOUR.md: Static files): request path sanitising, glob
//! white/black lists, content types, CRC-32 entity tags, byte ranges and the directory
//! listing page, and the route that puts them together (`serve`), which reads files only
//! through the [`FileSystem`](crate::fs::FileSystem) trait and keeps small files in a
//! cache (`cache`) that folder watches (`watch`) spare revalidating.

mod byteranges;
mod cache;
pub(crate) mod etag;
mod glob;
mod listing;
mod mime;
pub(crate) mod path;
mod precondition;
pub(crate) mod range;
mod serve;
mod watch;

pub use cache::{CacheLimits, SETTLE_TIME};
pub use etag::{crc32_hex, ETag, TagList};
pub use precondition::{Preconditions, Verdict};
pub use range::MAX_RANGES;
pub use serve::{
    BadPrefix, FallbackHook, Favicon, StaticFiles, SymlinkPolicy, EMPTY_FAVICON,
    INLINE_LISTING_ENTRIES,
};
pub use watch::{WatchOp, WATCH_MASK};
