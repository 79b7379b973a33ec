//! The encoders: bytes in, one coding's stream out, into memory.

use std::io::{self, Write};

use super::{Coding, Levels};

/// Brotli's window (log2 of bytes): 4 MiB, the encoder's default.
const BROTLI_WINDOW: u32 = 22;

/// Brotli's internal buffer, in bytes.
const BROTLI_BUFFER: usize = 16 * 1024;

/// A compressor for one coding, fed in pieces, writing into a growing buffer.
pub(super) struct Encoder(Inner);

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let coding = match self.0 {
            Inner::Gzip(_) => Coding::Gzip,
            Inner::Br(_) => Coding::Br,
            Inner::Zstd(_) => Coding::Zstd,
        };
        f.debug_tuple("Encoder").field(&coding).finish()
    }
}

impl Encoder {
    /// An encoder for `coding` at the level `levels` gives it, for about `len` input bytes.
    pub(super) fn new(coding: Coding, levels: &Levels, len: usize) -> io::Result<Self> {
        // Compressed text is usually under a third of its size.
        let out = Vec::with_capacity(len / 3 + 64);
        Ok(Self(match coding {
            Coding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(levels.gzip),
            )),
            Coding::Br => Inner::Br(Box::new(brotli::CompressorWriter::new(
                out,
                BROTLI_BUFFER,
                levels.br,
                BROTLI_WINDOW,
            ))),
            Coding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, levels.zstd)?;
                encoder.set_pledged_src_size(Some(len as u64))?;
                Inner::Zstd(encoder)
            }
        }))
    }

    /// Compresses the next piece.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Inner::Gzip(e) => e.write_all(data),
            Inner::Br(e) => e.write_all(data),
            Inner::Zstd(e) => e.write_all(data),
        }
    }

    /// Ends the stream and returns it.
    pub(super) fn finish(self) -> io::Result<Vec<u8>> {
        match self.0 {
            Inner::Gzip(e) => e.finish(),
            Inner::Br(mut e) => {
                e.flush()?;
                Ok(e.into_inner())
            }
            Inner::Zstd(e) => e.finish(),
        }
    }
}

/// `data` compressed whole with `coding`.
pub(crate) fn encode(coding: Coding, levels: &Levels, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = Encoder::new(coding, levels, data.len())?;
    encoder.write(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map(drop),
            Coding::Br => brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .map(drop),
            Coding::Zstd => zstd::stream::copy_decode(data, &mut out),
        }
        .unwrap();
        out
    }

    #[test]
    fn every_coding_round_trips_in_pieces_and_whole() {
        let text: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("{{\"id\": {i}, \"name\": \"item {i}\"}},\n").into_bytes())
            .collect();
        for coding in Coding::ALL {
            let whole = encode(coding, &Levels::default(), &text).unwrap();
            assert!(whole.len() * 5 < text.len(), "{coding:?} compresses");
            assert_eq!(decode(coding, &whole), text, "{coding:?}");
            let mut pieces = Encoder::new(coding, &Levels::default(), text.len()).unwrap();
            for piece in text.chunks(7_777) {
                pieces.write(piece).unwrap();
            }
            assert_eq!(decode(coding, &pieces.finish().unwrap()), text);
            assert_eq!(
                decode(coding, &encode(coding, &Levels::default(), b"").unwrap()),
                b""
            );
        }
    }
}
