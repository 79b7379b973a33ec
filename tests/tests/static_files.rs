//! Issue 3 over both transports, plain and TLS: folder bindings, white and black lists,
//! hidden names, directories (redirect, index, listing), the path-escape list, symlink
//! policies, CRC-32 ETags and conditional requests, ranges, HEAD, favicons, the
//! single-page-app fallback, content types and `Cache-Control`.
//!
//! Multi-range requests answer a `multipart/byteranges` 206 with sorted, coalesced parts;
//! more than `MAX_RANGES` ranges, or ranges adding up to more than the file, get the whole
//! file.

use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use quick_server_core::files::{
    crc32_hex, Favicon, StaticFiles, SymlinkPolicy, EMPTY_FAVICON, MAX_RANGES, SETTLE_TIME,
};
use quick_server_tests::{each_setup, Response, Setup, TempDir, TestServer};

/// Lies next to the served folder: no request may ever return it.
const SECRET: &str = "TOP-SECRET-7f3a9c-do-not-serve";
/// A fixed ETag vector: `format(zlib.crc32(b"etag vector 8\n"), "x")` in Python 3 is
/// `2c1b83c` (seven digits: no leading zero is added).
const VECTOR: &str = "etag vector 8\n";
const VECTOR_CRC: &str = "2c1b83c";
/// `zlib.crc32(b"etag vector 9\n")` = `1bda897d` (same length as [`VECTOR`]).
const VECTOR_9: &str = "etag vector 9\n";
const VECTOR_9_CRC: &str = "1bda897d";
/// `zlib.crc32(b"hello, world\n")` = `f4247453`.
const HELLO: &str = "hello, world\n";
const HELLO_CRC: &str = "f4247453";
/// Twenty bytes for the range tests; `zlib.crc32` gives `638c0d29`.
const DIGITS: &str = "0123456789abcdefghij";
const DIGITS_CRC: &str = "638c0d29";
/// 2020-01-01T00:00:00Z, the modification time set on files whose dates are tested.
const Y2020: u64 = 1_577_836_800;
const Y2020_HTTP: &str = "Wed, 01 Jan 2020 00:00:00 GMT";

/// A server of `<base>/www` bound at `/`, with `<base>/secret.txt` next to it. The server
/// is stopped before the folder is removed (field order).
struct Site {
    server: TestServer,
    dir: TempDir,
}

impl Site {
    /// `<base>/www`.
    fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// A GET on a new connection.
    fn get(&self, target: &str) -> Response {
        self.send(&request("GET", target, &[]))
    }

    /// `bytes` on a new connection; the only (or last) response.
    fn send(&self, bytes: &[u8]) -> Response {
        let mut responses = self.server.send_raw(bytes);
        let last = responses.pop();
        last.unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(bytes)))
    }
}

/// Writes `files` (paths relative to the base folder, `www/…` for served ones) and the
/// secret, binds `www` at `/`, then lets `configure` change the file options.
fn site(
    setup: Setup,
    files: &[(&str, &[u8])],
    configure: impl FnOnce(&mut StaticFiles, &Path),
) -> Site {
    let dir = TempDir::new();
    dir.write("secret.txt", SECRET);
    std::fs::create_dir_all(dir.path().join("www")).expect("create www");
    for (name, contents) in files {
        dir.write(name, contents);
    }
    let base = dir.path().to_owned();
    let server = TestServer::start(setup, move |mut builder| {
        let files = builder.files();
        files.bind_path("/", base.join("www")).expect("bind www");
        configure(files, &base);
        builder
    });
    Site { server, dir }
}

fn request(method: &str, target: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in fields {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn get(target: &str) -> Vec<u8> {
    request("GET", target, &[])
}

/// Sets the modification time of `path`.
fn set_mtime(path: &Path, secs: u64) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .expect("set the modification time");
}

#[track_caller]
fn assert_served(r: &Response, body: &str, what: &str) {
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, body),
        "{what}: {:?} {:?}",
        r.reason,
        r.headers
    );
}

#[track_caller]
fn assert_not_found(r: &Response, what: &str) {
    assert_eq!(
        (r.status, r.reason.as_str()),
        (404, "File not found"),
        "{what}: {}",
        r.text()
    );
    assert!(r.text().contains("Message: File not found."), "{what}");
}

// --- Bindings --------------------------------------------------------------------------

#[test]
fn bindings_newest_first_fallback_last() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("a/both.txt", b"from a"),
                ("b/both.txt", b"from b"),
                ("f/both.txt", b"from f"),
                ("a/a_f.txt", b"a over f"),
                ("f/a_f.txt", b"f under a"),
                ("f/only_f.txt", b"only in f"),
                ("a/only_a.txt", b"only in a"),
                ("c/c.txt", b"from c"),
                ("www/x/c.txt", b"www shadowed"),
                ("www/root.txt", b"root of www"),
            ],
            |files, base| {
                // Added first but tried last; the later `bind_path`s go in front of it.
                files.bind_path_fallback("/", base.join("f")).unwrap();
                files.bind_path("/", base.join("a")).unwrap();
                files.bind_path("/", base.join("b")).unwrap();
                files.bind_path("/x/", base.join("c")).unwrap();
            },
        );
        // Order now: /x/ -> c, / -> b, / -> a, / -> www, / -> f.
        assert_served(&site.get("/both.txt"), "from b", "newest binding wins");
        assert_served(&site.get("/a_f.txt"), "a over f", "fallback is last");
        assert_served(&site.get("/only_a.txt"), "only in a", "older binding");
        assert_served(&site.get("/only_f.txt"), "only in f", "fallback");
        assert_served(&site.get("/root.txt"), "root of www", "oldest bind_path");
        assert_served(&site.get("/x/c.txt"), "from c", "longer prefix, newest");
        assert_not_found(&site.get("/nowhere.txt"), "in no folder");
    });
}

#[test]
fn a_prefix_binding_only_serves_below_it() {
    each_setup(|setup| {
        let dir = TempDir::new();
        dir.write("pub/p.txt", "public");
        dir.write("secret.txt", SECRET);
        let base = dir.path().to_owned();
        let server = TestServer::start(setup, move |mut builder| {
            let files = builder.files();
            assert_eq!(
                files
                    .bind_path("pub/", base.join("pub"))
                    .unwrap_err()
                    .to_string(),
                "name must start and end with \"/\": pub/"
            );
            assert!(files.bind_path("/pub", base.join("pub")).is_err());
            assert!(files.bind_path_fallback("", base.join("pub")).is_err());
            files.bind_path("/pub/", base.join("pub")).unwrap();
            builder
        });
        let mut client = server.connect();
        let r = client.request(&get("/pub/p.txt"));
        assert_served(&r, "public", "under the prefix");
        for target in ["/p.txt", "/secret.txt", "/pub/../secret.txt", "/pubp.txt"] {
            let r = client.request(&get(target));
            assert_not_found(&r, target);
        }
        // `/pub` (no slash) matches no binding: no redirect, a 404.
        assert_not_found(&client.request(&get("/pub")), "/pub");
        drop(server);
    });
}

// --- White and black lists -------------------------------------------------------------

/// The 21 default white-list extensions, exactly.
const DEFAULT_WHITE: [&str; 21] = [
    "css", "csv", "eot", "gif", "htm", "html", "ico", "jpeg", "jpg", "js", "json", "md", "otf",
    "pdf", "png", "svg", "tsv", "ttf", "txt", "woff", "woff2",
];

#[test]
fn default_white_list_is_exactly_the_originals() {
    each_setup(|setup| {
        let mut files: Vec<(String, Vec<u8>)> = DEFAULT_WHITE
            .iter()
            .map(|ext| (format!("www/f.{ext}"), ext.as_bytes().to_vec()))
            .collect();
        let refused = [
            "f.py",
            "f.sh",
            "f.exe",
            "f.HTML",
            "f.txt.bak",
            "f.jsx",
            "f.xml",
            "noext",
            "f.woff3",
        ];
        for name in refused {
            files.push((format!("www/{name}"), b"refused".to_vec()));
        }
        files.push(("www/sub/index.html".into(), b"index".to_vec()));
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_slice()))
            .collect();
        let site = site(setup, &files, |files, _| {
            files.filter.add_default_white_list()
        });
        let mut client = site.server.connect();
        for ext in DEFAULT_WHITE {
            let r = client.request(&get(&format!("/f.{ext}")));
            assert_served(&r, ext, ext);
        }
        for name in refused {
            let r = client.request(&get(&format!("/{name}")));
            assert_not_found(&r, name);
        }
        // Directories bypass the list: the redirect and the index page still work.
        let r = client.request(&get("/sub"));
        assert_eq!(r.status, 301, "directory with a white list");
        assert_served(&client.request(&get("/sub/")), "index", "index page");
        // Without any list the `.py` file is served as Python source.
        let open = site_without_lists(setup);
        let r = open.get("/f.py");
        assert_served(&r, "print(1)\n", ".py without a white list");
        assert_eq!(r.header("content-type"), Some("text/x-python"));
    });
}

fn site_without_lists(setup: Setup) -> Site {
    site(setup, &[("www/f.py", b"print(1)\n")], |_, _| {})
}

#[test]
fn black_list_wins_over_white_list() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/a.txt", b"a"),
                ("www/no.txt", b"black"),
                ("www/a.secret", b"black"),
                ("www/private/x.txt", b"black"),
                ("www/a.py", b"not white"),
                ("www/public/y.txt", b"y"),
            ],
            |files, _| {
                files.filter.add(["*.txt", "*.secret"], false);
                files
                    .filter
                    .add(["*/no.txt", "*.secret", "*/private/*"], true);
            },
        );
        assert_served(&site.get("/a.txt"), "a", "white");
        assert_served(&site.get("/public/y.txt"), "y", "white, in a folder");
        for target in ["/no.txt", "/a.secret", "/private/x.txt", "/a.py"] {
            assert_not_found(&site.get(target), target);
        }
    });
}

#[test]
fn black_list_alone_allows_everything_else() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[("www/a.py", b"py"), ("www/b.log", b"log")],
            |files, _| files.filter.add(["*.log"], true),
        );
        assert_served(&site.get("/a.py"), "py", "not black");
        assert_not_found(&site.get("/b.log"), "black");
    });
}

/// Path translation checks the lists *after* the index page replaced the folder, so a
/// black-listed `index.html` is not served.
#[test]
fn index_page_obeys_the_lists() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[("www/sub/index.html", b"black index"), ("www/a.txt", b"a")],
            |files, _| files.filter.add(["*/index.html"], true),
        );
        let r = site.get("/sub/");
        assert_eq!(r.status, 404, "{setup}: got {:?}", r.text());
        assert_ne!(r.text(), "black index");
    });
}

// --- Hidden names ----------------------------------------------------------------------

#[test]
fn hidden_files_and_folders_are_404() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/.git/config", b"[core]"),
                ("www/.git/index.html", b"git index"),
                ("www/.hidden/s.txt", b"hidden"),
                ("www/a/.env", b"KEY=1"),
                ("www/.env", b"KEY=2"),
                ("www/a/visible.txt", b"visible"),
                ("fallback/.only_here.txt", b"hidden in fallback"),
            ],
            |files, base| {
                files.directory_listing = true;
                files
                    .bind_path_fallback("/", base.join("fallback"))
                    .unwrap();
            },
        );
        let mut client = site.server.connect();
        for target in [
            "/.git/",
            "/.git",
            "/.git/config",
            "/.git/index.html",
            "/.hidden/s.txt",
            "/.hidden/",
            "/a/.env",
            "/.env",
            "/%2egit/config",
            "/a/%2Eenv",
            "/.only_here.txt",
            "/a/.env?x=1",
            "/a/.env;p",
        ] {
            let r = client.request(&get(target));
            assert_not_found(&r, target);
            assert!(!r.closes(), "{target}: a 404 keeps the connection");
        }
        assert_served(
            &client.request(&get("/a/visible.txt")),
            "visible",
            "a visible file",
        );
        // Not listed either: a listing shows only what a GET serves.
        let page = client.request(&get("/a/")).text();
        assert!(
            page.contains(">visible.txt<") && !page.contains(".env"),
            "{page}"
        );
    });
}

// --- Directories -----------------------------------------------------------------------

#[test]
fn directory_without_slash_redirects() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/sub/index.html", b"sub index"),
                ("www/evil.com/index.html", b"evil"),
                ("www/a/b/index.html", b"deep"),
            ],
            |_, _| {},
        );
        let mut client = site.server.connect();
        for (target, location) in [
            ("/sub", "/sub/"),
            ("/sub?x=1", "/sub/?x=1"),
            ("/sub?x=1&y=%20", "/sub/?x=1&y=%20"),
            ("/a/b", "/a/b/"),
            ("/a/b?", "/a/b/?"),
            ("//sub", "/sub/"),
            ("///sub", "/sub/"),
            ("//evil.com", "/evil.com/"),
            ("//evil.com?x=//y", "/evil.com/?x=//y"),
            ("http://test//evil.com", "/evil.com/"),
            ("http://test/sub?q", "/sub/?q"),
        ] {
            let r = client.request(&get(target));
            assert_eq!(
                (r.status, r.reason.as_str(), r.header("location")),
                (301, "Use index page with slash", Some(location)),
                "{target}"
            );
            assert_eq!(r.header("content-length"), Some("0"), "{target}");
            assert!(r.body.is_empty() && !r.closes(), "{target}");
        }
        assert_served(
            &client.request(&get("/sub/")),
            "sub index",
            "after redirect",
        );
    });
}

/// However a target is spelt, a `Location` never starts with `//` or `/\` (which a
/// browser reads as another host).
#[test]
fn redirects_never_leave_the_host() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/evil.com/index.html", b"evil"),
                ("www/sub/evil.com/index.html", b"evil"),
            ],
            |_, _| {},
        );
        for target in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "/\\/evil.com",
            "//\\evil.com",
            "/%2fevil.com",
            "/%5cevil.com",
            "/%2F%2Fevil.com",
            "/./evil.com",
            "/.//evil.com",
            "//./evil.com",
            "/sub/..//evil.com",
            "/sub/../\\evil.com",
            "//sub/evil.com",
            "\\\\evil.com",
            "http://test//evil.com",
            "http://test///evil.com",
            "http://test/\\evil.com",
        ] {
            let r = site.send(&get(target));
            if let Some(location) = r.header("location") {
                assert!(
                    !location.starts_with("//") && !location.starts_with("/\\"),
                    "{target} -> {location}"
                );
                assert!(location.starts_with('/'), "{target} -> {location}");
            }
            assert!(
                r.status == 301 || (400..500).contains(&r.status),
                "{target}: {}",
                r.status
            );
        }
    });
}

#[test]
fn index_html_then_index_htm() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/index.html", b"root index"),
                ("www/both/index.html", b"html wins"),
                ("www/both/index.htm", b"htm loses"),
                ("www/htm/index.htm", b"htm only"),
                (
                    "www/dir_named/index.html/x.txt",
                    b"a folder named index.html",
                ),
                ("www/dir_named/index.htm", b"the htm file"),
            ],
            |_, _| {},
        );
        let r = site.get("/");
        assert_served(&r, "root index", "/");
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_served(&site.get("/both/"), "html wins", "both");
        let r = site.get("/htm/");
        assert_served(&r, "htm only", "htm");
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert_served(
            &site.get("/dir_named/"),
            "the htm file",
            "index.html is a folder",
        );
        assert_served(&site.get("/both/index.htm"), "htm loses", "by name");
    });
}

#[test]
fn listing_when_disabled_is_404() {
    each_setup(|setup| {
        let site = site(setup, &[("www/list/a.txt", b"a")], |_, _| {});
        let mut client = site.server.connect();
        for target in ["/list/", "/"] {
            let r = client.request(&get(target));
            assert_eq!(
                (r.status, r.reason.as_str()),
                (404, "No permission to list directory"),
                "{target}"
            );
            assert!(r
                .text()
                .contains("Message: No permission to list directory."));
            assert!(!r.text().contains("a.txt"));
            assert!(!r.closes());
        }
        assert_served(&client.request(&get("/list/a.txt")), "a", "the file");
    });
}

// --- Escapes -----------------------------------------------------------------------------

/// Every known way out of the folder. `www/link_out` and `www/dir_out` are symlinks to
/// the secret and to the folder holding it; `www/sub` and `www/pub` are real folders.
const ESCAPES: &[&str] = &[
    "/../secret.txt",
    "/../../../../../../../../secret.txt",
    "/sub/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2e./secret.txt",
    "/.%2e/secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/sub%2f..%2f..%2fsecret.txt",
    "/..%5csecret.txt",
    "/..%5Csecret.txt",
    "/sub/..%5c..%5csecret.txt",
    "/..\\secret.txt",
    "/sub\\..\\..\\secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%c0%ae%c0%ae%c0%afsecret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt",
    "/%c0%2e%c0%2e/secret.txt",
    "/..%c0%afsecret.txt",
    "/..%c1%9csecret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%252fsecret.txt",
    "/%25%32%65%25%32%65/secret.txt",
    "//host/../secret.txt",
    "//host/../../secret.txt",
    "//../secret.txt",
    "http://test/../secret.txt",
    "http://test/%2e%2e/secret.txt",
    "/secret.txt%00",
    "/secret.txt%00.html",
    "/..%00/secret.txt",
    "/%00../secret.txt",
    "/sub/..%00/..%00/secret.txt",
    "/%u002e%u002e/secret.txt",
    "/..;/secret.txt",
    "/.../secret.txt",
    "/./.././secret.txt",
    "/pub/..%2f..%2fsecret.txt",
    "/pub/../../secret.txt",
    "/link_out",
    "/dir_out/secret.txt",
    "/dir_out/",
    "/dir_out",
    "/sub/link_up/",
    "/sub/link_up/secret.txt",
    "/sub/%2e%2e/%2e%2e/etc/passwd",
    "/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
];

/// The escape tree: `<base>/secret.txt`, `<base>/www/{sub/in.txt, pub/p.txt, link_in,
/// link_out, dir_out, sub/link_up}`.
fn escape_site(setup: Setup, policy: SymlinkPolicy) -> Site {
    let site = site(
        setup,
        &[("www/sub/in.txt", b"inside"), ("www/pub/p.txt", b"public")],
        move |files, base| {
            files.symlinks = policy;
            files.directory_listing = true;
            files.bind_path("/pub/", base.join("www/pub")).unwrap();
        },
    );
    let root = site.root();
    symlink("../secret.txt", root.join("link_out")).expect("link out");
    symlink("..", root.join("dir_out")).expect("link to the parent");
    symlink("sub/in.txt", root.join("link_in")).expect("link in");
    symlink("../..", root.join("sub/link_up")).expect("link up");
    site
}

#[test]
fn no_escape_reads_outside_the_folder() {
    each_setup(|setup| {
        let site = escape_site(setup, SymlinkPolicy::default());
        for target in ESCAPES {
            // Raw bytes, and also each target with a NUL byte where `%00` is.
            let mut wires = vec![get(target)];
            if target.contains("%00") {
                wires.push(get(&target.replace("%00", "\0")));
            }
            for wire in wires {
                for r in site.server.send_raw(&wire) {
                    let all = format!("{:?} {}", r.headers, r.text());
                    assert!(!all.contains(SECRET), "{target}: leaked the secret: {all}");
                    assert!(
                        !r.text().contains("root:x:0:0"),
                        "{target}: leaked /etc/passwd"
                    );
                    assert!(
                        (400..500).contains(&r.status),
                        "{target}: status {} {}",
                        r.status,
                        r.text()
                    );
                }
            }
        }
        // Links that stay inside are followed.
        assert_served(&site.get("/link_in"), "inside", "link inside the root");
        assert_served(&site.get("/sub/in.txt"), "inside", "plain file");
        // A link out of the folder whose target comes back inside it is inside.
        assert_served(
            &site.get("/dir_out/www/sub/in.txt"),
            "inside",
            "link resolving inside",
        );
    });
}

#[test]
fn symlink_policies() {
    each_setup(|setup| {
        let never = escape_site(setup, SymlinkPolicy::Never);
        assert_not_found(&never.get("/link_in"), "never: link in");
        assert_not_found(&never.get("/link_out"), "never: link out");
        assert_served(&never.get("/sub/in.txt"), "inside", "never: plain file");
        // The escape test above can fail: following every link does read the secret.
        let all = escape_site(setup, SymlinkPolicy::DangerFollowAll);
        assert_served(&all.get("/link_out"), SECRET, "follow all: link out");
        assert_served(
            &all.get("/dir_out/secret.txt"),
            SECRET,
            "follow all: dir out",
        );
        assert_served(&all.get("/link_in"), "inside", "follow all: link in");
    });
}

/// A symlinked `index.html` must obey the symlink policy like any other name.
#[test]
fn symlinked_index_page_obeys_the_policy() {
    each_setup(|setup| {
        let site = site(setup, &[("www/sub/x.txt", b"x")], |_, _| {});
        symlink("../../secret.txt", site.root().join("sub/index.html")).expect("link out");
        let r = site.get("/sub/");
        assert!(!r.text().contains(SECRET), "{setup}: leaked {:?}", r.text());
        assert_eq!(r.status, 404, "{setup}");
    });
}

// --- ETag and conditional requests -----------------------------------------------------

#[test]
fn etag_is_the_python_zlib_crc32_quoted() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/v.txt", VECTOR.as_bytes()),
                ("www/hello.txt", HELLO.as_bytes()),
                ("www/digits.txt", DIGITS.as_bytes()),
            ],
            |files, _| files.max_age = 3600,
        );
        let mut client = site.server.connect();
        for (target, crc) in [
            ("/v.txt", VECTOR_CRC),
            ("/hello.txt", HELLO_CRC),
            ("/digits.txt", DIGITS_CRC),
        ] {
            let r = client.request(&get(target));
            assert_eq!(r.status, 200);
            assert_eq!(r.header("etag"), Some(format!("\"{crc}\"").as_str()));
            assert_eq!(r.header("cache-control"), Some("max-age=3600"));
            assert_eq!(r.header_count("etag"), 1);
        }
        // HTTP/1.0 gets the validators too (a departure from the original).
        let r = site.send(b"GET /v.txt HTTP/1.0\r\n\r\n");
        assert_eq!(r.header("etag"), Some("\"2c1b83c\""));
    });
}

/// The change time (`ctime`) of `path`, to nanoseconds.
fn ctime(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).expect("stat");
    (meta.ctime(), meta.ctime_nsec())
}

#[test]
fn a_rewrite_keeping_size_and_mtime_gets_a_new_etag() {
    each_setup(|setup| {
        let site = site(setup, &[("www/v.txt", VECTOR.as_bytes())], |_, _| {});
        let path = site.root().join("v.txt");
        set_mtime(&path, Y2020);
        // Tags of files changed within SETTLE_TIME are not remembered at all; past it, the
        // first answer fills the tag cache that the rewrite below must not fool.
        std::thread::sleep(SETTLE_TIME + Duration::from_millis(100));
        let quoted = |crc: &str| format!("\"{crc}\"");
        let r = site.get("/v.txt");
        assert_eq!(r.header("etag"), Some(quoted(VECTOR_CRC).as_str()));
        assert_eq!(site.get("/v.txt").header("etag"), r.header("etag"));
        // Same size, same modification time, same inode: only the change time tells.
        // File times tick coarsely: rewrite until the change time moved, as any later
        // rewrite would.
        let before = ctime(&path);
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        for _ in 0..1000 {
            std::fs::write(&path, VECTOR_9).unwrap();
            set_mtime(&path, Y2020);
            if ctime(&path) != before {
                break;
            }
        }
        assert_ne!(ctime(&path), before, "the change time never moved");
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
            inode
        );
        let r = site.get("/v.txt");
        assert_eq!(r.text(), VECTOR_9);
        assert_eq!(r.header("last-modified"), Some(Y2020_HTTP));
        assert_eq!(r.header("etag"), Some(quoted(VECTOR_9_CRC).as_str()));
        let stale = site.send(&request(
            "GET",
            "/v.txt",
            &[("If-None-Match", &quoted(VECTOR_CRC))],
        ));
        assert_served(&stale, VECTOR_9, "the old tag no longer matches");
        // A new mtime is a new version too.
        std::fs::write(&path, VECTOR).unwrap();
        set_mtime(&path, Y2020 + 1);
        let r = site.get("/v.txt");
        assert_eq!(r.header("etag"), Some(quoted(VECTOR_CRC).as_str()));
    });
}

/// BEHAVIOUR.md: Static files › Small-file cache. Each file is cached and answered from
/// the cache with its folders watched before it changes in place, is replaced by rename
/// (as editors save), is deleted, is created anew, or loses its folder to a new one; the
/// next request, on a new connection, sees the change.
#[test]
fn cached_files_follow_every_change() {
    each_setup(|setup| {
        let files: &[(&str, &[u8])] = &[
            ("www/edited.txt", b"one"),
            ("www/saved.txt", b"one"),
            ("www/deleted.txt", b"one"),
            ("www/sub/moved.txt", b"one"),
        ];
        let site = site(setup, files, |_, _| {});
        let root = site.root();
        // Only files unchanged for SETTLE_TIME are cached.
        std::thread::sleep(SETTLE_TIME + Duration::from_millis(100));
        let targets = [
            "/edited.txt",
            "/saved.txt",
            "/deleted.txt",
            "/sub/moved.txt",
        ];
        // Cached, then revalidated once the watches are in place, then trusted.
        for _ in 0..3 {
            for target in targets {
                assert_served(&site.get(target), "one", target);
            }
        }
        assert_not_found(&site.get("/created.txt"), "not there yet");

        std::fs::write(root.join("edited.txt"), "two").unwrap();
        assert_served(&site.get("/edited.txt"), "two", "changed in place");

        std::fs::write(root.join("saved.txt.tmp"), "two").unwrap();
        std::fs::rename(root.join("saved.txt.tmp"), root.join("saved.txt")).unwrap();
        assert_served(&site.get("/saved.txt"), "two", "replaced by rename");

        std::fs::remove_file(root.join("deleted.txt")).unwrap();
        assert_not_found(&site.get("/deleted.txt"), "deleted");
        std::fs::write(root.join("deleted.txt"), "new").unwrap();
        assert_served(&site.get("/deleted.txt"), "new", "created again");
        std::fs::write(root.join("created.txt"), "new").unwrap();
        assert_served(&site.get("/created.txt"), "new", "created");

        std::fs::rename(root.join("sub"), root.join("old-sub")).unwrap();
        assert_not_found(&site.get("/sub/moved.txt"), "its folder moved");
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/moved.txt"), "two").unwrap();
        assert_served(
            &site.get("/sub/moved.txt"),
            "two",
            "a new folder in its place",
        );
    });
}

#[test]
fn if_none_match_forms_give_304() {
    each_setup(|setup| {
        let site = site(setup, &[("www/v.txt", VECTOR.as_bytes())], |files, _| {
            files.max_age = 600;
        });
        let mut client = site.server.connect();
        for inm in [
            "2c1b83c",
            "\"2c1b83c\"",
            "W/\"2c1b83c\"",
            "\"aaaa\", \"2c1b83c\"",
            "\"aaaa\",W/\"2c1b83c\"",
            "bbbb, 2c1b83c",
            "*",
        ] {
            let r = client.request(&request("GET", "/v.txt", &[("If-None-Match", inm)]));
            assert_eq!(r.status, 304, "{inm}");
            assert_eq!(r.header("etag"), Some("\"2c1b83c\""), "{inm}");
            assert_eq!(r.header("cache-control"), Some("max-age=600"), "{inm}");
            assert!(r.body.is_empty() && !r.closes(), "{inm}");
        }
        for inm in ["\"2c1b83d\"", "2C1B83C-x", "\"\"", "W/\"nope\", \"2c1b83\""] {
            let r = client.request(&request("GET", "/v.txt", &[("If-None-Match", inm)]));
            assert_served(&r, VECTOR, inm);
        }
    });
}

#[test]
fn if_modified_since() {
    each_setup(|setup| {
        let site = site(setup, &[("www/v.txt", VECTOR.as_bytes())], |files, _| {
            files.max_age = 60;
        });
        set_mtime(&site.root().join("v.txt"), Y2020);
        let mut client = site.server.connect();
        let r = client.request(&get("/v.txt"));
        assert_eq!(r.header("last-modified"), Some(Y2020_HTTP));
        for since in [
            Y2020_HTTP,
            "Thu, 02 Jan 2020 00:00:00 GMT",
            "Thu, 01 Jan 2037 00:00:00 GMT",
            "Wed Jan  1 00:00:00 2020",
        ] {
            let r = client.request(&request("GET", "/v.txt", &[("If-Modified-Since", since)]));
            assert_eq!(r.status, 304, "{since}");
            assert_eq!(r.header("etag"), Some("\"2c1b83c\""));
            assert_eq!(r.header("cache-control"), Some("max-age=60"));
            assert!(r.body.is_empty());
        }
        for since in [
            "Tue, 31 Dec 2019 23:59:59 GMT",
            "Mon, 01 Jan 1990 00:00:00 GMT",
            "not a date",
            "",
        ] {
            let r = client.request(&request("GET", "/v.txt", &[("If-Modified-Since", since)]));
            assert_served(&r, VECTOR, since);
        }
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3).
        let r = client.request(&request(
            "GET",
            "/v.txt",
            &[
                ("If-None-Match", "\"other\""),
                ("If-Modified-Since", Y2020_HTTP),
            ],
        ));
        assert_served(&r, VECTOR, "INM mismatch beats IMS");
    });
}

#[test]
fn if_match_forms() {
    each_setup(|setup| {
        let site = site(setup, &[("www/v.txt", VECTOR.as_bytes())], |_, _| {});
        let mut client = site.server.connect();
        // Twice each: the first answer may fill the small-file cache, the second comes from it.
        for _ in 0..2 {
            for value in [
                "2c1b83c",
                "\"2c1b83c\"",
                "\"aaaa\", \"2c1b83c\"",
                "bbbb, 2c1b83c",
                "*",
            ] {
                let r = client.request(&request("GET", "/v.txt", &[("If-Match", value)]));
                assert_served(&r, VECTOR, value);
            }
            // Weak tags never match strongly; other tags and garbage fail.
            for value in [
                "W/\"2c1b83c\"",
                "\"2c1b83d\"",
                "\"\"",
                "\"2c1b83c",
                "W/\"nope\", \"x\"",
            ] {
                let r = client.request(&request("GET", "/v.txt", &[("If-Match", value)]));
                assert_eq!(
                    (r.status, r.reason.as_str()),
                    (412, "Precondition Failed"),
                    "{value}"
                );
                assert!(!r.text().contains(VECTOR), "{value}");
                assert!(!r.closes(), "{value}: a 412 keeps the connection");
            }
        }
    });
}

#[test]
fn if_unmodified_since() {
    each_setup(|setup| {
        let site = site(setup, &[("www/v.txt", VECTOR.as_bytes())], |_, _| {});
        set_mtime(&site.root().join("v.txt"), Y2020);
        let mut client = site.server.connect();
        for _ in 0..2 {
            for since in [
                Y2020_HTTP,
                "Thu, 02 Jan 2020 00:00:00 GMT",
                "Wed Jan  1 00:00:00 2020",
                "not a date",
            ] {
                let r =
                    client.request(&request("GET", "/v.txt", &[("If-Unmodified-Since", since)]));
                assert_served(&r, VECTOR, since);
            }
            for since in [
                "Tue, 31 Dec 2019 23:59:59 GMT",
                "Mon, 01 Jan 1990 00:00:00 GMT",
            ] {
                let r =
                    client.request(&request("GET", "/v.txt", &[("If-Unmodified-Since", since)]));
                assert_eq!(r.status, 412, "{since}");
            }
        }
    });
}

/// RFC 9110 13.2.2: If-Match, else If-Unmodified-Since; then If-None-Match, else
/// If-Modified-Since; then If-Range.
#[test]
fn preconditions_are_evaluated_in_the_rfc_order() {
    each_setup(|setup| {
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        set_mtime(&site.root().join("d.txt"), Y2020);
        let mut client = site.server.connect();
        let tag = format!("\"{DIGITS_CRC}\"");
        let old = "Tue, 31 Dec 2019 23:59:59 GMT";
        let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
            // A matching If-Match makes If-Unmodified-Since irrelevant, and the reverse.
            (vec![("If-Match", &tag), ("If-Unmodified-Since", old)], 200),
            (
                vec![("If-Match", "\"x\""), ("If-Unmodified-Since", Y2020_HTTP)],
                412,
            ),
            // A failed step 1 or 2 wins over a matching If-None-Match: 412, not 304.
            (vec![("If-Match", "\"x\""), ("If-None-Match", &tag)], 412),
            (
                vec![("If-Unmodified-Since", old), ("If-None-Match", &tag)],
                412,
            ),
            (
                vec![
                    ("If-Unmodified-Since", old),
                    ("If-Modified-Since", Y2020_HTTP),
                ],
                412,
            ),
            // Passing them, If-None-Match decides, and If-Modified-Since is then ignored.
            (vec![("If-Match", &tag), ("If-None-Match", &tag)], 304),
            (
                vec![
                    ("If-Unmodified-Since", Y2020_HTTP),
                    ("If-None-Match", "\"x\""),
                ],
                200,
            ),
            (
                vec![
                    ("If-None-Match", "\"x\""),
                    ("If-Modified-Since", Y2020_HTTP),
                ],
                200,
            ),
            (
                vec![("If-Match", "*"), ("If-Modified-Since", Y2020_HTTP)],
                304,
            ),
            // Then the range, under If-Range.
            (vec![("If-Match", &tag), ("Range", "bytes=0-1")], 206),
            (vec![("If-Match", "\"x\""), ("Range", "bytes=0-1")], 412),
            (vec![("If-None-Match", &tag), ("Range", "bytes=0-1")], 304),
            (
                vec![
                    ("If-Match", &tag),
                    ("Range", "bytes=0-1"),
                    ("If-Range", "\"x\""),
                ],
                200,
            ),
            (
                vec![
                    ("If-Match", &tag),
                    ("Range", "bytes=0-1"),
                    ("If-Range", &tag),
                ],
                206,
            ),
        ];
        for (fields, status) in cases {
            let r = ranged(&mut client, &fields);
            assert_eq!(r.status, status, "{fields:?}");
        }
    });
}

// --- Ranges ------------------------------------------------------------------------------

fn ranged(client: &mut quick_server_tests::Client, fields: &[(&str, &str)]) -> Response {
    client.request(&request("GET", "/d.txt", fields))
}

#[test]
fn single_ranges() {
    each_setup(|setup| {
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        let mut client = site.server.connect();
        let r = client.request(&get("/d.txt"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        for (range, body, content_range) in [
            ("bytes=0-4", "01234", "bytes 0-4/20"),
            ("bytes=-5", "fghij", "bytes 15-19/20"),
            ("bytes=5-", "56789abcdefghij", "bytes 5-19/20"),
            ("bytes=15-100", "fghij", "bytes 15-19/20"),
            ("bytes=-100", DIGITS, "bytes 0-19/20"),
            ("bytes=19-19", "j", "bytes 19-19/20"),
            ("bytes=0-0", "0", "bytes 0-0/20"),
        ] {
            let r = ranged(&mut client, &[("Range", range)]);
            assert_eq!((r.status, r.text().as_str()), (206, body), "{range}");
            assert_eq!(r.header("content-range"), Some(content_range), "{range}");
            assert_eq!(
                r.header("content-length"),
                Some(body.len().to_string().as_str())
            );
            assert_eq!(r.header("etag"), Some("\"638c0d29\""), "{range}");
            assert_eq!(r.header("accept-ranges"), Some("bytes"), "{range}");
        }
        for range in ["bytes=20-25", "bytes=20-", "bytes=100-200", "bytes=-0"] {
            let r = ranged(&mut client, &[("Range", range)]);
            assert_eq!(r.status, 416, "{range}");
            assert_eq!(r.header("content-range"), Some("bytes */20"), "{range}");
            assert!(!r.text().contains(DIGITS));
            assert!(!r.closes(), "{range}: 416 keeps the connection");
        }
        // Malformed or foreign units are ignored: the whole file.
        for range in [
            "bytes=abc",
            "bytes=5-2",
            "items=0-1",
            "bytes 0-1",
            "bytes=--1",
        ] {
            let r = ranged(&mut client, &[("Range", range)]);
            assert_served(&r, DIGITS, range);
            assert_eq!(r.header("content-range"), None, "{range}");
        }
    });
}

/// One part of a `multipart/byteranges` body: its fields (lower-case names), its content.
type BytePart = (Vec<(String, String)>, Vec<u8>);

/// The parts of a `multipart/byteranges` answer. Panics unless the body is exactly
/// delimiters, parts and the close.
fn byteranges(r: &Response) -> Vec<BytePart> {
    let content_type = r.header("content-type").expect("a Content-Type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not byteranges: {content_type}"));
    let delimiter = format!("--{boundary}");
    let body = r.body.as_slice();
    let find = |from: usize, what: &[u8]| {
        body[from..]
            .windows(what.len())
            .position(|w| w == what)
            .map(|at| from + at)
    };
    assert!(body.starts_with(delimiter.as_bytes()), "{}", r.text());
    let mut parts = Vec::new();
    let mut at = delimiter.len();
    loop {
        if body[at..] == *b"--\r\n" {
            return parts;
        }
        assert_eq!(&body[at..at + 2], b"\r\n", "after a delimiter");
        let head_end = find(at, b"\r\n\r\n").expect("part head end");
        let fields = String::from_utf8_lossy(&body[at + 2..head_end])
            .split("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a field");
                (name.to_ascii_lowercase(), value.to_owned())
            })
            .collect();
        let next = find(head_end + 4, format!("\r\n{delimiter}").as_bytes()).expect("next");
        parts.push((fields, body[head_end + 4..next].to_vec()));
        at = next + 2 + delimiter.len();
    }
}

#[test]
fn multiple_ranges_answer_multipart_byteranges() {
    each_setup(|setup| {
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        let mut client = site.server.connect();
        for (range, expected) in [
            ("bytes=0-1,5-6", &[("0-1", "01"), ("5-6", "56")][..]),
            ("bytes=50-60, 3-4, -2", &[("3-4", "34"), ("18-19", "ij")]),
            ("bytes=-2,0-0", &[("0-0", "0"), ("18-19", "ij")]),
            // Overlapping and adjacent ranges are coalesced.
            (
                "bytes=0-2,2-3,10-11,12-12",
                &[("0-3", "0123"), ("10-12", "abc")],
            ),
        ] {
            let r = ranged(&mut client, &[("Range", range)]);
            assert_eq!(r.status, 206, "{range}");
            assert_eq!(r.header("content-range"), None, "{range}");
            assert_eq!(r.header("etag"), Some("\"638c0d29\""), "{range}");
            assert_eq!(
                r.header("content-length"),
                Some(r.body.len().to_string().as_str())
            );
            let parts = byteranges(&r);
            assert_eq!(parts.len(), expected.len(), "{range}");
            for ((fields, content), (span, text)) in parts.iter().zip(expected) {
                assert_eq!(
                    fields,
                    &[
                        ("content-type".to_owned(), "text/plain".to_owned()),
                        ("content-range".to_owned(), format!("bytes {span}/20")),
                    ],
                    "{range}"
                );
                assert_eq!(content, text.as_bytes(), "{range}");
            }
            assert!(!r.closes());
        }
        // Ranges that coalesce into one are a plain 206.
        let r = ranged(&mut client, &[("Range", "bytes=0-1,2-3,1-1")]);
        assert_eq!((r.status, r.text().as_str()), (206, "0123"));
        assert_eq!(r.header("content-range"), Some("bytes 0-3/20"));
        // HEAD: the same head, no body.
        client
            .send(&request("HEAD", "/d.txt", &[("Range", "bytes=0-1,5-6")]))
            .expect("send HEAD");
        let head = client.read_head_response().expect("HEAD answer");
        let get = ranged(&mut client, &[("Range", "bytes=0-1,5-6")]);
        assert_eq!(head.status, 206);
        assert!(head.body.is_empty());
        assert_eq!(fields_but_date(&head), fields_but_date(&get));
    });
}

/// Python's `email` package, a MIME parser of its own, reads our byteranges answer back.
/// Skipped (with a notice) without `python3`.
#[test]
fn python_email_parses_the_byteranges() {
    const SCRIPT: &str = "import email, sys\n\
        raw = sys.stdin.buffer.read()\n\
        msg = email.message_from_bytes(raw)\n\
        assert msg.is_multipart(), msg.get_content_type()\n\
        for part in msg.get_payload():\n\
        \x20   print(part['Content-Range'], part.get_content_type(), part.get_payload(decode=True).decode())\n";
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: python3 is not installed");
        return;
    }
    each_setup(|setup| {
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        let r = site.send(&request("GET", "/d.txt", &[("Range", "bytes=-3,0-1,5-6")]));
        assert_eq!(r.status, 206);
        let mut message = format!(
            "Content-Type: {}\r\n\r\n",
            r.header("content-type").expect("a type")
        )
        .into_bytes();
        message.extend_from_slice(&r.body);
        let mut child = std::process::Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start python3");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &message)
            .expect("feed python3");
        let output = child.wait_with_output().expect("python3 output");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "bytes 0-1/20 text/plain 01\nbytes 5-6/20 text/plain 56\nbytes 17-19/20 text/plain hij\n"
        );
    });
}

#[test]
fn too_many_ranges_or_too_many_bytes_answer_the_whole_file() {
    each_setup(|setup| {
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        let mut client = site.server.connect();
        let spaced = |n: usize| {
            let specs: Vec<String> = (0..n).map(|i| format!("{i}-{i}")).collect();
            format!("bytes={}", specs.join(","))
        };
        // At the cap the ranges are honoured (adjacent ones coalesce into one here).
        let r = ranged(&mut client, &[("Range", &spaced(MAX_RANGES))]);
        assert_eq!(r.status, 206);
        // One more than the cap, or overlapping ranges adding up to more than the file
        // (the "Apache killer" shape): the whole file, 200.
        for range in [
            spaced(MAX_RANGES + 1),
            "bytes=0-,1-,2-,3-".to_owned(),
            "bytes=0-9,0-9,0-9".to_owned(),
        ] {
            let r = ranged(&mut client, &[("Range", &range)]);
            assert_served(&r, DIGITS, &range);
            assert_eq!(r.header("content-range"), None, "{range}");
        }
    });
}

/// Two ranges of a 3 MiB file: the parts leave as file regions (sendfile on plain TCP,
/// the record pump under TLS) and arrive intact.
#[test]
fn byteranges_of_a_big_file_arrive_intact() {
    let data = quick_server_tests::pseudo_random_bytes(3 * 1024 * 1024, 11);
    each_setup(|setup| {
        let site = site(setup, &[("www/big.bin", data.as_slice())], |_, _| {});
        let mut client = site.server.connect();
        let r = client.request(&request(
            "GET",
            "/big.bin",
            &[("Range", "bytes=-1048576,100-1000099")],
        ));
        assert_eq!(r.status, 206);
        let parts = byteranges(&r);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0[1].1, format!("bytes 100-1000099/{}", data.len()));
        assert_eq!(parts[0].1, &data[100..1_000_100]);
        assert_eq!(parts[1].1, &data[data.len() - 1_048_576..]);
        assert_eq!(parts[1].0[0].1, "application/octet-stream");
    });
}

#[test]
fn if_range() {
    each_setup(|setup| {
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        set_mtime(&site.root().join("d.txt"), Y2020);
        let mut client = site.server.connect();
        for if_range in ["\"638c0d29\"", "638c0d29", Y2020_HTTP] {
            let r = ranged(
                &mut client,
                &[("Range", "bytes=0-4"), ("If-Range", if_range)],
            );
            assert_eq!((r.status, r.text().as_str()), (206, "01234"), "{if_range}");
        }
        for if_range in [
            "\"deadbeef\"",
            "W/\"638c0d29\"",
            "Tue, 31 Dec 2019 23:59:59 GMT",
            "junk",
        ] {
            let r = ranged(
                &mut client,
                &[("Range", "bytes=0-4"), ("If-Range", if_range)],
            );
            assert_served(&r, DIGITS, if_range);
        }
    });
}

// --- HEAD ----------------------------------------------------------------------------------

/// The fields of a response other than `Date` (which may tick between two requests).
fn fields_but_date(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .cloned()
        .collect()
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/d.txt", DIGITS.as_bytes()),
                ("www/sub/index.html", b"<p>index</p>"),
            ],
            |files, _| files.max_age = 5,
        );
        let mut client = site.server.connect();
        for (target, fields) in [
            ("/d.txt", vec![]),
            ("/d.txt", vec![("Range", "bytes=2-5")]),
            ("/d.txt", vec![("If-None-Match", "\"638c0d29\"")]),
            ("/sub", vec![]),
            ("/sub/", vec![]),
            ("/missing", vec![]),
            ("/d.txt", vec![("Range", "bytes=90-")]),
        ] {
            let got = client.request(&request("GET", target, &fields));
            client.send(&request("HEAD", target, &fields)).unwrap();
            let head = client.read_head_response().unwrap();
            assert_eq!(head.status, got.status, "{target} {fields:?}");
            assert_eq!(fields_but_date(&head), fields_but_date(&got), "{target}");
            assert!(head.body.is_empty());
        }
        // Nothing was left over from the HEAD answers.
        assert_served(&client.request(&get("/d.txt")), DIGITS, "after HEAD");
    });
}

// --- Favicon -------------------------------------------------------------------------------

#[test]
fn favicon_from_the_embedded_empty_icon() {
    each_setup(|setup| {
        let site = site(setup, &[("www/a/b/x.txt", b"x")], |files, _| {
            files.favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
        });
        let mut client = site.server.connect();
        for target in [
            "/favicon.ico",
            "/a/b/favicon.ico",
            "/no/such/dir/favicon.ico",
        ] {
            let r = client.request(&get(target));
            assert_eq!(r.status, 200, "{target}");
            assert_eq!(r.body, EMPTY_FAVICON, "{target}");
            assert_eq!(r.header("content-type"), Some("image/vnd.microsoft.icon"));
            let etag = format!("\"{}\"", crc32_hex(EMPTY_FAVICON));
            assert_eq!(r.header("etag"), Some(etag.as_str()), "{target}");
            let r = client.request(&request("GET", target, &[("If-None-Match", &etag)]));
            assert_eq!(r.status, 304, "{target}");
        }
        // An ICO header: reserved 0, type 1, one image.
        assert_eq!(EMPTY_FAVICON.get(..6), Some(&[0, 0, 1, 0, 1, 0][..]));
        assert_not_found(&client.request(&get("/favicon.ico/")), "a folder path");
    });
}

#[test]
fn favicon_without_fallback_is_404() {
    each_setup(|setup| {
        let site = site(setup, &[("www/a/b/x.txt", b"x")], |_, _| {});
        assert_not_found(&site.get("/favicon.ico"), "/favicon.ico");
        assert_not_found(&site.get("/a/b/favicon.ico"), "/a/b/favicon.ico");
    });
}

#[test]
fn root_favicon_wins() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/favicon.ico", b"ROOT-ICON"),
                ("www/a/favicon.ico", b"A-ICON"),
                ("www/a/b/x.txt", b"x"),
            ],
            |files, _| {
                files.favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
                files.filter.add_default_white_list();
            },
        );
        assert_served(&site.get("/favicon.ico"), "ROOT-ICON", "root");
        assert_served(
            &site.get("/a/b/favicon.ico"),
            "ROOT-ICON",
            "deep, from root",
        );
        assert_served(&site.get("/a/favicon.ico"), "A-ICON", "its own icon");
        // No folder has an icon: a fallback file on disk.
        let plain = site_with_file_fallback(setup);
        assert_served(&plain.get("/x/y/favicon.ico"), "FILE-ICON", "file fallback");
    });
}

fn site_with_file_fallback(setup: Setup) -> Site {
    site(setup, &[("icons/fav.ico", b"FILE-ICON")], |files, base| {
        files.favicon_fallback = Some(Favicon::File(base.join("icons/fav.ico")));
    })
}

#[test]
fn favicon_everywhere_off() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[("www/favicon.ico", b"ROOT-ICON"), ("www/a/x.txt", b"x")],
            |files, _| {
                files.favicon_everywhere = false;
                files.favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
            },
        );
        assert_served(&site.get("/favicon.ico"), "ROOT-ICON", "the file itself");
        assert_not_found(&site.get("/a/favicon.ico"), "not substituted");
    });
}

/// The substituted icon must pass the black list like the file it stands for.
#[test]
fn favicon_substitution_obeys_the_black_list() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[("www/favicon.ico", b"BLACK-ICON"), ("www/a/x.txt", b"x")],
            |files, _| files.filter.add(["*.ico"], true),
        );
        for target in ["/favicon.ico", "/a/favicon.ico"] {
            let r = site.get(target);
            assert_not_found(&r, &format!("{setup} {target} ({:?})", r.text()));
        }
    });
}

/// A root `favicon.ico` that links out of the folder is refused by the lookup, and must
/// not come back through the favicon substitution.
#[test]
fn favicon_substitution_obeys_the_symlink_policy() {
    each_setup(|setup| {
        let site = site(setup, &[("www/a/x.txt", b"x")], |_, _| {});
        symlink("../secret.txt", site.root().join("favicon.ico")).expect("link out");
        for target in ["/favicon.ico", "/a/b/favicon.ico"] {
            let r = site.get(target);
            assert!(
                !r.text().contains(SECRET),
                "{setup} {target}: leaked the secret"
            );
            assert_not_found(&r, &format!("{setup} {target}"));
        }
    });
}

/// Path translation: a hidden word is a 404 at once, before the favicon substitution.
#[test]
fn hidden_favicon_path_is_404() {
    each_setup(|setup| {
        let site = site(setup, &[("www/favicon.ico", b"ROOT-ICON")], |files, _| {
            files.favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
        });
        assert_not_found(&site.get("/.git/favicon.ico"), &format!("{setup}"));
    });
}

// --- Single-page-app fallback ----------------------------------------------------------

#[test]
fn spa_fallback_for_html_clients() {
    each_setup(|setup| {
        let app = "<!doctype html><div id=app></div>";
        let site = site(
            setup,
            &[("www/app.html", app.as_bytes()), ("www/real.txt", b"real")],
            |files, base| files.spa_fallback = Some(base.join("www/app.html")),
        );
        let mut client = site.server.connect();
        for accept in [
            "text/html",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ] {
            for target in ["/some/route", "/deep/link?x=1", "/missing.txt"] {
                let r = client.request(&request("GET", target, &[("Accept", accept)]));
                assert_served(&r, app, target);
                assert_eq!(r.header("content-type"), Some("text/html"));
            }
        }
        for fields in [
            vec![],
            vec![("Accept", "application/json")],
            vec![("Accept", "*/*")],
        ] {
            let r = client.request(&request("GET", "/some/route", &fields));
            assert_not_found(&r, &format!("{fields:?}"));
        }
        let r = client.request(&request("GET", "/real.txt", &[("Accept", "text/html")]));
        assert_served(&r, "real", "existing files are not replaced");
    });
}

// --- Content types and Cache-Control ---------------------------------------------------

#[test]
fn content_types_for_common_extensions() {
    let table: &[(&str, &str)] = &[
        ("a.css", "text/css"),
        ("a.csv", "text/csv"),
        ("a.eot", "application/vnd.ms-fontobject"),
        ("a.gif", "image/gif"),
        ("a.htm", "text/html"),
        ("a.html", "text/html"),
        ("a.ico", "image/vnd.microsoft.icon"),
        ("a.jpeg", "image/jpeg"),
        ("a.jpg", "image/jpeg"),
        ("a.js", "text/javascript"),
        ("a.mjs", "text/javascript"),
        ("a.json", "application/json"),
        ("a.md", "text/markdown"),
        ("a.otf", "font/otf"),
        ("a.pdf", "application/pdf"),
        ("a.png", "image/png"),
        ("a.svg", "image/svg+xml"),
        ("a.tsv", "text/tab-separated-values"),
        ("a.ttf", "font/ttf"),
        ("a.txt", "text/plain"),
        ("a.woff", "font/woff"),
        ("a.woff2", "font/woff2"),
        ("a.webp", "image/webp"),
        ("a.wasm", "application/wasm"),
        ("a.mp4", "video/mp4"),
        ("a.mp3", "audio/mpeg"),
        ("a.xml", "text/xml"),
        ("a.zip", "application/zip"),
        ("a.py", "text/x-python"),
        ("a.gz", "application/gzip"),
        ("a.tar.gz", "application/gzip"),
        ("a.bz2", "application/x-bzip2"),
        ("a.xz", "application/x-xz"),
        ("a.Z", "application/octet-stream"),
        ("UPPER.PNG", "image/png"),
        ("Mixed.Html", "text/html"),
        ("a.unknownext", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ];
    each_setup(|setup| {
        let files: Vec<(String, &[u8])> = table
            .iter()
            .map(|(name, _)| (format!("www/{name}"), &b"x"[..]))
            .collect();
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let site = site(setup, &files, |_, _| {});
        let mut client = site.server.connect();
        for (name, ty) in table {
            let r = client.request(&get(&format!("/{name}")));
            assert_eq!(r.status, 200, "{name}");
            assert_eq!(r.header("content-type"), Some(*ty), "{name}");
        }
    });
}

#[test]
fn max_age_in_cache_control() {
    each_setup(|setup| {
        let default = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |_, _| {});
        assert_eq!(
            default.get("/d.txt").header("cache-control"),
            Some("max-age=0")
        );
        let site = site(setup, &[("www/d.txt", DIGITS.as_bytes())], |files, _| {
            files.max_age = 86_400;
        });
        let mut client = site.server.connect();
        for fields in [
            vec![],
            vec![("Range", "bytes=1-2")],
            vec![("If-None-Match", "\"638c0d29\"")],
        ] {
            let r = ranged(&mut client, &fields);
            assert_eq!(
                r.header("cache-control"),
                Some("max-age=86400"),
                "{fields:?}"
            );
            assert_eq!(r.header_count("cache-control"), 1);
        }
    });
}
