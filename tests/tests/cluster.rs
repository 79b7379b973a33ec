//! Several instances of the `cluster` example sharing one real `redis-server`: tokens,
//! worker tasks and the result cache seen from every instance, and what happens when an
//! instance or Redis dies. Deadlines are checked with generous margins.

use std::thread;
use std::time::{Duration, Instant};

use quick_server_tests::{have_redis, json_of, Instance, RedisServer};
use serde_json::{json, Value};

/// Skips (with a note) when `redis-server` is not installed; `tests/run` installs it.
macro_rules! need_redis {
    () => {
        if !have_redis() {
            eprintln!("redis-server not installed: skipped");
            return;
        }
    };
}

fn count(instance: &Instance, name: &str) -> u64 {
    let response = instance.get(&format!("/api/count/{name}"));
    assert_eq!(response.status, 200, "{}", response.text());
    json_of(&response)["count"].as_u64().expect("a count")
}

#[test]
fn three_instances_count_to_exactly_300() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(Some(&url), &[])).collect();
    assert_eq!(count(&instances[0], "hits"), 0);
    thread::scope(|scope| {
        // 30 clients, 10 increments each, spread over the three instances.
        for client in 0..30 {
            let instances = &instances;
            scope.spawn(move || {
                for i in 0..10 {
                    let instance = &instances[(client + i) % 3];
                    let response = instance.post("/api/count/hits", &json!({}));
                    assert_eq!(response.status, 200, "{}", response.text());
                }
            });
        }
    });
    for instance in &instances {
        assert_eq!(count(instance, "hits"), 300);
    }
    assert_eq!(count(&instances[1], "other"), 0, "a read creates nothing");
    assert_eq!(
        redis.command(&["EXISTS", "qs:cluster:t:other"]).unwrap(),
        ":0"
    );
    let ttl = redis.command(&["PTTL", "qs:cluster:t:hits"]).unwrap();
    let ms: u64 = ttl.trim_start_matches(':').parse().expect("a TTL");
    assert!(
        ms > 590_000 && ms <= 600_000,
        "expiry of 600 s by Redis' clock: {ms}"
    );
}

#[test]
fn a_restarted_instance_keeps_the_tokens() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let instance = Instance::start(Some(&url), &[]);
    for _ in 0..3 {
        assert_eq!(instance.post("/api/count/kept", &json!({})).status, 200);
    }
    let instance = instance.restart();
    assert_eq!(count(&instance, "kept"), 3);
    let answer = json_of(&instance.post("/api/count/kept", &json!({})));
    assert_eq!(answer, json!({"count": 4}));
}

#[test]
fn bad_data_in_redis_is_an_error_answer() {
    need_redis!();
    let redis = RedisServer::start(false);
    let instance = Instance::start(Some(&redis.url()), &[]);
    assert_eq!(
        redis
            .command(&["SET", "qs:cluster:t:junk", "not ours"])
            .unwrap(),
        "+OK"
    );
    let response = instance.post("/api/count/junk", &json!({}));
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(
        response.reason.contains("unexpected data"),
        "{}",
        response.reason
    );
    redis
        .command(&["HSET", "qs:cluster:t:junk2", "v", "1", "m", "[1]"])
        .unwrap();
    assert_eq!(instance.get("/api/count/junk2").status, 500);
    // A worker task key holding a string instead of a hash.
    redis
        .command(&["SET", "qs:cluster:w:/api/sleep:77", "not ours"])
        .unwrap();
    let response = instance.post("/api/sleep", &json!({"action": "get", "token": "77"}));
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(
        response.reason.contains("unexpected data"),
        "{}",
        response.reason
    );
    // The instance still serves everything else, and logged each find.
    assert_eq!(count(&instance, "fine"), 0);
    let logged = instance.log();
    let finds = logged
        .iter()
        .filter(|l| l.contains("redis: unexpected data"));
    assert_eq!(finds.count(), 3, "{logged:?}");
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "nothing within {within:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn redis_stopped_mid_run_answers_503_in_time_and_recovers() {
    need_redis!();
    let dir = quick_server_tests::TempDir::new();
    dir.write("index.html", "<p>still here</p>");
    let mut redis = RedisServer::start(true);
    let www = dir.path().to_str().expect("a UTF-8 path").to_owned();
    let instance = Instance::start(Some(&redis.url()), &["--www", &www]);
    for _ in 0..5 {
        assert_eq!(instance.post("/api/count/durable", &json!({})).status, 200);
    }
    redis.stop();
    let started = Instant::now();
    let response = instance.post("/api/count/durable", &json!({}));
    let took = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(response.reason.contains("shared state unavailable"));
    assert!(took < Duration::from_secs(4), "503 after {took:?}");
    assert_eq!(instance.get("/api/count/durable").status, 503);
    let start = instance.post("/api/sleep", &json!({"action": "start", "payload": {}}));
    assert_eq!(
        start.status,
        503,
        "a worker needs Redis too: {}",
        start.text()
    );
    let file = instance.get("/index.html");
    assert_eq!(file.status, 200);
    assert_eq!(file.text(), "<p>still here</p>");
    redis.resume();
    let answer = eventually(Duration::from_secs(10), || {
        let response = instance.post("/api/count/durable", &json!({}));
        (response.status == 200).then(|| json_of(&response))
    });
    assert_eq!(answer, json!({"count": 6}), "nothing lost");
    // One line when the outage started and one when it ended, not one per request.
    let logged = instance.log();
    let lines = |text: &str| logged.iter().filter(|l| l.contains(text)).count();
    assert_eq!(lines("redis unavailable"), 1, "{logged:?}");
    assert_eq!(lines("redis reachable again"), 1, "{logged:?}");
}

/// The worker route that runs a lost task again.
const AGAIN: &str = "/api/sleep-again";

/// A job that ends while Redis is down keeps its result: the instance records it when
/// Redis answers again, and the task polls "running" meanwhile instead of being lost.
#[test]
fn a_job_that_ends_while_redis_is_down_keeps_its_result() {
    need_redis!();
    let mut redis = RedisServer::start(true);
    let instance = Instance::start(Some(&redis.url()), &[]);
    let token = start_long(&instance, json!({"seconds": 1, "echo": "kept"}));
    redis.stop();
    // The job ends during the outage.
    thread::sleep(Duration::from_secs(3));
    redis.resume();
    eventually(Duration::from_secs(10), || {
        (instance.get("/api/count/up").status == 200).then_some(())
    });
    let result = collect(&instance, &token);
    assert_eq!(result, json!({"echo": "kept", "pid": instance.pid()}));
}

/// A Redis that stops answering (frozen, its connections open) costs a request the named
/// timeout, not a hang: 503, then service again once it answers.
#[test]
fn a_stalled_redis_answers_503_in_time() {
    need_redis!();
    let redis = RedisServer::start(false);
    let instance = Instance::start(Some(&redis.url()), &[]);
    assert_eq!(instance.post("/api/count/slow", &json!({})).status, 200);
    redis.freeze(true);
    let started = Instant::now();
    let response = instance.post("/api/count/slow", &json!({}));
    let took = started.elapsed();
    redis.freeze(false);
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(response.reason.contains("shared state unavailable"));
    // REDIS_TIMEOUT is 800 ms; at most two waits, with room for a loaded machine.
    assert!(took < Duration::from_secs(4), "503 after {took:?}");
    let answer = eventually(Duration::from_secs(10), || {
        let response = instance.post("/api/count/slow", &json!({}));
        (response.status == 200).then(|| json_of(&response))
    });
    assert!(answer["count"].as_u64() >= Some(2), "{answer}");
}

/// The pool never holds more than `pool_size` connections to Redis, however many
/// threads call at once; they wait their turn.
#[test]
fn the_pool_keeps_to_its_size() {
    need_redis!();
    use quick_server::{Expire, QuickServer, SharedState, SharedStateOptions};
    let redis = RedisServer::start(false);
    let options = SharedStateOptions {
        pool_size: 2,
        ..SharedStateOptions::default()
    };
    let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
    server.shared_state(SharedState::open(&redis.url(), options).expect("a Redis URL"));
    let tokens = server.tokens();
    thread::scope(|scope| {
        for _ in 0..8 {
            let tokens = tokens.clone();
            scope.spawn(move || {
                for _ in 0..20 {
                    tokens
                        .get_token_obj("pooled", Expire::Never, false, |map| {
                            let n = map.get("n").and_then(Value::as_u64).unwrap_or(0);
                            map.insert("n".into(), json!(n + 1));
                        })
                        .expect("a pooled call");
                }
            });
        }
    });
    let seen = tokens.peek_token_obj("pooled").unwrap().expect("the token");
    assert_eq!(seen.get("n"), Some(&json!(160)));
    let info = redis.value(&["INFO", "clients"]).unwrap().expect("INFO");
    let clients: u32 = info
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients");
    // The pool's connections and the one asking.
    assert!(clients <= 3, "{clients} clients:\n{info}");
}

/// The reply of a worker action on `/api/sleep`, asserting a 200.
fn act(instance: &Instance, body: Value) -> Value {
    act_on(instance, "/api/sleep", body)
}

/// The reply of a worker action on `route`, asserting a 200.
fn act_on(instance: &Instance, route: &str, body: Value) -> Value {
    let response = instance.post(route, &body);
    assert_eq!(response.status, 200, "{}", response.text());
    json_of(&response)
}

/// Starts a job that runs for a while (its start answer must not carry the result).
fn start_long(instance: &Instance, payload: Value) -> Value {
    start_long_on(instance, "/api/sleep", payload)
}

/// Like [`start_long`] on `route`.
fn start_long_on(instance: &Instance, route: &str, payload: Value) -> Value {
    let reply = act_on(
        instance,
        route,
        json!({"action": "start", "payload": payload}),
    );
    assert_eq!(reply["continue"], json!(true), "still running: {reply}");
    reply["token"].clone()
}

/// The Redis key of the task of `token` on `route`.
fn task_key(route: &str, token: &Value) -> String {
    format!("qs:cluster:w:{route}:{}", token.as_str().expect("a key"))
}

/// Polls `get` on `instance` (each answer "running") until the task of `token` on
/// [`AGAIN`] has an owner other than `old_owner`; returns the new owner.
fn wait_for_claim(redis: &RedisServer, instance: &Instance, token: &Value, old: &str) -> String {
    let key = task_key(AGAIN, token);
    eventually(Duration::from_secs(40), || {
        let reply = act_on(instance, AGAIN, json!({"action": "get", "token": token}));
        assert_eq!(reply["continue"], json!(true), "running: {reply}");
        let owner = redis
            .value(&["HGET", &key, "o"])
            .unwrap()
            .expect("an owner");
        (owner != old).then_some(owner)
    })
}

/// Polls `get` on `instance` until it fails; asserts a lost task.
fn wait_for_lost(instance: &Instance, route: &str, token: &Value) {
    let response = eventually(Duration::from_secs(40), || {
        let response = instance.post(route, &json!({"action": "get", "token": token}));
        (response.status != 200).then_some(response)
    });
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(response.reason.contains("LostTask"), "{}", response.reason);
    let after = act_on(instance, route, json!({"action": "get", "token": token}));
    assert_eq!(after["done"], json!(false), "reported once: {after}");
}

/// The result of a start answer that was done at once.
fn result_of(reply: &Value) -> Value {
    assert_eq!(reply["done"], json!(true), "{reply}");
    serde_json::from_str(reply["result"].as_str().expect("a text")).expect("JSON")
}

/// The result of a start answer, collected with `get` on `instance` if the job was not
/// done within the start's wait (a busy machine).
fn outcome(instance: &Instance, reply: &Value) -> Value {
    if reply["continue"] == json!(true) {
        return collect(instance, &reply["token"]);
    }
    result_of(reply)
}

/// Polls `get` on `instance` until the task is done; returns the result's JSON.
fn collect(instance: &Instance, token: &Value) -> Value {
    eventually(Duration::from_secs(20), || {
        let reply = act(instance, json!({"action": "get", "token": token}));
        if reply["continue"] == json!(true) {
            return None;
        }
        assert_eq!(reply["done"], json!(true), "{reply}");
        Some(serde_json::from_str(reply["result"].as_str().expect("a text")).expect("JSON"))
    })
}

#[test]
fn start_on_one_instance_get_and_stop_on_others() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let [a, b, c] = [0, 1, 2].map(|_| Instance::start(Some(&url), &[]));

    // Started on A, collected on B: A ran it.
    let token = start_long(&a, json!({"seconds": 0.3, "echo": "x"}));
    let running = act(&c, json!({"action": "get", "token": token}));
    assert_eq!(running["continue"], json!(true), "{running}");
    let result = collect(&b, &token);
    assert_eq!(result, json!({"echo": "x", "pid": a.pid()}));
    let gone = act(&c, json!({"action": "get", "token": token}));
    assert_eq!(gone["done"], json!(false), "collected once: {gone}");

    // Started on A, stopped on C: the job on A sees its cancel flag and ends early,
    // which removes the task's key.
    let token = start_long(&a, json!({"seconds": 60, "echo": "long"}));
    let key = format!("qs:cluster:w:/api/sleep:{}", token.as_str().expect("a key"));
    assert_eq!(redis.command(&["EXISTS", &key]).unwrap(), ":1");
    let stopped = act(&c, json!({"action": "stop", "token": token}));
    assert_eq!(
        stopped,
        json!({"continue": false, "done": true, "result": null, "token": token})
    );
    let stopped_at = Instant::now();
    eventually(Duration::from_secs(5), || {
        (redis.command(&["EXISTS", &key]).unwrap() == ":0").then_some(())
    });
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    let after = act(&b, json!({"action": "get", "token": token}));
    assert_eq!(after["done"], json!(false), "{after}");
    assert_eq!(after["continue"], json!(false), "{after}");
}

#[test]
fn a_task_of_a_killed_instance_is_lost_within_the_lease() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let mut a = Instance::start(Some(&url), &[]);
    let b = Instance::start(Some(&url), &[]);
    let token = start_long(&a, json!({"seconds": 120, "echo": "doomed"}));
    let killed = Instant::now();
    a.kill();
    let response = eventually(Duration::from_secs(25), || {
        let response = b.post("/api/sleep", &json!({"action": "get", "token": token}));
        (response.status != 200).then_some(response)
    });
    let took = killed.elapsed();
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(response.reason.contains("LostTask"), "{}", response.reason);
    // The default lease is 10 s; well within 15 s plus the polling step.
    assert!(took < Duration::from_secs(16), "lost after {took:?}");
    // Reported once, then the task is unknown.
    let after = act(&b, json!({"action": "get", "token": token}));
    assert_eq!(after["done"], json!(false), "{after}");
}

#[test]
fn a_cached_result_answers_the_start_on_every_instance() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let a = Instance::start(Some(&url), &[]);
    let b = Instance::start(Some(&url), &[]);
    let payload = json!({"seconds": 0.5, "echo": "cached", "cache": true});
    let token = start_long(&a, payload.clone());
    assert_eq!(collect(&a, &token)["pid"], json!(a.pid()));
    // The same payload, keys in another order, on B: answered by the start itself.
    let reordered = json!({"cache": true, "echo": "cached", "seconds": 0.5});
    let reply = act(&b, json!({"action": "start", "payload": reordered}));
    assert_eq!(result_of(&reply), json!({"echo": "cached", "pid": a.pid()}));
    // Without "cache" the job runs again, here on B.
    let reply = act(
        &b,
        json!({"action": "start", "payload": {"seconds": 0, "echo": "cached"}}),
    );
    assert_eq!(outcome(&b, &reply)["pid"], json!(b.pid()));
}

#[test]
fn a_restart_keeps_finished_results_and_the_cache() {
    need_redis!();
    let redis = RedisServer::start(false);
    let a = Instance::start(Some(&redis.url()), &[]);
    let token = start_long(&a, json!({"seconds": 0.2, "echo": "kept"}));
    let cached = json!({"seconds": 0, "echo": "warm", "cache": true});
    let warm = act(&a, json!({"action": "start", "payload": cached}));
    let old_pid = a.pid();
    assert_eq!(outcome(&a, &warm)["pid"], json!(old_pid));
    thread::sleep(Duration::from_millis(500));
    let a = a.restart();
    assert_eq!(collect(&a, &token), json!({"echo": "kept", "pid": old_pid}));
    let reply = act(&a, json!({"action": "start", "payload": cached}));
    assert_eq!(result_of(&reply)["pid"], json!(old_pid), "from the cache");
}

#[test]
fn the_redis_cache_keeps_its_budget_oldest_out_first() {
    need_redis!();
    use quick_server::{ResultCache, SharedState, SharedStateOptions};
    let redis = RedisServer::start(false);
    let options = SharedStateOptions {
        key_prefix: Some("budget:".into()),
        cache_quota: 100,
        cache_max_entry: 60,
        ..SharedStateOptions::default()
    };
    let cache = SharedState::open(&redis.url(), options).unwrap().cache();
    let forty = "x".repeat(40);
    cache.put("a", "1", &forty);
    cache.put("b", "2", &forty);
    assert_eq!(cache.get("a", "1").as_deref(), Some(forty.as_str()));
    cache.put("a", "3", &forty);
    assert_eq!(cache.get("a", "1"), None, "the oldest went out");
    assert!(cache.get("b", "2").is_some() && cache.get("a", "3").is_some());
    assert_eq!(redis.command(&["GET", "budget:c:total"]).unwrap(), "$2");
    cache.put("a", "big", &"y".repeat(61));
    assert_eq!(cache.get("a", "big"), None, "larger than the entry limit");
    assert_eq!(cache.list_sections(), ["a", "b"]);
    cache.clean_cache("a");
    assert_eq!(cache.get("a", "3"), None);
    assert_eq!(cache.list_sections(), ["b"]);
    // Rewriting an entry counts its size once.
    cache.put("b", "2", "short");
    cache.put("b", "2", "short");
    assert_eq!(cache.get("b", "2").as_deref(), Some("short"));
}

/// `rediss://` with a password and a database: TLS through rustls against a Redis with a
/// self-signed certificate given as the root.
#[test]
fn tls_password_and_database_in_the_url() {
    need_redis!();
    use quick_server::{Expire, QuickServer, SharedState, SharedStateOptions};
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = quick_server_tests::TempDir::new();
    let cert = dir.write("cert.pem", made.cert.pem());
    let key = dir.write("key.pem", made.key_pair.serialize_pem());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let redis = RedisServer::start_with(
        false,
        &[
            "--tls-port",
            "{port}",
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            cert,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
        ],
    );
    let open = |url: &str| {
        let options = SharedStateOptions {
            tls_root_pem: Some(made.cert.pem().into_bytes()),
            ..SharedStateOptions::default()
        };
        let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
        server.shared_state(SharedState::open(url, options).expect("a Redis URL"));
        server.tokens()
    };
    let port = redis.port();
    let tokens = open(&format!("rediss://:s3cret@127.0.0.1:{port}/3"));
    tokens
        .get_token_obj("t", Expire::Never, false, |map| {
            map.insert("over".into(), json!("tls"));
        })
        .expect("a write over TLS");
    let seen = tokens.peek_token_obj("t").expect("a read over TLS");
    assert_eq!(
        seen.and_then(|map| map.get("over").cloned()),
        Some(json!("tls"))
    );
    // Another database does not see it; a wrong password is refused.
    let other = open(&format!("rediss://:s3cret@127.0.0.1:{port}/4"));
    assert_eq!(other.peek_token_obj("t").unwrap(), None);
    let wrong = open(&format!("rediss://:nope@127.0.0.1:{port}/3"));
    assert!(wrong.peek_token_obj("t").is_err());
}

#[test]
fn a_lost_task_runs_again_on_a_survivor_only_where_the_route_opted_in() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let mut a = Instance::start(Some(&url), &[]);
    let [b, c] = [0, 1].map(|_| Instance::start(Some(&url), &[]));
    let payload = json!({"seconds": 3, "echo": "again"});
    let again = start_long_on(&a, AGAIN, payload.clone());
    let once = start_long(&a, payload);
    let first = redis
        .value(&["HGET", &task_key(AGAIN, &again), "o"])
        .unwrap();
    let first = first.expect("an owner");
    a.kill();
    wait_for_claim(&redis, &b, &again, &first);
    // Collected on another instance: B ran it, with the same token.
    let result = eventually(Duration::from_secs(30), || {
        let reply = act_on(&c, AGAIN, json!({"action": "get", "token": again}));
        (reply["done"] == json!(true)).then_some(reply)
    });
    assert_eq!(result["token"], again);
    let result: Value = serde_json::from_str(result["result"].as_str().unwrap()).unwrap();
    assert_eq!(result, json!({"echo": "again", "pid": b.pid()}));
    // The route that did not opt in reports its task lost, as before.
    wait_for_lost(&c, "/api/sleep", &once);
}

#[test]
fn a_task_runs_again_at_most_rerun_max_times() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let mut a = Instance::start(Some(&url), &[]);
    let mut b = Instance::start(Some(&url), &[]);
    let c = Instance::start(Some(&url), &[]);
    let token = start_long_on(&a, AGAIN, json!({"seconds": 120, "echo": "capped"}));
    let key = task_key(AGAIN, &token);
    let first = redis
        .value(&["HGET", &key, "o"])
        .unwrap()
        .expect("an owner");
    // As if it had run twice again already: one more re-run is allowed (RERUN_MAX = 3).
    let max = quick_server::RERUN_MAX;
    let before = (max - 1).to_string();
    assert_eq!(redis.command(&["HSET", &key, "n", &before]).unwrap(), ":1");
    a.kill();
    wait_for_claim(&redis, &b, &token, &first);
    let runs = redis.value(&["HGET", &key, "n"]).unwrap();
    assert_eq!(runs, Some(max.to_string()));
    b.kill();
    // The last allowed re-run died too: lost, as on a route that did not opt in.
    wait_for_lost(&c, AGAIN, &token);
    assert_eq!(redis.command(&["EXISTS", &key]).unwrap(), ":0");
}

#[test]
fn stop_reaches_a_task_running_again() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let mut a = Instance::start(Some(&url), &[]);
    let [b, c] = [0, 1].map(|_| Instance::start(Some(&url), &[]));
    let token = start_long_on(&a, AGAIN, json!({"seconds": 120, "echo": "stopped"}));
    let key = task_key(AGAIN, &token);
    let first = redis
        .value(&["HGET", &key, "o"])
        .unwrap()
        .expect("an owner");
    a.kill();
    wait_for_claim(&redis, &b, &token, &first);
    let stopped = act_on(&c, AGAIN, json!({"action": "stop", "token": token}));
    assert_eq!(stopped["done"], json!(true), "{stopped}");
    // The re-run on B sees its cancel flag and ends early, which removes the task.
    eventually(Duration::from_secs(5), || {
        (redis.command(&["EXISTS", &key]).unwrap() == ":0").then_some(())
    });
    let after = act_on(&b, AGAIN, json!({"action": "get", "token": token}));
    assert_eq!(
        after,
        json!({"continue": false, "done": false, "result": null, "token": token})
    );
}

#[test]
fn gets_racing_on_two_instances_claim_a_lost_task_once() {
    need_redis!();
    let redis = RedisServer::start(false);
    let url = redis.url();
    let mut a = Instance::start(Some(&url), &[]);
    let [b, c] = [0, 1].map(|_| Instance::start(Some(&url), &[]));
    let token = start_long_on(&a, AGAIN, json!({"seconds": 1, "echo": "once"}));
    a.kill();
    // Both poll as fast as they can until one of them collects the result.
    let results: Vec<Option<Value>> = thread::scope(|scope| {
        let pollers: Vec<_> = [&b, &c]
            .map(|instance| {
                let token = &token;
                scope.spawn(move || {
                    eventually(Duration::from_secs(40), || {
                        let get = json!({"action": "get", "token": token});
                        let reply = act_on(instance, AGAIN, get);
                        match (reply["done"].as_bool(), reply["continue"].as_bool()) {
                            (Some(true), _) => Some(Some(reply)),
                            (Some(false), Some(false)) => Some(None),
                            _ => None,
                        }
                    })
                })
            })
            .into_iter()
            .collect();
        pollers.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let collected: Vec<&Value> = results.iter().flatten().collect();
    assert_eq!(collected.len(), 1, "collected once: {results:?}");
    let result: Value = serde_json::from_str(collected[0]["result"].as_str().unwrap()).unwrap();
    let claims = |instance: &Instance| {
        let log = instance.log();
        log.iter()
            .filter(|l| l.contains("running it here again"))
            .count()
    };
    let (on_b, on_c) = (claims(&b), claims(&c));
    assert_eq!(on_b + on_c, 1, "one claim in all");
    let runner = if on_b == 1 { b.pid() } else { c.pid() };
    assert_eq!(result, json!({"echo": "once", "pid": runner}));
}
