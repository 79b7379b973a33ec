//! Dynamic requests through the `QuickServer` facade, over both transports, plain and TLS
//! (BEHAVIOUR.md: Dynamic routes, Tokens, CORS and OPTIONS): mask and argc matching, args, bodies
//! and uploads, the 413 path, middleware, tokens, CORS, a panicking handler and a slow one.

use std::thread;
use std::time::{Duration, Instant};

use quick_server::{
    middleware, Abort, Args, Custom, ETag, Expire, Middleware, Next, QuickServer, Request,
    SharedState, SharedStateOptions, Ttl, Verdict,
};
use quick_server_tests::{
    each_setup, fnv1a64, get, have_redis, json_of, multipart, post_json, pseudo_random_bytes,
    with_body, Client, FacadeServer, Part, RedisServer, Response, Setup, TempDir, Transport,
};
use serde_json::{json, Map, Value};

/// Everything a handler sees, as JSON.
fn echo(_req: &Request, args: &mut Args) -> Result<Value, Abort> {
    let files: Map<String, Value> = args
        .files
        .iter()
        .map(|(name, upload)| {
            let bytes = upload.bytes().expect("upload content");
            let mut about = json!({
                "filename": upload.filename,
                "content_type": upload.content_type,
                "len": upload.len,
                "fnv": format!("{:016x}", fnv1a64(&bytes)),
            });
            if upload.is_spilled() {
                about["spilled"] = json!(true);
                about["path"] = json!(upload.path());
            }
            (name.clone(), about)
        })
        .collect();
    Ok(json!({
        "paths": args.paths,
        "query": args.query,
        "fragment": args.fragment,
        "segments": args.segments,
        "post": args.post,
        "files": files,
    }))
}

fn routes() -> QuickServer {
    let mut server = FacadeServer::builder();
    server
        .json_get("/api/:version/a/b/c/d", None, echo)
        .json_get("/api/foo/:foo", None, echo)
        .json_get("/x", Some(0), echo)
        .json_get("/api/uptime/", Some(1), echo)
        .json_get("/api/echo", None, echo)
        .json_post("/api/echo", None, echo)
        .json_put("/api/echo", None, echo)
        .json_delete("/api/echo", None, echo)
        .json_post("/api/zero", Some(0), echo);
    server
}

/// `POST /api/echo` with `parts` as a multipart body (boundary `b`).
fn echo_upload(parts: &[Part<'_>]) -> Vec<u8> {
    with_body(
        "POST",
        "/api/echo",
        "multipart/form-data; boundary=b",
        &multipart("b", parts),
    )
}

/// The JSON body of a response that must be a 200.
fn ok_json(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    json_of(response)
}

fn assert_404(response: &Response, target: &str) {
    assert_eq!(response.status, 404, "{target}: {}", response.text());
    assert_eq!(response.reason, "File not found", "{target}");
}

#[test]
fn masks_captures_and_argc() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let mut client = server.connect();
        let ok = |client: &mut Client, target: &str| {
            let response = client.request(&get(target));
            assert_eq!(
                response.header("content-type"),
                Some("application/json"),
                "{target}"
            );
            ok_json(&response)
        };
        let version = |v: &Value| v["segments"]["version"].clone();
        assert_eq!(
            version(&ok(&mut client, "/api/:version/a/b/c/d")),
            ":version"
        );
        assert_eq!(version(&ok(&mut client, "/api/123/a/b/c/d")), "123");
        let answer = ok(&mut client, "/api/api/a/b/c/d?");
        assert_eq!(version(&answer), "api");
        assert_eq!(answer["query"], json!({"": true}));
        let answer = ok(&mut client, "/api/abcd/a/b/c/d#");
        assert_eq!(
            (version(&answer), answer["fragment"].clone()),
            (json!("abcd"), json!(""))
        );
        let answer = ok(&mut client, "/api/abcd/a/b/c/d/");
        assert_eq!(
            (version(&answer), answer["paths"].clone()),
            (json!("abcd"), json!([]))
        );
        assert_eq!(
            version(&ok(&mut client, "/api/a%20b/a/b/c/d")),
            "a%20b",
            "captures stay raw"
        );
        let answer = ok(&mut client, "/api/foo/foo/?ignore=me");
        assert_eq!(answer["segments"]["foo"], "foo");
        assert_eq!(answer["query"], json!({"ignore": "me"}));
        let answer = ok(&mut client, "/api/foo/foo?include=me");
        assert_eq!(answer["segments"]["foo"], "foo?include=me");
        assert_eq!(answer["query"], json!({}));
        for target in ["/x", "/x/", "/x?a=1", "/x#f"] {
            assert_eq!(ok(&mut client, target)["paths"], json!([]), "{target}");
        }
        assert_eq!(ok(&mut client, "/api/uptime/6")["paths"], json!(["6"]));
        assert_eq!(ok(&mut client, "/api/uptime/7/")["paths"], json!(["7"]));
        for target in [
            "/api/123?a/b/c/d",
            "/api/123/a?b/c/d",
            "/api/abcd/",
            "/x/y",
            "/xy",
            "/api/uptime",
            "/api/uptime/1/2",
        ] {
            assert_404(&client.request(&get(target)), target);
        }
        // POST with an argc mismatch: the 404 page, and the connection goes on.
        let response = client.request(&post_json("/api/zero/extra", &json!({})));
        assert_404(&response, "/api/zero/extra");
        let answer = ok_json(&client.request(&post_json("/api/zero", &json!({"a": 1}))));
        assert_eq!(answer["post"], json!({"a": 1}));
    });
}

#[test]
fn query_and_fragment_decoding() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let answer = ok_json(&server.exchange(&get(
            "/api/echo/a%20b/./c/../d?x=1&y&z=%41+b&x=2&&=5#fr%20ag",
        )));
        assert_eq!(answer["paths"], json!(["a b", "d"]));
        assert_eq!(
            answer["query"],
            json!({"x": "2", "y": true, "z": "A+b", "": "5"})
        );
        assert_eq!(answer["fragment"], "fr ag");
        assert_eq!(answer["post"], json!({}));
        let answer = ok_json(&server.exchange(&get("/api/echo/a%2Fb?k=%C3%A9&bad=%zz")));
        assert_eq!(answer["paths"], json!(["a/b"]), "decoded after splitting");
        assert_eq!(answer["query"], json!({"k": "é", "bad": "%zz"}));
    });
}

#[test]
fn json_urlencoded_and_multipart_bodies() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let mut client = server.connect();
        for method in ["POST", "PUT", "DELETE"] {
            let body = br#"{"list": [1, 2.5, "three"], "nested": {"ok": true}}"#;
            let request = with_body(method, "/api/echo", "application/json", body);
            let answer = ok_json(&client.request(&request));
            assert_eq!(
                answer["post"],
                json!({"list": [1, 2.5, "three"], "nested": {"ok": true}})
            );
        }
        let request = with_body("POST", "/api/echo", "application/json", b"[1, 2]");
        assert_eq!(ok_json(&client.request(&request))["post"], json!([1, 2]));
        let request = with_body(
            "POST",
            "/api/echo?q=1",
            "application/x-www-form-urlencoded",
            b"a=1&b=%41+c&flag&a=2",
        );
        let answer = ok_json(&client.request(&request));
        assert_eq!(answer["post"], json!({"a": "2", "b": "A+c", "flag": true}));
        assert_eq!(answer["query"], json!({"q": "1"}));
        // Unknown types are read and ignored.
        let request = with_body("POST", "/api/echo", "text/plain", b"whatever");
        assert_eq!(ok_json(&client.request(&request))["post"], json!({}));

        let binary: Vec<u8> = (0..=255u8)
            .chain([0, 0, b'\r', b'\n', b'-', b'-'])
            .collect();
        let big = pseudo_random_bytes(100_000, 7);
        let body = multipart(
            "XyZ",
            &[
                Part {
                    name: "title",
                    filename: None,
                    content_type: None,
                    data: "héllo wörld".as_bytes(),
                },
                Part {
                    name: "bin",
                    filename: Some("a.bin"),
                    content_type: Some("application/octet-stream"),
                    data: &binary,
                },
                Part {
                    name: "text",
                    filename: Some("t.txt"),
                    content_type: Some("text/plain"),
                    data: b"line 1\r\nline 2",
                },
                Part {
                    name: "big",
                    filename: Some("big.bin"),
                    content_type: Some("application/octet-stream"),
                    data: &big,
                },
                Part {
                    name: "empty",
                    filename: Some("e"),
                    content_type: Some("text/plain"),
                    data: b"",
                },
            ],
        );
        let request = with_body(
            "POST",
            "/api/echo",
            "multipart/form-data; boundary=XyZ",
            &body,
        );
        let answer = ok_json(&client.request(&request));
        assert_eq!(answer["post"], json!({"title": "héllo wörld"}));
        let file = |filename: &str, content_type: &str, data: &[u8]| {
            json!({
                "filename": filename,
                "content_type": content_type,
                "len": data.len(),
                "fnv": format!("{:016x}", fnv1a64(data)),
            })
        };
        assert_eq!(
            answer["files"],
            json!({
                "bin": file("a.bin", "application/octet-stream", &binary),
                "text": file("t.txt", "text/plain", b"line 1\r\nline 2"),
                "big": file("big.bin", "application/octet-stream", &big),
                "empty": file("e", "text/plain", b""),
            })
        );
    });
}

#[test]
fn malformed_bodies_are_400() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let request = with_body("POST", "/api/echo", "application/json", b"{not json");
        let response = server.exchange(&request);
        assert_eq!(response.status, 400);
        assert!(
            response
                .reason
                .starts_with("request is not JSON formatted!"),
            "{}",
            response.reason
        );
        for body in [
            &b"garbage without a boundary line"[..],
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
            b"--XyZ\r\nContent-Disposition: attachment\r\n\r\nx\r\n--XyZ--\r\n",
        ] {
            let request = with_body(
                "POST",
                "/api/echo",
                "multipart/form-data; boundary=XyZ",
                body,
            );
            let response = server.exchange(&request);
            assert_eq!(response.status, 400, "{}", response.text());
        }
        let request = with_body("POST", "/api/echo", "multipart/form-data", b"x");
        assert_eq!(server.exchange(&request).status, 400);
    });
}

/// A document at `/api/doc` that GET reads and PUT replaces, guarded by the request's
/// preconditions: the handler knows the current tag, the server does not.
fn versioned_doc() -> QuickServer {
    let doc = std::sync::Arc::new(std::sync::Mutex::new(json!({"v": 1})));
    let mut server = FacadeServer::builder();
    let read = std::sync::Arc::clone(&doc);
    server.json_get("/api/doc", Some(0), move |_req, _args| {
        Ok(read.lock().expect("doc").clone())
    });
    server.json_put("/api/doc", Some(0), move |_req, args| {
        let mut current = doc.lock().expect("doc");
        // The tag GET sends: the CRC-32 of the JSON text it answers.
        let text = quick_server_core::dynamic::json_dumps(&*current).expect("JSON");
        let tag = ETag::of(text.as_bytes());
        if args.preconditions.evaluate(false, Some(&tag), None) != Verdict::Proceed {
            return Err(Abort::new(412, "Precondition Failed"));
        }
        *current = args.post.clone();
        Ok(json!({"stored": true}))
    });
    server
}

#[test]
fn dynamic_preconditions_guard_a_read_modify_write() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, versioned_doc());
        let mut client = server.connect();
        let first = client.request(&get("/api/doc"));
        let tag = first.header("etag").expect("an ETag").to_owned();
        // GET: If-Match against the answer's tag.
        let r = client.request(
            format!("GET /api/doc HTTP/1.1\r\nHost: t\r\nIf-Match: {tag}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200);
        let r = client.request(b"GET /api/doc HTTP/1.1\r\nHost: t\r\nIf-Match: \"stale\"\r\n\r\n");
        assert_eq!(r.status, 412);
        // PUT: the handler checks the preconditions before the write.
        let put = |if_match: &str, body: &str| {
            format!(
                "PUT /api/doc HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 If-Match: {if_match}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        assert_eq!(client.request(&put(&tag, "{\"v\": 2}")).status, 200);
        // The same tag again is stale now: the second writer loses, the document stays.
        assert_eq!(client.request(&put(&tag, "{\"v\": 3}")).status, 412);
        assert_eq!(ok_json(&client.request(&get("/api/doc"))), json!({"v": 2}));
        // A PUT with a matching If-None-Match is refused (412), never a 304.
        let now = client.request(&get("/api/doc"));
        let tag = now.header("etag").expect("an ETag").to_owned();
        let r = client.request(
            format!(
                "PUT /api/doc HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                 If-None-Match: {tag}\r\nContent-Length: 2\r\n\r\n{{}}"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 412);
    });
}

#[test]
fn a_part_with_a_filename_is_a_file_whatever_its_type() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let raw = b"\xff\xfe\x00A";
        let request = echo_upload(&[
            Part {
                name: "f",
                filename: Some("b.bin"),
                content_type: None,
                data: raw,
            },
            Part {
                name: "t",
                filename: None,
                content_type: None,
                data: "é€".as_bytes(),
            },
        ]);
        let answer = ok_json(&server.exchange(&request));
        assert_eq!(
            answer["files"]["f"],
            json!({
                "filename": "b.bin",
                "content_type": "application/octet-stream",
                "len": 4,
                "fnv": format!("{:016x}", fnv1a64(raw)),
            })
        );
        assert_eq!(answer["post"], json!({"t": "é€"}));
    });
}

#[test]
fn a_text_field_that_is_not_utf8_is_400() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let request = echo_upload(&[Part {
            name: "t",
            filename: None,
            content_type: None,
            data: b"\xff\xfe\x00A",
        }]);
        let response = server.exchange(&request);
        assert_eq!(response.status, 400, "{}", response.text());
        assert!(
            response.reason.contains("\"t\" is not UTF-8"),
            "{}",
            response.reason
        );
        assert!(!response.text().contains('\u{fffd}'));
    });
}

/// Python `requests` sends a file part with a filename and no `Content-Type`: its bytes
/// arrive intact. Skipped (with a notice) when `python3 -c "import requests"` fails.
#[test]
fn python_requests_uploads_binary_files_intact() {
    const SCRIPT: &str = "import sys, requests, urllib3\n\
        urllib3.disable_warnings()\n\
        data = bytes(range(256)) * 3 + b'\\xff\\xfe\\x00A'\n\
        r = requests.post(sys.argv[1], files={'f': ('b.bin', data)}, data={'t': 'é'},\n\
                          verify=False, timeout=20)\n\
        print(r.status_code)\n\
        print(r.text)\n";
    let have = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        println!("skipped: python3 with requests is not available (pip install requests)");
        return;
    }
    let mut data: Vec<u8> = (0..=255u8).cycle().take(3 * 256).collect();
    data.extend_from_slice(b"\xff\xfe\x00A");
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let scheme = if setup.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}/api/echo", server.addr());
        let output = std::process::Command::new("python3")
            .args(["-c", SCRIPT, &url])
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let (status, body) = stdout.split_once('\n').unwrap_or_default();
        assert_eq!(
            status,
            "200",
            "{setup}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_str(body).expect("JSON answer");
        assert_eq!(answer["files"]["f"]["len"], data.len());
        assert_eq!(
            answer["files"]["f"]["fnv"],
            format!("{:016x}", fnv1a64(&data))
        );
        assert_eq!(answer["post"], json!({"t": "é"}));
    });
}

#[test]
fn a_part_over_max_file_size_is_413() {
    each_setup(|setup| {
        let mut qs = routes();
        qs.max_file_size(50);
        let server = FacadeServer::start(setup, qs);
        let fits = echo_upload(&[Part {
            name: "f",
            filename: Some("f"),
            content_type: Some("text/plain"),
            data: &[b'x'; 50],
        }]);
        assert_eq!(ok_json(&server.exchange(&fits))["files"]["f"]["len"], 50);
        for (data, n) in [(vec![b'y'; 100], 100), (vec![b'z'; 60], 60)] {
            let request = echo_upload(&[
                Part {
                    name: "ok",
                    filename: None,
                    content_type: None,
                    data: b"small",
                },
                Part {
                    name: "f",
                    filename: Some("f"),
                    content_type: Some("application/octet-stream"),
                    data: &data,
                },
            ]);
            let mut client = server.connect();
            let response = client.request(&request);
            assert_eq!(response.status, 413);
            assert_eq!(
                response.reason,
                format!("Uploaded file is too large! {n} > 50")
            );
            assert!(response.text().contains("Uploaded file is too large!"));
            // The upload is refused as it streams in, before the rest of the body is read: the
            // connection closes, as in the original (BEHAVIOUR.md: Dynamic routes › Request
            // bodies).
            assert!(response.closes());
            assert_eq!(
                ok_json(&server.connect().request(&fits))["files"]["f"]["len"],
                50
            );
        }
        // Fields count too.
        let request = echo_upload(&[Part {
            name: "t",
            filename: None,
            content_type: None,
            data: &[b'a'; 51],
        }]);
        assert_eq!(server.exchange(&request).status, 413);
    });
}

#[test]
fn large_uploads_spill_to_a_temporary_file_that_is_removed() {
    each_setup(|setup| {
        let server = FacadeServer::start(setup, routes());
        let data = pseudo_random_bytes(3 * 1024 * 1024 + 17, 7);
        let request = echo_upload(&[Part {
            name: "big",
            filename: Some("big.bin"),
            content_type: Some("application/octet-stream"),
            data: &data,
        }]);
        let answer = ok_json(&server.exchange(&request));
        let file = &answer["files"]["big"];
        assert_eq!(file["len"], data.len());
        assert_eq!(
            file["fnv"],
            format!("{:016x}", fnv1a64(&data)),
            "content intact"
        );
        assert_eq!(file["spilled"], true, "over Limits::upload_memory (1 MiB)");
        let path = file["path"].as_str().expect("a temporary file path");
        // The upload (and its file) is dropped when the handler's job ends.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::path::Path::new(path).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!std::path::Path::new(path).exists(), "{path} removed");
    });
}

#[test]
fn custom_values_text_routes_and_etags() {
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        qs.json_post("/api/custom", None, |_req, _args| {
            Ok::<_, Abort>(
                Custom::new(json!({"x": 1}))
                    .status(201)
                    .content_type("application/x-foo"),
            )
        })
        .json_get("/api/nan", None, |_req, _args| {
            Ok::<_, Abort>(vec![1.0, f64::NAN, f64::INFINITY])
        })
        .json_get("/api/none", None, |_req, _args| Ok::<_, Abort>(None::<u8>))
        .json_get("/api/teapot", None, |_req, _args| {
            Err::<(), _>(Abort::new(418, "short and stout"))
        })
        .text_get("/text/bytes", None, |_req, _args| {
            Ok::<_, Abort>(vec![0u8, 255, 10])
        })
        .text_post("/text/echo", None, |_req, args| {
            Ok::<_, Abort>(
                args.post
                    .get("a")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .text_put("/text/put", None, |_req, _args| Ok::<_, Abort>("put"))
        .text_delete("/text/delete", None, |_req, _args| {
            Ok::<_, Abort>(Custom::new("gone").status(202))
        })
        .text_get("/text/none", None, |_req, _args| {
            Ok::<_, Abort>(None::<String>)
        });
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let response = client.request(&post_json("/api/custom", &json!({})));
        assert_eq!(
            (response.status, response.reason.as_str()),
            (201, "Created")
        );
        assert_eq!(response.header("content-type"), Some("application/x-foo"));
        assert_eq!(response.text(), "{\n  \"x\": 1\n}");
        let response = client.request(&get("/api/nan"));
        assert_eq!(response.text(), "[\n  1.0,\n  \"NaN\",\n  \"Infinity\"\n]");
        let etag = response.header("etag").expect("an ETag").to_owned();
        assert_eq!(response.header("cache-control"), Some("max-age=0"));
        let conditional =
            format!("GET /api/nan HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n");
        let response = client.request(conditional.as_bytes());
        assert_eq!(response.status, 304);
        assert!(response.body.is_empty());
        assert_404(&client.request(&get("/api/none")), "/api/none");
        let response = client.request(&get("/api/teapot"));
        assert_eq!(
            (response.status, response.reason.as_str()),
            (418, "short and stout")
        );
        let response = client.request(&get("/text/bytes"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
        assert_eq!(response.body, vec![0, 255, 10]);
        let request = with_body(
            "POST",
            "/text/echo",
            "application/x-www-form-urlencoded",
            b"a=hi",
        );
        assert_eq!(client.request(&request).text(), "hi");
        let request = with_body("PUT", "/text/put", "text/plain", b"");
        assert_eq!(client.request(&request).text(), "put");
        let request = with_body("DELETE", "/text/delete", "text/plain", b"");
        let response = client.request(&request);
        assert_eq!((response.status, response.text().as_str()), (202, "gone"));
        assert_404(&client.request(&get("/text/none")), "/text/none");
    });
}

/// The reference test's middleware (BEHAVIOUR.md: Dynamic routes › Middleware): checks
/// `query.token`.
fn token_check() -> Middleware {
    middleware(|_req, args| {
        match args
            .query
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or("")
        {
            "secret" => {
                args.meta.insert("username".into(), json!("user"));
                Ok(Next::Continue)
            }
            "default" => Ok(Next::reply(json!({"name": "other"}))),
            "except" => Err(Abort::new(403, "")),
            _ => Ok(Next::reply_with_status("Authentication Required", 401)),
        }
    })
}

#[test]
fn middleware_outcomes() {
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        qs.middlewares(&[token_check()], |s| {
            s.json_get("/api/user_details", None, |_req, args| {
                Ok::<_, Abort>(json!({"name": args.meta.get("username")}))
            });
        });
        qs.pre_middleware(
            |request: &Request| match request.head.field_str("x-block") {
                Some(_) => Err(Abort::new(451, "blocked")),
                None => Ok(()),
            },
        );
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let response = client.request(&get("/api/user_details?token=secret"));
        assert_eq!(ok_json(&response), json!({"name": "user"}));
        let response = client.request(&get("/api/user_details?token=default"));
        assert_eq!(ok_json(&response), json!({"name": "other"}));
        for target in ["/api/user_details", "/api/user_details?token=wrong"] {
            let response = client.request(&get(target));
            assert_eq!(response.status, 401, "{target}");
            assert_eq!(response.header("content-type"), Some("application/json"));
            assert_eq!(response.text(), "\"Authentication Required\"");
        }
        let response = client.request(&get("/api/user_details?token=except"));
        assert_eq!(response.status, 403);
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));
        let blocked =
            "GET /api/user_details?token=secret HTTP/1.1\r\nHost: t\r\nX-Block: 1\r\n\r\n";
        let response = client.request(blocked.as_bytes());
        assert_eq!(
            (response.status, response.reason.as_str()),
            (451, "blocked")
        );
        let blocked = "GET /static.txt HTTP/1.1\r\nHost: t\r\nX-Block: 1\r\n\r\n";
        assert_eq!(
            client.request(blocked.as_bytes()).status,
            451,
            "static paths too"
        );
    });
}

#[test]
fn tokens_expire_on_the_real_clock() {
    each_setup(|setup| token_suite(setup, None));
}

/// The token suite with tokens in a real Redis (each setup on its own key prefix).
#[test]
fn tokens_expire_on_the_real_clock_in_redis() {
    if !have_redis() {
        eprintln!("redis-server not installed: skipped");
        return;
    }
    let redis = RedisServer::start(false);
    each_setup(|setup| token_suite(setup, Some(&redis)));
}

/// A token call from a non-blocking route would wait on Redis on the event loop: it is
/// refused with an error that says what to do; the same handler registered normally works.
#[test]
fn a_token_call_from_a_non_blocking_route_is_refused_with_redis() {
    if !have_redis() {
        eprintln!("redis-server not installed: skipped");
        return;
    }
    let redis = RedisServer::start(false);
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        let options = SharedStateOptions {
            key_prefix: Some(format!("inline{setup:?}:")),
            ..SharedStateOptions::default()
        };
        qs.shared_state(SharedState::open(&redis.url(), options).expect("a Redis URL"));
        let tokens = qs.tokens();
        let count = move |_req: &Request, _args: &mut Args| {
            let tokens = tokens.get_tokens()?;
            Ok::<_, Abort>(json!({ "tokens": tokens.len() }))
        };
        qs.non_blocking(|s| {
            s.json_get("/inline", Some(0), count.clone());
        })
        .json_get("/pooled", Some(0), count);
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let refused = client.request(&get("/inline"));
        assert_eq!(refused.status, 500, "{}", refused.text());
        assert!(
            refused
                .reason
                .contains("a non-blocking route cannot use a remote store"),
            "{}",
            refused.reason
        );
        assert_eq!(
            ok_json(&client.request(&get("/pooled"))),
            json!({"tokens": 0})
        );
    });
}

fn token_suite(setup: Setup, redis: Option<&RedisServer>) {
    // The short expiry in ms: a Redis round trip on a loaded machine needs more room.
    let short: u64 = if redis.is_some() { 600 } else { 100 };
    {
        let mut qs = FacadeServer::builder();
        if let Some(redis) = redis {
            let options = SharedStateOptions {
                key_prefix: Some(format!("{setup:?}:")),
                ..SharedStateOptions::default()
            };
            qs.shared_state(SharedState::open(&redis.url(), options).expect("a Redis URL"));
        }
        let tokens = qs.tokens();
        let store = tokens.clone();
        qs.json_post("/api/token/:name", None, move |_req, args| {
            let name = args.segments.get("name").cloned().unwrap_or_default();
            let expire = match args.post.get("expire_ms") {
                Some(Value::Null) => Expire::Never,
                Some(ms) => Expire::After(Duration::from_millis(ms.as_u64().unwrap_or(0))),
                None => Expire::Default,
            };
            let write = args.post.get("write").cloned();
            let readonly = write.is_none();
            let map = store.get_token_obj(&name, expire, readonly, |map| {
                if let Some(value) = write.clone() {
                    map.insert("value".into(), value);
                }
                map.clone()
            })?;
            Ok::<_, Abort>(json!({"map": map, "tokens": store.get_tokens()?}))
        });
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let mut call = |name: &str, body: Value| {
            ok_json(&client.request(&post_json(&format!("/api/token/{name}"), &body)))
        };
        let answer = call("a", json!({"expire_ms": short, "write": "foo"}));
        assert_eq!(answer["map"], json!({"value": "foo"}));
        assert_eq!(
            call("a", json!({"expire_ms": short}))["map"],
            json!({"value": "foo"})
        );
        assert_eq!(
            call("zero", json!({"expire_ms": 0, "write": 1}))["map"],
            json!({"value": 1})
        );
        assert_eq!(call("zero", json!({"expire_ms": 0}))["map"], json!({}));
        call("n", json!({"expire_ms": null, "write": "kept"}));
        assert_eq!(tokens.get_token_ttl("n").unwrap(), Ttl::Never);
        // On a loaded machine the short expiry may be over already.
        assert!(
            matches!(tokens.get_token_ttl("a").unwrap(), Ttl::Expires(left) if left <= Duration::from_millis(short))
                || tokens.get_token_ttl("a").unwrap() == Ttl::Unknown
        );
        thread::sleep(Duration::from_millis(2 * short));
        let answer = call("n", json!({"expire_ms": short}));
        assert_eq!(answer["map"], json!({"value": "kept"}));
        assert_eq!(answer["tokens"], json!(["n"]), "a expired");
        assert_eq!(tokens.get_token_ttl("a").unwrap(), Ttl::Unknown);
        thread::sleep(Duration::from_millis(2 * short));
        assert!(
            tokens.get_tokens().unwrap().is_empty(),
            "n expires after the re-read with the short expiry"
        );
        let token = tokens.create_token().expect("a random token");
        assert_eq!(token.len(), 32);
        assert_eq!(call(&token, json!({"write": 5}))["tokens"], json!([token]));
        assert!(
            matches!(tokens.get_token_ttl(&token).unwrap(), Ttl::Expires(left) if left > Duration::from_secs(3590))
        );
    }
}

#[test]
fn cors_allow_list_preflight_and_fields() {
    each_setup(|setup| {
        let mut qs = routes();
        qs.cors_origins(["http://app.test"])
            .expect("a valid origin");
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let preflight = "OPTIONS /api/echo HTTP/1.1\r\nHost: t\r\nOrigin: http://app.test\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, x-token\r\n\r\n";
        let response = client.request(preflight.as_bytes());
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("access-control-allow-methods"),
            Some("GET, POST, PUT, DELETE, HEAD")
        );
        assert_eq!(
            response.header("access-control-allow-headers"),
            Some("content-type, x-token")
        );
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("http://app.test")
        );
        assert_eq!(
            response.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(response.header("vary"), Some("Origin"));
        assert_eq!(response.header("access-control-max-age"), Some("0"));
        assert_eq!(response.header("content-length"), Some("0"));
        assert!(response.body.is_empty());
        let simple = "GET /api/echo HTTP/1.1\r\nHost: t\r\nOrigin: http://app.test\r\n\r\n";
        let response = client.request(simple.as_bytes());
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("http://app.test")
        );
        assert_eq!(
            response.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(response.header("access-control-max-age"), None);
        let refused = "OPTIONS /api/echo HTTP/1.1\r\nHost: t\r\nOrigin: http://app.test\r\nAccess-Control-Request-Method: PATCH\r\n\r\n";
        let response = client.request(refused.as_bytes());
        assert_eq!(response.status, 200);
        assert_eq!(response.header("access-control-allow-origin"), None);

        let plain = FacadeServer::start(setup, routes());
        let response = plain.exchange(preflight.as_bytes());
        assert_eq!(response.status, 200);
        assert_eq!(response.header("access-control-allow-origin"), None);
        assert_eq!(response.header("content-length"), Some("0"));
    });
}

/// The credential leak: a page of a foreign origin must read nothing, neither on a
/// preflight nor on the answer itself, and must never be granted credentials.
#[test]
fn cors_a_foreign_origin_reads_nothing() {
    each_setup(|setup| {
        let mut qs = routes();
        qs.cors_origins(["https://app.test"])
            .expect("a valid origin");
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        for origin in [
            "https://evil.test",
            "http://app.test",
            "null",
            "https://app.test.evil",
        ] {
            let preflight = format!("OPTIONS /api/echo HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: GET\r\n\r\n");
            let simple = format!("GET /api/echo HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nCookie: session=secret\r\n\r\n");
            for request in [preflight, simple] {
                let response = client.request(request.as_bytes());
                assert_eq!(response.status, 200, "{origin}");
                let cors: Vec<_> = response
                    .headers
                    .iter()
                    .filter(|(name, _)| name.to_ascii_lowercase().starts_with("access-control-"))
                    .collect();
                assert!(cors.is_empty(), "{origin} was granted {cors:?}");
                assert_eq!(response.header("vary"), Some("Origin"), "{origin}");
            }
        }
    });
}

#[test]
fn cors_any_origin_never_grants_credentials() {
    each_setup(|setup| {
        let mut qs = routes();
        qs.cross_origin(true);
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let response = client.request(b"OPTIONS /anything HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("access-control-max-age"), Some("600"));
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        let simple = "GET /api/echo HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.test\r\n\r\n";
        let response = client.request(simple.as_bytes());
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(response.header("access-control-allow-credentials"), None);
        let response = client.request(&get("/nothing-here"));
        assert_eq!(response.status, 404);
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "error pages too"
        );
    });
}

#[test]
fn a_panicking_handler_is_a_500_and_the_server_goes_on() {
    each_setup(|setup| {
        let mut qs = routes();
        qs.json_get("/api/panic", None, |_req, _args| -> Result<Value, Abort> {
            panic!("handler failure on purpose")
        });
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let response = client.request(&get("/api/panic"));
        assert_eq!(response.status, 500);
        assert!(
            response.reason.contains("handler failure on purpose"),
            "{}",
            response.reason
        );
        assert_eq!(ok_json(&client.request(&get("/x")))["paths"], json!([]));
        assert_eq!(server.exchange(&get("/api/panic")).status, 500);
        assert_eq!(ok_json(&server.exchange(&get("/x")))["paths"], json!([]));
    });
}

#[test]
fn a_slow_handler_does_not_delay_a_file_on_another_connection() {
    each_setup(|setup| {
        let dir = TempDir::new();
        dir.write("hello.txt", "hello\n");
        let mut qs = FacadeServer::builder();
        qs.bind_path("/", dir.path()).expect("bind the folder");
        qs.text_get("/slow", None, |_req, _args| {
            thread::sleep(Duration::from_secs(2));
            Ok::<_, Abort>("slow")
        });
        let server = FacadeServer::start(setup, qs);
        let started = Instant::now();
        let mut slow = server.connect();
        slow.send(&get("/slow")).expect("send the slow request");
        thread::sleep(Duration::from_millis(100));
        let file = server.exchange(&get("/hello.txt"));
        let waited = started.elapsed();
        assert_eq!(file.text(), "hello\n");
        assert!(waited < Duration::from_secs(1), "the file took {waited:?}");
        let response = slow.response();
        assert_eq!(response.text(), "slow");
        assert!(started.elapsed() >= Duration::from_secs(2));
    });
}

#[test]
fn non_blocking_routes_answer_on_the_thread_that_reads_the_request() {
    each_setup(|setup| {
        let where_run = |_req: &Request, _args: &mut Args| {
            let name = thread::current().name().unwrap_or_default().to_owned();
            Ok::<_, Abort>(json!({ "thread": name }))
        };
        let mut qs = FacadeServer::builder();
        qs.non_blocking(|s| {
            s.json_get("/inline", Some(0), where_run);
        })
        .json_get("/pooled", Some(0), where_run);
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        for _ in 0..3 {
            let inline = ok_json(&client.request(&get("/inline")))["thread"].clone();
            let pooled = ok_json(&client.request(&get("/pooled")))["thread"].clone();
            match setup.transport {
                // An event loop answers inline routes; the job pool the others.
                Transport::Mio => {
                    assert!(inline.as_str().unwrap().starts_with("quick-server-mio-"));
                    assert!(pooled.as_str().unwrap().starts_with("quick-server-job-"));
                }
                // One thread serves the whole connection: both run there.
                Transport::Std => {
                    assert!(inline.as_str().unwrap().starts_with("quick-server-std-"));
                    assert_eq!(inline, pooled);
                }
            }
        }
    });
}
