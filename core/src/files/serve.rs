//! The static-file route: from a request target to a file, listing, redirect or error, following
//! the original's translation (BEHAVIOUR.md: Static files › Path translation) with our stricter
//! path rules.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::byteranges;
use super::cache::{CacheLimits, CachedFile, FileCache};
use super::etag::{ETag, EtagHasher};
use super::glob::FileFilter;
use super::listing::{ListingFormat, SortOrder};
use super::mime::content_type;
use super::path::{is_hidden_name, redirect_location, sanitize, split_target, SafePath};
use super::precondition::{Preconditions, Verdict};
use super::range::{if_range_allows, parse_range, RangeOutcome};
use super::watch::{folders_of, Stale, WatchOp, Watches};
use crate::coding::{encode, is_compressible, AcceptEncoding, Coding, Compression};
use crate::fs::{FileKind, FileSystem, Metadata, OpenFile};
use crate::http::error::HttpError;
use crate::http::head::RequestHead;
use crate::http::response::{self, reason_phrase, render_fields, Body, FileRegion, Response};

/// Most file versions whose ETag is remembered; the cache is emptied when it is full.
const ETAG_CACHE_ENTRIES: usize = 4096;

/// The empty 1x1 icon served by `link_empty_favicon_fallback` (our own bytes).
pub const EMPTY_FAVICON: &[u8] = &[
    0, 0, 1, 0, 1, 0, // ICONDIR: reserved, type 1 (icon), one image
    1, 1, 0, 0, 1, 0, 32, 0, 48, 0, 0, 0, 22, 0, 0, 0, // entry: 1x1, 32 bpp, 48 bytes at 22
    40, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 32,
    0, // BITMAPINFOHEADER (height x2 for the mask)
    0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
    0, 0, 0, 0, // one transparent pixel
    0, 0, 0, 0, // AND mask row
];

/// How symbolic links met under a bound folder are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkPolicy {
    /// Never serve a path that goes through a link.
    Never,
    /// Follow links only when they resolve inside the bound folder (default).
    #[default]
    WithinRoot,
    /// Follow every link, even out of the folder.
    DangerFollowAll,
}

/// Where a missing `favicon.ico` is answered from (BEHAVIOUR.md: Static files › Favicon).
#[derive(Debug, Clone)]
pub enum Favicon {
    /// A file on disk.
    File(PathBuf),
    /// Bytes built into the binary.
    Embedded(&'static [u8]),
}

/// A folder bound under a URL prefix.
#[derive(Debug, Clone)]
struct Binding {
    prefix: String,
    root: PathBuf,
    /// `root` with links resolved, for the symlink policy.
    real_root: PathBuf,
}

/// Everything the static route needs: bindings, filters, and the ETag cache.
#[derive(Debug)]
pub struct StaticFiles {
    fs: Arc<dyn FileSystem>,
    bindings: Vec<Binding>,
    /// White and black lists.
    pub filter: FileFilter,
    /// Serve the root icon (or the fallback) for any missing `…/favicon.ico`.
    pub favicon_everywhere: bool,
    /// The fallback icon.
    pub favicon_fallback: Option<Favicon>,
    /// List folders that have no index page.
    pub directory_listing: bool,
    /// `Cache-Control: max-age` in seconds.
    pub max_age: u64,
    /// Symbolic-link policy.
    pub symlinks: SymlinkPolicy,
    /// A file answered for unknown paths whose request accepts HTML (single-page apps).
    pub spa_fallback: Option<PathBuf>,
    /// The original's file fallback hook: called with the normalised path of a request
    /// that would get 404; the file it names is served without the white/black lists.
    pub fallback_hook: Option<FallbackHook>,
    /// Bounds of the small-file cache (see [`CacheLimits`](crate::files::CacheLimits)).
    pub cache_limits: CacheLimits,
    /// When answers are compressed (files here, in-memory answers by the connection).
    pub compression: Compression,
    /// Each file's tag and the metadata of the version it was computed from.
    etags: Mutex<HashMap<PathBuf, (Metadata, ETag)>>,
    /// The newest wall time a request brought, in nanoseconds since the epoch: a tag is
    /// remembered only for a file that settled before it (see [`FileCache::settled`]).
    newest_wall: AtomicU64,
    cache: FileCache,
    /// The folders watched on the cache's behalf.
    watches: Watches,
}

/// The file fallback hook: normalised request path in, a file to serve instead of 404 out.
/// It runs on the transport's thread, so it should only compute a path.
#[derive(Clone)]
pub struct FallbackHook(pub Arc<FallbackFn>);

/// The function inside a [`FallbackHook`].
pub(crate) type FallbackFn = dyn Fn(&str) -> Option<PathBuf> + Send + Sync;

impl std::fmt::Debug for FallbackHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FallbackHook")
    }
}

/// Most bytes hashed on the caller's thread when a file's ETag is not cached yet.
const INLINE_HASH_MAX: u64 = 256 * 1024;

/// Most entries of a folder read on the caller's thread for a listing; a bigger folder is
/// listed from a job. Each entry costs three `stat` calls or so (its own, and the checks a
/// GET of it takes) and a row, some microseconds: the budget keeps an inline listing to a
/// fraction of a millisecond.
pub const INLINE_LISTING_ENTRIES: usize = 64;

/// An answer that needs work growing with the size of what it serves (hashing a big
/// file seen for the first time; compressing one; listing a big folder).
/// [`StaticFiles::serve`] resolved the request up to that work and hands this back;
/// [`StaticFiles::finish`] completes it, off the event loop, from where `serve` stopped:
/// the path is not looked up or opened again.
#[derive(Debug)]
pub(crate) struct Deferred(Pending);

/// Where a [`Deferred`] answer resumes. A new kind of slow work adds a variant here and
/// its arm in [`StaticFiles::finish`].
#[derive(Debug)]
enum Pending {
    /// A regular file that passed every check, open, and the cache key its answer may be
    /// stored under.
    File {
        path: PathBuf,
        file: Arc<dyn OpenFile>,
        key: Option<(String, SystemTime)>,
    },
    /// A folder to list (reached at `path`) that holds more than
    /// [`INLINE_LISTING_ENTRIES`] entries.
    Listing {
        path: SafePath,
        dir: PathBuf,
        order: SortOrder,
    },
}

/// Whether the work behind an answer may grow with the size of what it serves: `Bounded`
/// on the event loop (such work is [`Deferred`]), `Unbounded` in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effort {
    Bounded,
    Unbounded,
}

/// The work of an answer would exceed [`Effort::Bounded`].
#[derive(Debug)]
struct TooSlow;

/// Why a binding could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPrefix(pub String);

impl std::fmt::Display for BadPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "name must start and end with \"/\": {}", self.0)
    }
}

impl std::error::Error for BadPrefix {}

/// The outcome of looking a path up under the bindings. `first` says no earlier binding
/// matched the path's prefix, so no file appearing elsewhere can take the path over: only
/// then is the answer cached.
enum Found {
    File {
        path: PathBuf,
        first: bool,
    },
    /// A directory, and the index of the binding it was found under.
    Dir {
        path: PathBuf,
        binding: usize,
        first: bool,
    },
    Missing,
    Hidden,
    NoBinding,
}

/// A request whose answer may be cached: its raw path (the cache key) and the wall time.
#[derive(Clone, Copy)]
struct CacheKey<'a> {
    raw_path: &'a str,
    wall: SystemTime,
}

impl StaticFiles {
    /// No bindings yet; files are read through `fs`.
    pub fn new(fs: Arc<dyn FileSystem>) -> Self {
        Self {
            fs,
            bindings: Vec::new(),
            filter: FileFilter::new(),
            favicon_everywhere: true,
            favicon_fallback: None,
            directory_listing: false,
            max_age: 0,
            symlinks: SymlinkPolicy::default(),
            spa_fallback: None,
            fallback_hook: None,
            cache_limits: CacheLimits::default(),
            compression: Compression::default(),
            etags: Mutex::new(HashMap::new()),
            newest_wall: AtomicU64::new(0),
            cache: FileCache::default(),
            watches: Watches::default(),
        }
    }

    /// The file system files are read through (and uploads spilled to).
    pub(crate) fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// Binds `folder` under `prefix`, tried before earlier bindings (BEHAVIOUR.md: Static files ›
    /// Folder bindings).
    pub fn bind_path(&mut self, prefix: &str, folder: impl Into<PathBuf>) -> Result<(), BadPrefix> {
        let binding = self.binding(prefix, folder.into())?;
        self.bindings.insert(0, binding);
        Ok(())
    }

    /// Binds `folder` under `prefix`, tried after every other binding.
    pub fn bind_path_fallback(
        &mut self,
        prefix: &str,
        folder: impl Into<PathBuf>,
    ) -> Result<(), BadPrefix> {
        let binding = self.binding(prefix, folder.into())?;
        self.bindings.push(binding);
        Ok(())
    }

    fn binding(&self, prefix: &str, root: PathBuf) -> Result<Binding, BadPrefix> {
        if prefix.is_empty() || !prefix.starts_with('/') || !prefix.ends_with('/') {
            return Err(BadPrefix(prefix.to_owned()));
        }
        let real_root = self.fs.canonicalize(&root).unwrap_or_else(|_| root.clone());
        Ok(Binding {
            prefix: prefix.to_owned(),
            root,
            real_root,
        })
    }

    /// Answers a GET or HEAD for `head`'s target at the wall time `wall` (which decides
    /// whether a file settled enough to be cached), doing only work of bounded size: an
    /// answer needing more (a big file whose ETag is not known yet) yields [`Deferred`],
    /// which the caller completes with [`finish`](Self::finish) in a job, so an event
    /// loop never reads a large file.
    pub(crate) fn serve(&self, head: &RequestHead, wall: SystemTime) -> Result<Response, Deferred> {
        let nanos = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.newest_wall.fetch_max(nanos, Ordering::Relaxed);
        let target = head.target();
        let (raw_path, query, _) = split_target(target);
        if let Some(response) = self.cached_answer(head, raw_path) {
            return Ok(response);
        }
        let key = CacheKey { raw_path, wall };
        let path = match sanitize(raw_path) {
            Ok(path) => path,
            Err(e) => return Ok(HttpError::BadPath(e.to_string()).response()),
        };
        let mut found = self.lookup(&path);
        if matches!(found, Found::Missing) && self.is_favicon(&path) {
            match self.favicon() {
                Some(Favicon::Embedded(bytes)) => return Ok(self.embedded(head, bytes)),
                Some(Favicon::File(file)) => {
                    found = Found::File {
                        path: file,
                        first: false,
                    }
                }
                None => {}
            }
        }
        match found {
            Found::File { path: file, first } => {
                self.file_response(head, &file, first.then_some(key))
            }
            Found::Dir { .. } if !path.is_folder() => {
                let location = redirect_location(target);
                let mut response = Response::new(301, Body::Empty).with_field("Location", location);
                response.reason = Some("Use index page with slash".to_owned());
                Ok(response)
            }
            Found::Dir {
                path: dir,
                binding,
                first,
            } => self.directory(head, (&path, query), &dir, binding, first.then_some(key)),
            Found::Missing | Found::Hidden | Found::NoBinding => self.not_found(head, &path),
        }
    }

    /// The first binding whose prefix matches and whose candidate exists;
    /// hidden names stop the search.
    fn lookup(&self, path: &SafePath) -> Found {
        let mut found = Found::NoBinding;
        for (index, binding) in self.bindings.iter().enumerate() {
            let Some(rest) = path.strip_prefix(&binding.prefix) else {
                continue;
            };
            if rest.iter().any(|word| word.starts_with('.')) {
                return Found::Hidden;
            }
            // Until a binding matched the prefix, `found` stays `NoBinding`.
            let first = matches!(found, Found::NoBinding);
            let candidate: PathBuf = rest.iter().fold(binding.root.clone(), |p, w| p.join(w));
            if !self.links_allowed(binding, &candidate) {
                found = Found::Missing;
                continue;
            }
            match self.fs.metadata(&candidate) {
                Ok(meta) if meta.kind == FileKind::Dir => {
                    return Found::Dir {
                        path: candidate,
                        binding: index,
                        first,
                    }
                }
                Ok(meta) if meta.kind == FileKind::File => {
                    if !self.filter.allows(&candidate.to_string_lossy()) {
                        return Found::Missing;
                    }
                    return Found::File {
                        path: candidate,
                        first,
                    };
                }
                _ => found = Found::Missing,
            }
        }
        found
    }

    /// A regular file under `binding` that the symlink policy and the lists allow.
    fn checked_file(&self, binding: &Binding, candidate: PathBuf) -> Option<PathBuf> {
        let is_file = self
            .fs
            .metadata(&candidate)
            .is_ok_and(|m| m.kind == FileKind::File);
        (is_file
            && self.links_allowed(binding, &candidate)
            && self.filter.allows(&candidate.to_string_lossy()))
        .then_some(candidate)
    }

    /// Applies the symlink policy to the components of `candidate` below the binding root.
    fn links_allowed(&self, binding: &Binding, candidate: &Path) -> bool {
        if self.symlinks == SymlinkPolicy::DangerFollowAll {
            return true;
        }
        let depth = candidate
            .strip_prefix(&binding.root)
            .map_or(0, |rest| rest.components().count());
        let mut ancestors = candidate.ancestors().take(depth);
        if !ancestors.any(|p| self.fs.is_symlink(p).unwrap_or(false)) {
            return true;
        }
        self.symlinks == SymlinkPolicy::WithinRoot
            && self
                .fs
                .canonicalize(candidate)
                .is_ok_and(|real| real.starts_with(&binding.real_root))
    }

    fn is_favicon(&self, path: &SafePath) -> bool {
        self.favicon_everywhere
            && !path.is_folder()
            && path.segments().last().is_some_and(|s| s == "favicon.ico")
    }

    /// The first binding's root icon (if the policy and lists allow it), else the
    /// fallback (BEHAVIOUR.md: Static files › Favicon).
    fn favicon(&self) -> Option<Favicon> {
        for binding in &self.bindings {
            if let Some(icon) = self.checked_file(binding, binding.root.join("favicon.ico")) {
                return Some(Favicon::File(icon));
            }
            match &self.favicon_fallback {
                Some(Favicon::File(file)) => {
                    let allowed = self
                        .fs
                        .metadata(file)
                        .is_ok_and(|m| m.kind == FileKind::File)
                        && self.filter.allows(&file.to_string_lossy());
                    return allowed.then(|| Favicon::File(file.clone()));
                }
                Some(embedded) => return Some(embedded.clone()),
                None => {}
            }
        }
        None
    }

    /// `index.html`, `index.htm`, a listing, or 404 (BEHAVIOUR.md: Static files › Directories).
    /// Index pages go through the same symlink and list checks as any file. Only `index.html` is
    /// cached: an `index.html` created later must take over from `index.htm`.
    fn directory(
        &self,
        head: &RequestHead,
        (path, query): (&SafePath, Option<&str>),
        dir: &Path,
        binding: usize,
        key: Option<CacheKey<'_>>,
    ) -> Result<Response, Deferred> {
        if let Some(binding) = self.bindings.get(binding) {
            for index in ["index.html", "index.htm"] {
                if let Some(file) = self.checked_file(binding, dir.join(index)) {
                    let key = key.filter(|_| index == "index.html");
                    return self.file_response(head, &file, key);
                }
            }
        }
        if !self.directory_listing {
            return Ok(HttpError::ListingDenied.response());
        }
        match SortOrder::from_query(query) {
            Ok(order) => self.listing(head, path, dir, order, Effort::Bounded),
            Err(e) => Ok(HttpError::BadListingQuery(e.to_string()).response()),
        }
    }

    /// The listing of `dir`, reached at `path`: only the entries a GET would serve, in
    /// `order`, as HTML or JSON by the `Accept` field. A folder of more than
    /// [`INLINE_LISTING_ENTRIES`] entries is [`Deferred`] when `effort` is bounded.
    fn listing(
        &self,
        head: &RequestHead,
        path: &SafePath,
        dir: &Path,
        order: SortOrder,
        effort: Effort,
    ) -> Result<Response, Deferred> {
        let max = match effort {
            Effort::Bounded => INLINE_LISTING_ENTRIES,
            Effort::Unbounded => usize::MAX,
        };
        let mut entries = match self.fs.read_dir(dir, max) {
            Ok(Some(entries)) => entries,
            Ok(None) => {
                return Err(Deferred(Pending::Listing {
                    path: path.clone(),
                    dir: dir.to_owned(),
                    order,
                }))
            }
            Err(_) => return Ok(HttpError::ListingDenied.response()),
        };
        // The very decision a GET of each entry takes.
        entries.retain(|entry| {
            path.child(&entry.name, entry.is_dir).is_ok_and(|child| {
                matches!(self.lookup(&child), Found::File { .. } | Found::Dir { .. })
            })
        });
        order.sort(&mut entries);
        let format = ListingFormat::negotiate(head.field_str("accept"));
        // Breadcrumbs and the parent row link only to folders a GET serves.
        let served_above: Vec<bool> = (0..path.segments().len())
            .map(|depth| matches!(self.lookup(&path.ancestor(depth)), Found::Dir { .. }))
            .collect();
        let body = format.render(&path.normalized(), &served_above, &entries, order);
        let mut response = Response::new(200, Body::Bytes(body))
            .with_field("Content-Type", format.content_type())
            .with_field("Vary", "Accept");
        if format == ListingFormat::Html {
            // Names are escaped; this keeps any slip from running script or loading anything.
            response = response.with_field(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            );
        }
        Ok(response)
    }

    /// 404, or the single-page-app file when configured and the client accepts HTML.
    fn not_found(&self, head: &RequestHead, path: &SafePath) -> Result<Response, Deferred> {
        if let Some(spa) = &self.spa_fallback {
            let accepts_html = head
                .field_str("accept")
                .is_some_and(|a| a.contains("text/html"));
            if accepts_html
                && self
                    .fs
                    .metadata(spa)
                    .is_ok_and(|m| m.kind == FileKind::File)
            {
                return self.file_response(head, spa, None);
            }
        }
        if let Some(hook) = &self.fallback_hook {
            if let Some(file) = (hook.0)(&path.normalized()) {
                if self
                    .fs
                    .metadata(&file)
                    .is_ok_and(|m| m.kind == FileKind::File)
                {
                    return self.file_response(head, &file, None);
                }
            }
        }
        Ok(HttpError::NotFound.response())
    }

    fn embedded(&self, head: &RequestHead, bytes: &'static [u8]) -> Response {
        let etag = ETag::of(bytes);
        match Preconditions::from_head(head).evaluate(true, Some(&etag), None) {
            Verdict::Proceed => {}
            Verdict::NotModified => return self.not_modified(&etag, None, false),
            Verdict::Failed => return HttpError::PreconditionFailed.response(),
        }
        Response::new(200, Body::Bytes(bytes.to_vec()))
            .with_field("Content-Type", "image/vnd.microsoft.icon")
            .with_field("ETag", etag.to_string())
            .with_field("Cache-Control", response::max_age(self.max_age))
    }

    /// Completes an answer [`serve`](Self::serve) deferred, doing the work it held back.
    /// Call it off the event loop, with the head of the same request.
    pub(crate) fn finish(&self, deferred: Deferred, head: &RequestHead) -> Response {
        let answer = match deferred.0 {
            Pending::File { path, file, key } => {
                let key = key.as_ref().map(|(raw_path, wall)| CacheKey {
                    raw_path,
                    wall: *wall,
                });
                self.open_file_response(head, &path, file, Effort::Unbounded, key)
            }
            Pending::Listing { path, dir, order } => {
                self.listing(head, &path, &dir, order, Effort::Unbounded)
            }
        };
        // Unbounded work never defers.
        answer.unwrap_or_else(|_| HttpError::Internal(reason_phrase(500).into()).response())
    }

    /// 200, 206, 304 or 416 for a regular file. With `key`, a small settled file asked
    /// for without a range is read whole and cached under the key.
    fn file_response(
        &self,
        head: &RequestHead,
        path: &Path,
        key: Option<CacheKey<'_>>,
    ) -> Result<Response, Deferred> {
        let file = match self.fs.open(path) {
            Ok(file) => file,
            Err(_) => return Ok(HttpError::NotFound.response()),
        };
        self.open_file_response(head, path, file, Effort::Bounded, key)
    }

    /// [`file_response`](Self::file_response) once the file is open; work beyond `effort`
    /// defers the answer with the open file.
    fn open_file_response(
        &self,
        head: &RequestHead,
        path: &Path,
        file: Arc<dyn OpenFile>,
        effort: Effort,
        key: Option<CacheKey<'_>>,
    ) -> Result<Response, Deferred> {
        // The descriptor's own metadata: the path may have changed since it was looked up.
        let meta = file.metadata();
        if self.varies(path) && head.field("range").is_none() {
            if let Some(response) = self.encoded_response(head, path, &file, meta, effort, key)? {
                return Ok(response);
            }
        }
        if let Some(key) = key.filter(|k| {
            head.field("range").is_none() && FileCache::admits(&self.cache_limits, &meta, k.wall)
        }) {
            if let Some(entry) = self.cache_entry(path, &*file, meta) {
                self.remember(key.raw_path, Arc::clone(&entry));
                return Ok(answer_from(&entry, head));
            }
        }
        let etag = match self.etag(path, &*file, meta, None, effort) {
            Ok(Some(etag)) => etag,
            Ok(None) => return Ok(HttpError::Internal("Cannot read file".into()).response()),
            Err(TooSlow) => {
                let key = key.map(|k| (k.raw_path.to_owned(), k.wall));
                let path = path.to_owned();
                return Err(Deferred(Pending::File { path, file, key }));
            }
        };
        let last_modified = httpdate::fmt_http_date(meta.modified);
        match Preconditions::from_head(head).evaluate(true, Some(&etag), Some(meta.modified)) {
            Verdict::Proceed => {}
            Verdict::NotModified => {
                return Ok(self.not_modified(&etag, Some(last_modified), self.varies(path)))
            }
            Verdict::Failed => return Ok(HttpError::PreconditionFailed.response()),
        }
        let mut status = 200;
        let mut region = FileRegion {
            file,
            offset: 0,
            len: meta.len,
        };
        let mut content_range = None;
        let range = head.field_str("range").filter(|_| {
            head.field_str("if-range")
                .is_none_or(|ir| if_range_allows(ir, &etag, &last_modified))
        });
        if let Some(range) = range {
            match parse_range(range, meta.len) {
                RangeOutcome::Ignore => {}
                RangeOutcome::Satisfiable(r) => {
                    status = 206;
                    content_range = Some(r.content_range(meta.len));
                    region.offset = r.start;
                    region.len = r.len();
                }
                RangeOutcome::Multiple(ranges) => {
                    let mut fields = self.file_fields(path, &etag, last_modified);
                    let boundary = byteranges::boundary(&etag);
                    let mut part_type = String::new();
                    if let Some((_, value)) = fields.iter_mut().find(|(n, _)| n == "Content-Type") {
                        part_type = std::mem::replace(value, byteranges::content_type(&boundary));
                    }
                    let parts =
                        byteranges::body(&region.file, meta.len, &ranges, &part_type, &boundary);
                    let mut response = Response::new(206, Body::Parts(parts));
                    response.fields = fields;
                    return Ok(response);
                }
                RangeOutcome::Unsatisfiable => {
                    let mut response = HttpError::RangeNotSatisfiable.response();
                    response
                        .fields
                        .push(("Content-Range".into(), format!("bytes */{}", meta.len)));
                    return Ok(response);
                }
            }
        }
        let mut response = Response::new(status, Body::File(region));
        response.fields = self.file_fields(path, &etag, last_modified);
        if let Some(content_range) = content_range {
            response
                .fields
                .push(("Content-Range".into(), content_range));
        }
        Ok(response)
    }

    /// The fields of a 200 for the file at `path`, in the order they are sent.
    fn file_fields(
        &self,
        path: &Path,
        etag: &ETag,
        last_modified: String,
    ) -> Vec<(Cow<'static, str>, String)> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let mut fields = vec![
            ("Content-Type".into(), content_type(&file_name).to_owned()),
            ("Last-Modified".into(), last_modified),
            ("ETag".into(), etag.to_string()),
            ("Cache-Control".into(), response::max_age(self.max_age)),
            ("Accept-Ranges".into(), "bytes".to_owned()),
        ];
        if self.varies(path) {
            fields.push(vary_field());
        }
        fields
    }

    /// Whether the file at `path` has compressed representations (`Vary: Accept-Encoding`
    /// on all its answers): compression is on and its type is worth compressing.
    fn varies(&self, path: &Path) -> bool {
        self.compression.enabled
            && path
                .file_name()
                .is_some_and(|n| is_compressible(content_type(&n.to_string_lossy())))
    }

    /// The compressed answer (200 or 304) for a request that accepts a coding: from a
    /// precompressed sibling when one fits, else compressed here (a body past
    /// [`Compression::inline_max`] defers under [`Effort::Bounded`]). `None`: send identity.
    fn encoded_response(
        &self,
        head: &RequestHead,
        path: &Path,
        file: &Arc<dyn OpenFile>,
        meta: Metadata,
        effort: Effort,
        key: Option<CacheKey<'_>>,
    ) -> Result<Option<Response>, Deferred> {
        let accept = AcceptEncoding::parse(head.field_str("accept-encoding"));
        if !accept.accepts_any(&Coding::ALL) {
            return Ok(None);
        }
        let defer = || {
            let key = key.map(|k| (k.raw_path.to_owned(), k.wall));
            let (path, file) = (path.to_owned(), Arc::clone(file));
            Deferred(Pending::File { path, file, key })
        };
        let siblings: Vec<(Coding, PathBuf)> = Coding::PRECOMPRESSED
            .into_iter()
            .filter_map(|coding| Some((coding, self.sibling(path, coding, meta)?)))
            .collect();
        let offered: Vec<Coding> = siblings.iter().map(|(c, _)| *c).collect();
        if let Some(coding) = accept.choose(&offered) {
            let sibling = siblings.iter().find(|(c, _)| *c == coding).map(|(_, p)| p);
            let answer =
                sibling.and_then(|s| self.sibling_response(head, path, s, coding, meta, effort));
            if let Some(response) = answer {
                return response.map(Some).map_err(|TooSlow| defer());
            }
        }
        let settings = &self.compression;
        let Some(coding) = accept.choose(&Coding::ALL) else {
            return Ok(None);
        };
        let small = meta.len < settings.min_size && !accept.refuses_identity();
        if small || meta.len > settings.max_file_size {
            return Ok(None);
        }
        let etag = match self.etag(path, &**file, meta, None, effort) {
            Ok(Some(etag)) => etag.with_coding(coding),
            Ok(None) => return Ok(None),
            Err(TooSlow) => return Err(defer()),
        };
        let last_modified = httpdate::fmt_http_date(meta.modified);
        match Preconditions::from_head(head).evaluate(true, Some(&etag), Some(meta.modified)) {
            Verdict::Proceed => {}
            Verdict::NotModified => {
                return Ok(Some(self.not_modified(&etag, Some(last_modified), true)))
            }
            Verdict::Failed => return Ok(Some(HttpError::PreconditionFailed.response())),
        }
        if meta.len > settings.inline_max && effort == Effort::Bounded {
            return Err(defer());
        }
        let Some(encoded) = read_whole(&**file, meta.len)
            .and_then(|content| encode(coding, &settings.levels, &content).ok())
        else {
            return Ok(None);
        };
        let mut fields = self.file_fields(path, &etag, last_modified.clone());
        fields.push(("Content-Encoding".into(), coding.token().to_owned()));
        let cacheable = key.filter(|k| {
            FileCache::admits_encoded(&self.cache_limits, &meta, encoded.len(), k.wall)
        });
        let Some(key) = cacheable else {
            let mut response = Response::new(200, Body::Bytes(encoded));
            response.fields = fields;
            return Ok(Some(response));
        };
        let (mut rendered, mut not_modified) = (Vec::new(), Vec::new());
        render_fields(&mut rendered, &fields);
        render_fields(
            &mut not_modified,
            &self.not_modified(&etag, Some(last_modified), true).fields,
        );
        let entry = Arc::new(CachedFile {
            path: path.to_owned(),
            meta,
            etag,
            content: encoded.into(),
            fields: rendered.into(),
            not_modified: not_modified.into(),
            varies: true,
            folders: self.watchable_folders(path, &meta),
            vouched: AtomicBool::new(false),
        });
        self.remember(&variant_key(key.raw_path, coding), Arc::clone(&entry));
        Ok(Some(answer_from(&entry, head)))
    }

    /// The precompressed sibling of `path` for `coding` (`app.js.br`), if one may stand
    /// for it: a regular file, not older than the file, neither hidden nor black-listed,
    /// and not a link unless every link is followed.
    fn sibling(&self, path: &Path, coding: Coding, meta: Metadata) -> Option<PathBuf> {
        let mut name = path.file_name()?.to_os_string();
        name.push(".");
        name.push(coding.extension());
        let sibling = path.with_file_name(&name);
        let found = self.fs.metadata(&sibling).ok()?;
        let usable = found.kind == FileKind::File
            && found.modified >= meta.modified
            && !is_hidden_name(&name.to_string_lossy())
            && !self.filter.blocks(&sibling.to_string_lossy())
            && (self.symlinks == SymlinkPolicy::DangerFollowAll
                || !self.fs.is_symlink(&sibling).unwrap_or(true));
        usable.then_some(sibling)
    }

    /// 200 or 304 from the precompressed `sibling` of `path`, sent as a file region with
    /// the file's type and the sibling's own tag; `None` if it cannot be opened, `TooSlow`
    /// if that tag needs hashing past the bounded effort.
    fn sibling_response(
        &self,
        head: &RequestHead,
        path: &Path,
        sibling: &Path,
        coding: Coding,
        meta: Metadata,
        effort: Effort,
    ) -> Option<Result<Response, TooSlow>> {
        let file = self.fs.open(sibling).ok()?;
        let sibling_meta = file.metadata();
        let etag = match self.etag(sibling, &*file, sibling_meta, None, effort) {
            Ok(etag) => etag?.with_coding(coding),
            Err(TooSlow) => return Some(Err(TooSlow)),
        };
        let last_modified = httpdate::fmt_http_date(meta.modified);
        match Preconditions::from_head(head).evaluate(true, Some(&etag), Some(meta.modified)) {
            Verdict::Proceed => {}
            Verdict::NotModified => {
                return Some(Ok(self.not_modified(&etag, Some(last_modified), true)))
            }
            Verdict::Failed => return Some(Ok(HttpError::PreconditionFailed.response())),
        }
        let region = FileRegion {
            file,
            offset: 0,
            len: sibling_meta.len,
        };
        let mut response = Response::new(200, Body::File(region));
        response.fields = self.file_fields(path, &etag, last_modified);
        response
            .fields
            .push(("Content-Encoding".into(), coding.token().to_owned()));
        Some(Ok(response))
    }

    /// Reads a small file whole and prepares its cache entry: the content, its tag and
    /// the rendered fields of a 200 and of a 304. `None` if the file could not be read.
    fn cache_entry(
        &self,
        path: &Path,
        file: &dyn OpenFile,
        meta: Metadata,
    ) -> Option<Arc<CachedFile>> {
        let content = read_whole(file, meta.len)?;
        let etag = self
            .etag(path, file, meta, Some(&content), Effort::Unbounded)
            .ok()??;
        let last_modified = httpdate::fmt_http_date(meta.modified);
        let mut fields = Vec::new();
        render_fields(
            &mut fields,
            &self.file_fields(path, &etag, last_modified.clone()),
        );
        let mut not_modified = Vec::new();
        render_fields(
            &mut not_modified,
            &self
                .not_modified(&etag, Some(last_modified), self.varies(path))
                .fields,
        );
        Some(Arc::new(CachedFile {
            path: path.to_owned(),
            meta,
            etag,
            content: content.into(),
            fields: fields.into(),
            not_modified: not_modified.into(),
            varies: self.varies(path),
            folders: self.watchable_folders(path, &meta),
            vouched: AtomicBool::new(false),
        }))
    }

    /// The folders whose watches can vouch for a cached file at `path`: `None` when the
    /// path is not absolute and free of links (a change to a link's target reaches
    /// another folder's watch) or the file has more names than this one.
    fn watchable_folders(&self, path: &Path, meta: &Metadata) -> Option<Box<[PathBuf]>> {
        let direct = meta.links == 1
            && self.cache_limits.max_watches > 0
            && self.fs.canonicalize(path).is_ok_and(|real| real == path);
        direct.then(|| folders_of(path))
    }

    /// Caches `entry` under `key` and asks for the watches that can vouch for it.
    fn remember(&self, key: &str, entry: Arc<CachedFile>) {
        if let Some(folders) = &entry.folders {
            self.watches.want(folders, self.cache_limits.max_watches);
        }
        self.cache.insert(&self.cache_limits, key, entry);
    }

    /// Forgets every cached file at or under `path`, and the watches of folders there.
    pub(crate) fn invalidate(&self, path: &Path) {
        self.cache.remove_under(path);
        self.watches.forget_under(path);
    }

    /// The next watch to add or remove for the cache.
    pub(crate) fn poll_watch(&self) -> Option<WatchOp> {
        self.watches.poll()
    }

    /// How adding the watch of `folder` went: its descriptor, or `None` if it failed.
    pub(crate) fn watch_added(&self, folder: &Path, descriptor: Option<i32>) {
        self.watches.added(folder, descriptor);
    }

    /// Drops what the change notifications in `records` (inotify records) make stale.
    pub(crate) fn watch_events(&self, records: &[u8]) {
        for stale in self.watches.read(records) {
            match stale {
                Stale::Under(path) => self.invalidate(&path),
                Stale::All => self.cache.clear(),
            }
        }
    }

    /// The answer from the cache entry of `raw_path`, if there is one and its file is
    /// unchanged; a changed or vanished file drops the entry. Range requests take the
    /// full route.
    ///
    /// A request that accepts a coding is answered from the entry of the compressed form
    /// the full route made for it; the identity entry of a file with compressed forms does
    /// not answer it (the full route compresses, or picks a precompressed sibling).
    fn cached_answer(&self, head: &RequestHead, raw_path: &str) -> Option<Response> {
        if head.field("range").is_some() {
            return None;
        }
        let accept = AcceptEncoding::parse(head.field_str("accept-encoding"));
        let wanted = accept
            .choose(&Coding::ALL)
            .filter(|_| self.compression.enabled);
        if let Some(coding) = wanted {
            if let Some(entry) = self.current_entry(&variant_key(raw_path, coding)) {
                return Some(answer_from(&entry, head));
            }
        }
        let entry = self.current_entry(raw_path)?;
        let small = (entry.content.len() as u64) < self.compression.min_size;
        if entry.varies && wanted.is_some() && (!small || accept.refuses_identity()) {
            return None;
        }
        Some(answer_from(&entry, head))
    }

    /// The cache entry under `key` if its file is unchanged; a changed or vanished file
    /// drops it. An entry its folders' watches vouch for is not checked: a change would
    /// have dropped it.
    fn current_entry(&self, key: &str) -> Option<Arc<CachedFile>> {
        let entry = self.cache.get(key)?;
        if entry.is_vouched() {
            return Some(entry);
        }
        // Watched before the check: a change after it is announced.
        let watched = entry
            .folders
            .as_ref()
            .is_some_and(|folders| self.watches.covers(folders));
        let current = self.fs.metadata(&entry.path);
        if !current.is_ok_and(|meta| entry.is_current(&meta)) {
            self.cache.remove(key);
            return None;
        }
        if watched {
            entry.vouch();
        }
        Some(entry)
    }

    /// A 304 with the fields a 200 would carry for caches (`vary`: `Vary: Accept-Encoding`).
    fn not_modified(&self, etag: &ETag, last_modified: Option<String>, vary: bool) -> Response {
        let mut response = Response::new(304, Body::Empty)
            .with_field("ETag", etag.to_string())
            .with_field("Cache-Control", response::max_age(self.max_age));
        if let Some(last_modified) = last_modified {
            response
                .fields
                .push(("Last-Modified".into(), last_modified));
        }
        if vary {
            response.fields.push(vary_field());
        }
        response
    }

    /// The CRC-32 ETag of a file version, computed once per path and metadata (size,
    /// modification and change time, serial number: a rewrite that keeps the size and
    /// sets the modification time back still moves the change time), from `content` when
    /// the file was read whole, else by reading `file`. The tag of a file that changed
    /// lately is not remembered: a rewrite within the same clock tick would leave the
    /// metadata equal.
    fn etag(
        &self,
        path: &Path,
        file: &dyn OpenFile,
        meta: Metadata,
        content: Option<&[u8]>,
        effort: Effort,
    ) -> Result<Option<ETag>, TooSlow> {
        if let Ok(cache) = self.etags.lock() {
            if let Some((version, etag)) = cache.get(path) {
                if *version == meta {
                    return Ok(Some(etag.clone()));
                }
            }
        }
        let etag = match content {
            Some(content) => ETag::of(content),
            None if effort == Effort::Bounded && meta.len > INLINE_HASH_MAX => return Err(TooSlow),
            None => match hash_file(file, meta.len) {
                Some(etag) => etag,
                None => return Ok(None),
            },
        };
        let newest_wall = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_nanos(self.newest_wall.load(Ordering::Relaxed));
        if !FileCache::settled(&meta, newest_wall) {
            return Ok(Some(etag));
        }
        if let Ok(mut cache) = self.etags.lock() {
            if cache.len() >= ETAG_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(path.to_owned(), (meta, etag.clone()));
        }
        Ok(Some(etag))
    }
}

/// `Vary: Accept-Encoding`, on every answer of a file with compressed representations.
fn vary_field() -> (Cow<'static, str>, String) {
    ("Vary".into(), "Accept-Encoding".to_owned())
}

/// The cache key of the `coding` form of the file at the raw request path `raw_path` (a
/// NUL never appears in a request target).
fn variant_key(raw_path: &str, coding: Coding) -> String {
    format!("{raw_path}\0{}", coding.token())
}

/// The 200, 304 or 412 a cache entry gives for `head`.
fn answer_from(entry: &CachedFile, head: &RequestHead) -> Response {
    let verdict =
        Preconditions::from_head(head).evaluate(true, Some(&entry.etag), Some(entry.meta.modified));
    let (status, body, block) = match verdict {
        Verdict::Proceed => (
            200,
            Body::CachedFile(Arc::clone(&entry.content)),
            &entry.fields,
        ),
        Verdict::NotModified => (304, Body::Empty, &entry.not_modified),
        Verdict::Failed => return HttpError::PreconditionFailed.response(),
    };
    let mut response = Response::new(status, body);
    response.field_block = Some(Arc::clone(block));
    response
}

/// The tag of `len` bytes of `file`, read in bounded chunks; `None` if it came up short.
fn hash_file(file: &dyn OpenFile, len: u64) -> Option<ETag> {
    let mut hasher = EtagHasher::new();
    let mut buf = vec![0; len.clamp(1, 64 * 1024) as usize];
    let mut offset = 0;
    while offset < len {
        match file.read_at(&mut buf, offset) {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                hasher.update(buf.get(..n)?);
                offset += n as u64;
            }
        }
    }
    Some(hasher.finish())
}

/// All `len` bytes of `file` (a small one); `None` if it came up short.
fn read_whole(file: &dyn OpenFile, len: u64) -> Option<Vec<u8>> {
    let mut content = vec![0; usize::try_from(len).ok()?];
    let mut done = 0;
    while done < content.len() {
        match file.read_at(content.get_mut(done..)?, done as u64) {
            Ok(0) | Err(_) => return None,
            Ok(n) => done += n,
        }
    }
    Some(content)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::cache::SETTLE_TIME;
    use super::*;
    use crate::fs::{DirEntry, MemoryFs};
    use crate::http::response::{write_head, BodyPart, Persistence};
    use crate::limits::Limits;

    /// A memory tree that tests change while it is served, counting opens.
    #[derive(Debug, Default)]
    struct LiveFs {
        tree: Mutex<MemoryFs>,
        opens: AtomicUsize,
    }

    impl LiveFs {
        fn edit(&self, change: impl FnOnce(&mut MemoryFs)) {
            change(&mut self.tree.lock().unwrap());
        }

        fn opens(&self) -> usize {
            self.opens.load(Ordering::SeqCst)
        }
    }

    impl FileSystem for LiveFs {
        fn metadata(&self, path: &Path) -> io::Result<Metadata> {
            self.tree.lock().unwrap().metadata(path)
        }
        fn is_symlink(&self, path: &Path) -> io::Result<bool> {
            self.tree.lock().unwrap().is_symlink(path)
        }
        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            self.tree.lock().unwrap().canonicalize(path)
        }
        fn open(&self, path: &Path) -> io::Result<Arc<dyn OpenFile>> {
            self.opens.fetch_add(1, Ordering::SeqCst);
            self.tree.lock().unwrap().open(path)
        }
        fn read_dir(&self, path: &Path, max: usize) -> io::Result<Option<Vec<DirEntry>>> {
            self.tree.lock().unwrap().read_dir(path, max)
        }
        fn create_temp(&self) -> io::Result<Box<dyn crate::fs::TempFile>> {
            self.tree.lock().unwrap().create_temp()
        }
    }

    /// 2020-01-01T00:00:00Z: the files' modification time.
    fn y2020() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800)
    }

    /// A wall time long after every file settled.
    fn later() -> SystemTime {
        y2020() + Duration::from_secs(3600)
    }

    /// `/www` bound at `/` over a live tree holding `files`.
    fn site(files: &[(&str, &str)]) -> (StaticFiles, Arc<LiveFs>) {
        let fs = Arc::new(LiveFs::default());
        fs.edit(|tree| {
            tree.insert("/outside/secret.txt", "SECRET", y2020());
            for (path, content) in files {
                tree.insert(*path, *content, y2020());
            }
        });
        let mut files = StaticFiles::new(Arc::clone(&fs) as Arc<dyn FileSystem>);
        files.bind_path("/", "/www").unwrap();
        (files, fs)
    }

    fn head(target: &str, fields: &str) -> RequestHead {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        RequestHead::parse(raw.as_bytes(), &Limits::default()).unwrap()
    }

    /// The answer as it goes on the wire (fixed `Server` and `Date`).
    fn wire(response: &Response) -> String {
        let mut out = Vec::new();
        write_head(&mut out, response, "S", b"D", Persistence::Implied);
        match &response.body {
            Body::Empty => {}
            Body::Bytes(bytes) => out.extend_from_slice(bytes),
            Body::CachedFile(bytes) => out.extend_from_slice(bytes),
            Body::File(region) => {
                let mut buf = vec![0; region.len as usize];
                let n = region.file.read_at(&mut buf, region.offset).unwrap();
                out.extend_from_slice(&buf[..n]);
            }
            Body::Parts(parts) => {
                for part in parts {
                    match part {
                        BodyPart::Bytes(bytes) => out.extend_from_slice(bytes),
                        BodyPart::File(region) => {
                            let mut buf = vec![0; region.len as usize];
                            let n = region.file.read_at(&mut buf, region.offset).unwrap();
                            out.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(files: &StaticFiles, target: &str, fields: &str) -> Response {
        files.serve(&head(target, fields), later()).unwrap()
    }

    /// The names of a JSON listing.
    fn listed(files: &StaticFiles, target: &str) -> Vec<String> {
        let response = get(files, target, "Accept: application/json\r\n");
        let Body::Bytes(body) = &response.body else {
            panic!("a listing is bytes: {response:?}")
        };
        let entries: serde_json::Value = serde_json::from_slice(body).unwrap();
        let names = entries.as_array().unwrap().iter();
        names
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_listing_shows_only_what_a_get_serves() {
        let (mut files, _) = site(&[
            ("/www/.git/config", "[core]"),
            ("/www/.env", "KEY=1"),
            ("/www/a.txt", "a"),
            ("/www/b.bin", "b"),
            ("/www/secret.txt", "s"),
            ("/www/sub/x.txt", "x"),
            ("/www/only_bin/y.bin", "y"),
        ]);
        files.directory_listing = true;
        files.filter.add_default_white_list();
        files.filter.add(["*/secret.txt"], true);
        // An empty-looking folder is listed: its own GET answers its (empty) listing.
        assert_eq!(listed(&files, "/"), ["only_bin", "sub", "a.txt"]);
        assert_eq!(listed(&files, "/only_bin/"), Vec::<String>::new());
        for (target, status) in [
            ("/only_bin/", 200),
            ("/sub/", 200),
            ("/a.txt", 200),
            ("/b.bin", 404),
            ("/secret.txt", 404),
            ("/.env", 404),
            ("/.git/", 404),
        ] {
            assert_eq!(get(&files, target, "").status, status, "{target}");
        }
    }

    #[test]
    fn listing_answers_vary_on_accept() {
        let (mut files, _) = site(&[("/www/a.txt", "a")]);
        files.directory_listing = true;
        let html = get(&files, "/", "");
        let field = |r: &Response, name: &str| {
            r.fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(field(&html, "Vary").as_deref(), Some("Accept"));
        assert_eq!(
            field(&html, "Content-Type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert!(field(&html, "Content-Security-Policy").is_some());
        let json = get(&files, "/", "Accept: application/json\r\n");
        assert_eq!(field(&json, "Vary").as_deref(), Some("Accept"));
        assert_eq!(
            field(&json, "Content-Type").as_deref(),
            Some("application/json")
        );
        let bad = get(&files, "/?sort=colour", "");
        assert_eq!(bad.status, 400);
        assert_eq!(
            bad.reason.as_deref(),
            Some("Bad listing query (sort must be name, size or date, not \"colour\")")
        );
    }

    #[test]
    fn a_big_folder_is_listed_from_a_job() {
        let names: Vec<String> = (0..=INLINE_LISTING_ENTRIES)
            .map(|i| format!("/www/big/f{i:04}.txt"))
            .collect();
        let mut list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
        let (mut files, _) = site(&list[1..]);
        files.directory_listing = true;
        let inline = files.serve(&head("/big/", ""), later());
        assert!(
            inline.is_ok_and(|r| r.status == 200),
            "at the budget: inline"
        );
        list.push(("/www/other.txt", "o"));
        let (mut files, _) = site(&list);
        files.directory_listing = true;
        let request = head("/big/?sort=name&order=desc", "Accept: application/json\r\n");
        let Err(deferred) = files.serve(&request, later()) else {
            panic!("past the budget: deferred");
        };
        let Body::Bytes(body) = files.finish(deferred, &request).body else {
            panic!("bytes")
        };
        let entries: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entries = entries.as_array().unwrap();
        assert_eq!(entries.len(), INLINE_LISTING_ENTRIES + 1);
        assert_eq!(
            entries[0]["name"],
            format!("f{INLINE_LISTING_ENTRIES:04}.txt"),
            "in order"
        );
        // Small folders and files stay inline.
        assert!(files.serve(&head("/", ""), later()).is_ok());
        assert!(files.serve(&head("/other.txt", ""), later()).is_ok());
    }

    #[test]
    fn a_second_request_is_a_hit_with_the_same_answer() {
        let (files, fs) = site(&[("/www/a.txt", "hello")]);
        let first = get(&files, "/a.txt", "");
        assert!(
            matches!(first.body, Body::CachedFile(_)),
            "filled on a miss"
        );
        assert_eq!(fs.opens(), 1);
        let second = get(&files, "/a.txt?query", "");
        assert_eq!(fs.opens(), 1, "answered without opening the file");
        assert_eq!(wire(&first), wire(&second));
        assert_eq!(
            wire(&second),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: D\r\nContent-Type: text/plain\r\n\
             Last-Modified: Wed, 01 Jan 2020 00:00:00 GMT\r\nETag: \"3610a686\"\r\n\
             Cache-Control: max-age=0\r\nAccept-Ranges: bytes\r\nContent-Length: 5\r\n\r\nhello"
        );
        let (entries, _) = files.cache.usage();
        assert_eq!(entries, 1);
    }

    #[test]
    fn cached_answers_equal_uncached_ones() {
        let (cached, _) = site(&[("/www/a.txt", "hello")]);
        let (mut plain, _) = site(&[("/www/a.txt", "hello")]);
        plain.cache_limits.max_entries = 0;
        for fields in [
            "",
            "If-None-Match: \"3610a686\"\r\n",
            "If-None-Match: \"nope\"\r\n",
            "If-Modified-Since: Wed, 01 Jan 2020 00:00:00 GMT\r\n",
            "If-Modified-Since: Tue, 31 Dec 2019 23:59:59 GMT\r\n",
            "If-Match: \"3610a686\"\r\n",
            "If-Match: \"nope\"\r\n",
            "If-Unmodified-Since: Wed, 01 Jan 2020 00:00:00 GMT\r\n",
            "If-Unmodified-Since: Tue, 31 Dec 2019 23:59:59 GMT\r\n",
        ] {
            get(&cached, "/a.txt", "");
            let hit = get(&cached, "/a.txt", fields);
            let miss = get(&plain, "/a.txt", fields);
            assert!(
                matches!(miss.body, Body::File(_) | Body::Empty) || miss.status == 412,
                "{fields}"
            );
            assert_eq!(wire(&hit), wire(&miss), "{fields}");
        }
        let not_modified = get(&cached, "/a.txt", "If-None-Match: 3610a686\r\n");
        assert_eq!(not_modified.status, 304);
        assert!(wire(&not_modified).ends_with(
            "ETag: \"3610a686\"\r\nCache-Control: max-age=0\r\n\
             Last-Modified: Wed, 01 Jan 2020 00:00:00 GMT\r\n\r\n"
        ));
    }

    #[test]
    fn ranges_take_the_full_route() {
        let (files, fs) = site(&[("/www/a.txt", "hello")]);
        get(&files, "/a.txt", "");
        let ranged = get(&files, "/a.txt", "Range: bytes=1-2\r\n");
        assert_eq!(ranged.status, 206);
        assert!(
            wire(&ranged).ends_with("Content-Range: bytes 1-2/5\r\nContent-Length: 2\r\n\r\nel")
        );
        assert_eq!(fs.opens(), 2);
        let (entries, _) = files.cache.usage();
        assert_eq!(entries, 1, "the entry stays");
    }

    #[test]
    fn several_ranges_answer_multipart_byteranges() {
        let (files, _) = site(&[("/www/d.txt", "0123456789abcdefghij")]);
        let ranged = get(&files, "/d.txt", "Range: bytes=10-11,0-1,1-2\r\n");
        assert_eq!(ranged.status, 206);
        let boundary = byteranges::boundary(&ETag::of(b"0123456789abcdefghij"));
        let body = format!(
            "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-2/20\r\n\r\n012\
             \r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 10-11/20\r\n\r\nab\
             \r\n--{boundary}--\r\n"
        );
        assert_eq!(
            wire(&ranged),
            format!(
                "HTTP/1.1 206 Partial Content\r\nServer: S\r\nDate: D\r\n\
                 Content-Type: multipart/byteranges; boundary={boundary}\r\n\
                 Last-Modified: Wed, 01 Jan 2020 00:00:00 GMT\r\nETag: \"638c0d29\"\r\n\
                 Cache-Control: max-age=0\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        // Ranges that coalesce into one are a plain 206; too many bytes asked is a 200.
        let one = get(&files, "/d.txt", "Range: bytes=0-1,2-3\r\n");
        assert!(
            wire(&one).ends_with("Content-Range: bytes 0-3/20\r\nContent-Length: 4\r\n\r\n0123")
        );
        let whole = get(&files, "/d.txt", "Range: bytes=0-,1-\r\n");
        assert_eq!(whole.status, 200);
        assert!(wire(&whole).ends_with("\r\n\r\n0123456789abcdefghij"));
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let (files, fs) = site(&[("/www/a.txt", "hello")]);
        get(&files, "/a.txt", "");
        // Same size and modification time: only the change time tells.
        fs.edit(|tree| tree.insert("/www/a.txt", "HELLO", y2020()));
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nHELLO"));
        assert_eq!(fs.opens(), 2);
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nHELLO"));
        assert_eq!(fs.opens(), 2, "cached again");
        fs.edit(|tree| tree.insert("/www/a.txt", "longer now", y2020()));
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nlonger now"));
        fs.edit(|tree| tree.remove("/www/a.txt"));
        assert_eq!(get(&files, "/a.txt", "").status, 404);
        assert_eq!(
            files.cache.usage(),
            (0, 0),
            "a vanished file leaves the cache"
        );
    }

    /// Adds every watch `files` asks for, numbered from 1 in the order asked.
    fn watch_all(files: &StaticFiles) -> Vec<PathBuf> {
        let mut asked = Vec::new();
        while let Some(op) = files.poll_watch() {
            let WatchOp::Add(folder) = op else {
                panic!("{op:?}")
            };
            files.watch_added(&folder, Some(asked.len() as i32 + 1));
            asked.push(folder);
        }
        asked
    }

    #[test]
    fn watched_folders_spare_the_revalidation() {
        use super::super::watch::{record, IN_MODIFY, IN_Q_OVERFLOW};
        let (files, fs) = site(&[("/www/a.txt", "hello"), ("/www/b.txt", "bbb")]);
        get(&files, "/a.txt", "");
        assert_eq!(watch_all(&files), [Path::new("/www"), Path::new("/")]);
        // The first hit with every folder watched revalidates; later ones do not, so a
        // change only a notification announces is served once it is read.
        get(&files, "/a.txt", "");
        fs.edit(|tree| tree.insert("/www/a.txt", "HELLO", y2020()));
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nhello"));
        files.watch_events(&record(1, IN_MODIFY, "a.txt"));
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nHELLO"));
        // An overflow drops everything; a file revalidated before the watches existed is
        // not vouched for.
        get(&files, "/b.txt", "");
        get(&files, "/b.txt", "");
        files.watch_events(&record(-1, IN_Q_OVERFLOW, ""));
        assert_eq!(files.cache.usage(), (0, 0));
        // The folder of the root itself moving away drops what is under it.
        get(&files, "/b.txt", "");
        get(&files, "/b.txt", "");
        files.invalidate(Path::new("/www"));
        assert_eq!(files.cache.usage(), (0, 0));
        assert_eq!(files.poll_watch(), Some(WatchOp::Remove(1)));
        assert_eq!(files.poll_watch(), None);
    }

    #[test]
    fn links_and_the_bound_keep_the_revalidation() {
        let (mut files, fs) = site(&[("/www/a.txt", "hello")]);
        fs.edit(|tree| tree.link("/www/l.txt", "/www/a.txt"));
        get(&files, "/l.txt", "");
        assert!(watch_all(&files).is_empty(), "a link's target is elsewhere");
        get(&files, "/l.txt", "");
        fs.edit(|tree| tree.insert("/www/a.txt", "HELLO", y2020()));
        assert!(wire(&get(&files, "/l.txt", "")).ends_with("\r\n\r\nHELLO"));
        files.cache_limits.max_watches = 1;
        get(&files, "/a.txt", "");
        assert_eq!(watch_all(&files), [Path::new("/www")], "one, not two");
        get(&files, "/a.txt", "");
        fs.edit(|tree| tree.insert("/www/a.txt", "again", y2020()));
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nagain"));
        files.cache_limits.max_watches = 0;
        files.invalidate(Path::new("/"));
        assert!(files.poll_watch().is_some(), "the watch of /www goes");
        get(&files, "/a.txt", "");
        assert!(watch_all(&files).is_empty());
    }

    #[test]
    fn a_rewrite_keeping_size_and_mtime_gets_a_new_tag() {
        let (mut files, fs) = site(&[("/www/a.txt", "hello")]);
        files.cache_limits.max_entries = 0; // only the tag cache is at work
        let tag = |r: &Response| {
            r.fields
                .iter()
                .find(|(n, _)| n == "ETag")
                .map(|(_, v)| v.clone())
        };
        let first = get(&files, "/a.txt", "");
        assert_eq!(tag(&first).as_deref(), Some("\"3610a686\""));
        assert_eq!(
            tag(&get(&files, "/a.txt", "")),
            tag(&first),
            "unchanged: same tag"
        );
        fs.edit(|tree| tree.insert("/www/a.txt", "HELLO", y2020()));
        let second = get(&files, "/a.txt", "");
        assert_eq!(
            tag(&second).as_deref(),
            Some(&*ETag::of(b"HELLO").to_string())
        );
        assert!(wire(&second).ends_with("\r\n\r\nHELLO"));
        // The old tag no longer validates.
        assert_eq!(
            get(&files, "/a.txt", "If-None-Match: \"3610a686\"\r\n").status,
            200
        );
    }

    #[test]
    fn tags_of_files_changed_lately_are_not_remembered() {
        let (mut files, fs) = site(&[("/www/a.txt", "hello")]);
        files.cache_limits.max_entries = 0; // only the tag cache is at work
        let changed = fs.metadata(Path::new("/www/a.txt")).unwrap().changed;
        let soon = changed + SETTLE_TIME - Duration::from_nanos(1);
        let tag_at = |wall: SystemTime| {
            let response = files.serve(&head("/a.txt", ""), wall).unwrap();
            let tag = response.fields.iter().find(|(n, _)| n == "ETag");
            tag.map(|(_, v)| v.clone())
        };
        assert_eq!(tag_at(soon), Some(ETag::of(b"hello").to_string()));
        // Rewritten within the same clock tick: the metadata cannot tell.
        fs.edit(|tree| tree.overwrite_in_tick("/www/a.txt", "HELLO"));
        assert_eq!(tag_at(soon), Some(ETag::of(b"HELLO").to_string()));
        assert_eq!(tag_at(later()), Some(ETag::of(b"HELLO").to_string()));
    }

    #[test]
    fn files_changed_lately_are_not_cached() {
        let (files, fs) = site(&[("/www/a.txt", "hello")]);
        let changed = fs.metadata(Path::new("/www/a.txt")).unwrap().changed;
        let soon = changed + SETTLE_TIME - Duration::from_nanos(1);
        let response = files.serve(&head("/a.txt", ""), soon).unwrap();
        assert!(matches!(response.body, Body::File(_)));
        assert_eq!(files.cache.usage(), (0, 0));
        let settled = changed + SETTLE_TIME;
        files.serve(&head("/a.txt", ""), settled).unwrap();
        assert_eq!(files.cache.usage().0, 1);
    }

    #[test]
    fn the_symlink_policy_holds_after_a_file_becomes_a_link() {
        for policy in [SymlinkPolicy::Never, SymlinkPolicy::WithinRoot] {
            let (mut files, fs) = site(&[("/www/a.txt", "hello")]);
            files.symlinks = policy;
            get(&files, "/a.txt", "");
            fs.edit(|tree| {
                tree.remove("/www/a.txt");
                tree.link("/www/a.txt", "/outside/secret.txt");
            });
            let response = get(&files, "/a.txt", "");
            assert_eq!(response.status, 404, "{policy:?}");
            assert!(!wire(&response).contains("SECRET"));
        }
        // The link is checked like any new file: a policy that follows it serves it.
        let (mut files, fs) = site(&[("/www/a.txt", "hello")]);
        files.symlinks = SymlinkPolicy::DangerFollowAll;
        get(&files, "/a.txt", "");
        fs.edit(|tree| {
            tree.remove("/www/a.txt");
            tree.link("/www/a.txt", "/outside/secret.txt");
        });
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("\r\n\r\nSECRET"));
    }

    #[test]
    fn lists_and_hidden_names_are_never_bypassed() {
        let (mut files, _) = site(&[("/www/a.txt", "hello"), ("/www/b.bin", "bin")]);
        files.filter.add_default_white_list();
        assert_eq!(get(&files, "/b.bin", "").status, 404);
        assert_eq!(get(&files, "/b.bin", "").status, 404);
        assert_eq!(files.cache.usage(), (0, 0));
        assert_eq!(get(&files, "/.a.txt", "").status, 404);
        assert_eq!(get(&files, "/a.txt", "").status, 200);
        assert_eq!(files.cache.usage().0, 1);
    }

    #[test]
    fn only_answers_no_other_file_can_take_over_are_cached() {
        let (mut files, fs) = site(&[("/low/a.txt", "low"), ("/high/b.txt", "b")]);
        files.bind_path("/", "/high").unwrap(); // tried first, has no a.txt yet
        files.bind_path_fallback("/", "/low").unwrap();
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("low"));
        assert_eq!(files.cache.usage(), (0, 0));
        fs.edit(|tree| tree.insert("/high/a.txt", "high", y2020()));
        assert!(wire(&get(&files, "/a.txt", "")).ends_with("high"));
        assert_eq!(
            files.cache.usage().0,
            1,
            "found under the first binding: cached"
        );
        // `index.htm` is not cached: an `index.html` made later takes over.
        let (files, fs) = site(&[("/www/d/index.htm", "htm")]);
        assert!(wire(&get(&files, "/d/", "")).ends_with("htm"));
        assert_eq!(files.cache.usage(), (0, 0));
        fs.edit(|tree| tree.insert("/www/d/index.html", "html", y2020()));
        assert!(wire(&get(&files, "/d/", "")).ends_with("html"));
        let opens = fs.opens();
        assert!(wire(&get(&files, "/d/", "")).ends_with("html"));
        assert_eq!(fs.opens(), opens, "index.html is cached");
    }

    #[test]
    fn favicons_and_big_files_are_not_cached() {
        let big = "x".repeat(65_537);
        let (mut files, _) = site(&[("/www/big.txt", &big), ("/www/edge.txt", &big[1..])]);
        files.favicon_fallback = Some(Favicon::Embedded(EMPTY_FAVICON));
        assert_eq!(get(&files, "/favicon.ico", "").status, 200);
        assert!(matches!(get(&files, "/big.txt", "").body, Body::File(_)));
        assert_eq!(files.cache.usage(), (0, 0));
        assert!(matches!(
            get(&files, "/edge.txt", "").body,
            Body::CachedFile(_)
        ));
    }

    #[test]
    fn a_big_unhashed_file_is_deferred_and_finished_without_a_second_open() {
        let big = "z".repeat(INLINE_HASH_MAX as usize + 1);
        let (files, fs) = site(&[("/www/big.txt", &big)]);
        let request = head("/big.txt", "");
        let Err(deferred) = files.serve(&request, later()) else {
            panic!("hashing a big file is deferred");
        };
        assert_eq!(fs.opens(), 1);
        let response = files.finish(deferred, &request);
        assert_eq!(fs.opens(), 1, "finished with the file serve opened");
        assert_eq!(response.status, 200);
        let tag = format!("ETag: {}\r\n", ETag::of(big.as_bytes()));
        assert!(wire(&response).contains(&tag));
        // The tag is known now: the next request is answered on the spot.
        assert!(files.serve(&request, later()).is_ok());
        let not_modified = head(
            "/big.txt",
            &format!("If-None-Match: {}\r\n", ETag::of(big.as_bytes())),
        );
        assert_eq!(files.serve(&not_modified, later()).unwrap().status, 304);
    }

    /// `site` with compression on.
    fn compressing(files: &[(&str, &str)]) -> (StaticFiles, Arc<LiveFs>) {
        let (mut files, fs) = site(files);
        files.compression = Compression::on();
        (files, fs)
    }

    /// The value of the field `name` in the answer's head.
    fn field(response: &Response, name: &str) -> Option<String> {
        let wire = wire(response);
        let head = wire.split("\r\n\r\n").next()?;
        let prefix = format!("{name}: ");
        head.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
    }

    /// The body bytes of a single-part answer.
    fn body(response: &Response) -> Vec<u8> {
        match &response.body {
            Body::Bytes(b) => b.clone(),
            Body::CachedFile(b) => b.to_vec(),
            Body::File(region) => {
                let mut buf = vec![0; region.len as usize];
                let n = region.file.read_at(&mut buf, region.offset).unwrap();
                buf.truncate(n);
                buf
            }
            Body::Empty => Vec::new(),
            Body::Parts(_) => panic!("no multipart answer in these tests"),
        }
    }

    fn gunzip(data: &[u8]) -> String {
        use std::io::Read;
        let mut out = String::new();
        flate2::read::GzDecoder::new(data)
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn each_coding_is_a_representation_with_its_own_tag() {
        let text = "compress me please ".repeat(300);
        let (files, _) = compressing(&[("/www/a.txt", &text), ("/www/p.png", &text)]);
        let identity = ETag::of(text.as_bytes());
        let plain = get(&files, "/a.txt", "");
        assert_eq!(body(&plain), text.as_bytes());
        assert_eq!(field(&plain, "Vary").as_deref(), Some("Accept-Encoding"));
        assert_eq!(
            field(&plain, "ETag").as_deref(),
            Some(identity.to_string().as_str())
        );
        for (coding, token) in [
            (Coding::Gzip, "gzip"),
            (Coding::Br, "br"),
            (Coding::Zstd, "zstd"),
        ] {
            let tag = identity.with_coding(coding).to_string();
            for round in 0..2 {
                // The second round is answered from the cache.
                let encoded = get(&files, "/a.txt", &format!("Accept-Encoding: {token}\r\n"));
                assert_eq!(
                    field(&encoded, "Content-Encoding").as_deref(),
                    Some(token),
                    "{round}"
                );
                assert_eq!(field(&encoded, "ETag").as_deref(), Some(tag.as_str()));
                assert_eq!(field(&encoded, "Vary").as_deref(), Some("Accept-Encoding"));
                assert!(body(&encoded).len() < text.len() / 5);
                let fields = format!("Accept-Encoding: {token}\r\nIf-None-Match: {tag}\r\n");
                let not_modified = get(&files, "/a.txt", &fields);
                assert_eq!(not_modified.status, 304);
                assert_eq!(
                    field(&not_modified, "Vary").as_deref(),
                    Some("Accept-Encoding")
                );
                assert_eq!(field(&not_modified, "ETag").as_deref(), Some(tag.as_str()));
                // The identity tag names another representation.
                let fields = format!("Accept-Encoding: {token}\r\nIf-None-Match: {identity}\r\n");
                assert_eq!(get(&files, "/a.txt", &fields).status, 200);
            }
        }
        let gz = get(&files, "/a.txt", "Accept-Encoding: gzip\r\n");
        assert_eq!(gunzip(&body(&gz)), text);
        let fields = format!("If-None-Match: {identity}\r\nAccept-Encoding: gzip;q=0\r\n");
        assert_eq!(get(&files, "/a.txt", &fields).status, 304);
        let png = get(&files, "/p.png", "Accept-Encoding: gzip\r\n");
        assert_eq!(
            (
                field(&png, "Content-Encoding").as_deref(),
                field(&png, "Vary").as_deref()
            ),
            (None, None)
        );
    }

    #[test]
    fn small_files_and_ranges_go_out_as_they_are() {
        let text = "r".repeat(5000);
        let (files, _) = compressing(&[("/www/small.txt", "tiny"), ("/www/a.txt", &text)]);
        for _ in 0..2 {
            let small = get(&files, "/small.txt", "Accept-Encoding: gzip\r\n");
            assert_eq!(field(&small, "Content-Encoding").as_deref(), None);
            assert_eq!(field(&small, "Vary").as_deref(), Some("Accept-Encoding"));
        }
        let refused = get(
            &files,
            "/small.txt",
            "Accept-Encoding: gzip, identity;q=0\r\n",
        );
        assert_eq!(field(&refused, "Content-Encoding").as_deref(), Some("gzip"));
        assert_eq!(gunzip(&body(&refused)), "tiny");
        let ranged = get(
            &files,
            "/a.txt",
            "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n",
        );
        assert_eq!(ranged.status, 206);
        assert_eq!(field(&ranged, "Content-Encoding").as_deref(), None);
        assert_eq!(field(&ranged, "Vary").as_deref(), Some("Accept-Encoding"));
        assert_eq!(body(&ranged), b"rrrrrrrrrr");
        let mut off = compressing(&[("/www/a.txt", &text)]).0;
        off.compression.enabled = false;
        let plain = get(&off, "/a.txt", "Accept-Encoding: gzip\r\n");
        assert_eq!(
            (
                field(&plain, "Content-Encoding").as_deref(),
                field(&plain, "Vary").as_deref()
            ),
            (None, None)
        );
    }

    #[test]
    fn a_big_file_is_compressed_in_a_job_then_cached() {
        let text = "big and compressible\n".repeat(10_000);
        let (files, fs) = compressing(&[("/www/big.js", &text)]);
        let request = head("/big.js", "Accept-Encoding: br\r\n");
        let Err(deferred) = files.serve(&request, later()) else {
            panic!("compressing a big file is deferred");
        };
        let done = files.finish(deferred, &request);
        assert_eq!(field(&done, "Content-Encoding").as_deref(), Some("br"));
        assert_eq!(fs.opens(), 1, "finished with the file serve opened");
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut brotli::Decompressor::new(&body(&done)[..], 4096),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, text.as_bytes());
        let again = files.serve(&request, later()).unwrap();
        assert!(
            matches!(again.body, Body::CachedFile(_)),
            "the encoded form was kept"
        );
        assert_eq!(wire(&again), wire(&done));
        assert_eq!(fs.opens(), 1);
        fs.edit(|tree| tree.insert("/www/big.js", text.to_uppercase(), y2020()));
        assert!(
            files.serve(&request, later()).is_err(),
            "a changed file is compressed again"
        );
    }

    #[test]
    fn precompressed_siblings_stand_in_when_they_may() {
        let text = "x".repeat(4000);
        let (mut files, fs) = compressing(&[
            ("/www/app.js", &text),
            ("/www/app.js.br", "BROTLI"),
            ("/www/app.js.gz", "GZIP"),
        ]);
        files.filter.add(["*.js"], false); // the siblings' own names need not be listed
        let br = get(&files, "/app.js", "Accept-Encoding: gzip, br\r\n");
        assert_eq!(body(&br), b"BROTLI");
        assert_eq!(field(&br, "Content-Encoding").as_deref(), Some("br"));
        assert_eq!(
            field(&br, "Content-Type").as_deref(),
            Some("text/javascript")
        );
        let tag = ETag::of(b"BROTLI").with_coding(Coding::Br).to_string();
        assert_eq!(field(&br, "ETag").as_deref(), Some(tag.as_str()));
        let fields = format!("Accept-Encoding: br\r\nIf-None-Match: {tag}\r\n");
        assert_eq!(get(&files, "/app.js", &fields).status, 304);
        let gz = get(&files, "/app.js", "Accept-Encoding: gzip\r\n");
        assert_eq!(body(&gz), b"GZIP");
        // No sibling for zstd: compressed on the fly.
        let zstd = get(&files, "/app.js", "Accept-Encoding: zstd\r\n");
        assert_eq!(field(&zstd, "Content-Encoding").as_deref(), Some("zstd"));
        assert_ne!(body(&zstd), b"");
        // A sibling older than the file is stale.
        fs.edit(|tree| tree.insert("/www/app.js.br", "OLD", y2020() - Duration::from_secs(1)));
        let fresh = get(&files, "/app.js", "Accept-Encoding: br\r\n");
        assert_ne!(body(&fresh), b"OLD");
        assert_eq!(field(&fresh, "Content-Encoding").as_deref(), Some("br"));
        // A black-listed sibling is never used.
        files.filter.add(["*.gz"], true);
        assert_ne!(
            body(&get(&files, "/app.js", "Accept-Encoding: gzip\r\n")),
            b"GZIP"
        );
        // Nor a link under the default policy.
        fs.edit(|tree| {
            tree.insert("/www/real.zst", "LINKED", y2020());
            tree.link("/www/app.js.zst", "/www/real.zst");
        });
        assert_ne!(
            body(&get(&files, "/app.js", "Accept-Encoding: zstd\r\n")),
            b"LINKED"
        );
        // The base file's list decision governs.
        let (mut listed, _) = compressing(&[("/www/app.js", &text), ("/www/app.js.br", "BROTLI")]);
        listed.filter.add(["*.css"], false);
        assert_eq!(
            get(&listed, "/app.js", "Accept-Encoding: br\r\n").status,
            404
        );
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let names: Vec<String> = (0..40).map(|i| format!("/www/f{i}.txt")).collect();
        let content = "y".repeat(100);
        let list: Vec<(&str, &str)> = names
            .iter()
            .map(|n| (n.as_str(), content.as_str()))
            .collect();
        let (mut files, _) = site(&list);
        files.cache_limits = CacheLimits {
            max_file_size: 1024,
            max_entries: 8,
            max_bytes: 2_000,
            ..CacheLimits::default()
        };
        for round in 0..2 {
            for i in 0..40 {
                let target = format!("/f{i}.txt");
                assert!(
                    wire(&get(&files, &target, "")).ends_with(&content),
                    "{round} {i}"
                );
                let (entries, bytes) = files.cache.usage();
                assert!(
                    entries <= 8 && bytes <= 2_000,
                    "{entries} entries, {bytes} bytes"
                );
            }
        }
    }
}
