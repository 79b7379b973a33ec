//! Request parsing and reply building of the worker protocol (BEHAVIOUR.md: Workers › Protocol and
//! › Actions).

use serde_json::{Map, Value};

use super::error::WorkerError;
use super::key::TaskKey;

/// One worker request, parsed from its JSON body `{"action": …, "token": …, "payload": …}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Command {
    /// Start a job with this payload (`payload` missing or falsy → `{}`).
    Start {
        /// The job's input; mask captures still have to be added with [`apply_segments`].
        payload: Value,
    },
    /// Ask for the state or result of a task.
    Get {
        /// The task's token as sent.
        token: Token,
    },
    /// Cancel a task or drop its result.
    Stop {
        /// The task's token as sent.
        token: Token,
    },
    /// Fetch (once) one chunk of a split result.
    Cargo {
        /// The chunk's key as sent.
        token: Token,
    },
}

impl Command {
    /// Parses a request body; fails with the original's texts on a missing or unknown
    /// `action` or a missing `token`.
    pub(crate) fn from_json(body: Value) -> Result<Self, WorkerError> {
        let Value::Object(mut fields) = body else {
            return Err(WorkerError::NotAnObject);
        };
        let action = fields.get("action").ok_or(WorkerError::MissingAction)?;
        let make: fn(Token) -> Self = match action.as_str() {
            Some("start") => {
                let payload = fields
                    .remove("payload")
                    .filter(is_truthy)
                    .unwrap_or_else(|| Value::Object(Map::new()));
                return Ok(Self::Start { payload });
            }
            Some("get") => |token| Self::Get { token },
            Some("stop") => |token| Self::Stop { token },
            Some("cargo") => |token| Self::Cargo { token },
            Some(other) => return Err(WorkerError::InvalidAction(other.to_owned())),
            None => return Err(WorkerError::InvalidAction(action.to_string())),
        };
        let token = fields.remove("token").ok_or(WorkerError::MissingToken)?;
        Ok(make(Token::from_json(token)))
    }
}

/// Writes the mask captures into a `start` payload, overriding keys the client sent.
///
/// Fails only when there is a capture and the payload is not a JSON object.
pub(crate) fn apply_segments<'a, I>(payload: &mut Value, segments: I) -> Result<(), WorkerError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut segments = segments.into_iter().peekable();
    if segments.peek().is_none() {
        return Ok(());
    }
    let Value::Object(fields) = payload else {
        return Err(WorkerError::PayloadNotObject);
    };
    for (name, value) in segments {
        fields.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Ok(())
}

/// Python truthiness of a JSON value, for the original's `post.get("payload") or {}`.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
    }
}

/// A task or cargo token as the client sent it: the JSON value (echoed back with its
/// type) and the key it names, if any.
///
/// A string names the key with that canonical decimal text; a JSON number names the key
/// of its decimal text (a departure: the original's own client sends numbers and the
/// original then loses the task). Anything else names no key and reads as unknown.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    value: Value,
    key: Option<TaskKey>,
}

impl Token {
    /// Reads a token from the request's `token` value.
    pub(crate) fn from_json(value: Value) -> Self {
        let key = match &value {
            Value::String(text) => TaskKey::parse_canonical(text),
            Value::Number(number) => TaskKey::parse_canonical(&number.to_string()),
            _ => None,
        };
        Self { value, key }
    }

    /// The value as sent, for the `token` field of the reply.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The key the token names, or `None` if it cannot name one.
    pub fn key(&self) -> Option<TaskKey> {
        self.key
    }

    /// The token as text for error messages: a string as is, anything else as JSON.
    pub fn text(&self) -> String {
        match &self.value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}

impl From<TaskKey> for Token {
    /// The token naming a key the server handed out; it echoes as the key's string.
    fn from(key: TaskKey) -> Self {
        Self {
            value: Value::String(key.to_string()),
            key: Some(key),
        }
    }
}

/// A successful worker answer: a JSON object with exactly the keys `continue`, `done`,
/// `result` and `token`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// `continue`: whether the client should keep asking (poll again or fetch cargo).
    pub continue_: bool,
    /// `done`: whether the task ended (or was stopped).
    pub done: bool,
    /// `result`: the result text, the list of cargo keys, a chunk, or null.
    pub result: Value,
    /// `token`: the request's token, echoed with its JSON type.
    pub token: Value,
}

impl Reply {
    /// Answer for a task that is unknown, collected or purged.
    pub fn unknown(token: &Token) -> Self {
        Self::new(token, false, false, Value::Null)
    }

    /// Answer for a task that is still running.
    pub fn running(token: &Token) -> Self {
        Self::new(token, true, false, Value::Null)
    }

    /// Answer for `stop`, whatever the task's state was.
    pub fn stopped(token: &Token) -> Self {
        Self::new(token, false, true, Value::Null)
    }

    /// Answer delivering `result` (a text, chunk keys or a chunk).
    pub fn finished(token: &Token, continue_: bool, result: Value) -> Self {
        Self::new(token, continue_, true, result)
    }

    fn new(token: &Token, continue_: bool, done: bool, result: Value) -> Self {
        Self {
            continue_,
            done,
            result,
            token: token.value.clone(),
        }
    }

    /// The reply as the JSON object the route answers.
    #[cfg(test)]
    pub(crate) fn to_json_value(&self) -> Value {
        Value::from(self.clone())
    }
}

impl From<Reply> for Value {
    /// The reply as the JSON object the route answers, without copying the result.
    fn from(reply: Reply) -> Self {
        let mut fields = Map::new();
        fields.insert("continue".to_owned(), Value::Bool(reply.continue_));
        fields.insert("done".to_owned(), Value::Bool(reply.done));
        fields.insert("result".to_owned(), reply.result);
        fields.insert("token".to_owned(), reply.token);
        Value::Object(fields)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn token_of(value: Value) -> Token {
        Token::from_json(value)
    }

    #[test]
    fn parses_start_with_payload() {
        let cmd = Command::from_json(json!({"action": "start", "payload": {"a": 1}}));
        assert_eq!(
            cmd,
            Ok(Command::Start {
                payload: json!({"a": 1})
            })
        );
    }

    #[test]
    fn start_without_or_with_falsy_payload_gets_empty_object() {
        for body in [
            json!({"action": "start"}),
            json!({"action": "start", "payload": null}),
            json!({"action": "start", "payload": 0}),
            json!({"action": "start", "payload": ""}),
            json!({"action": "start", "payload": []}),
            json!({"action": "start", "payload": false}),
        ] {
            assert_eq!(
                Command::from_json(body.clone()),
                Ok(Command::Start { payload: json!({}) }),
                "{body}"
            );
        }
        assert_eq!(
            Command::from_json(json!({"action": "start", "payload": [1]})),
            Ok(Command::Start {
                payload: json!([1])
            })
        );
    }

    #[test]
    fn parses_token_actions() {
        assert_eq!(
            Command::from_json(json!({"action": "get", "token": "12"})),
            Ok(Command::Get {
                token: token_of(json!("12"))
            })
        );
        assert_eq!(
            Command::from_json(json!({"action": "stop", "token": 12})),
            Ok(Command::Stop {
                token: token_of(json!(12))
            })
        );
        assert_eq!(
            Command::from_json(json!({"action": "cargo", "token": "7"})),
            Ok(Command::Cargo {
                token: token_of(json!("7"))
            })
        );
    }

    #[test]
    fn rejects_missing_or_unknown_action() {
        assert_eq!(
            Command::from_json(json!({"token": "1"})),
            Err(WorkerError::MissingAction)
        );
        assert_eq!(
            Command::from_json(json!({"action": "bogus"})),
            Err(WorkerError::InvalidAction("bogus".into()))
        );
        assert_eq!(
            Command::from_json(json!({"action": 5})).map_err(|e| e.to_string()),
            Err("ValueError: invalid action: 5".into())
        );
        assert_eq!(
            Command::from_json(json!({"action": null})),
            Err(WorkerError::InvalidAction("null".into()))
        );
    }

    #[test]
    fn rejects_missing_token_and_non_object_bodies() {
        for action in ["get", "stop", "cargo"] {
            assert_eq!(
                Command::from_json(json!({ "action": action })),
                Err(WorkerError::MissingToken)
            );
        }
        for body in [json!([]), json!("start"), json!(null), json!(3)] {
            assert_eq!(Command::from_json(body), Err(WorkerError::NotAnObject));
        }
    }

    #[test]
    fn token_keeps_value_and_names_decimal_key() {
        let text = token_of(json!("3163488080"));
        assert_eq!(text.value(), &json!("3163488080"));
        assert_eq!(text.key().map(|k| k.to_string()), Some("3163488080".into()));
        let number = token_of(json!(3163488080u64));
        assert_eq!(number.value(), &json!(3163488080u64));
        assert_eq!(number.key(), text.key());
    }

    #[test]
    fn tokens_naming_no_key() {
        for value in [
            json!(null),
            json!(true),
            json!([1]),
            json!({"k": 1}),
            json!(-1),
            json!(1.5),
            json!(1.0),
            json!(4294967296u64),
            json!("01"),
            json!(" 1"),
            json!("x"),
        ] {
            assert_eq!(token_of(value.clone()).key(), None, "{value}");
        }
    }

    #[test]
    fn token_text_for_messages() {
        assert_eq!(token_of(json!("abc")).text(), "abc");
        assert_eq!(token_of(json!(17)).text(), "17");
        assert_eq!(token_of(json!(null)).text(), "null");
    }

    #[test]
    fn token_from_key_echoes_string() {
        let key = TaskKey::new(99);
        let token = Token::from(key);
        assert_eq!(token.value(), &json!("99"));
        assert_eq!(token.key(), Some(key));
    }

    #[test]
    fn segments_override_payload_keys() {
        let mut payload = json!({"a": "sent", "b": 2});
        apply_segments(&mut payload, [("a", "captured"), ("c", "x?y")]).unwrap();
        assert_eq!(payload, json!({"a": "captured", "b": 2, "c": "x?y"}));
    }

    #[test]
    fn segments_need_an_object_payload_only_when_present() {
        let mut list = json!([1, 2]);
        assert_eq!(apply_segments(&mut list, []), Ok(()));
        assert_eq!(list, json!([1, 2]));
        assert_eq!(
            apply_segments(&mut list, [("a", "b")]),
            Err(WorkerError::PayloadNotObject)
        );
    }

    #[test]
    fn reply_has_exactly_four_keys() {
        let token = token_of(json!(5));
        let reply = Reply::finished(&token, true, json!(["1", "2"]));
        let value = reply.to_json_value();
        assert_eq!(
            value,
            json!({"continue": true, "done": true, "result": ["1", "2"], "token": 5})
        );
        assert_eq!(value.as_object().map(Map::len), Some(4));
        assert_eq!(Value::from(reply), value);
    }

    #[test]
    fn reply_shapes() {
        let token = token_of(json!("8"));
        assert_eq!(
            Reply::unknown(&token).to_json_value(),
            json!({"continue": false, "done": false, "result": null, "token": "8"})
        );
        assert_eq!(
            Reply::running(&token).to_json_value(),
            json!({"continue": true, "done": false, "result": null, "token": "8"})
        );
        assert_eq!(
            Reply::stopped(&token).to_json_value(),
            json!({"continue": false, "done": true, "result": null, "token": "8"})
        );
    }
}
