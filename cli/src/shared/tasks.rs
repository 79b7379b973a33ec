//! Worker tasks in Redis, so that `start` on one instance and `get`, `stop` or `cargo` on
//! any other behave as on one server.
//!
//! A job runs on the instance that received its `start`. Each task and each cargo chunk
//! is a hash `<prefix>w:<mask>:<key>` claimed with `HSETNX` (so keys are unique across the
//! cluster): field `s` holds the state (`running`, `cancelled`, `done`, `failed`,
//! `cargo`), `o` the owner instance, `r` the result, message or chunk, `c` a failure's
//! status. Every instance renews a lease key `<prefix>lease:<id>` while it lives; a
//! running task whose owner's lease is gone was lost (the instance crashed or
//! restarted), and `get` says so. The same thread that renews the lease polls the state
//! of the local running tasks every [`STOP_POLL`] and trips the cancel flag of those
//! stopped from anywhere (or taken over by another instance), and records the outcomes
//! of jobs that ended while Redis was unreachable. Finished results expire after
//! `RESULT_RETENTION` and chunks after `CARGO_TTL`, by Redis TTLs.
//!
//! On a route that re-runs lost tasks the hash also keeps the payload (`p`) and the
//! number of re-runs so far (`n`). The instance answering a `get` for a lost task then
//! claims it in the same script that found it lost (owner and lease compared and replaced
//! atomically, so exactly one instance wins) and runs it again, up to the route's maximum;
//! past it the task is lost as on other routes. Only the task's owner records an outcome,
//! so a stalled first owner that comes back cannot overwrite the re-run's.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use quick_server_core::store::StoreError;
use quick_server_core::worker::{
    cargo_pieces, CancelFlag, Finished, Polled, Reply, TaskKey, TaskOutcome, TaskStore, Token,
    WorkerError, WorkerFailure, CARGO_TTL, RESULT_RETENTION,
};
use redis::Script;
use serde_json::Value;

use super::Redis;

/// How often an instance checks whether its running tasks were stopped elsewhere; a
/// `stop` reaches the job within about this long.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// How long a stopped task's key stays taken when its job never reports (its instance
/// died); the owner deletes it as soon as the job ends.
const CANCELLED_TTL: Duration = Duration::from_secs(3600);

/// How many keys `start` tries past the seed before giving up.
const KEY_ATTEMPTS: u32 = 1000;

/// Claims a free key for a running task owned by ARGV[1], keeps its payload ARGV[3]
/// unless empty, and renews the owner's lease (ARGV[2] ms): 1 claimed, 0 taken.
static START: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HSETNX', KEYS[1], 's', 'running') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'o', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'p', ARGV[3]) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
",
    )
});

/// Stores the outcome of a running task owned by ARGV[5] (ARGV: state, text, status,
/// retention ms): 1 stored; a stopped task is removed instead (0), one owned by another
/// instance (re-run there) left alone (0).
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('HMGET', KEYS[1], 's', 'o')
if t[2] ~= ARGV[5] then return 0 end
local s = t[1]
if s == 'running' then
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'r', ARGV[2], 'c', ARGV[3])
  redis.call('HDEL', KEYS[1], 'p', 'n')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
if s == 'cancelled' then redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// The state of a task for `get` (ARGV: lease key prefix, this instance's id, its lease
/// ms, the route's maximum re-runs): `{}` unknown, `{'running'}`, `{'rerun', payload,
/// re-runs}` when this instance just claimed a lost task, `{'lost'}` (removed), or
/// `{state, result, status}` of a finished one, which stays until `TAKE` removes it.
static PEEK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('HMGET', KEYS[1], 's', 'o', 'r', 'c', 'p', 'n')
local s = t[1]
if s == 'running' then
  if t[2] == ARGV[2] or redis.call('EXISTS', ARGV[1] .. t[2]) == 1 then
    return {'running'}
  end
  local n = tonumber(t[6] or '0') or 0
  if t[5] and n < tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'o', ARGV[2], 'n', n + 1)
    redis.call('SET', ARGV[1] .. ARGV[2], '1', 'PX', ARGV[3])
    return {'rerun', t[5], tostring(n + 1)}
  end
  redis.call('DEL', KEYS[1])
  return {'lost'}
end
if s == 'done' or s == 'failed' then return {s, t[3] or '', t[4] or ''} end
return {}
",
    )
});

/// Removes a finished task once: 1 for the one caller that got it.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('HGET', KEYS[1], 's')
if s == 'done' or s == 'failed' then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// Stops a task: a running one becomes `cancelled` (ARGV[1]: its TTL in ms), a finished
/// one is removed.
static STOP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('HGET', KEYS[1], 's')
if s == 'running' then
  redis.call('HSET', KEYS[1], 's', 'cancelled')
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
elseif s == 'done' or s == 'failed' then
  redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Claims a free key for a cargo chunk (ARGV: text, TTL ms): 1 claimed, 0 taken.
static CHUNK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HSETNX', KEYS[1], 's', 'cargo') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// Removes and returns a chunk, or nil.
static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 's') ~= 'cargo' then return false end
local r = redis.call('HGET', KEYS[1], 'r')
redis.call('DEL', KEYS[1])
return r
",
    )
});

/// This process as a task owner: its id, its lease, the cancel flags of the tasks
/// running here, and the outcomes Redis could not take yet. Shared by the routes of one
/// [`SharedState`](super::SharedState).
pub(crate) struct Owner {
    id: String,
    lease: Duration,
    running: Mutex<HashMap<String, CancelFlag>>,
    unrecorded: Mutex<Vec<Outcome>>,
    heartbeat: OnceLock<()>,
}

/// How a job ended, for the `FINISH` script of task `key`.
struct Outcome {
    key: String,
    state: &'static str,
    text: String,
    status: String,
}

impl Outcome {
    /// Stores it if `owner` still owns the running task: true when stored.
    fn record(&self, redis: &Redis, owner: &str) -> Result<bool, StoreError> {
        let retention = RESULT_RETENTION.as_millis() as u64;
        let stored: u8 = redis.run(|conn| {
            FINISH
                .key(&self.key)
                .arg(self.state)
                .arg(&self.text)
                .arg(&self.status)
                .arg(retention)
                .arg(owner)
                .invoke(conn)
        })?;
        Ok(stored == 1)
    }
}

impl Owner {
    pub(crate) fn new(lease: Duration) -> Self {
        Self {
            id: random_id(),
            lease,
            running: Mutex::new(HashMap::new()),
            unrecorded: Mutex::new(Vec::new()),
            heartbeat: OnceLock::new(),
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, CancelFlag>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unrecorded(&self) -> MutexGuard<'_, Vec<Outcome>> {
        self.unrecorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lease_ms(&self) -> u128 {
        self.lease.as_millis().max(1)
    }

    /// Starts the thread that renews the lease and polls for stops, once per process.
    fn ensure_heartbeat(self: &Arc<Self>, redis: &Arc<Redis>) {
        self.heartbeat.get_or_init(|| {
            let owner = Arc::clone(self);
            let redis = Arc::clone(redis);
            let spawned = thread::Builder::new()
                .name("quick-server-lease".into())
                .spawn(move || owner.beat(&redis));
            if let Err(e) = spawned {
                crate::logging::msg(&format!("cannot start the lease thread: {e}"));
            }
        });
    }

    /// Renews the lease every quarter of it; polls the local running tasks and records
    /// the outcomes an outage kept out every [`STOP_POLL`]. Errors are logged by
    /// [`Redis::run`] and retried on the next beat.
    fn beat(&self, redis: &Redis) {
        let lease_key = redis.key(&format!("lease:{}", self.id));
        let renew_every = self.lease / 4;
        let mut renewed = Instant::now();
        loop {
            thread::sleep(STOP_POLL);
            if renewed.elapsed() >= renew_every {
                let renewal = redis.run(|conn| {
                    redis::cmd("SET")
                        .arg(&lease_key)
                        .arg(1)
                        .arg("PX")
                        .arg(self.lease_ms() as u64)
                        .query::<()>(conn)
                });
                if renewal.is_ok() {
                    renewed = Instant::now();
                }
            }
            self.record_unrecorded(redis);
            let keys: Vec<String> = self.running().keys().cloned().collect();
            if keys.is_empty() {
                continue;
            }
            // State and owner of each.
            let states = redis.run(|conn| {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HMGET").arg(key).arg("s").arg("o");
                }
                pipe.query::<Vec<(Option<String>, Option<String>)>>(conn)
            });
            let Ok(states) = states else { continue };
            let running = self.running();
            for (key, (state, owner)) in keys.iter().zip(states) {
                let ours = owner.as_deref() == Some(self.id.as_str());
                if state.as_deref() != Some("running") || !ours {
                    if let Some(flag) = running.get(key) {
                        flag.cancel();
                    }
                }
            }
        }
    }

    /// Tries the outcomes Redis could not take again, in order; keeps them while it is
    /// unreachable. A task stopped or taken over meanwhile drops its outcome.
    fn record_unrecorded(&self, redis: &Redis) {
        let waiting = std::mem::take(&mut *self.unrecorded());
        let mut left = Vec::new();
        for outcome in waiting {
            if let Err(StoreError::Unavailable(_)) = outcome.record(redis, &self.id) {
                left.push(outcome);
            }
        }
        // Outcomes queued while these were tried go after them.
        let mut unrecorded = self.unrecorded();
        left.append(&mut unrecorded);
        *unrecorded = left;
    }
}

/// 16 random bytes from `/dev/urandom` in hex, or the pid and time if it cannot be read.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    match File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
    }
}

/// The Redis [`TaskStore`] of one worker route.
pub(crate) struct RedisTasks {
    redis: Arc<Redis>,
    owner: Arc<Owner>,
    /// `<prefix>w:<mask>:`.
    base: String,
    /// `<prefix>lease:`.
    leases: String,
    /// How many times a task lost with its instance is run again; 0 when the route did
    /// not opt in.
    rerun_max: u32,
}

impl RedisTasks {
    pub(crate) fn new(redis: Arc<Redis>, owner: Arc<Owner>, mask: &str, rerun_max: u32) -> Self {
        Self {
            base: redis.key(&format!("w:{mask}:")),
            leases: redis.key("lease:"),
            redis,
            owner,
            rerun_max,
        }
    }

    fn key(&self, key: TaskKey) -> String {
        format!("{}{key}", self.base)
    }

    fn run<T>(
        &self,
        command: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, WorkerError> {
        self.redis.run(command).map_err(WorkerError::Store)
    }

    /// Stores the pieces as chunks from keys near `task`'s scattered key on; returns
    /// their keys in order.
    fn store_cargo(&self, task: TaskKey, pieces: &[&str]) -> Result<Vec<Value>, WorkerError> {
        let ttl = CARGO_TTL.as_millis() as u64;
        let mut seed = task.scattered();
        let mut keys = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let mut claimed = None;
            for _ in 0..KEY_ATTEMPTS {
                let key = self.key(seed);
                let won: u8 = self.run(|conn| CHUNK.key(&key).arg(*piece).arg(ttl).invoke(conn))?;
                if won == 1 {
                    claimed = Some(seed);
                    break;
                }
                seed = seed.next();
            }
            let key = claimed.ok_or(WorkerError::Store(StoreError::Contention))?;
            keys.push(Value::String(key.to_string()));
            seed = key.next();
        }
        Ok(keys)
    }

    /// `get` on `token`, claiming the task to run it here when its instance died and it
    /// ran fewer than `rerun_max` times again.
    fn peek(
        &self,
        token: &Token,
        max_chunk_size: usize,
        rerun_max: u32,
    ) -> Result<Polled, WorkerError> {
        let Some(key) = token.key() else {
            return Ok(Polled::Reply(Reply::unknown(token)));
        };
        let full = self.key(key);
        let state: Vec<String> = self.run(|conn| {
            PEEK.key(&full)
                .arg(&self.leases)
                .arg(&self.owner.id)
                .arg(self.owner.lease_ms() as u64)
                .arg(rerun_max)
                .invoke(conn)
        })?;
        let (state, text, status) = match state.as_slice() {
            [] => return Ok(Polled::Reply(Reply::unknown(token))),
            [s] if s == "running" => return Ok(Polled::Reply(Reply::running(token))),
            [s] if s == "lost" => return Err(WorkerError::Lost(key.to_string())),
            [s, payload, n] if s == "rerun" => return self.rerun(key, &full, payload, n),
            [s, r, c] => (s.as_str(), r, c),
            _ => {
                let what = format!("task {full} has an unknown state");
                return Err(WorkerError::Store(self.redis.bad_data(what)));
            }
        };
        let pieces = if state == "done" {
            cargo_pieces(text, max_chunk_size)?
        } else {
            None
        };
        let taken: u8 = self.run(|conn| TAKE.key(&full).invoke(conn))?;
        if taken != 1 {
            // Another request collected it first.
            return Ok(Polled::Reply(Reply::unknown(token)));
        }
        if state == "failed" {
            let status = match status.as_str() {
                "" => None,
                code => Some(code.parse().map_err(|_| {
                    WorkerError::Store(self.redis.bad_data(format!("task {full}: status {code:?}")))
                })?),
            };
            return Err(WorkerError::Job(WorkerFailure {
                status,
                message: text.clone(),
            }));
        }
        match pieces {
            None => Ok(Reply::finished(token, false, Value::String(text.clone()))),
            Some(pieces) => {
                let keys = self.store_cargo(key, &pieces)?;
                Ok(Reply::finished(token, true, Value::Array(keys)))
            }
        }
        .map(Polled::Reply)
    }

    /// Takes over task `key`, just claimed by this instance: its cancel flag joins the
    /// local running tasks (a `stop` anywhere trips it) and the job runs from `payload`.
    fn rerun(
        &self,
        key: TaskKey,
        full: &str,
        payload: &str,
        runs: &str,
    ) -> Result<Polled, WorkerError> {
        let payload = serde_json::from_str(payload).map_err(|e| {
            WorkerError::Store(self.redis.bad_data(format!("task {full}: payload: {e}")))
        })?;
        let cancel = CancelFlag::default();
        self.owner.running().insert(full.to_owned(), cancel.clone());
        self.owner.ensure_heartbeat(&self.redis);
        crate::logging::msg(&format!(
            "worker task {full} was lost with its instance: running it here again ({runs} of {})",
            self.rerun_max
        ));
        Ok(Polled::Rerun {
            key,
            payload,
            cancel,
        })
    }
}

impl TaskStore for RedisTasks {
    fn start(
        &self,
        seed: u32,
        payload: &Value,
        cancel: CancelFlag,
    ) -> Result<TaskKey, WorkerError> {
        let lease_key = format!("{}{}", self.leases, self.owner.id);
        let lease_ms = self.owner.lease_ms() as u64;
        let payload = if self.rerun_max > 0 {
            payload.to_string()
        } else {
            String::new()
        };
        let mut key = TaskKey::new(seed);
        for _ in 0..KEY_ATTEMPTS {
            let full = self.key(key);
            let won: u8 = self.run(|conn| {
                START
                    .key(&full)
                    .key(&lease_key)
                    .arg(&self.owner.id)
                    .arg(lease_ms)
                    .arg(&payload)
                    .invoke(conn)
            })?;
            if won == 1 {
                self.owner.running().insert(full, cancel);
                self.owner.ensure_heartbeat(&self.redis);
                return Ok(key);
            }
            key = key.next();
        }
        Err(WorkerError::Store(StoreError::Contention))
    }

    fn finish(
        &self,
        key: TaskKey,
        outcome: TaskOutcome,
        _now: Instant,
    ) -> Result<Finished, WorkerError> {
        let full = self.key(key);
        self.owner.running().remove(&full);
        let (state, text, status) = match outcome {
            TaskOutcome::Done(text) => ("done", text, String::new()),
            TaskOutcome::Failed(WorkerFailure { status, message }) => (
                "failed",
                message,
                status.map(|s| s.to_string()).unwrap_or_default(),
            ),
        };
        let outcome = Outcome {
            key: full,
            state,
            text,
            status,
        };
        match outcome.record(&self.redis, &self.owner.id) {
            Ok(true) => Ok(Finished::Stored),
            Ok(false) => Ok(Finished::Discarded),
            Err(StoreError::Unavailable(_)) => {
                // The task stays running in Redis, under this instance's live lease, until
                // the lease thread records the outcome: nothing lost, polls wait.
                self.owner.unrecorded().push(outcome);
                Ok(Finished::Stored)
            }
            Err(e) => Err(WorkerError::Store(e)),
        }
    }

    fn get(
        &self,
        token: &Token,
        max_chunk_size: usize,
        _now: Instant,
    ) -> Result<Reply, WorkerError> {
        match self.peek(token, max_chunk_size, 0)? {
            Polled::Reply(reply) => Ok(reply),
            // A maximum of 0 claims nothing.
            Polled::Rerun { key, .. } => Err(WorkerError::Lost(key.to_string())),
        }
    }

    fn poll(
        &self,
        token: &Token,
        max_chunk_size: usize,
        _now: Instant,
    ) -> Result<Polled, WorkerError> {
        self.peek(token, max_chunk_size, self.rerun_max)
    }

    fn stop(&self, token: &Token) -> Result<Reply, WorkerError> {
        if let Some(key) = token.key() {
            let full = self.key(key);
            let ttl = CANCELLED_TTL.as_millis() as u64;
            self.run(|conn| STOP.key(&full).arg(ttl).invoke::<()>(conn))?;
            if let Some(flag) = self.owner.running().get(&full) {
                flag.cancel();
            }
        }
        Ok(Reply::stopped(token))
    }

    fn cargo(&self, token: &Token) -> Result<Reply, WorkerError> {
        let Some(key) = token.key() else {
            return Err(WorkerError::UnknownCargo(token.text()));
        };
        let full = self.key(key);
        let chunk: Option<String> = self.run(|conn| FETCH.key(&full).invoke(conn))?;
        match chunk {
            Some(text) => Ok(Reply::finished(token, false, Value::String(text))),
            None => Err(WorkerError::UnknownCargo(token.text())),
        }
    }

    fn is_remote(&self) -> bool {
        true
    }
}
