//! The small-file cache: content, ETag and rendered fields of small files, keyed by the
//! raw request path, so a repeated request costs at most one `metadata` call instead of
//! the lookup, the list and link checks, an open, a read and a close.
//!
//! An entry is only made by the full route, after every check passed, and it holds the
//! bytes that were checked. A hit compares the file's current metadata (kind, size,
//! modification and change time, serial number, links) with the entry's; any difference
//! drops the entry and the request takes the full route again. So the cache never serves
//! bytes the route would not have served at the time they were read, and a file replaced
//! by anything (a new version, a link, a folder) is checked again: the change time moves
//! on every such replacement, even one that sets the modification time back.
//!
//! Once the transport watches every folder above an entry's file (`watch.rs`), the first
//! hit that revalidates it after that vouches for it, and later hits skip the `metadata`
//! call: from then on a change notification about any of those folders drops the entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::etag::ETag;
use crate::fs::{FileKind, Metadata};

/// How long a file must have stayed unchanged before it is cached. File times are coarse
/// (a clock tick on ext4, 2 s on FAT): a write in the same tick as our read would leave
/// the metadata equal to the entry's while the content differs.
pub const SETTLE_TIME: Duration = Duration::from_secs(2);

/// A compressed form takes at most this fraction of [`CacheLimits::max_bytes`]: one big
/// bundle cannot push every small file out.
pub(crate) const ENCODED_SHARE: usize = 8;

/// Bounds of the small-file cache. `max_entries: 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Largest file kept, in bytes. Default 64 KiB.
    pub max_file_size: u64,
    /// Most files kept. Default 1024.
    pub max_entries: usize,
    /// Most bytes kept over all entries (content, rendered fields, key and path).
    /// Default 8 MiB.
    pub max_bytes: usize,
    /// Most folders watched for changes so that hits skip revalidation; files under
    /// folders past it are revalidated on every hit. `0` revalidates every hit. Default
    /// 8192.
    pub max_watches: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_file_size: 64 * 1024,
            max_entries: 1024,
            max_bytes: 8 * 1024 * 1024,
            max_watches: 8192,
        }
    }
}

/// One cached file: everything a 200 or a 304 for it needs.
#[derive(Debug)]
pub(crate) struct CachedFile {
    /// The file on disk, whose metadata must still equal `meta`.
    pub(crate) path: PathBuf,
    /// The metadata of the descriptor the content was read from.
    pub(crate) meta: Metadata,
    /// The file's entity tag.
    pub(crate) etag: ETag,
    /// The whole content.
    pub(crate) content: Arc<[u8]>,
    /// The fields of a 200, rendered.
    pub(crate) fields: Arc<[u8]>,
    /// The fields of a 304, rendered.
    pub(crate) not_modified: Arc<[u8]>,
    /// Whether the file has other representations (content codings) than this one.
    pub(crate) varies: bool,
    /// The folders whose watches can vouch for the entry; `None` when none can (the path
    /// goes through a link, or the file has other names a notification would not cover).
    pub(crate) folders: Option<Box<[PathBuf]>>,
    /// Set once a revalidation found the file unchanged while all `folders` were watched.
    pub(crate) vouched: AtomicBool,
}

impl CachedFile {
    /// Whether `current` (the file's metadata now) still describes the cached version.
    pub(crate) fn is_current(&self, current: &Metadata) -> bool {
        *current == self.meta
    }

    /// Whether watches vouch for the entry, so a hit needs no revalidation.
    pub(crate) fn is_vouched(&self) -> bool {
        self.vouched.load(Ordering::Acquire)
    }

    /// Lets hits skip revalidation from now on.
    pub(crate) fn vouch(&self) {
        self.vouched.store(true, Ordering::Release);
    }

    /// The bytes this entry holds, as counted against [`CacheLimits::max_bytes`].
    fn cost(&self, key: &str) -> usize {
        let folders = self.folders.iter().flatten();
        self.content.len()
            + self.fields.len()
            + self.not_modified.len()
            + key.len()
            + self.path.as_os_str().len()
            + folders.map(|f| f.as_os_str().len()).sum::<usize>()
    }
}

/// The entries, behind one lock (held only to look up, insert or remove).
#[derive(Debug, Default)]
pub(crate) struct FileCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Box<str>, (Arc<CachedFile>, usize)>,
    /// Sum of the entries' costs.
    bytes: usize,
}

impl FileCache {
    /// The entry for the raw request path `key`, not yet revalidated.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<CachedFile>> {
        let entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.map.get(key).map(|(entry, _)| Arc::clone(entry))
    }

    /// Forgets `key` (its file changed or went away).
    pub(crate) fn remove(&self, key: &str) {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.take(key);
    }

    /// Forgets every entry whose file is at or under `path` (a change notification named it).
    pub(crate) fn remove_under(&self, path: &Path) {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<Box<str>> = entries
            .map
            .iter()
            .filter(|(_, (entry, _))| entry.path.starts_with(path))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            entries.take(&key);
        }
    }

    /// Forgets every entry (change notifications were lost).
    pub(crate) fn clear(&self) {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.map.clear();
        entries.bytes = 0;
    }

    /// Whether a file with `meta` may be cached at the wall time `wall`: a regular file
    /// within the size bound that has not changed for [`SETTLE_TIME`].
    pub(crate) fn admits(limits: &CacheLimits, meta: &Metadata, wall: SystemTime) -> bool {
        limits.max_entries > 0
            && meta.kind == FileKind::File
            && meta.len <= limits.max_file_size
            && Self::settled(meta, wall)
    }

    /// Whether a file with `meta` has not changed for [`SETTLE_TIME`] at the wall time
    /// `wall`, so what was read of it cannot be undone by a write its metadata misses.
    pub(crate) fn settled(meta: &Metadata, wall: SystemTime) -> bool {
        meta.changed
            .checked_add(SETTLE_TIME)
            .is_some_and(|settled| settled <= wall)
    }

    /// Whether a compressed form of `encoded_len` bytes of a file with `meta` may be
    /// cached at `wall`: like [`admits`](Self::admits), bounded by the encoded size (at
    /// most an [`ENCODED_SHARE`]th of the byte bound) rather than the file's.
    pub(crate) fn admits_encoded(
        limits: &CacheLimits,
        meta: &Metadata,
        encoded_len: usize,
        wall: SystemTime,
    ) -> bool {
        let bounded = CacheLimits {
            max_file_size: u64::MAX,
            ..*limits
        };
        Self::admits(&bounded, meta, wall) && encoded_len <= limits.max_bytes / ENCODED_SHARE
    }

    /// Stores `entry` under `key`, replacing an older one and evicting others (in no
    /// particular order) until both bounds hold. An entry bigger than the byte bound is
    /// not stored.
    pub(crate) fn insert(&self, limits: &CacheLimits, key: &str, entry: Arc<CachedFile>) {
        let cost = entry.cost(key);
        if cost > limits.max_bytes || limits.max_entries == 0 {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.take(key);
        while entries.map.len() >= limits.max_entries
            || entries.bytes.saturating_add(cost) > limits.max_bytes
        {
            let Some(victim) = entries.map.keys().next().cloned() else {
                break;
            };
            entries.take(&victim);
        }
        entries.bytes += cost;
        entries.map.insert(key.into(), (entry, cost));
    }

    /// Entries and bytes held, for tests.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        let entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (entries.map.len(), entries.bytes)
    }
}

impl Entries {
    fn take(&mut self, key: &str) {
        if let Some((_, cost)) = self.map.remove(key) {
            self.bytes -= cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(len: u64, changed_secs: u64) -> Metadata {
        Metadata {
            kind: FileKind::File,
            len,
            modified: SystemTime::UNIX_EPOCH,
            changed: SystemTime::UNIX_EPOCH + Duration::from_secs(changed_secs),
            inode: 7,
            links: 1,
        }
    }

    fn entry(len: usize) -> Arc<CachedFile> {
        Arc::new(CachedFile {
            path: PathBuf::from("/www/f"),
            meta: meta(len as u64, 0),
            etag: ETag::of(b""),
            content: vec![b'x'; len].into(),
            fields: Arc::from(&b"F: 1\r\n"[..]),
            not_modified: Arc::from(&b"N: 1\r\n"[..]),
            varies: false,
            folders: None,
            vouched: AtomicBool::new(false),
        })
    }

    #[test]
    fn defaults() {
        let limits = CacheLimits::default();
        assert_eq!(limits.max_file_size, 65_536);
        assert_eq!(limits.max_entries, 1024);
        assert_eq!(limits.max_bytes, 8 << 20);
        assert_eq!(limits.max_watches, 8192);
        assert_eq!(SETTLE_TIME, Duration::from_secs(2));
    }

    #[test]
    fn admits_small_settled_regular_files() {
        let limits = CacheLimits::default();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert!(FileCache::admits(&limits, &meta(65_536, 98), wall));
        assert!(
            !FileCache::admits(&limits, &meta(65_537, 0), wall),
            "too big"
        );
        assert!(
            !FileCache::admits(&limits, &meta(1, 99), wall),
            "not settled"
        );
        let dir = Metadata {
            kind: FileKind::Dir,
            ..meta(0, 0)
        };
        assert!(!FileCache::admits(&limits, &dir, wall));
        let off = CacheLimits {
            max_entries: 0,
            ..limits
        };
        assert!(!FileCache::admits(&off, &meta(1, 0), wall));
        let big = meta(10 << 20, 0);
        assert!(FileCache::admits_encoded(&limits, &big, 1 << 20, wall));
        assert!(!FileCache::admits_encoded(
            &limits,
            &big,
            (1 << 20) + 1,
            wall
        ));
        assert!(!FileCache::admits_encoded(&limits, &meta(1, 99), 1, wall));
        assert!(!FileCache::admits_encoded(&off, &big, 1, wall));
    }

    #[test]
    fn insert_get_replace_remove() {
        let cache = FileCache::default();
        let limits = CacheLimits::default();
        cache.insert(&limits, "/a", entry(10));
        let cost = 10 + 6 + 6 + 2 + "/www/f".len();
        assert_eq!(cache.usage(), (1, cost));
        assert_eq!(cache.get("/a").unwrap().content.len(), 10);
        assert!(cache.get("/b").is_none());
        cache.insert(&limits, "/a", entry(20));
        assert_eq!(cache.usage(), (1, cost + 10), "replaced, not added");
        cache.remove("/a");
        assert_eq!(cache.usage(), (0, 0));
        assert!(cache.get("/a").is_none());
        let mut watched = Arc::into_inner(entry(10)).unwrap();
        watched.folders = Some(vec![PathBuf::from("/www"), PathBuf::from("/")].into());
        cache.insert(&limits, "/a", Arc::new(watched));
        assert_eq!(cache.usage(), (1, cost + 5), "the folders count too");
    }

    #[test]
    fn eviction_keeps_both_bounds() {
        let cache = FileCache::default();
        let limits = CacheLimits {
            max_file_size: 1024,
            max_entries: 4,
            max_bytes: 1000,
            ..CacheLimits::default()
        };
        for i in 0..50 {
            let key = format!("/f{i}");
            cache.insert(&limits, &key, entry(i * 7 % 300));
            let (count, bytes) = cache.usage();
            assert!(
                count <= 4 && bytes <= 1000,
                "{count} entries, {bytes} bytes"
            );
            assert!(cache.get(&key).is_some(), "the newest entry is kept");
        }
        cache.insert(&limits, "/huge", entry(1000));
        assert!(cache.get("/huge").is_none(), "over the byte bound alone");
        let off = CacheLimits {
            max_entries: 0,
            ..limits
        };
        let empty = FileCache::default();
        empty.insert(&off, "/a", entry(1));
        assert_eq!(empty.usage(), (0, 0));
    }

    #[test]
    fn revalidation_compares_all_metadata() {
        let cached = entry(3);
        assert!(cached.is_current(&meta(3, 0)));
        assert!(!cached.is_current(&meta(4, 0)), "size");
        assert!(!cached.is_current(&meta(3, 1)), "change time");
        let moved = Metadata {
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            ..meta(3, 0)
        };
        assert!(!cached.is_current(&moved), "modification time");
        let replaced = Metadata {
            inode: 8,
            ..meta(3, 0)
        };
        assert!(!cached.is_current(&replaced), "serial number");
        let linked = Metadata {
            links: 2,
            ..meta(3, 0)
        };
        assert!(!cached.is_current(&linked), "links");
    }

    #[test]
    fn removal_under_a_path_and_clearing() {
        let cache = FileCache::default();
        let limits = CacheLimits::default();
        let at = |path: &str| {
            let mut entry = Arc::into_inner(entry(1)).unwrap();
            entry.path = PathBuf::from(path);
            Arc::new(entry)
        };
        cache.insert(&limits, "/a", at("/www/sub/a"));
        cache.insert(&limits, "/a\0gzip", at("/www/sub/a"));
        cache.insert(&limits, "/b", at("/www/sub2/b"));
        cache.insert(&limits, "/c", at("/www/c"));
        cache.remove_under(Path::new("/www/sub"));
        assert!(cache.get("/a").is_none() && cache.get("/a\0gzip").is_none());
        assert!(
            cache.get("/b").is_some(),
            "a sibling whose name extends it stays"
        );
        cache.remove_under(Path::new("/www/c"));
        assert!(cache.get("/c").is_none());
        cache.clear();
        assert_eq!(cache.usage(), (0, 0));
    }
}
