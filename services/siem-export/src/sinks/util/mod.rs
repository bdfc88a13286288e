//! What more than one sink uses: the ATT&CK view of an event, the shapes events are written in
//! (ECS document, HEC envelope) and the HTTP client. Sinks never import one another; code two
//! of them need lives here, and nothing here knows which sink calls it.

pub mod attack;
pub mod ecs;
pub mod hec;
pub(crate) mod http;
#[cfg(test)]
mod tests;

/// RFC 3339 with as many fractional digits as needed, `Z`; `None` without a timestamp.
pub fn rfc3339(ts: Option<&pbjson_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    let dt = chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))?;
    Some(dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}
