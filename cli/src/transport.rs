//! One face over the two transports, so the facade and the binary pick one at run time.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use quick_server_core::Server;

/// Which transport drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// `mio` event loops, one per core unless [`TransportOptions::loops`] says otherwise;
    /// handlers run on small pools (default).
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

/// Settings the transports share.
///
/// ```
/// use std::time::Duration;
/// use quick_server::{QuickServer, Transport, TransportOptions};
///
/// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
/// server.transport(TransportOptions {
///     kind: Transport::Std,
///     threads: Some(32),
///     shutdown_grace: Some(Duration::from_secs(2)),
///     ..TransportOptions::default()
/// });
/// ```
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Which transport.
    pub kind: Transport,
    /// TLS configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Event loops of the mio transport (one per core by default; std ignores it): each
    /// serves its share of the connections on its own thread.
    pub loops: Option<usize>,
    /// Pool threads; `None` keeps the transport's default. On std, the threads kept warm
    /// (the pool grows past them to `quick_server_std::Options::max_threads`); on mio, the
    /// handler threads.
    pub threads: Option<usize>,
    /// How long in-flight requests get after a shutdown request; `None` keeps the default.
    pub shutdown_grace: Option<Duration>,
}

/// A started server on either transport.
pub enum Running {
    /// On the mio transport.
    Mio(quick_server_mio::Running),
    /// On the std transport.
    Std(quick_server_std::Running),
}

/// Asks a running server to stop gracefully; cheap to clone and send across threads.
#[derive(Clone)]
pub enum ShutdownHandle {
    /// On the mio transport.
    Mio(quick_server_mio::ShutdownHandle),
    /// On the std transport.
    Std(quick_server_std::ShutdownHandle),
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

/// Starts serving `server` on `listener`.
pub fn start(
    listener: TcpListener,
    server: Arc<Server>,
    options: TransportOptions,
) -> io::Result<Running> {
    match options.kind {
        Transport::Mio => {
            let mut o = quick_server_mio::Options {
                tls: options.tls,
                ..Default::default()
            };
            if let Some(loops) = options.loops {
                o.loops = loops;
            }
            if let Some(threads) = options.threads {
                o.threads = threads;
            }
            if let Some(grace) = options.shutdown_grace {
                o.shutdown_grace = grace;
            }
            quick_server_mio::start(listener, server, o).map(Running::Mio)
        }
        Transport::Std => {
            let mut o = quick_server_std::Options {
                tls: options.tls,
                ..Default::default()
            };
            if let Some(threads) = options.threads {
                o.threads = threads;
            }
            if let Some(grace) = options.shutdown_grace {
                o.shutdown_grace = grace;
            }
            quick_server_std::start(listener, server, o).map(Running::Std)
        }
    }
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Mio(r) => r.local_addr(),
            Self::Std(r) => r.local_addr(),
        }
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ShutdownHandle {
        match self {
            Self::Mio(r) => ShutdownHandle::Mio(r.handle()),
            Self::Std(r) => ShutdownHandle::Std(r.handle()),
        }
    }

    /// Blocks until the server has stopped.
    pub fn wait(self) -> io::Result<()> {
        match self {
            Self::Mio(r) => r.wait(),
            Self::Std(r) => r.wait(),
        }
    }
}

impl ShutdownHandle {
    /// Stops accepting, lets in-flight requests finish (within the grace period), closes.
    pub fn shutdown(&self) {
        match self {
            Self::Mio(h) => h.shutdown(),
            Self::Std(h) => h.shutdown(),
        }
    }
}
