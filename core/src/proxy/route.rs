//! Proxy bindings: which targets go upstream and what path they get there (BEHAVIOUR.md: Proxy).

use std::fmt;

/// A prefix forwarded to an `http://` upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRoute {
    prefix: String,
    host: String,
    port: u16,
    /// The upstream URL's path, without a trailing `/` (empty for the root).
    base: String,
}

/// Why a proxy binding was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The prefix does not start and end with `/`.
    Prefix(String),
    /// The upstream is not an `http://host[:port][/path]` URL.
    Url(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix(p) => write!(f, "name must start and end with \"/\": {p}"),
            Self::Url(u) => write!(f, "proxy upstream must be an http:// URL: {u}"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl ProxyRoute {
    /// Forwards requests under `prefix` to `url` (`http://host[:port][/path]`).
    pub fn new(prefix: &str, url: &str) -> Result<Self, ProxyError> {
        if prefix.is_empty() || !prefix.starts_with('/') || !prefix.ends_with('/') {
            return Err(ProxyError::Prefix(prefix.to_owned()));
        }
        let bad = || ProxyError::Url(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(_) => return Err(bad()),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['@', ' ']) || path.contains(['?', '#']) {
            return Err(bad());
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            host: host.to_owned(),
            port,
            base: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The prefix this route forwards.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The upstream host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The upstream port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `Host` value for the upstream request.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The upstream target for a raw request target, if this route takes it: the part after
    /// the prefix goes below the upstream path, the query once (the original doubles it).
    pub(crate) fn upstream_target(&self, target: &str) -> Option<String> {
        if let Some(rest) = target.strip_prefix(self.prefix.as_str()) {
            return Some(format!("{}/{rest}", self.base));
        }
        // `/px` is taken by the prefix `/px/` (the original retries with a `/` appended;
        // `/px?q` stays unmatched, as there).
        if target == &self.prefix[..self.prefix.len() - 1] {
            let base = if self.base.is_empty() {
                "/"
            } else {
                self.base.as_str()
            };
            return Some(base.to_owned());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_urls() {
        let r = ProxyRoute::new("/px/", "http://h:1/up").unwrap();
        assert_eq!(
            (r.host(), r.port(), r.authority()),
            ("h", 1, "h:1".to_owned())
        );
        let r = ProxyRoute::new("/px/", "http://127.0.0.1").unwrap();
        assert_eq!((r.port(), r.authority()), (80, "127.0.0.1".to_owned()));
        let r = ProxyRoute::new("/px/", "http://[::1]:9000/").unwrap();
        assert_eq!((r.host(), r.authority()), ("::1", "[::1]:9000".to_owned()));
        for bad in [
            "https://h/",
            "h:1",
            "http://",
            "http://h:x/",
            "http://h/?q",
            "http://u@h/",
        ] {
            assert!(ProxyRoute::new("/px/", bad).is_err(), "{bad}");
        }
        assert_eq!(
            ProxyRoute::new("px", "http://h/"),
            Err(ProxyError::Prefix("px".into()))
        );
    }

    #[test]
    fn rewrites_targets_like_the_original() {
        let r = ProxyRoute::new("/px/", "http://h:1/up").unwrap();
        assert_eq!(r.upstream_target("/px/a/b").as_deref(), Some("/up/a/b"));
        assert_eq!(
            r.upstream_target("/px/a/b?x=1").as_deref(),
            Some("/up/a/b?x=1")
        );
        assert_eq!(r.upstream_target("/px/").as_deref(), Some("/up/"));
        assert_eq!(r.upstream_target("/px").as_deref(), Some("/up"));
        assert_eq!(
            r.upstream_target("/px?y=2"),
            None,
            "verified behaviour of the original"
        );
        assert_eq!(r.upstream_target("/pxa"), None);
        assert_eq!(r.upstream_target("/other"), None);
        let root = ProxyRoute::new("/api/", "http://h:1").unwrap();
        assert_eq!(root.upstream_target("/api/v1").as_deref(), Some("/v1"));
        assert_eq!(root.upstream_target("/api").as_deref(), Some("/"));
    }
}
