//! The rejecter thread: answers connections over the limit with `503 Service
//! Unavailable` (over TLS too) and closes them, one at a time, so no thread that accepts
//! ever blocks on a client.

use std::io;
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use quick_server_core::wire::{BUSY_ANSWER, REFUSE_TIME};

use crate::control::Control;
use crate::wire::{End, Wire};

/// Connections waiting to be rejected; beyond, they are closed unanswered.
const QUEUE: usize = 64;

/// Starts the rejecter; it ends when the returned sender is dropped.
pub(crate) fn spawn(
    tls: Option<Arc<rustls::ServerConfig>>,
    control: Arc<Control>,
) -> io::Result<(SyncSender<TcpStream>, JoinHandle<()>)> {
    let (queue, sockets) = mpsc::sync_channel(QUEUE);
    let thread = thread::Builder::new()
        .name("quick-server-std-reject".to_owned())
        .spawn(move || run(&sockets, tls.as_ref(), &control))?;
    Ok((queue, thread))
}

fn run(sockets: &Receiver<TcpStream>, tls: Option<&Arc<rustls::ServerConfig>>, control: &Control) {
    for socket in sockets {
        if !control.is_stopping() {
            reject(socket, tls);
        }
    }
}

/// Answers 503 (after the handshake, under TLS) and closes.
fn reject(socket: TcpStream, tls: Option<&Arc<rustls::ServerConfig>>) {
    let deadline = Instant::now() + REFUSE_TIME;
    let Ok(mut wire) = Wire::new(socket, tls) else {
        return;
    };
    let end = match wire
        .handshake(deadline)
        .and_then(|()| wire.write_all(BUSY_ANSWER, deadline))
    {
        Ok(()) => End::Rejected,
        Err(_) => End::Abort,
    };
    wire.close(end);
}
