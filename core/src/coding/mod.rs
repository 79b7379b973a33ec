//! Content codings (RFC 9110 §8.4): which codings a request accepts (`accept`), which
//! answers are worth compressing, the settings, and the encoders (`encode`). Files use
//! them in [`files`](crate::files); in-memory answers (dynamic routes, workers, listings)
//! are compressed by the connection (`answer`). docs/BEHAVIOUR.md, "Compression", says
//! what is compressed when.

mod accept;
pub(crate) mod answer;
mod encode;

pub(crate) use accept::AcceptEncoding;
pub(crate) use encode::encode;

/// A content coding the server produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Coding {
    /// `gzip` (RFC 1952), by `flate2` on `miniz_oxide`.
    Gzip,
    /// `br` (RFC 7932), by the pure-Rust `brotli`.
    Br,
    /// `zstd` (RFC 8878), by the reference C library through `zstd`.
    Zstd,
}

impl Coding {
    /// Every coding, in the server's order of preference for compressing on the fly when
    /// the client ranks them equally: zstd compresses fastest with the best ratio at the
    /// shipped levels, then brotli, then gzip.
    pub(crate) const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// The order for precompressed siblings, made once at high levels: brotli's ratio
    /// first.
    pub(crate) const PRECOMPRESSED: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Br => "br",
            Self::Zstd => "zstd",
        }
    }

    /// The file-name extension of a precompressed sibling (`app.js.br`).
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Gzip => "gz",
            Self::Br => "br",
            Self::Zstd => "zst",
        }
    }

    /// The coding named by `token` (case-insensitive; `x-gzip` is `gzip`).
    fn from_token(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.token()))
            .or_else(|| token.eq_ignore_ascii_case("x-gzip").then_some(Self::Gzip))
    }

    /// Position in per-coding tables.
    fn index(self) -> usize {
        match self {
            Self::Gzip => 0,
            Self::Br => 1,
            Self::Zstd => 2,
        }
    }
}

/// Compression levels per coding. The defaults are the fast ones the binary ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// 0–9; default 2 (`miniz_oxide`'s level 1 is a special fast mode whose output is
    /// about 30 % bigger than zlib's level 1; its level 2 is smaller than zlib's 1 at about
    /// the same speed on JSON).
    pub gzip: u32,
    /// 0–11; default 1.
    pub br: u32,
    /// 1–22; default 3 (the library's own default, as fast as level 1 here with a
    /// better ratio on code).
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            gzip: 2,
            br: 1,
            zstd: 3,
        }
    }
}

/// When and how answers are compressed. Off by default in the library (the original never
/// compresses); the binary turns it on (`--no-compress` keeps it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Whether answers are compressed at all (precompressed siblings included).
    pub enabled: bool,
    /// Bodies shorter than this go out as they are, unless the request refuses
    /// `identity`. Default 1 KiB: below it the coding's framing eats the gain.
    pub min_size: u64,
    /// Largest body compressed on the thread that drives the connection (the event loop,
    /// on the mio transport), also the largest file whose encoded forms are kept in the
    /// small-file cache; bigger bodies are compressed in a job. Default 64 KiB (well
    /// under a millisecond at the default levels).
    pub inline_max: u64,
    /// Largest file compressed on the fly: a bigger one goes out as it is (with
    /// `sendfile`) unless a precompressed sibling exists. Default 32 MiB.
    pub max_file_size: u64,
    /// Levels per coding.
    pub levels: Levels,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            enabled: false,
            min_size: 1024,
            inline_max: 64 * 1024,
            max_file_size: 32 * 1024 * 1024,
            levels: Levels::default(),
        }
    }
}

impl Compression {
    /// The defaults, switched on.
    pub fn on() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

/// Whether an answer of this `Content-Type` is worth compressing: text, JSON, XML,
/// JavaScript, SVG, wasm and other uncompressed formats; never images, audio, video,
/// archives or fonts that are compressed already.
pub(crate) fn is_compressible(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = media.split_once('/') else {
        return false;
    };
    let (kind, sub) = (kind.to_ascii_lowercase(), sub.to_ascii_lowercase());
    if kind == "text" || sub.ends_with("+json") || sub.ends_with("+xml") {
        return true;
    }
    matches!(
        (kind.as_str(), sub.as_str()),
        (
            "application",
            "json"
                | "javascript"
                | "x-javascript"
                | "ecmascript"
                | "xml"
                | "wasm"
                | "yaml"
                | "toml"
                | "sql"
                | "x-sh"
                | "rtf"
                | "postscript"
                | "x-ndjson"
                | "vnd.ms-fontobject"
        ) | ("font", "ttf" | "otf")
            | ("image", "bmp" | "vnd.microsoft.icon" | "x-icon")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_types() {
        for yes in [
            "text/plain",
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "text/javascript",
            "application/json",
            "application/ld+json",
            "application/manifest+json",
            "image/svg+xml",
            "application/xhtml+xml",
            "application/wasm",
            "application/xml",
            "font/ttf",
            "image/vnd.microsoft.icon",
        ] {
            assert!(is_compressible(yes), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "video/mp4",
            "audio/mpeg",
            "application/zip",
            "application/gzip",
            "application/zstd",
            "font/woff2",
            "application/octet-stream",
            "application/pdf",
            "",
            "json",
        ] {
            assert!(!is_compressible(no), "{no}");
        }
    }

    #[test]
    fn tokens_and_defaults() {
        for coding in Coding::ALL {
            assert_eq!(Coding::from_token(coding.token()), Some(coding));
        }
        assert_eq!(Coding::from_token("X-GZIP"), Some(Coding::Gzip));
        assert_eq!(Coding::from_token("deflate"), None);
        let c = Compression::default();
        assert!(!c.enabled);
        assert_eq!((c.min_size, c.inline_max), (1024, 65_536));
        assert_eq!(c.max_file_size, 32 << 20);
        assert!(Compression::on().enabled);
        assert_eq!(
            Levels::default(),
            Levels {
                gzip: 2,
                br: 1,
                zstd: 3
            }
        );
    }
}
