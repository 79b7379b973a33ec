//! The worker result cache in Redis, so that a result computed on one instance answers
//! the same job on every other.
//!
//! Policy: a byte budget over all sections, oldest entry out first (by time of writing,
//! not of reading: a read costs no write), and entries larger than a limit are not kept.
//! Layout under `<prefix>c:`: `e:<member>` the result text, where `<member>` is the JSON
//! array `[section, key]`; `order` a sorted set of members by write sequence; `size` a
//! hash of their sizes; `total` their sum; `s:<section>` the members of a section;
//! `sections` the section names. Each operation is one Lua script, so the budget holds
//! with any number of writers.

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::Redis;
use crate::cache::ResultCache;

/// Default byte budget of the Redis result cache: 64 MiB.
pub const CACHE_QUOTA: u64 = 64 << 20;

/// Default size of the largest result the Redis cache keeps: 4 MiB.
pub const CACHE_MAX_ENTRY: u64 = 4 << 20;

/// Writes an entry and evicts the oldest ones past the budget. KEYS: entry, order, size,
/// total, seq, section set, sections; ARGV: member, text, section, budget, key prefix of
/// entries and of section sets.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local entry, order, size, total, seq, secset, sections = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local member, text = ARGV[1], ARGV[2]
local old = redis.call('HGET', size, member)
if old then redis.call('DECRBY', total, old) end
redis.call('SET', entry, text)
redis.call('HSET', size, member, #text)
redis.call('INCRBY', total, #text)
redis.call('ZADD', order, redis.call('INCR', seq), member)
redis.call('SADD', secset, member)
redis.call('SADD', sections, ARGV[3])
while tonumber(redis.call('GET', total) or '0') > tonumber(ARGV[4]) do
  local oldest = redis.call('ZPOPMIN', order)
  if #oldest == 0 then break end
  local m = oldest[1]
  local bytes = redis.call('HGET', size, m)
  if bytes then redis.call('DECRBY', total, bytes) end
  redis.call('HDEL', size, m)
  redis.call('DEL', ARGV[5] .. m)
  local section = cjson.decode(m)[1]
  redis.call('SREM', ARGV[6] .. section, m)
end
return 0
",
    )
});

/// Removes every entry of a section. KEYS: order, size, total, section set, sections;
/// ARGV: entry key prefix, section.
static CLEAN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for _, m in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local bytes = redis.call('HGET', KEYS[2], m)
  if bytes then redis.call('DECRBY', KEYS[3], bytes) end
  redis.call('HDEL', KEYS[2], m)
  redis.call('ZREM', KEYS[1], m)
  redis.call('DEL', ARGV[1] .. m)
end
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[5], ARGV[2])
return 0
",
    )
});

/// The [`ResultCache`] in Redis of a [`SharedState`](super::SharedState): shared by
/// every instance, within a byte budget, oldest entry out first.
pub struct RedisCache {
    redis: Arc<Redis>,
    quota: u64,
    max_entry: u64,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("quota", &self.quota)
            .field("max_entry", &self.max_entry)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    pub(crate) fn new(redis: Arc<Redis>, quota: u64, max_entry: u64) -> Self {
        Self {
            redis,
            quota,
            max_entry,
        }
    }

    fn member(section: &str, key: &str) -> String {
        serde_json::json!([section, key]).to_string()
    }

    fn key(&self, name: &str) -> String {
        self.redis.key(&format!("c:{name}"))
    }
}

impl ResultCache for RedisCache {
    /// A miss when Redis cannot answer: the job computes the result.
    fn get(&self, section: &str, key: &str) -> Option<String> {
        let entry = self.key(&format!("e:{}", Self::member(section, key)));
        self.redis
            .run(|conn| redis::cmd("GET").arg(&entry).query(conn))
            .ok()
            .flatten()
    }

    fn put(&self, section: &str, key: &str, text: &str) {
        if text.len() as u64 > self.max_entry || text.len() as u64 > self.quota {
            return;
        }
        let member = Self::member(section, key);
        let keys = [
            self.key(&format!("e:{member}")),
            self.key("order"),
            self.key("size"),
            self.key("total"),
            self.key("seq"),
            self.key(&format!("s:{section}")),
            self.key("sections"),
        ];
        let _ = self.redis.run(|conn| {
            let mut invocation = PUT.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation
                .arg(&member)
                .arg(text)
                .arg(section)
                .arg(self.quota)
                .arg(self.key("e:"))
                .arg(self.key("s:"))
                .invoke::<()>(conn)
        });
    }

    fn clean_cache(&self, section: &str) {
        let _ = self.redis.run(|conn| {
            CLEAN
                .key(self.key("order"))
                .key(self.key("size"))
                .key(self.key("total"))
                .key(self.key(&format!("s:{section}")))
                .key(self.key("sections"))
                .arg(self.key("e:"))
                .arg(section)
                .invoke::<()>(conn)
        });
    }

    fn list_sections(&self) -> Vec<String> {
        let sections = self.key("sections");
        let mut names: Vec<String> = self
            .redis
            .run(|conn| redis::cmd("SMEMBERS").arg(&sections).query(conn))
            .unwrap_or_default();
        names.sort();
        names
    }
}
