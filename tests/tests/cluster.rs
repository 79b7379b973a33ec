//! Several instances of the `cluster` example sharing one real `redis-server`: tokens,
//! worker tasks and the result cache seen from every instance, and what happens when an
//! instance or Redis dies. Deadlines are checked with generous margins.

use std::thread;
use std::time::{Duration, Instant};

use quick_server_tests::{have_redis, json_of, Instance, RedisServer};
use serde_json::json;

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
    // The instance still serves everything else.
    assert_eq!(count(&instance, "fine"), 0);
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
    let file = instance.get("/index.html");
    assert_eq!(file.status, 200);
    assert_eq!(file.text(), "<p>still here</p>");
    redis.resume();
    let answer = eventually(Duration::from_secs(10), || {
        let response = instance.post("/api/count/durable", &json!({}));
        (response.status == 200).then(|| json_of(&response))
    });
    assert_eq!(answer, json!({"count": 6}), "nothing lost");
}
