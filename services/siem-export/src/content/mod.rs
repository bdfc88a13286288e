//! SIEM content built from the ATT&CK knowledge base and the loaded rules, for the SIEMs the
//! sinks deliver to: Kibana detection rules that put each technique on Elastic Security's
//! ATT&CK views ([`elastic`]), and a Splunk app for the HEC sink's `attackmesh:alert` events
//! ([`splunk`]). `attackmesh siem …` writes them; nothing here sends anything.

pub mod elastic;
pub mod splunk;
#[cfg(test)]
mod tests;
