//! Content coding (docs/BEHAVIOUR.md, "Compression") over both transports, plain and TLS:
//! the `Accept-Encoding` matrix with q-values, `Vary`, a tag per representation and
//! `If-None-Match`, precompressed siblings, ranges, handler and worker answers, the route
//! opt-out, proxied answers passed through, and real decoders (`curl --compressed`,
//! Python's `gzip`, `brotli` and `zstandard`) reading our bytes.

use std::fs::File;
use std::io::Read;
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime};

use quick_server::{Abort, CancelFlag, QuickServer};
use quick_server_core::files::crc32_hex;
use quick_server_tests::{each_setup, get, json_of, post_json, FacadeServer, Response, TempDir};
use serde_json::{json, Value};

/// A script of about 20 KiB: compressible, past the 1 KiB minimum.
fn script() -> String {
    (0..400)
        .map(|i| format!("function f{i}(x) {{ return x * {i} + \"{i}\"; }}\n"))
        .collect()
}

/// A big JSON value (about 300 KiB once printed): past the 64 KiB inline budget.
fn big_json() -> Value {
    let rows: Vec<Value> = (0..4000)
        .map(|i| json!({"id": i, "name": format!("row {i}"), "even": i % 2 == 0}))
        .collect();
    json!({ "rows": rows })
}

/// `body` decoded from `coding` (`None`: as it is).
fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        Some("zstd") => zstd::stream::copy_decode(body, &mut out).expect("zstd"),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// A GET with extra header lines (each ending in CRLF).
fn get_with(target: &str, fields: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\n{fields}\r\n").into_bytes()
}

/// A facade server with compression on, serving `dir` at `/`.
fn files_server(dir: &TempDir, configure: impl FnOnce(&mut QuickServer)) -> QuickServer {
    let mut qs = FacadeServer::builder();
    qs.compress(true)
        .bind_path("/", dir.path())
        .expect("bind the folder");
    configure(&mut qs);
    qs
}

#[test]
fn negotiation_matrix_on_a_file() {
    let dir = TempDir::new();
    let text = script();
    dir.write("app.js", &text);
    dir.write("tiny.txt", "tiny");
    let crc = crc32_hex(text.as_bytes());
    each_setup(|setup| {
        let server = FacadeServer::start(setup, files_server(&dir, |_| {}));
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("Accept-Encoding: gzip\r\n", Some("gzip")),
            ("Accept-Encoding: x-gzip\r\n", Some("gzip")),
            ("Accept-Encoding: br\r\n", Some("br")),
            ("Accept-Encoding: zstd\r\n", Some("zstd")),
            ("Accept-Encoding: gzip, deflate, br, zstd\r\n", Some("zstd")),
            ("Accept-Encoding: gzip, deflate, br\r\n", Some("br")),
            ("Accept-Encoding: gzip;q=1, br;q=0.5\r\n", Some("gzip")),
            ("Accept-Encoding: *\r\n", Some("zstd")),
            ("Accept-Encoding: zstd;q=0, *\r\n", Some("br")),
            ("Accept-Encoding: gzip;q=0\r\n", None),
            ("Accept-Encoding: *;q=0\r\n", None),
            ("Accept-Encoding: identity\r\n", None),
            ("Accept-Encoding: deflate\r\n", None),
            ("Accept-Encoding: gzip;q=0.5, identity\r\n", None),
            ("Accept-Encoding: gzip, identity;q=0\r\n", Some("gzip")),
            ("Accept-Encoding: \r\n", None),
        ];
        for (fields, want) in cases {
            let response = server.exchange(&get_with("/app.js", fields));
            assert_eq!(response.status, 200, "{setup} {fields:?}");
            let coding = response.header("content-encoding");
            assert_eq!(coding, *want, "{setup} {fields:?}");
            assert_eq!(
                response.header("vary"),
                Some("Accept-Encoding"),
                "{fields:?}"
            );
            assert_eq!(response.header("content-type"), Some("text/javascript"));
            let tag = match coding {
                Some(token) => format!("\"{crc}-{token}\""),
                None => format!("\"{crc}\""),
            };
            assert_eq!(response.header("etag"), Some(tag.as_str()), "{fields:?}");
            assert_eq!(
                decode(coding, &response.body),
                text.as_bytes(),
                "{fields:?}"
            );
            if coding.is_some() {
                assert!(
                    response.body.len() * 4 < text.len(),
                    "{fields:?} compresses"
                );
            }
        }
        // Under the minimum size only a refused identity compresses.
        let small = server.exchange(&get_with("/tiny.txt", "Accept-Encoding: gzip\r\n"));
        assert_eq!(small.header("content-encoding"), None);
        assert_eq!(small.header("vary"), Some("Accept-Encoding"));
        let forced = server.exchange(&get_with(
            "/tiny.txt",
            "Accept-Encoding: gzip, identity;q=0\r\n",
        ));
        assert_eq!(forced.header("content-encoding"), Some("gzip"));
        assert_eq!(decode(Some("gzip"), &forced.body), b"tiny");
    });
}

#[test]
fn vary_and_a_tag_per_representation() {
    let dir = TempDir::new();
    let text = script();
    dir.write("app.js", &text);
    dir.write("pic.png", text.as_bytes());
    let crc = crc32_hex(text.as_bytes());
    each_setup(|setup| {
        let server = FacadeServer::start(setup, files_server(&dir, |_| {}));
        let mut client = server.connect();
        for token in ["gzip", "br", "zstd"] {
            let tag = format!("\"{crc}-{token}\"");
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                let fields = format!("Accept-Encoding: {token}\r\nIf-None-Match: {tag}\r\n");
                let not_modified = client.request(&get_with("/app.js", &fields));
                assert_eq!(not_modified.status, 304, "{setup} {token}");
                assert_eq!(not_modified.header("etag"), Some(tag.as_str()));
                assert_eq!(not_modified.header("vary"), Some("Accept-Encoding"));
            }
            // The identity tag names another representation: a full answer.
            let fields = format!("Accept-Encoding: {token}\r\nIf-None-Match: \"{crc}\"\r\n");
            let full = client.request(&get_with("/app.js", &fields));
            assert_eq!(full.status, 200);
            assert_eq!(full.header("content-encoding"), Some(token));
            // And the coded tag does not match the identity answer.
            let fields = format!("If-None-Match: {tag}\r\n");
            assert_eq!(client.request(&get_with("/app.js", &fields)).status, 200);
        }
        let fields = format!("If-None-Match: \"{crc}\"\r\n");
        let plain = client.request(&get_with("/app.js", &fields));
        assert_eq!(plain.status, 304);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        // Already-compressed media neither varies nor is compressed.
        let png = client.request(&get_with("/pic.png", "Accept-Encoding: gzip\r\n"));
        assert_eq!(png.header("content-encoding"), None);
        assert_eq!(png.header("vary"), None);
        assert_eq!(png.body, text.as_bytes());
    });
}

#[test]
fn range_requests_get_the_identity_representation() {
    let dir = TempDir::new();
    let text = script();
    dir.write("app.js", &text);
    each_setup(|setup| {
        let server = FacadeServer::start(setup, files_server(&dir, |_| {}));
        let fields = "Accept-Encoding: gzip, br, zstd\r\nRange: bytes=10-19\r\n";
        let ranged = server.exchange(&get_with("/app.js", fields));
        assert_eq!(ranged.status, 206, "{setup}");
        assert_eq!(ranged.header("content-encoding"), None);
        assert_eq!(ranged.header("vary"), Some("Accept-Encoding"));
        let want = format!("bytes 10-19/{}", text.len());
        assert_eq!(ranged.header("content-range"), Some(want.as_str()));
        assert_eq!(ranged.body, &text.as_bytes()[10..20]);
    });
}

/// Sets the modification time of `path`.
fn set_modified(path: &std::path::Path, when: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .expect("set the modification time");
}

#[test]
fn precompressed_siblings_chosen_or_ignored() {
    let dir = TempDir::new();
    let text = script();
    let base = dir.write("app.js", &text);
    // The siblings hold other text than the file, so the tests can tell them apart.
    let made = |coding: &str| -> Vec<u8> {
        let marker = format!("precompressed {coding} sibling\n").repeat(50);
        match coding {
            "br" => {
                let mut out = Vec::new();
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
                std::io::Write::write_all(&mut w, marker.as_bytes()).unwrap();
                drop(w);
                out
            }
            "gz" => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                std::io::Write::write_all(&mut w, marker.as_bytes()).unwrap();
                w.finish().unwrap()
            }
            _ => zstd::bulk::compress(marker.as_bytes(), 19).unwrap(),
        }
    };
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    set_modified(&base, an_hour_ago);
    for ext in ["br", "gz", "zst"] {
        dir.write(&format!("app.js.{ext}"), made(ext));
    }
    // Older than its file: stale, never used.
    let old = dir.write("old.js", &text);
    dir.write("old.js.br", made("br"));
    set_modified(&dir.path().join("old.js.br"), an_hour_ago);
    set_modified(&old, SystemTime::now());
    // Hidden base names are never served, whatever siblings they have.
    dir.write(".hidden.js", &text);
    dir.write(".hidden.js.br", made("br"));
    each_setup(|setup| {
        let server = FacadeServer::start(
            setup,
            files_server(&dir, |qs| {
                // The siblings' own names are on no white list; `.gz` is black-listed.
                qs.add_default_white_list()
                    .add_file_patterns(["*.gz"], true);
            }),
        );
        let marker = |coding: &str| format!("precompressed {coding} sibling\n").repeat(50);
        let br = server.exchange(&get_with("/app.js", "Accept-Encoding: br, gzip\r\n"));
        assert_eq!(br.header("content-encoding"), Some("br"), "{setup}");
        assert_eq!(br.header("content-type"), Some("text/javascript"));
        assert_eq!(decode(Some("br"), &br.body), marker("br").as_bytes());
        let tag = format!("\"{}-br\"", crc32_hex(&made("br")));
        assert_eq!(br.header("etag"), Some(tag.as_str()));
        let fields = format!("Accept-Encoding: br\r\nIf-None-Match: {tag}\r\n");
        assert_eq!(server.exchange(&get_with("/app.js", &fields)).status, 304);
        let zstd = server.exchange(&get_with("/app.js", "Accept-Encoding: zstd\r\n"));
        assert_eq!(decode(Some("zstd"), &zstd.body), marker("zst").as_bytes());
        // The black-listed .gz sibling is ignored: gzip made on the fly.
        let gzip = server.exchange(&get_with("/app.js", "Accept-Encoding: gzip\r\n"));
        assert_eq!(gzip.header("content-encoding"), Some("gzip"));
        assert_eq!(decode(Some("gzip"), &gzip.body), text.as_bytes());
        let stale = server.exchange(&get_with("/old.js", "Accept-Encoding: br\r\n"));
        assert_eq!(stale.header("content-encoding"), Some("br"));
        assert_eq!(decode(Some("br"), &stale.body), text.as_bytes());
        for target in ["/.hidden.js", "/app.js.br", "/app.js.gz"] {
            let refused = server.exchange(&get_with(target, "Accept-Encoding: br, gzip\r\n"));
            assert_eq!(refused.status, 404, "{setup} {target}");
        }
    });
}

#[test]
fn handler_and_worker_answers_are_compressed() {
    let small = json!({"rows": (0..400).collect::<Vec<_>>()}); // about 3 KiB: compressed inline
    let big = big_json();
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        qs.compress(true);
        let (s, b) = (small.clone(), big.clone());
        qs.json_get("/api/small", None, move |_, _| Ok::<_, Abort>(s.clone()));
        qs.json_get("/api/big", None, move |_, _| Ok::<_, Abort>(b.clone()));
        let b = big.clone();
        qs.non_blocking(|qs| {
            qs.json_get("/api/inline", None, move |_, _| Ok::<_, Abort>(b.clone()));
        });
        let b = big.clone();
        qs.json_worker("/api/fast", None, move |_: Value, _: &CancelFlag| {
            Ok::<_, Abort>(b.clone())
        });
        let b = big.clone();
        qs.json_worker("/api/slow", None, move |_: Value, _: &CancelFlag| {
            thread::sleep(Duration::from_millis(300));
            Ok::<_, Abort>(b.clone())
        });
        let b = big.clone();
        qs.uncompressed(|qs| {
            let w = b.clone();
            qs.json_get("/api/secret", None, move |_, _| Ok::<_, Abort>(b.clone()));
            qs.json_worker("/api/secret-work", None, move |_: Value, _: &CancelFlag| {
                Ok::<_, Abort>(w.clone())
            });
        });
        let server = FacadeServer::start(setup, qs);
        let mut client = server.connect();
        let read = |response: &Response| -> Value {
            let coding = response.header("content-encoding");
            serde_json::from_slice(&decode(coding, &response.body)).expect("JSON")
        };
        for (target, want) in [
            ("/api/small", &small),
            ("/api/big", &big),
            ("/api/inline", &big),
        ] {
            for token in ["gzip", "br", "zstd"] {
                let fields = format!("Accept-Encoding: {token}\r\n");
                let response = client.request(&get_with(target, &fields));
                assert_eq!(response.status, 200, "{setup} {target}");
                assert_eq!(response.header("content-encoding"), Some(token), "{target}");
                assert_eq!(response.header("vary"), Some("Accept-Encoding"));
                assert_eq!(read(&response), *want, "{target} {token}");
                // The coded answer's tag revalidates it.
                let tag = response.header("etag").expect("a tag").to_owned();
                assert!(tag.ends_with(&format!("-{token}\"")), "{tag}");
                let fields = format!("{fields}If-None-Match: {tag}\r\n");
                let again = client.request(&get_with(target, &fields));
                assert_eq!(again.status, 304, "{setup} {target} {token}");
                assert_eq!(again.header("etag"), Some(tag.as_str()));
                assert_eq!(again.header("vary"), Some("Accept-Encoding"));
            }
            let plain = client.request(&get(target));
            assert_eq!(plain.header("content-encoding"), None);
            assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
            assert_eq!(json_of(&plain), *want);
        }
        let secret = client.request(&get_with("/api/secret", "Accept-Encoding: gzip\r\n"));
        assert_eq!(secret.header("content-encoding"), None, "opted out");
        assert_eq!(secret.header("vary"), None);
        assert_eq!(json_of(&secret), big);
        // A worker's result rides on the start answer when the computation ends within
        // the start's 100 ms wait, else on a later `get`; either way it is compressed.
        let worker = |url: &str, body: Value| {
            let mut request = post_json(url, &body);
            let at = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
            request.splice(at..at, b"Accept-Encoding: gzip\r\n".iter().copied());
            let response = client_request(&server, &request);
            assert_eq!(response.header("vary"), Some("Accept-Encoding"), "{url}");
            let answer = read(&response);
            if answer["done"] == true {
                assert_eq!(response.header("content-encoding"), Some("gzip"), "{url}");
            }
            answer
        };
        for url in ["/api/fast", "/api/slow"] {
            let mut answer = worker(url, json!({"action": "start"}));
            let token = answer["token"].clone();
            for _ in 0..200 {
                if answer["done"] == true {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
                answer = worker(url, json!({"action": "get", "token": token}));
            }
            let result = answer["result"].as_str().expect("the result's JSON text");
            let result: Value = serde_json::from_str(result).expect("JSON");
            assert_eq!(result, big, "{setup} {url}");
        }
        // A worker registered inside `uncompressed` never codes its answers.
        let mut request = post_json("/api/secret-work", &json!({"action": "start"}));
        let at = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
        request.splice(at..at, b"Accept-Encoding: gzip\r\n".iter().copied());
        let mut answer = client_request(&server, &request);
        for _ in 0..200 {
            assert_eq!(answer.header("content-encoding"), None, "{setup} opted out");
            assert_eq!(answer.header("vary"), None, "{setup}");
            let reply = json_of(&answer);
            if reply["done"] == true {
                let result: Value =
                    serde_json::from_str(reply["result"].as_str().expect("text")).expect("JSON");
                assert_eq!(result, big, "{setup}");
                break;
            }
            thread::sleep(Duration::from_millis(50));
            let get = json!({"action": "get", "token": reply["token"]});
            let mut request = post_json("/api/secret-work", &get);
            request.splice(at..at, b"Accept-Encoding: gzip\r\n".iter().copied());
            answer = client_request(&server, &request);
        }
        assert_eq!(json_of(&answer)["done"], true, "{setup} the job ended");
    });
}

/// One request on a new connection.
fn client_request(server: &FacadeServer, request: &[u8]) -> Response {
    server.connect().request(request)
}

#[test]
fn off_by_default_in_the_library() {
    let dir = TempDir::new();
    dir.write("app.js", script());
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        qs.bind_path("/", dir.path()).expect("bind");
        qs.json_get("/api/big", None, |_, _| Ok::<_, Abort>(big_json()));
        let server = FacadeServer::start(setup, qs);
        for target in ["/app.js", "/api/big"] {
            let response = server.exchange(&get_with(target, "Accept-Encoding: gzip, br\r\n"));
            assert_eq!(response.status, 200);
            assert_eq!(
                response.header("content-encoding"),
                None,
                "{setup} {target}"
            );
            assert_eq!(response.header("vary"), None);
        }
    });
}

#[test]
fn proxied_answers_pass_through_as_the_upstream_sent_them() {
    let big = big_json();
    let mut up = FacadeServer::builder();
    let b = big.clone();
    up.compress(true)
        .json_get("/api/zipped", None, move |_, _| Ok::<_, Abort>(b.clone()));
    let b = big.clone();
    up.uncompressed(|up| {
        up.json_get("/api/plain", None, move |_, _| Ok::<_, Abort>(b.clone()));
    });
    let upstream = FacadeServer::start(quick_server_tests::Setup::ALL[0], up);
    let url = format!("http://{}/api/", upstream.addr());
    let direct = upstream.exchange(&get_with("/api/zipped", "Accept-Encoding: br\r\n"));
    assert_eq!(direct.header("content-encoding"), Some("br"));
    each_setup(|setup| {
        let mut qs = FacadeServer::builder();
        qs.compress(true)
            .bind_proxy("/api/", &url)
            .expect("bind the proxy");
        let server = FacadeServer::start(setup, qs);
        let zipped = server.exchange(&get_with("/api/zipped", "Accept-Encoding: br\r\n"));
        assert_eq!(zipped.header("content-encoding"), Some("br"), "{setup}");
        assert_eq!(zipped.body, direct.body, "the upstream's bytes");
        let plain = server.exchange(&get_with("/api/plain", "Accept-Encoding: gzip, br\r\n"));
        assert_eq!(plain.status, 200);
        assert_eq!(
            plain.header("content-encoding"),
            None,
            "not compressed again"
        );
        assert_eq!(json_of(&plain), big);
    });
}

#[test]
fn curl_compressed_reads_files_and_handlers() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is needed (tests/run installs it)");
    }
    let dir = TempDir::new();
    let text = script();
    dir.write("app.js", &text);
    let big = big_json();
    each_setup(|setup| {
        let mut qs = files_server(&dir, |_| {});
        let b = big.clone();
        qs.json_get("/api/big", None, move |_, _| Ok::<_, Abort>(b.clone()));
        let server = FacadeServer::start(setup, qs);
        let scheme = if setup.tls { "https" } else { "http" };
        for (path, want) in [
            ("/app.js", text.clone().into_bytes()),
            ("/api/big", serde_json::to_vec(&big).unwrap()),
        ] {
            let url = format!("{scheme}://{}{path}", server.addr());
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "-k",
                    "--compressed",
                    "-D",
                    "-",
                    "--max-time",
                    "20",
                    &url,
                ])
                .output()
                .expect("run curl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let split = out
                .stdout
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap();
            let head = String::from_utf8_lossy(&out.stdout[..split]).to_ascii_lowercase();
            let body = &out.stdout[split + 4..];
            assert!(
                head.contains("content-encoding: "),
                "{setup} {path}: {head}"
            );
            if path == "/app.js" {
                assert_eq!(body, &want[..], "{path}");
            } else {
                let got: Value = serde_json::from_slice(body).expect("JSON");
                assert_eq!(got, big);
            }
        }
    });
}

#[test]
fn python_decoders_read_our_bytes() {
    let check = Command::new("python3")
        .args(["-c", "import gzip, brotli, zstandard"])
        .output();
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "python3 with brotli and zstandard is needed (tests/run installs them)"
    );
    let dir = TempDir::new();
    let text = script();
    dir.write("app.js", &text);
    let expected = dir.write("expected", &text);
    each_setup(|setup| {
        let server = FacadeServer::start(setup, files_server(&dir, |_| {}));
        for token in ["gzip", "br", "zstd"] {
            let fields = format!("Accept-Encoding: {token}\r\n");
            let response = server.exchange(&get_with("/app.js", &fields));
            assert_eq!(response.header("content-encoding"), Some(token));
            let encoded = dir.write(&format!("body.{setup}.{token}"), &response.body);
            let script = "import sys, gzip, brotli, zstandard\n\
                 data = open(sys.argv[2], 'rb').read()\n\
                 out = {'gzip': gzip.decompress, 'br': brotli.decompress,\n\
                        'zstd': lambda d: zstandard.ZstdDecompressor().decompressobj().decompress(d)}[sys.argv[1]](data)\n\
                 sys.exit(0 if out == open(sys.argv[3], 'rb').read() else 1)\n";
            let status = Command::new("python3")
                .arg("-c")
                .arg(script)
                .arg(token)
                .arg(&encoded)
                .arg(&expected)
                .status()
                .expect("run python3");
            assert!(
                status.success(),
                "{setup} {token}: Python decoded other bytes"
            );
        }
    });
}
