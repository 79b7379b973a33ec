//! Multipart bodies parsed as they arrive: fields kept in memory, files kept in memory up to
//! a threshold and spilled to temporary files beyond it, so an upload never has to fit in
//! RAM. Temporary files are removed when the last handle to the upload is dropped.

pub(crate) mod multipart;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use self::multipart::{Event, MultipartParser};
use crate::fs::{FileSystem, TempFile};
use crate::http::error::HttpError;

pub use self::multipart::MultipartError;

/// One uploaded file of a multipart body.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The file name the client gave, if any.
    pub filename: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: String,
    /// Size in bytes.
    pub len: u64,
    content: Content,
}

/// Where an upload's bytes are.
#[derive(Debug, Clone)]
enum Content {
    Memory(Vec<u8>),
    Spilled(Arc<dyn TempFile>),
}

impl Upload {
    /// An upload held in memory.
    pub fn in_memory(filename: Option<String>, content_type: String, data: Vec<u8>) -> Self {
        Self {
            filename,
            content_type,
            len: data.len() as u64,
            content: Content::Memory(data),
        }
    }

    /// The content: borrowed when in memory, read from the temporary file when spilled.
    pub fn bytes(&self) -> io::Result<Cow<'_, [u8]>> {
        match &self.content {
            Content::Memory(data) => Ok(Cow::Borrowed(data)),
            Content::Spilled(file) => file.read_all().map(Cow::Owned),
        }
    }

    /// Whether the content went to a temporary file (it outgrew `Limits::upload_memory`).
    pub fn is_spilled(&self) -> bool {
        matches!(self.content, Content::Spilled(_))
    }

    /// The temporary file holding a spilled upload (removed once the upload is dropped).
    pub fn path(&self) -> Option<&Path> {
        match &self.content {
            Content::Memory(_) => None,
            Content::Spilled(file) => file.path(),
        }
    }
}

impl PartialEq for Upload {
    fn eq(&self, other: &Self) -> bool {
        self.filename == other.filename
            && self.content_type == other.content_type
            && self.len == other.len
            && match (&self.content, &other.content) {
                (Content::Memory(a), Content::Memory(b)) => a == b,
                (Content::Spilled(a), Content::Spilled(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Serialize for Upload {
    /// The description of the file, not its content.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Upload", 3)?;
        s.serialize_field("filename", &self.filename)?;
        s.serialize_field("content_type", &self.content_type)?;
        s.serialize_field("len", &self.len)?;
        s.end()
    }
}

/// Why a multipart body was refused.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// Malformed or over a size limit (413 for the limits, 400 otherwise).
    Multipart(MultipartError),
    /// A temporary file could not be written: 507 when the disk is full, else 500.
    Storage(io::Error),
}

impl From<UploadError> for HttpError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Multipart(e) if e.status() == 413 => Self::UploadTooLarge(e.to_string()),
            UploadError::Multipart(e) => Self::BadUpload(e.to_string()),
            UploadError::Storage(e) if e.kind() == io::ErrorKind::StorageFull => {
                Self::InsufficientStorage
            }
            UploadError::Storage(e) => Self::Internal(format!("cannot store upload: {e}")),
        }
    }
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Multipart(e) => e.fmt(f),
            Self::Storage(e) => write!(f, "cannot store upload: {e}"),
        }
    }
}

/// A parsed multipart body: its text fields and its files.
#[derive(Debug)]
pub(crate) struct Multipart {
    pub(crate) fields: Map<String, Value>,
    pub(crate) files: BTreeMap<String, Upload>,
}

/// The `Content-Type` of a file part that named none (RFC 7578 section 4.4 asks senders
/// to label file data they cannot type this way).
const UNTYPED_FILE: &str = "application/octet-stream";

/// The part being read.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    memory: Vec<u8>,
    spilled: Option<Box<dyn TempFile>>,
    len: u64,
}

impl Part {
    /// A part with a filename is a file whatever its type (RFC 7578 section 4.2), and so
    /// is one with a `Content-Type` (the original's rule); the rest are text fields.
    fn is_file(&self) -> bool {
        self.filename.is_some() || self.content_type.is_some()
    }
}

/// How much of a multipart body the parser takes at once: the original's read size.
const READ_BLOCK: usize = 10 * 1024;

/// Parses a multipart body pushed in pieces (BEHAVIOUR.md: Dynamic routes › Request bodies),
/// spilling files larger than `spill_at` bytes to temporary files of `fs`.
pub(crate) struct Collector {
    parser: MultipartParser,
    /// Body bytes of the current [`READ_BLOCK`], not yet parsed.
    block: Vec<u8>,
    events: Vec<Event>,
    part: Option<Part>,
    fields: Map<String, Value>,
    files: BTreeMap<String, Upload>,
    spill_at: usize,
    fs: Arc<dyn FileSystem>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl Collector {
    pub(crate) fn new(
        boundary: &str,
        max_part_size: u64,
        spill_at: usize,
        fs: Arc<dyn FileSystem>,
    ) -> Self {
        Self {
            parser: MultipartParser::new(boundary, max_part_size),
            block: Vec::with_capacity(READ_BLOCK),
            events: Vec::new(),
            part: None,
            fields: Map::new(),
            files: BTreeMap::new(),
            spill_at,
            fs,
        }
    }

    /// Takes the next piece of the body. The parser gets it in whole [`READ_BLOCK`]s
    /// counted from the body's start, as the original reads, so a too-large part is
    /// reported with the same `<seen> > <max>` figures however the bytes arrived.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), UploadError> {
        while !data.is_empty() {
            let take = (READ_BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == READ_BLOCK {
                self.parse_block()?;
            }
        }
        Ok(())
    }

    /// Hands the parser the block gathered so far.
    fn parse_block(&mut self) -> Result<(), UploadError> {
        let block = std::mem::take(&mut self.block);
        self.parser
            .feed(&block, &mut self.events)
            .map_err(UploadError::Multipart)?;
        self.block = block;
        self.block.clear();
        let events = std::mem::take(&mut self.events);
        for event in events {
            self.apply(event)?;
        }
        Ok(())
    }

    /// The body ended: the fields and files, or why the body was refused.
    pub(crate) fn finish(mut self) -> Result<Multipart, UploadError> {
        self.parse_block()?;
        self.parser.finish().map_err(UploadError::Multipart)?;
        Ok(Multipart {
            fields: self.fields,
            files: self.files,
        })
    }

    fn apply(&mut self, event: Event) -> Result<(), UploadError> {
        match event {
            Event::PartStart {
                name,
                filename,
                content_type,
            } => {
                self.part = Some(Part {
                    name,
                    filename,
                    content_type,
                    memory: Vec::new(),
                    spilled: None,
                    len: 0,
                });
            }
            Event::Data(data) => {
                let Some(part) = self.part.as_mut() else {
                    return Ok(());
                };
                part.len += data.len() as u64;
                if let Some(file) = part.spilled.as_mut() {
                    file.write_all(&data).map_err(UploadError::Storage)?;
                } else if part.is_file() && part.memory.len() + data.len() > self.spill_at {
                    let mut file = self.fs.create_temp().map_err(UploadError::Storage)?;
                    file.write_all(&part.memory).map_err(UploadError::Storage)?;
                    file.write_all(&data).map_err(UploadError::Storage)?;
                    part.memory = Vec::new();
                    part.spilled = Some(file);
                } else {
                    part.memory.extend_from_slice(&data);
                }
            }
            Event::PartEnd => {
                let Some(part) = self.part.take() else {
                    return Ok(());
                };
                if !part.is_file() {
                    let text = String::from_utf8(part.memory).map_err(|_| {
                        UploadError::Multipart(MultipartError::FieldNotUtf8 {
                            name: part.name.clone(),
                        })
                    })?;
                    self.fields.insert(part.name, Value::String(text));
                    return Ok(());
                }
                let content = match part.spilled {
                    Some(file) => Content::Spilled(Arc::from(file)),
                    None => Content::Memory(part.memory),
                };
                let upload = Upload {
                    filename: part.filename,
                    content_type: part.content_type.unwrap_or_else(|| UNTYPED_FILE.into()),
                    len: part.len,
                    content,
                };
                self.files.insert(part.name, upload);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::MemoryFs;

    fn body(file: &[u8]) -> Vec<u8> {
        let mut body =
            b"--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhi\r\n--B\r\n".to_vec();
        body.extend_from_slice(
            b"Content-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n",
        );
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--B--\r\n");
        body
    }

    #[test]
    fn small_files_stay_in_memory_large_ones_spill_and_vanish() {
        let fs = Arc::new(MemoryFs::new());
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut collector = Collector::new("B", 1 << 20, 4096, fs.clone());
        for piece in body(&content).chunks(777) {
            collector.feed(piece).unwrap();
        }
        let Multipart { fields, files } = collector.finish().unwrap();
        assert_eq!(fields["t"], "hi");
        let upload = &files["f"];
        assert_eq!(upload.len, 100_000);
        assert!(upload.is_spilled(), "spilled past 4096 bytes");
        assert_eq!(upload.bytes().unwrap().as_ref(), &content[..]);
        assert_eq!(fs.live_temp_files(), 1);
        drop(files);
        assert_eq!(
            fs.live_temp_files(),
            0,
            "the temporary file is removed with the upload"
        );

        let mut collector = Collector::new("B", 1 << 20, 4096, fs.clone());
        collector.feed(&body(b"tiny\0bytes")).unwrap();
        let files = collector.finish().unwrap().files;
        assert!(!files["f"].is_spilled());
        assert_eq!(files["f"].bytes().unwrap().as_ref(), b"tiny\0bytes");
    }

    /// One part named `f` with `headers` (after `Content-Disposition: form-data; name="f"`
    /// and its `extra` parameters) and `data`.
    fn one_part(extra: &str, headers: &str, data: &[u8]) -> Vec<u8> {
        let mut body =
            format!("--B\r\nContent-Disposition: form-data; name=\"f\"{extra}\r\n{headers}\r\n")
                .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n--B--\r\n");
        body
    }

    fn collect(body: &[u8], spill_at: usize) -> Result<Multipart, UploadError> {
        let mut collector = Collector::new("B", 1 << 20, spill_at, Arc::new(MemoryFs::new()));
        collector.feed(body)?;
        collector.finish()
    }

    #[test]
    fn a_part_with_a_filename_is_a_file_whatever_its_type() {
        // What Python `requests` sends: a filename and no Content-Type.
        let raw = b"\xff\xfe\x00A";
        let parsed = collect(&one_part("; filename=\"b.bin\"", "", raw), 4096).unwrap();
        assert!(parsed.fields.is_empty());
        let upload = &parsed.files["f"];
        assert_eq!(upload.bytes().unwrap().as_ref(), raw, "not a byte lost");
        assert_eq!(upload.filename.as_deref(), Some("b.bin"));
        assert_eq!(upload.content_type, "application/octet-stream");
        // Typed parts stay files, with or without a filename (the original's rule).
        let typed = collect(&one_part("", "Content-Type: image/png\r\n", raw), 4096).unwrap();
        assert_eq!(typed.files["f"].content_type, "image/png");
        assert_eq!(typed.files["f"].filename, None);
        // An untyped file spills like any other.
        let big = vec![0xffu8; 10_000];
        let parsed = collect(&one_part("; filename=\"big\"", "", &big), 4096).unwrap();
        assert!(parsed.files["f"].is_spilled());
        assert_eq!(parsed.files["f"].bytes().unwrap().as_ref(), &big[..]);
    }

    #[test]
    fn a_text_field_that_is_not_utf8_is_400() {
        let err = collect(&one_part("", "", b"\xff\xfe\x00A"), 4096).unwrap_err();
        let refusal = HttpError::from(err);
        assert_eq!(refusal.status(), 400);
        let reason = refusal.to_string();
        assert!(reason.contains("\"f\" is not UTF-8"), "{reason}");
        assert!(!reason.contains('\u{fffd}'));
        // UTF-8 text, including NUL and multi-byte characters, arrives as it was sent.
        let parsed = collect(&one_part("", "", "a\0é€😀".as_bytes()), 4096).unwrap();
        assert_eq!(parsed.fields["f"], "a\0é€😀");
    }

    #[test]
    fn a_full_disk_is_507_and_leaves_no_file() {
        let fs = Arc::new(MemoryFs::new().with_temp_quota(10_000));
        let mut collector = Collector::new("B", 1 << 20, 1024, fs.clone());
        let err = collector.feed(&body(&[7u8; 50_000])).unwrap_err();
        assert_eq!(HttpError::from(err), HttpError::InsufficientStorage);
        drop(collector);
        assert_eq!(fs.live_temp_files(), 0);
    }

    #[test]
    fn too_large_parts_are_413() {
        let fs = Arc::new(MemoryFs::new());
        let mut collector = Collector::new("B", 50, 1024, fs);
        let err = (collector.feed(&body(&[1u8; 100])))
            .and_then(move |()| collector.finish().map(drop))
            .unwrap_err();
        let refusal = HttpError::from(err);
        assert_eq!(refusal.status(), 413);
        assert_eq!(refusal.to_string(), "Uploaded file is too large! 100 > 50");
    }

    #[test]
    fn a_too_large_part_is_reported_alike_however_the_body_arrives() {
        // Parts of 30 KiB against a 20 KiB limit: the figure is the part's bytes in the
        // 10 KiB block that crossed the limit, whether the body came whole or byte-wise.
        let data = body(&[1u8; 30 * 1024]);
        let refusal = |pieces: &mut dyn Iterator<Item = &[u8]>| {
            let mut collector = Collector::new("B", 20 * 1024, 1 << 20, Arc::new(MemoryFs::new()));
            for piece in pieces {
                if let Err(e) = collector.feed(piece) {
                    return HttpError::from(e).to_string();
                }
            }
            HttpError::from(collector.finish().unwrap_err()).to_string()
        };
        let whole = refusal(&mut std::iter::once(&data[..]));
        assert!(whole.starts_with("Uploaded file is too large! "), "{whole}");
        for size in [1, 7, 4096, 10 * 1024 + 1] {
            assert_eq!(refusal(&mut data.chunks(size)), whole, "pieces of {size}");
        }
    }
}
