//! File access behind a trait, so the core serves files without touching a disk in tests
//! and fuzzing, and a transport can send an open file with `sendfile`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// One entry of a listed directory, as a file system reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name (a single path component).
    pub name: String,
    /// Whether the entry is, or (for a symlink) points to, a directory.
    pub is_dir: bool,
    /// Whether the entry itself is a symbolic link.
    pub is_symlink: bool,
    /// Size in bytes (ignored for directories).
    pub size: u64,
    /// Last modification time.
    pub modified: SystemTime,
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (device, socket, fifo): never served.
    Other,
}

/// The facts about a file the server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// What the path names.
    pub kind: FileKind,
    /// Size in bytes.
    pub len: u64,
    /// Last modification time.
    pub modified: SystemTime,
    /// Last status change (the inode's ctime on disk): moves on every write, replacement
    /// or `touch`, even one that sets the modification time back, so caches revalidate
    /// with it.
    pub changed: SystemTime,
    /// The file's serial number (inode on disk): a file renamed over this one has another,
    /// even when its size and times are equal.
    pub inode: u64,
    /// Names the file has (hard links): a change made through a name in another folder
    /// is not announced to a watch on this one.
    pub links: u64,
}

/// Read access to files. Paths handed in are built by the core under a bound folder.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Metadata of `path`, following symbolic links.
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;
    /// Whether `path` itself is a symbolic link.
    fn is_symlink(&self, path: &Path) -> io::Result<bool>;
    /// `path` with every link resolved (used only when a link was met).
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// Opens a regular file for reading.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn OpenFile>>;
    /// The entries of a directory, unsorted, or `None` as soon as it turns out to hold
    /// more than `max` (so a caller on an event loop stops after bounded work). Names
    /// that are not UTF-8 are left out: no request path can name them.
    fn read_dir(&self, path: &Path, max: usize) -> io::Result<Option<Vec<DirEntry>>>;
    /// A new temporary file for an upload that outgrew memory, removed when dropped.
    fn create_temp(&self) -> io::Result<Box<dyn TempFile>>;
}

/// A temporary file being written by an upload; dropping it removes it.
pub trait TempFile: Send + Sync + fmt::Debug {
    /// Appends `data`; a full disk is `ErrorKind::StorageFull`.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Reads the whole content back.
    fn read_all(&self) -> io::Result<Vec<u8>>;
    /// Where the file is on disk, if it is on one.
    fn path(&self) -> Option<&Path>;
}

/// An open file: positional reads, and its descriptor for zero-copy sending.
pub trait OpenFile: Send + Sync + fmt::Debug {
    /// Metadata taken when the file was opened.
    fn metadata(&self) -> Metadata;
    /// Reads at `offset` without moving any cursor.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The OS descriptor, when there is one (for `sendfile`).
    fn raw_fd(&self) -> Option<i32>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskFs;

#[derive(Debug)]
struct DiskFile {
    file: std::fs::File,
    meta: Metadata,
}

fn to_metadata(m: &std::fs::Metadata) -> Metadata {
    use std::os::unix::fs::MetadataExt;
    let kind = if m.is_file() {
        FileKind::File
    } else if m.is_dir() {
        FileKind::Dir
    } else {
        FileKind::Other
    };
    Metadata {
        kind,
        len: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        changed: since_epoch(m.ctime(), m.ctime_nsec()),
        inode: m.ino(),
        links: m.nlink(),
    }
}

/// A `stat` time (seconds and nanoseconds since the epoch) as a `SystemTime`; times
/// before the epoch read as the epoch.
fn since_epoch(secs: i64, nanos: i64) -> SystemTime {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nanos = u32::try_from(nanos).unwrap_or(0);
    SystemTime::UNIX_EPOCH
        + std::time::Duration::new(secs, 0)
        + std::time::Duration::from_nanos(nanos.into())
}

impl FileSystem for DiskFs {
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        std::fs::metadata(path).map(|m| to_metadata(&m))
    }

    fn is_symlink(&self, path: &Path) -> io::Result<bool> {
        std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink())
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn OpenFile>> {
        let file = std::fs::File::open(path)?;
        let meta = to_metadata(&file.metadata()?);
        if meta.kind != FileKind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Arc::new(DiskFile { file, meta }))
    }

    fn read_dir(&self, path: &Path, max: usize) -> io::Result<Option<Vec<DirEntry>>> {
        let mut entries = Vec::new();
        for (seen, entry) in std::fs::read_dir(path)?.enumerate() {
            if seen == max {
                return Ok(None);
            }
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_symlink = entry.file_type().is_ok_and(|t| t.is_symlink());
            // A dangling link still gets listed, with what the link itself says; an entry
            // removed meanwhile is skipped.
            let meta = match std::fs::metadata(entry.path()).or_else(|_| entry.metadata()) {
                Ok(m) => to_metadata(&m),
                Err(_) => continue,
            };
            entries.push(DirEntry {
                name,
                is_dir: meta.kind == FileKind::Dir,
                is_symlink,
                size: meta.len,
                modified: meta.modified,
            });
        }
        Ok(Some(entries))
    }

    fn create_temp(&self) -> io::Result<Box<dyn TempFile>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("quick-server-upload-{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => return Ok(Box::new(DiskTemp { file, path })),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A temporary upload file on disk.
#[derive(Debug)]
struct DiskTemp {
    file: std::fs::File,
    path: PathBuf,
}

impl TempFile for DiskTemp {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        std::io::Write::write_all(&mut self.file, data)
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

impl Drop for DiskTemp {
    fn drop(&mut self) {
        // Nothing can be done about a failure here; the file is in the temp folder.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl OpenFile for DiskFile {
    fn metadata(&self) -> Metadata {
        self.meta
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
    }

    fn raw_fd(&self) -> Option<i32> {
        Some(std::os::fd::AsRawFd::as_raw_fd(&self.file))
    }
}

/// An in-memory file tree for tests and fuzzing. Directories exist implicitly as the
/// parents of files; `link` adds symbolic links.
#[derive(Debug, Default, Clone)]
pub struct MemoryFs {
    files: BTreeMap<PathBuf, Arc<MemoryFile>>,
    links: BTreeMap<PathBuf, PathBuf>,
    /// Inserts so far: the tree has no clock, so a file's change time is its modification
    /// time plus this many nanoseconds, which makes every insert a change.
    inserts: u64,
    /// Temporary files: how many exist, and how many bytes they may hold in all.
    temps: Arc<TempBudget>,
}

/// The temporary files of a [`MemoryFs`].
#[derive(Debug, Default)]
struct TempBudget {
    live: AtomicUsize,
    used: AtomicU64,
    quota: Option<u64>,
}

/// A temporary file of a [`MemoryFs`].
#[derive(Debug)]
struct MemoryTemp {
    data: Vec<u8>,
    budget: Arc<TempBudget>,
}

impl TempFile for MemoryTemp {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let used = self
            .budget
            .used
            .fetch_add(data.len() as u64, Ordering::Relaxed)
            + data.len() as u64;
        if self.budget.quota.is_some_and(|quota| used > quota) {
            self.budget
                .used
                .fetch_sub(data.len() as u64, Ordering::Relaxed);
            return Err(io::ErrorKind::StorageFull.into());
        }
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        Ok(self.data.clone())
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}

impl Drop for MemoryTemp {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.data.len() as u64, Ordering::Relaxed);
        self.budget.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A file held by [`MemoryFs`].
#[derive(Debug)]
pub(crate) struct MemoryFile {
    data: Vec<u8>,
    modified: SystemTime,
    changed: SystemTime,
    inode: u64,
}

impl MemoryFs {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets temporary files hold at most `bytes` in all; beyond, writes fail as a full disk.
    pub fn with_temp_quota(self, bytes: u64) -> Self {
        Self {
            temps: Arc::new(TempBudget {
                quota: Some(bytes),
                ..TempBudget::default()
            }),
            ..self
        }
    }

    /// How many temporary files exist now.
    pub fn live_temp_files(&self) -> usize {
        self.temps.live.load(Ordering::Relaxed)
    }

    /// Adds (or replaces) a file at the absolute `path`: a new file, with a new serial
    /// number and change time.
    pub fn insert(
        &mut self,
        path: impl Into<PathBuf>,
        data: impl Into<Vec<u8>>,
        modified: SystemTime,
    ) {
        self.inserts += 1;
        let changed = modified + std::time::Duration::from_nanos(self.inserts);
        self.files.insert(
            path.into(),
            Arc::new(MemoryFile {
                data: data.into(),
                modified,
                changed,
                inode: self.inserts,
            }),
        );
    }

    /// Replaces the content of the file at `path` keeping its metadata, as a write within
    /// the same clock tick as the last change looks on disk.
    #[cfg(test)]
    pub(crate) fn overwrite_in_tick(&mut self, path: impl AsRef<Path>, data: impl Into<Vec<u8>>) {
        if let Some(file) = self.files.get_mut(path.as_ref()) {
            *file = Arc::new(MemoryFile {
                data: data.into(),
                ..**file
            });
        }
    }

    /// Removes the file or link at `path`.
    pub fn remove(&mut self, path: impl AsRef<Path>) {
        self.files.remove(path.as_ref());
        self.links.remove(path.as_ref());
    }

    /// Adds a symbolic link at `path` pointing to the absolute `target`.
    pub fn link(&mut self, path: impl Into<PathBuf>, target: impl Into<PathBuf>) {
        self.links.insert(path.into(), target.into());
    }

    /// Resolves links in every component of `path`.
    fn resolve(&self, path: &Path) -> PathBuf {
        let mut out = PathBuf::new();
        for (hops, component) in path.components().enumerate() {
            out.push(component);
            if let Some(target) = self.links.get(&out) {
                if hops < 40 {
                    out = self.resolve(target);
                }
            }
        }
        out
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.files.keys().any(|p| p.starts_with(path) && p != path)
    }
}

impl FileSystem for MemoryFs {
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let path = self.resolve(path);
        if let Some(file) = self.files.get(&path) {
            return Ok(file.metadata());
        }
        if self.is_dir(&path) {
            return Ok(Metadata {
                kind: FileKind::Dir,
                len: 0,
                modified: SystemTime::UNIX_EPOCH,
                changed: SystemTime::UNIX_EPOCH,
                inode: 0,
                links: 1,
            });
        }
        Err(io::ErrorKind::NotFound.into())
    }

    fn is_symlink(&self, path: &Path) -> io::Result<bool> {
        Ok(self.links.contains_key(path))
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(self.resolve(path))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn OpenFile>> {
        match self.files.get(&self.resolve(path)) {
            Some(file) => Ok(file.clone()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn read_dir(&self, path: &Path, max: usize) -> io::Result<Option<Vec<DirEntry>>> {
        let path = self.resolve(path);
        let mut names = BTreeMap::new();
        for (file_path, file) in &self.files {
            let Ok(rest) = file_path.strip_prefix(&path) else {
                continue;
            };
            let mut parts = rest.components();
            let Some(first) = parts.next() else { continue };
            let name = first.as_os_str().to_string_lossy().into_owned();
            let is_dir = parts.next().is_some();
            names.entry(name.clone()).or_insert(DirEntry {
                is_symlink: self.links.contains_key(&path.join(&name)),
                name,
                is_dir,
                size: if is_dir { 0 } else { file.data.len() as u64 },
                modified: file.modified,
            });
        }
        if names.is_empty() && !self.is_dir(&path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok((names.len() <= max).then(|| names.into_values().collect()))
    }

    fn create_temp(&self) -> io::Result<Box<dyn TempFile>> {
        self.temps.live.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(MemoryTemp {
            data: Vec::new(),
            budget: Arc::clone(&self.temps),
        }))
    }
}

impl OpenFile for MemoryFile {
    fn metadata(&self) -> Metadata {
        Metadata {
            kind: FileKind::File,
            len: self.data.len() as u64,
            modified: self.modified,
            changed: self.changed,
            inode: self.inode,
            links: 1,
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }

    fn raw_fd(&self) -> Option<i32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_fs_files_dirs_and_links() {
        let mut fs = MemoryFs::new();
        fs.insert("/www/a/b.txt", "hello", SystemTime::UNIX_EPOCH);
        fs.link("/www/l", "/www/a");
        assert_eq!(
            fs.metadata(Path::new("/www/a")).unwrap().kind,
            FileKind::Dir
        );
        assert_eq!(fs.metadata(Path::new("/www/l/b.txt")).unwrap().len, 5);
        assert!(fs.is_symlink(Path::new("/www/l")).unwrap());
        assert_eq!(
            fs.canonicalize(Path::new("/www/l/b.txt")).unwrap(),
            Path::new("/www/a/b.txt")
        );
        let file = fs.open(Path::new("/www/a/b.txt")).unwrap();
        let mut buf = [0; 3];
        assert_eq!(file.read_at(&mut buf, 3).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        let entries = fs.read_dir(Path::new("/www"), 1).unwrap().unwrap();
        assert_eq!(
            entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(fs.read_dir(Path::new("/www"), 0).unwrap(), None);
        assert!(fs.metadata(Path::new("/www/missing")).is_err());
    }

    #[test]
    fn memory_fs_inserts_are_changes_and_remove_forgets() {
        let mut fs = MemoryFs::new();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        fs.insert("/www/a.txt", "one", t);
        let first = fs.metadata(Path::new("/www/a.txt")).unwrap();
        fs.insert("/www/a.txt", "two", t);
        let second = fs.metadata(Path::new("/www/a.txt")).unwrap();
        assert_eq!((first.len, first.modified), (second.len, second.modified));
        assert!(second.changed > first.changed && first.changed > t);
        assert_ne!(first.inode, second.inode, "a replacement is another file");
        fs.link("/www/l", "/www/a.txt");
        fs.remove("/www/a.txt");
        fs.remove("/www/l");
        assert!(fs.metadata(Path::new("/www/a.txt")).is_err());
        assert!(!fs.is_symlink(Path::new("/www/l")).unwrap());
    }

    #[test]
    fn disk_fs_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("qs-fs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.txt"), "disk").unwrap();
        let file = DiskFs.open(&dir.join("f.txt")).unwrap();
        assert_eq!(file.metadata().len, 4);
        let meta = DiskFs.metadata(&dir.join("f.txt")).unwrap();
        assert!(meta.changed >= meta.modified && meta.changed > SystemTime::UNIX_EPOCH);
        assert!(meta.inode != 0 && meta.inode == file.metadata().inode);
        assert!(file.raw_fd().is_some());
        assert!(DiskFs.open(&dir).is_err());
        let entries = DiskFs.read_dir(&dir, 1).unwrap().unwrap();
        assert_eq!(entries[0].name, "f.txt");
        std::fs::write(dir.join("g.txt"), "two").unwrap();
        assert_eq!(DiskFs.read_dir(&dir, 1).unwrap(), None, "over the budget");
        assert_eq!(DiskFs.read_dir(&dir, 2).unwrap().unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
