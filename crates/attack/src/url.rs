//! Addresses of ATT&CK pages, built the way attack.mitre.org lays them out. The knowledge base
//! carries each object's own URL; these serve where only an id is at hand (sinks, reports).

/// ATT&CK page of a tactic (`TA0006`).
pub fn tactic_url(id: &str) -> String {
    page("tactics", [id])
}

/// ATT&CK page of a technique or sub-technique (`T1110.001` → `/techniques/T1110/001/`).
pub fn technique_url(id: &str) -> String {
    page("techniques", id.split('.'))
}

/// ATT&CK page of a group (`G0016`).
pub fn group_url(id: &str) -> String {
    page("groups", [id])
}

/// `https://attack.mitre.org/<section>/<part>/…/`, built in one allocation: sinks write a few
/// of these for every event.
fn page<'a>(section: &str, parts: impl IntoIterator<Item = &'a str> + Clone) -> String {
    const SITE: &str = "https://attack.mitre.org/";
    let len = parts.clone().into_iter().map(|p| p.len() + 1).sum::<usize>();
    let mut url = String::with_capacity(SITE.len() + section.len() + 1 + len);
    url.push_str(SITE);
    url.push_str(section);
    url.push('/');
    for part in parts {
        url.push_str(part);
        url.push('/');
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_site_layout() {
        assert_eq!(
            technique_url("T1110.001"),
            "https://attack.mitre.org/techniques/T1110/001/"
        );
        assert_eq!(technique_url("T1046"), "https://attack.mitre.org/techniques/T1046/");
        assert_eq!(tactic_url("TA0006"), "https://attack.mitre.org/tactics/TA0006/");
        assert_eq!(group_url("G0016"), "https://attack.mitre.org/groups/G0016/");
        // The dots of a tactic's or group's id are its own (none in ATT&CK's ids).
        assert_eq!(tactic_url("TA.1"), "https://attack.mitre.org/tactics/TA.1/");
        for url in [technique_url("T1110.001"), tactic_url("TA0006"), group_url("G0016")] {
            assert_eq!(url.capacity(), url.len(), "{url}: one allocation of the right size");
        }
    }
}
