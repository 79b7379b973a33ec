//! Python-compatible JSON text: `json.dumps(v, indent=2, sort_keys=True)` for responses and a
//! compact form (BEHAVIOUR.md: Dynamic routes › Responses). A private serde serializer builds a
//! [`Node`] tree first, keeping float values (NaN, infinities) and the kinds of map keys that
//! `serde_json::Value` loses.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

/// Room reserved for a JSON text up front: a typical API answer fits without regrowing.
const TYPICAL_TEXT: usize = 256;

/// Serialises `value` like the reference's `json_dumps`: 2-space indent, sorted keys, ASCII
/// only, Python float repr, non-finite floats as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub fn json_dumps<T: Serialize + ?Sized>(value: &T) -> Result<String, JsonError> {
    let node = value.serialize(NodeSerializer)?;
    let mut out = String::with_capacity(TYPICAL_TEXT);
    write_node(&mut out, &node, Style::Indented { depth: 0 });
    Ok(out)
}

/// Serialises `value` compactly: sorted keys, `,`/`:` separators, ASCII only, non-finite
/// floats as bare `NaN`/`Infinity`/`-Infinity` (not valid JSON, as in Python).
pub fn json_compact<T: Serialize + ?Sized>(value: &T) -> Result<String, JsonError> {
    let node = value.serialize(NodeSerializer)?;
    let mut out = String::with_capacity(TYPICAL_TEXT);
    write_node(&mut out, &node, Style::Compact);
    Ok(out)
}

/// Why a value could not be turned into JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// A map key that is not a string, integer, float, bool or null.
    InvalidKey {
        /// Kind of the offending key (`list`, `dict`, …).
        kind: &'static str,
    },
    /// Two keys of one map cannot be ordered (e.g. a string and an integer).
    IncomparableKeys {
        /// Kind of the first key.
        left: &'static str,
        /// Kind of the second key.
        right: &'static str,
    },
    /// An unsigned 128-bit integer above `i128::MAX`.
    IntegerOutOfRange,
    /// Error raised by a `Serialize` implementation.
    Custom(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey { kind } => {
                write!(f, "keys must be str, int, float, bool or None, not {kind}")
            }
            Self::IncomparableKeys { left, right } => write!(
                f,
                "'<' not supported between instances of '{left}' and '{right}'"
            ),
            Self::IntegerOutOfRange => f.write_str("integer out of the supported range"),
            Self::Custom(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for JsonError {}

impl ser::Error for JsonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }
}

/// Intermediate tree: like `serde_json::Value`, but floats stay `f64` and keys keep their kind.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A map key before conversion to a string; numeric kinds compare with each other.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Key {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "NoneType",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "str",
        }
    }

    /// Python's `<` between keys; `None` when the kinds cannot be compared.
    fn compare(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Str(a), Self::Str(b)) => Some(a.cmp(b)),
            (Self::Float(a), Self::Float(b)) => Some(cmp_floats(*a, *b)),
            (Self::Float(a), _) => other.as_int().map(|b| cmp_int_float(b, *a).reverse()),
            (_, Self::Float(b)) => self.as_int().map(|a| cmp_int_float(a, *b)),
            _ => Some(self.as_int()?.cmp(&other.as_int()?)),
        }
    }

    /// Integer value of `int` and `bool` keys (Python's `bool` is an `int`).
    fn as_int(&self) -> Option<i128> {
        match self {
            Self::Bool(b) => Some(i128::from(*b)),
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The key text Python writes: floats in repr form, `true`/`false`/`null`.
    fn text(&self) -> String {
        match self {
            Self::Null => "null".to_owned(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => non_finite_name(*f).map_or_else(|| float_repr(*f), str::to_owned),
            Self::Str(s) => s.clone(),
        }
    }
}

/// Numeric order of two floats with `-0.0 == 0.0` and every NaN after every number, so that
/// together with [`cmp_int_float`] all numeric keys form one consistent total order.
fn cmp_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Exact comparison of an integer with a float, as Python does (NaN sorts last).
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // 2^127: every finite float at or above it exceeds any i128, below -2^127 is smaller.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f.is_nan() || f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // In range and integral, so the conversion is exact.
    let whole_int = whole as i128;
    i.cmp(&whole_int).then_with(|| {
        let frac = f - whole;
        if frac > 0.0 {
            Ordering::Less
        } else if frac < 0.0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    })
}

/// Sorts map entries by key like Python's `sorted`, failing on incomparable key kinds.
/// Keys that compare equal (`1`, `1.0`, `true`) are one dict key in Python: the first key
/// stays with the last value.
fn sort_entries(entries: &mut Vec<(Key, Node)>) -> Result<(), JsonError> {
    if let Some(pair) = entries.windows(2).find_map(|pair| match pair {
        [(a, _), (b, _)] if a.compare(b).is_none() => Some((a.kind(), b.kind())),
        _ => None,
    }) {
        return Err(JsonError::IncomparableKeys {
            left: pair.0,
            right: pair.1,
        });
    }
    // All neighbours comparable: with these kinds that means all pairs are comparable
    // (strings only with strings, numbers with numbers, null never beside anything).
    entries.sort_by(|(a, _), (b, _)| a.compare(b).unwrap_or(Ordering::Equal));
    entries.dedup_by(|later, earlier| {
        let same = !matches!((&later.0, &earlier.0), (Key::Float(a), Key::Float(b)) if a.is_nan() && b.is_nan())
            && later.0.compare(&earlier.0) == Some(Ordering::Equal);
        if same {
            std::mem::swap(&mut later.1, &mut earlier.1);
        }
        same
    });
    Ok(())
}

#[derive(Clone, Copy)]
enum Style {
    Indented { depth: usize },
    Compact,
}

impl Style {
    fn nested(self) -> Self {
        match self {
            Self::Indented { depth } => Self::Indented { depth: depth + 1 },
            Self::Compact => Self::Compact,
        }
    }
}

fn write_node(out: &mut String, node: &Node, style: Style) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "{i}");
        }
        Node::Float(f) => match (non_finite_name(*f), style) {
            (Some(name), Style::Indented { .. }) => write_str(out, name),
            (Some(name), Style::Compact) => out.push_str(name),
            (None, _) => out.push_str(&float_repr(*f)),
        },
        Node::Str(s) => write_str(out, s),
        Node::List(items) => write_container(out, ('[', ']'), items, style, |out, item| {
            write_node(out, item, style.nested());
        }),
        Node::Map(entries) => {
            write_container(out, ('{', '}'), entries, style, |out, (key, value)| {
                match key {
                    Key::Str(text) => write_str(out, text),
                    other => write_str(out, &other.text()),
                }
                out.push_str(match style {
                    Style::Indented { .. } => ": ",
                    Style::Compact => ":",
                });
                write_node(out, value, style.nested());
            });
        }
    }
}

fn write_container<I>(
    out: &mut String,
    (open, close): (char, char),
    items: &[I],
    style: Style,
    mut write_item: impl FnMut(&mut String, &I),
) {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return;
    }
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        if let Style::Indented { depth } = style {
            newline(out, depth + 1);
        }
        write_item(out, item);
    }
    if let Style::Indented { depth } = style {
        newline(out, depth);
    }
    out.push(close);
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Writes a JSON string with Python's `ensure_ascii` escaping (lower-case `\uXXXX`);
/// runs of printable ASCII are copied whole.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    // Every byte before the first one needing care is printable ASCII, so that byte
    // starts a character.
    while let Some(at) = rest
        .bytes()
        .position(|b| !matches!(b, b' '..=b'~') || b == b'"' || b == b'\\')
    {
        let (plain, tail) = rest.split_at(at);
        out.push_str(plain);
        let mut chars = tail.chars();
        let Some(c) = chars.next() else { break };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out.push('"');
}

fn non_finite_name(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f == f64::INFINITY {
        Some("Infinity")
    } else if f == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// Python's `repr(float)` for a finite value: shortest round-trip digits, positional when the
/// decimal exponent is in `-4..16` (always with a fraction, `1.0`), else `1e+16` / `1e-05`.
fn float_repr(f: f64) -> String {
    // `{:e}` yields the shortest round-trip digits, e.g. `-1.2345e-7`, `5e-324`, `-0e0`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            // `exp` is in 0..16 here.
            let int_len = exp.unsigned_abs() as usize + 1;
            let (int_part, frac_part) = digits.split_at(int_len.min(digits.len()));
            out.push_str(int_part);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push('.');
            out.push_str(if frac_part.is_empty() { "0" } else { frac_part });
        }
    } else {
        let (first, others) = digits.split_at(digits.len().min(1));
        out.push_str(first);
        if !others.is_empty() {
            out.push('.');
            out.push_str(others);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    out
}

/// Serde serializer producing a [`Node`]; enums use serde_json's externally tagged shape.
struct NodeSerializer;

fn tagged(variant: &'static str, value: Node) -> Node {
    Node::Map(vec![(Key::Str(variant.to_owned()), value)])
}

impl ser::Serializer for NodeSerializer {
    type Ok = Node;
    type Error = JsonError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Node, JsonError> {
        Ok(Node::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<Node, JsonError> {
        Ok(Node::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Node, JsonError> {
        Ok(Node::Int(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<Node, JsonError> {
        i128::try_from(v)
            .map(Node::Int)
            .map_err(|_| JsonError::IntegerOutOfRange)
    }
    fn serialize_f32(self, v: f32) -> Result<Node, JsonError> {
        Ok(Node::Float(f32_to_f64(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<Node, JsonError> {
        Ok(Node::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Node, JsonError> {
        Ok(Node::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, JsonError> {
        Ok(Node::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Node, JsonError> {
        Ok(Node::List(
            v.iter().map(|b| Node::Int(i128::from(*b))).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Node, JsonError> {
        Ok(Node::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, JsonError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, JsonError> {
        Ok(Node::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Node, JsonError> {
        Ok(Node::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Node, JsonError> {
        Ok(Node::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Node, JsonError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Node, JsonError> {
        Ok(tagged(variant, value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, JsonError> {
        Ok(SeqBuilder::new(None, len))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, JsonError> {
        Ok(SeqBuilder::new(None, Some(len)))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, JsonError> {
        Ok(SeqBuilder::new(None, Some(len)))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, JsonError> {
        Ok(SeqBuilder::new(Some(variant), Some(len)))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, JsonError> {
        Ok(MapBuilder::new(None, len))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder, JsonError> {
        Ok(MapBuilder::new(None, Some(len)))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, JsonError> {
        Ok(MapBuilder::new(Some(variant), Some(len)))
    }
}

/// Widens an `f32` through its shortest decimal form, so `0.1f32` is written `0.1`.
fn f32_to_f64(v: f32) -> f64 {
    if v.is_finite() {
        v.to_string().parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

/// Collects sequence elements; `variant` wraps the result as `{variant: [...]}`.
struct SeqBuilder {
    variant: Option<&'static str>,
    items: Vec<Node>,
}

impl SeqBuilder {
    fn new(variant: Option<&'static str>, len: Option<usize>) -> Self {
        // Capacity hints come from the value, not the network, but keep them modest.
        let items = Vec::with_capacity(len.unwrap_or(0).min(1024));
        Self { variant, items }
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.items.push(value.serialize(NodeSerializer)?);
        Ok(())
    }

    fn finish(self) -> Node {
        let list = Node::List(self.items);
        match self.variant {
            Some(variant) => tagged(variant, list),
            None => list,
        }
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, JsonError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, JsonError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, JsonError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, JsonError> {
        Ok(self.finish())
    }
}

/// Collects map entries (keys through [`KeySerializer`]) and sorts them at the end.
struct MapBuilder {
    variant: Option<&'static str>,
    entries: Vec<(Key, Node)>,
    pending_key: Option<Key>,
}

impl MapBuilder {
    fn new(variant: Option<&'static str>, len: Option<usize>) -> Self {
        Self {
            variant,
            entries: Vec::with_capacity(len.unwrap_or(0).min(1024)),
            pending_key: None,
        }
    }

    fn finish(mut self) -> Result<Node, JsonError> {
        sort_entries(&mut self.entries)?;
        let map = Node::Map(self.entries);
        Ok(match self.variant {
            Some(variant) => tagged(variant, map),
            None => map,
        })
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        self.pending_key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| JsonError::Custom("map value without a key".to_owned()))?;
        let value = value.serialize(NodeSerializer)?;
        self.entries.push((key, value));
        Ok(())
    }
    fn end(self) -> Result<Node, JsonError> {
        self.finish()
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        let value = value.serialize(NodeSerializer)?;
        self.entries.push((Key::Str(key.to_owned()), value));
        Ok(())
    }
    fn end(self) -> Result<Node, JsonError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Node;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<Node, JsonError> {
        self.finish()
    }
}

/// Serializer for map keys: scalars only, as Python's `json` accepts.
struct KeySerializer;

fn invalid_key(kind: &'static str) -> JsonError {
    JsonError::InvalidKey { kind }
}

impl ser::Serializer for KeySerializer {
    type Ok = Key;
    type Error = JsonError;
    type SerializeSeq = ser::Impossible<Key, JsonError>;
    type SerializeTuple = ser::Impossible<Key, JsonError>;
    type SerializeTupleStruct = ser::Impossible<Key, JsonError>;
    type SerializeTupleVariant = ser::Impossible<Key, JsonError>;
    type SerializeMap = ser::Impossible<Key, JsonError>;
    type SerializeStruct = ser::Impossible<Key, JsonError>;
    type SerializeStructVariant = ser::Impossible<Key, JsonError>;

    fn serialize_bool(self, v: bool) -> Result<Key, JsonError> {
        Ok(Key::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<Key, JsonError> {
        Ok(Key::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Key, JsonError> {
        Ok(Key::Int(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<Key, JsonError> {
        i128::try_from(v)
            .map(Key::Int)
            .map_err(|_| JsonError::IntegerOutOfRange)
    }
    fn serialize_f32(self, v: f32) -> Result<Key, JsonError> {
        Ok(Key::Float(f32_to_f64(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<Key, JsonError> {
        Ok(Key::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Key, JsonError> {
        Ok(Key::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Key, JsonError> {
        Ok(Key::Str(v.to_owned()))
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<Key, JsonError> {
        Err(invalid_key("bytes"))
    }
    fn serialize_none(self) -> Result<Key, JsonError> {
        Ok(Key::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Key, JsonError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Key, JsonError> {
        Ok(Key::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Key, JsonError> {
        Ok(Key::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Key, JsonError> {
        Ok(Key::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Key, JsonError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Key, JsonError> {
        Err(invalid_key("dict"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, JsonError> {
        Err(invalid_key("list"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, JsonError> {
        Err(invalid_key("tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, JsonError> {
        Err(invalid_key("tuple"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, JsonError> {
        Err(invalid_key("dict"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, JsonError> {
        Err(invalid_key("dict"))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, JsonError> {
        Err(invalid_key("dict"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, JsonError> {
        Err(invalid_key("dict"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::ser::{SerializeMap, Serializer};
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Map with arbitrary (possibly mixed or duplicate) keys, in the given order.
    struct Pairs<K, V>(Vec<(K, V)>);

    impl<K: Serialize, V: Serialize> Serialize for Pairs<K, V> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    struct Bytes(&'static [u8]);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    fn dumps<T: Serialize + ?Sized>(value: &T) -> String {
        match json_dumps(value) {
            Ok(text) => text,
            Err(err) => panic!("json_dumps failed: {err}"),
        }
    }

    // Expected strings below were produced by CPython 3.11:
    // json.dumps(v, indent=2, sort_keys=True).

    #[test]
    fn nested_containers() {
        let v =
            json!({"b": [1, 2.5, {"z": null, "a": true}], "a": {}, "c": [], "d": "x/y", "e": [[]]});
        assert_eq!(
            dumps(&v),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5,\n    {\n      \"a\": true,\n      \"z\": null\n    }\n  ],\n  \"c\": [],\n  \"d\": \"x/y\",\n  \"e\": [\n    []\n  ]\n}"
        );
    }

    #[test]
    fn unicode_escapes() {
        let v = "h\u{e9}llo w\u{f6}rld \u{2713} \u{1F600} \u{1} \u{7f} \"q\" \\ \n\t\r\u{8}\u{c}~";
        assert_eq!(
            dumps(v),
            "\"h\\u00e9llo w\\u00f6rld \\u2713 \\ud83d\\ude00 \\u0001 \\u007f \\\"q\\\" \\\\ \\n\\t\\r\\b\\f~\""
        );
    }

    #[test]
    fn python_float_repr() {
        let v = [
            0.1,
            1e16,
            1e-5,
            123456789.0,
            -0.0,
            5e-324,
            1.7976931348623157e308,
            1.0,
            1e15,
            0.0001,
            1.5e300,
            2.5e-7,
            100.0,
            12345678901234567.0,
            -1.25e-10,
            9999999999999998.0,
            0.30000000000000004,
            1e22,
            123.456,
        ];
        assert_eq!(
            dumps(&v),
            "[\n  0.1,\n  1e+16,\n  1e-05,\n  123456789.0,\n  -0.0,\n  5e-324,\n  1.7976931348623157e+308,\n  1.0,\n  1000000000000000.0,\n  0.0001,\n  1.5e+300,\n  2.5e-07,\n  100.0,\n  1.2345678901234568e+16,\n  -1.25e-10,\n  9999999999999998.0,\n  0.30000000000000004,\n  1e+22,\n  123.456\n]"
        );
        assert_eq!(dumps(&0.1f32), "0.1");
    }

    #[test]
    fn integer_keys_sort_numerically() {
        let v: BTreeMap<i32, &str> = [(2, "b"), (10, "c"), (1, "a"), (-3, "m")].into();
        assert_eq!(
            dumps(&v),
            "{\n  \"-3\": \"m\",\n  \"1\": \"a\",\n  \"2\": \"b\",\n  \"10\": \"c\"\n}"
        );
    }

    #[test]
    fn mixed_numeric_keys() {
        let v = Pairs(vec![
            (json!(0.5), 1),
            (json!(2), 2),
            (json!(true), 3),
            (json!(-1.5), 4),
            (json!(1e16), 5),
        ]);
        assert_eq!(
            dumps(&v),
            "{\n  \"-1.5\": 4,\n  \"0.5\": 1,\n  \"true\": 3,\n  \"2\": 2,\n  \"1e+16\": 5\n}"
        );
        let bools = Pairs(vec![(true, 1), (false, 0)]);
        assert_eq!(dumps(&bools), "{\n  \"false\": 0,\n  \"true\": 1\n}");
        assert_eq!(dumps(&Pairs(vec![((), 1)])), "{\n  \"null\": 1\n}");
        // Exact int/float comparison beyond f64 precision.
        let big = Pairs(vec![
            (json!(9007199254740993_i64), 1),
            (json!(9007199254740992.0), 2),
        ]);
        assert_eq!(
            dumps(&big),
            "{\n  \"9007199254740992.0\": 2,\n  \"9007199254740993\": 1\n}"
        );
    }

    #[test]
    fn non_finite_float_keys_and_order() {
        let v = Pairs(vec![
            (f64::NAN, 1),
            (f64::INFINITY, 2),
            (f64::NEG_INFINITY, 3),
            (0.0, 4),
        ]);
        assert_eq!(
            dumps(&v),
            "{\n  \"-Infinity\": 3,\n  \"0.0\": 4,\n  \"Infinity\": 2,\n  \"NaN\": 1\n}"
        );
        let mixed = Pairs(vec![(json!(1), 1), (json!(-0.0), 2), (json!(0), 3)]);
        assert_eq!(dumps(&mixed), "{\n  \"-0.0\": 3,\n  \"1\": 1\n}");
    }

    #[test]
    fn unicode_keys_sort_by_code_point() {
        let v = json!({"\u{e9}": 1, "z": 2, "A": 3, "\u{1F600}": 4});
        assert_eq!(
            dumps(&v),
            "{\n  \"A\": 3,\n  \"z\": 2,\n  \"\\u00e9\": 1,\n  \"\\ud83d\\ude00\": 4\n}"
        );
    }

    #[test]
    fn integers_and_scalars() {
        assert_eq!(
            dumps(&(i64::MAX, u64::MAX, i128::MIN)),
            "[\n  9223372036854775807,\n  18446744073709551615,\n  -170141183460469231731687303715884105728\n]"
        );
        assert_eq!(
            dumps(&json!(["str", 5, null, true, 1.0, false])),
            "[\n  \"str\",\n  5,\n  null,\n  true,\n  1.0,\n  false\n]"
        );
        assert_eq!(dumps("a/b"), "\"a/b\"");
        assert_eq!(dumps(&()), "null");
        assert_eq!(dumps(&None::<u8>), "null");
        assert_eq!(dumps(&Some(3u8)), "3");
        assert_eq!(dumps(&'x'), "\"x\"");
        assert_eq!(dumps(&Bytes(b"\x00\xff")), "[\n  0,\n  255\n]");
        assert_eq!(json_dumps(&u128::MAX), Err(JsonError::IntegerOutOfRange));
        assert_eq!(dumps(&u128::from(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn non_finite_values_become_strings() {
        let v = Pairs(vec![
            ("b", vec![1.5]),
            ("a", vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        ]);
        assert_eq!(
            dumps(&v),
            "{\n  \"a\": [\n    \"NaN\",\n    \"Infinity\",\n    \"-Infinity\"\n  ],\n  \"b\": [\n    1.5\n  ]\n}"
        );
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(u8, u8),
        Struct { w: u8 },
    }

    #[derive(serde::Serialize)]
    struct Record {
        zeta: Vec<Shape>,
        alpha: Option<String>,
        unit: (),
    }

    #[test]
    fn structs_and_enums_like_serde_json() {
        let v = Record {
            zeta: vec![
                Shape::Unit,
                Shape::Newtype(1),
                Shape::Tuple(2, 3),
                Shape::Struct { w: 4 },
            ],
            alpha: None,
            unit: (),
        };
        let expected = serde_json::to_value(&v).map(|value| dumps(&value));
        assert_eq!(Ok(dumps(&v)), expected.map_err(|e| e.to_string()));
        assert_eq!(
            json_compact(&v),
            Ok("{\"alpha\":null,\"unit\":null,\"zeta\":[\"Unit\",{\"Newtype\":1},{\"Tuple\":[2,3]},{\"Struct\":{\"w\":4}}]}".to_owned())
        );
    }

    #[test]
    fn compact_form() {
        // json.dumps(v, sort_keys=True, separators=(',', ':'))
        let inner = Pairs(vec![(2, 0.1)]);
        let v = (
            Pairs(vec![("c", f64::NAN)]),
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        let outer = Pairs(vec![
            ("b", json_node(&v)),
            ("a", json_node(&"\u{e9}")),
            ("k", json_node(&inner)),
        ]);
        assert_eq!(
            json_compact(&outer),
            Ok(
                "{\"a\":\"\\u00e9\",\"b\":[{\"c\":NaN},Infinity,-Infinity],\"k\":{\"2\":0.1}}"
                    .to_owned()
            )
        );
        assert_eq!(json_compact(&json!({})), Ok("{}".to_owned()));
        assert_eq!(json_compact(&json!([[], {}])), Ok("[[],{}]".to_owned()));
    }

    /// Builds a node through the serializer, so a test can nest heterogeneous values.
    fn json_node<T: Serialize + ?Sized>(value: &T) -> NodeValue {
        match value.serialize(NodeSerializer) {
            Ok(node) => NodeValue(node),
            Err(err) => panic!("{err}"),
        }
    }

    struct NodeValue(Node);

    impl Serialize for NodeValue {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            match &self.0 {
                Node::Null => serializer.serialize_unit(),
                Node::Bool(b) => serializer.serialize_bool(*b),
                Node::Int(i) => serializer.serialize_i128(*i),
                Node::Float(f) => serializer.serialize_f64(*f),
                Node::Str(s) => serializer.serialize_str(s),
                Node::List(items) => {
                    let mut seq = serializer.serialize_seq(Some(items.len()))?;
                    for item in items {
                        seq.serialize_element(&NodeValue(item.clone()))?;
                    }
                    seq.end()
                }
                Node::Map(entries) => {
                    let mut map = serializer.serialize_map(Some(entries.len()))?;
                    for (key, value) in entries {
                        map.serialize_entry(&key.text(), &NodeValue(value.clone()))?;
                    }
                    map.end()
                }
            }
        }
    }

    #[test]
    fn incomparable_and_invalid_keys() {
        let mixed = Pairs(vec![(json!("a"), 1), (json!(1), 2)]);
        let err = json_dumps(&mixed);
        assert_eq!(
            err,
            Err(JsonError::IncomparableKeys {
                left: "str",
                right: "int"
            })
        );
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("'<' not supported between instances of 'str' and 'int'".to_owned())
        );
        let null_and_int = Pairs(vec![(json!(null), 1), (json!(1), 2)]);
        assert!(matches!(
            json_dumps(&null_and_int),
            Err(JsonError::IncomparableKeys { .. })
        ));
        let list_key = Pairs(vec![(vec![1], 1)]);
        let err = json_dumps(&list_key);
        assert_eq!(err, Err(JsonError::InvalidKey { kind: "list" }));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("keys must be str, int, float, bool or None, not list".to_owned())
        );
    }

    #[test]
    fn duplicate_keys_keep_last_value() {
        let v = Pairs(vec![("a", 1), ("b", 2), ("a", 3)]);
        assert_eq!(dumps(&v), "{\n  \"a\": 3,\n  \"b\": 2\n}");
        let same_number = Pairs(vec![(json!(1), "int"), (json!(true), "bool")]);
        assert_eq!(dumps(&same_number), "{\n  \"1\": \"bool\"\n}");
    }

    #[test]
    fn float_repr_table() {
        let cases: [(f64, &str); 12] = [
            (0.0, "0.0"),
            (1e-4, "0.0001"),
            (1.5e-4, "0.00015"),
            (9.999e15, "9999000000000000.0"),
            (1e100, "1e+100"),
            (-1e-100, "-1e-100"),
            (1.25, "1.25"),
            (2.0f64.powi(60), "1.152921504606847e+18"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (0.5, "0.5"),
            (123456.789, "123456.789"),
            (-5e-5, "-5e-05"),
        ];
        for (f, expected) in cases {
            assert_eq!(float_repr(f), expected, "{f:e}");
        }
    }
}
