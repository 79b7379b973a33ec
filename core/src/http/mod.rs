//! The HTTP/1.x layer: head scanning and parsing, body framing, response writing.

pub(crate) mod body;
pub(crate) mod chunked;
pub(crate) mod error;
pub(crate) mod head;
pub(crate) mod qvalue;
pub(crate) mod response;
