//! The prefiltered evaluation against the plain one: every rule whose log source stands for the
//! event evaluated with every value loaded, over every EVTX sample event and hostile variants
//! of them.

use attackmesh::formats::{Format, Reader, open_path};

use super::*;
use crate::sigma::prefilter::{Needles, Plan};
use crate::sigma::{SigmaPack, SigmaSet, compile::Search, value::Matcher};

/// Every rule whose log source stands for the event's channel and event id evaluated, with no
/// prefilter and every value loaded. It reads the rules' log sources, not the routes built
/// from them.
fn plain<'a>(c: &Compiled, channel: &str, event_id: u32, fields: &[(&'a str, &'a str)], s: &mut Scratch) -> Vec<u32> {
    let channel = channel.to_ascii_lowercase();
    let applies = |rule: &crate::sigma::compile::SigmaRule| match rule.logsource.routes() {
        Ok(None) => true,
        Ok(Some(routes)) => routes
            .iter()
            .any(|r| r.channel == channel && (r.event_ids.is_empty() || r.event_ids.contains(&event_id))),
        Err(_) => false,
    };
    // Every value, each field found in the whole set's names, not the route's plan.
    c.clear(s);
    for (k, v) in fields {
        let field = c.fields.get(k.to_ascii_lowercase().as_str()).copied().unwrap_or(NONE);
        push(s, field, v);
    }
    (0..c.rules.len() as u32)
        .filter(|&r| {
            let rule = &c.rules[r as usize];
            applies(rule) && c.expr(&rule.condition, &rule.searches, s)
        })
        .collect()
}

/// The routing fields of an event as the router reads them: the first of each name in any
/// case.
fn route_of<'a>(fields: &[(&'a str, &'a str)]) -> Option<(&'a str, u32)> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    Some((get("Channel")?, get("EventID")?.trim().parse().ok()?))
}

/// The rules of `c` the prefiltered evaluation finds for an event of `fields`, which carry its
/// channel and event id.
fn matching(c: &Compiled, fields: &[(&str, &str)], s: &mut Scratch) -> Vec<u32> {
    let (channel, event_id) = route_of(fields).expect("a channel and an event id");
    let mut out = Vec::new();
    let ev = WinEvent {
        channel,
        event_id,
        fields: fields.iter().copied(),
    };
    c.matches(ev, s, &mut out);
    out
}

/// The rules matching an event of `fields`, checked against the plain evaluation; none for an
/// event without a channel or an event id.
fn check(c: &Compiled, fields: &[(&str, &str)], s: &mut Scratch) -> Vec<u32> {
    let Some((channel, event_id)) = route_of(fields) else {
        return Vec::new();
    };
    let fast = matching(c, fields, s);
    let expected = plain(c, channel, event_id, fields, s);
    assert_eq!(
        fast,
        expected,
        "{channel}/{event_id}: {fields:?} {:?}",
        expected.iter().map(|&r| &c.rules[r as usize].path).collect::<Vec<_>>()
    );
    fast
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

/// Hostile variants of one event: values upper-cased, emptied, huge, non-ASCII, with NUL, field
/// names repeated in another case, and another event id ahead of the event's own.
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
    // A keyword search's literal in a field no rule names, in another case.
    let mut keyword = fields.to_vec();
    keyword.push((
        "UnnamedByAnyRule".into(),
        "run PRIVILEGE::Debug then Sekurlsa::logonpasswords".into(),
    ));
    out.push(keyword);
    let mut dup: Vec<(String, String)> = fields.to_vec();
    dup.extend(
        fields
            .iter()
            .filter(|(k, _)| !keep(k))
            .map(|(k, v)| (k.to_ascii_uppercase(), v.to_ascii_uppercase())),
    );
    dup.reverse();
    out.push(dup);
    // Rules are routed by the event id they test: the first `EventID` in any case is the one
    // both read, here another one than the event's.
    for other in ["16", "27", "4624"] {
        let mut routed = vec![("EVENTID".to_owned(), other.to_owned())];
        routed.extend(fields.iter().cloned());
        out.push(routed);
    }
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
        matched += check(&c, &pairs, &mut s).len();
        if n % 13 == 0 {
            for v in variants(ev) {
                let pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                hostile += check(&c, &pairs, &mut s).len();
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

/// Every route's candidates.
fn routes(c: &Compiled) -> impl Iterator<Item = &Candidates> {
    c.channels
        .values()
        .flat_map(|r| std::iter::once(&r.any).chain(r.by_event_id.values()))
        .chain(std::iter::once(&c.any_channel))
}

/// Built and all regular expressions.
fn regexes(c: &Compiled) -> (usize, usize) {
    let regexes: Vec<bool> = c
        .rules
        .iter()
        .flat_map(|r| &r.searches)
        .flat_map(|s| match s {
            Search::All(tests) => tests.iter().collect::<Vec<_>>(),
            Search::Any(maps) => maps.iter().flatten().collect(),
        })
        .flat_map(|t| &t.matchers)
        .filter_map(|m| match m {
            Matcher::Regex(re) => Some(re.is_built()),
            _ => None,
        })
        .collect();
    (regexes.iter().filter(|b| **b).count(), regexes.len())
}

#[test]
fn plans_automata_and_regexes_are_built_only_for_the_events_that_reach_them() {
    // A set of its own: the shared embedded one is used by other tests of this process.
    let c = Compiled::compile(&SigmaPack::embedded().expect("embedded rules"));
    let (regexes_built, all_regexes) = regexes(&c);
    assert_eq!(regexes_built, 0, "no regex is built when the rules load");
    assert!(all_regexes > 50, "{all_regexes} regexes");
    assert_eq!(routes(&c).filter(|r| r.built_plan().is_some()).count(), 0);

    let fields = [
        ("Channel", "Microsoft-Windows-Sysmon/Operational"),
        ("EventID", "1"),
        ("Image", r"C:\Windows\System32\cmd.exe"),
        ("CommandLine", "cmd.exe /c whoami /all"),
    ];
    let mut s = Scratch::default();
    let mut out = Vec::new();
    let ev = || WinEvent {
        channel: fields[0].1,
        event_id: 1,
        fields: fields.iter().copied(),
    };
    c.matches(ev(), &mut s, &mut out);
    let plans: Vec<&Plan> = routes(&c).filter_map(Candidates::built_plan).collect();
    assert_eq!(plans.len(), 1, "one event builds the plan of its route only");
    let plan = plans[0];
    let built = plan.all_automata().filter(|n| n.is_built()).count();
    let all = plan.all_automata().count();
    eprintln!("one event built {built} of its route's {all} automata");
    assert!(built > 0, "the event's fields were scanned");
    assert!(all > built + 10, "{built} of {all} automata built");
    for (name, &id) in c.fields.iter() {
        if plan.automaton(plan.read(id)).is_some_and(Needles::is_built) {
            assert!(
                fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)),
                "built the automaton of `{name}`, a field the event does not carry"
            );
        }
    }
    let (regexes_built, _) = regexes(&c);
    assert!(
        regexes_built < all_regexes,
        "{regexes_built} of {all_regexes} regexes built for one event"
    );

    // The same event again matches the same rules with what is built.
    let first = std::mem::take(&mut out);
    c.matches(ev(), &mut s, &mut out);
    assert_eq!(out, first);
}

#[test]
fn a_keyword_is_found_in_a_field_no_rule_names_in_any_case() {
    let c = SigmaSet::embedded_compiled().expect("embedded rules");
    let mimikatz = c
        .rules
        .iter()
        .position(|r| r.path.ends_with("win_alert_mimikatz_keywords.yml"))
        .expect("the Mimikatz keyword rule") as u32;
    let mut s = Scratch::default();
    let run = |extra: &str, event_id: &str, s: &mut Scratch| {
        let fields = [
            ("Channel", "Security"),
            ("EventID", event_id),
            ("SubjectUserName", "alice"),
            ("NamedByNoRule", extra),
        ];
        check(&c, &fields, s).contains(&mimikatz)
    };
    assert!(run("mimikatz # SEKURLSA::LogonPasswords", "4688", &mut s));
    assert!(run("x Privilege::Debug", "4624", &mut s));
    assert!(!run("sekurlsa", "4688", &mut s), "a keyword is matched whole");
    assert!(!run("SEKURLSA::", "15", &mut s), "the rule's filter still holds");
    assert!(!run("nothing to see", "4688", &mut s));
}

#[test]
fn a_two_byte_look_alike_is_a_needle() {
    let c = SigmaSet::embedded_compiled().expect("embedded rules");
    let (index, rule) = c
        .rules
        .iter()
        .enumerate()
        .find(|(_, r)| {
            r.path
                .ends_with("proc_creation_win_susp_homoglyph_cyrillic_lookalikes.yml")
        })
        .expect("the Cyrillic look-alike rule");
    assert!(
        rule.needles.is_some(),
        "the rule is evaluated only when a look-alike occurs"
    );
    let mut s = Scratch::default();
    for (command_line, expected) in [("ping \u{0410}dmin-pc", true), ("ping Admin-pc", false)] {
        let fields = [
            ("Channel", "Microsoft-Windows-Sysmon/Operational"),
            ("EventID", "1"),
            ("Image", r"C:\Windows\System32\PING.EXE"),
            ("CommandLine", command_line),
        ];
        let out = check(&c, &fields, &mut s);
        assert_eq!(out.contains(&(index as u32)), expected, "{command_line}");
    }
}

/// Rule `n` of a test pack: `r<n>.yml`, with its log source line and detection.
fn rule(n: usize, logsource: &str, detection: &str) -> crate::sigma::SigmaFile {
    crate::sigma::SigmaFile {
        path: format!("r{n}.yml"),
        text: format!(
            "title: R{n}\nid: 22222222-0000-0000-0000-00000000000{n}\nlogsource:\n  product: windows\n  {logsource}\ndetection:\n{detection}\nlevel: high\n"
        ),
    }
}

fn compile(files: Vec<crate::sigma::SigmaFile>) -> Compiled {
    let pack = SigmaPack {
        name: "sigma-local".into(),
        version: "test".into(),
        source: "test".into(),
        files,
    };
    Compiled::compile(&[pack])
}

#[test]
fn a_rule_is_routed_by_the_event_ids_its_condition_requires() {
    let files = vec![
        rule(
            0,
            "service: sysmon",
            "  selection:\n    EventID: 27\n  condition: selection",
        ),
        rule(
            1,
            "service: security",
            "  selection:\n    EventID: [4624, 4625]\n    LogonType: 3\n  condition: selection",
        ),
        rule(
            2,
            "category: process_creation",
            "  selection:\n    EventID: 4688\n    CommandLine|contains: whoami\n  condition: selection",
        ),
        rule(
            3,
            "service: sysmon",
            "  a:\n    EventID: 1\n  b:\n    Image|endswith: x.exe\n  condition: a or b",
        ),
        rule(4, "service: sysmon", "  a:\n    EventID: 1\n  condition: not a"),
        rule(5, "service: sysmon", "  a:\n    EventID: '027'\n  condition: a"),
        rule(6, "category: process_creation", "  a:\n    EventID: 5\n  condition: a"),
        rule(
            7,
            "service: sysmon",
            "  a:\n    EventID: 1\n  b:\n    EventID: 3\n  c:\n    Image: x\n  condition: (a or b) and c",
        ),
    ];
    let c = compile(files);
    assert_eq!(c.rules.len(), 8, "{:?}", c.rejected);
    let routed = |channel: &str, event_id: u32| -> Vec<usize> {
        let candidates = match c.channels.get(channel) {
            Some(routes) => routes.by_event_id.get(&event_id).unwrap_or(&routes.any),
            None => &c.any_channel,
        };
        (0..c.rules.len())
            .filter(|r| (candidates.filtered[r / 64] | candidates.always[r / 64]) & (1 << (r % 64)) != 0)
            .map(|r| c.rules[r].path[1..2].parse().expect("rule number"))
            .collect()
    };
    let sysmon = crate::sigma::logsource::SYSMON;
    assert_eq!(routed(sysmon, 27), [0, 3, 4, 5]);
    assert_eq!(routed(sysmon, 1), [3, 4, 5, 7]);
    assert_eq!(routed(sysmon, 3), [3, 4, 5, 7]);
    assert_eq!(routed(sysmon, 99), [3, 4, 5]);
    assert_eq!(routed("security", 4624), [1]);
    assert_eq!(routed("security", 4625), [1]);
    assert_eq!(
        routed("security", 4688),
        [2],
        "process creation is Security 4688 or Sysmon 1"
    );
    assert!(routed("security", 5).is_empty(), "an event id no route of the rule has");

    // Routed by id, the rule still matches by its tests.
    let mut s = Scratch::default();
    for (event_id, expected) in [("27", true), ("1", false)] {
        let fields = [
            ("Channel", "Microsoft-Windows-Sysmon/Operational"),
            ("EventID", event_id),
        ];
        let out = check(&c, &fields, &mut s);
        assert_eq!(out.contains(&0), expected, "event {event_id}");
    }
}

#[test]
fn a_rule_needing_literals_in_two_fields_is_evaluated_once_both_are_seen() {
    let c = compile(vec![
        rule(
            0,
            "category: process_creation",
            "  selection_img:\n    Image|endswith: ['\\csi.exe', '\\rcsi.exe']\n  selection_cli:\n    Company: 'Microsoft Corporation'\n  condition: all of selection_*",
        ),
        rule(
            1,
            "category: process_creation",
            "  a:\n    Image|contains: '\\windows\\'\n    CommandLine|contains: ['\\..\\windows\\', '\\..\\system32\\']\n  b:\n    CommandLine|contains: '.exe\\..\\'\n  condition: a or b",
        ),
        rule(
            2,
            "category: process_creation",
            "  a:\n    CommandLine|contains|all: ['/c', 'del', 'C:\\Users\\']\n  condition: a",
        ),
        rule(
            3,
            "category: process_creation",
            "  a:\n    Image|endswith: x.exe\n  condition: not a",
        ),
        rule(
            4,
            "category: process_creation",
            "  a:\n    Company: 'Microsoft Corporation'\n  b:\n    CommandLine|re: 'csi\\.exe\\s+\\w+\\.csx'\n  condition: a and b",
        ),
    ]);
    assert_eq!(c.rules.len(), 5, "{:?}", c.rejected);
    let field = |name: &str| Target::Field(*c.fields.get(name).expect("a field of the rules"));
    let groups = |r: usize| -> Vec<Vec<(Target, &str)>> {
        let mut groups: Vec<Vec<(Target, &str)>> = c.rules[r]
            .needles
            .iter()
            .flatten()
            .map(|g| {
                let mut g: Vec<(Target, &str)> = g.iter().map(|(t, n)| (*t, n.as_str())).collect();
                g.sort_by_key(|(_, n)| *n);
                g
            })
            .collect();
        groups.sort_by(|a, b| a.iter().map(|(_, n)| n).cmp(b.iter().map(|(_, n)| n)));
        groups
    };
    let (image, command_line, company) = (field("image"), field("commandline"), field("company"));
    assert_eq!(
        groups(0),
        [
            vec![(image, "\\csi.exe"), (image, "\\rcsi.exe")],
            vec![(company, "microsoft corporation")],
        ]
    );
    // `(a1 and a2) or b` needs `a1 or b` and `a2 or b`.
    assert_eq!(
        groups(1),
        [
            vec![
                (command_line, ".exe\\..\\"),
                (command_line, "\\..\\system32\\"),
                (command_line, "\\..\\windows\\"),
            ],
            vec![(command_line, ".exe\\..\\"), (image, "\\windows\\")],
        ]
    );
    // Every value is required; `/c` is too short to be a needle, the others are kept.
    assert_eq!(
        groups(2),
        [vec![(command_line, "c:\\users\\")], vec![(command_line, "del")]]
    );
    assert!(c.rules[3].needles.is_none());
    assert_eq!(groups(4).len(), 2);
    assert_eq!(c.slots, 5 + 4, "one more bit for each group after a rule's first");

    let mut s = Scratch::default();
    let run = |image: &str, company: &str, command_line: &str, s: &mut Scratch| {
        let fields = [
            ("Channel", "Microsoft-Windows-Sysmon/Operational"),
            ("EventID", "1"),
            ("Image", image),
            ("Company", company),
            ("CommandLine", command_line),
        ];
        let out = matching(&c, &fields, s);
        // Bits of rule 0's groups the event set, and whether rule 4 was evaluated (its regular
        // expression is built then).
        let seen = |slot: u32| s.hits[slot as usize / 64] & (1 << (slot % 64)) != 0;
        let rule = &c.rules[0];
        let seen_groups = std::iter::once(0)
            .chain(rule.more_slots.iter().copied())
            .filter(|&x| seen(x))
            .count();
        let evaluated = regexes(&c).0 == 1;
        assert_eq!(out, plain(&c, fields[0].1, 1, &fields, s), "{fields:?}");
        (out.contains(&0), seen_groups, evaluated)
    };
    // An event with only the company name: rule 4 is not evaluated (the plain evaluation after
    // it builds every regular expression, so this holds for the first event only).
    let notepad = run(r"C:\Windows\notepad.exe", "Microsoft Corporation", "notepad", &mut s);
    assert_eq!(notepad, (false, 1, false), "not evaluated with one of two groups seen");
    let csi = r"C:\Program Files\dotnet\csi.exe";
    let (matched, groups_seen, _) = run(csi, "Contoso", "csi.exe x.csx", &mut s);
    assert_eq!((matched, groups_seen), (false, 1));
    let (matched, groups_seen, _) = run(csi, "Microsoft Corporation", "csi.exe x.csx", &mut s);
    assert_eq!((matched, groups_seen), (true, 2));
}

#[test]
fn a_value_scanned_again_is_found_as_its_own_set_finds_it() {
    let set =
        |needles: &[(&'static str, u32)]| Needles::new(needles.iter().map(|&(n, slot)| (n, vec![slot])).collect());
    // The same needle index stands for different needles in the two sets.
    let (a, b) = (set(&[("alpha", 0), ("beta", 1)]), set(&[("beta", 5)]));
    assert!(a.id() != 0 && b.id() != 0 && a.id() != b.id());
    let mut cache = FoundCache::default();
    let mut scan = |set: &Needles, text: &str| {
        let mut hits = vec![0u64; 1];
        cache.scan(set, text, &mut hits);
        hits[0]
    };
    let long = format!("{}beta", "x".repeat(FOUND_MAX_VALUE));
    for _ in 0..2 {
        assert_eq!(scan(&a, "xalphay"), 1 << 0);
        assert_eq!(scan(&b, "xalphay"), 0, "another set's result for the same value");
        assert_eq!(scan(&a, "xbetay"), 1 << 1);
        assert_eq!(scan(&b, "xbetay"), 1 << 5);
        assert_eq!(scan(&a, "alpha beta"), 1 << 0 | 1 << 1);
        assert_eq!(scan(&a, &long), 1 << 1, "a value too long to keep");
        assert_eq!(scan(&a, ""), 0);
    }
    // A set made after another was dropped is never taken for it.
    let id = a.id();
    drop(a);
    let c = set(&[("gamma", 2)]);
    assert_ne!(c.id(), id);
    assert_eq!(scan(&c, "xalphay"), 0);
}
