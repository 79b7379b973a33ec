//! Opens many keep-alive connections to a server on loopback, has each answered once, then
//! holds them all open for a while: the benchmark's idle row measures the server's memory
//! meanwhile. One source address has one ephemeral port range (about 28,000 ports), so
//! connections are bound in turn to 127.0.0.2, 127.0.0.3, … (all of 127.0.0.0/8 is
//! loopback).
//!
//! Usage: bench-idle-client ADDR COUNT SOURCES HOLD_SECS PATH
//! Prints one line, `open N failed N seconds S` (open: connected and answered 200), once
//! every connection was tried, then holds the open ones HOLD_SECS seconds and exits.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, count, sources, hold, path] = &args[..] else {
        eprintln!("usage: bench-idle-client ADDR COUNT SOURCES HOLD_SECS PATH");
        std::process::exit(2);
    };
    let addr: SocketAddrV4 = addr.parse().expect("ADDR is an IPv4 address and port");
    let count: usize = count.parse().expect("COUNT is a number");
    let sources: u8 = sources.parse().expect("SOURCES is 1 to 250");
    let hold = Duration::from_secs(hold.parse().expect("HOLD_SECS is a number"));
    raise_open_files();
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    let start = Instant::now();
    let mut open = Vec::with_capacity(count);
    let mut failed = 0;
    for i in 0..count {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(sources.max(1))) as u8);
        match connect_from(source, addr).and_then(|mut s| answered(&mut s, &request).map(|_| s)) {
            Ok(stream) => open.push(stream),
            Err(e) => {
                if failed == 0 {
                    eprintln!("connection {i} from {source}: {e}");
                }
                failed += 1;
            }
        }
    }
    println!(
        "open {} failed {failed} seconds {:.1}",
        open.len(),
        start.elapsed().as_secs_f64()
    );
    io::stdout().flush().ok();
    std::thread::sleep(hold);
    drop(open);
}

/// A connection to `to` bound to the source address `from` (any free port).
fn connect_from(from: Ipv4Addr, to: SocketAddrV4) -> io::Result<TcpStream> {
    // SAFETY: plain integers; the result is a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it; the stream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sockaddr(SocketAddrV4::new(from, 0));
    let remote = sockaddr(to);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `local` and `remote` are live `sockaddr_in` values of `len` bytes.
    unsafe {
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sends `request` and reads one whole answer (its head and `Content-Length` bytes).
fn answered(stream: &mut TcpStream, request: &str) -> io::Result<()> {
    stream.write_all(request.as_bytes())?;
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(io::Error::other(head.lines().next().unwrap_or("").to_owned()));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

/// Raises the soft open-file limit to the hard one: one descriptor per connection.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live `rlimit` the calls read and fill in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

