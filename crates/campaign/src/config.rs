//! What a [`crate::CampaignBuilder`] is told: how events join, when campaigns close, how much
//! it may remember, how risk is scored and which incident rules fire. Plain serde data with
//! defaults and a `validate()`; nothing here reads events.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Configuration of campaign building.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignConfig {
    /// A campaign without a new event for this long (in event time) closes; a later event on
    /// one of its entities starts a new campaign. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub inactivity: Duration,
    /// Open campaigns held at most; beyond it the least recently active one is closed early.
    pub max_open_campaigns: usize,
    /// Event ids kept per detector and campaign (counts go on beyond it). Default 1,000.
    pub max_event_ids_per_detector: usize,
    /// Entities kept per campaign; events still join through the kept ones, but entities
    /// beyond the cap are neither listed, scored nor linking.
    pub max_entities_per_campaign: usize,
    /// Entity values that never link events (shared infrastructure such as a resolver or a
    /// proxy, or generic accounts); they still appear in the campaign and carry risk.
    pub never_link: Vec<String>,
    /// Risk of an event before confidence, by severity (Splunk ES's defaults).
    pub severity_weights: SeverityWeights,
    /// Incident rules evaluated per risk object.
    pub rules: Vec<IncidentRule>,
    /// Best candidate group score at or above which the actor evidence is STRONG.
    pub actor_evidence_threshold: f64,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            inactivity: Duration::from_secs(24 * 3600),
            max_open_campaigns: 10_000,
            max_event_ids_per_detector: 1_000,
            max_entities_per_campaign: 256,
            never_link: Vec::new(),
            severity_weights: SeverityWeights::default(),
            rules: IncidentRule::defaults(),
            actor_evidence_threshold: attackmesh_attack::campaigns::EVIDENCE_THRESHOLD,
        }
    }
}

impl CampaignConfig {
    /// Checks the values before anything uses them.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
        if self.inactivity.is_zero() {
            return bad("inactivity must be more than 0");
        }
        if self.max_open_campaigns == 0 || self.max_event_ids_per_detector == 0 || self.max_entities_per_campaign == 0 {
            return bad(
                "max_open_campaigns, max_event_ids_per_detector and max_entities_per_campaign must be at least 1",
            );
        }
        if !(0.0..=1.0).contains(&self.actor_evidence_threshold) {
            return bad("actor_evidence_threshold must be in [0, 1]");
        }
        let w = &self.severity_weights;
        if [w.unspecified, w.low, w.medium, w.high, w.critical]
            .iter()
            .any(|x| !x.is_finite() || *x < 0.0)
        {
            return bad("severity_weights must be finite and not negative");
        }
        let mut names = std::collections::HashSet::new();
        for rule in &self.rules {
            if !names.insert(rule.name()) {
                return Err(Error::Config(format!("rule name {} is used twice", rule.name())));
            }
            rule.validate()?;
        }
        Ok(())
    }

    /// Longest window of any rule: how long per-object history must be kept.
    pub(crate) fn history(&self) -> Duration {
        self.rules.iter().map(IncidentRule::window).max().unwrap_or_default()
    }
}

/// Risk of an event by severity, before it is multiplied by the attribution confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityWeights {
    /// Severity not given.
    pub unspecified: f64,
    /// LOW.
    pub low: f64,
    /// MEDIUM.
    pub medium: f64,
    /// HIGH.
    pub high: f64,
    /// CRITICAL.
    pub critical: f64,
}

impl Default for SeverityWeights {
    fn default() -> Self {
        Self {
            unspecified: 20.0,
            low: 40.0,
            medium: 60.0,
            high: 80.0,
            critical: 100.0,
        }
    }
}

impl SeverityWeights {
    /// Weight of a `Severity` enum value.
    pub fn of(&self, severity: i32) -> f64 {
        match severity {
            1 => self.low,
            2 => self.medium,
            3 => self.high,
            4 => self.critical,
            _ => self.unspecified,
        }
    }
}

/// An incident rule over one risk object's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IncidentRule {
    /// Fires when an object's total risk within `window` exceeds `threshold`
    /// (Splunk ES: "Risk Threshold Exceeded For Object Over 24 Hour Period").
    RiskThreshold {
        /// Rule name, reported with the hit.
        name: String,
        /// Look-back window ending at each event.
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// Total risk that must be exceeded.
        threshold: f64,
    },
    /// Fires when an object shows at least `min_tactics` distinct ATT&CK tactics from at least
    /// `min_sources` distinct detection sources (detector instance + event type) within `window`
    /// (Splunk ES: "ATT&CK Tactic Threshold Exceeded For Object Over Previous 7 Days").
    TacticSources {
        /// Rule name, reported with the hit.
        name: String,
        /// Look-back window ending at each event.
        #[serde(with = "humantime_serde")]
        window: Duration,
        /// Distinct tactics needed.
        min_tactics: usize,
        /// Distinct sources needed.
        min_sources: usize,
    },
}

impl IncidentRule {
    /// Splunk ES's two default incident rules.
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::RiskThreshold {
                name: "risk_threshold_24h".into(),
                window: Duration::from_secs(24 * 3600),
                threshold: 100.0,
            },
            Self::TacticSources {
                name: "attack_tactics_7d".into(),
                window: Duration::from_secs(7 * 24 * 3600),
                min_tactics: 3,
                min_sources: 4,
            },
        ]
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            Self::RiskThreshold { name, .. } | Self::TacticSources { name, .. } => name,
        }
    }

    /// The rule's look-back window.
    pub fn window(&self) -> Duration {
        match self {
            Self::RiskThreshold { window, .. } | Self::TacticSources { window, .. } => *window,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let fail = |why: &str| Err(Error::Config(format!("rule {}: {why}", self.name())));
        if self.name().is_empty() {
            return Err(Error::Config("a rule has an empty name".into()));
        }
        if self.window().is_zero() {
            return fail("window must be more than 0");
        }
        match self {
            Self::RiskThreshold { threshold, .. } if !threshold.is_finite() || *threshold < 0.0 => {
                fail("threshold must be finite and not negative")
            }
            Self::TacticSources {
                min_tactics,
                min_sources,
                ..
            } if *min_tactics == 0 || *min_sources == 0 => fail("min_tactics and min_sources must be at least 1"),
            _ => Ok(()),
        }
    }
}
