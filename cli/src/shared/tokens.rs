//! Tokens in Redis: one hash per token (`v` version, `m` JSON map) expiring by Redis'
//! own clock (`PEXPIRE`), a sorted set of tokens by expiry for listing, and Lua scripts
//! so that a load and a compare-and-set commit are each atomic across instances.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use quick_server_core::store::StoreError;
use quick_server_core::tokens::{Commit, Snapshot, TokenStore, Ttl};
use redis::Script;
use serde_json::{Map, Value};

use super::Redis;

/// Creates the token if absent (with a fresh version), restarts its expiry, indexes it
/// and returns `[version, map]`. ARGV: lifetime in ms or `never`, the token.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key, index, counter = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'v', redis.call('INCR', counter), 'm', '{}')
end
if ARGV[1] == 'never' then
  redis.call('PERSIST', key)
  redis.call('ZADD', index, 'inf', ARGV[2])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('PEXPIRE', key, ARGV[1])
  redis.call('ZADD', index, now + tonumber(ARGV[1]), ARGV[2])
end
return redis.call('HMGET', key, 'v', 'm')
",
    )
});

/// Stores ARGV[2] as the map if the version is still ARGV[1]: 0 written, 1 conflict,
/// 2 gone. The expiry is kept.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return 2 end
if v ~= ARGV[1] then return 1 end
redis.call('HSET', KEYS[1], 'v', redis.call('INCR', KEYS[2]), 'm', ARGV[2])
return 0
",
    )
});

/// Drops expired members from the index and lists the rest, soonest first, `inf` last.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
",
    )
});

/// Lifetimes from this many milliseconds on are kept as "never" (Lua numbers are exact
/// up to 2^53, and Redis' expiry is a 64-bit millisecond time).
const NEVER_FROM_MS: u128 = 1 << 50;

/// The Redis [`TokenStore`].
pub(crate) struct RedisTokenStore {
    redis: Arc<Redis>,
    index: String,
    counter: String,
}

impl RedisTokenStore {
    pub(crate) fn new(redis: Arc<Redis>) -> Self {
        Self {
            index: redis.key("tokens"),
            counter: redis.key("tokens:version"),
            redis,
        }
    }

    fn key(&self, token: &str) -> String {
        self.redis.key(&format!("t:{token}"))
    }
}

impl TokenStore for RedisTokenStore {
    fn load(
        &self,
        token: &str,
        lifetime: Option<Duration>,
        _now: Instant,
    ) -> Result<Snapshot, StoreError> {
        let lifetime = match lifetime.map(|after| after.as_millis()) {
            Some(ms) if ms < NEVER_FROM_MS => ms.max(1).to_string(),
            _ => "never".to_owned(),
        };
        let key = self.key(token);
        let (version, map): (Option<u64>, Option<String>) = self.redis.run(|conn| {
            LOAD.key(&key)
                .key(&self.index)
                .key(&self.counter)
                .arg(&lifetime)
                .arg(token)
                .invoke(conn)
        })?;
        let (Some(version), Some(map)) = (version, map) else {
            return Err(self
                .redis
                .bad_data(format!("token {key} has no version or map")));
        };
        match serde_json::from_str(&map) {
            Ok(Value::Object(map)) => Ok(Snapshot { map, version }),
            _ => Err(self
                .redis
                .bad_data(format!("token {key} holds no JSON object"))),
        }
    }

    fn commit(
        &self,
        token: &str,
        version: u64,
        map: &Map<String, Value>,
    ) -> Result<Commit, StoreError> {
        let key = self.key(token);
        let text = serde_json::to_string(map).map_err(|e| StoreError::BadData(e.to_string()))?;
        let answer: u8 = self.redis.run(|conn| {
            COMMIT
                .key(&key)
                .key(&self.counter)
                .arg(version)
                .arg(&text)
                .invoke(conn)
        })?;
        Ok(match answer {
            0 => Commit::Written,
            1 => Commit::Conflict,
            _ => Commit::Gone,
        })
    }

    fn delete(&self, token: &str) -> Result<(), StoreError> {
        let key = self.key(token);
        self.redis.run(|conn| {
            redis::pipe()
                .atomic()
                .del(&key)
                .zrem(&self.index, token)
                .query::<()>(conn)
        })
    }

    fn peek(&self, token: &str, _now: Instant) -> Result<Option<Map<String, Value>>, StoreError> {
        let key = self.key(token);
        let map: Option<String> = self
            .redis
            .run(|conn| redis::cmd("HGET").arg(&key).arg("m").query(conn))?;
        match map.map(|map| serde_json::from_str(&map)) {
            None => Ok(None),
            Some(Ok(Value::Object(map))) => Ok(Some(map)),
            Some(_) => Err(self
                .redis
                .bad_data(format!("token {key} holds no JSON object"))),
        }
    }

    fn ttl(&self, token: &str, _now: Instant) -> Result<Ttl, StoreError> {
        let key = self.key(token);
        let ms: i64 = self
            .redis
            .run(|conn| redis::cmd("PTTL").arg(&key).query(conn))?;
        Ok(match ms {
            -1 => Ttl::Never,
            ms if ms > 0 => Ttl::Expires(Duration::from_millis(ms.unsigned_abs())),
            _ => Ttl::Unknown,
        })
    }

    fn tokens(&self, _now: Instant) -> Result<Vec<String>, StoreError> {
        self.redis.run(|conn| LIST.key(&self.index).invoke(conn))
    }

    fn is_remote(&self) -> bool {
        true
    }
}
