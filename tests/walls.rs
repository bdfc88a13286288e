//! The walls between the workspace's crates, checked on the real dependency graph
//! (`cargo metadata`), so a dependency that breaks the design fails the build instead of
//! waiting for a reviewer to notice:
//!
//! - a service (a member under `services/`) never depends on another service; the CLI
//!   (`attackmesh-cli`), the deployable that wires them all, is the one exception;
//! - a library (a member under `crates/`) never depends on a service or the CLI;
//! - the contract (the root package) depends on no other member;
//! - the ATT&CK library (`attackmesh-attack`) and the campaign library (`attackmesh-campaign`)
//!   depend on no RPC framework, async runtime or service runtime (tonic, tokio,
//!   attackmesh-runtime).
//!
//! Only normal dependencies count: dev-dependencies (a test may start several services) and
//! build dependencies never reach a deployed binary's code. Members are classified by where
//! their manifest lives, not by a list, so a new service is covered the day it is added; a
//! member anywhere else is reported so that it gets a place.

use std::collections::HashMap;
use std::path::{Component, Path};
use std::process::Command;

use serde_json::{Value, json};

/// The deployable that wires every service together.
const CLI: &str = "attackmesh-cli";
/// The ATT&CK library and what it must not depend on.
const ATTACK: &str = "attackmesh-attack";
const ATTACK_FORBIDDEN: &[&str] = &["tonic", "tokio", "attackmesh-runtime"];
/// The campaign library: plain domain logic that a service wraps, held to the same wall.
const CAMPAIGN: &str = "attackmesh-campaign";

/// A workspace member's place in the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The root package.
    Contract,
    /// Under `crates/`.
    Library,
    /// Under `services/`, except the CLI.
    Service,
    /// The CLI.
    Cli,
    /// Anywhere else.
    Unplaced,
}

/// A workspace member and the names of its normal dependencies.
#[derive(Debug)]
struct Member<'a> {
    name: &'a str,
    /// Manifest path relative to the workspace root.
    manifest: &'a Path,
    role: Role,
    deps: Vec<&'a str>,
}

fn role(name: &str, manifest: &Path) -> Role {
    let mut parts = manifest.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(file)), None) if file == "Cargo.toml" => Role::Contract,
        (Some(Component::Normal(_)), Some(_)) if name == CLI => Role::Cli,
        (Some(Component::Normal(dir)), Some(_)) if dir == "services" => Role::Service,
        (Some(Component::Normal(dir)), Some(_)) if dir == "crates" => Role::Library,
        _ => Role::Unplaced,
    }
}

fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("metadata: `{what}` is not a string"))
}

/// The workspace members of `cargo metadata --format-version 1` output, classified.
fn members(metadata: &Value) -> Vec<Member<'_>> {
    let root = Path::new(text(&metadata["workspace_root"], "workspace_root"));
    let ids: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .expect("metadata: workspace_members")
        .iter()
        .map(|id| text(id, "workspace_members[]"))
        .collect();
    metadata["packages"]
        .as_array()
        .expect("metadata: packages")
        .iter()
        .filter(|p| ids.contains(&text(&p["id"], "id")))
        .map(|p| {
            let name = text(&p["name"], "name");
            let path = Path::new(text(&p["manifest_path"], "manifest_path"));
            let manifest = path.strip_prefix(root).unwrap_or(path);
            let deps = p["dependencies"]
                .as_array()
                .expect("metadata: dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| text(&d["name"], "dependencies[].name"))
                .collect();
            Member {
                name,
                manifest,
                role: role(name, manifest),
                deps,
            }
        })
        .collect()
}

/// Every dependency that breaks a wall, as a sentence naming both ends.
fn violations(metadata: &Value) -> Vec<String> {
    let members = members(metadata);
    let roles: HashMap<&str, Role> = members.iter().map(|m| (m.name, m.role)).collect();
    let mut out = Vec::new();
    if !members.iter().any(|m| m.role == Role::Contract) {
        out.push("no member at the workspace root: the contract is missing".to_owned());
    }
    if !members.iter().any(|m| m.name == ATTACK) {
        out.push(format!(
            "no member named {ATTACK}: the ATT&CK library's wall checks nothing"
        ));
    }
    for m in &members {
        let at = m.manifest.display();
        if m.role == Role::Unplaced {
            out.push(format!(
                "member {} ({at}) is neither the contract (workspace root), a library (crates/) nor a service (services/)",
                m.name
            ));
        }
        for dep in &m.deps {
            let dep_role = roles.get(dep).copied();
            match (m.role, dep_role) {
                (Role::Service, Some(Role::Service | Role::Cli)) => out.push(format!(
                    "service {} ({at}) depends on {dep}: services meet only over gRPC",
                    m.name
                )),
                (Role::Library, Some(Role::Service | Role::Cli)) => out.push(format!(
                    "library {} ({at}) depends on {dep}: libraries never depend on a deployable",
                    m.name
                )),
                (Role::Contract, Some(_)) => out.push(format!(
                    "the contract {} depends on workspace member {dep}: everything depends on the contract, not the reverse",
                    m.name
                )),
                _ => {}
            }
            if m.name == ATTACK && ATTACK_FORBIDDEN.contains(dep) {
                out.push(format!(
                    "{ATTACK} ({at}) depends on {dep}: the ATT&CK library has no RPC framework, async runtime or service runtime"
                ));
            }
            if m.name == CAMPAIGN && ATTACK_FORBIDDEN.contains(dep) {
                out.push(format!(
                    "{CAMPAIGN} ({at}) depends on {dep}: the campaign library has no RPC framework, async runtime or service runtime"
                ));
            }
        }
    }
    out
}

#[test]
fn the_workspace_keeps_its_walls() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");

    let members = members(&metadata);
    for role in [Role::Contract, Role::Library, Role::Service, Role::Cli] {
        assert!(
            members.iter().any(|m| m.role == role),
            "no {role:?} found among {members:#?}: the classification no longer fits the layout"
        );
    }
    let found = violations(&metadata);
    assert!(
        found.is_empty(),
        "{} wall(s) broken:\n{}",
        found.len(),
        found.join("\n")
    );
}

// The classification and the rules, on small hand-made graphs.

/// A hand-made dependency: its name and kind (`None` for normal, `Some("dev")`, `Some("build")`).
type Dep<'a> = (&'a str, Option<&'a str>);
/// A hand-made member: its name, directory under the workspace root (empty for the root), and
/// dependencies.
type Fake<'a> = (&'a str, &'a str, Vec<Dep<'a>>);

/// `cargo metadata` output for a workspace at `/ws` with these members, plus one registry
/// package, which is not a member and never checked.
fn workspace(members: &[Fake<'_>]) -> Value {
    let package = |name: &str, manifest: String, deps: &[Dep<'_>]| {
        json!({
            "name": name,
            "id": format!("path+file://{}#{name}@0.1.0", manifest.trim_end_matches("/Cargo.toml")),
            "manifest_path": manifest,
            "dependencies": deps.iter().map(|(n, k)| json!({"name": n, "kind": k})).collect::<Vec<_>>(),
        })
    };
    let mut packages: Vec<Value> = members
        .iter()
        .map(|(name, dir, deps)| {
            let manifest = if dir.is_empty() {
                "/ws/Cargo.toml".to_owned()
            } else {
                format!("/ws/{dir}/Cargo.toml")
            };
            package(name, manifest, deps)
        })
        .collect();
    let ids: Vec<Value> = packages.iter().map(|p| p["id"].clone()).collect();
    packages.push(package(
        "tonic",
        "/registry/tonic-0.14.9/Cargo.toml".to_owned(),
        &[("attackmesh-runtime", None), ("tokio", None)],
    ));
    json!({"workspace_root": "/ws", "workspace_members": ids, "packages": packages})
}

/// The members of today's workspace with their member dependencies, plus extra dependencies
/// `(from, to, kind)`, and any extra members.
fn healthy_with<'a>(extra_deps: &[(&'a str, &'a str, Option<&'a str>)], extra_members: Vec<Fake<'a>>) -> Value {
    let mut members: Vec<Fake<'a>> = vec![
        (
            "attackmesh",
            "",
            vec![("tonic", None), ("attackmesh-attribution", Some("dev"))],
        ),
        (
            ATTACK,
            "crates/attack",
            vec![("attackmesh", None), ("attackmesh-testkit", Some("dev"))],
        ),
        (
            "attackmesh-runtime",
            "crates/runtime",
            vec![("attackmesh", None), ("tonic", None), ("tokio", None)],
        ),
        (
            "attackmesh-testkit",
            "crates/testkit",
            vec![("attackmesh", None), (ATTACK, None)],
        ),
        (
            "attackmesh-attribution",
            "services/attribution",
            vec![("attackmesh", None), (ATTACK, None), ("attackmesh-runtime", None)],
        ),
        (
            "attackmesh-enrichment",
            "services/enrichment",
            vec![("attackmesh-runtime", None), ("attackmesh-attribution", Some("dev"))],
        ),
        ("attackmesh-intel", "services/intel", vec![("attackmesh-runtime", None)]),
        (
            CLI,
            "services/cli",
            vec![
                ("attackmesh-attribution", None),
                ("attackmesh-enrichment", None),
                ("attackmesh-intel", None),
            ],
        ),
    ];
    for (from, to, kind) in extra_deps {
        let m = members.iter_mut().find(|m| m.0 == *from).expect("known member");
        m.2.push((to, *kind));
    }
    members.extend(extra_members);
    workspace(&members)
}

#[test]
fn members_are_classified_by_where_their_manifest_lives() {
    let metadata = healthy_with(&[], vec![("attackmesh-correlation", "services/correlation", vec![])]);
    let roles: HashMap<&str, Role> = members(&metadata).iter().map(|m| (m.name, m.role)).collect();
    assert_eq!(roles["attackmesh"], Role::Contract);
    assert_eq!(roles[ATTACK], Role::Library);
    assert_eq!(roles["attackmesh-testkit"], Role::Library);
    assert_eq!(roles["attackmesh-intel"], Role::Service);
    assert_eq!(roles["attackmesh-correlation"], Role::Service);
    assert_eq!(roles[CLI], Role::Cli);
    assert!(!roles.contains_key("tonic"), "registry packages are not members");
}

#[test]
fn the_graph_as_designed_breaks_no_wall() {
    assert_eq!(violations(&healthy_with(&[], vec![])), Vec::<String>::new());
}

#[test]
fn a_new_service_depending_on_another_service_breaks_the_wall() {
    let metadata = healthy_with(
        &[],
        vec![(
            "attackmesh-correlation",
            "services/correlation",
            vec![("attackmesh-runtime", None), ("attackmesh-intel", None)],
        )],
    );
    let found = violations(&metadata);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "service attackmesh-correlation (services/correlation/Cargo.toml) depends on attackmesh-intel"
        ),
        "{found:?}"
    );
}

#[test]
fn a_service_may_use_another_in_tests_and_build_scripts_only() {
    let metadata = healthy_with(
        &[
            ("attackmesh-intel", "attackmesh-attribution", Some("dev")),
            ("attackmesh-intel", "attackmesh-enrichment", Some("build")),
        ],
        vec![],
    );
    assert_eq!(violations(&metadata), Vec::<String>::new());
    let metadata = healthy_with(&[("attackmesh-intel", "attackmesh-attribution", None)], vec![]);
    assert_eq!(violations(&metadata).len(), 1);
}

#[test]
fn no_service_depends_on_the_cli() {
    let found = violations(&healthy_with(&[("attackmesh-intel", CLI, None)], vec![]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("depends on attackmesh-cli"), "{found:?}");
}

#[test]
fn a_library_depending_on_a_service_or_the_cli_breaks_the_wall() {
    let found = violations(&healthy_with(
        &[
            ("attackmesh-testkit", "attackmesh-intel", None),
            ("attackmesh-runtime", CLI, None),
        ],
        vec![],
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|v| v.starts_with("library attackmesh-testkit")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.starts_with("library attackmesh-runtime")),
        "{found:?}"
    );
}

#[test]
fn the_contract_depends_on_no_member() {
    let found = violations(&healthy_with(&[("attackmesh", "attackmesh-runtime", None)], vec![]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("the contract attackmesh depends on workspace member attackmesh-runtime"));
}

#[test]
fn the_attack_library_has_no_rpc_framework_or_async_runtime() {
    let found = violations(&healthy_with(
        &[
            (ATTACK, "tonic", None),
            (ATTACK, "tokio", None),
            (ATTACK, "attackmesh-runtime", None),
        ],
        vec![],
    ));
    assert_eq!(found.len(), 3, "{found:?}");
    for dep in ATTACK_FORBIDDEN {
        assert!(
            found.iter().any(|v| v.contains(&format!("depends on {dep}:"))),
            "{found:?}"
        );
    }
    // In its tests it may use anything.
    assert_eq!(
        violations(&healthy_with(&[(ATTACK, "tokio", Some("dev"))], vec![])),
        Vec::<String>::new()
    );
}

#[test]
fn a_member_outside_crates_and_services_is_reported() {
    let found = violations(&healthy_with(&[], vec![("attackmesh-tool", "tools/x", vec![])]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("member attackmesh-tool (tools/x/Cargo.toml)"),
        "{found:?}"
    );
}
