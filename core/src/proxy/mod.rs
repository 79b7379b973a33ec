//! The reverse-proxy route kind (BEHAVIOUR.md: Proxy): bindings from a prefix to `http://`
//! or `https://` upstreams, and the sans-IO client exchange the connection runs for a
//! proxied request. The transport only opens the upstream socket (with TLS through
//! `tls::TlsPump` for `https://`) and moves bytes.

mod debug;
pub(crate) mod exchange;
pub(crate) mod forward;
mod pool;
pub(crate) mod route;

pub use exchange::{Connect, Release};
pub use pool::IdlePool;
pub use route::ProxyError;
pub(crate) use route::ProxyRoute;
