//! # quick-server-tests
//!
//! The black-box harness: real servers on 127.0.0.1 port 0, over either transport, plain
//! or TLS (certificates made at start with `rcgen`), and a raw client that sends exact
//! bytes and parses what comes back. [`each_setup`] runs a test over all four setups.

mod browser;
mod certs;
mod client;
mod data;
mod dir;
mod http_json;
mod redis;
mod response;
mod server;
mod setup;

pub use browser::{have_chromium, headless_chromium, text_of, CHROMIUM};
pub use certs::{client_tls_config, server_tls_config, TestCa};
pub use client::{Client, READ_TIMEOUT};
pub use data::{fnv1a64, pseudo_random_bytes};
pub use dir::TempDir;
pub use http_json::{get, json_of, multipart, post_json, with_body, FacadeServer, Part};
pub use redis::{cluster_binary, have_redis, Instance, RedisServer};
pub use response::{parse_response, ParseError, Parsed, Response};
pub use server::{Stopper, TestServer, Tuning};
pub use setup::{each_setup, each_tls_setup, Setup, Transport, SETUPS_VAR};
