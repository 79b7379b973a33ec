//! The `quick-server` binary, started as a user would with each of its flags, and its exit
//! codes for bad values: 2 and a short pointer to `--help` for a usage error, 1 and one
//! line for a run-time failure, never a panic.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

mod common;

use common::{Process, WAIT};

/// The binary under test.
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quick-server"))
}

/// The binary serving `dir` with `args` (and `--port 0`), its console on a held pipe.
fn serve(dir: &Path, args: &[&str]) -> Process {
    Process::start_program(binary(), args, |command| {
        command
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
    })
}

/// Runs the binary to its end with `args`.
fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

/// A folder of its own under the system's temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// A new folder holding `index.txt`, `hello.txt`, `app.html`, `main.rs` and `sub/a.txt`.
    fn with_files(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("qs-flags-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("sub")).unwrap();
        std::fs::write(path.join("hello.txt"), "hello from disk\n").unwrap();
        std::fs::write(path.join("app.html"), "<p>the app</p>\n").unwrap();
        std::fs::write(path.join("main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(path.join("sub/a.txt"), "a\n").unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One answer: status, head (fields included) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        Self {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }
}

/// The request bytes for `GET path` with `fields`, closing the connection after.
fn request(path: &str, fields: &[&str]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for field in fields {
        request.push_str(field);
        request.push_str("\r\n");
    }
    request + "\r\n"
}

/// `GET path` over plain TCP.
fn get(addr: SocketAddr, path: &str, fields: &[&str]) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request(path, fields).as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    Answer::parse(&raw)
}

/// `GET path` over TLS to `name`, trusting only `root`; the handshake error if it fails.
fn get_tls(
    addr: SocketAddr,
    name: &str,
    root: CertificateDer<'static>,
    path: &str,
) -> Result<Answer, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("a usable root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(request(path, &[]).as_bytes())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server may close without close_notify once the answer is sent.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(Answer::parse(&raw))
}

/// The certificate the server at `addr` presents, whatever it is.
fn presented_certificate(addr: SocketAddr) -> CertificateDer<'static> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).expect("handshake");
    }
    connection.peer_certificates().expect("a certificate")[0].clone()
}

/// Accepts any server certificate: only to read which one a server presents.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `AB:CD:…`, as the binary prints a fingerprint.
fn sha256_hex(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// The line `process` logged before it started that holds `needle`.
fn logged(process: &Process, needle: &str) -> String {
    let seen = process.seen();
    let line = seen.iter().find(|line| line.contains(needle));
    line.cloned()
        .unwrap_or_else(|| panic!("no line with {needle:?} in {seen:#?}"))
}

/// The first certificate in a PEM file.
fn read_cert(path: &Path) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).expect("a PEM certificate")
}

/// The names of the threads of process `pid` (as the kernel keeps them: 15 bytes), once
/// two readings 100 ms apart agree: a new thread names itself once it runs.
fn thread_names(pid: u32) -> Vec<String> {
    let read = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
        let mut names: Vec<String> = tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect();
        names.sort();
        names
    };
    // Settled means the same names over half a second: on a loaded machine a pool may
    // start its threads more than 100 ms apart.
    let deadline = std::time::Instant::now() + WAIT;
    let mut names = read();
    let mut same = 0;
    loop {
        thread::sleep(std::time::Duration::from_millis(100));
        let again = read();
        same = if again == names { same + 1 } else { 0 };
        if same == 5 || std::time::Instant::now() > deadline {
            return again;
        }
        names = again;
    }
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// The `--long` spellings in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (at, _) in text.match_indices("--") {
        let name: String = text[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.len() > 1 && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.insert(format!("--{name}"));
        }
    }
    flags
}

#[test]
fn version_flags_print_the_version_and_exit_zero() {
    for flag in ["-V", "-v", "--version"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text,
            format!("quick-server version {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn help_exits_zero_and_lists_the_options() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.starts_with("quick-server: "), "{help}");
    for flag in [
        "--addr",
        "--port",
        "--tls-self-signed",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
    assert_eq!(run(&["-h"]).stdout, help.as_bytes());
}

/// The README's section on the binary has a list item for each flag `--help` lists, and
/// none for a flag it does not: each item starts with the flags' spelling in backticks.
#[test]
fn readme_lists_every_flag_of_help() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## The binary\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a '## The binary' section in README.md");
    let items: String = section
        .lines()
        .filter_map(|line| line.strip_prefix("- `")?.split('`').next())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        long_flags(&items),
        long_flags(&help),
        "README's binary section and --help differ"
    );
}

#[test]
fn usage_errors_exit_2_with_one_line_and_a_pointer_to_help() {
    let cases: &[&[&str]] = &[
        &["--no-such-flag"],
        &["-x"],
        &["-p", "99999"],
        &["-p", "eighty"],
        &["-p"],
        &["--threads", "0"],
        &["--threads", "100000"],
        &["--loops", "0"],
        &["--max-connections", "0"],
        &["--max-connections", "2000000"],
        &["--loops", "2", "--transport", "std"],
        &["--transport", "tokio"],
        &["--tls-cert", "cert.pem"],
        &["--tls-key", "key.pem"],
        &[
            "--tls-self-signed",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ],
        &["--proxy", "/api/"],
        &["--no-listing=yes"],
    ];
    for args in cases {
        let out = run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("quick-server: "), "{args:?}: {stderr}");
        assert!(lines[1].contains("--help"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(&["-p", "99999"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--port") && stderr.contains("99999"),
        "{stderr}"
    );
}

#[test]
fn run_time_failures_exit_1_with_one_line() {
    let dir = TempDir::with_files("failures");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let missing = dir.0.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let not_a_folder = dir.0.join("hello.txt");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-p", &port], "in use"),
        (
            vec!["-p", "0", "--tls-cert", missing, "--tls-key", missing],
            "missing.pem",
        ),
        (
            vec!["-p", "0", "--www", not_a_folder.to_str().unwrap()],
            "not a folder",
        ),
        (
            vec![
                "-p",
                "0",
                "--proxy",
                "/up/=https://127.0.0.1:1/",
                "--proxy-ca",
                missing,
            ],
            "cannot use proxy CA file",
        ),
        (
            vec!["-p", "0", "--proxy-ca", not_a_folder.to_str().unwrap()],
            "no certificate found",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(binary())
            .args(&args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn addr_and_port_choose_the_listening_socket() {
    let dir = TempDir::with_files("addr");
    // A free port on 127.0.0.2; the server binds it there and not on 127.0.0.1.
    let port = TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_text = port.to_string();
    let mut server = Process::start_program(
        binary(),
        &["-a", "127.0.0.2", "-p", &port_text],
        |command| {
            command
                .current_dir(&dir.0)
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
        },
    );
    // `--port 0` came first on the command line; the later `-p` wins.
    assert_eq!(server.addr.port(), port);
    let addr = SocketAddr::from(([127, 0, 0, 2], port));
    assert_eq!(get(addr, "/hello.txt", &[]).body, "hello from disk\n");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
}

#[test]
fn www_and_the_dir_argument_choose_the_folder() {
    let dir = TempDir::with_files("www");
    let sub = dir.0.join("sub");
    for args in [
        vec!["--www", sub.to_str().unwrap()],
        vec![sub.to_str().unwrap()],
        vec!["sub"],
    ] {
        let server = serve(&dir.0, &args);
        assert_eq!(get(server.addr, "/a.txt", &[]).body, "a\n", "{args:?}");
        assert_eq!(get(server.addr, "/hello.txt", &[]).status, 404, "{args:?}");
    }
}

#[test]
fn tls_cert_and_key_serve_https() {
    let dir = TempDir::with_files("tls");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    for transport in ["mio", "std"] {
        let server = serve(
            &dir.0,
            &[
                "--transport",
                transport,
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        let answer = get_tls(
            server.addr,
            "localhost",
            made.cert.der().clone(),
            "/hello.txt",
        )
        .expect("an HTTPS answer");
        assert_eq!(answer.body, "hello from disk\n", "{transport}");
    }
}

#[test]
fn tls_self_signed_serves_the_certificate_whose_fingerprint_it_logs() {
    let dir = TempDir::with_files("self-signed");
    let server = serve(&dir.0, &["--tls-self-signed"]);
    let logged = logged(&server, "SHA-256 fingerprint ");
    assert!(
        logged.contains("self-signed certificate for localhost 127.0.0.1 ::1;"),
        "{logged}"
    );
    let cert = presented_certificate(server.addr);
    assert!(logged.ends_with(&sha256_hex(&cert)), "{logged}");
    // In memory only: nothing written, no curl hint.
    assert!(!server.seen().iter().any(|line| line.contains("--cacert")));
    for name in ["localhost", "127.0.0.1"] {
        let answer = get_tls(server.addr, name, cert.clone(), "/hello.txt")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.body, "hello from disk\n", "{name}");
    }
    assert!(get_tls(server.addr, "example.com", cert, "/").is_err());
}

#[test]
fn tls_self_signed_with_a_folder_writes_the_certificate_and_reuses_it() {
    let dir = TempDir::with_files("self-signed-cache");
    let cache = dir.0.join("certs");
    let flag = format!("--tls-self-signed={}", cache.display());
    let first = serve(&dir.0, &[&flag]);
    let fingerprint = logged(&first, "SHA-256 fingerprint ");
    let cert_file = cache.join("cert.pem");
    let hint = logged(&first, "curl --cacert");
    assert!(
        hint.contains(&format!(
            "curl --cacert {} https://localhost:{}/",
            cert_file.display(),
            first.addr.port()
        )),
        "{hint}"
    );
    let cert = read_cert(&cert_file);
    assert!(fingerprint.ends_with(&sha256_hex(&cert)), "{fingerprint}");
    let answer = get_tls(first.addr, "localhost", cert.clone(), "/hello.txt").unwrap();
    assert_eq!(answer.body, "hello from disk\n");
    drop(first);
    // The next start serves the same certificate, so a client trusts it once.
    let second = serve(&dir.0, &[&flag]);
    assert_eq!(logged(&second, "SHA-256 fingerprint "), fingerprint);
    assert!(get_tls(second.addr, "127.0.0.1", cert, "/hello.txt").is_ok());
    // The key is for the owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

/// An upstream answering each request with the target it was sent; it runs until the
/// test process ends.
fn upstream() -> SocketAddr {
    named_upstream("")
}

/// [`upstream`] whose answers start with `name`.
fn named_upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut head = Vec::new();
            let mut byte = [0];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let target = head.split(' ').nth(1).unwrap_or("").to_owned();
            let body = format!("{name}upstream saw {target}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn proxy_forwards_a_prefix_to_its_upstream() {
    let dir = TempDir::with_files("proxy");
    let binding = format!("/api/=http://{}/v2/", upstream());
    let server = serve(&dir.0, &["--proxy", &binding]);
    let answer = get(server.addr, "/api/users?id=1", &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "upstream saw /v2/users?id=1");
    assert_eq!(
        get(server.addr, "/hello.txt", &[]).body,
        "hello from disk\n"
    );
}

#[test]
fn proxy_to_an_https_upstream_trusts_the_proxy_ca_file() {
    let dir = TempDir::with_files("proxy-https");
    // The upstream: the binary itself over HTTPS, its certificate written to a folder.
    let cache = dir.0.join("certs");
    let upstream = serve(&dir.0, &[&format!("--tls-self-signed={}", cache.display())]);
    let ca = cache.join("cert.pem");
    let binding = format!("/up/=https://127.0.0.1:{}/sub/", upstream.addr.port());
    let trusting = serve(
        &dir.0,
        &["--proxy", &binding, "--proxy-ca", ca.to_str().unwrap()],
    );
    let answer = get(trusting.addr, "/up/a.txt", &[]);
    assert_eq!((answer.status, answer.body.as_str()), (200, "a\n"));
    // Without the file the system roots do not know the certificate: 502, and why.
    let strict = serve(&dir.0, &["--proxy", &binding]);
    assert_eq!(get(strict.addr, "/up/a.txt", &[]).status, 502);
    let why = strict.expect("proxy: TLS with https://127.0.0.1:");
    assert!(why.contains("invalid peer certificate"), "{why}");
}

#[test]
fn proxy_with_several_upstreams_takes_them_in_turn() {
    let dir = TempDir::with_files("proxy-several");
    let (a, b) = (named_upstream("a "), named_upstream("b "));
    let binding = format!("/api/=http://{a}/,http://{b}/");
    let server = serve(&dir.0, &["--proxy", &binding]);
    let bodies: Vec<String> = (0..4)
        .map(|_| get(server.addr, "/api/x", &[]).body)
        .collect();
    let (first, second) = (&bodies[0], &bodies[1]);
    assert_ne!(first, second, "{bodies:?}");
    assert_eq!(bodies[2..], [first.clone(), second.clone()], "{bodies:?}");
    for body in &bodies {
        assert!(
            body == "a upstream saw /x" || body == "b upstream saw /x",
            "{body}"
        );
    }
}

#[test]
fn proxy_debug_logs_each_proxied_request() {
    let dir = TempDir::with_files("proxy-debug");
    let up = upstream();
    let binding = format!("/api/=http://{up}/");
    let quiet = serve(&dir.0, &["--proxy", &binding]);
    assert_eq!(get(quiet.addr, "/api/q", &[]).status, 200);
    let loud = serve(&dir.0, &["--proxy", &binding, "--proxy-debug"]);
    assert_eq!(get(loud.addr, "/api/users?id=1", &[]).status, 200);
    let line = loud.expect("proxy /api/users?id=1 to GET ");
    assert!(line.contains(&format!("http://{up}/users?id=1")), "{line}");
    assert!(line.contains("headers="), "{line}");
    loud.expect("response ");
    // Without the flag: no such line.
    assert!(
        !quiet.seen().iter().any(|l| l.contains("proxy /api/q")),
        "{:#?}",
        quiet.seen()
    );
}

#[test]
fn spa_answers_unknown_html_requests_with_its_file() {
    let dir = TempDir::with_files("spa");
    let server = serve(&dir.0, &["--spa", "app.html"]);
    let html = ["Accept: text/html"];
    let answer = get(server.addr, "/some/client/route", &html);
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "<p>the app</p>\n")
    );
    assert_eq!(get(server.addr, "/some/client/route", &[]).status, 404);
    let plain = serve(&dir.0, &[]);
    assert_eq!(get(plain.addr, "/some/client/route", &html).status, 404);
}

#[test]
fn cors_lets_the_named_origin_read_with_credentials() {
    let dir = TempDir::with_files("cors");
    let server = serve(&dir.0, &["--cors", "http://app.test"]);
    let answer = get(server.addr, "/hello.txt", &["Origin: http://app.test"]);
    assert!(
        answer
            .head
            .contains("Access-Control-Allow-Origin: http://app.test\r\n"),
        "{}",
        answer.head
    );
    let other = get(server.addr, "/hello.txt", &["Origin: http://evil.test"]);
    assert!(!other.head.contains("Access-Control"), "{}", other.head);
    let plain = serve(&dir.0, &[]);
    let answer = get(plain.addr, "/hello.txt", &["Origin: http://app.test"]);
    assert!(!answer.head.contains("Access-Control"), "{}", answer.head);
}

#[test]
fn transport_and_threads_pick_the_transport_and_its_pool() {
    let dir = TempDir::with_files("threads");
    let mio = serve(&dir.0, &["--transport", "mio", "--threads", "3"]);
    assert_eq!(get(mio.addr, "/hello.txt", &[]).status, 200);
    let names = thread_names(mio.pid());
    // Thread names are cut to 15 bytes: `quick-server-job-N` reads `quick-server-jo`.
    assert_eq!(count(&names, "quick-server-jo"), 3, "{names:?}");
    assert!(count(&names, "quick-server-mi") >= 1, "{names:?}");
    // The std transport keeps `--threads` workers warm, on top of its other threads.
    let std_threads = |threads: &str| {
        let std = serve(&dir.0, &["--transport", "std", "--threads", threads]);
        let names = thread_names(std.pid());
        assert_eq!(count(&names, "quick-server-mi"), 0, "{names:?}");
        count(&names, "quick-server-st")
    };
    assert_eq!(std_threads("9") - std_threads("3"), 6);
}

/// A kept-alive connection that was answered once and stays open.
fn held_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let keep_alive = "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stream.write_all(keep_alive.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0; 1024];
    while !raw.ends_with(b"hello from disk\n") {
        let n = stream.read(&mut buf).expect("an answer");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
    assert_eq!(Answer::parse(&raw).status, 200);
    stream
}

#[test]
fn max_connections_answers_503_past_the_limit() {
    let dir = TempDir::with_files("max-connections");
    for transport in ["mio", "std"] {
        let server = serve(
            &dir.0,
            &["--transport", transport, "--max-connections", "2"],
        );
        let held = [held_connection(server.addr), held_connection(server.addr)];
        let third = get(server.addr, "/hello.txt", &[]);
        assert_eq!(third.status, 503, "{transport}: {}", third.head);
        drop(held);
        // The closes are noticed on the server's own time.
        let deadline = std::time::Instant::now() + WAIT;
        while get(server.addr, "/hello.txt", &[]).status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "{transport}: still full"
            );
            thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The soft and hard open-file limits of process `pid`, from `/proc`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut words = line["Max open files".len()..].split_whitespace();
    let soft = words.next().unwrap().to_owned();
    (soft, words.next().unwrap().to_owned())
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_one() {
    let dir = TempDir::with_files("nofile");
    let server = serve_with_few_files(&dir, &["--max-connections", "1048576"]);
    let (soft, hard) = open_file_limits(server.pid());
    assert_eq!(soft, hard, "started with a soft limit of at most 256");
    assert_ne!(soft, "256");
    let line = logged(&server, "open-file limit");
    assert!(
        line.contains(&format!("({hard})")) && line.contains("(1048576)"),
        "{line}"
    );
    assert_eq!(get(server.addr, "/hello.txt", &[]).status, 200);
}

#[test]
fn on_std_the_open_file_limit_is_checked_for_two_descriptors_a_connection() {
    // A std worker holds its epoll set's descriptor beside its connection's: 2,100
    // connections need 4,200 descriptors, past the hard limit of at most 4,096.
    let dir = TempDir::with_files("nofile-std");
    let args = ["--transport", "std", "--max-connections", "2100"];
    let server = serve_with_few_files(&dir, &args);
    let line = logged(&server, "open-file limit");
    assert!(line.contains("(2100, two descriptors each)"), "{line}");
    assert_eq!(get(server.addr, "/hello.txt", &[]).status, 200);
}

/// The binary started with `args` under a soft open-file limit of at most 256 and a hard
/// one of at most 4,096.
fn serve_with_few_files(dir: &TempDir, args: &[&str]) -> Process {
    use std::os::unix::process::CommandExt;
    Process::start_program(binary(), args, |command| {
        command.current_dir(&dir.0).stdin(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                // Below the connection limit, whatever the machine's hard limit is.
                limit.rlim_max = limit.rlim_max.min(4096);
                limit.rlim_cur = limit.rlim_cur.min(256);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            })
        };
    })
}

#[test]
fn no_listing_hides_folders_without_an_index() {
    let dir = TempDir::with_files("listing");
    let listed = serve(&dir.0, &[]);
    let answer = get(listed.addr, "/sub/", &[]);
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("a.txt"), "{}", answer.body);
    let hidden = serve(&dir.0, &["--no-listing"]);
    let answer = get(hidden.addr, "/sub/", &[]);
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(get(hidden.addr, "/sub/a.txt", &[]).body, "a\n");
}

#[test]
fn answers_are_compressed_unless_no_compress() {
    let dir = TempDir::with_files("compress");
    std::fs::write(dir.0.join("big.txt"), "compress me\n".repeat(1000)).unwrap();
    let on = serve(&dir.0, &[]);
    let answer = get(on.addr, "/big.txt", &["Accept-Encoding: gzip"]);
    assert_eq!(answer.status, 200);
    assert!(
        answer.head.contains("\r\nContent-Encoding: gzip\r\n"),
        "{}",
        answer.head
    );
    assert!(
        answer.head.contains("\r\nVary: Accept-Encoding\r\n"),
        "{}",
        answer.head
    );
    let off = serve(&dir.0, &["--no-compress"]);
    let answer = get(off.addr, "/big.txt", &["Accept-Encoding: gzip"]);
    assert!(!answer.head.contains("Content-Encoding"), "{}", answer.head);
    assert!(!answer.head.contains("Vary"), "{}", answer.head);
    assert_eq!(answer.body, "compress me\n".repeat(1000));
}

#[test]
fn in_a_repository_the_listing_shows_only_what_is_served() {
    let dir = TempDir::with_files("repository");
    for (name, content) in [
        (".git/config", "[core]\n"),
        (".gitignore", "target/\n"),
        ("Cargo.lock", "# lock\n"),
        ("Cargo.toml", "[package]\n"),
        ("README.md", "# readme\n"),
    ] {
        let path = dir.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let server = serve(&dir.0, &[]);
    let answer = get(server.addr, "/", &["Accept: application/json"]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let entries: Value = serde_json::from_str(&answer.body).unwrap();
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sub", "app.html", "hello.txt", "README.md"]);
    for (target, status) in [
        ("/sub/", 200),
        ("/app.html", 200),
        ("/hello.txt", 200),
        ("/README.md", 200),
        ("/.git/", 404),
        ("/.gitignore", 404),
        ("/Cargo.lock", 404),
        ("/Cargo.toml", 404),
        ("/main.rs", 404),
    ] {
        assert_eq!(get(server.addr, target, &[]).status, status, "{target}");
    }
    let page = get(server.addr, "/", &[]).body;
    assert!(!page.contains(".git") && !page.contains("Cargo"), "{page}");
}

#[test]
fn all_files_serves_files_outside_the_white_list() {
    let dir = TempDir::with_files("all-files");
    let default = serve(&dir.0, &[]);
    assert_eq!(get(default.addr, "/main.rs", &[]).status, 404);
    let all = serve(&dir.0, &["--all-files"]);
    assert_eq!(get(all.addr, "/main.rs", &[]).body, "fn main() {}\n");
}

#[test]
fn log_all_logs_successful_requests_too() {
    let dir = TempDir::with_files("log-all");
    let quiet = serve(&dir.0, &[]);
    assert_eq!(get(quiet.addr, "/hello.txt", &[]).status, 200);
    assert_eq!(get(quiet.addr, "/missing.txt", &[]).status, 404);
    // The error is logged; the success before it is not.
    let logged = quiet.expect("/missing.txt");
    assert!(
        !quiet.seen().iter().any(|l| l.contains("/hello.txt")),
        "{logged}"
    );
    let loud = serve(&dir.0, &["--log-all"]);
    assert_eq!(get(loud.addr, "/hello.txt", &[]).status, 200);
    let line = loud.expect("/hello.txt");
    assert!(line.contains("200"), "{line}");
}

#[test]
fn loops_sets_the_event_loops_and_a_restart_with_them_refuses_nothing() {
    let dir = TempDir::with_files("loops");
    let server = serve(&dir.0, &["--loops", "3"]);
    let names = thread_names(server.pid());
    // `quick-server-mio-N` reads `quick-server-mi`.
    assert_eq!(count(&names, "quick-server-mi"), 3, "{names:?}");
    restart_refuses_nothing(server);
}

#[test]
fn a_restart_on_std_refuses_nothing() {
    // Its idle threads all wait on the listening socket the next process takes over.
    let dir = TempDir::with_files("std-restart");
    let server = serve(&dir.0, &["--transport", "std"]);
    let names = thread_names(server.pid());
    assert!(count(&names, "quick-server-st") >= 4, "{names:?}");
    restart_refuses_nothing(server);
}

/// Restarts `server` (SIGHUP: the listening socket passes to a new process) while a
/// client sends requests one connection after another; none may fail.
fn restart_refuses_nothing(mut server: Process) {
    let addr = server.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let (mut served, mut failures) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let answer = std::panic::catch_unwind(|| get(addr, "/hello.txt", &[]));
                match answer {
                    Ok(answer) if answer.status == 200 => served += 1,
                    Ok(answer) => failures.push(answer.status.to_string()),
                    Err(_) => failures.push("no answer".to_owned()),
                }
            }
            (served, failures)
        })
    };
    thread::sleep(std::time::Duration::from_millis(200));
    server.signal(libc::SIGHUP);
    assert_eq!(server.started(), addr);
    thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, failures) = hammer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(served > 0);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().success());
}

/// A `redis-server` on a free loopback port with a temporary folder, killed on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    fn start() -> Self {
        let dir = TempDir::with_files("redis");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let deadline = std::time::Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            thread::sleep(std::time::Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With the `redis` feature the binary serves with a live Redis and refuses a URL that
/// is not one; without it, `--redis` is a one-line error (exit 2).
#[test]
fn redis_needs_the_feature_and_a_redis_url() {
    if !cfg!(feature = "redis") {
        let out = run(&["--redis", "redis://127.0.0.1:1"]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("`redis` feature"), "{stderr}");
        return;
    }
    let redis = Redis::start();
    let dir = TempDir::with_files("redis-flag");
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let server = serve(&dir.0, &["--redis", &url]);
    assert_eq!(
        get(server.addr, "/hello.txt", &[]).body,
        "hello from disk\n"
    );
    let out = run(&["-p", "0", "--redis", "http://127.0.0.1:1"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("redis://"), "{stderr}");
}
