//! `quick-server`: serve a folder over HTTP (or HTTPS), like `python -m quick_server`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use quick_server::{load_tls, msg, QuickServer, Transport, TransportOptions};

/// One command-line flag: its spellings, value name and help, defined once; `--help` is
/// generated from this table.
struct Flag {
    short: Option<char>,
    long: &'static str,
    aliases: &'static [&'static str],
    value: Option<&'static str>,
    help: &'static str,
}

const FLAGS: &[Flag] = &[
    Flag {
        short: Some('a'),
        long: "addr",
        aliases: &[],
        value: Some("ADDR"),
        help: "address to listen on [default: 127.0.0.1]",
    },
    Flag {
        short: Some('p'),
        long: "port",
        aliases: &[],
        value: Some("PORT"),
        help: "port to listen on [default: 8080]",
    },
    Flag {
        short: None,
        long: "www",
        aliases: &[],
        value: Some("DIR"),
        help: "folder to serve (same as the DIR argument)",
    },
    Flag {
        short: None,
        long: "transport",
        aliases: &[],
        value: Some("mio|std"),
        help: "event loop or blocking thread pool [default: mio]",
    },
    Flag {
        short: None,
        long: "loops",
        aliases: &[],
        value: Some("N"),
        help: "mio event loops, 1 to 256 [default: one per core]",
    },
    Flag {
        short: None,
        long: "threads",
        aliases: &[],
        value: Some("N"),
        help: "pool threads, 1 to 1024 (std keeps N warm, grows to 1024) [default: per transport]",
    },
    Flag {
        short: None,
        long: "max-connections",
        aliases: &[],
        value: Some("N"),
        help: "connections served at once; one more is answered 503 [default: 1024]",
    },
    Flag {
        short: None,
        long: "tls-cert",
        aliases: &[],
        value: Some("FILE"),
        help: "PEM certificate chain; serve HTTPS (needs --tls-key)",
    },
    Flag {
        short: None,
        long: "tls-key",
        aliases: &[],
        value: Some("FILE"),
        help: "PEM private key for --tls-cert",
    },
    Flag {
        short: None,
        long: "tls-self-signed",
        aliases: &[],
        value: Some("[=DIR]"),
        help: "serve HTTPS with a certificate made at start (kept in DIR if given)",
    },
    Flag {
        short: None,
        long: "spa",
        aliases: &[],
        value: Some("FILE"),
        help: "answer unknown HTML requests with FILE (single-page apps)",
    },
    Flag {
        short: None,
        long: "proxy",
        aliases: &[],
        value: Some("PREFIX=URL[,URL..]"),
        help: "forward PREFIX to http:// or https:// upstreams, in turn (repeatable)",
    },
    Flag {
        short: None,
        long: "proxy-ca",
        aliases: &[],
        value: Some("FILE"),
        help: "trust the PEM CA certificates in FILE for https:// upstreams (repeatable)",
    },
    Flag {
        short: None,
        long: "proxy-debug",
        aliases: &[],
        value: None,
        help: "log each proxied request: headers, payload, status, bytes, time",
    },
    Flag {
        short: None,
        long: "no-listing",
        aliases: &[],
        value: None,
        help: "do not list folders without an index page",
    },
    Flag {
        short: None,
        long: "no-compress",
        aliases: &[],
        value: None,
        help: "never compress answers (by default gzip, br or zstd when the client accepts it)",
    },
    Flag {
        short: None,
        long: "all-files",
        aliases: &[],
        value: None,
        help: "serve every file, not only the default white list",
    },
    Flag {
        short: None,
        long: "cors",
        aliases: &[],
        value: Some("ORIGIN"),
        help:
            "let ORIGIN read answers with credentials (repeatable; '*': any origin, no credentials)",
    },
    Flag {
        short: None,
        long: "redis",
        aliases: &[],
        value: Some("URL"),
        help: "share tokens, worker tasks and cache in Redis (redis:// or rediss://)",
    },
    Flag {
        short: None,
        long: "log-all",
        aliases: &[],
        value: None,
        help: "log successful requests too (by default only errors, like the original)",
    },
    Flag {
        short: Some('V'),
        long: "version",
        aliases: &["-v"],
        value: None,
        help: "print the version and exit",
    },
    Flag {
        short: Some('h'),
        long: "help",
        aliases: &[],
        value: None,
        help: "print this help and exit",
    },
];

/// What the command line asked for.
struct Cli {
    addr: String,
    port: u16,
    dir: PathBuf,
    transport: Transport,
    loops: Option<usize>,
    threads: Option<usize>,
    max_connections: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// `--tls-self-signed`, with its cache folder if one was named.
    self_signed: Option<Option<PathBuf>>,
    spa: Option<PathBuf>,
    /// `--proxy` bindings: prefix and upstream URL, in command-line order.
    proxies: Vec<(String, String)>,
    /// `--proxy-ca` files.
    proxy_cas: Vec<PathBuf>,
    proxy_debug: bool,
    listing: bool,
    compress: bool,
    all_files: bool,
    /// `--cors` origins, `*` for any origin without credentials.
    cors: Vec<String>,
    log_all: bool,
    /// `--redis`: the Redis URL of the shared state.
    redis: Option<String>,
}

fn help() -> String {
    let mut out = String::from(
        "quick-server: serve a folder over HTTP, fast.\n\nUsage: quick-server [OPTIONS] [DIR]\n\n\
         Arguments:\n  [DIR]  folder to serve [default: .]\n\nOptions:\n",
    );
    for flag in FLAGS {
        let short = flag.short.map_or("    ".to_owned(), |c| format!("-{c}, "));
        let value = match flag.value {
            // An optional value is written `[=VALUE]` and only given with `=`.
            Some(v) if v.starts_with('[') => v.to_owned(),
            Some(v) => format!(" <{v}>"),
            None => String::new(),
        };
        let spelling = format!("{short}--{}{value}", flag.long);
        out.push_str(&format!("  {spelling:<28} {}\n", flag.help));
    }
    out
}

enum Parsed {
    Run(Box<Cli>),
    Exit(String),
}

fn parse() -> Result<Parsed, lexopt::Error> {
    use lexopt::prelude::*;
    let mut cli = Cli {
        addr: "127.0.0.1".into(),
        port: 8080,
        dir: PathBuf::from("."),
        transport: Transport::default(),
        loops: None,
        threads: None,
        max_connections: None,
        tls_cert: None,
        tls_key: None,
        self_signed: None,
        spa: None,
        proxies: Vec::new(),
        proxy_cas: Vec::new(),
        proxy_debug: false,
        listing: true,
        compress: true,
        all_files: false,
        cors: Vec::new(),
        log_all: false,
        redis: None,
    };
    // `-v` is the original's version flag; lexopt reads it as a short option.
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        let long = match &arg {
            Short(c) => FLAGS
                .iter()
                .find(|f| f.short == Some(*c) || f.aliases.contains(&format!("-{c}").as_str()))
                .map(|f| f.long),
            Long(name) => FLAGS.iter().find(|f| f.long == *name).map(|f| f.long),
            Value(dir) => {
                cli.dir = PathBuf::from(dir.clone());
                continue;
            }
        };
        let Some(long) = long else {
            return Err(arg.unexpected());
        };
        match long {
            "addr" => cli.addr = parser.value()?.string()?,
            "port" => cli.port = value(&mut parser, long)?,
            "www" => cli.dir = parser.value()?.into(),
            "transport" => cli.transport = value(&mut parser, long)?,
            "loops" => {
                let loops = value(&mut parser, long)?;
                if !(1..=MAX_LOOPS).contains(&loops) {
                    return Err(format!("--loops must be 1 to {MAX_LOOPS}, got {loops}").into());
                }
                cli.loops = Some(loops);
            }
            "threads" => {
                let threads = value(&mut parser, long)?;
                if !(1..=MAX_THREADS).contains(&threads) {
                    return Err(
                        format!("--threads must be 1 to {MAX_THREADS}, got {threads}").into(),
                    );
                }
                cli.threads = Some(threads);
            }
            "max-connections" => {
                let max = value(&mut parser, long)?;
                if !(1..=MAX_CONNECTIONS).contains(&max) {
                    return Err(format!(
                        "--max-connections must be 1 to {MAX_CONNECTIONS}, got {max}"
                    )
                    .into());
                }
                cli.max_connections = Some(max);
            }
            "tls-cert" => cli.tls_cert = Some(parser.value()?.into()),
            "tls-key" => cli.tls_key = Some(parser.value()?.into()),
            "tls-self-signed" => cli.self_signed = Some(parser.optional_value().map(Into::into)),
            "spa" => cli.spa = Some(parser.value()?.into()),
            "proxy" => {
                let binding = parser.value()?.string()?;
                let Some((prefix, url)) = binding.split_once('=') else {
                    return Err(format!("--proxy wants PREFIX=URL, got {binding:?}").into());
                };
                cli.proxies.push((prefix.to_owned(), url.to_owned()));
            }
            "proxy-ca" => cli.proxy_cas.push(parser.value()?.into()),
            "proxy-debug" => cli.proxy_debug = true,
            "no-listing" => cli.listing = false,
            "no-compress" => cli.compress = false,
            "all-files" => cli.all_files = true,
            "cors" => {
                let origin = parser.value()?.string()?;
                if origin != "*" {
                    quick_server_core::Origin::parse(&origin).map_err(|e| e.to_string())?;
                }
                cli.cors.push(origin);
            }
            "log-all" => cli.log_all = true,
            "redis" => cli.redis = Some(parser.value()?.string()?),
            "version" => {
                return Ok(Parsed::Exit(format!(
                    "quick-server version {}",
                    quick_server_core::VERSION
                )))
            }
            _ => return Ok(Parsed::Exit(help())),
        }
    }
    match (&cli.tls_cert, &cli.tls_key, &cli.self_signed) {
        (Some(_), Some(_), None) | (None, None, _) => {}
        (Some(_), Some(_), Some(_)) => {
            return Err("--tls-self-signed replaces --tls-cert and --tls-key".into())
        }
        _ => return Err("--tls-cert and --tls-key go together".into()),
    }
    if cli.loops.is_some() && cli.transport == Transport::Std {
        return Err("--loops is for --transport mio (std has no event loop)".into());
    }
    Ok(Parsed::Run(Box::new(cli)))
}

/// The most event loops `--loops` accepts; each is a thread with its own poller.
const MAX_LOOPS: usize = 256;

/// The most pool threads `--threads` accepts: the std transport's ceiling.
const MAX_THREADS: usize = 1024;

/// The most connections `--max-connections` accepts: each holds a descriptor, and the
/// kernel's own ceiling on descriptors per process (`fs.nr_open`) defaults to 2^20.
const MAX_CONNECTIONS: usize = 1 << 20;

/// The value of `--long`, parsed; the error names the flag.
fn value<T>(parser: &mut lexopt::Parser, long: &str) -> Result<T, lexopt::Error>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw = parser.value()?;
    let text = raw.to_string_lossy();
    text.parse()
        .map_err(|e| format!("invalid value {text:?} for --{long}: {e}").into())
}

fn run(cli: Cli) -> Result<(), String> {
    let addr: SocketAddr = (cli.addr.as_str(), cli.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", cli.addr))?
        .next()
        .ok_or_else(|| format!("no address for {}", cli.addr))?;
    if !cli.dir.is_dir() {
        return Err(format!("not a folder: {}", cli.dir.display()));
    }
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key).map_err(|e| e.to_string())?),
        _ => None,
    };
    let mut server = QuickServer::new(addr);
    server.bind_path("/", &cli.dir).map_err(|e| e.to_string())?;
    // As the original's `python -m quick_server`: listing, empty favicon, quiet about
    // successful requests, loud about slow ones.
    server
        .directory_listing(cli.listing)
        .compress(cli.compress)
        .link_empty_favicon_fallback()
        .suppress_noise(!cli.log_all)
        .report_slow_requests(true);
    server.cors_origins(&cli.cors).map_err(|e| e.to_string())?;
    if !cli.all_files {
        server.add_default_white_list();
    }
    if let Some(cache) = cli.self_signed {
        server.tls_self_signed(cache);
    }
    if let Some(spa) = &cli.spa {
        server.spa_fallback(spa);
    }
    for (prefix, url) in &cli.proxies {
        server
            .bind_proxy(prefix, url)
            .map_err(|e| format!("--proxy {prefix}={url}: {e}"))?;
    }
    for file in &cli.proxy_cas {
        server.proxy_ca(file);
    }
    server.debug_proxy(cli.proxy_debug);
    #[cfg(feature = "redis")]
    if let Some(url) = &cli.redis {
        let state = quick_server::SharedState::open(url, Default::default())
            .map_err(|e| format!("--redis: {e}"))?;
        server.shared_state(state);
    }
    let defaults = TransportOptions::default();
    server.transport(
        cli.transport,
        TransportOptions {
            tls,
            threads: cli.threads,
            loops: cli.loops.unwrap_or(defaults.loops),
            max_connections: cli.max_connections.unwrap_or(defaults.max_connections),
            ..defaults
        },
    );
    server
        .serve_forever()
        .map_err(|e| format!("cannot serve on {addr}: {e}"))
}

/// The one-line complaint about a flag this build cannot honour (`--redis` without the
/// `redis` feature), if any.
fn missing_feature(redis: bool) -> Option<&'static str> {
    (redis && !cfg!(feature = "redis"))
        .then_some("--redis needs a build with the `redis` feature (cargo build --features redis)")
}

fn main() -> ExitCode {
    match parse() {
        Ok(Parsed::Exit(text)) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(cli)) if missing_feature(cli.redis.is_some()).is_some() => {
            let complaint = missing_feature(true).unwrap_or_default();
            eprintln!("quick-server: {complaint}");
            ExitCode::from(2)
        }
        Ok(Parsed::Run(cli)) => match run(*cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                msg(&format!("error: {e}"));
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("quick-server: {e}\nTry 'quick-server --help' for the options.");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_needs_the_feature() {
        assert_eq!(missing_feature(false), None);
        if cfg!(feature = "redis") {
            assert_eq!(missing_feature(true), None);
        } else {
            let line = missing_feature(true).expect("a complaint without the feature");
            assert!(line.contains("--redis") && !line.contains('\n'), "{line}");
        }
    }
}
