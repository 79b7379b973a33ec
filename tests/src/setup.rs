//! The four ways a test server runs: two transports, with or without TLS.

use std::fmt;
use std::thread;

/// Which transport crate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `quick-server-std`: blocking thread pool.
    Std,
    /// `quick-server-mio`: event loop.
    Mio,
}

/// A transport and whether it speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The transport.
    pub transport: Transport,
    /// HTTPS instead of plain HTTP.
    pub tls: bool,
}

impl Setup {
    /// Every setup, in a fixed order.
    pub const ALL: [Setup; 4] = [
        Setup {
            transport: Transport::Std,
            tls: false,
        },
        Setup {
            transport: Transport::Std,
            tls: true,
        },
        Setup {
            transport: Transport::Mio,
            tls: false,
        },
        Setup {
            transport: Transport::Mio,
            tls: true,
        },
    ];

    /// Whether `filter` (the value of [`SETUPS_VAR`]) selects this setup.
    pub fn selected_by(&self, filter: &str) -> bool {
        let name = self.to_string();
        filter
            .split(',')
            .map(str::trim)
            .any(|item| item == name || name.split('/').next() == Some(item))
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self.transport {
            Transport::Std => "std",
            Transport::Mio => "mio",
        };
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{transport}/{scheme}")
    }
}

/// Environment variable restricting [`each_setup`] to some setups: a comma-separated
/// list of names like `std/https`, or a transport alone (`mio`).
pub const SETUPS_VAR: &str = "QUICK_SERVER_TEST_SETUPS";

/// Runs `test` once per setup (those [`SETUPS_VAR`] selects, if set), each on its own
/// thread and all of them even when some fail; then panics naming every setup that failed.
pub fn each_setup(test: impl Fn(Setup) + Sync) {
    let test = &test;
    let filter = std::env::var(SETUPS_VAR).ok();
    let setups = Setup::ALL
        .into_iter()
        .filter(|setup| filter.as_deref().is_none_or(|f| setup.selected_by(f)));
    let failed: Vec<String> = thread::scope(|scope| {
        let runs: Vec<_> = setups
            .map(|setup| (setup, scope.spawn(move || test(setup))))
            .collect();
        runs.into_iter()
            .filter_map(|(setup, run)| {
                run.join()
                    .err()
                    .map(|panic| format!("{setup}: {}", panic_message(panic.as_ref())))
            })
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed in {} setup(s):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Like [`each_setup`], for the TLS setups only.
pub fn each_tls_setup(test: impl Fn(Setup) + Sync) {
    each_setup(|setup| {
        if setup.tls {
            test(setup);
        }
    });
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters() {
        let names: Vec<String> = Setup::ALL.iter().map(Setup::to_string).collect();
        assert_eq!(names, ["std/http", "std/https", "mio/http", "mio/https"]);
        let https = Setup {
            transport: Transport::Mio,
            tls: true,
        };
        assert!(https.selected_by("mio"));
        assert!(https.selected_by("std/http, mio/https"));
        assert!(!https.selected_by("std"));
        assert!(!https.selected_by("mio/http"));
    }
}
