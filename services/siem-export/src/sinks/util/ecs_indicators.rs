//! The indicators of an ECS document: the typed `threat.indicator.*` fields and, for an
//! indicator no typed field takes (a CIDR block, an account, a command line, …),
//! `attackmesh.indicators` with its type — the pairing the flat `threat.indicator.name` and
//! `threat.indicator.type` arrays lose. Written by the [`json`](super::json) writer; no I/O.

use std::net::IpAddr;

use attackmesh::proto::{Indicator, IndicatorType};

use attackmesh::json::Json;

use super::attack::stix_type;

fn kind(i: &Indicator) -> IndicatorType {
    IndicatorType::try_from(i.r#type).unwrap_or(IndicatorType::Unspecified)
}

/// Values of the indicators of `kinds`, without empties and repeats (hashes compared as the
/// lower case they are written in).
fn values<'a>(list: &'a [Indicator], kinds: &'a [IndicatorType]) -> impl Iterator<Item = &'a str> + Clone {
    list.iter()
        .filter(move |i| kinds.contains(&kind(i)))
        .map(|i| i.value.as_str())
}

fn hashes(j: &mut Json<'_>, key: &str, list: &[Indicator], t: IndicatorType) {
    let mut seen: Vec<String> = Vec::new();
    for v in values(list, &[t]) {
        let lower = v.to_ascii_lowercase();
        if !lower.is_empty() && !seen.contains(&lower) {
            seen.push(lower);
        }
    }
    j.strs(key, seen.iter().map(String::as_str));
}

/// The `threat.indicator` object (inside `threat`), left out without indicators. The kinds
/// present are found in one pass, and the fields of a kind no indicator has are not looked for.
pub(super) fn typed(j: &mut Json<'_>, list: &[Indicator]) {
    if list.is_empty() {
        return;
    }
    let present = list.iter().fold(0u64, |present, i| present | bit(kind(i)));
    let any = |kinds: &[IndicatorType]| kinds.iter().any(|&k| present & bit(k) != 0);
    use IndicatorType::{Domain, Email, FileMd5, FileName, FileSha1, FileSha256, Ipv4, Ipv6, Url};
    j.obj("indicator");
    j.str("provider", "attackmesh");
    if any(&[Email]) {
        j.obj("email");
        j.unique_strs("address", values(list, &[Email]));
        j.end();
    }
    if any(&[FileMd5, FileSha1, FileSha256, FileName]) {
        j.obj("file");
        j.obj("hash");
        hashes(j, "md5", list, FileMd5);
        hashes(j, "sha1", list, FileSha1);
        hashes(j, "sha256", list, FileSha256);
        j.end();
        j.unique_strs("name", values(list, &[FileName]));
        j.end();
    }
    if any(&[Ipv4, Ipv6]) {
        let mut ips: Vec<IpAddr> = Vec::new();
        for v in values(list, &[Ipv4, Ipv6]) {
            if let Ok(ip) = v.parse::<IpAddr>()
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
        j.arr("ip");
        ips.iter().for_each(|ip| j.item_ip(ip));
        j.end();
    }
    j.unique_strs("name", list.iter().map(|i| i.value.as_str()));
    j.unique_strs("type", list.iter().map(|i| stix_type(i.r#type)));
    if any(&[Domain, Url]) {
        j.obj("url");
        j.unique_strs("domain", values(list, &[Domain]));
        j.unique_strs("original", values(list, &[Url]));
        j.end();
    }
    j.end();
}

/// The bit of `kind` in a set of kinds (every kind is numbered below 64).
fn bit(kind: IndicatorType) -> u64 {
    1 << (kind as u32 & 63)
}

/// `attackmesh.indicators`: the indicators no typed field takes, with their types.
pub(super) fn untyped(j: &mut Json<'_>, list: &[Indicator]) {
    j.arr("indicators");
    for i in list {
        let typed = match kind(i) {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => i.value.parse::<IpAddr>().is_ok(),
            IndicatorType::Domain
            | IndicatorType::Url
            | IndicatorType::FileMd5
            | IndicatorType::FileSha1
            | IndicatorType::FileSha256
            | IndicatorType::FileName
            | IndicatorType::Email => true,
            _ => false,
        };
        if !typed {
            j.item_obj();
            j.str_kept("type", stix_type(i.r#type));
            j.str_kept("value", &i.value);
            j.end();
        }
    }
    j.end();
}
