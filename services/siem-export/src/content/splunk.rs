//! The attackmesh app for Splunk, as an installable `.tgz`: the `attackmesh:alert` source type
//! with CIM Intrusion Detection field aliases, the event type and tags that put the alerts in
//! that data model, a risk-based-alerting search writing risk per object with
//! `annotations.mitre_attack.*`, and a dashboard of techniques by tactic. The files live in
//! `services/siem-export/splunk-app/` and are embedded in the binary; the archive is
//! deterministic (sorted entries, fixed times, owners and modes), so one release always builds
//! the same bytes. Only bytes are built here: no I/O.

use std::io::Write as _;

use flate2::{Compression, GzBuilder};

/// Folder name of the app inside the archive (its `[package] id`).
pub const APP_ID: &str = "attackmesh";

/// Modification time of every entry: 2024-01-01T00:00:00Z, so the archive never depends on
/// when it was built.
const MTIME: u64 = 1_704_067_200;

/// The app's files (path under the app folder, contents), sorted by path.
const FILES: &[(&str, &str)] = &[
    ("README.txt", include_str!("../../splunk-app/README.txt")),
    ("default/app.conf", include_str!("../../splunk-app/default/app.conf")),
    (
        "default/data/ui/nav/default.xml",
        include_str!("../../splunk-app/default/data/ui/nav/default.xml"),
    ),
    (
        "default/data/ui/views/attackmesh_attack.xml",
        include_str!("../../splunk-app/default/data/ui/views/attackmesh_attack.xml"),
    ),
    (
        "default/eventtypes.conf",
        include_str!("../../splunk-app/default/eventtypes.conf"),
    ),
    (
        "default/macros.conf",
        include_str!("../../splunk-app/default/macros.conf"),
    ),
    (
        "default/props.conf",
        include_str!("../../splunk-app/default/props.conf"),
    ),
    (
        "default/savedsearches.conf",
        include_str!("../../splunk-app/default/savedsearches.conf"),
    ),
    ("default/tags.conf", include_str!("../../splunk-app/default/tags.conf")),
    (
        "metadata/default.meta",
        include_str!("../../splunk-app/metadata/default.meta"),
    ),
];

/// The app's files with `@VERSION@` replaced by `version`, sorted by path.
pub fn files(version: &str) -> Vec<(&'static str, String)> {
    FILES
        .iter()
        .map(|(path, text)| (*path, text.replace("@VERSION@", version)))
        .collect()
}

/// The app as a gzip-compressed tar archive, every path under `attackmesh/`.
pub fn app_tgz(version: &str) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut entries: Vec<(String, Option<Vec<u8>>)> = vec![(format!("{APP_ID}/"), None)];
    for (path, text) in files(version) {
        // Every folder on the way, once, before the files in it (the sort below orders them).
        for (i, _) in path.match_indices('/') {
            let dir = format!("{APP_ID}/{}/", &path[..i]);
            if !entries.iter().any(|(p, _)| *p == dir) {
                entries.push((dir, None));
            }
        }
        entries.push((format!("{APP_ID}/{path}"), Some(text.into_bytes())));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        match data {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &path, std::io::empty())?;
            }
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &path, bytes.as_slice())?;
            }
        }
    }
    let archive = tar.into_inner()?;
    // No file name and a zero time in the gzip header, so the bytes depend only on the content.
    let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gz.write_all(&archive)?;
    gz.finish()
}
