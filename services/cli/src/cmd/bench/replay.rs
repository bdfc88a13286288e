//! Real detector records for `bench pipeline --replay FORMAT:PATH`: the file is parsed once with
//! the same parsers `attackmesh ship` uses, and its events are sent again and again until the run
//! has sent `--events`, each copy under its own event id so no stage takes it for a resend.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context as _, bail};
use attackmesh::{
    formats::{Format, Reader, open_path},
    proto::DetectionEvent,
};

/// Records a replay keeps in memory at most (they are sent round-robin).
const MAX_RECORDS: usize = 100_000;

/// What the driver sends.
#[derive(Debug, Clone)]
pub(super) enum Workload {
    /// Generated traffic-monitor detections ([`super::drive::event`]).
    Synthetic,
    /// The events of a detector file, repeated.
    Replay(Arc<Replay>),
}

impl Workload {
    /// How the report names the workload: `synthetic` or `FORMAT:PATH`.
    pub(super) fn label(&self) -> String {
        match self {
            Workload::Synthetic => "synthetic".to_owned(),
            Workload::Replay(r) => r.label.clone(),
        }
    }

    /// Event `n` of the run; event ids are `<prefix>-<n>` whatever the workload.
    pub(super) fn event(&self, prefix: &str, n: usize) -> DetectionEvent {
        match self {
            Workload::Synthetic => super::drive::event(prefix, n),
            Workload::Replay(r) => {
                let mut event = r.events[n % r.events.len()].clone();
                event.event_id = format!("{prefix}-{n}");
                event
            }
        }
    }
}

/// The parsed events of one detector file.
#[derive(Debug)]
pub(super) struct Replay {
    label: String,
    events: Vec<DetectionEvent>,
}

impl Replay {
    /// Parses `FORMAT:PATH` (`suricata-eve:/var/log/suricata/eve.json`) and reads the file;
    /// fails on a record that does not parse, as `attackmesh ship` would reject it, and on a file
    /// without any event.
    pub(super) fn load(spec: &str) -> anyhow::Result<Self> {
        let Some((format, path)) = spec.split_once(':') else {
            bail!("--replay takes FORMAT:PATH (e.g. suricata-eve:eve.json), got `{spec}`");
        };
        let format: Format = format.parse().map_err(|e| anyhow::anyhow!("--replay: {e}"))?;
        let path = PathBuf::from(path);
        let input = open_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut events = Vec::new();
        for record in Reader::new(format, input, path.display().to_string()) {
            let line = record.line;
            match record.result {
                Ok(Some(event)) if events.len() < MAX_RECORDS => events.push(event),
                Ok(_) => {}
                Err(error) => bail!("{}:{line}: {error}", path.display()),
            }
        }
        if events.is_empty() {
            bail!("{} holds no {format} event to replay", path.display());
        }
        Ok(Self {
            label: format!("{format}:{}", path.display()),
            events,
        })
    }

    /// Events read from the file.
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_a_suricata_file_round_robin_under_fresh_ids() {
        let Some(data) = attackmesh_testkit::data::shared_data() else {
            return;
        };
        let path = data.join("samples/suricata/first-org-conf-2015.eve.ndjson");
        let replay = Replay::load(&format!("suricata-eve:{}", path.display())).unwrap();
        assert_eq!(replay.len(), 136);
        let workload = Workload::Replay(Arc::new(replay));
        let (first, again) = (workload.event("r", 0), workload.event("r", 136));
        assert_eq!((first.event_id.as_str(), again.event_id.as_str()), ("r-0", "r-136"));
        assert_eq!(first.original, again.original);
        assert_eq!(first.original_format, "suricata-eve");
        assert!(workload.label().starts_with("suricata-eve:"));
    }

    #[test]
    fn refuses_a_spec_without_format_or_a_file_without_events() {
        let error = Replay::load("eve.json").unwrap_err().to_string();
        assert!(error.contains("FORMAT:PATH"), "{error}");
        let error = Replay::load("pcap:/dev/null").unwrap_err().to_string();
        assert!(error.contains("--replay"), "{error}");
        let error = Replay::load("suricata-eve:/dev/null").unwrap_err().to_string();
        assert!(error.contains("no suricata-eve event"), "{error}");
    }
}
