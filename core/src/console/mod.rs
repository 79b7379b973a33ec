//! The interactive console as pure logic: registering commands, interpreting typed lines
//! (BEHAVIOUR.md: Command loop) and TAB completion (BEHAVIOUR.md: Command loop). Reading stdin,
//! history and running the handlers stay with the embedding crate.

mod commands;
mod completion;

pub use commands::{Builtin, CommandError, CommandSet, Completer, Outcome};
