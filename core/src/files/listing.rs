//! The HTML directory listing page (BEHAVIOUR.md: Static files › Content types and listings), plus
//! sizes, dates and a parent link.
//!
//! Everything shown comes from the arguments: the caller passes the decoded request path
//! and the entries, never a filesystem path.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes left unencoded in `href`s: RFC 3986 unreserved characters and `/`.
const HREF_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Seconds from the epoch to 10000-01-01, the first instant an HTTP-date cannot show.
const HTTP_DATE_LIMIT: Duration = Duration::from_secs(253_402_300_800);

/// Binary size units above bytes.
const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// One entry of a listed directory, as read by the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name (a single path component).
    pub name: String,
    /// Whether the entry is, or (for a symlink) points to, a directory.
    pub is_dir: bool,
    /// Whether the entry itself is a symbolic link.
    pub is_symlink: bool,
    /// Size in bytes (ignored for directories).
    pub size: u64,
    /// Last modification time.
    pub modified: SystemTime,
}

/// Renders the listing page for `display_path` (the decoded request path, e.g. `/sub/`).
///
/// Sorts `entries` by name, case-insensitively. Directories link with a trailing `/`,
/// symlinks show as `name@`; a `../` link is added below the root.
pub fn render_listing(display_path: &str, entries: &mut [DirEntry]) -> String {
    entries.sort_by_cached_key(|e| (e.name.to_lowercase(), e.name.clone()));
    let title = format!("Directory listing for {}", html_escape(display_path));
    let mut out = String::with_capacity(256 + entries.len() * 160);
    // Writing into a `String` cannot fail, so the `fmt::Result`s below are ignored.
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(out, "<title>{title}</title>\n</head>\n<body>");
    let _ = writeln!(out, "<h1>{title}</h1>\n<hr>\n<ul>");
    if !display_path.is_empty() && display_path != "/" {
        out.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for entry in entries.iter() {
        push_entry(&mut out, entry);
    }
    out.push_str("</ul>\n<hr>\n</body>\n</html>\n");
    out
}

/// Escapes `& < > " '` for use in HTML text and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// Appends one `<li>` for `entry`.
fn push_entry(out: &mut String, entry: &DirEntry) {
    let mut link = entry.name.clone();
    if entry.is_dir {
        link.push('/');
    }
    let mut display = entry.name.clone();
    if entry.is_symlink {
        display.push('@');
    } else if entry.is_dir {
        display.push('/');
    }
    let size = if entry.is_dir {
        String::from("-")
    } else {
        human_size(entry.size)
    };
    let _ = writeln!(
        out,
        concat!(
            "<li><a href=\"{}\">{}</a> ",
            "<span class=\"size\">{}</span> <span class=\"date\">{}</span></li>",
        ),
        utf8_percent_encode(&link, HREF_KEEP),
        html_escape(&display),
        size,
        http_date(entry.modified),
    );
}

/// A size in bytes (`512 B`) or in binary units with one decimal (`1.5 KiB`).
fn human_size(size: u64) -> String {
    if size < 1024 {
        return format!("{size} B");
    }
    let size = u128::from(size);
    let mut divisor: u128 = 1024;
    let mut tenths = 0;
    let mut unit = "KiB";
    for candidate in UNITS {
        unit = candidate;
        // Tenths of the unit, rounded half up; move on while it would show 1024 or more.
        tenths = (size * 10 + divisor / 2) / divisor;
        if tenths < 10 * 1024 {
            break;
        }
        divisor *= 1024;
    }
    format!("{}.{} {unit}", tenths / 10, tenths % 10)
}

/// The HTTP-date of `time`, or `-` when it cannot be shown (before 1970 or after 9999).
fn http_date(time: SystemTime) -> String {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) if since < HTTP_DATE_LIMIT => httpdate::fmt_http_date(time),
        _ => String::from("-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, is_dir: bool, is_symlink: bool, size: u64) -> DirEntry {
        DirEntry {
            name: name.to_owned(),
            is_dir,
            is_symlink,
            size,
            modified: UNIX_EPOCH + Duration::from_secs(784_111_777),
        }
    }

    #[test]
    fn escape_all_five() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
        assert_eq!(html_escape("plain é"), "plain é");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(10 * 1024 * 1024 + 512 * 1024), "10.5 MiB");
        assert_eq!(human_size(3 * (1 << 30)), "3.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn dates() {
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(http_date(UNIX_EPOCH - Duration::from_secs(1)), "-");
        assert_eq!(http_date(UNIX_EPOCH + HTTP_DATE_LIMIT), "-");
        assert_eq!(
            http_date(UNIX_EPOCH + HTTP_DATE_LIMIT - Duration::from_secs(1)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }

    #[test]
    fn full_page() {
        let mut entries = vec![
            entry("b.txt", false, false, 1536),
            entry("A dir", true, false, 4096),
            entry("link", true, true, 0),
            entry(".hidden", false, false, 3),
        ];
        let page = render_listing("/sub/", &mut entries);
        let expected = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Directory listing for /sub/</title>\n</head>\n<body>\n\
<h1>Directory listing for /sub/</h1>\n<hr>\n<ul>\n\
<li><a href=\"../\">../</a></li>\n\
<li><a href=\".hidden\">.hidden</a> <span class=\"size\">3 B</span> <span class=\"date\">Sun, 06 Nov 1994 08:49:37 GMT</span></li>\n\
<li><a href=\"A%20dir/\">A dir/</a> <span class=\"size\">-</span> <span class=\"date\">Sun, 06 Nov 1994 08:49:37 GMT</span></li>\n\
<li><a href=\"b.txt\">b.txt</a> <span class=\"size\">1.5 KiB</span> <span class=\"date\">Sun, 06 Nov 1994 08:49:37 GMT</span></li>\n\
<li><a href=\"link/\">link@</a> <span class=\"size\">-</span> <span class=\"date\">Sun, 06 Nov 1994 08:49:37 GMT</span></li>\n\
</ul>\n<hr>\n</body>\n</html>\n";
        assert_eq!(page, expected);
        // Entries are left sorted for the caller.
        assert_eq!(entries[0].name, ".hidden");
        assert_eq!(entries[3].name, "link");
    }

    #[test]
    fn root_has_no_parent_link() {
        let page = render_listing("/", &mut []);
        assert!(!page.contains("../"));
        assert!(page.contains("<title>Directory listing for /</title>"));
        assert!(page.contains("<ul>\n</ul>"));
    }

    #[test]
    fn case_insensitive_sort() {
        let mut entries = vec![
            entry("beta", false, false, 1),
            entry("Alpha", false, false, 1),
            entry("alpha", false, false, 1),
            entry("Gamma", false, false, 1),
        ];
        render_listing("/", &mut entries);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Alpha", "alpha", "beta", "Gamma"]);
    }

    #[test]
    fn hostile_names_are_encoded_and_escaped() {
        let mut entries = vec![
            entry("<script>alert('x')</script>", false, false, 1),
            entry("a\"b&c", false, false, 1),
            entry("javascript:x", false, false, 1),
            entry("é #?%.txt", false, false, 1),
        ];
        let page = render_listing("/<b>&'\"/", &mut entries);
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("Directory listing for /&lt;b&gt;&amp;&#x27;&quot;/"));
        assert!(page.contains(
            "<a href=\"%3Cscript%3Ealert%28%27x%27%29%3C/script%3E\">\
&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</a>"
        ));
        assert!(page.contains("<a href=\"a%22b%26c\">a&quot;b&amp;c</a>"));
        assert!(page.contains("<a href=\"javascript%3Ax\">javascript:x</a>"));
        assert!(page.contains("<a href=\"%C3%A9%20%23%3F%25.txt\">é #?%.txt</a>"));
    }
}
