//! The worker result cache (the original pairs workers with `quick_cache`): results keyed
//! by a section and the JSON text of a job's `cache_id`, kept in RAM and optionally on
//! disk, each tier with a byte quota and least-recently-used eviction.
//!
//! [`ResultCache`] is the interface workers use, so another store can plug in;
//! [`QuickCache`] is the built-in one. Its disk tier survives a restart: every entry is a
//! file `<folder>/s<hex of section>/<16 hex digits of the key's FNV-1a hash>` holding the
//! key, a newline and the result text; the key line guards against hash collisions, and the
//! files' modification times carry the recency order across restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::hash::Hash;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// A store for worker results: `get` and `put` by section and key, plus the two
/// maintenance operations of the command loop.
///
/// Implementations are best-effort: a store that cannot keep or read an entry reports a
/// miss, and the worker computes the result again.
pub trait ResultCache: Send + Sync {
    /// The result text stored under `key` in `section`, marking it recently used.
    fn get(&self, section: &str, key: &str) -> Option<String>;

    /// Stores `text` under `key` in `section`, evicting least-recently-used entries to
    /// stay within the quotas.
    fn put(&self, section: &str, key: &str, text: &str);

    /// Removes every entry of `section`.
    fn clean_cache(&self, section: &str);

    /// The sections holding at least one entry, sorted.
    fn list_sections(&self) -> Vec<String>;
}

/// The built-in [`ResultCache`]: a RAM tier and an optional disk tier.
///
/// ```
/// use quick_server::{QuickCache, ResultCache};
///
/// let cache = QuickCache::in_memory(1 << 20);
/// assert_eq!(cache.get("www", "\"key\""), None);
/// cache.put("www", "\"key\"", "{\"answer\": 42}");
/// assert_eq!(cache.get("www", "\"key\"").as_deref(), Some("{\"answer\": 42}"));
/// assert_eq!(cache.list_sections(), ["www"]);
/// cache.clean_cache("www");
/// assert!(cache.list_sections().is_empty());
/// ```
pub struct QuickCache {
    state: Mutex<State>,
}

struct State {
    ram: HashMap<(String, String), String>,
    ram_order: Lru<(String, String)>,
    disk: Option<Disk>,
}

impl fmt::Debug for QuickCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("QuickCache")
            .field("ram_bytes", &state.ram_order.total)
            .field("ram_quota", &state.ram_order.quota)
            .field("folder", &state.disk.as_ref().map(|d| &d.folder))
            .finish_non_exhaustive()
    }
}

impl QuickCache {
    /// A cache in RAM only, holding at most `ram_quota` bytes of sections, keys and texts.
    pub fn in_memory(ram_quota: u64) -> Self {
        Self {
            state: Mutex::new(State {
                ram: HashMap::new(),
                ram_order: Lru::new(ram_quota),
                disk: None,
            }),
        }
    }

    /// A cache with a RAM tier of `ram_quota` bytes backed by files in `folder` (created if
    /// missing) using at most `disk_quota` bytes. Entries already in `folder` are kept, in
    /// the recency order of their modification times.
    pub fn with_disk(
        ram_quota: u64,
        folder: impl AsRef<Path>,
        disk_quota: u64,
    ) -> io::Result<Self> {
        let disk = Disk::open(folder.as_ref(), disk_quota)?;
        let cache = Self::in_memory(ram_quota);
        cache.state().disk = Some(disk);
        Ok(cache)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the maps consistent before any call that could
        // panic, so a poisoned lock still guards valid data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ResultCache for QuickCache {
    fn get(&self, section: &str, key: &str) -> Option<String> {
        let mut state = self.state();
        let id = (section.to_owned(), key.to_owned());
        if let Some(text) = state.ram.get(&id).cloned() {
            state.ram_order.touch(&id);
            if let Some(disk) = state.disk.as_mut() {
                disk.touch(section, key);
            }
            return Some(text);
        }
        let text = state.disk.as_mut()?.read(section, key)?;
        state.remember(id, &text);
        Some(text)
    }

    fn put(&self, section: &str, key: &str, text: &str) {
        let mut state = self.state();
        state.remember((section.to_owned(), key.to_owned()), text);
        if let Some(disk) = state.disk.as_mut() {
            disk.write(section, key, text);
        }
    }

    fn clean_cache(&self, section: &str) {
        let mut state = self.state();
        for id in state.ram_order.remove_where(|(s, _)| s == section) {
            state.ram.remove(&id);
        }
        if let Some(disk) = state.disk.as_mut() {
            disk.clean(section);
        }
    }

    fn list_sections(&self) -> Vec<String> {
        let state = self.state();
        let mut sections: BTreeSet<String> = state.ram.keys().map(|(s, _)| s.clone()).collect();
        if let Some(disk) = &state.disk {
            sections.extend(disk.order.keys().map(|(s, _)| s.clone()));
        }
        sections.into_iter().collect()
    }
}

impl State {
    /// Puts `text` in the RAM tier, evicting what no longer fits.
    fn remember(&mut self, id: (String, String), text: &str) {
        let size = entry_size(&id.0, &id.1, text);
        self.ram.insert(id.clone(), text.to_owned());
        for evicted in self.ram_order.insert(id, size) {
            self.ram.remove(&evicted);
        }
    }
}

fn entry_size(section: &str, key: &str, text: &str) -> u64 {
    (section.len() + key.len() + text.len()) as u64
}

/// Sizes and recency of entries under a byte quota: which entries to evict.
#[derive(Debug)]
struct Lru<K> {
    /// Size and last-use tick of each entry.
    entries: HashMap<K, (u64, u64)>,
    /// Entries by last-use tick, oldest first.
    by_tick: BTreeMap<u64, K>,
    tick: u64,
    total: u64,
    quota: u64,
}

impl<K: Clone + Eq + Hash> Lru<K> {
    fn new(quota: u64) -> Self {
        Self {
            entries: HashMap::new(),
            by_tick: BTreeMap::new(),
            tick: 0,
            total: 0,
            quota,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Marks `key` most recently used; false if it is not tracked.
    fn touch(&mut self, key: &K) -> bool {
        let tick = self.next_tick();
        let Some((_, old)) = self.entries.get_mut(key) else {
            return false;
        };
        let previous = std::mem::replace(old, tick);
        self.by_tick.remove(&previous);
        self.by_tick.insert(tick, key.clone());
        true
    }

    /// Tracks `key` (replacing an older size) as most recently used, then evicts the least
    /// recently used entries until the total fits the quota. Returns the evicted keys,
    /// `key` itself if it is larger than the whole quota.
    fn insert(&mut self, key: K, size: u64) -> Vec<K> {
        self.remove(&key);
        if size > self.quota {
            return vec![key];
        }
        let tick = self.next_tick();
        self.entries.insert(key.clone(), (size, tick));
        self.by_tick.insert(tick, key);
        self.total += size;
        let mut evicted = Vec::new();
        while self.total > self.quota {
            let Some((_, oldest)) = self.by_tick.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&oldest) {
                self.total -= size;
            }
            evicted.push(oldest);
        }
        evicted
    }

    /// Stops tracking `key`; false if it was not tracked.
    fn remove(&mut self, key: &K) -> bool {
        let Some((size, tick)) = self.entries.remove(key) else {
            return false;
        };
        self.by_tick.remove(&tick);
        self.total -= size;
        true
    }

    /// Stops tracking every key matching `doomed`; returns them.
    fn remove_where(&mut self, doomed: impl Fn(&K) -> bool) -> Vec<K> {
        let keys: Vec<K> = self.entries.keys().filter(|k| doomed(k)).cloned().collect();
        for key in &keys {
            self.remove(key);
        }
        keys
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }
}

/// The disk tier: one folder per section, one file per entry.
struct Disk {
    folder: PathBuf,
    /// Entries by (section, file name).
    order: Lru<(String, String)>,
}

impl Disk {
    /// Opens `folder`, indexing the entries found there oldest-modified first and removing
    /// what exceeds `quota` and unfinished writes.
    fn open(folder: &Path, quota: u64) -> io::Result<Self> {
        fs::create_dir_all(folder)?;
        let mut found = Vec::new();
        for section_dir in fs::read_dir(folder)? {
            let section_dir = section_dir?;
            let Some(section) = section_dir.file_name().to_str().and_then(section_of) else {
                continue;
            };
            if !section_dir.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(section_dir.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    let _ = fs::remove_file(file.path());
                    continue;
                }
                if !is_entry_name(&name) {
                    continue;
                }
                let meta = file.metadata()?;
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((modified, section.clone(), name, meta.len()));
            }
        }
        found.sort();
        let mut disk = Self {
            folder: folder.to_owned(),
            order: Lru::new(quota),
        };
        for (_, section, name, size) in found {
            for evicted in disk.order.insert((section, name), size) {
                let _ = fs::remove_file(disk.path(&evicted.0, &evicted.1));
            }
        }
        Ok(disk)
    }

    fn path(&self, section: &str, name: &str) -> PathBuf {
        self.folder.join(section_dir(section)).join(name)
    }

    /// The result stored for `key`, refreshing its recency; `None` when absent, unreadable
    /// or holding another key with the same hash.
    fn read(&mut self, section: &str, key: &str) -> Option<String> {
        let id = (section.to_owned(), entry_name(key));
        if !self.order.entries.contains_key(&id) {
            return None;
        }
        let path = self.path(section, &id.1);
        let Ok(content) = fs::read_to_string(&path) else {
            self.order.remove(&id);
            let _ = fs::remove_file(&path);
            return None;
        };
        let (stored_key, text) = content.split_once('\n')?;
        if stored_key != key {
            return None;
        }
        let text = text.to_owned();
        self.touch(section, key);
        Some(text)
    }

    /// Marks `key` recently used, here and in the file's modification time.
    fn touch(&mut self, section: &str, key: &str) {
        let id = (section.to_owned(), entry_name(key));
        if self.order.touch(&id) {
            let path = self.path(section, &id.1);
            if let Ok(file) = fs::File::options().write(true).open(path) {
                let _ = file.set_modified(SystemTime::now());
            }
        }
    }

    /// Writes the entry (through a temporary file renamed into place), then evicts.
    fn write(&mut self, section: &str, key: &str, text: &str) {
        let name = entry_name(key);
        let dir = self.folder.join(section_dir(section));
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        let written = fs::create_dir_all(&dir)
            .and_then(|()| fs::File::create(&tmp))
            .and_then(|mut file| {
                file.write_all(key.as_bytes())?;
                file.write_all(b"\n")?;
                file.write_all(text.as_bytes())
            })
            .and_then(|()| fs::rename(&tmp, &path));
        let id = (section.to_owned(), name);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            self.order.remove(&id);
            return;
        }
        let size = (key.len() + 1 + text.len()) as u64;
        for evicted in self.order.insert(id, size) {
            let _ = fs::remove_file(self.path(&evicted.0, &evicted.1));
        }
    }

    /// Removes every file of `section`.
    fn clean(&mut self, section: &str) {
        self.order.remove_where(|(s, _)| s == section);
        let _ = fs::remove_dir_all(self.folder.join(section_dir(section)));
    }
}

/// The file name of `key`: 16 lower-case hex digits of its 64-bit FNV-1a hash.
fn entry_name(key: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = key
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The folder name of `section`: `s` and the lower-case hex of its bytes, so any section
/// text (even empty) is a safe, distinct name.
fn section_dir(section: &str) -> String {
    let mut name = String::with_capacity(1 + 2 * section.len());
    name.push('s');
    for b in section.bytes() {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// The section whose folder [`section_dir`] named `name`, if it is such a name.
fn section_of(name: &str) -> Option<String> {
    let digits = name.strip_prefix('s')?;
    if digits.len() % 2 != 0
        || !digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let bytes = (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp dir, removed when dropped.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("quick-server-cache-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn files_in(folder: &Path) -> usize {
        fs::read_dir(folder)
            .map(|dirs| {
                dirs.flatten()
                    .map(|d| fs::read_dir(d.path()).map_or(0, |f| f.count()))
                    .sum()
            })
            .unwrap_or(0)
    }

    #[test]
    fn lru_evicts_least_recently_used_first() {
        let mut lru = Lru::new(10);
        assert!(lru.insert("a", 4).is_empty());
        assert!(lru.insert("b", 4).is_empty());
        assert!(lru.touch(&"a"));
        assert_eq!(lru.insert("c", 4), vec!["b"]);
        assert_eq!(lru.total, 8);
        assert!(!lru.touch(&"b"));
        // Replacing an entry counts its new size only.
        assert!(lru.insert("a", 6).is_empty());
        assert_eq!(lru.total, 10);
        assert_eq!(lru.insert("d", 1), vec!["c"]);
    }

    #[test]
    fn lru_refuses_entries_larger_than_the_quota() {
        let mut lru = Lru::new(5);
        assert!(lru.insert("a", 5).is_empty());
        assert_eq!(lru.insert("big", 6), vec!["big"]);
        assert_eq!(lru.total, 5);
        assert!(lru.remove(&"a"));
        assert!(!lru.remove(&"a"));
        assert_eq!(lru.total, 0);
        assert_eq!(Lru::<&str>::new(0).insert("x", 0), Vec::<&str>::new());
    }

    #[test]
    fn lru_remove_where() {
        let mut lru = Lru::new(100);
        for key in ["a1", "a2", "b1"] {
            lru.insert(key, 1);
        }
        let mut removed = lru.remove_where(|k| k.starts_with('a'));
        removed.sort_unstable();
        assert_eq!(removed, vec!["a1", "a2"]);
        assert_eq!(lru.total, 1);
        assert_eq!(lru.by_tick.len(), 1);
    }

    #[test]
    fn memory_get_put_and_quota() {
        let cache = QuickCache::in_memory(20);
        assert_eq!(cache.get("www", "k1"), None);
        cache.put("www", "k1", "0123456789"); // 3 + 2 + 10 = 15 bytes
        assert_eq!(cache.get("www", "k1").as_deref(), Some("0123456789"));
        cache.put("www", "k2", "xx"); // 7 more: k1 is evicted
        assert_eq!(cache.get("www", "k1"), None);
        assert_eq!(cache.get("www", "k2").as_deref(), Some("xx"));
        cache.put("www", "huge", &"z".repeat(100));
        assert_eq!(cache.get("www", "huge"), None, "larger than the quota");
        assert_eq!(cache.get("www", "k2").as_deref(), Some("xx"));
    }

    #[test]
    fn sections_are_separate_and_cleanable() {
        let cache = QuickCache::in_memory(1000);
        cache.put("www", "k", "1");
        cache.put("other", "k", "2");
        assert_eq!(cache.list_sections(), vec!["other", "www"]);
        assert_eq!(cache.get("other", "k").as_deref(), Some("2"));
        cache.clean_cache("www");
        assert_eq!(cache.get("www", "k"), None);
        assert_eq!(cache.get("other", "k").as_deref(), Some("2"));
        assert_eq!(cache.list_sections(), vec!["other"]);
        cache.clean_cache("nothing here");
    }

    #[test]
    fn disk_survives_a_restart() {
        let folder = Folder::new("restart");
        {
            let cache = QuickCache::with_disk(1000, &folder.0, 1000).unwrap();
            cache.put("www", r#"{"n":1}"#, "\"one\"");
            cache.put("", "empty section", "ok");
        }
        let cache = QuickCache::with_disk(1000, &folder.0, 1000).unwrap();
        assert_eq!(cache.get("www", r#"{"n":1}"#).as_deref(), Some("\"one\""));
        assert_eq!(cache.get("", "empty section").as_deref(), Some("ok"));
        assert_eq!(cache.get("www", r#"{"n":2}"#), None);
        assert_eq!(cache.list_sections(), vec!["", "www"]);
        let name = entry_name(r#"{"n":1}"#);
        let content = fs::read_to_string(folder.0.join("s777777").join(name)).unwrap();
        assert_eq!(content, "{\"n\":1}\n\"one\"");
    }

    #[test]
    fn disk_quota_evicts_oldest_files_and_ram_tier_stays_small() {
        let folder = Folder::new("quota");
        // RAM holds nothing; disk holds two entries of 1 + 1 + 8 = 10 bytes.
        let cache = QuickCache::with_disk(0, &folder.0, 20).unwrap();
        cache.put("s", "a", "aaaaaaaa");
        cache.put("s", "b", "bbbbbbbb");
        assert_eq!(cache.get("s", "a").as_deref(), Some("aaaaaaaa"));
        cache.put("s", "c", "cccccccc");
        assert_eq!(cache.get("s", "b"), None, "b was least recently used");
        assert_eq!(cache.get("s", "a").as_deref(), Some("aaaaaaaa"));
        assert_eq!(cache.get("s", "c").as_deref(), Some("cccccccc"));
        assert_eq!(files_in(&folder.0), 2);
    }

    #[test]
    fn restart_with_a_smaller_quota_keeps_the_newest() {
        let folder = Folder::new("shrink");
        {
            let cache = QuickCache::with_disk(0, &folder.0, 1000).unwrap();
            cache.put("s", "old", "1");
            let old = folder.0.join("s73").join(entry_name("old"));
            let file = fs::File::options().write(true).open(old).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH).unwrap();
            cache.put("s", "new", "2");
        }
        let cache = QuickCache::with_disk(0, &folder.0, 6).unwrap();
        assert_eq!(cache.get("s", "old"), None);
        assert_eq!(cache.get("s", "new").as_deref(), Some("2"));
        assert_eq!(files_in(&folder.0), 1);
    }

    #[test]
    fn disk_clean_removes_files() {
        let folder = Folder::new("clean");
        let cache = QuickCache::with_disk(1000, &folder.0, 1000).unwrap();
        cache.put("a", "k", "1");
        cache.put("b", "k", "2");
        cache.clean_cache("a");
        assert_eq!(cache.list_sections(), vec!["b"]);
        assert!(!folder.0.join("s61").exists());
        let reopened = QuickCache::with_disk(1000, &folder.0, 1000).unwrap();
        assert_eq!(reopened.get("a", "k"), None);
        assert_eq!(reopened.get("b", "k").as_deref(), Some("2"));
    }

    #[test]
    fn hash_collisions_and_foreign_files_are_misses() {
        let folder = Folder::new("foreign");
        let cache = QuickCache::with_disk(0, &folder.0, 1000).unwrap();
        cache.put("s", "key", "v");
        // Another key's line in the file (as a colliding hash would leave): a miss.
        let path = folder.0.join("s73").join(entry_name("key"));
        fs::write(&path, "other\nv").unwrap();
        assert_eq!(cache.get("s", "key"), None);
        // A file without a key line, unknown names and stale temporary files.
        fs::write(&path, "no newline").unwrap();
        assert_eq!(cache.get("s", "key"), None);
        fs::write(folder.0.join("s73").join("README"), "x").unwrap();
        fs::write(folder.0.join("s73").join("0123456789abcdef.tmp"), "x").unwrap();
        fs::create_dir_all(folder.0.join("not-a-section")).unwrap();
        let reopened = QuickCache::with_disk(0, &folder.0, 1000).unwrap();
        assert_eq!(reopened.list_sections(), vec!["s"]);
        assert!(folder.0.join("s73").join("README").exists());
        assert!(!folder.0.join("s73").join("0123456789abcdef.tmp").exists());
    }

    #[test]
    fn a_deleted_file_is_a_miss() {
        let folder = Folder::new("deleted");
        let cache = QuickCache::with_disk(0, &folder.0, 1000).unwrap();
        cache.put("s", "k", "v");
        fs::remove_file(folder.0.join("s73").join(entry_name("k"))).unwrap();
        assert_eq!(cache.get("s", "k"), None);
        assert!(cache.list_sections().is_empty());
    }

    #[test]
    fn names() {
        assert_eq!(entry_name(""), "cbf29ce484222325");
        assert_eq!(entry_name("a"), "af63dc4c8601ec8c");
        assert!(is_entry_name(&entry_name("anything")));
        assert!(!is_entry_name("CBF29CE484222325"));
        assert_eq!(section_dir("www"), "s777777");
        assert_eq!(section_dir(""), "s");
        for section in ["www", "", "a/b", "é"] {
            assert_eq!(section_of(&section_dir(section)).as_deref(), Some(section));
        }
        assert_eq!(section_of("s+a"), None);
        assert_eq!(section_of("s7"), None);
        assert_eq!(section_of("777777"), None);
        assert_eq!(section_of("sff"), None, "not UTF-8");
    }
}
