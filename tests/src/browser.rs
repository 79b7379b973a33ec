//! Headless Chromium for the browser tests: one instance at a time, a fresh profile each.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use crate::dir::TempDir;

/// Debian's Chromium (`tests/run` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser at a time: they are heavy for small machines.
static BROWSER: Mutex<()> = Mutex::new(());

/// Whether Chromium is installed; prints the skip notice when it is not.
pub fn have_chromium() -> bool {
    let found = Path::new(CHROMIUM).exists();
    if !found {
        println!("skipped: {CHROMIUM} is not installed (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`, `--screenshot=…`)
/// once the page's timers ran, and returns its stdout. Certificates are not checked: the
/// test servers' are made at start.
pub fn headless_chromium(url: &str, args: &[&str]) -> String {
    let profile = TempDir::new();
    let _one = BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--ignore-certificate-errors",
            "--no-first-run",
            // Virtual time pauses while fetches are pending, so it outruns the real clock
            // only between requests: an hour is plenty and ends as soon as the page idles.
            "--virtual-time-budget=3600000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of the element with `id` in a dumped DOM.
pub fn text_of<'d>(dom: &'d str, id: &str) -> &'d str {
    let open = format!("id=\"{id}\">");
    let start = dom
        .find(&open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[start..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_reads_an_element() {
        assert_eq!(
            text_of("<p id=\"a\">one</p><p id=\"b\">two</p>", "b"),
            "two"
        );
        assert_eq!(text_of("<p id=\"e\"></p>", "e"), "");
    }
}
