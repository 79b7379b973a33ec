//! What a handler answers with: a value turned into a response ([`JsonReply`],
//! [`TextReply`], [`Custom`] for status, type and fields) or an [`Abort`] error page.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use quick_server_core::dynamic::{json_dumps, render, Args, Handler};
use quick_server_core::store::StoreError;
use quick_server_core::{HttpError, Request, Response};
use serde::Serialize;

/// Stops a handler with an error page: the original's `PreventDefaultResponse`.
///
/// Return it as a handler's (or middleware's, or worker's) error: the answer is the
/// standard error page for `status`, with `message` as its reason phrase and text.
///
/// ```
/// use quick_server::{Abort, QuickServer};
///
/// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
/// server.json_get("/api/item/", Some(1), |_req, args| {
///     let id: u32 = args
///         .paths
///         .first()
///         .and_then(|id| id.parse().ok())
///         .ok_or_else(|| Abort::new(400, "the id is a number"))?;
///     Ok(serde_json::json!({ "id": id }))
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// The status of the error page.
    pub status: u16,
    /// The message (reason phrase and page text); empty by default as in the original.
    pub message: String,
}

impl Abort {
    /// An error page with `status` and `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for Abort {}

impl From<StoreError> for Abort {
    /// A token store failure answers its status (503 when Redis is unreachable).
    fn from(error: StoreError) -> Self {
        Self::new(error.status(), error.to_string())
    }
}

/// A handler result with its own status, content type or extra fields: the original's
/// `Response(value, code, ctype)`.
///
/// ```
/// use quick_server::{Abort, Custom, QuickServer};
/// use serde_json::json;
///
/// let mut server = QuickServer::new(([127, 0, 0, 1], 0).into());
/// server.json_post("/api/items", None, |_req, args| {
///     Ok::<_, Abort>(
///         Custom::new(json!({ "created": args.post.clone() }))
///             .status(201)
///             .field("Location", "/api/items/1"),
///     )
/// });
/// server.text_get("/feed.xml", None, |_req, _args| {
///     Ok::<_, Abort>(Custom::new("<rss/>").content_type("application/rss+xml"))
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Custom<T> {
    /// The value (JSON-encoded on JSON routes, sent as is on text routes).
    pub value: T,
    /// The status (200 by default).
    pub status: u16,
    /// Overrides the route's content type.
    pub content_type: Option<String>,
    /// Extra fields, written before `Content-Type`.
    pub fields: Vec<(String, String)>,
}

impl<T> Custom<T> {
    /// `value` with status 200 and the route's content type.
    pub fn new(value: T) -> Self {
        Self {
            value,
            status: 200,
            content_type: None,
            fields: Vec::new(),
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds a field.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }
}

/// A value a JSON route may return: anything `Serialize` (sent as the original's
/// `json_dumps` text: indented, keys sorted, NaN as `"NaN"`), or a [`Custom`] of it.
pub trait JsonReply {
    /// The value as a `Custom` with its JSON text (`None` for a null value: 404).
    fn into_custom(self) -> Result<Custom<Option<String>>, String>;
}

impl<T: Serialize> JsonReply for T {
    fn into_custom(self) -> Result<Custom<Option<String>>, String> {
        Custom::new(self).into_custom()
    }
}

impl<T: Serialize> JsonReply for Custom<T> {
    fn into_custom(self) -> Result<Custom<Option<String>>, String> {
        let text = json_dumps(&self.value).map_err(|e| e.to_string())?;
        let value = (text != "null").then_some(text);
        Ok(Custom {
            value,
            status: self.status,
            content_type: self.content_type,
            fields: self.fields,
        })
    }
}

/// A value a text route may return: text or bytes, plain, optional or in a `Custom`.
pub trait TextReply {
    /// The body as a `Custom` (`None` for "no value": 404 `File not found`).
    fn into_custom(self) -> Custom<Option<Vec<u8>>>;
}

impl TextReply for String {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self.into_bytes()))
    }
}

impl TextReply for &'static str {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self.as_bytes().to_vec()))
    }
}

impl TextReply for Vec<u8> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self))
    }
}

impl TextReply for &'static [u8] {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        Custom::new(Some(self.to_vec()))
    }
}

impl<T: TextReply> TextReply for Option<T> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        self.map_or_else(|| Custom::new(None), TextReply::into_custom)
    }
}

impl<T: TextReply> TextReply for Custom<T> {
    fn into_custom(self) -> Custom<Option<Vec<u8>>> {
        let inner = self.value.into_custom();
        Custom {
            value: inner.value,
            status: self.status,
            content_type: self.content_type,
            fields: self.fields,
        }
    }
}

/// A typed JSON handler in the core's shape.
pub(crate) fn json_handler<F, R>(handler: F, max_age: u64) -> Handler
where
    F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
    R: JsonReply,
{
    Arc::new(
        move |request: &Request, args: &mut Args| match handler(request, args) {
            Ok(reply) => json_response(request, reply, max_age),
            Err(abort) => abort_page(&abort),
        },
    )
}

/// A JSON route's value as the response.
pub(crate) fn json_response(request: &Request, reply: impl JsonReply, max_age: u64) -> Response {
    match reply.into_custom() {
        Ok(custom) => {
            let custom = Custom {
                value: custom.value.map(String::into_bytes),
                status: custom.status,
                content_type: custom.content_type,
                fields: custom.fields,
            };
            finish(request, custom, "application/json", max_age)
        }
        Err(e) => HttpError::Internal(format!("JSON encoding failed: {e}")).response(),
    }
}

/// A typed text handler in the core's shape.
pub(crate) fn text_handler<F, R>(handler: F, max_age: u64) -> Handler
where
    F: Fn(&Request, &mut Args) -> Result<R, Abort> + Send + Sync + 'static,
    R: TextReply,
{
    Arc::new(
        move |request: &Request, args: &mut Args| match handler(request, args) {
            Ok(reply) => finish(request, reply.into_custom(), "text/plain", max_age),
            Err(abort) => abort_page(&abort),
        },
    )
}

/// A handler's value as the response, or the 404 page for a null value.
fn finish(
    request: &Request,
    custom: Custom<Option<Vec<u8>>>,
    default_type: &str,
    max_age: u64,
) -> Response {
    let Some(body) = custom.value else {
        return HttpError::NotFound.response();
    };
    let fields = custom
        .fields
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k), v))
        .collect();
    let content_type = custom.content_type.as_deref().unwrap_or(default_type);
    render(
        &request.head,
        custom.status,
        content_type,
        fields,
        body,
        max_age,
    )
}

/// The error page of an [`Abort`].
pub(crate) fn abort_page(abort: &Abort) -> Response {
    HttpError::Refused {
        status: abort.status,
        message: abort.message.clone(),
    }
    .response()
}
