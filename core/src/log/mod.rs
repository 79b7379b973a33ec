//! Log text as the original prints it, without any I/O: request log lines with elapsed
//! time and size (spec 11.2), slow-request messages (spec 11.4) and local timestamps.
//! Request-controlled text is escaped so it cannot forge lines or terminal escapes.

mod format;
mod record;

pub use format::{
    elapsed_string, escape_control, format_local_time, should_log, size_string,
    slow_request_finished, slow_request_started, ClientLogLine, RequestLogLine,
};
pub use record::{RequestLog, RequestRecord, SlowRequest};
