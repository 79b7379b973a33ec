//! The fixed pool of worker threads, fed with accepted sockets through a bounded queue.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use crate::drive::{serve, Context};

/// A socket waiting for a worker.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The connection.
    pub(crate) socket: TcpStream,
    /// The client address.
    pub(crate) peer: SocketAddr,
}

/// Starts `count` workers taking connections from `queue` until it is closed and empty.
pub(crate) fn spawn(
    count: usize,
    queue: Receiver<Accepted>,
    ctx: &Arc<Context>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let queue = Arc::new(Mutex::new(queue));
    (0..count)
        .map(|index| {
            let queue = Arc::clone(&queue);
            let ctx = Arc::clone(ctx);
            thread::Builder::new()
                .name(format!("quick-server-std-{index}"))
                .spawn(move || work(index, &queue, &ctx))
        })
        .collect()
}

/// One worker: serves connections one after the other.
fn work(index: usize, queue: &Mutex<Receiver<Accepted>>, ctx: &Context) {
    while let Some(Accepted { socket, peer }) = next(queue) {
        let control = &ctx.control;
        // Past the grace period, what is still queued is dropped unanswered.
        if !control.is_forced() && control.register(index, &socket).is_ok() {
            // A panic is a bug, but it must cost one connection, not a pool thread.
            let _ = catch_unwind(AssertUnwindSafe(|| serve(socket, peer, ctx)));
            control.unregister(index);
        }
        control.release();
    }
}

/// The next queued connection; `None` once the queue is closed and empty.
fn next(queue: &Mutex<Receiver<Accepted>>) -> Option<Accepted> {
    queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .recv()
        .ok()
}
