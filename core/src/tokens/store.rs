//! Token storage backends and the scoped accessor on top of them (BEHAVIOUR.md: Tokens).

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::store::StoreError;

/// Expiration a token gets when it is created when none is asked for: one hour.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(3600);

/// How many times [`Tokens::with_token`] runs its accessor when other writers keep
/// changing the token in between; past it the call fails with [`StoreError::Contention`].
pub const UPDATE_ATTEMPTS: u32 = 256;

/// A backend keeping token maps and their expiry, shared by every handler thread (and,
/// for a remote store, by every server instance).
///
/// Writes are optimistic: [`load`](Self::load) hands out a version, and
/// [`commit`](Self::commit) stores a new map only if the token still has that version, so
/// a read-modify-write never loses a concurrent one. `now` is the caller's monotonic
/// clock; a remote store may use its own clock instead.
pub trait TokenStore: Send + Sync {
    /// Returns the map of `token` and its version, creating the token empty if it is
    /// absent or expired; its expiry restarts: `lifetime` from now, `None` never.
    fn load(
        &self,
        token: &str,
        lifetime: Option<Duration>,
        now: Instant,
    ) -> Result<Snapshot, StoreError>;

    /// Stores `map` as the map of `token` if its version is still `version`.
    fn commit(
        &self,
        token: &str,
        version: u64,
        map: &Map<String, Value>,
    ) -> Result<Commit, StoreError>;

    /// Removes `token` and its map.
    fn delete(&self, token: &str) -> Result<(), StoreError>;

    /// The map of `token` if it is alive at `now`, without creating or refreshing it.
    fn peek(&self, token: &str, now: Instant) -> Result<Option<Map<String, Value>>, StoreError>;

    /// Time `token` has left at `now`, without changing it.
    fn ttl(&self, token: &str, now: Instant) -> Result<Ttl, StoreError>;

    /// Tokens alive at `now`, soonest-expiring first and never-expiring last.
    fn tokens(&self, now: Instant) -> Result<Vec<String>, StoreError>;

    /// Whether calls are network round trips, which must not run on an event loop.
    fn is_remote(&self) -> bool {
        false
    }
}

/// A token's map as [`TokenStore::load`] found it, with the version to commit against.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The token's map.
    pub map: Map<String, Value>,
    /// Changes with every write of the token, and when it is re-created.
    pub version: u64,
}

/// What [`TokenStore::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The map was stored.
    Written,
    /// Another write came first: load again and retry.
    Conflict,
    /// The token was deleted meanwhile; nothing was stored (a write never resurrects it).
    Gone,
}

/// Time left of a token, as answered by [`Tokens::ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The token is alive for this long.
    Expires(Duration),
    /// The token never expires.
    Never,
    /// No such token, or it has expired (the original answers `0`).
    Unknown,
}

/// How long a token lives after an access through [`Tokens::with_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// The default expiration of [`Tokens`] (one hour unless changed).
    Default,
    /// The token never expires.
    Never,
    /// The token expires this long after the access; zero acts as [`Expire::Now`].
    After(Duration),
    /// The token is deleted; the access sees a fresh empty map that is not kept.
    Now,
}

/// Server-side session objects: a JSON map per token with sliding expiration.
pub struct Tokens {
    store: Box<dyn TokenStore>,
    default_expiration: Duration,
}

impl Tokens {
    /// Tokens kept in memory, with the default expiration of one hour.
    pub fn new() -> Self {
        Self::with_store(Box::<MemoryTokenStore>::default())
    }

    /// Tokens kept in `store`, with the default expiration of one hour.
    pub fn with_store(store: Box<dyn TokenStore>) -> Self {
        Self {
            store,
            default_expiration: DEFAULT_EXPIRATION,
        }
    }

    /// The expiration used for [`Expire::Default`].
    pub fn default_expiration(&self) -> Duration {
        self.default_expiration
    }

    /// Changes the expiration used for [`Expire::Default`]; zero deletes on access.
    pub fn set_default_expiration(&mut self, expiration: Duration) {
        self.default_expiration = expiration;
    }

    /// Whether the store makes network round trips.
    pub fn is_remote(&self) -> bool {
        self.store.is_remote()
    }

    /// Runs `f` on the map of `token`, creating the token if needed.
    ///
    /// The expiry restarts at every access (sliding expiration). Unless `readonly`, the
    /// map `f` leaves is stored back atomically: if another writer changed the token
    /// meanwhile, `f` runs again on the fresh map (so it may run more than once, up to
    /// [`UPDATE_ATTEMPTS`] times, and should have no side effects besides the map). A
    /// panicking `f` still writes back once, like the original writes back when the
    /// block raised.
    pub fn with_token<R>(
        &self,
        token: &str,
        expire: Expire,
        readonly: bool,
        now: Instant,
        mut f: impl FnMut(&mut Map<String, Value>) -> R,
    ) -> Result<R, StoreError> {
        let lifetime = match expire {
            Expire::Default => Some(self.default_expiration),
            Expire::Never => None,
            Expire::After(after) => Some(after),
            Expire::Now => Some(Duration::ZERO),
        };
        if lifetime.is_some_and(|after| after.is_zero()) {
            self.store.delete(token)?;
            return Ok(f(&mut Map::new()));
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let Snapshot { mut map, version } = self.store.load(token, lifetime, now)?;
            if readonly {
                return Ok(f(&mut map));
            }
            let run = catch_unwind(AssertUnwindSafe(|| f(&mut map)));
            let commit = self.store.commit(token, version, &map);
            let result = match run {
                Ok(result) => result,
                Err(panic) => resume_unwind(panic),
            };
            match commit? {
                Commit::Written | Commit::Gone => return Ok(result),
                Commit::Conflict => {}
            }
        }
        Err(StoreError::Contention)
    }

    /// The map of `token` if it is alive at `now`; neither creates nor refreshes it.
    pub fn peek(
        &self,
        token: &str,
        now: Instant,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        self.store.peek(token, now)
    }

    /// Live tokens at `now`, soonest-expiring first and never-expiring last.
    pub fn tokens(&self, now: Instant) -> Result<Vec<String>, StoreError> {
        self.store.tokens(now)
    }

    /// Time `token` has left at `now`, without refreshing it.
    pub fn ttl(&self, token: &str, now: Instant) -> Result<Ttl, StoreError> {
        self.store.ttl(token, now)
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("default_expiration", &self.default_expiration)
            .finish_non_exhaustive()
    }
}

/// A fresh random token: 32 lower-case hex digits of a version 4 UUID.
///
/// The core has no random source: `random` must come from a CSPRNG; the version and
/// variant bits are set here.
pub fn create_token(random: u128) -> String {
    const VERSION: u128 = 0xf << 76;
    const VARIANT: u128 = 0x3 << 62;
    let uuid = (random & !VERSION & !VARIANT) | (0x4 << 76) | (0x2 << 62);
    format!("{uuid:032x}")
}

/// The in-process [`TokenStore`]: a map behind a mutex, versions from one counter so a
/// re-created token never reuses an old version.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    entries: HashMap<String, Entry>,
    last_version: u64,
}

#[derive(Debug)]
struct Entry {
    expiry: Option<Instant>,
    map: Map<String, Value>,
    version: u64,
}

impl Entry {
    fn is_alive(&self, now: Instant) -> bool {
        self.expiry.is_none_or(|expiry| expiry > now)
    }
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state; a panic elsewhere while holding the lock cannot leave it half updated
    /// (every change is a single map operation), so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TokenStore for MemoryTokenStore {
    fn load(
        &self,
        token: &str,
        lifetime: Option<Duration>,
        now: Instant,
    ) -> Result<Snapshot, StoreError> {
        let mut state = self.state();
        let MemoryState {
            entries,
            last_version,
        } = &mut *state;
        entries.retain(|_, entry| entry.is_alive(now));
        // An expiry past the range of `Instant` means never.
        let expiry = lifetime.and_then(|after| now.checked_add(after));
        let entry = entries.entry(token.to_owned()).or_insert_with(|| {
            *last_version += 1;
            Entry {
                expiry,
                map: Map::new(),
                version: *last_version,
            }
        });
        entry.expiry = expiry;
        Ok(Snapshot {
            map: entry.map.clone(),
            version: entry.version,
        })
    }

    fn commit(
        &self,
        token: &str,
        version: u64,
        map: &Map<String, Value>,
    ) -> Result<Commit, StoreError> {
        let mut state = self.state();
        let next = state.last_version + 1;
        let Some(entry) = state.entries.get_mut(token) else {
            return Ok(Commit::Gone);
        };
        if entry.version != version {
            return Ok(Commit::Conflict);
        }
        entry.map = map.clone();
        entry.version = next;
        state.last_version = next;
        Ok(Commit::Written)
    }

    fn delete(&self, token: &str) -> Result<(), StoreError> {
        self.state().entries.remove(token);
        Ok(())
    }

    fn peek(&self, token: &str, now: Instant) -> Result<Option<Map<String, Value>>, StoreError> {
        Ok(self
            .state()
            .entries
            .get(token)
            .filter(|entry| entry.is_alive(now))
            .map(|entry| entry.map.clone()))
    }

    fn ttl(&self, token: &str, now: Instant) -> Result<Ttl, StoreError> {
        Ok(match self.state().entries.get(token) {
            Some(entry) if entry.is_alive(now) => match entry.expiry {
                Some(expiry) => Ttl::Expires(expiry.saturating_duration_since(now)),
                None => Ttl::Never,
            },
            _ => Ttl::Unknown,
        })
    }

    fn tokens(&self, now: Instant) -> Result<Vec<String>, StoreError> {
        let mut state = self.state();
        state.entries.retain(|_, entry| entry.is_alive(now));
        let mut live: Vec<(Option<Instant>, &String)> = state
            .entries
            .iter()
            .map(|(token, entry)| (entry.expiry, token))
            .collect();
        live.sort_by(|(a_expiry, a_token), (b_expiry, b_token)| {
            (a_expiry.is_none(), a_expiry, a_token).cmp(&(b_expiry.is_none(), b_expiry, b_token))
        });
        Ok(live.into_iter().map(|(_, token)| token.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn get(tokens: &Tokens, token: &str, expire: Expire, now: Instant) -> Map<String, Value> {
        with(tokens, token, expire, true, now, |map| map.clone())
    }

    fn with<R>(
        tokens: &Tokens,
        token: &str,
        expire: Expire,
        readonly: bool,
        now: Instant,
        f: impl FnMut(&mut Map<String, Value>) -> R,
    ) -> R {
        tokens.with_token(token, expire, readonly, now, f).unwrap()
    }

    fn ttl(tokens: &Tokens, token: &str, now: Instant) -> Ttl {
        tokens.ttl(token, now).unwrap()
    }

    fn list(tokens: &Tokens, now: Instant) -> Vec<String> {
        tokens.tokens(now).unwrap()
    }

    /// The original's token test, on a fake clock.
    #[test]
    fn reference_token_test() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(&tokens, "a", Expire::After(ms(100)), false, base, |map| {
            map.insert("foo".into(), json!("bar"));
        });
        let read = get(&tokens, "a", Expire::After(ms(100)), base);
        assert_eq!(read.get("foo"), Some(&json!("bar")));

        // Expire 0 never keeps data.
        with(
            &tokens,
            "b",
            Expire::After(Duration::ZERO),
            false,
            base,
            |map| {
                assert!(map.is_empty());
                map.insert("x".into(), json!(1));
            },
        );
        assert!(get(&tokens, "b", Expire::After(Duration::ZERO), base).is_empty());
        assert_eq!(ttl(&tokens, "b", base), Ttl::Unknown);

        // After 0.2 s the first token is gone.
        let later = base + ms(200);
        assert!(get(&tokens, "a", Expire::After(ms(100)), later).is_empty());

        // A never-expiring token survives ...
        with(&tokens, "c", Expire::Never, false, later, |map| {
            map.insert("foo".into(), json!("baz"));
        });
        let much_later = later + Duration::from_secs(1_000_000);
        assert_eq!(ttl(&tokens, "c", much_later), Ttl::Never);
        // ... until re-read with an expiry, which turns it into an expiring token.
        let read = get(&tokens, "c", Expire::After(ms(100)), much_later);
        assert_eq!(read.get("foo"), Some(&json!("baz")));
        assert_eq!(ttl(&tokens, "c", much_later), Ttl::Expires(ms(100)));
        let gone = much_later + ms(200);
        assert!(get(&tokens, "c", Expire::After(ms(100)), gone).is_empty());
    }

    #[test]
    fn sliding_expiration() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(&tokens, "t", Expire::After(ms(100)), false, base, |map| {
            map.insert("n".into(), json!(1));
        });
        // Each access within 100 ms pushes the expiry further.
        for step in 1..=5 {
            let now = base + ms(80 * step);
            assert_eq!(
                get(&tokens, "t", Expire::After(ms(100)), now).get("n"),
                Some(&json!(1))
            );
        }
        assert_eq!(ttl(&tokens, "t", base + ms(450)), Ttl::Expires(ms(50)));
        assert_eq!(ttl(&tokens, "t", base + ms(500)), Ttl::Unknown);
        assert!(list(&tokens, base + ms(500)).is_empty());
    }

    #[test]
    fn alive_only_while_expiry_is_later_than_now() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(&tokens, "t", Expire::After(ms(100)), false, base, |_| ());
        assert_eq!(ttl(&tokens, "t", base + ms(99)), Ttl::Expires(ms(1)));
        assert_eq!(ttl(&tokens, "t", base + ms(100)), Ttl::Unknown);
        assert_eq!(list(&tokens, base + ms(100)), Vec::<String>::new());
    }

    #[test]
    fn default_expiration() {
        let mut tokens = Tokens::new();
        assert_eq!(tokens.default_expiration(), Duration::from_secs(3600));
        let base = Instant::now();
        with(&tokens, "t", Expire::Default, false, base, |_| ());
        assert_eq!(
            ttl(&tokens, "t", base),
            Ttl::Expires(Duration::from_secs(3600))
        );
        tokens.set_default_expiration(ms(10));
        with(&tokens, "t", Expire::Default, false, base, |_| ());
        assert_eq!(ttl(&tokens, "t", base), Ttl::Expires(ms(10)));
        tokens.set_default_expiration(Duration::ZERO);
        with(&tokens, "t", Expire::Default, false, base, |_| ());
        assert_eq!(ttl(&tokens, "t", base), Ttl::Unknown);
    }

    #[test]
    fn expire_now_deletes_and_writes_nothing() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(&tokens, "t", Expire::Never, false, base, |map| {
            map.insert("keep".into(), json!(true));
        });
        let seen = with(&tokens, "t", Expire::Now, false, base, |map| {
            let seen = map.clone();
            map.insert("x".into(), json!(1));
            seen
        });
        assert!(seen.is_empty());
        assert_eq!(ttl(&tokens, "t", base), Ttl::Unknown);
        assert!(list(&tokens, base).is_empty());
    }

    #[test]
    fn readonly_is_not_written_back_but_refreshes_expiry() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(&tokens, "t", Expire::After(ms(100)), false, base, |map| {
            map.insert("a".into(), json!(1));
        });
        with(
            &tokens,
            "t",
            Expire::After(ms(500)),
            true,
            base + ms(50),
            |map| {
                map.insert("a".into(), json!(2));
                map.insert("b".into(), json!(3));
            },
        );
        assert_eq!(ttl(&tokens, "t", base + ms(50)), Ttl::Expires(ms(500)));
        let map = get(&tokens, "t", Expire::Never, base + ms(60));
        assert_eq!(Value::Object(map), json!({"a": 1}));
    }

    #[test]
    fn peek_neither_creates_nor_refreshes() {
        let tokens = Tokens::new();
        let base = Instant::now();
        assert_eq!(tokens.peek("t", base), Ok(None));
        assert!(list(&tokens, base).is_empty());
        with(&tokens, "t", Expire::After(ms(100)), false, base, |map| {
            map.insert("a".into(), json!(1));
        });
        let seen = tokens.peek("t", base + ms(50)).unwrap();
        assert_eq!(seen.map(Value::Object), Some(json!({"a": 1})));
        assert_eq!(ttl(&tokens, "t", base + ms(50)), Ttl::Expires(ms(50)));
        assert_eq!(tokens.peek("t", base + ms(100)), Ok(None));
    }

    #[test]
    fn unknown_token_is_created_empty() {
        let tokens = Tokens::new();
        let base = Instant::now();
        let len = with(&tokens, "new", Expire::Default, true, base, |map| map.len());
        assert_eq!(len, 0);
        assert_eq!(list(&tokens, base), ["new"]);
    }

    #[test]
    fn written_back_even_when_the_accessor_panics() {
        let tokens = Tokens::new();
        let base = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with(&tokens, "t", Expire::Never, false, base, |map| {
                map.insert("a".into(), json!(1));
                panic!("handler failed");
            })
        }));
        assert!(result.is_err());
        let map = get(&tokens, "t", Expire::Never, base);
        assert_eq!(Value::Object(map), json!({"a": 1}));
    }

    #[test]
    fn write_back_does_not_resurrect_a_deleted_token() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(&tokens, "t", Expire::Never, false, base, |map| {
            with(&tokens, "t", Expire::Now, false, base, |_| ());
            map.insert("a".into(), json!(1));
        });
        assert_eq!(ttl(&tokens, "t", base), Ttl::Unknown);
    }

    #[test]
    fn tokens_ordered_by_expiry() {
        let tokens = Tokens::new();
        let base = Instant::now();
        for (token, expire) in [
            ("never-b", Expire::Never),
            ("late", Expire::After(ms(300))),
            ("never-a", Expire::Never),
            ("soon", Expire::After(ms(100))),
            ("mid", Expire::After(ms(200))),
            ("gone", Expire::After(ms(1))),
        ] {
            with(&tokens, token, expire, false, base, |_| ());
        }
        assert_eq!(
            list(&tokens, base + ms(1)),
            ["soon", "mid", "late", "never-a", "never-b"]
        );
        assert_eq!(ttl(&tokens, "gone", base + ms(1)), Ttl::Unknown);
    }

    #[test]
    fn expiry_beyond_instant_range_never_expires() {
        let tokens = Tokens::new();
        let base = Instant::now();
        with(
            &tokens,
            "t",
            Expire::After(Duration::MAX),
            false,
            base,
            |_| (),
        );
        assert_eq!(ttl(&tokens, "t", base), Ttl::Never);
    }

    #[test]
    fn expired_but_unflushed_entry_starts_empty() {
        let store = MemoryTokenStore::new();
        let base = Instant::now();
        let first = store.load("t", Some(ms(10)), base).unwrap();
        let map = Map::from_iter([("a".to_owned(), json!(1))]);
        assert_eq!(store.commit("t", first.version, &map), Ok(Commit::Written));
        assert_eq!(
            store
                .load("t", Some(ms(30)), base + ms(5))
                .unwrap()
                .map
                .len(),
            1
        );
        assert!(store.load("t", None, base + ms(40)).unwrap().map.is_empty());
    }

    #[test]
    fn commit_checks_the_version() {
        let store = MemoryTokenStore::new();
        let base = Instant::now();
        let a = store.load("t", None, base).unwrap();
        let b = store.load("t", None, base).unwrap();
        assert_eq!(a.version, b.version);
        let map = Map::from_iter([("n".to_owned(), json!(1))]);
        assert_eq!(store.commit("t", a.version, &map), Ok(Commit::Written));
        assert_eq!(store.commit("t", b.version, &map), Ok(Commit::Conflict));
        store.delete("t").unwrap();
        assert_eq!(store.commit("t", a.version, &map), Ok(Commit::Gone));
        // A re-created token has a version no earlier snapshot holds.
        let c = store.load("t", None, base).unwrap();
        assert!(c.version > a.version);
    }

    #[test]
    fn a_conflicting_write_reruns_the_accessor() {
        let tokens = Tokens::new();
        let base = Instant::now();
        let mut runs = 0;
        with(&tokens, "t", Expire::Never, false, base, |map| {
            runs += 1;
            if runs == 1 {
                // Another writer slips in between the read and the write-back.
                with(&tokens, "t", Expire::Never, false, base, |inner| {
                    inner.insert("n".into(), json!(10));
                });
            }
            let n = map.get("n").and_then(Value::as_u64).unwrap_or(0);
            map.insert("n".into(), json!(n + 1));
        });
        assert_eq!(runs, 2);
        assert_eq!(get(&tokens, "t", Expire::Never, base)["n"], json!(11));
    }

    #[test]
    fn endless_conflicts_end_in_contention() {
        let tokens = Tokens::new();
        let base = Instant::now();
        let mut runs = 0;
        let result = tokens.with_token("t", Expire::Never, false, base, |_| {
            runs += 1;
            with(&tokens, "t", Expire::Never, false, base, |inner| {
                inner.insert("runs".into(), json!(runs));
            });
        });
        assert_eq!(result, Err(StoreError::Contention));
        assert_eq!(runs, UPDATE_ATTEMPTS);
    }

    #[test]
    fn concurrent_increments_are_all_kept() {
        let tokens = Tokens::new();
        let base = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        with(&tokens, "c", Expire::Never, false, base, |map| {
                            let n = map.get("n").and_then(Value::as_u64).unwrap_or(0);
                            map.insert("n".into(), json!(n + 1));
                        });
                    }
                });
            }
        });
        assert_eq!(get(&tokens, "c", Expire::Never, base)["n"], json!(800));
    }

    #[test]
    fn hostile_token_names_are_plain_keys() {
        let tokens = Tokens::new();
        let base = Instant::now();
        for token in ["", "\u{0}", "../../etc", &"x".repeat(10_000)] {
            with(&tokens, token, Expire::Never, false, base, |map| {
                map.insert("k".into(), json!(token));
            });
            let map = get(&tokens, token, Expire::Never, base);
            assert_eq!(map.get("k"), Some(&json!(token)));
        }
        assert_eq!(list(&tokens, base).len(), 4);
    }

    #[test]
    fn created_tokens_are_uuid4_hex() {
        assert_eq!(create_token(0), "00000000000040008000000000000000");
        assert_eq!(create_token(u128::MAX), "ffffffffffff4fffbfffffffffffffff");
        assert_eq!(
            create_token(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "0123456789ab4def8123456789abcdef"
        );
    }
}
