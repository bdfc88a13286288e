//! What `attackmesh serve … --check-config` and `serve` catch before any service starts:
//! secret files other users can read, and data directories that cannot be directories.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output, Stdio},
};

use common::{Addrs, base_config};
use serde_json::Value;

/// Runs `attackmesh serve <service> --config <dir>/config.json [extra]` with an empty
/// environment and returns its output.
fn serve(dir: &Path, config: &Value, service: &str, extra: &[&str]) -> Output {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_attackmesh"))
        .args(["serve", service, "--config"])
        .arg(&path)
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_config_warns_about_secret_files_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path(), &Addrs::new());
    let tokens = dir.path().join("tokens.yaml");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();

    let output = serve(dir.path(), &config, "all", &["--check-config"]);
    let shown = text(&output);
    assert!(output.status.success(), "a warning does not fail the check:\n{shown}");
    assert!(shown.contains("configuration ok"), "{shown}");
    let warning = shown
        .lines()
        .find(|l| l.contains("warning") && l.contains("auth.token_files[0]"))
        .unwrap_or_else(|| panic!("no warning about the token file:\n{shown}"));
    assert!(warning.contains(&tokens.display().to_string()), "{warning}");
    assert!(warning.contains("0644") && warning.contains("chmod 600"), "{warning}");

    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = serve(dir.path(), &config, "all", &["--check-config"]);
    assert!(!text(&output).contains("warning"), "{}", text(&output));
}

#[test]
fn a_data_dir_that_is_a_file_is_a_configuration_error_naming_it() {
    for (service, section) in [
        ("siem-export", "siem_export"),
        ("enrichment", "enrichment"),
        ("intel", "intel"),
        ("all", "intel"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(dir.path(), &Addrs::new());
        let file = dir.path().join(format!("{section}-is-a-file"));
        std::fs::write(&file, "not a directory").unwrap();
        config[section]["data_dir"] = Value::String(file.display().to_string());
        for extra in [&["--check-config"][..], &[]] {
            let output = serve(dir.path(), &config, service, extra);
            let shown = text(&output);
            assert_eq!(output.status.code(), Some(64), "serve {service} {extra:?}:\n{shown}");
            assert!(
                shown.contains(&format!("{section}.data_dir")) && shown.contains(&file.display().to_string()),
                "serve {service} {extra:?} names the setting and the path:\n{shown}"
            );
            assert!(!shown.contains("configuration ok"), "{shown}");
        }
    }
}

#[test]
fn a_data_dir_under_a_file_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path(), &Addrs::new());
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    config["siem_export"]["data_dir"] = Value::String(file.join("export").display().to_string());
    let output = serve(dir.path(), &config, "siem-export", &["--check-config"]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(64), "{shown}");
    assert!(
        shown.contains("siem_export.data_dir") && shown.contains(&file.display().to_string()),
        "{shown}"
    );
}
