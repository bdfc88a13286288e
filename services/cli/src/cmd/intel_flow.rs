//! `attackmesh intel flow --campaign ID --out FILE`: writes a campaign's MITRE Attack Flow 2.0
//! bundle. It reads campaigns offline from a `campaigns.ndjson` (one canonical JSON `Campaign`
//! per line, as `attackmesh demo` writes; the latest revision of each id wins) — until a
//! correlation service keeps campaigns, that file is where they are. The same flow objects are
//! in the intel collection (and so on TAXII) for every campaign alert intel received.

use std::{
    collections::HashMap,
    io::{BufRead as _, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use attackmesh::proto::Campaign;

/// Arguments of `attackmesh intel flow`.
#[derive(Debug, clap::Args)]
pub(crate) struct FlowArgs {
    /// Campaign id (`campaign--…`), or a prefix of it that only one campaign has.
    #[arg(long)]
    campaign: String,
    /// Output file (`-` for standard output); written whole or not at all.
    #[arg(long, short)]
    out: PathBuf,
    /// Campaigns file (NDJSON of canonical `Campaign`s).
    #[arg(long, default_value = "attackmesh-demo/campaigns.ndjson", value_name = "FILE")]
    campaigns: PathBuf,
    /// Knowledge base to resolve techniques and tactics with instead of the embedded one.
    #[arg(long, value_name = "PATH")]
    kb: Option<PathBuf>,
}

/// Runs `attackmesh intel flow`.
pub(crate) fn flow(args: FlowArgs) -> anyhow::Result<ExitCode> {
    let campaigns = read(&args.campaigns)?;
    let campaign = pick(&campaigns, &args.campaign)?;
    let kb = attackmesh_attack::Kb::open(args.kb.as_deref()).context("loading the knowledge base")?;
    let mut json = serde_json::to_vec_pretty(&attackmesh_campaign::attack_flow(&kb, campaign))?;
    json.push(b'\n');
    if args.out.as_os_str() == "-" {
        std::io::stdout().lock().write_all(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tmp = args.out.with_extension("partial");
    std::fs::write(&tmp, &json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote the Attack Flow of {} (revision {}, {} techniques) to {}",
        campaign.campaign_id,
        campaign.revision,
        campaign.techniques.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The latest revision of every campaign in `path`.
fn read(path: &Path) -> anyhow::Result<HashMap<String, Campaign>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut latest: HashMap<String, Campaign> = HashMap::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let c: Campaign = attackmesh::json::from_json(&line)
            .with_context(|| format!("{}:{}: not a canonical JSON Campaign", path.display(), n + 1))?;
        match latest.get(&c.campaign_id) {
            Some(seen) if seen.revision >= c.revision => {}
            _ => {
                latest.insert(c.campaign_id.clone(), c);
            }
        }
    }
    Ok(latest)
}

fn pick<'a>(campaigns: &'a HashMap<String, Campaign>, wanted: &str) -> anyhow::Result<&'a Campaign> {
    if let Some(c) = campaigns.get(wanted) {
        return Ok(c);
    }
    let mut matches: Vec<&Campaign> = campaigns
        .values()
        .filter(|c| !wanted.is_empty() && c.campaign_id.starts_with(wanted))
        .collect();
    matches.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no campaign {wanted} among the {} campaigns read", campaigns.len()),
        many => bail!(
            "{wanted} names {} campaigns ({}, …): give more of the id",
            many.len(),
            many[0].campaign_id
        ),
    }
}
