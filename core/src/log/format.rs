//! Text of the request log lines and slow-request messages (BEHAVIOUR.md: Logging › Request log
//! lines and › Slow requests).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Time since a request began, as the original prints it: right-aligned in 8 columns
/// with 3 decimals, followed by the unit `ms`, `s`, `min`, `h` or `d` (e.g. `   0.784ms`).
pub fn elapsed_string(seconds: f64) -> String {
    let (value, unit) = if seconds < 1.0 {
        (seconds * 1000.0, "ms")
    } else if seconds < 60.0 {
        (seconds, "s")
    } else if seconds < 3600.0 {
        (seconds / 60.0, "min")
    } else if seconds < 86400.0 {
        (seconds / 3600.0, "h")
    } else {
        (seconds / 86400.0, "d")
    };
    format!("{value:8.3}{unit}")
}

/// A byte count as the original prints it: Python's `{:.3g}` of the value in the largest
/// 1024-based unit it reaches (` B`, ` kB`, ` MB`, ` GB`).
///
/// Keeps the original's exponent form for 1000 to 1023 of a unit (`1.02e+03 kB`).
pub(super) fn size_string(bytes: u64) -> String {
    // Same steps as the original: the count as a float, divided by 1024 per unit.
    let mut value = bytes as f64;
    let mut unit = " B";
    for larger in [" kB", " MB", " GB"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = larger;
    }
    let mut text = general_3(value);
    text.push_str(unit);
    text
}

/// `text` with control characters (C0, DEL, C1) written as `\xNN` and `\` as `\\`, so
/// text taken from a request can neither forge log lines nor send terminal escapes.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_control(c)) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\\' {
            escaped.push_str("\\\\");
        } else if is_control(c) {
            // Infallible: writing to a String cannot fail.
            let _ = write!(escaped, "\\x{:02x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Whether a request line with this status is logged: with `suppress_noise`, 200 and 304
/// are hidden.
pub fn should_log(status: u16, suppress_noise: bool) -> bool {
    !(suppress_noise && matches!(status, 200 | 304))
}

/// Logged when a dynamic request is still running at the slow-request threshold.
///
/// `method` is the routing method (`GET` for HEAD); both parts are escaped.
pub fn slow_request_started(method: &str, target: &str) -> String {
    format!(
        "request takes longer than expected: \"{} {}\"",
        escape_control(method),
        escape_control(target)
    )
}

/// Logged when a request reported by [`slow_request_started`] completes after `seconds`,
/// printed like a Python float (`"GET /slow"(5.500861917000066s)`, no space before `(`).
pub fn slow_request_finished(method: &str, target: &str, seconds: f64) -> String {
    format!(
        "request took longer than expected: \"{} {}\"({}s)",
        escape_control(method),
        escape_control(target),
        python_float_repr(seconds)
    )
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time shifted by the local UTC offset the caller knows.
pub fn format_local_time(unix_secs: i64, utc_offset_secs: i32) -> String {
    let local = unix_secs.saturating_add(i64::from(utc_offset_secs));
    let days = local.div_euclid(86_400);
    let second_of_day = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// One request log line, `<elapsed> [<time>] <size >"<request line>" <code>`, as the
/// original writes it when the response head is flushed.
#[derive(Debug, Clone, Copy)]
pub struct RequestLogLine<'a> {
    /// Seconds since the request began; only the first log line of a request has it.
    pub elapsed: Option<f64>,
    /// Local time as `YYYY-MM-DD HH:MM:SS` (see [`format_local_time`]).
    pub local_time: &'a str,
    /// Body size, when known at header time (static files over HTTP/1.1, proxied bodies).
    pub size: Option<u64>,
    /// The raw request line; escaped when displayed.
    pub request_line: &'a str,
    /// The response status code.
    pub status: u16,
}

impl fmt::Display for RequestLogLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(elapsed) = self.elapsed {
            write!(f, "{} ", elapsed_string(elapsed))?;
        }
        write!(f, "[{}] ", escape_control(self.local_time))?;
        if let Some(size) = self.size {
            write!(f, "{} ", size_string(size))?;
        }
        write!(
            f,
            "\"{}\" {}",
            escape_control(self.request_line),
            self.status
        )
    }
}

fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Python's `'{:.3g}'.format(value)` for a finite, non-negative value.
fn general_3(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let (digits, exponent) = scientific(&format!("{value:.2e}"));
    if (-4..3).contains(&exponent) {
        let decimals = usize::try_from(2 - exponent).unwrap_or(0);
        let fixed = format!("{value:.decimals$}");
        trim_fraction(&fixed).to_owned()
    } else {
        exponent_form(&digits, exponent)
    }
}

/// Python's `repr()` of a float: the shortest text that reads back as the same value.
fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    let sign = if value.is_sign_negative() { "-" } else { "" };
    if value.is_infinite() {
        return format!("{sign}inf");
    }
    let (digits, exponent) = scientific(&format!("{:e}", value.abs()));
    let body = if (-4..16).contains(&exponent) {
        fixed_form(&digits, exponent)
    } else {
        exponent_form(&digits, exponent)
    };
    format!("{sign}{body}")
}

/// Splits Rust's `{:e}` output (`1.25e-3`) into its digits (`125`) and exponent (`-3`).
fn scientific(text: &str) -> (String, i32) {
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let digits = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exponent.parse().unwrap_or(0))
}

/// `d.ddde+XX` as Python writes exponents: trailing zeros dropped, sign and two digits.
fn exponent_form(digits: &str, exponent: i32) -> String {
    let digits = digits.trim_end_matches('0');
    let mut chars = digits.chars();
    let mut text: String = chars.next().map_or_else(|| "0".to_owned(), String::from);
    let rest = chars.as_str();
    if !rest.is_empty() {
        text.push('.');
        text.push_str(rest);
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    let _ = write!(text, "e{sign}{:02}", exponent.unsigned_abs());
    text
}

/// Positional notation of `0.digits × 10^(exponent + 1)` with at least one decimal.
fn fixed_form(digits: &str, exponent: i32) -> String {
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    match usize::try_from(exponent) {
        Ok(point) => {
            let (integer, fraction) = digits.split_at(point.saturating_add(1).min(digits.len()));
            let zeros = point.saturating_add(1).saturating_sub(integer.len());
            let fraction = if fraction.is_empty() { "0" } else { fraction };
            format!("{integer}{}.{fraction}", "0".repeat(zeros))
        }
        Err(_) => {
            let zeros = usize::try_from(-1 - i64::from(exponent)).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        }
    }
}

/// Drops trailing zeros of a fraction, and the point if nothing is left after it.
fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: day 1..=31, month 1..=12.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_examples_of_the_original() {
        assert_eq!(elapsed_string(0.000_759), "   0.759ms");
        assert_eq!(elapsed_string(0.000_784), "   0.784ms");
        assert_eq!(elapsed_string(0.000_123), "   0.123ms");
        assert_eq!(elapsed_string(0.5), " 500.000ms");
        assert_eq!(elapsed_string(1.0), "   1.000s");
        assert_eq!(elapsed_string(59.9), "  59.900s");
        assert_eq!(elapsed_string(61.0), "   1.017min");
        assert_eq!(elapsed_string(3700.0), "   1.028h");
        assert_eq!(elapsed_string(90_000.0), "   1.042d");
    }

    #[test]
    fn elapsed_unit_boundaries() {
        assert_eq!(elapsed_string(0.0), "   0.000ms");
        assert_eq!(elapsed_string(0.999_999_9), "1000.000ms");
        assert_eq!(elapsed_string(60.0), "   1.000min");
        assert_eq!(elapsed_string(3600.0), "   1.000h");
        assert_eq!(elapsed_string(86_400.0), "   1.000d");
        assert_eq!(elapsed_string(864_000_000.0), "10000.000d");
        assert_eq!(elapsed_string(f64::NAN), "     NaNd");
    }

    #[test]
    fn size_matches_python_format() {
        // Expected values printed by python3 for the original's formula.
        let table: &[(u64, &str)] = &[
            (0, "0 B"),
            (1, "1 B"),
            (9, "9 B"),
            (78, "78 B"),
            (99, "99 B"),
            (100, "100 B"),
            (782, "782 B"),
            (999, "999 B"),
            (1000, "1e+03 B"),
            (1005, "1e+03 B"),
            (1015, "1.02e+03 B"),
            (1023, "1.02e+03 B"),
            (1024, "1 kB"),
            (1025, "1 kB"),
            (1126, "1.1 kB"),
            (1152, "1.12 kB"),
            (1180, "1.15 kB"),
            (1408, "1.38 kB"),
            (1536, "1.5 kB"),
            (3143, "3.07 kB"),
            (10239, "10 kB"),
            (10240, "10 kB"),
            (102_400, "100 kB"),
            (1_023_999, "1e+03 kB"),
            (1_024_000, "1e+03 kB"),
            (1_044_480, "1.02e+03 kB"),
            (1_045_000, "1.02e+03 kB"),
            (1_048_575, "1.02e+03 kB"),
            (1_048_576, "1 MB"),
            (5_242_880, "5 MB"),
            (12_345_678, "11.8 MB"),
            (1_073_741_823, "1.02e+03 MB"),
            (1_073_741_824, "1 GB"),
            (1_099_511_627_776, "1.02e+03 GB"),
            (1_099_511_627_776_000, "1.02e+06 GB"),
            (9_007_199_254_740_993, "8.39e+06 GB"),
            (u64::MAX, "1.72e+10 GB"),
        ];
        for (bytes, expected) in table {
            assert_eq!(size_string(*bytes), *expected, "{bytes}");
        }
    }

    #[test]
    fn general_3_matches_python() {
        // Expected values printed by python3 `{:.3g}`.
        assert_eq!(general_3(0.5), "0.5");
        assert_eq!(general_3(0.000_123_4), "0.000123");
        assert_eq!(general_3(0.000_012_34), "1.23e-05");
        assert_eq!(general_3(99.95), "100");
        assert_eq!(general_3(999.5), "1e+03");
    }

    #[test]
    fn escapes_control_and_backslash() {
        assert!(matches!(escape_control("GET / HTTP/1.1"), Cow::Borrowed(_)));
        assert!(matches!(escape_control("é ✓ \u{a0}"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("GET /\r\n0.1ms [x] \"GET /admin\" 200"),
            "GET /\\x0d\\x0a0.1ms [x] \"GET /admin\" 200"
        );
        assert_eq!(escape_control("\u{1b}[31mred"), "\\x1b[31mred");
        assert_eq!(
            escape_control("\u{0}\u{7f}\u{80}\u{9b}\u{9f}\u{a0}"),
            "\\x00\\x7f\\x80\\x9b\\x9f\u{a0}"
        );
        assert_eq!(escape_control("a\\x1b"), "a\\\\x1b");
        assert_eq!(escape_control("\t"), "\\x09");
    }

    #[test]
    fn request_line_shapes() {
        let line = RequestLogLine {
            elapsed: Some(0.000_784),
            local_time: "2026-11-23 21:20:01",
            size: Some(9),
            request_line: "GET /sub/a.txt HTTP/1.1",
            status: 200,
        };
        assert_eq!(
            line.to_string(),
            "   0.784ms [2026-11-23 21:20:01] 9 B \"GET /sub/a.txt HTTP/1.1\" 200"
        );
        let bare = RequestLogLine {
            elapsed: None,
            size: None,
            request_line: "GET /x HTTP/1.1",
            status: 404,
            ..line
        };
        assert_eq!(
            bare.to_string(),
            "[2026-11-23 21:20:01] \"GET /x HTTP/1.1\" 404"
        );
        let hostile = RequestLogLine {
            request_line: "GET /\n[forged] \u{1b}]0;x\u{7}",
            ..bare
        };
        assert_eq!(
            hostile.to_string(),
            "[2026-11-23 21:20:01] \"GET /\\x0a[forged] \\x1b]0;x\\x07\" 404"
        );
    }

    #[test]
    fn noise_suppression() {
        assert!(!should_log(200, true));
        assert!(!should_log(304, true));
        assert!(should_log(404, true));
        assert!(should_log(201, true));
        assert!(should_log(200, false));
        assert!(should_log(304, false));
    }

    #[test]
    fn slow_request_messages() {
        assert_eq!(
            slow_request_started("GET", "/slow?a=1"),
            "request takes longer than expected: \"GET /slow?a=1\""
        );
        assert_eq!(
            slow_request_finished("GET", "/slow", 5.500_861_917_000_066),
            "request took longer than expected: \"GET /slow\"(5.500861917000066s)"
        );
        assert_eq!(
            slow_request_finished("POST", "/x\n", 5.0),
            "request took longer than expected: \"POST /x\\x0a\"(5.0s)"
        );
    }

    #[test]
    fn python_repr_matches() {
        // Expected values printed by python3 `repr()`.
        let table: &[(f64, &str)] = &[
            (5.500_861_917_000_066, "5.500861917000066"),
            (5.0, "5.0"),
            (0.1, "0.1"),
            (0.5, "0.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (1e-7, "1e-07"),
            (1e22, "1e+22"),
            (123_456_789_012_345.6, "123456789012345.6"),
            (1_234_567_890_123_456.8, "1234567890123456.8"),
            (100.0, "100.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.0, "-2.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (value, expected) in table {
            assert_eq!(python_float_repr(*value), *expected, "{value}");
        }
    }

    #[test]
    fn local_time_matches_python_gmtime() {
        // Expected values printed by python3 `time.strftime` of `gmtime(t + offset)`.
        let table: &[(i64, i32, &str)] = &[
            (0, 0, "1970-01-01 00:00:00"),
            (1_795_468_801, 0, "2026-11-23 21:20:01"),
            (1_795_468_801, 3600, "2026-11-23 22:20:01"),
            (951_782_400, 0, "2000-02-29 00:00:00"),
            (951_868_799, -3600, "2000-02-29 22:59:59"),
            (-1, 0, "1969-12-31 23:59:59"),
            (-31_622_400, 19_800, "1968-12-31 05:30:00"),
            (253_402_300_799, 0, "9999-12-31 23:59:59"),
            (4_102_444_800, 0, "2100-01-01 00:00:00"),
            (1_709_164_800, 0, "2024-02-29 00:00:00"),
            (-62_135_596_800, 0, "0001-01-01 00:00:00"),
        ];
        for (secs, offset, expected) in table {
            assert_eq!(format_local_time(*secs, *offset), *expected, "{secs}");
        }
    }

    #[test]
    fn local_time_extremes_do_not_panic() {
        for secs in [i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1] {
            for offset in [i32::MIN, 0, i32::MAX] {
                assert!(format_local_time(secs, offset).len() >= 19);
            }
        }
    }
}
