//! The layered config tree and its deserializer: file values keep the types the file gave them,
//! `ATTACKMESH_…` values stay text until the target field says what it needs.
//!
//! An environment value is text. A string setting (a password, a token, an index name) gets
//! that text verbatim — `0x1F2E3D4C`, `1e3`, `+1`, `0o17`, `.5` and `1.50` are never re-typed.
//! Only a field that asks for a number, a boolean, a list or a section reads the text as YAML
//! (`5`, `true`, `[a, b]`), and a list's items are again typed by what the list holds. This
//! module never reads files or the process environment.

use serde::de::{
    self, Deserializer, IntoDeserializer, Visitor,
    value::{MapAccessDeserializer, MapDeserializer, StringDeserializer},
};
use serde_json::{Error, Value};

/// One node of the merged configuration.
#[derive(Debug)]
pub(super) enum Node {
    /// A value from the file (or a default empty section), typed by the file.
    File(Value),
    /// The text of an environment variable.
    Env(String),
    /// A section some environment value was set inside: its entries, file and env alike.
    Section(Vec<(String, Node)>),
}

impl Node {
    /// An empty section (no file).
    pub(super) fn empty() -> Self {
        Node::Section(Vec::new())
    }

    /// Sets the environment text `raw` at `path`, creating sections on the way.
    pub(super) fn set(&mut self, path: &[String], raw: &str) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            return Err("empty key".into());
        };
        if path.iter().any(String::is_empty) {
            return Err("empty path segment".into());
        }
        if let Node::File(Value::Object(map)) = self {
            let entries = std::mem::take(map)
                .into_iter()
                .map(|(k, v)| (k, Node::File(v)))
                .collect();
            *self = Node::Section(entries);
        }
        let Node::Section(entries) = self else {
            return Err(format!("`{first}` is inside a value that is not a section"));
        };
        let index = match entries.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                entries.push((first.clone(), Node::empty()));
                entries.len() - 1
            }
        };
        let child = &mut entries[index].1;
        if rest.is_empty() {
            *child = Node::Env(raw.to_owned());
            Ok(())
        } else {
            child.set(rest, raw)
        }
    }
}

impl<'de> IntoDeserializer<'de, Error> for Node {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Forwards deserializer methods to `$target` (a deserializer expression of `$self`).
macro_rules! forward {
    ($self:ident => $target:expr; $($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>($self, visitor: V) -> Result<V::Value, Error> {
                $target.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_any(visitor),
            Node::Env(raw) => EnvText(raw).deserialize_any(visitor),
            Node::Section(entries) => visit_section(entries, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_option(visitor),
            Node::Env(raw) => EnvText(raw).deserialize_option(visitor),
            section @ Node::Section(_) => visitor.visit_some(section),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_newtype_struct(name, visitor),
            other => visitor.visit_newtype_struct(other),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_enum(name, variants, visitor),
            Node::Env(raw) => EnvText(raw).deserialize_enum(name, variants, visitor),
            Node::Section(entries) => {
                visitor.visit_enum(MapAccessDeserializer::new(MapDeserializer::new(entries.into_iter())))
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_struct(name, fields, visitor),
            Node::Env(raw) => EnvText(raw).deserialize_struct(name, fields, visitor),
            Node::Section(entries) => visit_section(entries, visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => value.deserialize_map(visitor),
            Node::Env(raw) => EnvText(raw).deserialize_map(visitor),
            Node::Section(entries) => visit_section(entries, visitor),
        }
    }

    forward! { self => self.leaf()?;
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq deserialize_identifier
        deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.leaf()?.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.leaf()?.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.leaf()?.deserialize_tuple_struct(name, len, visitor)
    }
}

impl Node {
    /// The node as a leaf deserializer (file value or env text); a section is a map, which
    /// the leaf-only methods refuse with serde's own message.
    fn leaf(self) -> Result<Leaf, Error> {
        match self {
            Node::File(value) => Ok(Leaf::File(value)),
            Node::Env(raw) => Ok(Leaf::Env(EnvText(raw))),
            Node::Section(_) => Err(de::Error::invalid_type(de::Unexpected::Map, &"a value, not a section")),
        }
    }
}

fn visit_section<'de, V: Visitor<'de>>(entries: Vec<(String, Node)>, visitor: V) -> Result<V::Value, Error> {
    let mut map = MapDeserializer::new(entries.into_iter());
    let value = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(value)
}

/// A leaf: a file value or environment text.
enum Leaf {
    File(Value),
    Env(EnvText),
}

macro_rules! leaf_forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self {
                    Leaf::File(value) => value.$method(visitor),
                    Leaf::Env(text) => text.$method(visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Leaf {
    type Error = Error;

    leaf_forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq deserialize_identifier
        deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        match self {
            Leaf::File(value) => value.deserialize_unit_struct(name, visitor),
            Leaf::Env(text) => text.deserialize_unit_struct(name, visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self {
            Leaf::File(value) => value.deserialize_tuple(len, visitor),
            Leaf::Env(text) => text.deserialize_tuple(len, visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Leaf::File(value) => value.deserialize_tuple_struct(name, len, visitor),
            Leaf::Env(text) => text.deserialize_tuple_struct(name, len, visitor),
        }
    }

    serde::forward_to_deserialize_any! { option newtype_struct map struct enum }
}

/// The text of one environment variable, typed only by the field that receives it.
struct EnvText(String);

impl EnvText {
    /// The text read as one YAML scalar (numbers, booleans), for numeric and boolean fields.
    fn scalar(&self) -> Value {
        match serde_yaml::from_str::<Value>(&self.0) {
            Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Null)) => v,
            _ => Value::String(self.0.clone()),
        }
    }

    /// The text as a YAML document, for lists and sections; its scalars are typed by their
    /// fields in turn (a list of strings gets each item's text).
    fn yaml(self) -> serde_yaml::Deserializer<'static> {
        serde_yaml::Deserializer::from_reader(std::io::Cursor::new(self.0.into_bytes()))
    }
}

fn yaml_error(e: serde_yaml::Error) -> Error {
    // The location is always line 1 of a one-line value: the path says where it is.
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    de::Error::custom(text)
}

macro_rules! scalar_forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.scalar().$method(visitor)
            }
        )*
    };
}

macro_rules! yaml_forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.yaml().$method(visitor).map_err(yaml_error)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for EnvText {
    type Error = Error;

    /// A field that takes any type (a string-or-number setting) gets the text.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let variant: StringDeserializer<Error> = self.0.into_deserializer();
        visitor.visit_enum(variant)
    }

    serde::forward_to_deserialize_any! { char str string bytes byte_buf identifier }

    scalar_forward! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_unit deserialize_ignored_any
    }

    yaml_forward! { deserialize_seq deserialize_map }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.scalar().deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.yaml().deserialize_tuple(len, visitor).map_err(yaml_error)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.yaml()
            .deserialize_tuple_struct(name, len, visitor)
            .map_err(yaml_error)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.yaml()
            .deserialize_struct(name, fields, visitor)
            .map_err(yaml_error)
    }
}
