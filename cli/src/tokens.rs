//! Server-side session objects (BEHAVIOUR.md: Tokens) for handlers: the core's [`Tokens`] with the
//! real clock and a random source, behind a cloneable handle.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use quick_server_core::store::StoreError;
use quick_server_core::tokens::DEFAULT_EXPIRATION;
use quick_server_core::tokens::{create_token as format_token, Expire, TokenStore, Tokens, Ttl};
use serde_json::{Map, Value};

/// A fresh random token: 32 lower-case hex digits of a version 4 UUID, from 16 bytes of
/// `/dev/urandom`.
pub fn create_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format_token(u128::from_le_bytes(bytes)))
}

/// The tokens of a server, shared by every handler thread; clones see the same tokens.
///
/// Every call reads the monotonic clock once, at its start. `Expire::Default` means the
/// handle's default expiration (one hour unless changed). Get the server's handle with
/// [`QuickServer::tokens`](crate::QuickServer::tokens).
///
/// ```
/// use std::time::Duration;
/// use quick_server::{Expire, TokenHandle, Ttl};
/// use serde_json::json;
///
/// let tokens = TokenHandle::default();
/// let token = tokens.create_token()?;
/// tokens.get_token_obj(&token, Expire::Default, false, |session| {
///     session.insert("user".into(), json!("ada"));
/// })?;
/// let user = tokens.get_token_obj(&token, Expire::Default, true, |session| session.get("user").cloned())?;
/// assert_eq!(user, Some(json!("ada")));
/// assert!(matches!(tokens.get_token_ttl(&token)?, Ttl::Expires(left) if left <= Duration::from_secs(3600)));
/// assert_eq!(tokens.get_tokens()?, [token]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TokenHandle {
    shared: Arc<Shared>,
}

struct Shared {
    /// Swapped whole by [`TokenHandle::set_store`]; callers clone the `Arc` out, so no
    /// lock is held while user code runs.
    tokens: RwLock<Arc<Tokens>>,
    default_expiration: Mutex<Duration>,
}

impl std::fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenHandle")
            .field("default_expiration", &self.default_token_expiration())
            .finish_non_exhaustive()
    }
}

impl Default for TokenHandle {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                tokens: RwLock::new(Arc::new(Tokens::new())),
                default_expiration: Mutex::new(DEFAULT_EXPIRATION),
            }),
        }
    }
}

impl TokenHandle {
    /// Keeps tokens in `store` from now on (the tokens held so far are dropped), for every
    /// clone of this handle.
    pub fn set_store(&self, store: Box<dyn TokenStore>) {
        let fresh = Arc::new(Tokens::with_store(store));
        *self
            .shared
            .tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// A fresh random token (see [`create_token`]).
    pub fn create_token(&self) -> io::Result<String> {
        create_token()
    }

    /// Runs `f` on the map of `token` (created empty if unknown) and returns its result.
    ///
    /// The expiry restarts now (sliding expiration); `Expire::Now` or a zero duration
    /// deletes the token and `f` sees a fresh map that is not kept. Unless `readonly`,
    /// the map is stored back atomically when `f` returns (or panics): when another
    /// request, here or on another instance, changed the token meanwhile, `f` runs again
    /// on the new map, so keep side effects out of it. Fails when the store cannot be
    /// reached ([`StoreError`] converts into an [`Abort`](crate::Abort) with status 503).
    pub fn get_token_obj<R>(
        &self,
        token: &str,
        expire: Expire,
        readonly: bool,
        f: impl FnMut(&mut Map<String, Value>) -> R,
    ) -> Result<R, StoreError> {
        let now = Instant::now();
        let expire = match expire {
            Expire::Default => Expire::After(self.default_token_expiration()),
            other => other,
        };
        self.tokens()?.with_token(token, expire, readonly, now, f)
    }

    /// The map of `token` if it is alive, without creating it or restarting its expiry.
    pub fn peek_token_obj(&self, token: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        self.tokens()?.peek(token, Instant::now())
    }

    /// The live tokens, soonest-expiring first and never-expiring last.
    pub fn get_tokens(&self) -> Result<Vec<String>, StoreError> {
        self.tokens()?.tokens(Instant::now())
    }

    /// Time `token` has left, without refreshing it.
    pub fn get_token_ttl(&self, token: &str) -> Result<Ttl, StoreError> {
        self.tokens()?.ttl(token, Instant::now())
    }

    /// Changes the expiration that `Expire::Default` means; zero deletes on access.
    pub fn set_default_token_expiration(&self, expiration: Duration) {
        *self
            .shared
            .default_expiration
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = expiration;
    }

    /// The expiration that `Expire::Default` means.
    pub fn default_token_expiration(&self) -> Duration {
        *self
            .shared
            .default_expiration
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current tokens; refused for a remote store on the event loop.
    fn tokens(&self) -> Result<Arc<Tokens>, StoreError> {
        let tokens = Arc::clone(
            &self
                .shared
                .tokens
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if tokens.is_remote() && ON_EVENT_LOOP.get() {
            return Err(StoreError::WouldBlock);
        }
        Ok(tokens)
    }
}

thread_local! {
    /// Set while a non-blocking handler runs, on the thread that drives connections.
    static ON_EVENT_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` marked as running on the event loop, where remote stores refuse calls.
pub(crate) fn on_event_loop<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_EVENT_LOOP.set(self.0);
        }
    }
    let _reset = Reset(ON_EVENT_LOOP.replace(true));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_server_core::tokens::MemoryTokenStore;
    use serde_json::json;
    use std::thread::sleep;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn created_tokens_are_random_uuid4_hex() {
        let a = create_token().unwrap();
        let b = TokenHandle::default().create_token().unwrap();
        assert_ne!(a, b);
        for token in [&a, &b] {
            assert_eq!(token.len(), 32);
            assert!(token
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            assert_eq!(token.as_bytes()[12], b'4', "{token}");
            assert!(
                matches!(token.as_bytes()[16], b'8' | b'9' | b'a' | b'b'),
                "{token}"
            );
        }
    }

    /// The reference token test, on the real clock.
    #[test]
    fn reference_token_test() {
        let tokens = TokenHandle::default();
        let short = Expire::After(ms(100));
        tokens
            .get_token_obj("a", short, false, |map| {
                map.insert("foo".into(), json!("bar"));
            })
            .unwrap();
        let read = tokens
            .get_token_obj("a", short, true, |map| map.get("foo").cloned())
            .unwrap();
        assert_eq!(read, Some(json!("bar")));
        tokens
            .get_token_obj("b", Expire::Now, false, |map| {
                map.insert("x".into(), json!(1));
            })
            .unwrap();
        assert!(tokens
            .get_token_obj("b", Expire::Now, true, |map| map.is_empty())
            .unwrap());
        tokens
            .get_token_obj("c", Expire::Never, false, |map| {
                map.insert("keep".into(), json!(true));
            })
            .unwrap();
        assert_eq!(tokens.get_token_ttl("c").unwrap(), Ttl::Never);
        assert!(
            matches!(tokens.get_token_ttl("a").unwrap(), Ttl::Expires(left) if left <= ms(100))
        );
        assert_eq!(tokens.get_tokens().unwrap(), vec!["a", "c"]);
        sleep(ms(200));
        assert_eq!(tokens.get_tokens().unwrap(), vec!["c"]);
        assert_eq!(tokens.get_token_ttl("a").unwrap(), Ttl::Unknown);
        assert!(tokens
            .get_token_obj("a", short, true, |map| map.is_empty())
            .unwrap());
        // Re-reading the never-expiring token with an expiry makes it expire.
        let kept = tokens
            .get_token_obj("c", short, true, |map| map.get("keep").cloned())
            .unwrap();
        assert_eq!(kept, Some(json!(true)));
        sleep(ms(200));
        assert!(!tokens.get_tokens().unwrap().contains(&"c".to_owned()));
    }

    #[test]
    fn default_expiration_is_shared_by_clones() {
        let tokens = TokenHandle::default();
        assert_eq!(tokens.default_token_expiration(), Duration::from_secs(3600));
        let clone = tokens.clone();
        clone.set_default_token_expiration(ms(50));
        assert_eq!(tokens.default_token_expiration(), ms(50));
        tokens
            .get_token_obj("t", Expire::Default, false, |map| {
                map.insert("v".into(), json!(1));
            })
            .unwrap();
        assert!(matches!(clone.get_token_ttl("t").unwrap(), Ttl::Expires(left) if left <= ms(50)));
        sleep(ms(100));
        assert!(clone.get_tokens().unwrap().is_empty());
        // A zero default deletes on access.
        tokens.set_default_token_expiration(Duration::ZERO);
        tokens
            .get_token_obj("z", Expire::Default, false, |map| {
                map.insert("v".into(), json!(1));
            })
            .unwrap();
        assert!(tokens.get_tokens().unwrap().is_empty());
    }

    #[test]
    fn a_new_store_replaces_the_tokens_for_every_clone() {
        let tokens = TokenHandle::default();
        let clone = tokens.clone();
        tokens
            .get_token_obj("t", Expire::Never, false, |_| ())
            .unwrap();
        assert_eq!(clone.get_tokens().unwrap(), vec!["t"]);
        clone.set_store(Box::<MemoryTokenStore>::default());
        assert!(tokens.get_tokens().unwrap().is_empty());
    }

    #[test]
    fn the_accessor_may_use_the_handle() {
        let tokens = TokenHandle::default();
        let inner = tokens.clone();
        let seen = tokens
            .get_token_obj("outer", Expire::Never, false, |_| {
                inner.set_default_token_expiration(ms(10));
                inner.get_tokens()
            })
            .unwrap();
        assert_eq!(seen.unwrap(), vec!["outer"]);
    }

    /// A memory store that says it is remote, as a Redis store does.
    struct Remote(MemoryTokenStore);

    impl TokenStore for Remote {
        fn load(
            &self,
            token: &str,
            lifetime: Option<Duration>,
            now: Instant,
        ) -> Result<quick_server_core::tokens::Snapshot, StoreError> {
            self.0.load(token, lifetime, now)
        }
        fn commit(
            &self,
            token: &str,
            version: u64,
            map: &Map<String, Value>,
        ) -> Result<quick_server_core::tokens::Commit, StoreError> {
            self.0.commit(token, version, map)
        }
        fn delete(&self, token: &str) -> Result<(), StoreError> {
            self.0.delete(token)
        }
        fn peek(
            &self,
            token: &str,
            now: Instant,
        ) -> Result<Option<Map<String, Value>>, StoreError> {
            self.0.peek(token, now)
        }
        fn ttl(&self, token: &str, now: Instant) -> Result<Ttl, StoreError> {
            self.0.ttl(token, now)
        }
        fn tokens(&self, now: Instant) -> Result<Vec<String>, StoreError> {
            self.0.tokens(now)
        }
        fn is_remote(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_remote_store_refuses_calls_from_the_event_loop() {
        let tokens = TokenHandle::default();
        on_event_loop(|| tokens.get_tokens()).unwrap();
        tokens.set_store(Box::new(Remote(MemoryTokenStore::new())));
        assert_eq!(
            on_event_loop(|| tokens.get_token_obj("t", Expire::Never, false, |_| ())),
            Err(StoreError::WouldBlock)
        );
        assert_eq!(
            on_event_loop(|| tokens.get_tokens()),
            Err(StoreError::WouldBlock)
        );
        tokens
            .get_token_obj("t", Expire::Never, false, |_| ())
            .unwrap();
        assert_eq!(tokens.get_tokens().unwrap(), vec!["t"]);
    }
}
