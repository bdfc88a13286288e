//! A JSON document built by dotted paths, leaving empty values out: how the ECS and OCSF shapes
//! are laid out. No knowledge of either shape here.

use serde_json::{Map, Value};

/// A JSON object built by dotted paths; empty values are left out.
#[derive(Default)]
pub(crate) struct Doc(Map<String, Value>);

impl Doc {
    /// The document as a JSON object.
    pub(crate) fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// The value at `path` (`a.b.c`), if set.
    pub(crate) fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut node = self.0.get(parts.next()?)?;
        for part in parts {
            node = node.get(part)?;
        }
        Some(node)
    }

    /// Sets `path` (`a.b.c`) to `value` unless it is empty (null, `""`, `[]`, `{}`).
    pub(crate) fn set(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        let empty = match &value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if empty {
            return;
        }
        let mut node = &mut self.0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_owned(), value);
                return;
            }
            let entry = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else { return };
            node = next;
        }
    }
}

/// Adds `value` to `list` once.
pub(crate) fn push_unique(list: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !list.iter().any(|v| v == value) {
        list.push(value.to_owned());
    }
}
