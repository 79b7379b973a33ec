//! Picking one of the two transports at run time: both take the same
//! [`Options`] and return the same [`Running`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;
use std::sync::Arc;

use quick_server_core::Server;
use quick_server_transport::{Options, Running};

/// Which transport drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// `mio` event loops, one per core unless [`Options::loops`] says otherwise; handlers
    /// run on small pools (default).
    #[default]
    Mio,
    /// Blocking threads, one per connection at a time: a warm pool that grows on demand.
    Std,
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mio" => Ok(Self::Mio),
            "std" => Ok(Self::Std),
            other => Err(format!("unknown transport '{other}' (expected mio or std)")),
        }
    }
}

/// Listens on `addr` with a backlog of 1024 (std's default is 128; the original's is 5).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    raise_backlog(&listener, 1024)?;
    Ok(listener)
}

fn raise_backlog(listener: &TcpListener, backlog: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is a valid listening socket owned by `listener` for the whole
    // call; calling listen() again on Linux only updates the backlog.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), backlog) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft limit of open files to the hard one (each connection holds a
/// descriptor); returns the limit in force, or `None` if it could not be read.
pub(crate) fn raise_open_files() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live, exclusively borrowed `rlimit` the call fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: `raised` is a live `rlimit` read by the call. A refusal keeps the old
        // soft limit, which is then the one reported.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// Starts serving `server` on `listener` with the transport `kind`.
pub fn start(
    listener: TcpListener,
    server: Arc<Server>,
    kind: Transport,
    options: Options,
) -> io::Result<Running> {
    match kind {
        Transport::Mio => quick_server_mio::start(listener, server, options),
        Transport::Std => quick_server_std::start(listener, server, options),
    }
}
