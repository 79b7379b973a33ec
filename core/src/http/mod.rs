//! The HTTP/1.x layer: head scanning and parsing, body framing, response writing.

pub(crate) mod body;
pub(crate) mod chunked;
pub mod error;
pub mod head;
pub(crate) mod qvalue;
pub mod response;
