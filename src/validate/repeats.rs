//! Events of one batch that share an identity: identical copies are one event, copies that
//! differ are refused, every one of them, with a violation naming the id.
//!
//! A detector that sends one detection twice in a batch (a retry glued to new work) loses
//! nothing; one that reuses an id for different detections is told so instead of having one of
//! them win at random further down. Costs one hash lookup per event when no id repeats.

use foldhash::{HashMap, HashMapExt};

use crate::proto::FieldViolation;

/// How one event of a batch stands towards the others with the same identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InBatch {
    /// The first (or only) event with its identity, or an event without an id.
    First,
    /// An identical copy of the event at this earlier index: the same event, taken once.
    CopyOf(usize),
    /// Events with this identity differ: each of them is refused with this violation.
    Conflict(FieldViolation),
}

/// Sorts out the events of one batch that share an identity. `key` gives an event's identity:
/// its `event_id`, with the revision for enriched events (0 for detections), so the revisions of
/// one event are different events. Events with an empty id are never repeats.
pub fn repeats<T: PartialEq>(events: &[T], key: impl Fn(&T) -> (&str, u32)) -> Vec<InBatch> {
    let mut out = vec![InBatch::First; events.len()];
    let mut first: HashMap<(&str, u32), usize> = HashMap::with_capacity(events.len());
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let k = key(event);
        if k.0.is_empty() {
            continue;
        }
        let earliest = *first.entry(k).or_insert(i);
        if earliest != i {
            match groups.iter_mut().find(|(f, _)| *f == earliest) {
                Some((_, later)) => later.push(i),
                None => groups.push((earliest, vec![i])),
            }
        }
    }
    for (earliest, later) in groups {
        if later.iter().all(|&j| events[j] == events[earliest]) {
            later.iter().for_each(|&j| out[j] = InBatch::CopyOf(earliest));
            continue;
        }
        let (id, _) = key(&events[earliest]);
        let indexes: Vec<String> = std::iter::once(earliest)
            .chain(later.iter().copied())
            .map(|i| i.to_string())
            .collect();
        let violation = FieldViolation {
            field: "event_id".into(),
            description: format!(
                "`{id}` is the id of {} different events in this batch (at {}); give each detection its own id",
                indexes.len(),
                indexes.join(", ")
            ),
        };
        for i in std::iter::once(earliest).chain(later) {
            out[i] = InBatch::Conflict(violation.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_one_event_and_differing_events_under_one_id_are_all_refused() {
        let events = [
            ("a", 1, "x"),
            ("b", 1, "x"),
            ("a", 1, "x"),
            ("b", 1, "y"),
            ("a", 2, "z"),
            ("", 0, "p"),
            ("", 0, "q"),
            ("b", 1, "x"),
        ];
        let got = repeats(&events, |e| (e.0, e.1));
        assert_eq!(got[0], InBatch::First);
        assert_eq!(got[2], InBatch::CopyOf(0));
        assert_eq!(got[4], InBatch::First, "another revision is another event");
        assert_eq!(got[5..7], [InBatch::First, InBatch::First], "no id, no repeat");
        for i in [1, 3, 7] {
            let InBatch::Conflict(v) = &got[i] else {
                panic!("{i}: {:?}", got[i])
            };
            assert_eq!(v.field, "event_id");
            assert!(
                v.description.contains("`b`") && v.description.contains("1, 3, 7"),
                "{v:?}"
            );
        }
    }
}
