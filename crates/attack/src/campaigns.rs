//! Ranks ATT&CK groups for a whole campaign — every technique and every piece of software seen
//! across its events — and measures that ranking on ATT&CK's own campaigns.
//!
//! A group's profile is what ATT&CK records about it: techniques it uses directly and those of
//! the campaigns attributed to it (weight 1), techniques of its software (0.5), and the parents
//! and sub-techniques of those (half again). The campaign is a vector too: each observed
//! technique 1, the parent of an observed sub-technique 0.5 (a detector that sees T1110.001
//! supports a profile that only says T1110). Both weigh techniques by rarity among groups,
//! `idf = ln((N+1)/(df+1))`. The technique similarity is BM25 (k1 = 1.2, b = 0.25) normalised by
//! the campaign's idf mass: `Σ o_t·idf_t·p_t(k1+1)/(p_t + k1(1−b+b·|P|/avg|P|)) / Σ o_t·idf_t`,
//! so a rare shared technique counts most and a group with a huge profile gets a mild discount
//! instead of winning by size. Shared software counts on its own: the idf-weighted share of the
//! campaign's software the group uses. The score is `(sim + 0.25 · software) / 1.25` when the
//! campaign names software, `sim` otherwise, clamped to [0, 1] and capped at [`THIN_CAP`] when
//! fewer than three observed techniques match; below [`EVIDENCE_THRESHOLD`] it is a lead only.
//!
//! [`evaluate`] holds each attributed ATT&CK campaign out in turn: the profiles it ranks with
//! leave out that campaign's techniques and software, so the campaign cannot find itself.

use std::collections::{HashMap, HashSet};

use attackmesh::proto::ThreatActor;

use crate::{
    actors::round4,
    kb::{Kb, TechIdx, model::Campaign},
};

/// Best score from which a campaign's candidate group is backed by strong evidence.
pub const EVIDENCE_THRESHOLD: f64 = 0.5;
/// Highest score when fewer than three observed techniques match a group.
pub const THIN_CAP: f64 = 0.3;
/// Weight of shared software against technique similarity.
const SOFTWARE_WEIGHT: f64 = 0.25;
/// Matched idf mass at which the evidence strength reaches ~63 %.
const STRENGTH_SCALE: f64 = 20.0;
/// BM25 term saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation: how much a large profile is discounted.
const B: f32 = 0.25;
/// Groups returned at most.
const TOP: usize = 5;

/// What a campaign showed: ATT&CK technique ids and software ids or names.
#[derive(Debug, Clone, Copy, Default)]
pub struct CampaignEvidence<'a> {
    /// Technique ids (any order; duplicates, unknown ids ignored; revoked ids replaced).
    pub techniques: &'a [&'a str],
    /// Software ids or names (e.g. "S0154", "Cobalt Strike"); unknown ones ignored.
    pub software: &'a [&'a str],
}

/// Group profiles for campaign ranking.
#[derive(Debug, Default)]
pub(crate) struct Profiles {
    /// Per group: technique → weight (empty for inactive groups).
    tech: Vec<HashMap<TechIdx, f32>>,
    /// Per group: software indexes.
    software: Vec<HashSet<usize>>,
    /// Per technique: idf over groups.
    idf: Vec<f32>,
    /// Per software: idf over groups.
    sw_idf: HashMap<usize, f32>,
    /// Mean profile mass, for BM25's length normalisation.
    avg_len: f32,
}

impl Profiles {
    /// Profiles from the whole knowledge base, or without one campaign's contributions.
    pub(crate) fn build(kb: &Kb, held_out: Option<&Campaign>) -> Self {
        let data = kb.data();
        let sw_index: HashMap<&str, usize> = data
            .software
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.revoked)
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let resolve = |id: &str| kb.resolve_idx(id).map(|(i, _)| i);
        let mut tech = vec![HashMap::new(); data.groups.len()];
        let mut software = vec![HashSet::new(); data.groups.len()];
        for (gi, g) in data.groups.iter().enumerate().filter(|(_, g)| g.is_active()) {
            let held = held_out.filter(|c| c.groups.contains(&g.id));
            let p: &mut HashMap<TechIdx, f32> = &mut tech[gi];
            let put = |p: &mut HashMap<TechIdx, f32>, t: TechIdx, w: f32| {
                let slot = p.entry(t).or_insert(0.0);
                *slot = slot.max(w);
            };
            let mut sw: HashSet<usize> = g
                .software
                .iter()
                .filter_map(|s| sw_index.get(s.as_str()).copied())
                .collect();
            for t in g.techniques.iter().filter_map(|t| resolve(t)) {
                put(p, t, 1.0);
            }
            for c in data
                .campaigns
                .iter()
                .filter(|c| !c.revoked && !c.deprecated && c.groups.contains(&g.id))
            {
                if held.is_some_and(|h| h.id == c.id) {
                    continue;
                }
                for t in c.techniques.iter().filter_map(|t| resolve(t)) {
                    put(p, t, 1.0);
                }
                sw.extend(c.software.iter().filter_map(|s| sw_index.get(s.as_str()).copied()));
            }
            for s in &sw {
                for t in data.software[*s].techniques.iter().filter_map(|t| resolve(t)) {
                    put(p, t, 0.5);
                }
            }
            let direct: Vec<(TechIdx, f32)> = p.iter().map(|(t, w)| (*t, *w)).collect();
            for (t, w) in direct {
                if let Some(parent) = kb.at(t).parent_id.as_deref().and_then(resolve) {
                    put(p, parent, w * 0.5);
                }
                for s in kb.subtechnique_indices(t) {
                    put(p, *s, w * 0.5);
                }
            }
            software[gi] = sw;
        }
        let n = tech.iter().filter(|p| !p.is_empty()).count() as f32;
        let mut df = vec![0u32; kb.technique_count()];
        let mut sw_df: HashMap<usize, u32> = HashMap::new();
        for (p, s) in tech.iter().zip(&software) {
            for t in p.keys() {
                df[*t as usize] += 1;
            }
            for i in s {
                *sw_df.entry(*i).or_default() += 1;
            }
        }
        let idf_of = |d: u32| ((n + 1.0) / (d as f32 + 1.0)).ln();
        let idf: Vec<f32> = df.iter().map(|d| if *d == 0 { 0.0 } else { idf_of(*d) }).collect();
        let sw_idf = sw_df.into_iter().map(|(s, d)| (s, idf_of(d))).collect();
        let sizes: Vec<f32> = tech
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.values().sum::<f32>())
            .collect();
        let avg_len = sizes.iter().sum::<f32>() / sizes.len().max(1) as f32;
        Self {
            tech,
            software,
            idf,
            sw_idf,
            avg_len,
        }
    }

    /// Best groups for the evidence, at most `limit`.
    pub(crate) fn rank(&self, kb: &Kb, evidence: &CampaignEvidence<'_>, limit: usize) -> Vec<ThreatActor> {
        let mut observed: HashMap<TechIdx, f32> = HashMap::new();
        let mut direct: Vec<TechIdx> = Vec::new();
        for t in evidence
            .techniques
            .iter()
            .filter_map(|t| kb.resolve_idx(t).map(|(i, _)| i))
        {
            observed.insert(t, 1.0);
            direct.push(t);
        }
        direct.sort_unstable();
        direct.dedup();
        for t in &direct {
            if let Some((p, _)) = kb.at(*t).parent_id.as_deref().and_then(|p| kb.resolve_idx(p)) {
                observed.entry(p).or_insert(0.5);
            }
        }
        let software: Vec<usize> = {
            let mut s: Vec<usize> = evidence
                .software
                .iter()
                .filter_map(|s| kb.software(s))
                .filter_map(|s| kb.data().software.iter().position(|x| x.id == s.id))
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let idf = |t: TechIdx| self.idf.get(t as usize).copied().unwrap_or(0.0);
        let o_mass: f32 = observed.iter().map(|(t, w)| w * idf(*t)).sum();
        let sw_total: f32 = software
            .iter()
            .map(|s| self.sw_idf.get(s).copied().unwrap_or(0.0))
            .sum();
        if o_mass <= 0.0 && sw_total <= 0.0 {
            return Vec::new();
        }
        let mut scored: Vec<(f64, usize, Vec<TechIdx>)> = Vec::new();
        for (g, profile) in self.tech.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let matched: Vec<TechIdx> = direct.iter().copied().filter(|t| profile.contains_key(t)).collect();
            let len: f32 = profile.values().sum();
            let saturation = K1 * (1.0 - B + B * len / self.avg_len);
            let (mut sum, mut mass) = (0f32, 0f32);
            for (t, w) in &observed {
                if let Some(p) = profile.get(t) {
                    sum += w * idf(*t) * p * (K1 + 1.0) / (p + saturation);
                    mass += w * p * idf(*t);
                }
            }
            // How much specific evidence backs the match, whatever its share: a handful of
            // techniques never makes a strong claim.
            let strength = 1.0 - (-f64::from(mass) / STRENGTH_SCALE).exp();
            let similarity = if o_mass > 0.0 {
                f64::from(sum / o_mass).min(1.0) * strength
            } else {
                0.0
            };
            let mut score = if sw_total > 0.0 {
                let shared: f32 = software
                    .iter()
                    .filter(|s| self.software[g].contains(s))
                    .map(|s| self.sw_idf.get(s).copied().unwrap_or(0.0))
                    .sum();
                (similarity + SOFTWARE_WEIGHT * f64::from(shared / sw_total)) / (1.0 + SOFTWARE_WEIGHT)
            } else {
                similarity
            };
            if matched.len() < 3 {
                score = score.min(THIN_CAP);
            }
            if score > 0.0 {
                scored.push((score.clamp(0.0, 1.0), g, matched));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(limit);
        scored
            .into_iter()
            .map(|(score, g, mut matched)| {
                let group = &kb.data().groups[g];
                matched.sort_by(|a, b| idf(*b).total_cmp(&idf(*a)).then(a.cmp(b)));
                ThreatActor {
                    group_id: group.id.clone(),
                    name: group.name.clone(),
                    aliases: group.aliases.clone(),
                    score: round4(score),
                    matched_techniques: matched.iter().map(|t| kb.at(*t).id.clone()).collect(),
                    stix_id: group.stix_id.clone(),
                }
            })
            .collect()
    }
}

/// Ranks groups for everything a campaign showed, best first (at most five); scores below
/// [`EVIDENCE_THRESHOLD`] are leads only.
pub fn rank_campaign(kb: &Kb, evidence: &CampaignEvidence<'_>) -> Vec<ThreatActor> {
    kb.campaign_profiles().rank(kb, evidence, TOP)
}

/// One held-out ATT&CK campaign of an [`Evaluation`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedCampaign {
    /// ATT&CK campaign id, e.g. "C0024".
    pub campaign_id: String,
    /// Campaign name.
    pub name: String,
    /// Groups ATT&CK attributes it to.
    pub attributed: Vec<String>,
    /// Techniques and software it records.
    pub techniques: usize,
    /// Software it records.
    pub software: usize,
    /// 1-based rank of the best-placed attributed group among the first five, if any.
    pub rank: Option<usize>,
    /// Same, ranked from the techniques alone (no software evidence).
    pub techniques_only_rank: Option<usize>,
    /// Rank of the best-placed attributed group by the per-event ranker fed all techniques.
    pub baseline_rank: Option<usize>,
    /// Best candidate and its score.
    pub top: Option<(String, f64)>,
}

/// How campaign ranking does on ATT&CK's attributed campaigns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// ATT&CK release.
    pub attack_version: String,
    /// Every active campaign with at least one technique attributed to an active group.
    pub campaigns: Vec<EvaluatedCampaign>,
}

impl Evaluation {
    /// Campaigns whose attributed group ranked within the first `k`.
    pub fn top(&self, k: usize) -> usize {
        self.campaigns.iter().filter(|c| c.rank.is_some_and(|r| r <= k)).count()
    }

    /// Same, ranked from techniques alone.
    pub fn techniques_only_top(&self, k: usize) -> usize {
        self.campaigns
            .iter()
            .filter(|c| c.techniques_only_rank.is_some_and(|r| r <= k))
            .count()
    }

    /// Same for the per-event ranker.
    pub fn baseline_top(&self, k: usize) -> usize {
        self.campaigns
            .iter()
            .filter(|c| c.baseline_rank.is_some_and(|r| r <= k))
            .count()
    }
}

/// Holds out each attributed ATT&CK campaign in turn and ranks groups for its techniques and
/// software with profiles built without that campaign's own `uses` (its techniques and software
/// leave the profile of every group it is attributed to; what ATT&CK records on the group
/// itself stays, as it would for a campaign seen in the wild).
pub fn evaluate(kb: &Kb) -> Evaluation {
    let active_group = |id: &String| kb.group(id).is_some_and(|g| g.is_active() && g.id == *id);
    let mut campaigns = Vec::new();
    for c in kb.campaigns() {
        let attributed: Vec<String> = c.groups.iter().filter(|g| active_group(g)).cloned().collect();
        if c.revoked || c.deprecated || attributed.is_empty() || c.techniques.is_empty() {
            continue;
        }
        let profiles = Profiles::build(kb, Some(c));
        let techniques: Vec<&str> = c.techniques.iter().map(String::as_str).collect();
        let software: Vec<&str> = c.software.iter().map(String::as_str).collect();
        let ranked = profiles.rank(
            kb,
            &CampaignEvidence {
                techniques: &techniques,
                software: &software,
            },
            TOP,
        );
        let rank_of = |list: &[ThreatActor]| {
            list.iter()
                .position(|a| attributed.contains(&a.group_id))
                .map(|p| p + 1)
        };
        let techniques_only = profiles.rank(
            kb,
            &CampaignEvidence {
                techniques: &techniques,
                software: &[],
            },
            TOP,
        );
        let baseline = crate::actors::rank_actors(kb, &techniques);
        campaigns.push(EvaluatedCampaign {
            campaign_id: c.id.clone(),
            name: c.name.clone(),
            attributed: attributed.clone(),
            techniques: techniques.len(),
            software: software.len(),
            rank: rank_of(&ranked),
            techniques_only_rank: rank_of(&techniques_only),
            baseline_rank: rank_of(&baseline),
            top: ranked.first().map(|a| (a.group_id.clone(), a.score)),
        });
    }
    Evaluation {
        attack_version: kb.attack_version().to_owned(),
        campaigns,
    }
}

impl std::fmt::Display for Evaluation {
    /// The table `attackmesh kb rank-campaigns` prints: one row per held-out campaign, then
    /// top-1/3/5 for the campaign ranker and for the per-event ranker fed every technique.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rank = |r: Option<usize>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
        writeln!(
            f,
            "ATT&CK {} campaigns attributed to a group, each held out of the profiles it is ranked with",
            self.attack_version
        )?;
        writeln!(
            f,
            "{:<6} {:<34} {:<12} {:>5} {:>3} {:>5} {:>9} {:>9}  best candidate",
            "id", "name", "group", "tech", "sw", "rank", "tech-only", "per-event"
        )?;
        for c in &self.campaigns {
            let top = c.top.as_ref().map_or_else(String::new, |(g, s)| {
                let strength = if *s >= EVIDENCE_THRESHOLD { "strong" } else { "weak" };
                format!("{g} {s:.2} ({strength})")
            });
            let name: String = c.name.chars().take(34).collect();
            writeln!(
                f,
                "{:<6} {:<34} {:<12} {:>5} {:>3} {:>5} {:>9} {:>9}  {top}",
                c.campaign_id,
                name,
                c.attributed.join(","),
                c.techniques,
                c.software,
                rank(c.rank),
                rank(c.techniques_only_rank),
                rank(c.baseline_rank)
            )?;
        }
        let n = self.campaigns.len();
        let pct = |x: usize| if n == 0 { 0.0 } else { 100.0 * x as f64 / n as f64 };
        type Count = fn(&Evaluation, usize) -> usize;
        let rows: [(&str, Count); 3] = [
            ("campaign ranker", Self::top),
            ("  techniques only", Self::techniques_only_top),
            ("per-event ranker", Self::baseline_top),
        ];
        for (label, top) in rows {
            let (t1, t3, t5) = (top(self, 1), top(self, 3), top(self, 5));
            writeln!(
                f,
                "{label:<17} top-1 {t1}/{n} ({:.0} %)  top-3 {t3}/{n} ({:.0} %)  top-5 {t5}/{n} ({:.0} %)",
                pct(t1),
                pct(t3),
                pct(t5)
            )?;
        }
        Ok(())
    }
}
