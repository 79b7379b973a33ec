//! Plain TCP: socket bytes straight into the core's buffer, the core's output straight
//! to the socket, file regions with `sendfile`.

use std::io::{self, Read, Write};
use std::time::Instant;

use quick_server_core::{Connection, FileRegion, Transmit};
use quick_server_transport::sendfile_falls_back;

use crate::socket::Socket;

/// Reads while the socket has data and the connection wants it; returns whether
/// anything was taken in (bytes or the end of input).
pub(crate) fn read_input(
    socket: &mut Socket,
    conn: &mut Connection,
    now: Instant,
) -> io::Result<bool> {
    let mut moved = false;
    while socket.may_read() {
        let buf = conn.read_buf();
        if buf.is_empty() {
            break;
        }
        match socket.read(buf) {
            Ok(0) => {
                conn.read_eof(now);
                return Ok(true);
            }
            Ok(n) => {
                conn.commit(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

/// Writes what the connection has queued until it is empty or the socket is full;
/// returns whether any byte left. `scratch` carries file bytes when `sendfile` cannot.
pub(crate) fn transmit(
    socket: &mut Socket,
    conn: &mut Connection,
    scratch: &mut [u8],
    now: Instant,
) -> io::Result<bool> {
    let mut moved = false;
    let closing = conn.is_closing();
    while socket.may_write() {
        let written = match conn.poll_transmit() {
            None => break,
            Some(Transmit::Bytes(bytes)) if closing => socket.write_last(bytes),
            Some(Transmit::Bytes(bytes)) => socket.write(bytes),
            Some(Transmit::File(region)) => send_region(socket, region, scratch),
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.transmitted(n, now);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

/// Sends part of a file region: `sendfile` when the file has a descriptor, otherwise
/// one bounded read into `scratch` and a write (bytes the socket refuses are read again
/// next time, so memory stays at one `scratch`).
fn send_region(socket: &mut Socket, region: &FileRegion, scratch: &mut [u8]) -> io::Result<usize> {
    if let Some(fd) = region.file.raw_fd() {
        match socket.send_file(fd, region.offset, region.len) {
            Err(e) if sendfile_falls_back(&e) => {}
            other => return other,
        }
    }
    let want = usize::try_from(region.len)
        .unwrap_or(usize::MAX)
        .min(scratch.len());
    let Some(buf) = scratch.get_mut(..want) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let got = region.file.read_at(buf, region.offset)?;
    match buf.get(..got) {
        Some(bytes) if got > 0 => socket.write(bytes),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while sent",
        )),
    }
}
