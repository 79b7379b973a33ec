//! The pool for background jobs (worker computations that may run for minutes and that
//! no connection waits on), apart from the connection workers so they cannot starve them.

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use quick_server_core::{Job, Server};

/// How many background threads run: one per core, at least two.
pub(crate) fn thread_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Starts `count` threads running background jobs sent to the returned queue; each
/// result goes to `server`, which records it whether or not the connection still exists.
/// The threads end once every sender is dropped and the queue is empty; nobody joins
/// them, so a computation that runs on does not hold up a shutdown.
pub(crate) fn spawn(count: usize, server: &Arc<Server>) -> io::Result<Sender<Job>> {
    let (queue, jobs) = mpsc::channel::<Job>();
    let jobs = Arc::new(Mutex::new(jobs));
    for index in 0..count {
        let jobs = Arc::clone(&jobs);
        let server = Arc::clone(server);
        thread::Builder::new()
            .name(format!("quick-server-std-background-{index}"))
            .spawn(move || run(&jobs, &server))?;
    }
    Ok(queue)
}

fn run(jobs: &Mutex<Receiver<Job>>, server: &Server) {
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        let done = job.run();
        server.complete(done, Instant::now());
    }
}
