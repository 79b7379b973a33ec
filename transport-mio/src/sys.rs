//! The system calls `std` and mio do not offer, the only `unsafe` in the crate outside its
//! tests: zero-copy file sending (`sendfile(2)` from an open file to the socket), a
//! `send(2)` that holds its bytes for what follows (`MSG_MORE`), and an `EPOLLEXCLUSIVE`
//! watch on the shared listening socket.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Most bytes asked of one `sendfile` call, so one large file cannot hold the loop long.
pub(crate) const MAX_CHUNK: u64 = 1 << 20;

/// Sends up to `len` bytes of `file_fd` from `offset` to `socket`; returns the bytes sent.
/// A nonblocking socket that is full gives `WouldBlock`; `Ok(0)` means the file ended
/// before `offset + len` (it shrank since it was opened).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send_file(
    socket: &impl AsRawFd,
    file_fd: RawFd,
    offset: u64,
    len: u64,
) -> io::Result<usize> {
    let count = usize::try_from(len.min(MAX_CHUNK)).unwrap_or(0);
    let mut off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `socket` and `file_fd` are descriptors open for the duration of the call
    // (the socket is borrowed, the file is held by the caller's `Arc<dyn OpenFile>`), and
    // `off` is a live, exclusively borrowed `off_t` the kernel writes the new offset into.
    let sent = unsafe { libc::sendfile(socket.as_raw_fd(), file_fd, &mut off, count) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Without `sendfile(2)`, callers fall back to reading and writing.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send_file(
    _socket: &impl AsRawFd,
    _file_fd: RawFd,
    _offset: u64,
    _len: u64,
) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Writes `buf` to `socket` with `MSG_MORE`: a partial last segment waits for more bytes,
/// or for the FIN of a `close`/`shutdown` that follows at once, and leaves with it in one
/// packet. A full socket gives `WouldBlock`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send_more(socket: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the descriptor is open for the duration of the call (the socket is
    // borrowed) and `buf` is a live slice of `buf.len()` readable bytes.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Without `MSG_MORE`, callers write plainly.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send_more(_socket: &impl AsRawFd, _buf: &[u8]) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Watches `listener` from `poll` (edge-triggered readability, as `token`) with
/// `EPOLLEXCLUSIVE`: of the loops sharing one listening socket, a new connection wakes one
/// that sleeps instead of all of them.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn register_exclusive(
    poll: &mio::Poll,
    listener: &mut mio::net::TcpListener,
    token: mio::Token,
) -> io::Result<()> {
    let flags = libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE;
    let mut event = libc::epoll_event {
        // The flags are bit patterns; the cast keeps every bit.
        events: flags as u32,
        u64: token.0 as u64,
    };
    // SAFETY: the poller's and the listener's descriptors are open for the call (both are
    // borrowed), and `event` is a live `epoll_event` the kernel only reads. mio reads the
    // token back from `u64` as it does for its own registrations.
    let rc = unsafe {
        libc::epoll_ctl(
            poll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            listener.as_raw_fd(),
            &mut event,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without `EPOLLEXCLUSIVE`, every loop watching the listener wakes for a connection.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn register_exclusive(
    poll: &mio::Poll,
    listener: &mut mio::net::TcpListener,
    token: mio::Token,
) -> io::Result<()> {
    poll.registry()
        .register(listener, token, mio::Interest::READABLE)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use quick_server_transport::sendfile_falls_back;

    use super::*;

    #[test]
    fn sends_a_region_of_a_file() {
        let dir = std::env::temp_dir().join(format!("qs-mio-sendfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(send_file(&server, file.as_raw_fd(), 2, 5).unwrap(), 5);
        assert_eq!(
            send_file(&server, file.as_raw_fd(), 10, 5).unwrap(),
            0,
            "past the end"
        );
        drop(server);
        let mut got = Vec::new();
        (&client).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"23456");
        let error = send_file(&client, -1, 0, 1).unwrap_err();
        assert!(
            !sendfile_falls_back(&error),
            "a bad descriptor is a real error: {error}"
        );
        // A folder has no bytes sendfile can read: the kernel's answer means "read and write".
        let folder = std::fs::File::open(&dir).unwrap();
        let refused = send_file(&client, folder.as_raw_fd(), 0, 1).unwrap_err();
        assert!(sendfile_falls_back(&refused), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bytes_sent_with_more_leave_with_the_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(send_more(&server, b"last answer").unwrap(), 11);
        drop(server);
        let mut got = Vec::new();
        (&client).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last answer");
    }
}
