//! Streaming, bounded `multipart/form-data` push parser (BEHAVIOUR.md: Dynamic routes › Request
//! bodies).
//!
//! The body is pushed in arbitrary pieces with [`MultipartParser::feed`]; events come out as
//! soon as they are certain. Internally at most an unfinished line or header block (8 KiB)
//! plus one 10 KiB step of input is buffered, whatever the size of a part.

use std::fmt;

use memchr::memmem;

/// Longest part header block (all lines of one part, line endings included).
pub(crate) const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines in one part.
pub(crate) const MAX_HEADER_LINES: usize = 32;
/// Input is processed in steps of this size (the reference's multipart read buffer).
const STEP: usize = 10 * 1024;
/// Longest boundary line, or rest of a delimiter line, before it is rejected.
const MAX_LINE: usize = 8 * 1024;
/// Bytes of offending input quoted in an error message.
const QUOTE_LIMIT: usize = 128;

/// Extracts the boundary from the parameters of a `multipart/form-data` Content-Type (the
/// text after the first `;`). The reference only accepts parameters *starting* with
/// `boundary=` and keeps quotes; we find the `boundary` parameter anywhere (name
/// case-insensitive) and strip surrounding double quotes. Empty boundaries give `None`.
pub(crate) fn boundary_from_content_type(params: &str) -> Option<&str> {
    params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

/// Something the parser recognised in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins; a `filename` or a `content_type` makes it an uploaded file, neither a
    /// text field.
    PartStart {
        /// Value of the `name` parameter of `Content-Disposition`.
        name: String,
        /// Value of the `filename` parameter, if any.
        filename: Option<String>,
        /// Value of the part's `Content-Type` header, if any.
        content_type: Option<String>,
    },
    /// The next bytes of the current part's content.
    Data(Vec<u8>),
    /// The current part is complete.
    PartEnd,
}

/// Why a multipart body was rejected; the messages are the reference's where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultipartError {
    /// A delimiter line was not `--<boundary>` (or `--<boundary>--`).
    ExpectedBoundary {
        /// Python-style bytes literal of the offending line (shortened).
        got: String,
    },
    /// The body ended before the closing delimiter.
    UnexpectedEof,
    /// A `Content-Disposition` header whose type is not `form-data`.
    UnknownContentDisposition {
        /// The header value.
        value: String,
    },
    /// A part without a `name` parameter.
    FieldNameNotSet,
    /// Non-whitespace bytes after the closing delimiter.
    ExpectedEof {
        /// Python-style bytes literal of the extra bytes (shortened).
        got: String,
    },
    /// A part's content exceeds the configured maximum.
    PartTooLarge {
        /// Bytes of the part seen so far (more than `max`).
        seen: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A part header block longer than `MAX_HEADER_BYTES` (8 KiB).
    HeadersTooLarge,
    /// A part with more than `MAX_HEADER_LINES` (32) header lines.
    TooManyHeaders,
    /// A part header line without `:`.
    MalformedHeader {
        /// The line (lossy UTF-8).
        line: String,
    },
    /// A text field (no filename, no `Content-Type`) whose bytes are not UTF-8: refused
    /// (400) rather than decoded lossily.
    FieldNotUtf8 {
        /// The field's name.
        name: String,
    },
}

impl MultipartError {
    /// Status code to answer with: 413 for size limits, 400 for a field that is not text,
    /// else 500 as the reference does.
    pub fn status(&self) -> u16 {
        match self {
            Self::PartTooLarge { .. } | Self::HeadersTooLarge | Self::TooManyHeaders => 413,
            Self::FieldNotUtf8 { .. } => 400,
            _ => 500,
        }
    }
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExpectedBoundary { got } => write!(f, "Expected boundary got: {got}"),
            Self::UnexpectedEof => f.write_str("Unexpected EOF"),
            Self::UnknownContentDisposition { value } => {
                write!(f, "Unknown content-disposition: {value}")
            }
            Self::FieldNameNotSet => f.write_str("field name not set"),
            Self::ExpectedEof { got } => write!(f, "Expected EOF got: {got}"),
            Self::PartTooLarge { seen, max } => {
                write!(f, "Uploaded file is too large! {seen} > {max}")
            }
            Self::HeadersTooLarge => write!(
                f,
                "multipart part headers are larger than {MAX_HEADER_BYTES} bytes"
            ),
            Self::TooManyHeaders => write!(
                f,
                "multipart part has more than {MAX_HEADER_LINES} header lines"
            ),
            Self::MalformedHeader { line } => write!(f, "invalid multipart header line: {line}"),
            Self::FieldNotUtf8 { name } => write!(
                f,
                "form field {name:?} is not UTF-8 text (send binary data as a file part, \
                 with a filename)"
            ),
        }
    }
}

impl std::error::Error for MultipartError {}

/// Push parser for one `multipart/form-data` body.
#[derive(Debug)]
pub struct MultipartParser {
    /// `--<boundary>`.
    dash_boundary: Vec<u8>,
    /// Finder for `\r\n--<boundary>`, the end of a part's content.
    delimiter: memmem::Finder<'static>,
    max_part_size: u64,
    state: State,
    /// Unprocessed input: a partial line, header block or possible partial delimiter.
    buf: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// Expecting the first line, `--<boundary>`.
    FirstLine,
    /// Reading a part's header lines.
    Headers(PartHead),
    /// Streaming a part's content; `seen` bytes emitted so far.
    Data { seen: u64 },
    /// Just after `\r\n--<boundary>`: `--` closes the body, a blank rest of line opens a part.
    AfterDelimiter,
    /// After the closing delimiter: only whitespace may follow.
    Epilogue,
    /// An error was reported; every later call repeats it.
    Failed(MultipartError),
}

/// Headers of the part being read.
#[derive(Debug, Default)]
struct PartHead {
    lines: usize,
    bytes: usize,
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<String>,
}

impl MultipartParser {
    /// A parser for a body delimited by `boundary`, rejecting parts larger than `max_part_size`.
    pub fn new(boundary: &str, max_part_size: u64) -> Self {
        let dash_boundary = [b"--", boundary.as_bytes()].concat();
        let delimiter =
            memmem::Finder::new(&[b"\r\n", dash_boundary.as_slice()].concat()).into_owned();
        Self {
            dash_boundary,
            delimiter,
            max_part_size,
            state: State::FirstLine,
            buf: Vec::new(),
        }
    }

    /// Consumes the next piece of the body, appending recognised events to `out`. After an
    /// error the events of this call are incomplete and the parser stays failed.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Event>) -> Result<(), MultipartError> {
        loop {
            if let State::Failed(err) = &self.state {
                return Err(err.clone());
            }
            let (step, rest) = data.split_at(data.len().min(STEP));
            data = rest;
            self.buf.extend_from_slice(step);
            if let Err(err) = self.process(out) {
                self.buf = Vec::new();
                self.state = State::Failed(err.clone());
                return Err(err);
            }
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    /// Declares the end of the body; fails unless the closing delimiter was seen.
    pub fn finish(&mut self) -> Result<(), MultipartError> {
        let result = match &self.state {
            State::Epilogue => Ok(()),
            State::Failed(err) => Err(err.clone()),
            State::FirstLine if trim(&self.buf) != self.dash_boundary => {
                Err(MultipartError::ExpectedBoundary {
                    got: bytes_repr(trim(&self.buf)),
                })
            }
            _ => Err(MultipartError::UnexpectedEof),
        };
        if let Err(err) = &result {
            self.buf = Vec::new();
            self.state = State::Failed(err.clone());
        }
        result
    }

    /// Runs the state machine over the buffer until it needs more input.
    fn process(&mut self, out: &mut Vec<Event>) -> Result<(), MultipartError> {
        let buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        let result = loop {
            match self.advance(buf.get(pos..).unwrap_or_default(), out) {
                Ok(0) => break Ok(()),
                Ok(consumed) => pos += consumed,
                Err(err) => break Err(err),
            }
        };
        self.buf = buf;
        self.buf.drain(..pos.min(self.buf.len()));
        result
    }

    /// One transition on `input`; returns the bytes consumed, 0 when more input is needed.
    fn advance(&mut self, input: &[u8], out: &mut Vec<Event>) -> Result<usize, MultipartError> {
        match &mut self.state {
            State::FirstLine => {
                let Some((line, consumed)) = take_line(input, MAX_LINE, |partial| {
                    MultipartError::ExpectedBoundary {
                        got: bytes_repr(trim(partial)),
                    }
                })?
                else {
                    return Ok(0);
                };
                if trim(line) != self.dash_boundary {
                    return Err(MultipartError::ExpectedBoundary {
                        got: bytes_repr(trim(line)),
                    });
                }
                self.state = State::Headers(PartHead::default());
                Ok(consumed)
            }
            State::Headers(head) => {
                let room = MAX_HEADER_BYTES.saturating_sub(head.bytes);
                let Some((line, consumed)) =
                    take_line(input, room, |_| MultipartError::HeadersTooLarge)?
                else {
                    return Ok(0);
                };
                head.bytes = head.bytes.saturating_add(consumed);
                let line = trim(line);
                if !line.is_empty() {
                    head.add_line(line)?;
                    return Ok(consumed);
                }
                let head = std::mem::take(head);
                out.push(Event::PartStart {
                    name: head.name.ok_or(MultipartError::FieldNameNotSet)?,
                    filename: head.filename,
                    content_type: head.content_type,
                });
                self.state = State::Data { seen: 0 };
                Ok(consumed)
            }
            State::Data { seen } => {
                let found = self.delimiter.find(input);
                let (data_len, consumed) = match found {
                    Some(at) => (at, at + self.delimiter.needle().len()),
                    None => {
                        // Hold back a possible partial delimiter: it starts at a `\r` in the
                        // last `len - 1` bytes.
                        let tail_start = input
                            .len()
                            .saturating_sub(self.delimiter.needle().len() - 1);
                        let tail = input.get(tail_start..).unwrap_or_default();
                        let keep = memchr::memchr(b'\r', tail).map_or(0, |cr| tail.len() - cr);
                        let len = input.len() - keep;
                        (len, len)
                    }
                };
                let total = seen.saturating_add(data_len as u64);
                if total > self.max_part_size {
                    return Err(MultipartError::PartTooLarge {
                        seen: total,
                        max: self.max_part_size,
                    });
                }
                *seen = total;
                if let Some(data) = input.get(..data_len).filter(|d| !d.is_empty()) {
                    out.push(Event::Data(data.to_vec()));
                }
                if found.is_some() {
                    out.push(Event::PartEnd);
                    self.state = State::AfterDelimiter;
                }
                Ok(consumed)
            }
            State::AfterDelimiter => {
                if input.starts_with(b"--") {
                    self.state = State::Epilogue;
                    return Ok(2);
                }
                if input == b"-" {
                    return Ok(0);
                }
                let dash_boundary = &self.dash_boundary;
                let Some((line, consumed)) = take_line(input, MAX_LINE, |partial| {
                    MultipartError::ExpectedBoundary {
                        got: bytes_repr(&[dash_boundary.as_slice(), trim(partial)].concat()),
                    }
                })?
                else {
                    return Ok(0);
                };
                let rest = trim(line);
                if !rest.is_empty() {
                    return Err(MultipartError::ExpectedBoundary {
                        got: bytes_repr(&[dash_boundary.as_slice(), rest].concat()),
                    });
                }
                self.state = State::Headers(PartHead::default());
                Ok(consumed)
            }
            State::Epilogue => match input.iter().position(|b| !is_space(*b)) {
                Some(at) => Err(MultipartError::ExpectedEof {
                    got: bytes_repr(input.get(at..).unwrap_or_default()),
                }),
                None => Ok(input.len()),
            },
            State::Failed(err) => Err(err.clone()),
        }
    }
}

impl PartHead {
    /// Records one non-empty, trimmed header line.
    fn add_line(&mut self, line: &[u8]) -> Result<(), MultipartError> {
        self.lines += 1;
        if self.lines > MAX_HEADER_LINES {
            return Err(MultipartError::TooManyHeaders);
        }
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(MultipartError::MalformedHeader {
                line: line.into_owned(),
            });
        };
        let value = value.trim();
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            let mut params = split_params(value).into_iter();
            let kind = params.next().unwrap_or_default();
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err(MultipartError::UnknownContentDisposition {
                    value: value.to_owned(),
                });
            }
            for param in params {
                let Some((key, raw)) = param.split_once('=') else {
                    continue;
                };
                let key = key.trim();
                if key.eq_ignore_ascii_case("name") {
                    self.name = Some(unquote(raw.trim()));
                } else if key.eq_ignore_ascii_case("filename") {
                    self.filename = Some(unquote(raw.trim()));
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value.to_owned());
        }
        Ok(())
    }
}

/// Splits a header value at `;` outside double-quoted strings.
fn split_params(value: &str) -> Vec<&str> {
    let mut params = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                params.push(value.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    params.push(value.get(start..).unwrap_or_default());
    params
}

/// Value of a parameter: a quoted string loses its quotes and backslash escapes.
fn unquote(raw: &str) -> String {
    let Some(inner) = raw.strip_prefix('"') else {
        return raw.to_owned();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

/// Splits off one `\n`-terminated line (without the `\n`) and the bytes it spans. `None` if no
/// full line is buffered yet; `too_long` builds the error once more than `max` bytes are
/// buffered without a line end.
fn take_line(
    input: &[u8],
    max: usize,
    too_long: impl FnOnce(&[u8]) -> MultipartError,
) -> Result<Option<(&[u8], usize)>, MultipartError> {
    match memchr::memchr(b'\n', input) {
        Some(end) if end < max => Ok(input.get(..end).map(|line| (line, end + 1))),
        Some(_) => Err(too_long(input.get(..max).unwrap_or(input))),
        None if input.len() > max => Err(too_long(input.get(..max).unwrap_or(input))),
        None => Ok(None),
    }
}

/// Python's `bytes.isspace` set.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Python's `bytes.strip()`.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_space(*b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(*b))
        .map_or(start, |e| e + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Python `repr()` of a bytes value, e.g. `b'--x\r'`, cut after [`QUOTE_LIMIT`] bytes (`...`).
fn bytes_repr(bytes: &[u8]) -> String {
    let shown = bytes.get(..QUOTE_LIMIT).unwrap_or(bytes);
    let quote = if shown.contains(&b'\'') && !shown.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from("b");
    out.push(quote);
    for &b in shown {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    if shown.len() < bytes.len() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "XyZ";

    /// File content full of delimiter look-alikes, NULs and partial boundaries.
    fn tricky_content() -> Vec<u8> {
        let mut content = b"\0\x01\r\n-- \r\n--X\r\n--Xy\r--XyZ\n\r\n-\0\r\r\n\r\n--".to_vec();
        content.extend((0..=255u8).rev());
        content.extend_from_slice(b"\r\n--XY\r\n--xyz\r");
        content
    }

    fn sample_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue \xc3\xa9\r\n",
        );
        body.extend_from_slice(
            b"--XyZ\r\ncontent-disposition: form-data; filename=\"a;b.bin\"; name=\"file\"\r\n",
        );
        body.extend_from_slice(b"CONTENT-TYPE: application/octet-stream\r\nX-Other: 1\r\n\r\n");
        body.extend_from_slice(&tricky_content());
        body.extend_from_slice(b"\r\n--XyZ\r\nContent-Disposition: form-data; name=empty\r\n\r\n");
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    }

    fn sample_events() -> Vec<Event> {
        vec![
            Event::PartStart {
                name: "field".into(),
                filename: None,
                content_type: None,
            },
            Event::Data("value é".as_bytes().to_vec()),
            Event::PartEnd,
            Event::PartStart {
                name: "file".into(),
                filename: Some("a;b.bin".into()),
                content_type: Some("application/octet-stream".into()),
            },
            Event::Data(tricky_content()),
            Event::PartEnd,
            Event::PartStart {
                name: "empty".into(),
                filename: None,
                content_type: None,
            },
            Event::PartEnd,
        ]
    }

    /// Merges adjacent `Data` events so results of different splits compare equal.
    fn merged(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for event in events {
            match (out.last_mut(), event) {
                (Some(Event::Data(prev)), Event::Data(more)) => prev.extend(more),
                (_, event) => out.push(event),
            }
        }
        out
    }

    /// Feeds `body` in pieces of the given sizes (cycled) and finishes.
    fn run(body: &[u8], max: u64, sizes: &[usize]) -> (Vec<Event>, Result<(), MultipartError>) {
        let mut parser = MultipartParser::new(BOUNDARY, max);
        let mut events = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = sizes
                .next()
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            if let Err(err) = parser.feed(piece, &mut events) {
                return (merged(events), Err(err));
            }
            assert!(parser.buf.len() <= MAX_HEADER_BYTES + STEP, "buffer grew");
        }
        let result = parser.finish();
        (merged(events), result)
    }

    fn error_of(body: &[u8], max: u64) -> MultipartError {
        match run(body, max, &[body.len()]).1 {
            Err(err) => err,
            Ok(()) => panic!("body accepted: {:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn whole_body() {
        assert_eq!(
            run(&sample_body(), 1 << 20, &[usize::MAX]),
            (sample_events(), Ok(()))
        );
    }

    #[test]
    fn every_split_point() {
        let body = sample_body();
        for split in 1..body.len() {
            let (events, result) = run(&body, 1 << 20, &[split, body.len()]);
            assert_eq!(result, Ok(()), "split {split}");
            assert_eq!(events, sample_events(), "split {split}");
        }
    }

    #[test]
    fn byte_by_byte_and_odd_chunks() {
        let body = sample_body();
        for sizes in [&[1][..], &[2], &[3, 1, 7], &[5, 11], &[13]] {
            assert_eq!(
                run(&body, 1 << 20, sizes),
                (sample_events(), Ok(())),
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn large_part_streams_with_bounded_buffer() {
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"big\"\r\n".to_vec();
        body.extend_from_slice(b"Content-Type: x/y\r\n\r\n");
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n--XyZ--");
        for sizes in [&[body.len()][..], &[4096], &[65_537, 3]] {
            let (events, result) = run(&body, 300_000, sizes);
            assert_eq!(result, Ok(()));
            assert_eq!(events.get(1), Some(&Event::Data(content.clone())));
            assert_eq!(events.len(), 3);
        }
    }

    #[test]
    fn part_too_large() {
        let part = |len: usize| {
            let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n".to_vec();
            body.extend_from_slice(b"Content-Type: a/b\r\n\r\n");
            body.extend_from_slice(&vec![b'a'; len]);
            body.extend_from_slice(b"\r\n--XyZ--\r\n");
            body
        };
        let err = error_of(&part(100), 50);
        assert_eq!(err, MultipartError::PartTooLarge { seen: 100, max: 50 });
        assert_eq!(err.to_string(), "Uploaded file is too large! 100 > 50");
        assert_eq!(err.status(), 413);
        assert_eq!(
            error_of(&part(60), 50).to_string(),
            "Uploaded file is too large! 60 > 50"
        );
        assert_eq!(run(&part(50), 50, &[usize::MAX]).1, Ok(()));
        // Streaming: the error comes as soon as the limit is passed, with seen > max.
        for size in [1, 7, 64] {
            match run(&part(5000), 1000, &[size]).1 {
                Err(MultipartError::PartTooLarge { seen, max: 1000 }) => {
                    assert!(seen > 1000 && seen <= 1000 + size as u64, "{seen}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Fields count too.
        let field =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n0123456789\r\n--XyZ--";
        assert_eq!(
            error_of(field, 9),
            MultipartError::PartTooLarge { seen: 10, max: 9 }
        );
    }

    #[test]
    fn first_line_must_be_boundary() {
        let err = error_of(b"--other\r\n", 10);
        assert_eq!(err.to_string(), "Expected boundary got: b'--other'");
        assert_eq!(err.status(), 500);
        assert_eq!(
            error_of(b"--\"XyZ\"\r\n", 10).to_string(),
            "Expected boundary got: b'--\"XyZ\"'"
        );
        assert_eq!(
            error_of(b"--XyZ--\r\n", 10).to_string(),
            "Expected boundary got: b'--XyZ--'"
        );
        assert_eq!(
            error_of(b"--Xy", 10).to_string(),
            "Expected boundary got: b'--Xy'"
        );
        assert_eq!(error_of(b"", 10).to_string(), "Expected boundary got: b''");
        // Surrounding whitespace is trimmed, as Python's strip() does.
        let body = b"  --XyZ \nContent-Disposition: form-data; name=a\n\nv\r\n--XyZ--";
        assert_eq!(run(body, 10, &[1]).1, Ok(()));
    }

    #[test]
    fn first_line_length_is_bounded() {
        let long = vec![b'-'; MAX_LINE + 10];
        match run(&long, 10, &[1000]).1 {
            Err(MultipartError::ExpectedBoundary { got }) => {
                assert!(got.ends_with("'..."), "{got}");
                assert!(got.len() < QUOTE_LIMIT + 10);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_bodies_are_unexpected_eof() {
        let body = sample_body();
        let end = body.len() - b"--\r\n".len();
        for cut in b"--XyZ".len()..end {
            let (_, result) = run(body.get(..cut).unwrap_or_default(), 1 << 20, &[cut]);
            assert_eq!(result, Err(MultipartError::UnexpectedEof), "cut {cut}");
        }
        for cut in 1..b"--XyZ".len() {
            let (_, result) = run(body.get(..cut).unwrap_or_default(), 1 << 20, &[cut]);
            assert!(
                matches!(result, Err(MultipartError::ExpectedBoundary { .. })),
                "cut {cut}"
            );
        }
        assert_eq!(MultipartError::UnexpectedEof.to_string(), "Unexpected EOF");
    }

    #[test]
    fn closing_delimiter_variants() {
        let base = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ--".to_vec();
        for tail in [&b""[..], b"\r\n", b"\r\n\r\n \t\n", b"  "] {
            let body = [base.as_slice(), tail].concat();
            assert_eq!(run(&body, 10, &[1]).1, Ok(()), "{tail:?}");
        }
        let body = [base.as_slice(), b"\r\ngarbage"].concat();
        let err = error_of(&body, 10);
        assert_eq!(err.to_string(), "Expected EOF got: b'garbage'");
        let body = [base.as_slice(), b"\r\n'\x00"].concat();
        assert_eq!(
            error_of(&body, 10).to_string(),
            "Expected EOF got: b\"'\\x00\""
        );
    }

    #[test]
    fn junk_after_delimiter() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZjunk\r\n";
        assert_eq!(
            error_of(body, 10).to_string(),
            "Expected boundary got: b'--XyZjunk'"
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ-x\r\n";
        assert_eq!(
            error_of(body, 10).to_string(),
            "Expected boundary got: b'--XyZ-x'"
        );
        // Whitespace after a delimiter is fine.
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--XyZ \t\r\n\
            Content-Disposition: form-data; name=b\r\n\r\nw\r\n--XyZ--";
        let (events, result) = run(body, 10, &[1]);
        assert_eq!(result, Ok(()));
        assert_eq!(events.len(), 6);
    }

    #[test]
    fn content_disposition_rules() {
        let body = b"--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--XyZ--";
        assert_eq!(
            error_of(body, 10).to_string(),
            "Unknown content-disposition: attachment; name=\"a\""
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nv\r\n--XyZ--";
        let err = error_of(body, 10);
        assert_eq!(err, MultipartError::FieldNameNotSet);
        assert_eq!(err.to_string(), "field name not set");
        let body = b"--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--";
        assert_eq!(error_of(body, 10), MultipartError::FieldNameNotSet);
        // The QUIRK is fixed: `filename="…"` first does not shadow `name`.
        let body = b"--XyZ\r\nContent-Disposition: Form-Data; filename=\"f.txt\"; NAME=\"real \\\"one\\\"\"\r\n\r\nv\r\n--XyZ--";
        let (events, result) = run(body, 10, &[3]);
        assert_eq!(result, Ok(()));
        assert_eq!(
            events.first(),
            Some(&Event::PartStart {
                name: "real \"one\"".into(),
                filename: Some("f.txt".into()),
                content_type: None,
            })
        );
    }

    #[test]
    fn header_limits() {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n".to_vec();
        for _ in 0..MAX_HEADER_LINES {
            body.extend_from_slice(b"X: y\r\n");
        }
        body.extend_from_slice(b"\r\nv\r\n--XyZ--");
        let err = error_of(&body, 10);
        assert_eq!(err, MultipartError::TooManyHeaders);
        assert_eq!(err.status(), 413);

        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n".to_vec();
        for _ in 1..MAX_HEADER_LINES {
            body.extend_from_slice(b"X: y\r\n");
        }
        body.extend_from_slice(b"\r\nv\r\n--XyZ--");
        assert_eq!(run(&body, 10, &[1]).1, Ok(()));

        let mut body = b"--XyZ\r\nX-Long: ".to_vec();
        body.extend_from_slice(&vec![b'a'; MAX_HEADER_BYTES]);
        for sizes in [&[body.len()][..], &[1], &[1000]] {
            assert_eq!(
                run(&body, 10, sizes).1,
                Err(MultipartError::HeadersTooLarge)
            );
        }
        let mut body = b"--XyZ\r\n".to_vec();
        while body.len() < MAX_HEADER_BYTES + 100 {
            body.extend_from_slice(b"X-Many: 0123456789012345678901234567890123456789\r\n");
        }
        assert!(matches!(
            run(&body, 10, &[77]).1,
            Err(MultipartError::HeadersTooLarge | MultipartError::TooManyHeaders)
        ));
    }

    #[test]
    fn malformed_header_line() {
        let body = b"--XyZ\r\nno colon here\r\n\r\n";
        let err = error_of(body, 10);
        assert_eq!(
            err,
            MultipartError::MalformedHeader {
                line: "no colon here".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid multipart header line: no colon here"
        );
    }

    #[test]
    fn failed_parser_stays_failed() {
        let mut parser = MultipartParser::new(BOUNDARY, 10);
        let mut events = Vec::new();
        let err = parser.feed(b"nope\r\n", &mut events);
        assert!(err.is_err());
        assert_eq!(parser.feed(b"--XyZ\r\n", &mut events), err);
        assert_eq!(parser.finish(), err);
        assert!(events.is_empty());
    }

    #[test]
    fn finish_is_idempotent_after_success() {
        let mut parser = MultipartParser::new(BOUNDARY, 10);
        let mut events = Vec::new();
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--XyZ--";
        assert_eq!(parser.feed(body, &mut events), Ok(()));
        assert_eq!(parser.finish(), Ok(()));
        assert_eq!(parser.finish(), Ok(()));
        assert_eq!(parser.feed(b"\r\n", &mut events), Ok(()));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn boundary_parameter() {
        assert_eq!(boundary_from_content_type("boundary=abc"), Some("abc"));
        assert_eq!(boundary_from_content_type(" boundary = abc "), Some("abc"));
        assert_eq!(boundary_from_content_type("boundary=\"a b\""), Some("a b"));
        assert_eq!(
            boundary_from_content_type("charset=x; Boundary=y"),
            Some("y")
        );
        assert_eq!(
            boundary_from_content_type("boundary=abc; charset=x"),
            Some("abc")
        );
        assert_eq!(
            boundary_from_content_type("boundary=\"unterminated"),
            Some("\"unterminated")
        );
        assert_eq!(boundary_from_content_type("boundary="), None);
        assert_eq!(boundary_from_content_type("boundary=\"\""), None);
        assert_eq!(boundary_from_content_type("charset=x"), None);
        assert_eq!(boundary_from_content_type(""), None);
        assert_eq!(boundary_from_content_type("xboundary=a"), None);
    }

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(
            bytes_repr(b"a\\b\t\n\r\x7f\xff'"),
            "b\"a\\\\b\\t\\n\\r\\x7f\\xff'\""
        );
        assert_eq!(bytes_repr(b"'\""), "b'\\'\"'");
        let long = vec![b'z'; QUOTE_LIMIT + 1];
        assert_eq!(
            bytes_repr(&long),
            format!("b'{}'...", "z".repeat(QUOTE_LIMIT))
        );
    }

    /// Deterministic xorshift64 generator for the fuzz loop.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn fuzz_never_panics_and_stays_bounded() {
        const PIECES: [&[u8]; 14] = [
            b"--XyZ",
            b"\r\n",
            b"\n",
            b"\r",
            b"-",
            b"--",
            b"Content-Disposition: form-data; name=\"a\"",
            b"Content-Type: x",
            b"; filename=\"",
            b"\"",
            b":",
            b"\0",
            b" ",
            b"\xff\xfe",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let valid = sample_body();
        let mut successes = 0;
        for round in 0..20_000 {
            let body: Vec<u8> = if round % 2 == 0 {
                // Structured noise.
                let mut body = Vec::new();
                for _ in 0..rng.below(60) {
                    match rng.below(4) {
                        0 => body.push(rng.next() as u8),
                        _ => body.extend_from_slice(PIECES[rng.below(PIECES.len())]),
                    }
                }
                body
            } else {
                // A valid body with a few random byte mutations, insertions and cuts.
                let mut body = valid.clone();
                for _ in 0..=rng.below(4) {
                    if body.is_empty() {
                        break;
                    }
                    let at = rng.below(body.len());
                    match rng.below(3) {
                        0 => body[at] = rng.next() as u8,
                        1 => body.insert(at, PIECES[rng.below(PIECES.len())][0]),
                        _ => body.truncate(at),
                    }
                }
                body
            };
            let sizes = [1 + rng.below(40), 1 + rng.below(3), 1 + rng.below(2000)];
            let max = rng.below(400) as u64;
            let (events, result) = run(&body, max, &sizes);
            let (whole_events, whole_result) = run(&body, max, &[body.len()]);
            // Split points never change which error is reported.
            assert_eq!(
                result.as_ref().map_err(std::mem::discriminant),
                whole_result.as_ref().map_err(std::mem::discriminant),
                "{body:?}"
            );
            if result.is_ok() {
                successes += 1;
                // A completed parse is well-formed: balanced part events.
                let starts = events
                    .iter()
                    .filter(|e| matches!(e, Event::PartStart { .. }))
                    .count();
                let ends = events.iter().filter(|e| **e == Event::PartEnd).count();
                assert_eq!(starts, ends, "{body:?}");
                assert_eq!(whole_events, events);
            }
        }
        assert!(successes > 100, "only {successes} valid bodies");
    }
}
