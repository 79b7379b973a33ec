//! Driving `quick-server-core` from your own loop: no transport crate, one thread,
//! non-blocking `std::net` sockets. It shows every verb a transport uses, in the order
//! the core's crate docs prescribe (run jobs, write, re-arm the timer, close).
//!
//! `cargo run --example embed -- [DIR] [PORT]` serves DIR (default `.`) on
//! 127.0.0.1:PORT (default 8081) and answers `GET /api/hello` with JSON.
//!
//! A real transport waits in epoll/poll; this one naps a millisecond when nothing moved,
//! which keeps it short.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use quick_server_core::dynamic::{json_dumps, render, Args};
use quick_server_core::{Connection, Method, PeerInfo, Request, Server, Transmit};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8081);

    let mut builder = Server::builder((Instant::now(), SystemTime::now()));
    builder
        .files()
        .bind_path("/", std::fs::canonicalize(&dir)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    builder.route(
        Method::Get,
        "/api/hello",
        Some(0),
        Arc::new(|request: &Request, _: &mut Args| {
            let body = json_dumps(&serde_json::json!({ "hello": "world" })).unwrap_or_default();
            render(
                &request.head,
                200,
                "application/json",
                Vec::new(),
                body.into_bytes(),
                0,
            )
        }),
    );
    let server = builder.build();

    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    eprintln!("embedded core serving {dir} at http://127.0.0.1:{port}/");

    let mut connections: Vec<(TcpStream, Connection)> = Vec::new();
    loop {
        let mut moved = false;
        // Accept what is waiting.
        while let Ok((socket, peer)) = listener.accept() {
            socket.set_nonblocking(true)?;
            socket.set_nodelay(true)?;
            let info = PeerInfo {
                addr: peer.to_string(),
                secure: false,
            };
            connections.push((
                socket,
                Connection::new(Arc::clone(&server), info, Instant::now()),
            ));
            moved = true;
        }
        // Drive every connection once; drop it when it is done or its socket failed.
        connections.retain_mut(|(socket, conn)| match drive(socket, conn) {
            Ok(progress) => {
                moved |= progress;
                !conn.is_closed()
            }
            Err(_) => false,
        });
        // The server's own timer (worker results expiring) would go here too.
        server.handle_timeout(Instant::now());
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// One pass of the drain rule over one connection; returns whether anything moved, or
/// the socket error that ends the connection.
fn drive(socket: &mut TcpStream, conn: &mut Connection) -> io::Result<bool> {
    let mut moved = false;
    // Input: read into the core's buffer while it wants bytes.
    loop {
        let buf = conn.read_buf();
        if buf.is_empty() {
            break;
        }
        match socket.read(buf) {
            Ok(0) => {
                conn.read_eof(Instant::now());
                break;
            }
            Ok(n) => {
                conn.commit(n, Instant::now());
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    loop {
        // Jobs: a handler may block, so a real transport runs it on a pool; inline here.
        if let Some(job) = conn.poll_job() {
            let done = job.run();
            conn.complete(done, Instant::now());
            moved = true;
            continue;
        }
        // Output: write until the socket would block.
        let written = match conn.poll_transmit() {
            None => break,
            Some(Transmit::Bytes(bytes)) => socket.write(bytes),
            Some(Transmit::File(region)) => {
                let mut chunk = vec![0; region.len.min(64 * 1024) as usize];
                match region.file.read_at(&mut chunk, region.offset) {
                    Ok(n) => socket.write(&chunk[..n]),
                    Err(e) => Err(e),
                }
            }
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.transmitted(n, Instant::now());
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    // Timers: deadlines the core asked for.
    if conn
        .poll_timeout()
        .is_some_and(|deadline| deadline <= Instant::now())
    {
        conn.handle_timeout(Instant::now());
        moved = true;
    }
    Ok(moved)
}
