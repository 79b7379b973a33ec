//! Log text as the original prints it, without any I/O: request log lines with elapsed time and
//! size (BEHAVIOUR.md: Logging › Request log lines), slow-request messages (BEHAVIOUR.md: Logging ›
//! Slow requests) and local timestamps. Request-controlled text is escaped so it cannot forge lines
//! or terminal escapes.

mod format;
mod record;

pub use format::{
    elapsed_string, escape_control, format_local_time, should_log, slow_request_finished,
    slow_request_started, RequestLogLine,
};
pub use record::{RequestLog, RequestRecord, SlowRequest};
