//! The housekeeping thread: runs the server's own timer (expiry of worker results),
//! accepts for the pool while none of its threads waits to, and closes the listener at
//! the stop.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_server_core::Server;

use crate::accept::Acceptor;
use crate::control::Control;
use crate::poll::{self, Watch};
use crate::pool::Pool;

/// Longest sleep between two runs of the server's timer: a deadline it gains while this
/// thread sleeps (a worker result recorded elsewhere) is late by at most this much.
const SERVER_TICK: Duration = Duration::from_secs(1);

/// Runs until the stop, then closes the listener, so later connects are refused. A failed
/// wait stops the server too.
pub(crate) fn run(
    pool: &Arc<Pool>,
    acceptor: &Acceptor,
    control: &Control,
    server: &Server,
) -> io::Result<()> {
    let result = keep(pool, acceptor, control, server);
    control.stop();
    acceptor.close();
    result
}

fn keep(
    pool: &Arc<Pool>,
    acceptor: &Acceptor,
    control: &Control,
    server: &Server,
) -> io::Result<()> {
    loop {
        let busy = pool.is_busy();
        let tick = Instant::now() + SERVER_TICK;
        let deadline = server.poll_timeout().map_or(tick, |d| d.min(tick));
        // The pool's busy signal, in the slot of a watched descriptor.
        let became_busy = Watch {
            fd: pool.busy_fd(),
            read: true,
            write: false,
        };
        let woken = poll::wait(
            busy.then(|| acceptor.fd()),
            Some(became_busy),
            Some(control.stop_fd()),
            None,
            Some(deadline),
        )?;
        if woken.stop || control.is_stopping() {
            return Ok(());
        }
        if woken.upstream {
            pool.clear_busy();
        }
        let now = Instant::now();
        if server.poll_timeout().is_some_and(|d| now >= d) {
            server.handle_timeout(now);
        }
        if woken.readable {
            pool.accept_for_busy();
        }
    }
}
