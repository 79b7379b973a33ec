//! Worker routes for the facade (BEHAVIOUR.md: Workers): typed job functions wrapped into the
//! core's [`WorkerFn`], the result cache around them, and the bundled browser client.

use std::io;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use quick_server_core::dynamic::{json_compact, json_dumps};
use quick_server_core::worker::{CancelFlag, WorkerFailure, WorkerFn};
use serde::Serialize;
use serde_json::Value;

use crate::cache::ResultCache;
use crate::reply::Abort;

/// The browser client for worker routes (`worker.js`, version 0.8.0), as served by
/// [`QuickServer::link_worker_js`](crate::QuickServer::link_worker_js).
pub const WORKER_JS: &[u8] = include_bytes!("../../core/assets/worker.js");

/// Content type of the served `worker.js`.
pub const WORKER_JS_CONTENT_TYPE: &str = "application/javascript; charset=utf-8";

/// The section results go to when a worker names none (the original's `cache_section`).
pub(crate) const DEFAULT_CACHE_SECTION: &str = "www";

/// Computes the cache key of a job from its payload; `None` (or a null key) runs the job
/// uncached. The key's compact JSON text is what the cache stores it under.
///
/// ```
/// use std::sync::Arc;
/// use quick_server::{Abort, CancelFlag, QuickCache, QuickServer};
/// use serde_json::Value;
///
/// fn by_query(payload: &Value) -> Option<Value> {
///     payload.get("query").cloned()
/// }
///
/// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
/// server.cache(Arc::new(QuickCache::in_memory(16 << 20)));
/// server.json_worker("/api/search", Some(by_query), |payload: Value, _: &CancelFlag| {
///     // Runs once per distinct `query`; later requests get the stored result.
///     Ok::<_, Abort>(payload.get("query").cloned())
/// });
/// ```
pub type CacheId = fn(&Value) -> Option<Value>;

impl From<Abort> for WorkerFailure {
    /// A job's `Abort` answers the collecting `get` with that error page.
    fn from(abort: Abort) -> Self {
        Self {
            status: Some(abort.status),
            message: abort.message,
        }
    }
}

/// The cache a server's workers share, installed with
/// [`QuickServer::cache`](crate::QuickServer::cache); looked up when a job runs, so the
/// order of installing it and registering workers does not matter.
#[derive(Clone, Default)]
pub(crate) struct CacheSlot(Arc<RwLock<Option<Arc<dyn ResultCache>>>>);

impl CacheSlot {
    pub(crate) fn set(&self, cache: Arc<dyn ResultCache>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(cache);
    }

    fn get(&self) -> Option<Arc<dyn ResultCache>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Wraps a typed job into the core's shape: look up the cache, run, JSON-encode the
/// result with the original's rules, store it unless the job was cancelled.
pub(crate) fn worker_fn<F, T, E>(
    job: F,
    cache: CacheSlot,
    section: String,
    cache_id: Option<CacheId>,
) -> WorkerFn
where
    F: Fn(Value, &CancelFlag) -> Result<T, E> + Send + Sync + 'static,
    T: Serialize,
    E: Into<WorkerFailure>,
{
    Arc::new(move |payload: Value, cancel: &CancelFlag| {
        let cached = cache_id
            .and_then(|id| id(&payload))
            .filter(|key| !key.is_null())
            .and_then(|key| json_compact(&key).ok())
            .and_then(|key| cache.get().map(|store| (store, key)));
        if let Some((store, key)) = &cached {
            if let Some(text) = store.get(&section, key) {
                return Ok(text);
            }
        }
        let value = job(payload, cancel).map_err(Into::into)?;
        let text = json_dumps(&value).map_err(|e| WorkerFailure {
            status: None,
            message: e.to_string(),
        })?;
        if let Some((store, key)) = cached {
            if !cancel.is_cancelled() {
                store.put(&section, &key, &text);
            }
        }
        Ok(text)
    })
}

/// Writes the bundled `worker.js` to `path` (overwriting), the original's
/// `mirror_worker_js` for a port that has no on-disk copy to link to.
pub fn mirror_worker_js(path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::write(path, WORKER_JS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::QuickCache;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn by_n(payload: &Value) -> Option<Value> {
        payload.get("n").cloned()
    }

    /// Counts its runs; answers `{"n": <n>, "x": NaN}`, or a 418 for `n` = 418.
    fn counting(
        runs: Arc<AtomicUsize>,
    ) -> impl Fn(Value, &CancelFlag) -> Result<BTreeMap<&'static str, f64>, Abort> {
        move |payload: Value, _: &CancelFlag| {
            runs.fetch_add(1, Ordering::SeqCst);
            match payload.get("n").and_then(Value::as_f64) {
                Some(418.0) => Err(Abort::new(418, "teapot")),
                n => Ok(BTreeMap::from([("n", n.unwrap_or(0.0)), ("x", f64::NAN)])),
            }
        }
    }

    #[test]
    fn results_are_json_dumps_text() {
        let runs = Arc::new(AtomicUsize::new(0));
        let work = worker_fn(counting(runs), CacheSlot::default(), "www".into(), None);
        let text = work(json!({"n": 1}), &CancelFlag::default()).unwrap();
        assert_eq!(text, "{\n  \"n\": 1.0,\n  \"x\": \"NaN\"\n}");
    }

    #[test]
    fn an_abort_keeps_its_status() {
        let runs = Arc::new(AtomicUsize::new(0));
        let work = worker_fn(counting(runs), CacheSlot::default(), "www".into(), None);
        let failure = work(json!({"n": 418}), &CancelFlag::default()).unwrap_err();
        assert_eq!(
            failure,
            WorkerFailure {
                status: Some(418),
                message: "teapot".into()
            }
        );
    }

    #[test]
    fn other_failures_have_no_status() {
        let work = worker_fn(
            |_: Value, _: &CancelFlag| {
                Err::<(), _>(WorkerFailure {
                    status: None,
                    message: "disk full".into(),
                })
            },
            CacheSlot::default(),
            "www".into(),
            None,
        );
        assert_eq!(
            work(json!({}), &CancelFlag::default()).unwrap_err().status,
            None
        );
    }

    #[test]
    fn cache_hits_skip_the_job() {
        let runs = Arc::new(AtomicUsize::new(0));
        let slot = CacheSlot::default();
        let store = Arc::new(QuickCache::in_memory(1 << 20));
        slot.set(store.clone());
        let work = worker_fn(counting(runs.clone()), slot, "sec".into(), Some(by_n));
        let flag = CancelFlag::default();
        let first = work(json!({"n": 5}), &flag).unwrap();
        let second = work(json!({"n": 5}), &flag).unwrap();
        assert_eq!(first, second);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(store.get("sec", "5").as_deref(), Some(first.as_str()));
        // No key, or a null key: uncached.
        work(json!({}), &flag).unwrap();
        work(json!({}), &flag).unwrap();
        work(json!({"n": null}), &flag).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // Failures are not cached.
        assert!(work(json!({"n": 418}), &flag).is_err());
        assert!(work(json!({"n": 418}), &flag).is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 6);
        assert_eq!(store.list_sections(), vec!["sec"]);
    }

    #[test]
    fn without_an_installed_cache_every_job_runs() {
        let runs = Arc::new(AtomicUsize::new(0));
        let work = worker_fn(
            counting(runs.clone()),
            CacheSlot::default(),
            "www".into(),
            Some(by_n),
        );
        work(json!({"n": 1}), &CancelFlag::default()).unwrap();
        work(json!({"n": 1}), &CancelFlag::default()).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn mirror_writes_the_bundled_script() {
        let path = std::env::temp_dir().join(format!("qs-worker-{}.js", std::process::id()));
        std::fs::write(&path, "old").unwrap();
        mirror_worker_js(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), WORKER_JS);
        std::fs::remove_file(&path).unwrap();
        assert!(std::str::from_utf8(WORKER_JS)
            .unwrap()
            .contains("const VERSION = '0.8.0';"));
    }
}
