//! Zero-copy sending of a file region over a plain TCP socket.

use std::io;
use std::os::fd::RawFd;

/// Most bytes asked of one call, so a huge region still reports progress regularly.
const MAX_CALL: usize = 1 << 20;

/// Sends up to `len` bytes of `file` from `offset` to `socket`; returns how many went.
/// `Unsupported` where the platform has no `sendfile`; the caller then reads and writes
/// when [`sendfile_falls_back`](quick_server_transport::sendfile_falls_back) says so.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn sendfile(socket: RawFd, file: RawFd, offset: u64, len: u64) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    let count = usize::try_from(len).unwrap_or(MAX_CALL).min(MAX_CALL);
    // SAFETY: the caller holds the socket and the open file for the duration of the call,
    // so both descriptors are open; `off` is a live local the kernel updates, and `count`
    // bounds how much it reads from the file. No user memory is written.
    let sent = unsafe { libc::sendfile(socket, file, &mut off, count) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Sends up to `len` bytes of `file` from `offset` to `socket`; returns how many went.
/// `Unsupported` where the platform has no `sendfile`; the caller then reads and writes
/// when [`sendfile_falls_back`](quick_server_transport::sendfile_falls_back) says so.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn sendfile(_socket: RawFd, _file: RawFd, _offset: u64, _len: u64) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use quick_server_transport::sendfile_falls_back;

    use super::*;

    #[test]
    fn sends_a_region_of_a_file() {
        let path = std::env::temp_dir().join(format!("qs-std-sendfile-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let sent = sendfile(server.as_raw_fd(), file.as_raw_fd(), 3, 4).unwrap();
        assert_eq!(sent, 4);
        assert_eq!(
            sendfile(server.as_raw_fd(), file.as_raw_fd(), 10, 4).unwrap(),
            0,
            "end of file"
        );
        drop(server);
        let mut got = Vec::new();
        (&client).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"3456");
        let error = sendfile(-1, file.as_raw_fd(), 0, 1).unwrap_err();
        assert!(
            !sendfile_falls_back(&error),
            "a bad descriptor is a real error: {error}"
        );
        // A folder has no bytes sendfile can read: the kernel's answer means "read and write".
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        let refused = sendfile(client.as_raw_fd(), dir.as_raw_fd(), 0, 1).unwrap_err();
        assert!(sendfile_falls_back(&refused), "{refused}");
        std::fs::remove_file(path).unwrap();
    }
}
