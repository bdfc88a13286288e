//! Where rule evaluation reads field values from: the fields of a detection event, or free
//! text mapped by `MapPatterns`. Reading never allocates; it decides nothing about matches.

use attackmesh::held::EventView;
use attackmesh::proto::{DetectionEvent, DetectorKind, Endpoint};
use attackmesh::text::severity_name;

/// Attribute keys that carry a process command line, in order of preference, after the
/// event's own `source.process.command_line` and `destination.process.command_line`.
const COMMAND_LINE_ATTRS: &[&str] = &[
    "input",
    "output_fields.proc.cmdline",
    "proc.cmdline",
    "process.command_line",
    "command_line",
    "cmdline",
    "data.command",
];

/// What a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum FieldRef {
    Description,
    EventType,
    SourceService,
    Severity,
    CommandLine,
    Endpoint(Side, EndpointField),
    Attr(Box<str>),
}

/// Which endpoint of an event a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    Source,
    Destination,
}

/// A field of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EndpointField {
    Ip,
    Port,
    Hostname,
    User,
    ProcessName,
    ProcessExecutable,
    ProcessCommandLine,
    ProcessParentName,
}

/// A field value: text, or a port number (formatted only when compared as text).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Str(&'a str),
    Num(u32),
}

/// Room to format a port number without allocating.
#[derive(Default)]
pub(crate) struct NumBuf([u8; 10]);

impl<'a> Value<'a> {
    pub(super) fn as_text<'b>(&self, buf: &'b mut NumBuf) -> &'b str
    where
        'a: 'b,
    {
        match *self {
            Value::Str(s) => s,
            Value::Num(mut n) => {
                let mut i = buf.0.len();
                loop {
                    i -= 1;
                    buf.0[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                std::str::from_utf8(&buf.0[i..]).unwrap_or_default()
            }
        }
    }

    pub(super) fn as_number(&self) -> Option<f64> {
        match *self {
            Value::Str(s) => s.trim().parse().ok(),
            Value::Num(n) => Some(f64::from(n)),
        }
    }
}

/// Where rule evaluation reads field values from.
pub(crate) trait Fields {
    /// The event type; `None` in pattern mode without a type (type filters are ignored).
    fn event_type(&self) -> Option<&str>;
    /// The detector kind; `None` when kind filters are ignored.
    fn kind(&self) -> Option<DetectorKind>;
    /// A field's value; empty values are absent.
    fn get(&self, field: &FieldRef) -> Option<Value<'_>>;
}

/// Fields of a detection event, its attributes wherever they are held.
pub(crate) struct EventFields<'e, V>(pub(crate) &'e V);

impl<V: EventView<DetectionEvent>> Fields for EventFields<'_, V> {
    fn event_type(&self) -> Option<&str> {
        Some(&self.0.event().event_type)
    }

    fn kind(&self) -> Option<DetectorKind> {
        Some(match DetectorKind::try_from(self.0.event().detector_kind) {
            Ok(DetectorKind::Unspecified) | Err(_) => DetectorKind::Other,
            Ok(k) => k,
        })
    }

    fn get(&self, field: &FieldRef) -> Option<Value<'_>> {
        let view = self.0;
        let ev = view.event();
        match field {
            FieldRef::Attr(key) => view.attribute(key).and_then(s).map(Value::Str),
            FieldRef::Description => s(&ev.description).map(Value::Str),
            FieldRef::EventType => s(&ev.event_type).map(Value::Str),
            FieldRef::SourceService => s(&ev.source_service).map(Value::Str),
            FieldRef::Severity => Some(Value::Str(severity_name(ev.severity))),
            FieldRef::CommandLine => command_line(view).map(Value::Str),
            FieldRef::Endpoint(side, f) => {
                let ep = match side {
                    Side::Source => ev.source.as_ref(),
                    Side::Destination => ev.destination.as_ref(),
                }?;
                endpoint_field(ep, *f)
            }
        }
    }
}

fn endpoint_field(ep: &Endpoint, f: EndpointField) -> Option<Value<'_>> {
    let p = ep.process.as_ref();
    match f {
        EndpointField::Ip => s(&ep.ip).map(Value::Str),
        EndpointField::Port => (ep.port != 0).then_some(Value::Num(ep.port)),
        EndpointField::Hostname => s(&ep.hostname).map(Value::Str),
        EndpointField::User => s(&ep.user).map(Value::Str),
        EndpointField::ProcessName => p.and_then(|p| s(&p.name)).map(Value::Str),
        EndpointField::ProcessExecutable => p.and_then(|p| s(&p.executable)).map(Value::Str),
        EndpointField::ProcessCommandLine => p.and_then(|p| s(&p.command_line)).map(Value::Str),
        EndpointField::ProcessParentName => p.and_then(|p| s(&p.parent_name)).map(Value::Str),
    }
}

/// The command line an event carries: a process command line, else a known attribute.
fn command_line(view: &impl EventView<DetectionEvent>) -> Option<&str> {
    fn process(ep: &Option<Endpoint>) -> Option<&str> {
        ep.as_ref()
            .and_then(|e| e.process.as_ref())
            .map(|p| p.command_line.as_str())
            .filter(|c| !c.is_empty())
    }
    let ev = view.event();
    if let Some(c) = process(&ev.source).or_else(|| process(&ev.destination)) {
        return Some(c);
    }
    if view.attribute_count() > 64 {
        return COMMAND_LINE_ATTRS
            .iter()
            .find_map(|k| view.attribute(k).filter(|v| !v.is_empty()));
    }
    // One pass over a typical attribute map is cheaper than a lookup per candidate key. It reads
    // keys and value lengths only, so a held event's values are not read as text; the value
    // found is then looked up.
    // Bit n is set when some candidate key is n bytes long: most keys are skipped on length.
    const LENGTHS: u64 = {
        let mut mask = 0u64;
        let mut i = 0;
        while i < COMMAND_LINE_ATTRS.len() {
            mask |= 1 << COMMAND_LINE_ATTRS[i].len();
            i += 1;
        }
        mask
    };
    let mut best: Option<usize> = None;
    for (k, v) in view.attribute_bytes() {
        if k.len() >= 64 || LENGTHS & (1 << k.len()) == 0 || v.is_empty() {
            continue;
        }
        let rank = COMMAND_LINE_ATTRS.iter().position(|c| c.as_bytes() == k);
        if let Some(rank) = rank.filter(|rank| best.is_none_or(|b| *rank < b)) {
            best = Some(rank);
        }
    }
    view.attribute(COMMAND_LINE_ATTRS[best?])
}

/// Free text mapped by `MapPatterns`: every field reads the pattern.
pub(crate) struct PatternFields<'p> {
    pub(crate) pattern: &'p str,
    pub(crate) event_type: Option<&'p str>,
    pub(crate) kind: Option<DetectorKind>,
}

impl Fields for PatternFields<'_> {
    fn event_type(&self) -> Option<&str> {
        self.event_type
    }
    fn kind(&self) -> Option<DetectorKind> {
        self.kind
    }
    fn get(&self, _field: &FieldRef) -> Option<Value<'_>> {
        (!self.pattern.is_empty()).then_some(Value::Str(self.pattern))
    }
}

/// `Some(v)` unless `v` is empty.
fn s(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_without_allocation() {
        let mut buf = NumBuf::default();
        assert_eq!(Value::Num(2222).as_text(&mut buf), "2222");
        assert_eq!(Value::Num(0).as_text(&mut NumBuf::default()), "0");
    }
}
