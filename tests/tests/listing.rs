//! Issue 17's directory listing over both transports, plain and TLS: only entries a GET
//! serves are listed (hidden names, white and black lists, symlink policies), sorting in
//! both orders, the JSON form, hostile names, the parent link and breadcrumbs, bad
//! queries, compression, and a big folder listed off the event loop while other clients
//! are served.
//!
//! `listing_latency` (ignored; run with `--ignored --nocapture`, best in release) measures
//! a small file's latency while two clients list a 20,000-file folder.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quick_server_core::coding::Compression;
use quick_server_core::files::{StaticFiles, SymlinkPolicy, INLINE_LISTING_ENTRIES};
use quick_server_core::fs::{DirEntry, DiskFs, FileSystem, Metadata, OpenFile, TempFile};
use quick_server_core::Server;
use quick_server_tests::{
    each_setup, Response, Setup, TempDir, TestServer, Transport, Tuning, READ_TIMEOUT,
};
use serde_json::{json, Value};

/// 2020-01-01T00:00:00Z.
const Y2020: u64 = 1_577_836_800;

/// A server of `<base>/www` bound at `/` with listings on; `<base>/secret.txt` lies next
/// to it. The server stops before the folder is removed (field order).
struct Site {
    server: TestServer,
    dir: TempDir,
}

impl Site {
    fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// A GET with extra fields, on a new connection.
    fn get_with(&self, target: &str, fields: &[(&str, &str)]) -> Response {
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in fields {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut responses = self.server.send_raw(request.as_bytes());
        responses.pop().expect("a response")
    }

    fn get(&self, target: &str) -> Response {
        self.get_with(target, &[])
    }

    /// The JSON listing of `target`.
    fn json(&self, target: &str) -> Vec<Value> {
        let r = self.get_with(target, &[("Accept", "application/json")]);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let value: Value = serde_json::from_slice(&r.body).expect("a JSON listing");
        value.as_array().expect("an array").clone()
    }

    /// The names the JSON listing of `target` shows, in order.
    fn names(&self, target: &str) -> Vec<String> {
        let entries = self.json(target);
        let names = entries.iter().map(|e| e["name"].as_str().expect("a name"));
        names.map(str::to_owned).collect()
    }
}

/// Writes `files` (relative to the base folder; `www/…` for served ones) and the secret,
/// binds `www` at `/` with listings on, then lets `configure` change the file options.
fn site(
    setup: Setup,
    files: &[(&str, &[u8])],
    configure: impl FnOnce(&mut StaticFiles, &Path),
) -> Site {
    let dir = TempDir::new();
    dir.write("secret.txt", "TOP-SECRET");
    std::fs::create_dir_all(dir.path().join("www")).expect("create www");
    for (name, contents) in files {
        dir.write(name, contents);
    }
    let base = dir.path().to_owned();
    let server = TestServer::start(setup, move |mut builder| {
        let files = builder.files();
        files.bind_path("/", base.join("www")).expect("bind www");
        files.directory_listing = true;
        configure(files, &base);
        builder
    });
    Site { server, dir }
}

/// Sets the modification time of a file or folder.
fn set_mtime(path: &Path, secs: u64) {
    File::open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap_or_else(|e| panic!("set the time of {}: {e}", path.display()));
}

/// The `href`s of the table rows of a listing page, in order (the `../` row included).
fn row_links(page: &str) -> Vec<String> {
    page.lines()
        .filter(|line| line.starts_with("<tr "))
        .filter_map(|row| {
            let rest = row.split_once("<a href=\"")?.1;
            Some(rest.split_once('"')?.0.to_owned())
        })
        .collect()
}

/// The `href`s of the page heading (the breadcrumbs).
fn crumb_links(page: &str) -> Vec<String> {
    let heading = page
        .split_once("<h1>")
        .and_then(|(_, rest)| rest.split_once("</h1>"))
        .map_or("", |(h, _)| h);
    heading
        .split("<a href=\"")
        .skip(1)
        .filter_map(|rest| Some(rest.split_once('"')?.0.to_owned()))
        .collect()
}

/// A relative `href` of a listing (`x`, `x/`, `./`, `../../`) resolved against the folder
/// path `base` (ending in `/`).
fn resolve(base: &str, href: &str) -> String {
    let mut path = base.to_owned();
    let mut rest = href;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            let trimmed = path.trim_end_matches('/');
            path = format!("{}/", &trimmed[..trimmed.rfind('/').unwrap_or(0)]);
            rest = r;
        } else {
            break;
        }
    }
    format!("{path}{rest}")
}

// --- Only what is served -----------------------------------------------------------------

/// A repository as `quick-server .` meets it, with links in and out of the folder.
fn repository(setup: Setup, policy: SymlinkPolicy) -> Site {
    let site = site(
        setup,
        &[
            ("www/.git/config", b"[core]"),
            ("www/.git/HEAD", b"ref: refs/heads/main"),
            ("www/.gitignore", b"target/"),
            ("www/.env", b"KEY=1"),
            ("www/Cargo.lock", b"# lock"),
            ("www/Cargo.toml", b"[package]"),
            ("www/README.md", b"# readme"),
            ("www/notes.txt", b"notes"),
            ("www/private.txt", b"black-listed"),
            ("www/src/main.rs", b"fn main() {}"),
            ("www/docs/guide.md", b"guide"),
            ("www/sub/in.txt", b"inside"),
        ],
        move |files, _| {
            files.symlinks = policy;
            files.filter.add_default_white_list();
            files.filter.add(["*/private.txt"], true);
        },
    );
    let root = site.root();
    symlink("sub/in.txt", root.join("link_in.txt")).expect("link in");
    symlink("../secret.txt", root.join("link_out.txt")).expect("link out");
    symlink("sub", root.join("dir_in")).expect("folder link in");
    symlink("..", root.join("dir_out")).expect("folder link out");
    site
}

/// Every name in `folder` is either listed and served, or not listed and answers 404.
#[track_caller]
fn assert_listing_is_honest(site: &Site, target: &str, folder: &Path) {
    let listed = site.names(target);
    for entry in std::fs::read_dir(folder).expect("read the folder") {
        let entry = entry.expect("an entry");
        let name = entry.file_name().into_string().expect("a UTF-8 name");
        let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        let href = format!("{target}{name}{}", if is_dir { "/" } else { "" });
        let status = site.get(&href).status;
        if listed.contains(&name) {
            assert_eq!(status, 200, "{href} is listed but answers {status}");
        } else {
            assert_eq!(status, 404, "{href} is not listed but answers {status}");
        }
    }
}

#[test]
fn listing_shows_only_what_a_get_serves() {
    each_setup(|setup| {
        let site = repository(setup, SymlinkPolicy::WithinRoot);
        assert_eq!(
            site.names("/"),
            [
                "dir_in",
                "docs",
                "src",
                "sub",
                "link_in.txt",
                "notes.txt",
                "README.md"
            ]
        );
        assert_listing_is_honest(&site, "/", &site.root());
        // A folder holding nothing servable is listed: its own GET answers an empty listing.
        assert_eq!(site.names("/src/"), Vec::<String>::new());
        let page = site.get("/").text();
        for absent in [
            ".git",
            ".gitignore",
            ".env",
            "Cargo.lock",
            "private",
            "_out",
        ] {
            assert!(!page.contains(absent), "{absent} in {page}");
        }
        // No server path shows.
        let base = site.dir.path().to_string_lossy().into_owned();
        assert!(!page.contains(&base), "{page}");
    });
}

#[test]
fn listing_follows_each_symlink_policy() {
    each_setup(|setup| {
        let site = repository(setup, SymlinkPolicy::Never);
        assert_eq!(
            site.names("/"),
            ["docs", "src", "sub", "notes.txt", "README.md"]
        );
        assert_listing_is_honest(&site, "/", &site.root());
        drop(site);
        let site = repository(setup, SymlinkPolicy::DangerFollowAll);
        assert_eq!(
            site.names("/"),
            [
                "dir_in",
                "dir_out",
                "docs",
                "src",
                "sub",
                "link_in.txt",
                "link_out.txt",
                "notes.txt",
                "README.md"
            ]
        );
        assert_listing_is_honest(&site, "/", &site.root());
        // Through the followed link out, the same rules hold: what is listed is served.
        assert_listing_is_honest(&site, "/dir_out/", site.dir.path());
    });
}

// --- Order -------------------------------------------------------------------------------

#[test]
fn listing_sorts_by_name_size_and_date_in_both_orders() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/b.txt", &[b'b'; 30]),
                ("www/a.txt", &[b'a'; 10]),
                ("www/C.txt", &[b'c'; 20]),
                ("www/d.txt", &[b'd'; 20]),
                ("www/Zdir/z.txt", b"z"),
                ("www/adir/a.txt", b"a"),
            ],
            |_, _| {},
        );
        let root = site.root();
        for (name, offset) in [
            ("b.txt", 3),
            ("a.txt", 2),
            ("C.txt", 1),
            ("d.txt", 9),
            ("Zdir", 1),
            ("adir", 5),
        ] {
            set_mtime(&root.join(name), Y2020 + offset);
        }
        for (query, order) in [
            ("", ["adir", "Zdir", "a.txt", "b.txt", "C.txt", "d.txt"]),
            (
                "?sort=name",
                ["adir", "Zdir", "a.txt", "b.txt", "C.txt", "d.txt"],
            ),
            (
                "?order=desc",
                ["Zdir", "adir", "d.txt", "C.txt", "b.txt", "a.txt"],
            ),
            (
                "?sort=size",
                ["adir", "Zdir", "a.txt", "C.txt", "d.txt", "b.txt"],
            ),
            (
                "?sort=size&order=desc",
                ["Zdir", "adir", "b.txt", "d.txt", "C.txt", "a.txt"],
            ),
            (
                "?sort=date&order=asc",
                ["Zdir", "adir", "C.txt", "a.txt", "b.txt", "d.txt"],
            ),
            (
                "?order=desc&sort=date",
                ["adir", "Zdir", "d.txt", "b.txt", "a.txt", "C.txt"],
            ),
        ] {
            assert_eq!(site.names(&format!("/{query}")), order, "JSON {query}");
            let page = site.get(&format!("/{query}")).text();
            let hrefs: Vec<String> = order
                .iter()
                .map(|n| format!("{n}{}", if n.ends_with("dir") { "/" } else { "" }))
                .collect();
            assert_eq!(row_links(&page), hrefs, "HTML {query}");
        }
        // The headers re-sort: the current column flips, the others start ascending.
        let page = site.get("/?sort=size").text();
        assert!(
            page.contains("<th class=\"size\" aria-sort=\"ascending\"><a href=\"?sort=size&amp;order=desc\">Size ▲</a></th>"),
            "{page}"
        );
        assert!(page.contains("<a href=\"?sort=name&amp;order=asc\">Name</a>"));
        assert!(page.contains("<a href=\"?sort=date&amp;order=asc\">Modified</a>"));
        // Sizes in human units, exact bytes in the title.
        assert!(page.contains("<td class=\"size\" title=\"30 bytes\">30 B</td>"));
    });
}

#[test]
fn a_bad_listing_query_is_400() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[("www/a.txt", b"a"), ("www/indexed/index.html", b"index")],
            |_, _| {},
        );
        for (target, message) in [
            (
                "/?sort=colour",
                "Bad listing query (sort must be name, size or date, not \"colour\")",
            ),
            (
                "/?sort=size&order=up",
                "Bad listing query (order must be asc or desc, not \"up\")",
            ),
        ] {
            let r = site.get(target);
            assert_eq!((r.status, r.reason.as_str()), (400, message), "{target}");
            assert!(!r.closes(), "{target}: the request was framed cleanly");
        }
        // Other parameters are ignored; an index page ignores the query altogether.
        assert_eq!(site.get("/?v=2&sort=date").status, 200);
        assert_eq!(site.get("/indexed/?sort=colour").text(), "index");
    });
}

// --- JSON --------------------------------------------------------------------------------

#[test]
fn json_listing_has_the_same_entries() {
    each_setup(|setup| {
        let site = site(
            setup,
            &[
                ("www/a.txt", b"hello"),
                ("www/big.txt", &[b'x'; 3000]),
                ("www/folder/in.txt", b"in"),
                ("www/.hidden", b"h"),
            ],
            |_, _| {},
        );
        let root = site.root();
        set_mtime(&root.join("a.txt"), Y2020);
        set_mtime(&root.join("big.txt"), Y2020 + 86_400 + 3661);
        set_mtime(&root.join("folder"), 951_782_400);
        assert_eq!(
            site.json("/"),
            [
                json!({"name": "folder", "type": "dir", "size": null,
                       "modified": "2000-02-29T00:00:00Z"}),
                json!({"name": "a.txt", "type": "file", "size": 5,
                       "modified": "2020-01-01T00:00:00Z"}),
                json!({"name": "big.txt", "type": "file", "size": 3000,
                       "modified": "2020-01-02T01:01:01Z"}),
            ]
        );
        let json = site.get_with("/", &[("Accept", "application/json")]);
        assert_eq!(json.header("vary"), Some("Accept"));
        assert_eq!(json.header("etag"), None, "a listing has no ETag");
        assert_eq!(
            json.header("content-length"),
            Some(json.body.len().to_string().as_str())
        );
        // Same sort parameters.
        assert_eq!(
            site.names("/?sort=size&order=desc"),
            ["folder", "big.txt", "a.txt"]
        );
        // What browsers and curl send gets the page, also with Vary.
        for accept in [
            "*/*",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/json;q=0.5, text/html",
        ] {
            let r = site.get_with("/", &[("Accept", accept)]);
            assert_eq!(
                r.header("content-type"),
                Some("text/html; charset=utf-8"),
                "{accept}"
            );
            assert_eq!(r.header("vary"), Some("Accept"));
            assert!(r
                .text()
                .contains("<td class=\"size\" title=\"3000 bytes\">2.9 KiB</td>"));
            assert!(r
                .text()
                .contains("<time datetime=\"2020-01-01T00:00:00Z\">2020-01-01"));
        }
        let page = site.get("/");
        assert_eq!(
            page.header("content-security-policy"),
            Some("default-src 'none'; style-src 'unsafe-inline'")
        );
    });
}

#[test]
fn a_listing_is_compressed_and_varies_on_both_fields() {
    each_setup(|setup| {
        let dir = TempDir::new();
        for i in 0..INLINE_LISTING_ENTRIES + 10 {
            dir.write(&format!("big/f{i:04}.txt"), "x");
        }
        dir.write("few/a.txt", "a");
        let root = dir.path().to_owned();
        let server = TestServer::start(setup, move |mut builder| {
            builder.compression(Compression::on());
            let files = builder.files();
            files.bind_path("/", &root).expect("bind");
            files.directory_listing = true;
            builder
        });
        // A big folder (listed in a job) and a small one (listed inline), both formats.
        for (target, accept) in [
            ("/big/", "text/html"),
            ("/big/", "application/json"),
            ("/few/?sort=size", "text/html"),
        ] {
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nAccept-Encoding: gzip\r\n\r\n"
            );
            let r = server
                .send_raw(request.as_bytes())
                .pop()
                .expect("an answer");
            assert_eq!(r.status, 200, "{target} {accept}");
            let vary: Vec<&str> = r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .collect();
            assert!(
                vary.contains(&"Accept") && vary.contains(&"Accept-Encoding"),
                "{target} {accept}: {vary:?}"
            );
            assert_eq!(
                r.header("content-encoding"),
                Some("gzip"),
                "{target} {accept}"
            );
            assert!(
                r.body.starts_with(&[0x1f, 0x8b]),
                "{target} {accept}: gzip bytes"
            );
        }
    });
}

// --- Names and links ---------------------------------------------------------------------

/// Names a page must escape and a link must encode.
const HOSTILE: &[&str] = &[
    "<script>alert(1)<.txt",
    "\"quoted\" 'single'.txt",
    "100%.txt",
    "%41.txt",
    "a b.txt",
    "what?#frag.txt",
    "&amp;.txt",
    "日本語 ü é.txt",
    "javascript:alert(1).txt",
];

#[test]
fn hostile_names_are_escaped_and_their_links_work() {
    each_setup(|setup| {
        let files: Vec<(String, Vec<u8>)> = HOSTILE
            .iter()
            .map(|name| (format!("www/h/{name}"), name.as_bytes().to_vec()))
            .chain([(
                "www/h/<b> & \"c\"/in.txt".to_owned(),
                b"in the odd folder".to_vec(),
            )])
            .collect();
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_slice()))
            .collect();
        let site = site(setup, &files, |_, _| {});
        // Names no request path can spell are left out (the JSON check below).
        let h = site.root().join("h");
        for name in [
            &b"back\\slash.txt"[..],
            b"new\nline.txt",
            b"latin1-\xe9.txt",
        ] {
            std::fs::write(h.join(OsStr::from_bytes(name)), "unreachable").expect("write");
        }
        let page = site.get("/h/").text();
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains(">&lt;script&gt;alert(1)&lt;.txt</a>"),
            "{page}"
        );
        assert!(page.contains(">&quot;quoted&quot; &#x27;single&#x27;.txt</a>"));
        assert!(page.contains(">&amp;amp;.txt</a>"));
        assert!(page.contains(">日本語 ü é.txt</a>"));
        assert!(page.contains("href=\"%2541.txt\""), "{page}");
        // Every link leads to its own file.
        let links = row_links(&page);
        assert_eq!(links.len(), 1 + HOSTILE.len() + 1, "{links:?}");
        for href in &links[2..] {
            let r = site.get(&resolve("/h/", href));
            let name = r.text();
            assert_eq!(r.status, 200, "{href}");
            assert!(HOSTILE.contains(&name.as_str()), "{href} served {name:?}");
            assert_eq!(href, &percent(&name), "{name}: the link encodes the name");
        }
        // The folder: link, title, breadcrumbs.
        let folder = &links[1];
        assert_eq!(folder, "%3Cb%3E%20%26%20%22c%22/");
        let inner = site.get(&resolve("/h/", folder)).text();
        assert!(
            inner
                .contains("<title>Directory listing for /h/&lt;b&gt; &amp; &quot;c&quot;/</title>"),
            "{inner}"
        );
        assert!(!inner.contains("<b>"), "{inner}");
        // JSON names are the names, unescaped.
        let mut names = site.names("/h/");
        names.sort();
        let mut expected: Vec<String> = HOSTILE.iter().map(|n| (*n).to_owned()).collect();
        expected.push("<b> & \"c\"".to_owned());
        expected.sort();
        assert_eq!(names, expected);
    });
}

/// `name` percent-encoded as a listing link encodes it (RFC 3986 unreserved kept).
fn percent(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn parent_link_and_breadcrumbs_lead_up() {
    each_setup(|setup| {
        let site = site(setup, &[("www/a/b c/d/leaf.txt", b"leaf")], |_, _| {});
        let page = site.get("/a/b%20c/d/").text();
        assert_eq!(row_links(&page), ["../", "leaf.txt"]);
        let crumbs = crumb_links(&page);
        assert_eq!(crumbs, ["../../../", "../../", "../", "./"]);
        for (href, title) in crumbs.iter().zip(["/", "/a/", "/a/b c/", "/a/b c/d/"]) {
            let r = site.get(&resolve("/a/b%20c/d/", href));
            assert_eq!(r.status, 200, "{href}");
            assert!(
                r.text()
                    .contains(&format!("<title>Directory listing for {title}</title>")),
                "{href}: {}",
                r.text()
            );
        }
        assert!(
            page.contains("<h1>Directory listing for <a href=\"../../../\">/</a>"),
            "{page}"
        );
        let parent = site.get(&resolve("/a/b%20c/d/", "../")).text();
        assert!(parent.contains("<title>Directory listing for /a/b c/</title>"));
        // The root has breadcrumbs but no parent row.
        let root = site.get("/").text();
        assert_eq!(row_links(&root), ["a/"]);
        assert_eq!(crumb_links(&root), ["./"]);
    });
}

#[test]
fn no_link_leads_to_a_folder_that_is_not_served() {
    each_setup(|setup| {
        let dir = TempDir::new();
        dir.write("pub/sub/in.txt", "in");
        let folder = dir.path().join("pub");
        let server = TestServer::start(setup, move |mut builder| {
            let files = builder.files();
            files.bind_path("/files/", &folder).expect("bind");
            files.directory_listing = true;
            builder
        });
        let get = |target: &str| {
            server
                .send_raw(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                .pop()
                .expect("an answer")
        };
        assert_eq!(get("/").status, 404, "nothing is bound at the root");
        let page = get("/files/sub/").text();
        assert!(
            page.contains(
                "<h1>Directory listing for /<a href=\"../\">files</a>/<a href=\"./\">sub</a>/</h1>"
            ),
            "{page}"
        );
        assert_eq!(row_links(&page), ["../", "in.txt"]);
        let page = get("/files/").text();
        assert!(
            page.contains("<h1>Directory listing for /<a href=\"./\">files</a>/</h1>"),
            "{page}"
        );
        assert_eq!(
            row_links(&page),
            ["sub/"],
            "no parent row: the root is not served"
        );
    });
}

// --- Off the event loop ------------------------------------------------------------------

/// The disk, except that listing the folder `gated` in full (as a job does: more than
/// [`INLINE_LISTING_ENTRIES`] entries) waits until the gate opens.
#[derive(Debug)]
struct GatedFs {
    gated: PathBuf,
    entered: Mutex<mpsc::Sender<()>>,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl FileSystem for GatedFs {
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        DiskFs.metadata(path)
    }
    fn is_symlink(&self, path: &Path) -> io::Result<bool> {
        DiskFs.is_symlink(path)
    }
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        DiskFs.canonicalize(path)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn OpenFile>> {
        DiskFs.open(path)
    }
    fn read_dir(&self, path: &Path, max: usize) -> io::Result<Option<Vec<DirEntry>>> {
        if path == self.gated && max > INLINE_LISTING_ENTRIES {
            let _ = self.entered.lock().map(|tx| tx.send(()));
            let (lock, opened) = &*self.open;
            let mut open = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*open {
                open = opened.wait(open).unwrap_or_else(|e| e.into_inner());
            }
        }
        DiskFs.read_dir(path, max)
    }
    fn create_temp(&self) -> io::Result<Box<dyn TempFile>> {
        DiskFs.create_temp()
    }
}

/// Opens the gate when dropped, so a failed test still lets the server stop.
struct Opener(Arc<(Mutex<bool>, Condvar)>);

impl Drop for Opener {
    fn drop(&mut self) {
        let (lock, opened) = &*self.0;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        opened.notify_all();
    }
}

#[test]
fn a_small_file_comes_back_while_a_big_listing_builds() {
    each_setup(|setup| {
        let dir = TempDir::new();
        let count = INLINE_LISTING_ENTRIES * 2;
        for i in 0..count {
            dir.write(&format!("big/f{i:05}.txt"), "x");
        }
        dir.write("small.txt", "small");
        dir.write("few/a.txt", "a");
        let (entered_tx, entered) = mpsc::channel();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let opener = Opener(Arc::clone(&gate));
        let fs = GatedFs {
            gated: dir.path().join("big"),
            entered: Mutex::new(entered_tx),
            open: gate,
        };
        let mut builder =
            Server::builder_with_fs((Instant::now(), SystemTime::now()), Arc::new(fs));
        let files = builder.files();
        files.bind_path("/", dir.path()).expect("bind");
        files.directory_listing = true;
        let server = TestServer::serve(setup, Tuning::default(), builder.build());

        let mut lister = server.connect();
        let request = b"GET /big/ HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n";
        lister.send(request).expect("send");
        entered
            .recv_timeout(READ_TIMEOUT)
            .expect("the big listing started");
        // The listing is held mid-way: everyone else is still served, small folders too.
        let mut other = server.connect();
        for _ in 0..3 {
            let r = other.request(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!((r.status, r.text().as_str()), (200, "small"), "{setup}");
            let r =
                other.request(b"GET /few/ HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n");
            assert_eq!(r.status, 200, "{setup}");
        }
        drop(opener);
        let r = lister.response();
        assert_eq!(r.status, 200);
        let listed: Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(listed.as_array().map(Vec::len), Some(count));
    });
}

/// A percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let at = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Small-file latencies over `span` from one client, while `listers` clients fetch the
/// listing of `/big/` over and over; also how long one listing took on average.
fn small_file_latency(server: &TestServer, listers: usize, span: Duration) -> (Vec<Duration>, f64) {
    let stop = Arc::new(Mutex::new(false));
    let mut threads = Vec::new();
    for _ in 0..listers {
        let mut client = server.connect();
        let stop = Arc::clone(&stop);
        threads.push(thread::spawn(move || {
            let mut took = Vec::new();
            while !*stop.lock().unwrap() {
                let started = Instant::now();
                let r = client.request(b"GET /big/ HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(r.status, 200);
                took.push(started.elapsed());
            }
            took
        }));
    }
    thread::sleep(Duration::from_millis(200));
    let mut client = server.connect();
    let mut samples = Vec::new();
    let until = Instant::now() + span;
    while Instant::now() < until {
        let started = Instant::now();
        let r = client.request(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        samples.push(started.elapsed());
        assert_eq!(r.status, 200);
        thread::sleep(Duration::from_millis(2));
    }
    *stop.lock().unwrap() = true;
    let listings: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("lister"))
        .collect();
    let mean = if listings.is_empty() {
        0.0
    } else {
        listings.iter().sum::<Duration>().as_secs_f64() * 1000.0 / listings.len() as f64
    };
    samples.sort();
    (samples, mean)
}

/// Prints a small file's p50/p99 on mio with 0 and 2 clients listing a 20,000-file folder.
#[test]
#[ignore = "a measurement: run with --ignored --nocapture, best with --release"]
fn listing_latency() {
    let dir = TempDir::new();
    for i in 0..20_000 {
        dir.write(&format!("www/big/file-{i:05}.txt"), "x");
    }
    dir.write("www/small.txt", "small");
    let root = dir.path().join("www");
    for transport in [Transport::Mio, Transport::Std] {
        let setup = Setup {
            transport,
            tls: false,
        };
        let root = root.clone();
        let server = TestServer::start(setup, move |mut builder| {
            let files = builder.files();
            files.bind_path("/", &root).expect("bind");
            files.directory_listing = true;
            builder
        });
        for listers in [0, 2] {
            let (samples, listing_ms) =
                small_file_latency(&server, listers, Duration::from_secs(3));
            println!(
                "{setup}: small file with {listers} listing clients: p50 {:.2} ms, p99 {:.2} ms \
                 ({} samples; one 20,000-entry listing {listing_ms:.1} ms)",
                percentile(&samples, 50),
                percentile(&samples, 99),
                samples.len(),
            );
        }
    }
}
