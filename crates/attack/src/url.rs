//! Addresses of ATT&CK pages, built the way attack.mitre.org lays them out. The knowledge base
//! carries each object's own URL; these serve where only an id is at hand (sinks, reports).

/// ATT&CK page of a tactic (`TA0006`).
pub fn tactic_url(id: &str) -> String {
    format!("https://attack.mitre.org/tactics/{id}/")
}

/// ATT&CK page of a technique or sub-technique (`T1110.001` → `/techniques/T1110/001/`).
pub fn technique_url(id: &str) -> String {
    format!("https://attack.mitre.org/techniques/{}/", id.replace('.', "/"))
}

/// ATT&CK page of a group (`G0016`).
pub fn group_url(id: &str) -> String {
    format!("https://attack.mitre.org/groups/{id}/")
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
    }
}
