//! The inotify descriptor that watches served folders for the core's file cache: it adds
//! and removes the watches the core asks for and hands the core the notifications it
//! reads. A transport waits on it wherever it waits for connections (every mio loop's
//! poller, every std thread's `poll(2)`) and reads it before serving anything it woke
//! for, so a change made before a request was sent is read first.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use quick_server_core::files::{WatchOp, WATCH_MASK};
use quick_server_core::Server;

/// Bytes read from the descriptor at once: many records (16 bytes and a name each).
const READ_BUFFER: usize = 16 * 1024;

/// The notification descriptor, or none where inotify is unavailable (then the core's
/// requests for watches are refused, and cached files are revalidated on every hit).
#[derive(Debug)]
pub struct Watcher {
    fd: Option<OwnedFd>,
    /// Held while reading, so a thread woken with others waits until the first one has
    /// dropped what went stale.
    buffer: Mutex<Vec<u8>>,
    /// Set while a thread reads and applies notifications: another thread that found
    /// none pending may have found them taken by that read, not yet applied.
    reading: AtomicBool,
}

impl Watcher {
    /// A new descriptor, or a watcher without one when inotify cannot be had.
    pub fn new() -> Self {
        Self {
            fd: init().ok(),
            buffer: Mutex::new(vec![0; READ_BUFFER]),
            reading: AtomicBool::new(false),
        }
    }

    /// The descriptor to wait on for notifications.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Reads every pending notification into `server`, then does what it asks.
    pub fn read_changes(&self, server: &Server) {
        let Some(fd) = &self.fd else { return };
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        self.reading.store(true, Ordering::SeqCst);
        loop {
            // SAFETY: `fd` is open while `self` lives and `buffer` is a live, exclusively
            // borrowed allocation of `buffer.len()` bytes.
            let n = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            let Ok(n) = usize::try_from(n) else {
                match io::Error::last_os_error().kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break, // drained
                    // Notifications may be lost: trust no watch until asked again.
                    _ => {
                        server.invalidate(Path::new("/"));
                        break;
                    }
                }
            };
            if n == 0 {
                break;
            }
            server.watch_events(&buffer[..n]);
        }
        self.reading.store(false, Ordering::SeqCst);
        drop(buffer);
        self.apply(server);
    }

    /// Waits for a read of notifications that another thread has under way: call it
    /// after a wait that reported none and before serving what that wait reported, as
    /// the change may have been read, not yet applied, elsewhere. Costs a load otherwise.
    pub fn settle(&self) {
        if self.reading.load(Ordering::SeqCst) {
            drop(self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// Adds and removes the watches `server` asks for; without a descriptor, refuses them.
    pub fn apply(&self, server: &Server) {
        while let Some(op) = server.poll_watch() {
            match op {
                WatchOp::Add(folder) => {
                    let descriptor = self.fd.as_ref().and_then(|fd| add(fd, &folder).ok());
                    server.watch_added(&folder, descriptor);
                }
                WatchOp::Remove(descriptor) => {
                    if let Some(fd) = &self.fd {
                        remove(fd, descriptor);
                    }
                }
            }
        }
    }
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

/// A non-blocking inotify descriptor, closed on exec (a restarted process makes its own).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn init() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Without inotify, every hit revalidates.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn init() -> io::Result<OwnedFd> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Watches `folder` with the core's mask; returns the watch descriptor.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn add(fd: &OwnedFd, folder: &Path) -> io::Result<i32> {
    let path = CString::new(folder.as_os_str().as_bytes())?;
    // SAFETY: `fd` is open and `path` is a live NUL-terminated string for the call.
    let descriptor = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), WATCH_MASK) };
    if descriptor < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(descriptor)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn add(_fd: &OwnedFd, _folder: &Path) -> io::Result<i32> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Removes a watch; one the kernel already dropped gives `EINVAL`, which is fine.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn remove(fd: &OwnedFd, descriptor: i32) {
    // SAFETY: plain integers.
    unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), descriptor) };
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn remove(_fd: &OwnedFd, _descriptor: i32) {}
