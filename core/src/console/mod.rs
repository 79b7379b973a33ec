//! The interactive console as pure logic: registering commands, interpreting typed lines
//! (spec 9.2) and TAB completion (spec 9.3). Reading stdin, history and running the
//! handlers stay with the embedding crate.

mod commands;
mod completion;

pub use commands::{Builtin, CommandError, CommandSet, Completer, Outcome};
