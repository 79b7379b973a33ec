//! The static-file route: from a request target to a file, listing, redirect or error,
//! following the original's translation (SPEC 3.2) with our stricter path rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::etag::{if_none_match, ETag, EtagHasher};
use super::glob::FileFilter;
use super::listing::render_listing;
use super::mime::content_type;
use super::path::{redirect_location, sanitize, split_target, SafePath};
use super::range::{if_range_allows, parse_range, RangeOutcome};
use crate::fs::{FileKind, FileSystem, Metadata, OpenFile};
use crate::http::head::RequestHead;
use crate::http::response::{Body, FileRegion, Response};

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

/// Where a missing `favicon.ico` is answered from (SPEC 3.5).
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
    etags: Mutex<HashMap<PathBuf, (u64, SystemTime, ETag)>>,
}

/// Most bytes hashed on the caller's thread when a file's ETag is not cached yet.
const INLINE_HASH_MAX: u64 = 256 * 1024;

/// A file must be hashed before it can be answered, and it is too big to do in passing:
/// answer from a job with `hash_inline` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashFirst;

/// Why a binding could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPrefix(pub String);

impl std::fmt::Display for BadPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "name must start and end with \"/\": {}", self.0)
    }
}

impl std::error::Error for BadPrefix {}

/// The outcome of looking a path up under the bindings.
enum Found {
    File(PathBuf),
    /// A directory, and the index of the binding it was found under.
    Dir(PathBuf, usize),
    Missing,
    Hidden,
    NoBinding,
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
            etags: Mutex::new(HashMap::new()),
        }
    }

    /// Binds `folder` under `prefix`, tried before earlier bindings (SPEC 3.1).
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

    /// Answers a GET or HEAD for `head`'s target. With `hash_inline` false, a file whose
    /// ETag is not cached yet and which is too big to hash in passing yields [`HashFirst`]:
    /// the caller answers from a job instead, so an event loop never reads a large file.
    pub fn serve(&self, head: &RequestHead, hash_inline: bool) -> Result<Response, HashFirst> {
        let target = head.target();
        let (raw_path, _, _) = split_target(target);
        let path = match sanitize(raw_path) {
            Ok(path) => path,
            Err(e) => {
                return Ok(Response::error_page(
                    400,
                    Some(&format!("Bad request path ({e})")),
                ))
            }
        };
        let mut found = self.lookup(&path);
        if matches!(found, Found::Missing) && self.is_favicon(&path) {
            match self.favicon() {
                Some(Favicon::Embedded(bytes)) => return Ok(self.embedded(head, bytes)),
                Some(Favicon::File(file)) => found = Found::File(file),
                None => {}
            }
        }
        match found {
            Found::File(file) => self.file_response(head, &file, hash_inline),
            Found::Dir(..) if !path.is_folder() => {
                let location = redirect_location(target);
                let mut response = Response::new(301, Body::Empty).with_field("Location", location);
                response.reason = Some("Use index page with slash".to_owned());
                Ok(response)
            }
            Found::Dir(dir, binding) => self.directory(head, &path, &dir, binding, hash_inline),
            Found::Missing | Found::Hidden | Found::NoBinding => self.not_found(head, hash_inline),
        }
    }

    /// Spec 3.2 step 4: the first binding whose prefix matches and whose candidate exists;
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
            let candidate: PathBuf = rest.iter().fold(binding.root.clone(), |p, w| p.join(w));
            if !self.links_allowed(binding, &candidate) {
                found = Found::Missing;
                continue;
            }
            match self.fs.metadata(&candidate) {
                Ok(meta) if meta.kind == FileKind::Dir => return Found::Dir(candidate, index),
                Ok(meta) if meta.kind == FileKind::File => {
                    if !self.filter.allows(&candidate.to_string_lossy()) {
                        return Found::Missing;
                    }
                    return Found::File(candidate);
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
    /// fallback (SPEC 3.5).
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

    /// `index.html`, `index.htm`, a listing, or 404 (SPEC 3.3). Index pages go through
    /// the same symlink and list checks as any file.
    fn directory(
        &self,
        head: &RequestHead,
        path: &SafePath,
        dir: &Path,
        binding: usize,
        hash_inline: bool,
    ) -> Result<Response, HashFirst> {
        if let Some(binding) = self.bindings.get(binding) {
            for index in ["index.html", "index.htm"] {
                if let Some(file) = self.checked_file(binding, dir.join(index)) {
                    return self.file_response(head, &file, hash_inline);
                }
            }
        }
        if !self.directory_listing {
            return Ok(Response::error_page(
                404,
                Some("No permission to list directory"),
            ));
        }
        let Ok(mut entries) = self.fs.read_dir(dir) else {
            return Ok(Response::error_page(
                404,
                Some("No permission to list directory"),
            ));
        };
        let page = render_listing(&path.normalized(), &mut entries);
        Ok(Response::new(200, Body::Bytes(page.into_bytes()))
            .with_field("Content-Type", "text/html; charset=utf-8"))
    }

    /// 404, or the single-page-app file when configured and the client accepts HTML.
    fn not_found(&self, head: &RequestHead, hash_inline: bool) -> Result<Response, HashFirst> {
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
                return self.file_response(head, spa, hash_inline);
            }
        }
        Ok(Response::error_page(404, Some("File not found")))
    }

    fn embedded(&self, head: &RequestHead, bytes: &'static [u8]) -> Response {
        let etag = ETag::of(bytes);
        if head
            .field_str("if-none-match")
            .is_some_and(|v| if_none_match(v, &etag))
        {
            return self.not_modified(&etag, None);
        }
        Response::new(200, Body::Bytes(bytes.to_vec()))
            .with_field("Content-Type", "image/vnd.microsoft.icon")
            .with_field("ETag", etag.to_string())
            .with_field("Cache-Control", format!("max-age={}", self.max_age))
    }

    /// 200, 206, 304 or 416 for a regular file.
    fn file_response(
        &self,
        head: &RequestHead,
        path: &Path,
        hash_inline: bool,
    ) -> Result<Response, HashFirst> {
        let file = match self.fs.open(path) {
            Ok(file) => file,
            Err(_) => return Ok(Response::error_page(404, Some("File not found"))),
        };
        // The descriptor's own metadata: the path may have changed since it was looked up.
        let meta = file.metadata();
        let Some(etag) = self.etag(path, &*file, meta, hash_inline)? else {
            return Ok(Response::error_page(500, Some("Cannot read file")));
        };
        let last_modified = httpdate::fmt_http_date(meta.modified);
        if let Some(inm) = head.field_str("if-none-match") {
            if if_none_match(inm, &etag) {
                return Ok(self.not_modified(&etag, Some(last_modified)));
            }
        } else if let Some(since) = head
            .field_str("if-modified-since")
            .and_then(|v| httpdate::parse_http_date(v).ok())
        {
            let modified_secs = meta
                .modified
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let since_secs = since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if modified_secs <= since_secs {
                return Ok(self.not_modified(&etag, Some(last_modified)));
            }
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
                RangeOutcome::Unsatisfiable => {
                    let mut response = Response::error_page(416, None);
                    response
                        .fields
                        .push(("Content-Range".into(), format!("bytes */{}", meta.len)));
                    return Ok(response);
                }
            }
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let mut response = Response::new(status, Body::File(region))
            .with_field("Content-Type", content_type(&file_name))
            .with_field("Last-Modified", last_modified)
            .with_field("ETag", etag.to_string())
            .with_field("Cache-Control", format!("max-age={}", self.max_age))
            .with_field("Accept-Ranges", "bytes");
        if let Some(content_range) = content_range {
            response
                .fields
                .push(("Content-Range".into(), content_range));
        }
        Ok(response)
    }

    fn not_modified(&self, etag: &ETag, last_modified: Option<String>) -> Response {
        let mut response = Response::new(304, Body::Empty)
            .with_field("ETag", etag.to_string())
            .with_field("Cache-Control", format!("max-age={}", self.max_age));
        if let Some(last_modified) = last_modified {
            response
                .fields
                .push(("Last-Modified".into(), last_modified));
        }
        response
    }

    /// The CRC-32 ETag of a file version, computed once per (path, size, mtime).
    fn etag(
        &self,
        path: &Path,
        file: &dyn OpenFile,
        meta: Metadata,
        hash_inline: bool,
    ) -> Result<Option<ETag>, HashFirst> {
        if let Ok(cache) = self.etags.lock() {
            if let Some((len, modified, etag)) = cache.get(path) {
                if *len == meta.len && *modified == meta.modified {
                    return Ok(Some(etag.clone()));
                }
            }
        }
        if !hash_inline && meta.len > INLINE_HASH_MAX {
            return Err(HashFirst);
        }
        let mut hasher = EtagHasher::new();
        let mut buf = vec![0; meta.len.clamp(1, 64 * 1024) as usize];
        let mut offset = 0;
        while offset < meta.len {
            match file.read_at(&mut buf, offset) {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    offset += n as u64;
                }
            }
        }
        let etag = hasher.finish();
        if let Ok(mut cache) = self.etags.lock() {
            if cache.len() >= ETAG_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(path.to_owned(), (meta.len, meta.modified, etag.clone()));
        }
        Ok(Some(etag))
    }
}
