//! The directory listing (BEHAVIOUR.md: Static files › Listings): its order
//! (`?sort=name|size|date&order=asc|desc`), its format (an HTML page, or JSON for
//! `Accept: application/json`), and both renderings.
//!
//! Everything shown comes from the arguments: the caller passes the decoded request path
//! and the entries it already filtered down to what a GET would serve, never a filesystem
//! path.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fs::DirEntry;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::http::qvalue::parse_qvalue;

/// Bytes left unencoded in `href`s: RFC 3986 unreserved characters and `/`.
const HREF_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Seconds from the epoch to 10000-01-01, the first instant a four-digit year cannot show.
const DATE_LIMIT: Duration = Duration::from_secs(253_402_300_800);

/// Binary size units above bytes.
const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// The page's stylesheet: system fonts, light and dark palettes, a narrow layout that
/// drops the time of day on a phone.
const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1f2328;--bg:#fff;--muted:#59636e;--line:#d1d9e0;\
--link:#0969da;--hover:#f6f8fa}\n\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;\
--line:#3d444d;--link:#4493f8;--hover:#151b23}}\n\
body{margin:0 auto;max-width:64rem;padding:1rem;color:var(--fg);background:var(--bg);\
font:15px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\n\
h1{font-size:1.3rem;font-weight:600;margin:.5rem 0 1rem;overflow-wrap:anywhere}\n\
h1 a{margin:0 .1em;text-decoration:underline;text-decoration-color:var(--line);text-underline-offset:.25em}\n\
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}\n\
table{width:100%;border-collapse:collapse;table-layout:fixed}\n\
th,td{padding:.45rem .6rem;border-bottom:1px solid var(--line);text-align:left;\
overflow-wrap:anywhere}\n\
th{font-size:.85rem;font-weight:600}th a{color:var(--muted)}\n\
tbody tr:hover{background:var(--hover)}\n\
.size,.date{text-align:right;white-space:nowrap;color:var(--muted);\
font-variant-numeric:tabular-nums}\n\
.size{width:6rem}.date{width:10.5rem}\n\
.dir a{font-weight:600}\n\
@media (max-width:40rem){body{padding:.5rem}.size{width:4.5rem}.date{width:6.2rem}\
.time{display:none}th,td{padding:.45rem .3rem}}\n";

/// What a listing is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum SortKey {
    /// The name, case-insensitively (`sort=name`, the default).
    #[default]
    Name,
    /// The size in bytes (`sort=size`); folders, which have none, by name.
    Size,
    /// The modification time (`sort=date`).
    Date,
}

/// How a listing is ordered: folders first, then by `key`, ties by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SortOrder {
    /// What entries are compared by.
    pub key: SortKey,
    /// Largest, latest or last name first (`order=desc`); folders still come first.
    pub descending: bool,
}

/// A listing query that names an unknown order; answered with 400.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum QueryError {
    /// `sort=` is not `name`, `size` or `date`.
    Sort(String),
    /// `order=` is not `asc` or `desc`.
    Order(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sort(v) => write!(f, "sort must be name, size or date, not \"{v}\""),
            Self::Order(v) => write!(f, "order must be asc or desc, not \"{v}\""),
        }
    }
}

impl std::error::Error for QueryError {}

impl SortOrder {
    /// Reads `sort` and `order` from a raw query string; other parameters are ignored and
    /// the last occurrence of each wins.
    pub(super) fn from_query(query: Option<&str>) -> Result<Self, QueryError> {
        let mut order = Self::default();
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("sort", "name") => order.key = SortKey::Name,
                ("sort", "size") => order.key = SortKey::Size,
                ("sort", "date") => order.key = SortKey::Date,
                ("sort", other) => return Err(QueryError::Sort(other.to_owned())),
                ("order", "asc") => order.descending = false,
                ("order", "desc") => order.descending = true,
                ("order", other) => return Err(QueryError::Order(other.to_owned())),
                _ => {}
            }
        }
        Ok(order)
    }

    /// Sorts `entries` in this order.
    pub(super) fn sort(self, entries: &mut [DirEntry]) {
        entries.sort_by_cached_key(|e| {
            let size = match self.key {
                SortKey::Size if !e.is_dir => e.size,
                _ => 0,
            };
            let date = match self.key {
                SortKey::Date => e.modified,
                _ => UNIX_EPOCH,
            };
            (!e.is_dir, size, date, e.name.to_lowercase(), e.name.clone())
        });
        if self.descending {
            // The whole key reversed, within each group: folders stay first.
            let folders = entries.iter().take_while(|e| e.is_dir).count();
            let (dirs, files) = entries.split_at_mut(folders);
            dirs.reverse();
            files.reverse();
        }
    }

    /// The query that orders by `key`: the other direction when `key` is the current
    /// key, else ascending.
    fn toggle(self, key: SortKey) -> String {
        let descending = key == self.key && !self.descending;
        let sort = match key {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Date => "date",
        };
        let order = if descending { "desc" } else { "asc" };
        format!("?sort={sort}&amp;order={order}")
    }
}

/// What a listing is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListingFormat {
    /// The HTML page (browsers, `*/*`).
    Html,
    /// A JSON array of entries.
    Json,
}

impl ListingFormat {
    /// JSON when the `Accept` field ranks `application/json` above `text/html`, by
    /// q-value and then by how specific the matching range is.
    pub(super) fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Html;
        };
        if quality(accept, "application", "json") > quality(accept, "text", "html") {
            Self::Json
        } else {
            Self::Html
        }
    }

    /// The `Content-Type` of this format.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Html => "text/html; charset=utf-8",
            Self::Json => "application/json",
        }
    }

    /// The body listing `entries` (already sorted) of the folder at `display_path`.
    /// `served_above` says, for the root and each folder down to the parent, whether a GET
    /// of it is served: only those become links.
    pub(super) fn render(
        self,
        display_path: &str,
        served_above: &[bool],
        entries: &[DirEntry],
        order: SortOrder,
    ) -> Vec<u8> {
        match self {
            Self::Html => render_html(display_path, served_above, entries, order).into_bytes(),
            Self::Json => render_json(entries).into_bytes(),
        }
    }
}

/// The q-value (in thousandths) `accept` gives `kind/sub`: that of the most specific
/// matching range, 0 when none matches.
fn quality(accept: &str, kind: &str, sub: &str) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        let Some((k, s)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (k.trim(), s.trim()) {
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = params
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1000), |(_, value)| parse_qvalue(value.trim()));
        // A malformed q-value drops the range, as in `Accept-Encoding`.
        let Some(q) = q else { continue };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// Renders the listing page for `display_path` (the decoded request path, e.g. `/sub/`)
/// with `entries` in the order given.
///
/// The title and heading read `Directory listing for <path>` as in the original; each
/// folder of the heading's path that `served_above` marks links to that folder
/// (breadcrumbs), and a `../` row links to the parent when it is served. Column headers
/// re-sort the page.
fn render_html(
    display_path: &str,
    served_above: &[bool],
    entries: &[DirEntry],
    order: SortOrder,
) -> String {
    let mut out = String::with_capacity(2048 + entries.len() * 256);
    // Writing into a `String` cannot fail, so the `fmt::Result`s below are ignored.
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"color-scheme\" content=\"light dark\">\n",
    ));
    let _ = writeln!(
        out,
        "<title>Directory listing for {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>",
        html_escape(display_path)
    );
    out.push_str("<h1>Directory listing for ");
    let folders: Vec<&str> = display_path.split('/').filter(|s| !s.is_empty()).collect();
    let served = |depth: usize| served_above.get(depth).copied().unwrap_or(false);
    push_breadcrumbs(&mut out, &folders, served);
    out.push_str("</h1>\n<table>\n<thead><tr>");
    for (key, label, class) in [
        (SortKey::Name, "Name", ""),
        (SortKey::Size, "Size", " class=\"size\""),
        (SortKey::Date, "Modified", " class=\"date\""),
    ] {
        let (aria, arrow) = match (key == order.key, order.descending) {
            (false, _) => ("", ""),
            (true, false) => (" aria-sort=\"ascending\"", " ▲"),
            (true, true) => (" aria-sort=\"descending\"", " ▼"),
        };
        let _ = write!(
            out,
            "<th{class}{aria}><a href=\"{}\">{label}{arrow}</a></th>",
            order.toggle(key)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    if folders.len().checked_sub(1).is_some_and(served) {
        out.push_str(concat!(
            "<tr class=\"up\"><td><a href=\"../\">../</a></td>",
            "<td class=\"size\"></td><td class=\"date\"></td></tr>\n"
        ));
    }
    for entry in entries {
        push_row(&mut out, entry);
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

/// Appends `/` and each of `folders` (the path below the root) followed by `/`; the
/// root and each folder `served` at its depth (0 is the root) link to themselves
/// relatively, the last one (the listed folder) always. Separators stay outside the links
/// so that each crumb reads as its own link.
fn push_breadcrumbs(out: &mut String, folders: &[&str], served: impl Fn(usize) -> bool) {
    let link = |depth: usize| {
        let up = folders.len() - depth;
        if up == 0 {
            Some(String::from("./"))
        } else {
            served(depth).then(|| "../".repeat(up))
        }
    };
    match link(0) {
        Some(href) => {
            let _ = write!(out, "<a href=\"{href}\">/</a>");
        }
        None => out.push('/'),
    }
    for (index, folder) in folders.iter().enumerate() {
        let name = html_escape(folder);
        match link(index + 1) {
            Some(href) => {
                let _ = write!(out, "<a href=\"{href}\">{name}</a>/");
            }
            None => {
                let _ = write!(out, "{name}/");
            }
        }
    }
}

/// Appends one table row for `entry`.
fn push_row(out: &mut String, entry: &DirEntry) {
    let mut link = entry.name.clone();
    let mut display = entry.name.clone();
    if entry.is_dir {
        link.push('/');
    }
    if entry.is_symlink {
        display.push('@');
    } else if entry.is_dir {
        display.push('/');
    }
    let class = if entry.is_dir { "dir" } else { "file" };
    let _ = write!(
        out,
        "<tr class=\"{class}\"><td><a href=\"{}\">{}</a></td>",
        utf8_percent_encode(&link, HREF_KEEP),
        html_escape(&display),
    );
    if entry.is_dir {
        out.push_str("<td class=\"size\">-</td>");
    } else {
        let _ = write!(
            out,
            "<td class=\"size\" title=\"{} bytes\">{}</td>",
            entry.size,
            human_size(entry.size)
        );
    }
    match civil(entry.modified) {
        Some(t) => {
            let _ = writeln!(
                out,
                concat!(
                    "<td class=\"date\"><time datetime=\"{}\">{:04}-{:02}-{:02}",
                    "<span class=\"time\"> {:02}:{:02}</span></time></td></tr>"
                ),
                t, t.year, t.month, t.day, t.hour, t.minute
            );
        }
        None => out.push_str("<td class=\"date\">-</td></tr>\n"),
    }
}

/// The JSON array of `entries`: `{"name", "type": "file"|"dir", "size", "modified"}`,
/// `size` null for folders, `modified` in RFC 3339 (UTC) or null when out of range.
fn render_json(entries: &[DirEntry]) -> String {
    let array: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "type": if e.is_dir { "dir" } else { "file" },
                "size": if e.is_dir { None } else { Some(e.size) },
                "modified": civil(e.modified).map(|t| t.to_string()),
            })
        })
        .collect();
    Value::Array(array).to_string()
}

/// Escapes `& < > " '` for use in HTML text and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
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

/// A UTC date and time to the second; displays as RFC 3339 (`2020-01-01T00:00:00Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
}

impl fmt::Display for Civil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The UTC calendar time of `time`, or `None` before 1970 or after 9999.
fn civil(time: SystemTime) -> Option<Civil> {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .ok()
        .filter(|d| *d < DATE_LIMIT)?
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
    // `civil_from_days`), shifted to 0000-03-01 so that every number stays unsigned.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    Some(Civil {
        year,
        month,
        day,
        hour: rest / 3600,
        minute: rest % 3600 / 60,
        second: rest % 60,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, is_dir: bool, size: u64, secs: u64) -> DirEntry {
        DirEntry {
            name: name.to_owned(),
            is_dir,
            is_symlink: false,
            size,
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn names(entries: &[DirEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    fn sorted(query: &str, entries: &mut [DirEntry]) -> Vec<String> {
        SortOrder::from_query(Some(query)).unwrap().sort(entries);
        names(entries).into_iter().map(str::to_owned).collect()
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
    fn rfc3339_dates() {
        let at = |secs: u64| civil(UNIX_EPOCH + Duration::from_secs(secs)).map(|c| c.to_string());
        assert_eq!(at(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(at(784_111_777).as_deref(), Some("1994-11-06T08:49:37Z"));
        assert_eq!(at(951_782_400).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(at(1_577_836_799).as_deref(), Some("2019-12-31T23:59:59Z"));
        assert_eq!(at(4_107_542_400).as_deref(), Some("2100-03-01T00:00:00Z"));
        assert_eq!(
            at(DATE_LIMIT.as_secs() - 1).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(at(DATE_LIMIT.as_secs()), None);
        assert_eq!(civil(UNIX_EPOCH - Duration::from_secs(1)), None);
    }

    #[test]
    fn queries() {
        let parse = |q| SortOrder::from_query(q);
        assert_eq!(parse(None), Ok(SortOrder::default()));
        assert_eq!(parse(Some("")), Ok(SortOrder::default()));
        assert_eq!(
            parse(Some("v=3&sort=size&order=desc")),
            Ok(SortOrder {
                key: SortKey::Size,
                descending: true
            })
        );
        assert_eq!(
            parse(Some("sort=size&sort=date&order=desc&order=asc")),
            Ok(SortOrder {
                key: SortKey::Date,
                descending: false
            })
        );
        assert_eq!(
            parse(Some("sort=Size")),
            Err(QueryError::Sort("Size".into()))
        );
        assert_eq!(parse(Some("sort")), Err(QueryError::Sort(String::new())));
        assert_eq!(parse(Some("order=up")), Err(QueryError::Order("up".into())));
        assert_eq!(
            QueryError::Sort("x".into()).to_string(),
            "sort must be name, size or date, not \"x\""
        );
    }

    #[test]
    fn folders_first_in_both_orders() {
        let mut entries = vec![
            entry("b.txt", false, 30, 3),
            entry("Zdir", true, 4096, 1),
            entry("a.txt", false, 10, 2),
            entry("adir", true, 4096, 5),
            entry("C.txt", false, 20, 1),
            entry("d.txt", false, 20, 9),
        ];
        assert_eq!(
            sorted("", &mut entries),
            ["adir", "Zdir", "a.txt", "b.txt", "C.txt", "d.txt"]
        );
        assert_eq!(
            sorted("order=desc", &mut entries),
            ["Zdir", "adir", "d.txt", "C.txt", "b.txt", "a.txt"]
        );
        assert_eq!(
            sorted("sort=size", &mut entries),
            ["adir", "Zdir", "a.txt", "C.txt", "d.txt", "b.txt"]
        );
        assert_eq!(
            sorted("sort=size&order=desc", &mut entries),
            ["Zdir", "adir", "b.txt", "d.txt", "C.txt", "a.txt"]
        );
        assert_eq!(
            sorted("sort=date", &mut entries),
            ["Zdir", "adir", "C.txt", "a.txt", "b.txt", "d.txt"]
        );
        assert_eq!(
            sorted("sort=date&order=desc", &mut entries),
            ["adir", "Zdir", "d.txt", "b.txt", "a.txt", "C.txt"]
        );
    }

    #[test]
    fn names_sort_case_insensitively() {
        let mut entries = vec![
            entry("beta", false, 1, 0),
            entry("Alpha", false, 1, 0),
            entry("alpha", false, 1, 0),
            entry("Gamma", false, 1, 0),
        ];
        assert_eq!(
            sorted("", &mut entries),
            ["Alpha", "alpha", "beta", "Gamma"]
        );
        assert_eq!(
            sorted("order=desc", &mut entries),
            ["Gamma", "beta", "alpha", "Alpha"]
        );
    }

    #[test]
    fn negotiation() {
        let format = |accept| ListingFormat::negotiate(accept);
        assert_eq!(format(None), ListingFormat::Html);
        assert_eq!(format(Some("*/*")), ListingFormat::Html);
        assert_eq!(format(Some("application/json")), ListingFormat::Json);
        assert_eq!(format(Some("Application/JSON; q=0.9")), ListingFormat::Json);
        assert_eq!(format(Some("application/*")), ListingFormat::Json);
        assert_eq!(
            format(Some("application/json, */*;q=0.1")),
            ListingFormat::Json
        );
        assert_eq!(
            format(Some(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            )),
            ListingFormat::Html
        );
        assert_eq!(
            format(Some("text/html;q=0.5, application/json")),
            ListingFormat::Json
        );
        assert_eq!(
            format(Some("application/json;q=0.5, text/html")),
            ListingFormat::Html
        );
        assert_eq!(format(Some("application/json;q=0")), ListingFormat::Html);
        assert_eq!(
            format(Some("application/json;q=2, text/plain")),
            ListingFormat::Html,
            "a malformed q-value drops its range"
        );
        assert_eq!(
            format(Some("application/json;q=x, */*;q=0.5")),
            ListingFormat::Html
        );
    }

    #[test]
    fn json_shape() {
        let mut link = entry("l", true, 7, 0);
        link.is_symlink = true;
        let entries = [
            entry("d", true, 4096, 951_782_400),
            link,
            entry("<x> \"q\".txt", false, 5, 1_577_836_800),
            DirEntry {
                modified: UNIX_EPOCH - Duration::from_secs(1),
                ..entry("old", false, 0, 0)
            },
        ];
        let value: Value = serde_json::from_str(&render_json(&entries)).unwrap();
        assert_eq!(
            value,
            json!([
                {"name": "d", "type": "dir", "size": null, "modified": "2000-02-29T00:00:00Z"},
                {"name": "l", "type": "dir", "size": null, "modified": "1970-01-01T00:00:00Z"},
                {"name": "<x> \"q\".txt", "type": "file", "size": 5,
                 "modified": "2020-01-01T00:00:00Z"},
                {"name": "old", "type": "file", "size": 0, "modified": null},
            ])
        );
        assert_eq!(render_json(&[]), "[]");
    }

    #[test]
    fn page_rows() {
        let mut link = entry("link", true, 0, 784_111_777);
        link.is_symlink = true;
        let entries = [
            entry("A dir", true, 4096, 784_111_777),
            link,
            entry("b.txt", false, 1536, 784_111_777),
        ];
        let page = render_html("/sub/", &[true], &entries, SortOrder::default());
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n"));
        assert!(page.contains("<meta name=\"viewport\""));
        assert!(page.contains("prefers-color-scheme:dark"));
        assert!(page.contains("<title>Directory listing for /sub/</title>"));
        assert!(page.contains(
            "<h1>Directory listing for <a href=\"../\">/</a><a href=\"./\">sub</a>/</h1>"
        ));
        let rows: Vec<&str> = page.lines().filter(|l| l.starts_with("<tr ")).collect();
        assert_eq!(
            rows,
            [
                "<tr class=\"up\"><td><a href=\"../\">../</a></td>\
                 <td class=\"size\"></td><td class=\"date\"></td></tr>",
                "<tr class=\"dir\"><td><a href=\"A%20dir/\">A dir/</a></td>\
                 <td class=\"size\">-</td><td class=\"date\"><time datetime=\"1994-11-06T08:49:37Z\">\
                 1994-11-06<span class=\"time\"> 08:49</span></time></td></tr>",
                "<tr class=\"dir\"><td><a href=\"link/\">link@</a></td>\
                 <td class=\"size\">-</td><td class=\"date\"><time datetime=\"1994-11-06T08:49:37Z\">\
                 1994-11-06<span class=\"time\"> 08:49</span></time></td></tr>",
                "<tr class=\"file\"><td><a href=\"b.txt\">b.txt</a></td>\
                 <td class=\"size\" title=\"1536 bytes\">1.5 KiB</td><td class=\"date\">\
                 <time datetime=\"1994-11-06T08:49:37Z\">\
                 1994-11-06<span class=\"time\"> 08:49</span></time></td></tr>",
            ]
        );
        assert!(page.ends_with("</tbody>\n</table>\n</body>\n</html>\n"));
    }

    #[test]
    fn headers_toggle_the_order() {
        let page = render_html("/", &[], &[], SortOrder::default());
        assert!(page.contains(
            "<thead><tr><th aria-sort=\"ascending\"><a href=\"?sort=name&amp;order=desc\">\
             Name ▲</a></th><th class=\"size\"><a href=\"?sort=size&amp;order=asc\">Size</a></th>\
             <th class=\"date\"><a href=\"?sort=date&amp;order=asc\">Modified</a></th></tr></thead>"
        ));
        let order = SortOrder {
            key: SortKey::Date,
            descending: true,
        };
        let page = render_html("/", &[], &[], order);
        assert!(page.contains(
            "<th class=\"date\" aria-sort=\"descending\">\
             <a href=\"?sort=date&amp;order=asc\">Modified ▼</a></th>"
        ));
        assert!(page.contains("<a href=\"?sort=name&amp;order=asc\">Name</a>"));
    }

    #[test]
    fn root_has_no_parent_link() {
        let page = render_html("/", &[], &[], SortOrder::default());
        assert!(!page.contains("../"));
        assert!(page.contains("<title>Directory listing for /</title>"));
        assert!(page.contains("<h1>Directory listing for <a href=\"./\">/</a></h1>"));
        assert!(page.contains("<tbody>\n</tbody>"));
    }

    #[test]
    fn breadcrumbs_climb_one_level_each() {
        let page = render_html("/a/b c/<d>/", &[true; 3], &[], SortOrder::default());
        assert!(page.contains(
            "<h1>Directory listing for <a href=\"../../../\">/</a><a href=\"../../\">a</a>/\
             <a href=\"../\">b c</a>/<a href=\"./\">&lt;d&gt;</a>/</h1>"
        ));
        assert!(page.contains("<tr class=\"up\"><td><a href=\"../\">../</a>"));
        // Folders a GET would not serve (an unbound root, say) are not links.
        let page = render_html(
            "/a/b c/<d>/",
            &[false, true, false],
            &[],
            SortOrder::default(),
        );
        assert!(page.contains(
            "<h1>Directory listing for /<a href=\"../../\">a</a>/b c/<a href=\"./\">&lt;d&gt;</a>/</h1>"
        ));
        assert!(!page.contains("class=\"up\""), "no parent row: {page}");
    }

    #[test]
    fn hostile_names_are_encoded_and_escaped() {
        let entries = [
            entry("<script>alert('x')</script>", false, 1, 0),
            entry("a\"b&c", false, 1, 0),
            entry("javascript:x", false, 1, 0),
            entry("é #?%.txt", false, 1, 0),
        ];
        let page = render_html("/<b>&'\"/", &[true], &entries, SortOrder::default());
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("<title>Directory listing for /&lt;b&gt;&amp;&#x27;&quot;/</title>"));
        assert!(page.contains(
            "<a href=\"%3Cscript%3Ealert%28%27x%27%29%3C/script%3E\">\
&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</a>"
        ));
        assert!(page.contains("<a href=\"a%22b%26c\">a&quot;b&amp;c</a>"));
        assert!(page.contains("<a href=\"javascript%3Ax\">javascript:x</a>"));
        assert!(page.contains("<a href=\"%C3%A9%20%23%3F%25.txt\">é #?%.txt</a>"));
    }
}
