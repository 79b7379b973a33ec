//! The lingering close: after the last answer, stop sending but keep reading for a
//! moment, so bytes the client sent and we never read do not make the kernel answer with
//! a reset that destroys the answer before the client has read it.

use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use quick_server_core::wire::LINGER_BYTES;
pub(crate) use quick_server_core::wire::LINGER_TIME;

/// Longest linger after a 503 for a connection over the limit.
pub(crate) const REJECT_LINGER_TIME: Duration = Duration::from_millis(50);

/// Shuts down the sending side, then reads and discards until the peer closes, `time`
/// passes or `LINGER_BYTES` were read.
pub(crate) fn linger(socket: &mut TcpStream, time: Duration) {
    if socket.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + time;
    let mut budget = LINGER_BYTES;
    let mut buf = [0; 4096];
    while budget > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn answer_survives_unread_request_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[b'x'; 10_000]).unwrap();
        server.write_all(b"answer").unwrap();
        let started = Instant::now();
        let closer = std::thread::spawn(move || linger(&mut server, LINGER_TIME));
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"answer");
        drop(client);
        closer.join().unwrap();
        assert!(
            started.elapsed() < LINGER_TIME,
            "a peer that closes ends the linger early"
        );
    }

    #[test]
    fn a_silent_peer_is_given_up_on() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let started = Instant::now();
        linger(&mut server, LINGER_TIME);
        let took = started.elapsed();
        assert!(
            took >= LINGER_TIME - Duration::from_millis(50) && took < LINGER_TIME * 3,
            "{took:?}"
        );
    }
}
