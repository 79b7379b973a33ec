//! The chunked transfer coding decoder (RFC 9112 §7.1), strict about line endings.

use crate::http::error::HttpError;
use crate::limits::Limits;

/// Where the decoder is inside the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size { digits: u8, value: u64 },
    /// Whitespace after the size; only `;` may follow.
    SizeSpace { value: u64 },
    /// Inside chunk extensions, which are ignored.
    Extension { value: u64 },
    /// A CR ended the size line; LF must follow.
    SizeLf { value: u64 },
    /// Chunk data with this many bytes left.
    Data { left: u64 },
    /// After chunk data: CR expected.
    DataCr,
    /// After chunk data: LF expected.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line, which is checked and discarded.
    TrailerLine { colon: bool },
    /// A CR ended a trailer line; LF must follow.
    TrailerLf { empty: bool },
    /// The whole body has been decoded.
    Done,
}

/// Decodes a chunked body pushed in pieces. Trailer fields are validated and dropped, so a
/// trailer can never smuggle in framing fields.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    line_len: usize,
    trailer_len: usize,
}

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Step<'a> {
    /// Bytes of the input used by this step.
    pub(crate) consumed: usize,
    /// Body data found in this step (a slice of the input).
    pub(crate) data: &'a [u8],
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::Size {
                digits: 0,
                value: 0,
            },
            line_len: 0,
            trailer_len: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the terminating chunk and trailer section have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` until it yields data, runs out of input, or finishes.
    pub(crate) fn step<'a>(
        &mut self,
        input: &'a [u8],
        limits: &Limits,
    ) -> Result<Step<'a>, HttpError> {
        let mut pos = 0;
        while pos < input.len() {
            if let State::Data { left } = self.state {
                let take =
                    usize::try_from(left).map_or(input.len() - pos, |l| l.min(input.len() - pos));
                let data = &input[pos..pos + take];
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok(Step {
                    consumed: pos + take,
                    data,
                });
            }
            let byte = input[pos];
            pos += 1;
            self.advance(byte, limits)?;
            if self.state == State::Done {
                break;
            }
        }
        Ok(Step {
            consumed: pos,
            data: &[],
        })
    }

    /// Moves the framing state machine over one byte outside chunk data.
    fn advance(&mut self, byte: u8, limits: &Limits) -> Result<(), HttpError> {
        if matches!(
            self.state,
            State::Size { .. }
                | State::SizeSpace { .. }
                | State::Extension { .. }
                | State::SizeLf { .. }
        ) {
            self.line_len += 1;
            if self.line_len > limits.max_chunk_line {
                return Err(HttpError::BadChunk("chunk-size line too long"));
            }
        }
        if matches!(
            self.state,
            State::TrailerStart | State::TrailerLine { .. } | State::TrailerLf { .. }
        ) {
            self.trailer_len += 1;
            if self.trailer_len > limits.max_trailer_size {
                return Err(HttpError::BadChunk("trailer section too large"));
            }
        }
        self.state = match (self.state, byte) {
            (State::Size { digits, value }, b) if b.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return Err(HttpError::BadChunk("chunk size overflow"));
                }
                let nibble = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                State::Size {
                    digits: digits + 1,
                    value: (value << 4) | nibble,
                }
            }
            (State::Size { digits: 0, .. }, _) => {
                return Err(HttpError::BadChunk("missing chunk size"))
            }
            (State::Size { value, .. }, b'\r') => State::SizeLf { value },
            (State::Size { value, .. }, b';') => State::Extension { value },
            (State::Size { value, .. } | State::SizeSpace { value }, b' ' | b'\t') => {
                State::SizeSpace { value }
            }
            (State::SizeSpace { value }, b';') => State::Extension { value },
            (State::Extension { value }, b'\r') => State::SizeLf { value },
            (State::Extension { value }, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                State::Extension { value }
            }
            (State::SizeLf { value }, b'\n') => {
                self.line_len = 0;
                if value == 0 {
                    State::TrailerStart
                } else {
                    State::Data { left: value }
                }
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size {
                digits: 0,
                value: 0,
            },
            (State::DataCr | State::DataLf, _) => {
                return Err(HttpError::BadChunk("chunk data not followed by CRLF"))
            }
            (State::TrailerStart, b'\r') => State::TrailerLf { empty: true },
            (State::TrailerStart, b' ' | b'\t' | b':') => {
                return Err(HttpError::BadChunk("malformed trailer field"))
            }
            (State::TrailerStart, b) if is_tchar(b) => State::TrailerLine { colon: false },
            (State::TrailerLine { colon: false }, b) if is_tchar(b) => {
                State::TrailerLine { colon: false }
            }
            (State::TrailerLine { colon: false }, b':') => State::TrailerLine { colon: true },
            (State::TrailerLine { colon: true }, b'\r') => State::TrailerLf { empty: false },
            (State::TrailerLine { colon: true }, b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => {
                State::TrailerLine { colon: true }
            }
            (State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::TrailerLf { empty: false }, b'\n') => State::TrailerStart,
            (State::TrailerStart | State::TrailerLine { .. } | State::TrailerLf { .. }, _) => {
                return Err(HttpError::BadChunk("malformed trailer field"))
            }
            (State::Done, _) => State::Done,
            _ => return Err(HttpError::BadChunk("malformed chunk-size line")),
        };
        Ok(())
    }
}

/// A `tchar` of RFC 9110 §5.6.2, the characters of a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`decode`] reports when the input ends before the body does.
    const TRUNCATED: HttpError = HttpError::BadChunk("test input ended mid-body");

    /// Decodes `input` fed in pieces of `piece` bytes; returns the body or the error.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), HttpError> {
        let limits = Limits::default();
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut buf: Vec<u8> = Vec::new();
        while !decoder.is_done() {
            if fed < input.len() {
                let end = (fed + piece).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            } else if buf.is_empty() {
                return Err(TRUNCATED);
            }
            loop {
                let step = decoder.step(&buf, &limits)?;
                body.extend_from_slice(step.data);
                let consumed = step.consumed;
                buf.drain(..consumed);
                if consumed == 0 || decoder.is_done() {
                    break;
                }
            }
        }
        Ok((body, fed - buf.len()))
    }

    #[test]
    fn decodes_at_every_split() {
        let input = b"5;ext=1\r\nhello\r\n7 ; a=\"b\"\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in 1..input.len() {
            let (body, used) = decode(input, piece).unwrap();
            assert_eq!(body, b"hello, world");
            assert_eq!(used, input.len() - 4, "piece {piece}");
        }
    }

    #[test]
    fn hex_sizes_and_empty_body() {
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n", 64).unwrap().0,
            b"0123456789"
        );
        assert_eq!(decode(b"0\r\n\r\n", 64).unwrap().0, b"");
    }

    #[test]
    fn rejects_malformed_framing() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"0\r\n\r\r\n",
            b"0\r\nX-T 1\r\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\nX-T: 1\n\r\n",
        ] {
            assert!(
                matches!(decode(bad, 3), Err(HttpError::BadChunk(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn size_overflow_is_rejected() {
        assert!(decode(b"ffffffffffffffff\r\n", 64).is_err_and(|e| e == TRUNCATED));
        assert_eq!(
            decode(b"1ffffffffffffffff\r\n", 64),
            Err(HttpError::BadChunk("chunk size overflow"))
        );
        assert_eq!(
            decode(b"00000000000000000001\r\n", 64),
            Err(HttpError::BadChunk("chunk size overflow"))
        );
    }

    #[test]
    fn line_and_trailer_limits() {
        let limits = Limits::default();
        let long_ext = format!("1;{}\r\n", "a".repeat(limits.max_chunk_line));
        assert_eq!(
            decode(long_ext.as_bytes(), 64),
            Err(HttpError::BadChunk("chunk-size line too long"))
        );
        let trailers: String = (0..1000).map(|i| format!("X-{i}: v\r\n")).collect();
        let body = format!("0\r\n{trailers}\r\n");
        assert_eq!(
            decode(body.as_bytes(), 64),
            Err(HttpError::BadChunk("trailer section too large"))
        );
    }

    #[test]
    fn trailers_that_look_like_framing_are_dropped() {
        let input = b"3\r\nabc\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(decode(input, 5).unwrap(), (b"abc".to_vec(), input.len()));
    }
}
