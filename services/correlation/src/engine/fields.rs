//! Fields of an enriched event as rules name them: the endpoint fields (`source.ip`,
//! `destination.port`, …), `event_type`, `description`, process fields, `technique` and
//! `tactic` (multi-valued), `rule` (evidence rule ids: attackmesh `pack/rule` and Sigma ids),
//! `attributes.<key>` (the detector's own fields, e.g. Zeek's `attributes.qtype_name`) and
//! derived fields: `user` (whichever account the event names), `dns.query`, `dns.parent` (the
//! registered-looking domain of the query) and `dns.label_length` (longest label below it).

use std::borrow::Cow;

use attackmesh::proto::{Endpoint, EnrichedEvent, Process};

/// A field a rule reads, resolved once when the rule is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `event_type`.
    EventType,
    /// `description`.
    Description,
    /// `source_service`.
    SourceService,
    /// `source.*` or `destination.*`: `ip`, `port`, `hostname`, `user`.
    Endpoint(Side, EndpointKey),
    /// `process.command_line` (destination's process, else source's).
    CommandLine,
    /// `process.name`.
    ProcessName,
    /// `technique`: any attributed technique id.
    Technique,
    /// `tactic`: any tactic id or shortname of an attributed technique.
    Tactic,
    /// `rule`: any evidence rule id.
    Rule,
    /// `user`: source user, destination user, or the detector's `username`/`user`/`client`.
    User,
    /// `attributes.<key>`.
    Attribute(String),
    /// `dns.query`: Zeek's `query` or Suricata's `dns.rrname`.
    DnsQuery,
    /// `dns.parent`: the last two labels of the query (three when the second-level label is a
    /// short public suffix part such as `co.uk`).
    DnsParent,
    /// `dns.label_length`: length of the longest label below `dns.parent`.
    DnsLabelLength,
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The initiator.
    Source,
    /// The target.
    Destination,
}

/// A field of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKey {
    /// Address.
    Ip,
    /// Port.
    Port,
    /// Host name.
    Hostname,
    /// Account.
    User,
}

impl Field {
    /// Resolves a rule's field name; `None` for a name no event can carry.
    pub fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "event_type" => Field::EventType,
            "description" => Field::Description,
            "source_service" => Field::SourceService,
            "process.command_line" | "CommandLine" => Field::CommandLine,
            "process.name" => Field::ProcessName,
            "technique" => Field::Technique,
            "tactic" => Field::Tactic,
            "rule" => Field::Rule,
            "user" => Field::User,
            "dns.query" => Field::DnsQuery,
            "dns.parent" => Field::DnsParent,
            "dns.label_length" => Field::DnsLabelLength,
            other => {
                if let Some(key) = other.strip_prefix("attributes.") {
                    return (!key.is_empty()).then(|| Field::Attribute(key.to_owned()));
                }
                let (side, key) = other.split_once('.')?;
                let side = match side {
                    "source" => Side::Source,
                    "destination" => Side::Destination,
                    _ => return None,
                };
                let key = match key {
                    "ip" => EndpointKey::Ip,
                    "port" => EndpointKey::Port,
                    "hostname" => EndpointKey::Hostname,
                    "user" => EndpointKey::User,
                    _ => return None,
                };
                Field::Endpoint(side, key)
            }
        })
    }

    /// Whether the field can hold several values ([`Field::values`] must be used).
    pub fn is_multi(&self) -> bool {
        matches!(self, Field::Technique | Field::Tactic | Field::Rule)
    }

    /// The field's single value; `None` when unset or empty.
    pub fn get<'a>(&self, e: &'a EnrichedEvent) -> Option<Cow<'a, str>> {
        let v: Cow<'a, str> = match self {
            Field::EventType => Cow::Borrowed(&e.event_type),
            Field::Description => Cow::Borrowed(&e.description),
            Field::SourceService => Cow::Borrowed(&e.source_service),
            Field::Endpoint(side, key) => {
                let ep = endpoint(e, *side)?;
                match key {
                    EndpointKey::Ip => Cow::Borrowed(&ep.ip),
                    EndpointKey::Port if ep.port == 0 => return None,
                    EndpointKey::Port => Cow::Owned(ep.port.to_string()),
                    EndpointKey::Hostname => Cow::Borrowed(&ep.hostname),
                    EndpointKey::User => Cow::Borrowed(&ep.user),
                }
            }
            Field::CommandLine => Cow::Borrowed(process(e)?.command_line.as_str()),
            Field::ProcessName => Cow::Borrowed(process(e)?.name.as_str()),
            Field::User => [
                endpoint(e, Side::Source).map(|p| p.user.as_str()),
                endpoint(e, Side::Destination).map(|p| p.user.as_str()),
                e.attributes.get("username").map(String::as_str),
                e.attributes.get("user").map(String::as_str),
                e.attributes.get("client").map(String::as_str),
                e.attributes.get("cookie").map(String::as_str),
            ]
            .into_iter()
            .flatten()
            .find(|u| !u.is_empty() && *u != "-")
            .map(Cow::Borrowed)?,
            Field::Attribute(key) => Cow::Borrowed(e.attributes.get(key)?.as_str()),
            Field::DnsQuery => Cow::Borrowed(dns_query(e)?),
            Field::DnsParent => {
                let q = dns_query(e)?;
                Cow::Borrowed(&q[split_parent(q)..])
            }
            Field::DnsLabelLength => {
                let q = dns_query(e)?;
                let below = &q[..split_parent(q)];
                let longest = below.split('.').map(str::len).max().unwrap_or(0);
                Cow::Owned(longest.to_string())
            }
            Field::Technique | Field::Tactic | Field::Rule => return self.values(e).into_iter().next(),
        };
        (!v.is_empty()).then_some(v)
    }

    /// Every value of the field (one at most for single-valued fields).
    pub fn values<'a>(&self, e: &'a EnrichedEvent) -> Vec<Cow<'a, str>> {
        let techniques = e.metadata.as_ref().map(|m| m.techniques.as_slice()).unwrap_or_default();
        match self {
            Field::Technique => e.technique_ids.iter().map(|t| Cow::Borrowed(t.as_str())).collect(),
            Field::Tactic => techniques
                .iter()
                .flat_map(|t| t.tactics.iter())
                .flat_map(|t| [t.id.as_str(), t.shortname.as_str()])
                .map(Cow::Borrowed)
                .collect(),
            Field::Rule => techniques
                .iter()
                .flat_map(|t| t.evidence.iter())
                .map(|ev| Cow::Borrowed(ev.rule_id.as_str()))
                .collect(),
            single => single.get(e).into_iter().collect(),
        }
    }
}

fn endpoint(e: &EnrichedEvent, side: Side) -> Option<&Endpoint> {
    match side {
        Side::Source => e.source.as_ref(),
        Side::Destination => e.destination.as_ref(),
    }
}

fn process(e: &EnrichedEvent) -> Option<&Process> {
    [Side::Destination, Side::Source]
        .into_iter()
        .filter_map(|s| endpoint(e, s)?.process.as_ref())
        .find(|p| !p.command_line.is_empty() || !p.name.is_empty())
}

fn dns_query(e: &EnrichedEvent) -> Option<&str> {
    let q = e
        .attributes
        .get("query")
        .or_else(|| e.attributes.get("dns.rrname"))
        .or_else(|| e.attributes.get("QueryName"))?
        .trim_end_matches('.');
    (!q.is_empty() && q != "-").then_some(q)
}

/// Byte offset where the parent domain of `query` starts.
fn split_parent(query: &str) -> usize {
    let dots: Vec<usize> = query.match_indices('.').map(|(i, _)| i).collect();
    let labels = dots.len() + 1;
    if labels <= 2 {
        return 0;
    }
    // Second-level label of a two-part suffix (co.uk, com.au): keep three labels.
    let second = &query[dots[dots.len() - 2] + 1..dots[dots.len() - 1]];
    let keep = if second.len() <= 3 && matches!(second, "co" | "com" | "net" | "org" | "gov" | "ac" | "edu") {
        3
    } else {
        2
    };
    if labels <= keep {
        return 0;
    }
    dots[dots.len() - keep] + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_parent_and_label_length() {
        assert_eq!(&"a.b.example.com"[split_parent("a.b.example.com")..], "example.com");
        assert_eq!(&"x.bbc.co.uk"[split_parent("x.bbc.co.uk")..], "bbc.co.uk");
        assert_eq!(split_parent("example.com"), 0);
        let mut e = EnrichedEvent::default();
        e.attributes
            .insert("query".into(), "aGVsbG8gd29ybGQgdGhpcyBpcw.3.t.evil.net".into());
        assert_eq!(Field::DnsParent.get(&e).as_deref(), Some("evil.net"));
        assert_eq!(Field::DnsLabelLength.get(&e).as_deref(), Some("26"));
        assert_eq!(
            Field::parse("destination.port"),
            Some(Field::Endpoint(Side::Destination, EndpointKey::Port))
        );
        assert_eq!(Field::parse("nope"), None);
    }
}
