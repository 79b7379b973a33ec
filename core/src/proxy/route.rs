//! Proxy bindings: which targets go upstream, to which of the binding's upstreams (in
//! turn, skipping one that recently refused a connection), and what path they get there
//! (BEHAVIOUR.md: Proxy).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::exchange::Connect;

/// A prefix forwarded to one or more `http://` or `https://` upstreams.
#[derive(Debug, Clone)]
pub(crate) struct ProxyRoute {
    prefix: String,
    upstreams: Arc<Upstreams>,
}

/// Why a proxy binding was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The prefix does not start and end with `/`.
    Prefix(String),
    /// An upstream is not an `http[s]://host[:port][/path]` URL.
    Url(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix(p) => write!(f, "name must start and end with \"/\": {p}"),
            Self::Url(u) => write!(f, "proxy upstream must be an http:// or https:// URL: {u}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// One upstream of a binding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `https://`: the connection is TLS, verified for `host`.
    tls: bool,
    host: String,
    port: u16,
    /// The upstream URL's path, without a trailing `/` (empty for the root).
    base: String,
}

/// The part of a request target a binding forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rest {
    /// What follows the prefix (query included).
    Under(String),
    /// The prefix without its trailing `/`.
    Bare,
}

/// A binding's upstreams, taken in turn; one that refused a connection is skipped until
/// its `down_until`.
#[derive(Debug)]
pub(crate) struct Upstreams {
    targets: Vec<Target>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl ProxyRoute {
    /// Forwards requests under `prefix` to `urls`: one `http[s]://host[:port][/path]`
    /// URL, or several separated by commas (schemes may mix), taken in turn.
    pub(crate) fn new(prefix: &str, urls: &str) -> Result<Self, ProxyError> {
        if prefix.is_empty() || !prefix.starts_with('/') || !prefix.ends_with('/') {
            return Err(ProxyError::Prefix(prefix.to_owned()));
        }
        let targets = urls
            .split(',')
            .map(|url| Target::parse(url.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let count = targets.len();
        Ok(Self {
            prefix: prefix.to_owned(),
            upstreams: Arc::new(Upstreams {
                targets,
                next: AtomicUsize::new(0),
                down_until: Mutex::new(vec![None; count]),
            }),
        })
    }

    /// The upstreams as `(host, port)`, in turn order.
    #[cfg(test)]
    fn upstreams(&self) -> impl Iterator<Item = (&str, u16)> {
        self.upstreams
            .targets
            .iter()
            .map(|t| (t.host.as_str(), t.port))
    }

    /// The shared upstream state an exchange picks from.
    pub(crate) fn targets(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// What of a raw request target this route forwards, if it takes it: the part after
    /// the prefix, or the bare prefix (`/px` is taken by `/px/`, as the original retries
    /// with a `/` appended; `/px?q` stays unmatched, as there).
    pub(crate) fn rest(&self, target: &str) -> Option<Rest> {
        if let Some(rest) = target.strip_prefix(self.prefix.as_str()) {
            return Some(Rest::Under(rest.to_owned()));
        }
        (target == &self.prefix[..self.prefix.len() - 1]).then_some(Rest::Bare)
    }
}

impl Target {
    /// Parses `http[s]://host[:port][/path]`.
    fn parse(url: &str) -> Result<Self, ProxyError> {
        let bad = || ProxyError::Url(url.to_owned());
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").ok_or_else(bad)?),
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(_) => return Err(bad()),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['@', ' ', ',']) || path.contains(['?', '#']) {
            return Err(bad());
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            base: path.trim_end_matches('/').to_owned(),
        })
    }

    /// Where to connect.
    pub(crate) fn connect(&self) -> Connect {
        Connect {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
            fresh: false,
        }
    }

    /// `Host` value for the upstream request.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The upstream URL's scheme.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// The upstream target: the forwarded part goes below the upstream path, the query
    /// once (the original's duplicated query is fixed).
    pub(crate) fn path(&self, rest: &Rest) -> String {
        match rest {
            Rest::Under(rest) => format!("{}/{rest}", self.base),
            Rest::Bare if self.base.is_empty() => "/".to_owned(),
            Rest::Bare => self.base.clone(),
        }
    }
}

impl Upstreams {
    /// Upstream `i`.
    pub(crate) fn get(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }

    /// The next upstream in turn that is not in `tried`: one that is up if any, else one
    /// that is down (better tried than refused outright); `None` once all were tried.
    pub(crate) fn pick(&self, now: Instant, tried: &[usize]) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let untried = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i));
        let mut fallback = None;
        for i in untried {
            if down[i].is_none_or(|until| now >= until) {
                return Some(i);
            }
            fallback = fallback.or(Some(i));
        }
        fallback
    }

    /// Upstream `i` refused a connection: skip it until `until`.
    pub(crate) fn mark_down(&self, i: usize, until: Instant) {
        let mut down = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = down.get_mut(i) {
            *slot = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn first(r: &ProxyRoute) -> &Target {
        r.targets().get(0)
    }

    /// The upstream target `r` gives `target`, through its first upstream.
    fn upstream_target(r: &ProxyRoute, target: &str) -> Option<String> {
        r.rest(target).map(|rest| first(r).path(&rest))
    }

    #[test]
    fn parses_upstream_urls() {
        let r = ProxyRoute::new("/px/", "http://h:1/up").unwrap();
        assert_eq!(r.upstreams().collect::<Vec<_>>(), [("h", 1)]);
        assert_eq!(first(&r).authority(), "h:1");
        let r = ProxyRoute::new("/px/", "http://127.0.0.1").unwrap();
        assert_eq!(r.upstreams().collect::<Vec<_>>(), [("127.0.0.1", 80)]);
        assert_eq!(first(&r).authority(), "127.0.0.1");
        let r = ProxyRoute::new("/px/", "http://[::1]:9000/").unwrap();
        assert_eq!(r.upstreams().collect::<Vec<_>>(), [("::1", 9000)]);
        assert_eq!(first(&r).authority(), "[::1]:9000");
        let r = ProxyRoute::new("/px/", "http://a:1/x, http://b:2/").unwrap();
        assert_eq!(r.upstreams().collect::<Vec<_>>(), [("a", 1), ("b", 2)]);
        assert_eq!(r.targets().get(1).path(&Rest::Under("q".into())), "/q");
        let r = ProxyRoute::new("/px/", "https://h/, http://a:1/").unwrap();
        assert_eq!(r.upstreams().collect::<Vec<_>>(), [("h", 443), ("a", 1)]);
        assert_eq!(
            (first(&r).authority(), first(&r).scheme()),
            ("h".into(), "https")
        );
        assert!(first(&r).connect().tls && !r.targets().get(1).connect().tls);
        let r = ProxyRoute::new("/px/", "https://[::1]:80/").unwrap();
        assert_eq!(
            first(&r).authority(),
            "[::1]:80",
            "80 is not https's own port"
        );
        for bad in [
            "ftp://h/",
            "https:/h/",
            "h:1",
            "http://",
            "http://h:x/",
            "http://h/?q",
            "http://u@h/",
            "http://a:1/,",
            "http://a:1/,https://",
        ] {
            assert!(ProxyRoute::new("/px/", bad).is_err(), "{bad}");
        }
        assert_eq!(
            ProxyRoute::new("px", "http://h/").unwrap_err(),
            ProxyError::Prefix("px".into())
        );
    }

    #[test]
    fn rewrites_targets_like_the_original() {
        let r = ProxyRoute::new("/px/", "http://h:1/up").unwrap();
        assert_eq!(upstream_target(&r, "/px/a/b").as_deref(), Some("/up/a/b"));
        assert_eq!(
            upstream_target(&r, "/px/a/b?x=1").as_deref(),
            Some("/up/a/b?x=1")
        );
        assert_eq!(upstream_target(&r, "/px/").as_deref(), Some("/up/"));
        assert_eq!(upstream_target(&r, "/px").as_deref(), Some("/up"));
        assert_eq!(
            upstream_target(&r, "/px?y=2"),
            None,
            "verified behaviour of the original"
        );
        assert_eq!(upstream_target(&r, "/pxa"), None);
        assert_eq!(upstream_target(&r, "/other"), None);
        let root = ProxyRoute::new("/api/", "http://h:1").unwrap();
        assert_eq!(upstream_target(&root, "/api/v1").as_deref(), Some("/v1"));
        assert_eq!(upstream_target(&root, "/api").as_deref(), Some("/"));
    }

    #[test]
    fn upstreams_take_turns_and_one_that_refused_is_skipped_for_a_while() {
        let r = ProxyRoute::new("/px/", "http://a:1/,http://b:2/,http://c:3/").unwrap();
        let up = r.targets();
        let now = Instant::now();
        let turns: Vec<_> = (0..6).map(|_| up.pick(now, &[]).unwrap()).collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2]);
        let until = now + Duration::from_secs(10);
        up.mark_down(1, until);
        let turns: Vec<_> = (0..4).map(|_| up.pick(now, &[]).unwrap()).collect();
        assert_eq!(turns, [0, 2, 2, 0], "b is skipped while down");
        assert_eq!(
            up.pick(until, &[0, 2]),
            Some(1),
            "and back once its time is over"
        );
        up.mark_down(0, until);
        up.mark_down(2, until);
        assert!(up.pick(now, &[]).is_some(), "all down: one is tried anyway");
        assert_eq!(up.pick(now, &[0, 1, 2]), None, "all tried");
    }
}
