//! Message body framing as one stepper both directions share: a request body read from a
//! client, a response body read from a proxy upstream.

use crate::http::chunked::ChunkedDecoder;
use crate::http::error::HttpError;
use crate::limits::Limits;

/// How a body ends, and how much of it is left.
#[derive(Debug)]
pub(crate) enum BodyReader {
    /// `Content-Length`: this many bytes are left.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(ChunkedDecoder),
    /// Until the peer closes (a response without framing, RFC 9112 §6.3 rule 8).
    UntilClose,
}

/// What one step produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BodyStep<'a> {
    /// Bytes of the input used.
    pub(crate) consumed: usize,
    /// Body data found (a slice of the input).
    pub(crate) data: &'a [u8],
    /// The body is complete.
    pub(crate) done: bool,
}

impl BodyReader {
    /// Reads from `input` until it yields data, runs out of input, or the body ends.
    /// Bytes after the end of the body are left unconsumed.
    pub(crate) fn step<'a>(
        &mut self,
        input: &'a [u8],
        limits: &Limits,
    ) -> Result<BodyStep<'a>, HttpError> {
        match self {
            Self::Length(left) => {
                let take = usize::try_from(*left).map_or(input.len(), |l| l.min(input.len()));
                *left -= take as u64;
                Ok(BodyStep {
                    consumed: take,
                    data: &input[..take],
                    done: *left == 0,
                })
            }
            Self::Chunked(decoder) => {
                let step = decoder.step(input, limits)?;
                Ok(BodyStep {
                    consumed: step.consumed,
                    data: step.data,
                    done: decoder.is_done(),
                })
            }
            Self::UntilClose => Ok(BodyStep {
                consumed: input.len(),
                data: input,
                done: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps `input` through `reader` in pieces of `piece` bytes; returns the body and
    /// the bytes used.
    fn read_all(mut reader: BodyReader, input: &[u8], piece: usize) -> (Vec<u8>, usize, bool) {
        let limits = Limits::default();
        let (mut body, mut used, mut done) = (Vec::new(), 0, false);
        let mut end = 0;
        while !done && used < input.len() {
            end = (end + piece).min(input.len()).max(used);
            let step = reader.step(&input[used..end], &limits).unwrap();
            body.extend_from_slice(step.data);
            used += step.consumed;
            done = step.done;
        }
        (body, used, done)
    }

    #[test]
    fn length_stops_at_its_end() {
        for piece in [1, 3, 100] {
            let (body, used, done) = read_all(BodyReader::Length(5), b"helloNEXT", piece);
            assert_eq!((body.as_slice(), used, done), (&b"hello"[..], 5, true));
        }
    }

    #[test]
    fn chunked_stops_at_its_end() {
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT";
        for piece in [1, 4, 100] {
            let reader = BodyReader::Chunked(ChunkedDecoder::default());
            let (body, used, done) = read_all(reader, input, piece);
            assert_eq!((body.as_slice(), used, done), (&b"abcde"[..], 20, true));
        }
    }

    #[test]
    fn until_close_takes_everything() {
        let (body, used, done) = read_all(BodyReader::UntilClose, b"all of it", 2);
        assert_eq!((body.as_slice(), used, done), (&b"all of it"[..], 9, false));
    }
}
