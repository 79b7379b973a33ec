//! How both transports read a failed `sendfile(2)`; the calls themselves stay per
//! transport, each beside its own sockets.

use std::io;

/// Whether a failed `sendfile(2)` means "read and write instead" rather than a broken
/// connection: the platform has no such call (`Unsupported`, `ENOSYS`), or this file or
/// socket cannot take part in one (`EINVAL`, `EOPNOTSUPP`).
pub fn sendfile_falls_back(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
        || matches!(
            error.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_calls_fall_back_and_broken_connections_do_not() {
        for errno in [libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP] {
            assert!(sendfile_falls_back(&io::Error::from_raw_os_error(errno)));
        }
        assert!(sendfile_falls_back(&io::ErrorKind::Unsupported.into()));
        for errno in [libc::EPIPE, libc::ECONNRESET, libc::EBADF, libc::EAGAIN] {
            assert!(!sendfile_falls_back(&io::Error::from_raw_os_error(errno)));
        }
    }
}
