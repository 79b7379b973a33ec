//! The folders whose change notifications vouch for cached files, so that a hit needs no
//! `stat`. The transport owns the notification descriptor (inotify): it adds and removes
//! the watches this table asks for and hands over the records it reads; the table turns
//! them into the paths whose cached files must go (BEHAVIOUR.md: Static files › Small-file
//! cache).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// A file in the folder was written (`IN_MODIFY`).
pub(crate) const IN_MODIFY: u32 = 0x0000_0002;
/// Its metadata changed: mode, times, links (`IN_ATTRIB`).
const IN_ATTRIB: u32 = 0x0000_0004;
/// A file opened for writing was closed (`IN_CLOSE_WRITE`).
const IN_CLOSE_WRITE: u32 = 0x0000_0008;
/// A name moved out of the folder (`IN_MOVED_FROM`).
const IN_MOVED_FROM: u32 = 0x0000_0040;
/// A name moved into the folder, over an old one or not (`IN_MOVED_TO`).
const IN_MOVED_TO: u32 = 0x0000_0080;
/// A name was created (`IN_CREATE`).
const IN_CREATE: u32 = 0x0000_0100;
/// A name was removed (`IN_DELETE`).
const IN_DELETE: u32 = 0x0000_0200;
/// The watched folder itself was removed (`IN_DELETE_SELF`).
const IN_DELETE_SELF: u32 = 0x0000_0400;
/// The watched folder itself was moved (`IN_MOVE_SELF`).
const IN_MOVE_SELF: u32 = 0x0000_0800;
/// Notifications were lost: the kernel's queue overflowed (`IN_Q_OVERFLOW`).
pub(crate) const IN_Q_OVERFLOW: u32 = 0x0000_4000;
/// The watch is gone (its folder removed, its file system unmounted) (`IN_IGNORED`).
const IN_IGNORED: u32 = 0x0000_8000;
/// Watch only a folder (`IN_ONLYDIR`).
const IN_ONLYDIR: u32 = 0x0100_0000;
/// Do not follow a link in the last component (`IN_DONT_FOLLOW`).
const IN_DONT_FOLLOW: u32 = 0x0200_0000;

/// The event mask a transport passes to `inotify_add_watch` for a folder this table asks
/// for: every change to a name in it, to the content or metadata of a file in it, and to
/// the folder itself; only a real folder, never through a link.
pub const WATCH_MASK: u32 = IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW;

/// The fixed part of an inotify record: descriptor, mask, cookie and name length.
const RECORD_HEAD: usize = 16;

/// What the transport is asked to do with its notification descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOp {
    /// Watch this folder with [`WATCH_MASK`], then report with
    /// [`Server::watch_added`](crate::Server::watch_added).
    Add(PathBuf),
    /// Remove this watch descriptor (its folder is no longer relied on).
    Remove(i32),
}

/// What a change notification drops from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Every file at or under this path.
    Under(PathBuf),
    /// Everything: notifications were lost.
    All,
}

/// Where one folder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Asked of the transport, not answered yet.
    Wanted,
    /// Watched under this descriptor.
    Watched(i32),
    /// The transport could not watch it: files under it are revalidated per request.
    Refused,
}

/// The watch table: every folder asked for, under one lock, bounded by a count.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    inner: Mutex<Table>,
    /// Whether `ops` may hold something: lets the transport's frequent poll skip the lock.
    pending: AtomicBool,
}

#[derive(Debug, Default)]
struct Table {
    /// Folders in path order, so the ones under a path form one range.
    folders: BTreeMap<PathBuf, Status>,
    by_descriptor: HashMap<i32, PathBuf>,
    ops: VecDeque<WatchOp>,
}

impl Watches {
    /// Asks for every folder of `folders` not known yet, while at most `max` folders are
    /// known in all. Returns whether all of them are watched already.
    pub(crate) fn want(&self, folders: &[PathBuf], max: usize) -> bool {
        let mut table = self.lock();
        let mut watched = true;
        for folder in folders {
            match table.folders.get(folder) {
                Some(Status::Watched(_)) => {}
                Some(_) => watched = false,
                None if table.folders.len() < max => {
                    watched = false;
                    table.folders.insert(folder.clone(), Status::Wanted);
                    table.ops.push_back(WatchOp::Add(folder.clone()));
                    self.pending.store(true, Ordering::Release);
                }
                None => watched = false,
            }
        }
        watched
    }

    /// Whether every folder of `folders` is watched now.
    pub(crate) fn covers(&self, folders: &[PathBuf]) -> bool {
        let table = self.lock();
        folders
            .iter()
            .all(|f| matches!(table.folders.get(f), Some(Status::Watched(_))))
    }

    /// The next thing the transport should do with its descriptor.
    pub(crate) fn poll(&self) -> Option<WatchOp> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut table = self.lock();
        let op = table.ops.pop_front();
        if table.ops.is_empty() {
            self.pending.store(false, Ordering::Release);
        }
        op
    }

    /// Records how watching `folder` went: its descriptor, or `None` if it failed. A
    /// folder forgotten meanwhile has its new watch removed again.
    pub(crate) fn added(&self, folder: &Path, descriptor: Option<i32>) {
        let mut table = self.lock();
        let Some(status) = table.folders.get_mut(folder) else {
            if let Some(descriptor) = descriptor {
                table.ops.push_back(WatchOp::Remove(descriptor));
                self.pending.store(true, Ordering::Release);
            }
            return;
        };
        match descriptor {
            Some(descriptor) => {
                *status = Status::Watched(descriptor);
                // One inode watched twice gets the same descriptor: the newer path wins.
                table.by_descriptor.insert(descriptor, folder.to_owned());
            }
            None => *status = Status::Refused,
        }
    }

    /// Forgets every folder at or under `path` (it moved or went away): a new folder in
    /// its place is another inode and needs a watch of its own.
    pub(crate) fn forget_under(&self, path: &Path) {
        let mut table = self.lock();
        let gone: Vec<(PathBuf, Status)> = table
            .folders
            .range(path.to_owned()..)
            .take_while(|(folder, _)| folder.starts_with(path))
            .map(|(folder, status)| (folder.clone(), *status))
            .collect();
        for (folder, status) in gone {
            table.folders.remove(&folder);
            if let Status::Watched(descriptor) = status {
                if table.by_descriptor.get(&descriptor) == Some(&folder) {
                    table.by_descriptor.remove(&descriptor);
                    table.ops.push_back(WatchOp::Remove(descriptor));
                    self.pending.store(true, Ordering::Release);
                }
            }
        }
    }

    /// The paths the inotify records in `records` make stale. Records of descriptors no
    /// longer in the table are about folders nothing relies on any more.
    pub(crate) fn read(&self, records: &[u8]) -> Vec<Stale> {
        let mut stale = Vec::new();
        let mut rest = records;
        while rest.len() >= RECORD_HEAD {
            let word = |at: usize| [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
            let descriptor = i32::from_ne_bytes(word(0));
            let mask = u32::from_ne_bytes(word(4));
            let name_len = u32::from_ne_bytes(word(12)) as usize;
            let Some(name) = rest.get(RECORD_HEAD..RECORD_HEAD + name_len) else {
                break;
            };
            rest = &rest[RECORD_HEAD + name_len..];
            if mask & IN_Q_OVERFLOW != 0 {
                stale.push(Stale::All);
                continue;
            }
            let mut table = self.lock();
            let Some(folder) = table.by_descriptor.get(&descriptor).cloned() else {
                continue;
            };
            if mask & IN_IGNORED != 0 {
                // The kernel dropped the watch itself: nothing to remove.
                table.by_descriptor.remove(&descriptor);
            }
            drop(table);
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            let self_event = mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF) != 0;
            match std::str::from_utf8(name) {
                Ok(name) if !name.is_empty() && !self_event => {
                    stale.push(Stale::Under(folder.join(name)));
                }
                // A name no request can spell cannot be in the cache.
                Err(_) if !self_event => {}
                _ => stale.push(Stale::Under(folder)),
            }
        }
        stale
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The folders whose notifications cover a file at the absolute, link-free `path`: every
/// ancestor up to the root, since renaming any of them moves the file.
pub(crate) fn folders_of(path: &Path) -> Box<[PathBuf]> {
    path.ancestors().skip(1).map(Path::to_path_buf).collect()
}

/// An inotify record as the kernel writes it (the name padded with NULs), for tests.
#[cfg(test)]
pub(crate) fn record(descriptor: i32, mask: u32, name: &str) -> Vec<u8> {
    let padded = if name.is_empty() {
        0
    } else {
        (name.len() + 1).next_multiple_of(16)
    };
    let mut out = Vec::new();
    out.extend_from_slice(&descriptor.to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(padded as u32).to_ne_bytes());
    out.extend_from_slice(name.as_bytes());
    out.resize(RECORD_HEAD + padded, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn under(path: &str) -> Stale {
        Stale::Under(PathBuf::from(path))
    }

    fn drain(watches: &Watches) -> Vec<WatchOp> {
        std::iter::from_fn(|| watches.poll()).collect()
    }

    #[test]
    fn folders_are_every_ancestor() {
        let folders = folders_of(Path::new("/srv/www/a.txt"));
        let expected: Vec<PathBuf> = ["/srv/www", "/srv", "/"].map(PathBuf::from).into();
        assert_eq!(&*folders, &expected[..]);
    }

    #[test]
    fn wanted_folders_are_asked_once_and_bounded() {
        let watches = Watches::default();
        let folders = folders_of(Path::new("/srv/www/a.txt"));
        assert!(!watches.want(&folders, 8192));
        assert!(!watches.want(&folders, 8192), "asked, not watched yet");
        let ops = drain(&watches);
        assert_eq!(ops.len(), 3, "each folder once: {ops:?}");
        assert!(watches.poll().is_none());
        for (descriptor, op) in ops.iter().enumerate() {
            let WatchOp::Add(folder) = op else {
                panic!("{op:?}")
            };
            watches.added(folder, Some(descriptor as i32 + 1));
        }
        assert!(watches.covers(&folders));
        assert!(watches.want(&folders, 8192));
        // Past the bound nothing more is asked and nothing below it is covered.
        let deeper = folders_of(Path::new("/srv/www/sub/b.txt"));
        assert!(!watches.want(&deeper, 3));
        assert!(watches.poll().is_none());
        assert!(!watches.covers(&deeper));
    }

    #[test]
    fn a_refused_folder_covers_nothing() {
        let watches = Watches::default();
        let folders = folders_of(Path::new("/a/b"));
        watches.want(&folders, 10);
        watches.added(Path::new("/a"), None);
        watches.added(Path::new("/"), Some(1));
        assert!(!watches.covers(&folders));
        assert!(!watches.want(&folders, 10));
        assert!(drain(&watches).len() == 2, "not asked again");
    }

    #[test]
    fn records_name_what_went_stale() {
        let watches = Watches::default();
        watches.want(&folders_of(Path::new("/srv/www/a.txt")), 10);
        drain(&watches);
        watches.added(Path::new("/srv/www"), Some(1));
        watches.added(Path::new("/srv"), Some(2));
        let mut records = record(1, IN_MODIFY, "a.txt");
        records.extend(record(2, IN_MOVED_TO | 0x4000_0000, "www"));
        records.extend(record(1, IN_DELETE_SELF, ""));
        records.extend(record(9, IN_MODIFY, "unknown"));
        records.extend(record(-1, IN_Q_OVERFLOW, ""));
        let stale = watches.read(&records);
        assert_eq!(
            stale,
            [
                under("/srv/www/a.txt"),
                under("/srv/www"),
                under("/srv/www"),
                Stale::All
            ]
        );
        // A cut record is left for nobody: the transport reads whole records.
        assert!(watches.read(&records[..20]).is_empty());
    }

    #[test]
    fn forgetting_a_path_removes_the_watches_under_it() {
        let watches = Watches::default();
        watches.want(&folders_of(Path::new("/srv/www/sub/a.txt")), 10);
        watches.want(&folders_of(Path::new("/srv/www2/b.txt")), 10);
        for op in drain(&watches) {
            let WatchOp::Add(folder) = op else { panic!() };
            let descriptor = folder.as_os_str().len() as i32;
            watches.added(&folder, Some(descriptor));
        }
        watches.forget_under(Path::new("/srv/www"));
        let mut removed = drain(&watches);
        removed.sort_by_key(|op| format!("{op:?}"));
        assert_eq!(
            removed,
            [WatchOp::Remove(12), WatchOp::Remove(8)],
            "/srv/www/sub and /srv/www, not /srv/www2"
        );
        assert!(watches.covers(&folders_of(Path::new("/srv/www2/b.txt"))));
        assert!(!watches.covers(&folders_of(Path::new("/srv/www/c.txt"))));
        // A record of a forgotten watch drops nothing.
        assert!(watches.read(&record(8, IN_MODIFY, "c.txt")).is_empty());
        // An answer for a folder forgotten meanwhile is undone.
        watches.want(&[PathBuf::from("/x")], 10);
        drain(&watches);
        watches.forget_under(Path::new("/x"));
        watches.added(Path::new("/x"), Some(40));
        assert_eq!(drain(&watches), [WatchOp::Remove(40)]);
    }
}
