//! Dynamic routes (BEHAVIOUR.md: Dynamic routes): mask matching and the route table, the `args`
//! handed to handlers, and the route; with them, from modules of their own, the
//! Python-compatible JSON text and the uploads of multipart bodies. Everything here is pure:
//! no I/O, no clock, bounded memory on untrusted input.

mod args;
mod mask;
pub(crate) mod route;

pub use crate::json::{json_compact, json_dumps, JsonError};
pub use crate::upload::{MultipartError, Upload};
pub use args::Args;
pub use mask::Mask;
pub use route::{render, Handler};
