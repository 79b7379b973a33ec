//! Streaming, bounded `multipart/form-data` push parser (spec 4.7).
//!
//! The body is pushed in arbitrary pieces with [`MultipartParser::feed`]; events come out as
//! soon as they are certain. Internally at most one header block (8 KiB) or one step of input
//! (10 KiB) plus a possible partial delimiter is buffered, whatever the size of a part.

use std::fmt;

use memchr::memmem;

/// Longest part header block (all lines of one part, line endings included).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header lines in one part.
pub const MAX_HEADER_LINES: usize = 32;
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
pub fn boundary_from_content_type(params: &str) -> Option<&str> {
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
    /// A part begins; `content_type` present means an uploaded file, absent a form field.
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
    /// A part header block longer than [`MAX_HEADER_BYTES`].
    HeadersTooLarge,
    /// A part with more than [`MAX_HEADER_LINES`] header lines.
    TooManyHeaders,
    /// A part header line without `:`.
    MalformedHeader {
        /// The line (lossy UTF-8).
        line: String,
    },
}

impl MultipartError {
    /// Status code to answer with: 413 for size limits, else 500 as the reference does.
    pub fn status(&self) -> u16 {
        match self {
            Self::PartTooLarge { .. } | Self::HeadersTooLarge | Self::TooManyHeaders => 413,
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
        let delimiter = memmem::Finder::new(&[b"\r\n", dash_boundary.as_slice()].concat())
            .into_owned();
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
                        let tail_start =
                            input.len().saturating_sub(self.delimiter.needle().len() - 1);
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
    let start = bytes.iter().position(|b| !is_space(*b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_space(*b)).map_or(start, |e| e + 1);
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
