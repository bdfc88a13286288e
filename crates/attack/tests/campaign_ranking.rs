//! Campaign-level actor ranking measured on ATT&CK 18.1's own campaigns, each held out of the
//! profiles it is ranked with (the table `attackmesh kb rank-campaigns` prints).

use attackmesh_attack::{
    Kb,
    campaigns::{CampaignEvidence, EVIDENCE_THRESHOLD, evaluate, rank_campaign},
};

#[test]
fn attributed_group_is_in_the_top_three_for_at_least_60_percent_of_held_out_campaigns() {
    let kb = Kb::embedded().unwrap();
    let eval = evaluate(&kb);
    assert!(eval.campaigns.len() >= 20, "{} campaigns", eval.campaigns.len());
    let top3 = eval.top(3);
    assert!(
        top3 * 100 >= eval.campaigns.len() * 60,
        "top-3 {top3}/{}\n{eval}",
        eval.campaigns.len()
    );
    assert!(eval.top(3) > eval.baseline_top(3), "{eval}");
}

#[test]
fn a_strong_best_candidate_is_one_of_the_attributed_groups() {
    let kb = Kb::embedded().unwrap();
    let eval = evaluate(&kb);
    for c in &eval.campaigns {
        if let Some((group, score)) = &c.top
            && *score >= EVIDENCE_THRESHOLD
        {
            assert!(
                c.attributed.contains(group),
                "{} claims {group} at {score}\n{eval}",
                c.campaign_id
            );
        }
    }
}

#[test]
fn the_table_is_deterministic() {
    let kb = Kb::embedded().unwrap();
    assert_eq!(evaluate(&kb).to_string(), evaluate(&kb).to_string());
}

#[test]
fn a_few_common_techniques_stay_weak() {
    let kb = Kb::embedded().unwrap();
    let ranked = rank_campaign(
        &kb,
        &CampaignEvidence {
            techniques: &["T1046", "T1110.001", "T1059.004", "T1105"],
            software: &[],
        },
    );
    assert!(ranked.iter().all(|a| a.score < EVIDENCE_THRESHOLD), "{ranked:?}");
}
