//! Dynamic routes (BEHAVIOUR.md: Dynamic routes): mask matching and the route table, the `args`
//! handed to handlers, Python-compatible JSON output, and a streaming `multipart/form-data` parser.
//! Everything here is pure: no I/O, no clock, bounded memory on untrusted input.

mod args;
mod json;
mod mask;
pub(crate) mod multipart;
pub(crate) mod route;
pub(crate) mod upload;

pub use args::Args;
pub use json::{json_compact, json_dumps, JsonError};
pub use mask::Mask;
pub(crate) use multipart::boundary_from_content_type;
pub use multipart::MultipartError;
pub use route::{render, Handler};
pub use upload::Upload;
