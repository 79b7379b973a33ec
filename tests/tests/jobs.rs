//! Slow work leaves the connection as a job, on both transports: a slow or panicking
//! handler costs only its own request, and a worker computation runs in the background
//! while its connection goes on serving.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use quick_server_core::dynamic::Handler;
use quick_server_core::worker::WorkerFn;
use quick_server_core::Method as RouteMethod;
use quick_server_core::{Body, Response};
use quick_server_tests::{each_setup, TempDir, TestServer};
use serde_json::{json, Value};

const HELLO: &str = "hello, world\n";

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

fn post_json(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_slow_handler_holds_up_only_its_own_connection() {
    each_setup(|setup| {
        let dir = TempDir::new();
        dir.write("hello.txt", HELLO);
        let root = dir.path().to_owned();
        let server = TestServer::start(setup, move |mut builder| {
            builder
                .files()
                .bind_path("/", root)
                .expect("bind the folder");
            let slow: Handler = Arc::new(|_, _| {
                thread::sleep(Duration::from_millis(600));
                Response::new(200, Body::Bytes(b"slow".to_vec()))
            });
            let boom: Handler = Arc::new(|_, _| panic!("handler failure on purpose"));
            builder.route(RouteMethod::Get, "/slow", None, slow);
            builder.route(RouteMethod::Get, "/boom", None, boom);
            builder
        });
        let mut slow = server.connect();
        slow.send(&get("/slow")).unwrap();
        thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        assert_eq!(server.connect().request(&get("/hello.txt")).text(), HELLO);
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_millis(400),
            "another client waited {waited:?}"
        );
        assert_eq!(slow.response().text(), "slow");
        // A handler that panics costs its request a 500, not the connection.
        assert_eq!(slow.request(&get("/boom")).status, 500);
        assert_eq!(slow.request(&get("/hello.txt")).text(), HELLO);
    });
}

#[test]
fn a_worker_runs_in_the_background_while_its_connection_goes_on() {
    each_setup(|setup| {
        let server = TestServer::start(setup, |mut builder| {
            let work: WorkerFn = Arc::new(|_payload, _cancel| {
                thread::sleep(Duration::from_millis(500));
                Ok("42".to_owned())
            });
            builder.worker("/work", work);
            builder
        });
        let mut client = server.connect();
        let started = Instant::now();
        let start = client.request(&post_json(
            "/work",
            &json!({"action": "start", "payload": {}}),
        ));
        let waited = started.elapsed();
        assert_eq!(start.status, 200, "{}", start.text());
        assert!(
            waited < Duration::from_millis(400),
            "start waited for the job: {waited:?}"
        );
        let reply: Value = serde_json::from_slice(&start.body).expect("JSON");
        assert_eq!(
            (&reply["done"], &reply["continue"]),
            (&json!(false), &json!(true)),
            "{reply}"
        );
        let token = reply["token"].clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let get = client.request(&post_json(
                "/work",
                &json!({"action": "get", "token": token}),
            ));
            let reply: Value = serde_json::from_slice(&get.body).expect("JSON");
            if reply["done"] == json!(true) {
                assert_eq!(reply["result"], json!("42"), "{reply}");
                break;
            }
            assert_eq!(reply["continue"], json!(true), "{reply}");
            assert!(Instant::now() < deadline, "the worker never finished");
            thread::sleep(Duration::from_millis(50));
        }
    });
}
