//! The prefiltered evaluation against the plain one: every candidate of the event's route
//! evaluated with every value loaded, over every EVTX sample event and hostile variants of them.

use attackmesh::formats::{Format, Reader, open_path};

use super::*;
use crate::sigma::SigmaSet;

/// Every candidate of the route evaluated, no prefilter, every value loaded.
fn plain<'a>(c: &Compiled, channel: &str, event_id: u32, fields: &[(&'a str, &'a str)], s: &mut Scratch) -> Vec<u32> {
    let candidates = match c.channels.get(channel.to_ascii_lowercase().as_str()) {
        Some(routes) => routes.by_event_id.get(&event_id).unwrap_or(&routes.any),
        None => &c.any_channel,
    };
    c.load(fields.iter().copied(), true, s);
    (0..c.rules.len() as u32)
        .filter(|&r| {
            let bit = 1 << (r % 64);
            let w = r as usize / 64;
            (candidates.filtered[w] | candidates.always[w]) & bit != 0
        })
        .filter(|&r| {
            let rule = &c.rules[r as usize];
            c.expr(&rule.condition, &rule.searches, s)
        })
        .collect()
}

fn check(c: &Compiled, fields: &[(&str, &str)], s: &mut Scratch) -> usize {
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let (Some(channel), Some(event_id)) = (get("Channel"), get("EventID").and_then(|v| v.trim().parse().ok())) else {
        return 0;
    };
    let mut fast = Vec::new();
    let ev = WinEvent {
        channel,
        event_id,
        fields: fields.iter().copied(),
    };
    c.matches(ev, s, &mut fast);
    let expected = plain(c, channel, event_id, fields, s);
    assert_eq!(fast, expected, "{channel}/{event_id}: {fields:?}");
    fast.len()
}

fn sample_events() -> Vec<Vec<(String, String)>> {
    let Some(data) = attackmesh_testkit::shared_data() else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for p in attackmesh_testkit::evtx_files(&data.join("samples/evtx-attack-samples")) {
        let input = open_path(&p).expect("opens");
        for record in Reader::new(Format::Evtx, input, p.display().to_string()) {
            if let Ok(Some(ev)) = record.result {
                events.push(ev.attributes.into_iter().collect());
            }
        }
    }
    events
}

/// Hostile variants of one event: values upper-cased, emptied, huge, non-ASCII, with NUL, and
/// field names repeated in another case.
fn variants(fields: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    let keep = |k: &str| k == "Channel" || k == "EventID";
    let map = |f: &dyn Fn(&str) -> String| -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| (k.clone(), if keep(k) { v.clone() } else { f(v) }))
            .collect()
    };
    let mut out = vec![
        map(&|v| v.to_uppercase()),
        map(&|_| String::new()),
        map(&|v| v.repeat(4096 / (v.len() + 1) + 1)),
        map(&|v| format!("Ünïcödé ✓ {v} \u{1F600}")),
        map(&|v| format!("{v}\0{v}")),
    ];
    let mut dup: Vec<(String, String)> = fields.to_vec();
    dup.extend(
        fields
            .iter()
            .filter(|(k, _)| !keep(k))
            .map(|(k, v)| (k.to_ascii_uppercase(), v.to_ascii_uppercase())),
    );
    dup.reverse();
    out.push(dup);
    out
}

#[test]
fn prefiltered_evaluation_equals_plain_evaluation() {
    let c = SigmaSet::embedded_compiled().expect("embedded rules");
    let events = sample_events();
    if events.is_empty() {
        eprintln!("skipped: EVTX samples not found");
        return;
    }
    let mut s = Scratch::default();
    let (mut matched, mut hostile) = (0, 0);
    for (n, ev) in events.iter().enumerate() {
        let pairs: Vec<(&str, &str)> = ev.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        matched += check(&c, &pairs, &mut s);
        if n % 13 == 0 {
            for v in variants(ev) {
                let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                hostile += check(&c, &pairs, &mut s);
            }
        }
    }
    eprintln!(
        "{} events, {matched} matches, {hostile} in hostile variants",
        events.len()
    );
    assert!(matched > 1000, "{matched} matches over the samples");
    assert!(hostile > 0);
}
