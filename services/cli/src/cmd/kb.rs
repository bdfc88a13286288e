//! `attackmesh kb`: inspect the ATT&CK knowledge base, or rebuild the compact one.
//!
//! `kb sigma` lists the Sigma rules in force per pack and per log source, and with `--rejected`
//! every rule that could not be compiled with its reason (`--rules-dir` adds a user's rules).
//!
//! `kb info`, `kb technique ID` and `kb group ID|NAME|ALIAS` read the knowledge base embedded in
//! the binary, or the one given with `--kb` (a compact KB or an official ATT&CK bundle
//! `.json`/`.json.gz`, e.g. a newer release). `kb import BUNDLE --out FILE` imports an official
//! bundle and writes the compact form; this is how the committed KB is regenerated:
//!
//! ```text
//! attackmesh kb import ../shared/data/attack/enterprise-attack-18.1.json.gz \
//!     --out crates/attack/kb/enterprise-attack-18.1.kb.gz
//! ```
//!
//! (the attribution crate's `kb_import` test fails while the committed file differs from a
//! fresh import).

use std::{
    fmt::Write as _,
    io::{self, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::{Context as _, bail};
use attackmesh_attack::kb::{ImportOptions, import_bundle_with, version_from_file_name};
use attackmesh_attack::{Engine, Kb, Resolved};

/// Arguments of `attackmesh kb`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Knowledge base to read instead of the embedded one: a compact KB or an official ATT&CK
    /// bundle (`.json` or `.json.gz`).
    #[arg(long, global = true, value_name = "PATH")]
    kb: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// ATT&CK release, counts and loaded rule packs.
    Info {
        /// Rules directory to apply over the embedded packs and Sigma rules.
        #[arg(long, value_name = "DIR")]
        rules_dir: Option<PathBuf>,
    },
    /// Sigma rules in force per pack and per log source.
    Sigma {
        /// Rules directory whose `sigma/` folder adds a user's rules.
        #[arg(long, value_name = "DIR")]
        rules_dir: Option<PathBuf>,
        /// Also list every rule that could not be compiled, with its reason.
        #[arg(long)]
        rejected: bool,
    },
    /// One technique or sub-technique; a revoked id shows its replacement.
    Technique {
        /// Technique id, e.g. T1110 or T1110.001.
        id: String,
        /// Print the canonical JSON of the `Technique` message.
        #[arg(long)]
        json: bool,
    },
    /// One group by ATT&CK id, name or alias (case-insensitive).
    Group {
        /// Group id (G0016), name (APT29) or alias (Cozy Bear).
        id: String,
        /// Print the canonical JSON of the `Group` message.
        #[arg(long)]
        json: bool,
    },
    /// Measures campaign-level actor ranking on ATT&CK's own campaigns attributed to groups:
    /// each is ranked with profiles that leave it out; prints top-1/3/5.
    RankCampaigns,
    /// Imports an official ATT&CK bundle and writes the compact knowledge base.
    Import {
        /// The bundle (`enterprise-attack-X.Y.json` or `.json.gz`).
        bundle: PathBuf,
        /// Where to write the compact KB (gzip'd).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// ATT&CK release to record when the bundle does not name one (default: from the file name).
        #[arg(long, value_name = "X.Y")]
        attack_version: Option<String>,
    },
}

/// Runs `attackmesh kb`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Import {
            bundle,
            out,
            attack_version,
        } => import(&bundle, &out, attack_version),
        Command::Info { rules_dir } => info(&engine(load(args.kb.as_ref())?, rules_dir.as_deref())?),
        Command::Sigma { rules_dir, rejected } => {
            sigma(&engine(load(args.kb.as_ref())?, rules_dir.as_deref())?, rejected)
        }
        Command::Technique { id, json } => technique(&*load(args.kb.as_ref())?, &id, json),
        Command::Group { id, json } => group(&*load(args.kb.as_ref())?, &id, json),
        Command::RankCampaigns => emit(&attackmesh_attack::campaigns::evaluate(&*load(args.kb.as_ref())?).to_string()),
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Arc<Kb>> {
    Kb::open(path.map(PathBuf::as_path)).context("loading the knowledge base")
}

fn import(bundle: &Path, out: &Path, attack_version: Option<String>) -> anyhow::Result<ExitCode> {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let options = ImportOptions {
        attack_version: attack_version.or_else(|| version_from_file_name(&name)),
    };
    let input = attackmesh::formats::open_path(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let data = import_bundle_with(input, &options).with_context(|| format!("importing {}", bundle.display()))?;
    let kb = Kb::from_data(data)?;
    let bytes = kb.to_compact()?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let c = kb.counts();
    eprintln!(
        "wrote {} ({} bytes): ATT&CK {}, {} techniques, {} sub-techniques, {} tactics, {} groups",
        out.display(),
        bytes.len(),
        kb.attack_version(),
        c.techniques,
        c.subtechniques,
        c.tactics,
        c.groups
    );
    Ok(ExitCode::SUCCESS)
}

fn engine(kb: Arc<Kb>, rules_dir: Option<&Path>) -> anyhow::Result<Engine> {
    Engine::with_rules_dir(kb, rules_dir).context("compiling the rule packs and Sigma rules")
}

fn info(engine: &Engine) -> anyhow::Result<ExitCode> {
    let kb = engine.kb();
    let mut o = String::new();
    let c = kb.counts();
    writeln!(o, "ATT&CK {} ({})", kb.attack_version(), kb.domain())?;
    writeln!(o, "techniques     {}", c.techniques)?;
    writeln!(o, "sub-techniques {}", c.subtechniques)?;
    writeln!(o, "tactics        {}", c.tactics)?;
    writeln!(o, "groups         {}", c.groups)?;
    writeln!(o, "software       {}", c.software)?;
    writeln!(o, "campaigns      {}", c.campaigns)?;
    writeln!(o, "mitigations    {}", c.mitigations)?;
    let packs: Vec<String> = engine
        .rules()
        .packs()
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    writeln!(o, "rule packs     {} ({} rules)", packs.join(","), engine.rules().len())?;
    let sigma = engine.sigma();
    let rejected: usize = sigma.packs().iter().map(|p| p.rejected).sum();
    writeln!(
        o,
        "sigma rules    {} in force, {rejected} not compiled (`attackmesh kb sigma --rejected` lists why)",
        sigma.len()
    )?;
    for p in sigma.packs() {
        writeln!(
            o,
            "  {:<24} {:>5} loaded {:>4} rejected  {}",
            format!("{}@{}", p.name, p.version),
            p.loaded,
            p.rejected,
            p.source
        )?;
    }
    emit(&o)
}

fn sigma(engine: &Engine, list_rejected: bool) -> anyhow::Result<ExitCode> {
    let sigma = engine.sigma();
    let mut o = String::new();
    writeln!(o, "pack                              loaded rejected  source")?;
    for p in sigma.packs() {
        writeln!(
            o,
            "{:<33} {:>6} {:>8}  {}",
            format!("{}@{}", p.name, p.version),
            p.loaded,
            p.rejected,
            p.source
        )?;
    }
    writeln!(
        o,
        "\n{} rules in force; {} name no active technique of ATT&CK {} (no tag, or ids of a newer release: they match but attribute nothing)",
        sigma.len(),
        sigma.without_technique(),
        engine.kb().attack_version()
    )?;
    writeln!(o, "\nlog source                                      rules")?;
    for (source, n) in sigma.by_logsource() {
        writeln!(o, "{source:<47} {n:>6}")?;
    }
    if list_rejected {
        writeln!(o, "\nnot compiled:")?;
        for r in sigma.rejected() {
            writeln!(o, "{}  {}  [{}]  {}", r.path, r.id, r.title, r.reason)?;
        }
    }
    emit(&o)
}

fn technique(kb: &Kb, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (t, revoked) = match kb.resolve(id) {
        Resolved::Active(t) => (t, None),
        Resolved::Deprecated(t) => (t, None),
        Resolved::Revoked { requested, replacement } => (replacement, Some(requested)),
        Resolved::Unknown => bail!("technique `{id}` is not in ATT&CK {}", kb.attack_version()),
    };
    let mut o = String::new();
    if json {
        writeln!(o, "{}", attackmesh::json::to_json(&kb.technique_proto(t)))?;
        return emit(&o);
    }
    if let Some(r) = revoked {
        writeln!(o, "{} ({}) was revoked; replaced by:", r.id, r.name)?;
    }
    writeln!(
        o,
        "{}  {}{}",
        t.id,
        t.name,
        if t.deprecated { "  [deprecated]" } else { "" }
    )?;
    let tactics: Vec<String> = kb
        .tactics_of(t)
        .map(|x| format!("{} {} ({})", x.id, x.name, x.shortname))
        .collect();
    writeln!(o, "tactics    {}", tactics.join(", "))?;
    writeln!(o, "platforms  {}", t.platforms.join(", "))?;
    if let Some(p) = &t.parent_id {
        writeln!(o, "parent     {p}")?;
    }
    let subs: Vec<&str> = kb.subtechniques_of(t).map(|s| s.id.as_str()).collect();
    if !subs.is_empty() {
        writeln!(o, "sub-techniques {}", subs.join(", "))?;
    }
    let mitigations: Vec<String> = kb
        .mitigations_for(&t.id)
        .map(|m| format!("{} {}", m.id, m.name))
        .collect();
    if !mitigations.is_empty() {
        writeln!(o, "mitigations {}", mitigations.join("; "))?;
    }
    writeln!(o, "url        {}", t.url)?;
    writeln!(o, "stix id    {}", t.stix_id)?;
    emit(&o)
}

fn group(kb: &Kb, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(g) = kb.group(id) else {
        bail!(
            "no group with id, name or alias `{id}` in ATT&CK {}",
            kb.attack_version()
        )
    };
    let mut o = String::new();
    if json {
        writeln!(o, "{}", attackmesh::json::to_json(&kb.group_proto(g)))?;
        return emit(&o);
    }
    writeln!(
        o,
        "{}  {}{}",
        g.id,
        g.name,
        if g.is_active() { "" } else { "  [revoked or deprecated]" }
    )?;
    writeln!(o, "aliases    {}", g.aliases.join(", "))?;
    writeln!(o, "techniques ({}) {}", g.techniques.len(), g.techniques.join(" "))?;
    writeln!(o, "software   ({}) {}", g.software.len(), g.software.join(" "))?;
    writeln!(o, "url        {}", g.url)?;
    writeln!(o, "stix id    {}", g.stix_id)?;
    emit(&o)
}

/// Prints `text`; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<ExitCode> {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
