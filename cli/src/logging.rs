//! The log: one process-wide sink (stderr, or a file after [`set_log_file`]) that
//! [`msg`] and the request log write to, and the [`RequestLog`] the facade
//! installs so every answered request prints the original's line (BEHAVIOUR.md: Logging).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_server_core::log::{
    escape_control, format_local_time, should_log, slow_request_finished, slow_request_started,
    RequestLog, RequestLogLine, RequestRecord, SlowRequest,
};
use quick_server_core::ServerBuilder;

/// Prefix of every log line: the original's short form (`LONG_MSG = False`).
const PREFIX: &str = "[SERVER] ";

/// The original's slow-request threshold.
pub(crate) const SLOW_THRESHOLD: Duration = Duration::from_secs(5);

/// The log file; `None` logs to stderr. Shared by every server of the process, like the
/// original's module-level sink.
static SINK: Mutex<Option<File>> = Mutex::new(None);

/// Sends the log of the whole process to `path` (appending), or back to stderr with `None`.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("qs-log-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let log = dir.join("server.log");
/// quick_server::set_log_file(Some(&log))?;
/// quick_server::msg("to the file");
/// quick_server::set_log_file(None)?;
/// assert_eq!(std::fs::read_to_string(&log)?, "[SERVER] to the file\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// The file cannot be opened; the sink is then unchanged.
pub fn set_log_file(path: Option<&Path>) -> io::Result<()> {
    let file = match path {
        Some(path) => Some(OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    *SINK.lock().unwrap_or_else(PoisonError::into_inner) = file;
    Ok(())
}

/// Writes each line of `text` with the `[SERVER] ` prefix (the original's short form) to
/// the log: stderr, or the file given to [`set_log_file`], in one piece so lines of
/// concurrent messages do not interleave. Write errors are ignored: logging must not stop
/// the server.
///
/// ```
/// quick_server::msg("cache warmed up\n42 entries");
/// // stderr: [SERVER] cache warmed up
/// //         [SERVER] 42 entries
/// ```
pub fn msg(text: &str) {
    let mut block = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        block.push_str(PREFIX);
        block.push_str(line);
        block.push('\n');
    }
    if block.is_empty() {
        return;
    }
    let mut sink = SINK.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = match sink.as_mut() {
        Some(file) => file.write_all(block.as_bytes()),
        None => io::stderr().lock().write_all(block.as_bytes()),
    };
}

/// The logging choices of one server, applied when it starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogOptions {
    /// Hide request lines with status 200 or 304.
    pub(crate) suppress_noise: bool,
    /// Report dynamic requests running longer than this.
    pub(crate) slow_threshold: Option<Duration>,
    /// Targets whose 404s are not logged (scanners' favourites).
    pub(crate) common_invalid_paths: Arc<HashSet<String>>,
}

impl LogOptions {
    /// Installs the request log and the slow threshold on `builder`.
    pub(crate) fn install(&self, builder: &mut ServerBuilder) {
        builder
            .request_log(Arc::new(ConsoleLog {
                suppress_noise: self.suppress_noise,
                common_invalid_paths: Arc::clone(&self.common_invalid_paths),
            }))
            .slow_threshold(self.slow_threshold);
    }
}

/// The request log writing through [`msg`].
struct ConsoleLog {
    suppress_noise: bool,
    common_invalid_paths: Arc<HashSet<String>>,
}

impl RequestLog for ConsoleLog {
    fn request(&self, record: &RequestRecord<'_>) {
        if is_common_invalid(&self.common_invalid_paths, record)
            || !has_lines(record, self.suppress_noise)
        {
            return; // the common case with noise suppressed: no clock or zone work
        }
        let offset = utc_offset(unix_secs(record.wall));
        for line in request_lines(record, self.suppress_noise, offset) {
            msg(&line);
        }
    }

    fn slow(&self, slow: &SlowRequest<'_>) {
        msg(&if slow.completed {
            slow_request_finished(slow.method, slow.target, slow.elapsed.as_secs_f64())
        } else {
            slow_request_started(slow.method, slow.target)
        });
    }

    fn note(&self, text: &str) {
        for line in text.lines() {
            msg(&escape_control(line));
        }
    }
}

/// The lines the original logs for one answered request, each on one line (request text
/// escaped): `code C, message M` before an error page (never for `404 File not found`),
/// then the request line unless noise is suppressed. The first line carries the elapsed
/// time.
fn request_lines(record: &RequestRecord<'_>, suppress_noise: bool, utc_offset: i32) -> Vec<String> {
    let local_time = format_local_time(unix_secs(record.wall), utc_offset);
    let mut elapsed = Some(record.elapsed.as_secs_f64());
    let mut lines = Vec::new();
    if let Some(message) = record.message {
        if logs_message(record.status, message) {
            let mut line = String::new();
            if let Some(seconds) = elapsed.take() {
                line.push_str(&quick_server_core::log::elapsed_string(seconds));
                line.push(' ');
            }
            line.push_str(&format!(
                "[{local_time}] code {}, message {}",
                record.status,
                escape_control(message)
            ));
            lines.push(line);
        }
    }
    if should_log(record.status, suppress_noise) {
        let line = RequestLogLine {
            elapsed,
            local_time: &local_time,
            size: record.size,
            request_line: record.request_line,
            status: record.status,
        };
        lines.push(line.to_string());
    }
    lines
}

/// Whether an error page's message gets its own `code C, message M` line.
fn logs_message(status: u16, message: &str) -> bool {
    !(status == 404 && message == "File not found")
}

/// Whether [`request_lines`] has anything to say about `record`.
fn has_lines(record: &RequestRecord<'_>, suppress_noise: bool) -> bool {
    record
        .message
        .is_some_and(|message| logs_message(record.status, message))
        || should_log(record.status, suppress_noise)
}

/// A 404 for one of the paths scanners try: not worth a log line (BEHAVIOUR.md: Logging › Common
/// invalid paths).
fn is_common_invalid(paths: &HashSet<String>, record: &RequestRecord<'_>) -> bool {
    record.status == 404
        && paths.contains(record.request_line.split(' ').nth(1).unwrap_or_default())
}

/// Seconds since the Unix epoch, negative before it.
fn unix_secs(wall: SystemTime) -> i64 {
    match wall.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The local time zone's offset from UTC at `unix_secs`, in seconds (0 if unknown).
fn utc_offset(unix_secs: i64) -> i32 {
    let Some(time) = libc::time_t::try_from(unix_secs).ok() else {
        return 0;
    };
    let mut tm = MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: `time` and `tm` are valid for the whole call; `localtime_r` writes only into
    // `tm` and, when it succeeds (non-null result), has initialised it, so `assume_init`
    // reads an initialised value (all-zero is a valid `tm` as well). It reads the TZ
    // environment; this crate never modifies the environment.
    let gmtoff = unsafe {
        if libc::localtime_r(&time, tm.as_mut_ptr()).is_null() {
            return 0;
        }
        tm.assume_init().tm_gmtoff
    };
    i32::try_from(gmtoff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(line: &'a str, status: u16, message: Option<&'a str>) -> RequestRecord<'a> {
        RequestRecord {
            peer: "127.0.0.1:5000",
            request_line: line,
            status,
            message,
            size: None,
            elapsed: Duration::from_micros(784),
            // 2026-11-23 21:20:01 UTC
            wall: UNIX_EPOCH + Duration::from_secs(1_795_468_801),
        }
    }

    #[test]
    fn request_line_shape() {
        let mut r = record("GET /sub/a.txt HTTP/1.1", 200, None);
        r.size = Some(9);
        assert_eq!(
            request_lines(&r, false, 0),
            ["   0.784ms [2026-11-23 21:20:01] 9 B \"GET /sub/a.txt HTTP/1.1\" 200"]
        );
        assert_eq!(
            request_lines(&r, false, 3600),
            ["   0.784ms [2026-11-23 22:20:01] 9 B \"GET /sub/a.txt HTTP/1.1\" 200"]
        );
    }

    #[test]
    fn error_pages_log_code_and_message_first() {
        let r = record("GET /x HTTP/1.1", 500, Some("boom"));
        assert_eq!(
            request_lines(&r, false, 0),
            [
                "   0.784ms [2026-11-23 21:20:01] code 500, message boom",
                "[2026-11-23 21:20:01] \"GET /x HTTP/1.1\" 500",
            ]
        );
    }

    #[test]
    fn file_not_found_message_is_never_logged() {
        let r = record("GET /x HTTP/1.1", 404, Some("File not found"));
        assert_eq!(
            request_lines(&r, false, 0),
            ["   0.784ms [2026-11-23 21:20:01] \"GET /x HTTP/1.1\" 404"]
        );
        let r = record(
            "GET /x/ HTTP/1.1",
            404,
            Some("No permission to list directory"),
        );
        assert_eq!(request_lines(&r, false, 0).len(), 2);
    }

    #[test]
    fn suppress_noise_hides_200_and_304_only() {
        for (status, shown) in [(200, false), (304, false), (404, true), (500, true)] {
            let r = record("GET / HTTP/1.1", status, None);
            assert_eq!(!request_lines(&r, true, 0).is_empty(), shown, "{status}");
            assert_eq!(request_lines(&r, false, 0).len(), 1);
        }
    }

    #[test]
    fn has_lines_agrees_with_request_lines() {
        let messages = [None, Some("File not found"), Some("boom")];
        for status in [200, 304, 404, 500] {
            for message in messages {
                for suppress in [false, true] {
                    let r = record("GET / HTTP/1.1", status, message);
                    assert_eq!(
                        has_lines(&r, suppress),
                        !request_lines(&r, suppress, 0).is_empty(),
                        "{status} {message:?} {suppress}"
                    );
                }
            }
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let r = record("GET /a\u{1b}[2J\nb HTTP/1.1", 400, Some("bad\r\nline"));
        let lines = request_lines(&r, false, 0);
        assert_eq!(
            lines,
            [
                "   0.784ms [2026-11-23 21:20:01] code 400, message bad\\x0d\\x0aline",
                "[2026-11-23 21:20:01] \"GET /a\\x1b[2J\\x0ab HTTP/1.1\" 400",
            ]
        );
        assert!(lines.iter().all(|l| !l.chars().any(char::is_control)));
    }

    #[test]
    fn unix_seconds_both_sides_of_the_epoch() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }

    #[test]
    fn offset_is_within_a_day() {
        assert!(utc_offset(1_795_468_801).abs() <= 86_400);
    }

    #[test]
    fn common_invalid_paths_hide_only_their_404s() {
        let paths: HashSet<String> = ["/wp-login.php".to_owned()].into_iter().collect();
        let record = |line: &'static str, status| RequestRecord {
            peer: "p",
            request_line: line,
            status,
            message: None,
            size: None,
            elapsed: Duration::ZERO,
            wall: UNIX_EPOCH,
        };
        assert!(is_common_invalid(
            &paths,
            &record("GET /wp-login.php HTTP/1.1", 404)
        ));
        assert!(!is_common_invalid(
            &paths,
            &record("GET /wp-login.php HTTP/1.1", 200)
        ));
        assert!(!is_common_invalid(
            &paths,
            &record("GET /other HTTP/1.1", 404)
        ));
    }
}
