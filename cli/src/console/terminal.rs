//! Standard input at the descriptor level: raw mode for the line editor, and one-byte
//! reads that wait at most a moment, so the console thread notices a stop in time and
//! never consumes input meant for the process that runs after a restart.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::Duration;

/// Standard input.
pub(super) const STDIN: RawFd = 0;

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Input {
    /// One byte.
    Byte(u8),
    /// Nothing within the wait (or an interrupted call): check for a stop and read again.
    Idle,
    /// End of input.
    Eof,
}

/// Reads one byte from `fd`, waiting at most `wait` for it.
pub(super) fn read_byte(fd: RawFd, wait: Duration) -> io::Result<Input> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `poll` is one valid pollfd, alive for the whole call.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    if ready < 0 {
        return retry_or(io::Error::last_os_error());
    }
    if ready == 0 {
        return Ok(Input::Idle);
    }
    if poll.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid, writable one-byte buffer for the whole call.
    let read = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
    match read {
        1 => Ok(Input::Byte(byte)),
        0 => Ok(Input::Eof),
        _ => retry_or(io::Error::last_os_error()),
    }
}

/// Interrupted or would-block reads are retried by the caller; other errors end input.
fn retry_or(error: io::Error) -> io::Result<Input> {
    match error.kind() {
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Ok(Input::Idle),
        _ => Err(error),
    }
}

/// The terminal in non-canonical mode without echo, restored when dropped. Signals stay
/// on (Ctrl-C still sends SIGINT, which stops the server as in the original) and output
/// processing stays on, so log lines from other threads keep their line breaks.
pub(super) struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Switches the terminal on `fd` to raw input.
    pub(super) fn enable(fd: RawFd) -> io::Result<Self> {
        let mut saved = MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: `saved` is valid for writes of one termios; on success tcgetattr has
        // filled it, and all-zero is a valid termios anyway.
        let saved = unsafe {
            if libc::tcgetattr(fd, saved.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            saved.assume_init()
        };
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::IEXTEN);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        set_attributes(fd, &raw)?;
        Ok(Self { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = set_attributes(self.fd, &self.saved);
    }
}

fn set_attributes(fd: RawFd, termios: &libc::termios) -> io::Result<()> {
    // SAFETY: `termios` is a valid termios borrowed for the whole call.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, termios) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};

    /// A pipe as (read end, write end).
    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY (test): `fds` has room for the two descriptors pipe() writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY (test): both descriptors are fresh and owned by nothing else.
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    #[test]
    fn bytes_then_idle_then_eof() {
        let (read, mut write) = pipe();
        let fd = read.as_raw_fd();
        let wait = Duration::from_millis(10);
        write.write_all(b"ab").unwrap();
        assert_eq!(read_byte(fd, wait).unwrap(), Input::Byte(b'a'));
        assert_eq!(read_byte(fd, wait).unwrap(), Input::Byte(b'b'));
        assert_eq!(read_byte(fd, wait).unwrap(), Input::Idle);
        drop(write);
        assert_eq!(read_byte(fd, wait).unwrap(), Input::Eof);
    }

    #[test]
    fn bad_descriptor_is_an_error() {
        assert!(read_byte(0x7fff_0000, Duration::from_millis(1)).is_err());
    }

    #[test]
    fn raw_mode_needs_a_terminal() {
        let (read, _write) = pipe();
        assert!(RawMode::enable(read.as_raw_fd()).is_err());
    }
}
