//! Worker routes through the `QuickServer` facade (BEHAVIOUR.md: Workers), over both transports,
//! plain and TLS: every action and state of the start/get/stop/cargo protocol, cancellation,
//! errors, the result cache, `worker.js`, and 1,000 abandoned jobs leaving nothing behind.
//!
//! Expiry of unread results (120 s) and cargo (600 s) runs on the server's clock; it is
//! covered with an injected clock by the core's registry unit tests
//! (`core/src/worker/registry.rs`) and here by the purge test at the core level. In Redis
//! both are Redis TTLs, read back in `cargo_across_two_instances_in_redis`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use quick_server::{
    Abort, CancelFlag, QuickCache, QuickServer, ResultCache, SharedState, SharedStateOptions,
    WorkerFailure, WORKER_JS,
};
use quick_server_core::worker::WorkerFn;
use quick_server_core::{Connection, PeerInfo, Server};
use quick_server_tests::{
    each_setup, get, have_redis, json_of, post_json, Client, FacadeServer, RedisServer, Response,
    Setup, TempDir,
};
use serde_json::{json, Value};

/// A facade server whose tasks (and tokens) live in `redis` when given, under a key
/// prefix of their own.
fn builder(setup: Setup, redis: Option<&RedisServer>) -> QuickServer {
    let mut qs = FacadeServer::builder();
    if let Some(redis) = redis {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let options = SharedStateOptions {
            key_prefix: Some(format!("{setup:?}{}:", NEXT.fetch_add(1, Ordering::SeqCst))),
            ..SharedStateOptions::default()
        };
        qs.shared_state(SharedState::open(&redis.url(), options).expect("a Redis URL"));
    }
    qs
}

/// Runs `test` with a fresh real Redis, or says it skipped without `redis-server`.
fn with_redis(test: impl FnOnce(&RedisServer)) {
    if !have_redis() {
        eprintln!("redis-server not installed: skipped");
        return;
    }
    test(&RedisServer::start(false));
}

/// Sends one protocol message on `client`.
fn send(client: &mut Client, url: &str, body: Value) -> Response {
    client.request(&post_json(url, &body))
}

/// A successful protocol answer: exactly `continue`, `done`, `result` and `token`.
fn reply(response: &Response) -> Value {
    assert_eq!(
        response.status,
        200,
        "{} {}",
        response.reason,
        response.text()
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    let value = json_of(response);
    let mut keys: Vec<&String> = value.as_object().expect("an object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["continue", "done", "result", "token"], "{value}");
    value
}

/// Polls `get` until the task is done; returns that answer.
fn poll(client: &mut Client, url: &str, token: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = reply(&send(client, url, json!({"action": "get", "token": token})));
        if answer["done"] == true {
            return answer;
        }
        assert_eq!(answer["continue"], true, "a running task: {answer}");
        assert_eq!(answer["result"], Value::Null);
        assert!(Instant::now() < deadline, "the task did not finish");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The answer for a token the server does not know.
fn unknown(token: Value) -> Value {
    json!({"continue": false, "done": false, "result": null, "token": token})
}

fn double(payload: Value, _: &CancelFlag) -> Result<Value, Abort> {
    thread::sleep(Duration::from_millis(300));
    let n = payload["n"].as_i64().unwrap_or(0);
    Ok(json!({"double": n * 2, "kind": payload["kind"]}))
}

#[test]
fn normal_and_immediate_jobs() {
    each_setup(|setup| normal_and_immediate_jobs_suite(setup, None));
}

#[test]
fn normal_and_immediate_jobs_in_redis() {
    with_redis(|redis| each_setup(|setup| normal_and_immediate_jobs_suite(setup, Some(redis))));
}

fn normal_and_immediate_jobs_suite(setup: Setup, redis: Option<&RedisServer>) {
    {
        let mut qs = builder(setup, redis);
        qs.json_worker("/api/double/:kind", None, double)
            .json_worker("/api/now", None, |payload: Value, _: &CancelFlag| {
                Ok::<_, Abort>(payload)
            });
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let url = "/api/double/fast";
        let started = Instant::now();
        let start = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 21, "kind": "sent"}}),
        ));
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "start waits 100 ms"
        );
        assert_eq!(
            (start["done"].clone(), start["continue"].clone()),
            (json!(false), json!(true))
        );
        let token = start["token"].clone();
        let key = token.as_str().expect("a string token");
        assert!(key.parse::<u32>().is_ok(), "a decimal u32 key: {key}");
        let done = poll(&mut client, url, &token);
        assert_eq!(done["continue"], false);
        assert_eq!(done["token"], token);
        let result: Value =
            serde_json::from_str(done["result"].as_str().expect("result text")).unwrap();
        assert_eq!(
            result,
            json!({"double": 42, "kind": "fast"}),
            "captures override the payload"
        );
        assert_eq!(
            done["result"],
            "{\n  \"double\": 42,\n  \"kind\": \"fast\"\n}"
        );
        // Collected: the task is gone.
        let again = reply(&send(
            &mut client,
            url,
            json!({"action": "get", "token": token}),
        ));
        assert_eq!(again, unknown(token));

        // Fast jobs finish in the start answer; a missing or falsy payload is `{}`.
        for (body, payload) in [
            (
                json!({"action": "start", "payload": {"a": [1]}}),
                json!({"a": [1]}),
            ),
            (json!({"action": "start"}), json!({})),
            (json!({"action": "start", "payload": 0}), json!({})),
        ] {
            let answer = reply(&send(&mut client, "/api/now", body));
            assert_eq!(answer["done"], true, "{answer}");
            assert_eq!(answer["continue"], false);
            let result: Value = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
            assert_eq!(result, payload);
            let token = answer["token"].clone();
            let again = reply(&send(
                &mut client,
                "/api/now",
                json!({"action": "get", "token": token}),
            ));
            assert_eq!(again, unknown(token));
        }
    }
}

/// A job that runs until cancelled (5 s at most) and records that it saw the flag.
fn until_cancelled(saw: Arc<AtomicBool>) -> impl Fn(Value, &CancelFlag) -> Result<Value, Abort> {
    move |_payload: Value, cancel: &CancelFlag| {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if cancel.is_cancelled() {
                saw.store(true, Ordering::SeqCst);
                return Ok(json!("stopped early"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(json!("ran to the end"))
    }
}

/// Waits up to 2 s for `flag`.
fn eventually(flag: &AtomicBool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn stop_cancels_a_running_job_and_unknown_tokens_are_fine() {
    each_setup(|setup| stop_cancels_a_running_job_and_unknown_tokens_are_fine_suite(setup, None));
}

#[test]
fn stop_cancels_a_running_job_and_unknown_tokens_are_fine_in_redis() {
    with_redis(|redis| {
        each_setup(|setup| {
            stop_cancels_a_running_job_and_unknown_tokens_are_fine_suite(setup, Some(redis))
        })
    });
}

fn stop_cancels_a_running_job_and_unknown_tokens_are_fine_suite(
    setup: Setup,
    redis: Option<&RedisServer>,
) {
    {
        let saw = Arc::new(AtomicBool::new(false));
        let mut qs = builder(setup, redis);
        qs.json_worker("/api/long", None, until_cancelled(Arc::clone(&saw)));
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let url = "/api/long";
        let start = reply(&send(&mut client, url, json!({"action": "start"})));
        assert_eq!(start["continue"], true);
        let token = start["token"].clone();
        let running = reply(&send(
            &mut client,
            url,
            json!({"action": "get", "token": token}),
        ));
        assert_eq!(running["continue"], true);
        let stopped = reply(&send(
            &mut client,
            url,
            json!({"action": "stop", "token": token}),
        ));
        assert_eq!(
            stopped,
            json!({"continue": false, "done": true, "result": null, "token": token})
        );
        assert!(eventually(&saw), "the job saw the cancel flag");
        thread::sleep(Duration::from_millis(100));
        let after = reply(&send(
            &mut client,
            url,
            json!({"action": "get", "token": token}),
        ));
        assert_eq!(
            after,
            unknown(token),
            "the result of a stopped job is dropped"
        );

        // Stop with tokens nobody knows: answered, echoed with their JSON type.
        for token in [
            json!("12345"),
            json!(12345),
            json!("not a key"),
            json!(null),
            json!([1]),
        ] {
            let answer = reply(&send(
                &mut client,
                url,
                json!({"action": "stop", "token": token}),
            ));
            assert_eq!(
                answer,
                json!({"continue": false, "done": true, "result": null, "token": token})
            );
            let answer = reply(&send(
                &mut client,
                url,
                json!({"action": "get", "token": token}),
            ));
            assert_eq!(answer, unknown(token));
        }
    }
}

#[test]
fn numeric_tokens_are_their_decimal_string() {
    each_setup(|setup| numeric_tokens_are_their_decimal_string_suite(setup, None));
}

#[test]
fn numeric_tokens_are_their_decimal_string_in_redis() {
    with_redis(|redis| {
        each_setup(|setup| numeric_tokens_are_their_decimal_string_suite(setup, Some(redis)))
    });
}

fn numeric_tokens_are_their_decimal_string_suite(setup: Setup, redis: Option<&RedisServer>) {
    {
        let saw = Arc::new(AtomicBool::new(false));
        let mut qs = builder(setup, redis);
        qs.json_worker("/api/long", None, until_cancelled(Arc::clone(&saw)));
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let start = reply(&send(&mut client, "/api/long", json!({"action": "start"})));
        let number: u64 = start["token"].as_str().unwrap().parse().unwrap();
        let running = reply(&send(
            &mut client,
            "/api/long",
            json!({"action": "get", "token": number}),
        ));
        assert_eq!(
            running,
            json!({"continue": true, "done": false, "result": null, "token": number})
        );
        let stopped = reply(&send(
            &mut client,
            "/api/long",
            json!({"action": "stop", "token": number}),
        ));
        assert_eq!(stopped["token"], json!(number));
        assert!(eventually(&saw), "stopped through the numeric token");
    }
}

#[test]
fn big_results_are_split_into_one_shot_cargo() {
    each_setup(|setup| big_results_are_split_into_one_shot_cargo_suite(setup, None));
}

#[test]
fn big_results_are_split_into_one_shot_cargo_in_redis() {
    with_redis(|redis| {
        each_setup(|setup| big_results_are_split_into_one_shot_cargo_suite(setup, Some(redis)))
    });
}

fn big_results_are_split_into_one_shot_cargo_suite(setup: Setup, redis: Option<&RedisServer>) {
    {
        let mut qs = builder(setup, redis);
        let chunk = qs.max_chunk_size();
        qs.json_worker("/api/big", None, |payload: Value, _: &CancelFlag| {
            let len = payload["len"].as_u64().unwrap_or(0) as usize;
            Ok::<_, Abort>("x".repeat(len))
        });
        chunk.store(10, Ordering::SeqCst);
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let url = "/api/big";
        // 35 characters of text plus two quotes: four chunks of at most 10 characters.
        let start = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"len": 35}}),
        ));
        assert_eq!(
            (start["done"].clone(), start["continue"].clone()),
            (json!(true), json!(true))
        );
        let keys = start["result"]
            .as_array()
            .expect("a list of cargo keys")
            .clone();
        assert_eq!(keys.len(), 4);
        let mut text = String::new();
        for key in &keys {
            let part = reply(&send(
                &mut client,
                url,
                json!({"action": "cargo", "token": key}),
            ));
            assert_eq!(part["token"], *key);
            assert_eq!(
                (part["done"].clone(), part["continue"].clone()),
                (json!(true), json!(false))
            );
            let piece = part["result"].as_str().unwrap();
            assert!(piece.chars().count() <= 10);
            text.push_str(piece);
        }
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!("x".repeat(35))
        );
        // Each key is good once.
        let reused = send(
            &mut client,
            url,
            json!({"action": "cargo", "token": keys[0]}),
        );
        assert_eq!(reused.status, 500);
        assert_eq!(
            reused.reason,
            format!("KeyError: '{}'", keys[0].as_str().unwrap())
        );
        // At the limit nothing is split; the size may change while serving.
        let start = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"len": 8}}),
        ));
        assert_eq!(
            (start["continue"].clone(), start["result"].clone()),
            (json!(false), json!("\"xxxxxxxx\""))
        );
        chunk.store(1000, Ordering::SeqCst);
        let start = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"len": 35}}),
        ));
        assert_eq!(start["continue"], false);
    }
}

#[test]
fn job_errors_and_protocol_faults() {
    each_setup(|setup| job_errors_and_protocol_faults_suite(setup, None));
}

#[test]
fn job_errors_and_protocol_faults_in_redis() {
    with_redis(|redis| {
        each_setup(|setup| job_errors_and_protocol_faults_suite(setup, Some(redis)))
    });
}

fn job_errors_and_protocol_faults_suite(setup: Setup, redis: Option<&RedisServer>) {
    {
        let mut qs = builder(setup, redis);
        qs.json_worker(
            "/api/fail",
            None,
            |payload: Value, _: &CancelFlag| match payload["how"].as_str() {
                Some("abort") => Err(WorkerFailure::from(Abort::new(418, "teapot"))),
                Some("error") => Err(WorkerFailure {
                    status: None,
                    message: "disk full".into(),
                }),
                Some("panic") => panic!("job failure on purpose"),
                _ => Ok(1),
            },
        );
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let url = "/api/fail";
        // The answer that ends the task: the start's, or a later get's if it was slow
        // (a panic's backtrace may take longer than the start's 100 ms).
        let start = |client: &mut Client, how: &str| {
            let mut response = send(
                client,
                url,
                json!({"action": "start", "payload": {"how": how}}),
            );
            while response.status == 200 && json_of(&response)["continue"] == true {
                thread::sleep(Duration::from_millis(20));
                let token = json_of(&response)["token"].clone();
                response = send(client, url, json!({"action": "get", "token": token}));
            }
            response
        };
        let response = start(&mut client, "abort");
        assert_eq!((response.status, response.reason.as_str()), (418, "teapot"));
        for how in ["error", "panic"] {
            let response = start(&mut client, how);
            assert_eq!(
                (response.status, response.reason.as_str()),
                (500, "worker error"),
                "{how}"
            );
        }
        assert_eq!(reply(&start(&mut client, "fine"))["result"], "1");
        for (body, reason) in [
            (json!({"token": "1"}), "KeyError: 'action'"),
            (
                json!({"action": "bogus"}),
                "ValueError: invalid action: bogus",
            ),
            (json!({"action": "get"}), "KeyError: 'token'"),
            (
                json!([1, 2]),
                "TypeError: worker request must be a JSON object",
            ),
        ] {
            let response = send(&mut client, url, body);
            assert_eq!((response.status, response.reason.as_str()), (500, reason));
        }
        let response = client.request(&quick_server_tests::with_body(
            "POST",
            url,
            "application/json",
            b"{x",
        ));
        assert_eq!(response.status, 400);
        // Worker routes are POST only, with argc 0.
        assert_eq!(client.request(&get(url)).status, 404);
        assert_eq!(
            send(&mut client, "/api/fail/more", json!({"action": "start"})).status,
            404
        );
    }
}

/// A slow job counting its runs, cached by `payload.n`; stops early when cancelled.
fn cached_job(runs: Arc<AtomicUsize>) -> impl Fn(Value, &CancelFlag) -> Result<Value, Abort> {
    move |payload: Value, cancel: &CancelFlag| {
        runs.fetch_add(1, Ordering::SeqCst);
        for _ in 0..30 {
            if cancel.is_cancelled() {
                return Ok(json!("partial"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(json!({"n": payload["n"], "computed": true}))
    }
}

fn by_n(payload: &Value) -> Option<Value> {
    payload.get("n").cloned()
}

#[test]
fn cache_hits_answer_the_start_at_once() {
    each_setup(|setup| {
        let runs = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(QuickCache::in_memory(1 << 20));
        let mut qs = FacadeServer::builder();
        qs.json_worker_in(
            "/api/cached",
            "demo",
            Some(by_n),
            cached_job(Arc::clone(&runs)),
        );
        qs.cache(cache.clone());
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let url = "/api/cached";
        let first = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 1}}),
        ));
        assert_eq!(first["done"], false);
        let done = poll(&mut client, url, &first["token"]);
        let second = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 1}}),
        ));
        assert_eq!(second["done"], true, "a cache hit answers the start");
        assert_eq!(second["result"], done["result"]);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cache.list_sections(), vec!["demo"]);
        assert_eq!(
            cache.get("demo", "1"),
            done["result"].as_str().map(str::to_owned)
        );

        // A cancelled job's result is not cached.
        let start = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 2}}),
        ));
        reply(&send(
            &mut client,
            url,
            json!({"action": "stop", "token": start["token"]}),
        ));
        thread::sleep(Duration::from_millis(100));
        let again = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 2}}),
        ));
        assert_eq!(again["done"], false, "computed again");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        poll(&mut client, url, &again["token"]);

        cache.clean_cache("demo");
        let after_clean = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 1}}),
        ));
        assert_eq!(after_clean["done"], false);
        poll(&mut client, url, &after_clean["token"]);
    });
}

#[test]
fn the_disk_cache_survives_a_restart() {
    each_setup(|setup| {
        let folder = TempDir::new();
        let url = "/api/cached";
        let first_runs = Arc::new(AtomicUsize::new(0));
        let result = {
            let mut qs = FacadeServer::builder();
            qs.cache(Arc::new(
                QuickCache::with_disk(0, folder.path(), 1 << 20).unwrap(),
            ));
            qs.json_worker(url, Some(by_n), cached_job(Arc::clone(&first_runs)));
            let server = FacadeServer::start(setup, qs);
            let mut client = server.connect();
            let start = reply(&send(
                &mut client,
                url,
                json!({"action": "start", "payload": {"n": 7}}),
            ));
            poll(&mut client, url, &start["token"])["result"].clone()
        };
        assert_eq!(first_runs.load(Ordering::SeqCst), 1);
        let runs = Arc::new(AtomicUsize::new(0));
        let mut qs = FacadeServer::builder();
        qs.json_worker(url, Some(by_n), cached_job(Arc::clone(&runs)));
        qs.cache(Arc::new(
            QuickCache::with_disk(0, folder.path(), 1 << 20).unwrap(),
        ));
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let started = Instant::now();
        let start = reply(&send(
            &mut client,
            url,
            json!({"action": "start", "payload": {"n": 7}}),
        ));
        assert_eq!(start["done"], true, "{start}");
        assert_eq!(start["result"], result);
        assert!(started.elapsed() < Duration::from_millis(290), "no job ran");
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn worker_js_is_served_with_etag() {
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        qs.link_worker_js("/js/worker.js");
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let response = client.request(&get("/js/worker.js"));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("application/javascript; charset=utf-8")
        );
        assert_eq!(response.body, WORKER_JS);
        let etag = response.header("etag").expect("an ETag").to_owned();
        let conditional =
            format!("GET /js/worker.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n");
        assert_eq!(client.request(conditional.as_bytes()).status, 304);
        assert_eq!(
            client.request(&get("/js/worker.js/x")).status,
            404,
            "argc 0"
        );
    });
}

/// Everything written by `conn` until it has nothing more, running request jobs inline.
fn drain(conn: &mut Connection, now: Instant) -> Vec<u8> {
    quick_server_core::testing::drain(conn, now, None)
}

fn body_json(wire: &[u8]) -> Value {
    let text = String::from_utf8_lossy(wire);
    let (_, body) = text.split_once("\r\n\r\n").expect("a whole response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// 1,000 jobs started and never collected: after the retention time, the server's purge
/// leaves no deadline and no task behind. Driven at the core level with a stepped clock.
#[test]
fn a_thousand_abandoned_jobs_are_purged() {
    let t0 = Instant::now();
    let mut builder = Server::builder((t0, SystemTime::now()));
    let work: WorkerFn = Arc::new(|_payload, _cancel| Ok("\"done\"".to_owned()));
    builder.worker("/api/job", work);
    let server = builder.build();
    let mut conn = Connection::new(Arc::clone(&server), PeerInfo::default(), t0);
    let mut now = t0;
    let start = post_json("/api/job", &json!({"action": "start"}));
    let mut tokens = Vec::new();
    for _ in 0..1000 {
        conn.feed(&start, now);
        // The request job registers the task and hands out the computation.
        let request = conn.poll_job().expect("the request job");
        conn.complete(request.run(), now);
        let computation = conn.poll_job().expect("the background computation");
        // The start is answered before the computation ends: the task is running.
        now += Duration::from_millis(100);
        conn.handle_timeout(now);
        let answer = body_json(&drain(&mut conn, now));
        assert_eq!(answer["continue"], true, "{answer}");
        tokens.push(answer["token"].clone());
        // It ends; nobody collects its result.
        conn.complete(computation.run(), now);
    }
    let mut distinct = tokens.clone();
    distinct.sort_by_key(Value::to_string);
    distinct.dedup();
    assert_eq!(distinct.len(), 1000);
    let deadline = server.poll_timeout().expect("unread results expire");
    assert!(deadline > now && deadline <= now + Duration::from_secs(121));
    // Before the retention time nothing goes; after it, everything.
    server.handle_timeout(t0 + Duration::from_secs(119));
    assert!(server.poll_timeout().is_some());
    now += Duration::from_secs(121);
    server.handle_timeout(now);
    assert_eq!(server.poll_timeout(), None);
    for token in tokens {
        conn.feed(
            &post_json("/api/job", &json!({"action": "get", "token": token})),
            now,
        );
        assert_eq!(body_json(&drain(&mut conn, now)), unknown(token));
    }
}

/// Two servers sharing one Redis and key prefix are two instances: a big result started
/// on one is split on the other, and its chunks are fetched from both.
#[test]
fn cargo_across_two_instances_in_redis() {
    with_redis(|redis| {
        let instance = || {
            let mut qs = FacadeServer::builder();
            let options = SharedStateOptions {
                key_prefix: Some("pair:".into()),
                ..SharedStateOptions::default()
            };
            qs.shared_state(SharedState::open(&redis.url(), options).expect("a Redis URL"));
            qs.max_chunk_size().store(4, Ordering::SeqCst);
            qs.json_worker("/api/big", None, |payload: Value, _: &CancelFlag| {
                thread::sleep(Duration::from_millis(300));
                Ok::<_, Abort>(payload)
            });
            qs
        };
        let setup = Setup::ALL[0];
        let (a, b) = (
            FacadeServer::start(setup, instance()),
            FacadeServer::start(setup, instance()),
        );
        let (mut on_a, mut on_b) = (a.connect(), b.connect());
        let payload = json!({"text": "héllo wörld, split in pieces"});
        let started = reply(&send(
            &mut on_a,
            "/api/big",
            json!({"action": "start", "payload": payload}),
        ));
        let token = started["token"].clone();
        // An unread result expires by a Redis TTL of RESULT_RETENTION (120 s).
        let task = format!("pair:w:/api/big:{}", token.as_str().expect("a key"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis.value(&["HGET", &task, "s"]).unwrap().as_deref() != Some("done") {
            assert!(Instant::now() < deadline, "the job did not finish");
            thread::sleep(Duration::from_millis(20));
        }
        assert_ttl(redis, &task, 120);
        let done = poll(&mut on_b, "/api/big", &token);
        assert_eq!(done["continue"], json!(true), "{done}");
        let keys = done["result"].as_array().expect("chunk keys").clone();
        assert!(keys.len() > 3);
        // So does an unread chunk, after CARGO_TTL (600 s).
        let chunk = format!("pair:w:/api/big:{}", keys[0].as_str().expect("a key"));
        assert_ttl(redis, &chunk, 600);
        let mut text = String::new();
        for (i, key) in keys.iter().enumerate() {
            let client = if i % 2 == 0 { &mut on_a } else { &mut on_b };
            let chunk = reply(&send(
                client,
                "/api/big",
                json!({"action": "cargo", "token": key}),
            ));
            text.push_str(chunk["result"].as_str().expect("a piece"));
        }
        let whole: Value = serde_json::from_str(&text).expect("the result's JSON");
        assert_eq!(whole, payload);
        // Each chunk is fetched once, from any instance.
        let again = send(
            &mut on_a,
            "/api/big",
            json!({"action": "cargo", "token": keys[1]}),
        );
        assert_eq!(again.status, 500);
    });
}

/// Asserts that `key` expires by a Redis TTL of `seconds`, set moments ago.
fn assert_ttl(redis: &RedisServer, key: &str, seconds: u64) {
    let ttl = redis.command(&["PTTL", key]).unwrap();
    let ms: u64 = ttl.trim_start_matches(':').parse().expect("a TTL");
    let full = seconds * 1000;
    assert!(
        ms > full - 10_000 && ms <= full,
        "{key}: {ms} ms left of {full}"
    );
}
