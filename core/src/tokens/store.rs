//! Token storage backends and the scoped accessor on top of them (BEHAVIOUR.md: Tokens).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// Expiration a token gets when it is created when none is asked for: one hour.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(3600);

/// A backend keeping token maps and their expiry times, shared by all handler threads.
///
/// Each method is atomic on its own; `now` is the caller's monotonic clock. A token is
/// alive while its expiry is later than `now`; `None` never expires.
pub trait TokenStore: Send + Sync {
    /// Removes every token that is no longer alive at `now`.
    fn flush_expired(&self, now: Instant);

    /// Time `token` has left, without changing it.
    fn ttl(&self, token: &str, now: Instant) -> Ttl;

    /// Sets the expiry of `token`, creating it with an empty map if it is absent or no
    /// longer alive, and returns a copy of its map.
    fn add(&self, token: &str, expiry: Option<Instant>, now: Instant) -> Map<String, Value>;

    /// Replaces the map of `token`, keeping its expiry; does nothing if the token was
    /// deleted or flushed in the meantime.
    fn put(&self, token: &str, map: Map<String, Value>);

    /// Removes `token` and its map.
    fn delete(&self, token: &str);

    /// Tokens alive at `now`, soonest-expiring first and never-expiring last.
    fn tokens(&self, now: Instant) -> Vec<String>;
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

    /// Runs `f` on the map of `token`, creating the token if needed.
    ///
    /// Expired tokens are flushed first. The expiry is reset from `now` on every access
    /// (sliding expiration); an expiry past the range of `Instant` means never. Unless
    /// `readonly`, the map is stored back when `f` returns, and also when it panics, like
    /// the original writes back when the block raised. Concurrent writers of one token
    /// each work on their own copy: the last write-back wins.
    pub fn with_token<R>(
        &self,
        token: &str,
        expire: Expire,
        readonly: bool,
        now: Instant,
        f: impl FnOnce(&mut Map<String, Value>) -> R,
    ) -> R {
        self.store.flush_expired(now);
        let lifetime = match expire {
            Expire::Default => Some(self.default_expiration),
            Expire::Never => None,
            Expire::After(after) => Some(after),
            Expire::Now => Some(Duration::ZERO),
        };
        let expiry = match lifetime {
            Some(after) if after.is_zero() => {
                self.store.delete(token);
                return f(&mut Map::new());
            }
            Some(after) => now.checked_add(after),
            None => None,
        };
        let mut map = self.store.add(token, expiry, now);
        if readonly {
            return f(&mut map);
        }
        let mut write_back = WriteBack {
            store: &*self.store,
            token,
            map,
        };
        f(&mut write_back.map)
    }

    /// Live tokens at `now`, soonest-expiring first and never-expiring last; flushes
    /// expired ones.
    pub fn tokens(&self, now: Instant) -> Vec<String> {
        self.store.flush_expired(now);
        self.store.tokens(now)
    }

    /// Time `token` has left at `now`, without refreshing it.
    pub fn ttl(&self, token: &str, now: Instant) -> Ttl {
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

/// Stores the map back when dropped, so a panicking accessor still writes back.
struct WriteBack<'a> {
    store: &'a dyn TokenStore,
    token: &'a str,
    map: Map<String, Value>,
}

impl Drop for WriteBack<'_> {
    fn drop(&mut self) {
        self.store.put(self.token, std::mem::take(&mut self.map));
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

/// The in-process [`TokenStore`]: a map behind a mutex.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    expiry: Option<Instant>,
    map: Map<String, Value>,
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

    /// The entries; a panic elsewhere while holding the lock cannot leave them half
    /// updated (every change is a single map operation), so poisoning is ignored.
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TokenStore for MemoryTokenStore {
    fn flush_expired(&self, now: Instant) {
        self.entries().retain(|_, entry| entry.is_alive(now));
    }

    fn ttl(&self, token: &str, now: Instant) -> Ttl {
        match self.entries().get(token) {
            Some(entry) if entry.is_alive(now) => match entry.expiry {
                Some(expiry) => Ttl::Expires(expiry.saturating_duration_since(now)),
                None => Ttl::Never,
            },
            _ => Ttl::Unknown,
        }
    }

    fn add(&self, token: &str, expiry: Option<Instant>, now: Instant) -> Map<String, Value> {
        let mut entries = self.entries();
        let entry = entries.entry(token.to_owned()).or_insert_with(|| Entry {
            expiry,
            map: Map::new(),
        });
        if !entry.is_alive(now) {
            entry.map = Map::new();
        }
        entry.expiry = expiry;
        entry.map.clone()
    }

    fn put(&self, token: &str, map: Map<String, Value>) {
        if let Some(entry) = self.entries().get_mut(token) {
            entry.map = map;
        }
    }

    fn delete(&self, token: &str) {
        self.entries().remove(token);
    }

    fn tokens(&self, now: Instant) -> Vec<String> {
        let entries = self.entries();
        let mut live: Vec<(Option<Instant>, &String)> = entries
            .iter()
            .filter(|(_, entry)| entry.is_alive(now))
            .map(|(token, entry)| (entry.expiry, token))
            .collect();
        live.sort_by(|(a_expiry, a_token), (b_expiry, b_token)| {
            (a_expiry.is_none(), a_expiry, a_token).cmp(&(b_expiry.is_none(), b_expiry, b_token))
        });
        live.into_iter().map(|(_, token)| token.clone()).collect()
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
        tokens.with_token(token, expire, true, now, |map| map.clone())
    }

    /// The original's token test, on a fake clock.
    #[test]
    fn reference_token_test() {
        let tokens = Tokens::new();
        let base = Instant::now();
        tokens.with_token("a", Expire::After(ms(100)), false, base, |map| {
            map.insert("foo".into(), json!("bar"));
        });
        let read = get(&tokens, "a", Expire::After(ms(100)), base);
        assert_eq!(read.get("foo"), Some(&json!("bar")));

        // Expire 0 never keeps data.
        tokens.with_token("b", Expire::After(Duration::ZERO), false, base, |map| {
            assert!(map.is_empty());
            map.insert("x".into(), json!(1));
        });
        assert!(get(&tokens, "b", Expire::After(Duration::ZERO), base).is_empty());
        assert_eq!(tokens.ttl("b", base), Ttl::Unknown);

        // After 0.2 s the first token is gone.
        let later = base + ms(200);
        assert!(get(&tokens, "a", Expire::After(ms(100)), later).is_empty());

        // A never-expiring token survives ...
        tokens.with_token("c", Expire::Never, false, later, |map| {
            map.insert("foo".into(), json!("baz"));
        });
        let much_later = later + Duration::from_secs(1_000_000);
        assert_eq!(tokens.ttl("c", much_later), Ttl::Never);
        // ... until re-read with an expiry, which turns it into an expiring token.
        let read = get(&tokens, "c", Expire::After(ms(100)), much_later);
        assert_eq!(read.get("foo"), Some(&json!("baz")));
        assert_eq!(tokens.ttl("c", much_later), Ttl::Expires(ms(100)));
        let gone = much_later + ms(200);
        assert!(get(&tokens, "c", Expire::After(ms(100)), gone).is_empty());
    }

    #[test]
    fn sliding_expiration() {
        let tokens = Tokens::new();
        let base = Instant::now();
        tokens.with_token("t", Expire::After(ms(100)), false, base, |map| {
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
        assert_eq!(tokens.ttl("t", base + ms(450)), Ttl::Expires(ms(50)));
        assert_eq!(tokens.ttl("t", base + ms(500)), Ttl::Unknown);
        assert!(tokens.tokens(base + ms(500)).is_empty());
    }

    #[test]
    fn alive_only_while_expiry_is_later_than_now() {
        let tokens = Tokens::new();
        let base = Instant::now();
        tokens.with_token("t", Expire::After(ms(100)), false, base, |_| ());
        assert_eq!(tokens.ttl("t", base + ms(99)), Ttl::Expires(ms(1)));
        assert_eq!(tokens.ttl("t", base + ms(100)), Ttl::Unknown);
        assert_eq!(tokens.tokens(base + ms(100)), Vec::<String>::new());
    }

    #[test]
    fn default_expiration() {
        let mut tokens = Tokens::new();
        assert_eq!(tokens.default_expiration(), Duration::from_secs(3600));
        let base = Instant::now();
        tokens.with_token("t", Expire::Default, false, base, |_| ());
        assert_eq!(
            tokens.ttl("t", base),
            Ttl::Expires(Duration::from_secs(3600))
        );
        tokens.set_default_expiration(ms(10));
        tokens.with_token("t", Expire::Default, false, base, |_| ());
        assert_eq!(tokens.ttl("t", base), Ttl::Expires(ms(10)));
        tokens.set_default_expiration(Duration::ZERO);
        tokens.with_token("t", Expire::Default, false, base, |_| ());
        assert_eq!(tokens.ttl("t", base), Ttl::Unknown);
    }

    #[test]
    fn expire_now_deletes_and_writes_nothing() {
        let tokens = Tokens::new();
        let base = Instant::now();
        tokens.with_token("t", Expire::Never, false, base, |map| {
            map.insert("keep".into(), json!(true));
        });
        let seen = tokens.with_token("t", Expire::Now, false, base, |map| {
            let seen = map.clone();
            map.insert("x".into(), json!(1));
            seen
        });
        assert!(seen.is_empty());
        assert_eq!(tokens.ttl("t", base), Ttl::Unknown);
        assert!(tokens.tokens(base).is_empty());
    }

    #[test]
    fn readonly_is_not_written_back_but_refreshes_expiry() {
        let tokens = Tokens::new();
        let base = Instant::now();
        tokens.with_token("t", Expire::After(ms(100)), false, base, |map| {
            map.insert("a".into(), json!(1));
        });
        tokens.with_token("t", Expire::After(ms(500)), true, base + ms(50), |map| {
            map.insert("a".into(), json!(2));
            map.insert("b".into(), json!(3));
        });
        assert_eq!(tokens.ttl("t", base + ms(50)), Ttl::Expires(ms(500)));
        let map = get(&tokens, "t", Expire::Never, base + ms(60));
        assert_eq!(Value::Object(map), json!({"a": 1}));
    }

    #[test]
    fn unknown_token_is_created_empty() {
        let tokens = Tokens::new();
        let base = Instant::now();
        let len = tokens.with_token("new", Expire::Default, true, base, |map| map.len());
        assert_eq!(len, 0);
        assert_eq!(tokens.tokens(base), ["new"]);
    }

    #[test]
    fn written_back_even_when_the_accessor_panics() {
        let tokens = Tokens::new();
        let base = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokens.with_token("t", Expire::Never, false, base, |map| {
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
        tokens.with_token("t", Expire::Never, false, base, |map| {
            tokens.with_token("t", Expire::Now, false, base, |_| ());
            map.insert("a".into(), json!(1));
        });
        assert_eq!(tokens.ttl("t", base), Ttl::Unknown);
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
            tokens.with_token(token, expire, false, base, |_| ());
        }
        assert_eq!(
            tokens.tokens(base + ms(1)),
            ["soon", "mid", "late", "never-a", "never-b"]
        );
        assert_eq!(tokens.ttl("gone", base + ms(1)), Ttl::Unknown);
    }

    #[test]
    fn expiry_beyond_instant_range_never_expires() {
        let tokens = Tokens::new();
        let base = Instant::now();
        tokens.with_token("t", Expire::After(Duration::MAX), false, base, |_| ());
        assert_eq!(tokens.ttl("t", base), Ttl::Never);
    }

    #[test]
    fn expired_but_unflushed_entry_starts_empty() {
        let store = MemoryTokenStore::new();
        let base = Instant::now();
        store.add("t", Some(base + ms(10)), base);
        store.put("t", Map::from_iter([("a".to_owned(), json!(1))]));
        assert_eq!(store.add("t", Some(base + ms(30)), base + ms(5)).len(), 1);
        assert!(store.add("t", None, base + ms(40)).is_empty());
    }

    #[test]
    fn hostile_token_names_are_plain_keys() {
        let tokens = Tokens::new();
        let base = Instant::now();
        for token in ["", "\u{0}", "../../etc", &"x".repeat(10_000)] {
            tokens.with_token(token, Expire::Never, false, base, |map| {
                map.insert("k".into(), json!(token));
            });
            let map = get(&tokens, token, Expire::Never, base);
            assert_eq!(map.get("k"), Some(&json!(token)));
        }
        assert_eq!(tokens.tokens(base).len(), 4);
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
