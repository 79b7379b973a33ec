//! Content types by file extension (BEHAVIOUR.md: Static files › Content types).
//!
//! The default white-list types and the compression fallbacks are exactly the original's
//! values; the rest of the table follows IANA / current browser practice. No `charset`
//! parameter is added.

/// The type for files whose extension is unknown.
const DEFAULT_TYPE: &str = "application/octet-stream";

/// Lower-case extension (without dot) to content type, sorted by extension for binary
/// search.
const TYPES: &[(&str, &str)] = &[
    ("3gp", "video/3gpp"),
    ("7z", "application/x-7z-compressed"),
    ("aac", "audio/aac"),
    ("apng", "image/apng"),
    ("avi", "video/x-msvideo"),
    ("avif", "image/avif"),
    ("bin", "application/octet-stream"),
    ("bmp", "image/bmp"),
    ("bz2", "application/x-bzip2"),
    ("c", "text/plain"),
    ("cjs", "text/javascript"),
    ("conf", "text/plain"),
    ("css", "text/css"),
    ("csv", "text/csv"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("eml", "message/rfc822"),
    ("eot", "application/vnd.ms-fontobject"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("glb", "model/gltf-binary"),
    ("gltf", "model/gltf+json"),
    ("gz", "application/gzip"),
    ("h", "text/plain"),
    ("heic", "image/heic"),
    ("htm", "text/html"),
    ("html", "text/html"),
    ("ico", "image/vnd.microsoft.icon"),
    ("ics", "text/calendar"),
    ("jar", "application/java-archive"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript"),
    ("json", "application/json"),
    ("jsonld", "application/ld+json"),
    ("jxl", "image/jxl"),
    ("log", "text/plain"),
    ("m4a", "audio/mp4"),
    ("m4v", "video/mp4"),
    ("map", "application/json"),
    ("markdown", "text/markdown"),
    ("md", "text/markdown"),
    ("mid", "audio/midi"),
    ("midi", "audio/midi"),
    ("mjs", "text/javascript"),
    ("mkv", "video/x-matroska"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("opus", "audio/opus"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("ps", "application/postscript"),
    ("py", "text/x-python"),
    ("pyc", "application/x-python-code"),
    ("rar", "application/vnd.rar"),
    ("rs", "text/x-rust"),
    ("rtf", "application/rtf"),
    ("sh", "application/x-sh"),
    ("sql", "application/sql"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("tgz", "application/gzip"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("toml", "application/toml"),
    ("tsv", "text/tab-separated-values"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain"),
    ("vtt", "text/vtt"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("weba", "audio/webm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml"),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("xml", "text/xml"),
    ("xz", "application/x-xz"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("zip", "application/zip"),
    ("zst", "application/zstd"),
];

/// The content type for a file name (or path), from its extension, case-insensitively.
///
/// As Python's `splitext`, leading dots of the base name do not start an extension
/// (`.bashrc` has none). `.Z` is matched case-sensitively, as the original, and is
/// `application/octet-stream`; unknown extensions are `application/octet-stream`.
pub(super) fn content_type(file_name: &str) -> &'static str {
    let Some(ext) = extension(file_name) else {
        return DEFAULT_TYPE;
    };
    if ext == "Z" {
        return DEFAULT_TYPE;
    }
    TYPES
        .binary_search_by(|&(key, _)| key.bytes().cmp(ext.bytes().map(|b| b.to_ascii_lowercase())))
        .ok()
        .and_then(|i| TYPES.get(i))
        .map_or(DEFAULT_TYPE, |&(_, ty)| ty)
}

/// The extension (without the dot) of the last path component, if it has one.
fn extension(file_name: &str) -> Option<&str> {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.trim_start_matches('.').is_empty() {
        None
    } else {
        Some(ext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_lowercase_and_unique() {
        for pair in TYPES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} !< {:?}", pair[0], pair[1]);
        }
        for (ext, ty) in TYPES {
            assert_eq!(*ext, ext.to_ascii_lowercase());
            assert!(ty.contains('/') && !ty.contains(';'), "{ty}");
        }
        assert!(TYPES.len() >= 80, "{}", TYPES.len());
    }

    #[test]
    fn default_white_list_types() {
        let expected = [
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
        ];
        for (name, ty) in expected {
            assert_eq!(content_type(name), ty, "{name}");
        }
    }

    #[test]
    fn compression_fallbacks() {
        assert_eq!(content_type("a.tar.gz"), "application/gzip");
        assert_eq!(content_type("a.GZ"), "application/gzip");
        assert_eq!(content_type("a.Z"), "application/octet-stream");
        assert_eq!(content_type("a.z"), "application/octet-stream");
        assert_eq!(content_type("a.bz2"), "application/x-bzip2");
        assert_eq!(content_type("a.xz"), "application/x-xz");
    }

    #[test]
    fn common_types_and_case() {
        assert_eq!(content_type("app.wasm"), "application/wasm");
        assert_eq!(content_type("mod.mjs"), "text/javascript");
        assert_eq!(content_type("i.webp"), "image/webp");
        assert_eq!(content_type("i.avif"), "image/avif");
        assert_eq!(content_type("v.mp4"), "video/mp4");
        assert_eq!(content_type("v.webm"), "video/webm");
        assert_eq!(content_type("s.mp3"), "audio/mpeg");
        assert_eq!(content_type("s.ogg"), "audio/ogg");
        assert_eq!(content_type("s.wav"), "audio/wav");
        assert_eq!(content_type("d.xml"), "text/xml");
        assert_eq!(content_type("d.zip"), "application/zip");
        assert_eq!(content_type("d.tar"), "application/x-tar");
        assert_eq!(content_type("a.js.map"), "application/json");
        assert_eq!(
            content_type("site.webmanifest"),
            "application/manifest+json"
        );
        assert_eq!(content_type("script.py"), "text/x-python");
        assert_eq!(content_type("lib.rs"), "text/x-rust");
        assert_eq!(content_type("Cargo.toml"), "application/toml");
        assert_eq!(content_type("c.yaml"), "application/yaml");
        assert_eq!(content_type("i.bmp"), "image/bmp");
        assert_eq!(content_type("i.tif"), "image/tiff");
        assert_eq!(content_type("INDEX.HTML"), "text/html");
        assert_eq!(content_type("Photo.JpG"), "image/jpeg");
        assert_eq!(content_type("/srv/www/sub.dir/file.Css"), "text/css");
    }

    #[test]
    fn unknown_and_missing_extensions() {
        assert_eq!(content_type("Makefile"), "application/octet-stream");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
        assert_eq!(content_type(".html"), "application/octet-stream");
        assert_eq!(content_type("..html"), "application/octet-stream");
        assert_eq!(content_type("dir.html/file"), "application/octet-stream");
        assert_eq!(content_type("a."), "application/octet-stream");
        assert_eq!(content_type(""), "application/octet-stream");
        assert_eq!(content_type(".a.html"), "text/html");
        assert_eq!(content_type("a.é"), "application/octet-stream");
    }
}
