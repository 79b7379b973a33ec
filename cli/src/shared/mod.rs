//! Shared state in Redis, so that several instances behind a load balancer serve one
//! application: tokens, worker tasks and the result cache live in Redis instead of the
//! process. Calls go through a bounded pool of blocking connections with named timeouts;
//! the server's event loop never makes them (they run in request and worker jobs).

mod cache;
mod tasks;
mod tokens;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quick_server_core::store::StoreError;
use redis::ConnectionLike;

pub use cache::{RedisCache, CACHE_MAX_ENTRY, CACHE_QUOTA};
pub(crate) use tasks::RedisTasks;
pub use tasks::STOP_POLL;
pub(crate) use tokens::RedisTokenStore;

/// Connections a server keeps to Redis at most; a request waits for a free one up to
/// [`REDIS_TIMEOUT`].
pub const POOL_SIZE: u32 = 16;

/// How long a Redis connect, command or wait for a pooled connection may take before the
/// request answers 503. A request makes at most two such waits.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(800);

/// How long a worker task stays "running" after its instance stopped renewing the lease
/// (it crashed or restarted); past it, `get` answers that the task was lost.
pub const WORKER_LEASE: Duration = Duration::from_secs(10);

/// How many times a task lost with its instance runs again on a route registered in
/// [`QuickServer::rerun_lost`](crate::QuickServer::rerun_lost); past it the task is lost.
pub const RERUN_MAX: u32 = 3;

/// Settings of [`SharedState::open`]; every field has a named default.
#[derive(Debug, Clone)]
pub struct SharedStateOptions {
    /// Prepended to every key, so that several applications can share one Redis.
    /// Default: `qs:<name of the executable>:`.
    pub key_prefix: Option<String>,
    /// See [`POOL_SIZE`].
    pub pool_size: u32,
    /// See [`REDIS_TIMEOUT`].
    pub timeout: Duration,
    /// See [`WORKER_LEASE`].
    pub lease: Duration,
    /// See [`RERUN_MAX`].
    pub rerun_max: u32,
    /// Byte budget of the result cache, see [`RedisCache`] and [`CACHE_QUOTA`].
    pub cache_quota: u64,
    /// Largest result the cache keeps, in bytes; see [`CACHE_MAX_ENTRY`].
    pub cache_max_entry: u64,
    /// PEM root certificates to check a `rediss://` server against instead of the
    /// system's (a private CA, a self-signed Redis). Default: none.
    pub tls_root_pem: Option<Vec<u8>>,
}

impl Default for SharedStateOptions {
    fn default() -> Self {
        Self {
            key_prefix: None,
            pool_size: POOL_SIZE,
            timeout: REDIS_TIMEOUT,
            lease: WORKER_LEASE,
            rerun_max: RERUN_MAX,
            cache_quota: CACHE_QUOTA,
            cache_max_entry: CACHE_MAX_ENTRY,
            tls_root_pem: None,
        }
    }
}

/// Why [`SharedState::open`] refused a URL.
#[derive(Debug)]
pub struct SharedStateError(String);

impl fmt::Display for SharedStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SharedStateError {}

/// A connection pool to one Redis and the key prefix of this application; install it
/// with [`QuickServer::shared_state`](crate::QuickServer::shared_state). Clones share
/// the pool.
///
/// ```no_run
/// use quick_server::{QuickServer, SharedState, SharedStateOptions};
///
/// let state = SharedState::open("redis://:secret@127.0.0.1:6379/2", SharedStateOptions::default())?;
/// let mut server = QuickServer::new(([127, 0, 0, 1], 8080).into());
/// server.shared_state(state);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedState {
    redis: Arc<Redis>,
    owner: Arc<tasks::Owner>,
    rerun_max: u32,
    cache_quota: u64,
    cache_max_entry: u64,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("prefix", &self.redis.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Checks `url` (`redis://` or `rediss://` for TLS, with an optional
    /// `:password@` or `user:password@` and `/db`) and prepares a pool. Redis need not be
    /// up yet: connections open on first use and reopen after an outage.
    pub fn open(url: &str, options: SharedStateOptions) -> Result<Self, SharedStateError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(SharedStateError(format!(
                "a Redis URL starts with redis:// or rediss://, got {url:?}"
            )));
        }
        let client = match &options.tls_root_pem {
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(|e| SharedStateError(format!("bad Redis URL {url:?}: {e}")))?;
        let connector = Connector {
            client,
            timeout: options.timeout,
        };
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(options.timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(connector);
        let prefix = options.key_prefix.clone().unwrap_or_else(default_prefix);
        Ok(Self {
            redis: Arc::new(Redis {
                pool,
                prefix,
                down: AtomicBool::new(false),
            }),
            owner: Arc::new(tasks::Owner::new(options.lease)),
            rerun_max: options.rerun_max,
            cache_quota: options.cache_quota,
            cache_max_entry: options.cache_max_entry,
        })
    }

    /// The prefix of every key this application writes.
    pub fn key_prefix(&self) -> &str {
        &self.redis.prefix
    }

    pub(crate) fn token_store(&self) -> RedisTokenStore {
        RedisTokenStore::new(Arc::clone(&self.redis))
    }

    /// The worker result cache in this Redis (see [`RedisCache`] for its policy).
    pub fn cache(&self) -> RedisCache {
        RedisCache::new(
            Arc::clone(&self.redis),
            self.cache_quota,
            self.cache_max_entry,
        )
    }

    /// The task store of the worker route at `mask`; with `rerun`, a task lost with its
    /// instance runs again on the instance that next answers a `get` for it.
    pub(crate) fn tasks(&self, mask: &str, rerun: bool) -> RedisTasks {
        let rerun_max = if rerun { self.rerun_max } else { 0 };
        RedisTasks::new(
            Arc::clone(&self.redis),
            Arc::clone(&self.owner),
            mask,
            rerun_max,
        )
    }
}

/// `qs:<executable name>:`, so that instances of one program share keys.
fn default_prefix() -> String {
    let name = std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "quick-server".to_owned());
    format!("qs:{name}:")
}

/// The pool, the prefix and the outage state shared by the stores.
pub(crate) struct Redis {
    pool: r2d2::Pool<Connector>,
    prefix: String,
    down: AtomicBool,
}

impl Redis {
    /// `<prefix><name>`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs `command` on a pooled connection. A connection that broke while idle (Redis
    /// restarted) is replaced once; a timeout is not retried. Logs one line when Redis
    /// becomes unreachable and one when it answers again.
    pub(crate) fn run<T>(
        &self,
        mut command: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut cause = String::new();
        for _ in 0..2 {
            let mut conn = match self.pool.get() {
                Ok(conn) => conn,
                Err(e) => {
                    cause = e.to_string();
                    break;
                }
            };
            match command(&mut conn) {
                Ok(value) => {
                    self.reachable();
                    return Ok(value);
                }
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                    cause = e.to_string();
                    if e.is_timeout() {
                        break;
                    }
                }
                Err(e) => {
                    self.reachable();
                    return Err(self.bad_data(e.to_string()));
                }
            }
        }
        if cause.is_empty() {
            cause = "no answer".to_owned();
        }
        if !self.down.swap(true, Ordering::Relaxed) {
            crate::logging::msg(&format!("redis unavailable: {cause}"));
        }
        Err(StoreError::Unavailable(cause))
    }

    fn reachable(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            crate::logging::msg("redis reachable again");
        }
    }

    /// Logs a value this server did not write and returns the error for it.
    pub(crate) fn bad_data(&self, what: String) -> StoreError {
        crate::logging::msg(&format!("redis: unexpected data: {what}"));
        StoreError::BadData(what)
    }
}

/// Opens connections with [`REDIS_TIMEOUT`]-like timeouts on connect, read and write, so
/// that a stalled Redis costs a request a bounded wait.
struct Connector {
    client: redis::Client,
    timeout: Duration,
}

impl r2d2::ManageConnection for Connector {
    type Connection = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let conn = self.client.get_connection_with_timeout(self.timeout)?;
        conn.set_read_timeout(Some(self.timeout))?;
        conn.set_write_timeout(Some(self.timeout))?;
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query::<()>(conn)
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        !conn.is_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for bad in ["http://x", "localhost:6379", "redis://[::1"] {
            assert!(
                SharedState::open(bad, SharedStateOptions::default()).is_err(),
                "{bad}"
            );
        }
        let state = SharedState::open(
            "rediss://:pw@127.0.0.1:1/3",
            SharedStateOptions {
                key_prefix: Some("app:".into()),
                ..SharedStateOptions::default()
            },
        )
        .unwrap();
        assert_eq!(state.key_prefix(), "app:");
        assert_eq!(state.redis.key("t:x"), "app:t:x");
    }

    #[test]
    fn an_unreachable_redis_is_a_503_in_bounded_time() {
        // Port 1 on loopback refuses at once.
        let state =
            SharedState::open("redis://127.0.0.1:1", SharedStateOptions::default()).unwrap();
        let started = std::time::Instant::now();
        let error = state
            .redis
            .run(|conn| redis::cmd("PING").query::<()>(conn))
            .unwrap_err();
        assert_eq!(error.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(state.redis.down.load(Ordering::Relaxed));
    }
}
