//! Selections: the base rules of the built-in pack, written as data. A selection is a list of
//! alternatives (`match:` one map or a list of maps, any of which may match) and an optional
//! `not:` map whose any match excludes the event. In a map every key must match (AND) and a key's
//! list of values is any-of (OR), as in Sigma detection maps. Keys are a field name with an
//! optional Sigma modifier: `contains`, `startswith`, `endswith`, `re`, `gte`, `lte`, `cidr`,
//! `exists`. String comparisons ignore ASCII case, as Sigma's do.

use std::{collections::BTreeMap, net::IpAddr};

use attackmesh::proto::EnrichedEvent;
use regex::Regex;

use super::fields::Field;

/// How one key compares.
#[derive(Debug, Clone)]
enum Test {
    Eq(Vec<String>),
    Contains(Vec<String>),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Re(Vec<Regex>),
    Gte(f64),
    Lte(f64),
    Cidr(Vec<(IpAddr, u8)>),
    Exists(bool),
}

/// One key of a map.
#[derive(Debug, Clone)]
struct Condition {
    field: Field,
    test: Test,
}

/// All keys of one map.
#[derive(Debug, Clone, Default)]
pub struct Map {
    conditions: Vec<Condition>,
}

/// A compiled selection.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    any: Vec<Map>,
    not: Option<Map>,
}

/// A YAML value of a map: one scalar or a list of them.
pub type RawMap = BTreeMap<String, serde_yaml::Value>;

impl Selection {
    /// Compiles `any` (alternatives) and `not`.
    pub fn compile(any: &[RawMap], not: Option<&RawMap>) -> Result<Self, String> {
        Ok(Self {
            any: any.iter().map(Map::compile).collect::<Result<_, _>>()?,
            not: not.map(Map::compile).transpose()?,
        })
    }

    /// Whether `event` is selected.
    pub fn matches(&self, event: &EnrichedEvent) -> bool {
        (self.any.is_empty() || self.any.iter().any(|m| m.matches(event)))
            && !self
                .not
                .as_ref()
                .is_some_and(|n| n.conditions.iter().any(|c| c.matches(event)))
    }
}

fn scalars(key: &str, value: &serde_yaml::Value) -> Result<Vec<String>, String> {
    let one = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{key}: values must be strings, numbers or booleans")),
    };
    match value {
        serde_yaml::Value::Sequence(items) if items.is_empty() => Err(format!("{key}: empty list")),
        serde_yaml::Value::Sequence(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

fn number(key: &str, values: &[String]) -> Result<f64, String> {
    match values {
        [one] => one.parse().map_err(|_| format!("{key}: {one:?} is not a number")),
        _ => Err(format!("{key}: takes one number")),
    }
}

fn cidr(key: &str, text: &str) -> Result<(IpAddr, u8), String> {
    let (ip, bits) = text.split_once('/').unwrap_or((text, ""));
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{key}: {text:?} is not an address or CIDR block"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        "" => max,
        b => b
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or(format!("{key}: bad prefix in {text:?}"))?,
    };
    Ok((ip, bits))
}

/// Whether `ip` is inside `net/bits`.
fn in_block(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (a >> shift) == (b >> shift)
}

impl Map {
    /// Compiles one map.
    pub fn compile(raw: &RawMap) -> Result<Self, String> {
        let mut conditions = Vec::with_capacity(raw.len());
        for (key, value) in raw {
            let (name, modifier) = key.split_once('|').unwrap_or((key, ""));
            let field = Field::parse(name).ok_or(format!("unknown field {name:?}"))?;
            let values = scalars(key, value)?;
            let lower = || values.iter().map(|v| v.to_ascii_lowercase()).collect();
            let test = match modifier {
                "" => Test::Eq(lower()),
                "contains" => Test::Contains(lower()),
                "startswith" => Test::StartsWith(lower()),
                "endswith" => Test::EndsWith(lower()),
                "re" => Test::Re(
                    values
                        .iter()
                        .map(|v| Regex::new(v).map_err(|e| format!("{key}: {e}")))
                        .collect::<Result<_, _>>()?,
                ),
                "gte" => Test::Gte(number(key, &values)?),
                "lte" => Test::Lte(number(key, &values)?),
                "cidr" => Test::Cidr(values.iter().map(|v| cidr(key, v)).collect::<Result<_, _>>()?),
                "exists" => Test::Exists(values.first().is_some_and(|v| v == "true")),
                other => return Err(format!("{key}: unknown modifier {other:?}")),
            };
            conditions.push(Condition { field, test });
        }
        Ok(Self { conditions })
    }

    /// Whether every key matches `event`.
    pub fn matches(&self, event: &EnrichedEvent) -> bool {
        self.conditions.iter().all(|c| c.matches(event))
    }
}

impl Condition {
    fn matches(&self, event: &EnrichedEvent) -> bool {
        if let Test::Exists(want) = self.test {
            return self.field.get(event).is_some() == want;
        }
        if self.field.is_multi() {
            return self.field.values(event).iter().any(|v| self.test.holds(v));
        }
        self.field.get(event).is_some_and(|v| self.test.holds(&v))
    }
}

impl Test {
    fn holds(&self, value: &str) -> bool {
        let lower = || value.to_ascii_lowercase();
        match self {
            Test::Eq(vs) => vs.iter().any(|v| v.eq_ignore_ascii_case(value)),
            Test::Contains(vs) => {
                let l = lower();
                vs.iter().any(|v| l.contains(v.as_str()))
            }
            Test::StartsWith(vs) => {
                let l = lower();
                vs.iter().any(|v| l.starts_with(v.as_str()))
            }
            Test::EndsWith(vs) => {
                let l = lower();
                vs.iter().any(|v| l.ends_with(v.as_str()))
            }
            Test::Re(rs) => rs.iter().any(|r| r.is_match(value)),
            Test::Gte(n) => value.parse::<f64>().is_ok_and(|v| v >= *n),
            Test::Lte(n) => value.parse::<f64>().is_ok_and(|v| v <= *n),
            Test::Cidr(blocks) => value
                .parse::<IpAddr>()
                .is_ok_and(|ip| blocks.iter().any(|b| in_block(ip, *b))),
            Test::Exists(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(yaml: &str) -> RawMap {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn maps_and_modifiers() {
        let mut e = EnrichedEvent {
            event_type: "zeek.conn".into(),
            destination: Some(attackmesh::proto::Endpoint {
                ip: "10.1.2.3".into(),
                port: 3389,
                ..Default::default()
            }),
            ..Default::default()
        };
        e.attributes.insert("qtype_name".into(), "TXT".into());
        let s = Selection::compile(
            &[map(
                "{event_type: ZEEK.CONN, destination.port: [445, 3389], destination.ip|cidr: 10.0.0.0/8}",
            )],
            Some(&map("{attributes.qtype_name: txt}")),
        )
        .unwrap();
        assert!(!s.matches(&e), "excluded by not");
        e.attributes.clear();
        assert!(s.matches(&e));
        assert!(
            Selection::compile(&[map("{bogus: 1}")], None)
                .unwrap_err()
                .contains("bogus")
        );
        assert!(Selection::compile(&[map("{event_type|zz: 1}")], None).is_err());
        assert!(Selection::compile(&[map("{source.ip|cidr: 10.0.0.0/40}")], None).is_err());
    }
}
