use std::collections::BTreeMap;

use super::*;
use crate::sinks::file::{FileShape, FileSinkConfig};
use attackmesh_runtime::secret::{REDACTED, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default)]
    siem_export: SiemExportConfig,
}

fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<SiemExportConfig, attackmesh_runtime::Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
    }
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    attackmesh_runtime::config::load::<Top>(file.map(|_| path.as_path()), &env, ENV_ALIASES).map(|t| t.siem_export)
}

#[test]
fn the_seed_variables_configure_the_sinks() {
    let c = load(
        &[
            ("ATTACKMESH_ELASTICSEARCH_URL", "https://es.example:9200"),
            ("ATTACKMESH_ELASTICSEARCH_USERNAME", "elastic"),
            ("ATTACKMESH_ELASTICSEARCH_PASSWORD", "123456"),
            ("ATTACKMESH_SPLUNK_HEC_URL", "https://splunk.example:8088"),
            ("ATTACKMESH_SPLUNK_HEC_TOKEN", "hec-token-value"),
            ("ATTACKMESH_SPLUNK_INDEX", "security"),
            ("ATTACKMESH_SIEM_EXPORT__BATCH__MAX_AGE", "50ms"),
        ],
        None,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.elasticsearch.url.as_deref(), Some("https://es.example:9200"));
    assert_eq!(
        c.elasticsearch.password.as_ref().map(Secret::expose),
        Some("123456"),
        "a numeric password stays text"
    );
    assert_eq!(c.splunk_hec.index.as_deref(), Some("security"));
    assert_eq!(c.batch.max_age, Duration::from_millis(50));
    let kinds: Vec<&str> = c.sinks().iter().map(|s| s.kind()).collect();
    assert_eq!(kinds, vec!["elasticsearch", "splunk_hec"]);
}

#[test]
fn credentials_from_env_reach_the_sinks_verbatim() {
    for text in ["0x1F2E3D4C", "1e3", "+1", "0o17", ".5", "1.50"] {
        let c = load(
            &[
                ("ATTACKMESH_ELASTICSEARCH_URL", "https://es.example:9200"),
                ("ATTACKMESH_ELASTICSEARCH_USERNAME", text),
                ("ATTACKMESH_SIEM_EXPORT__ELASTICSEARCH__PASSWORD", text),
                ("ATTACKMESH_SPLUNK_HEC_URL", "https://splunk.example:8088"),
                ("ATTACKMESH_SPLUNK_HEC_TOKEN", text),
                ("ATTACKMESH_SPLUNK_INDEX", text),
            ],
            None,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.elasticsearch.password.as_ref().map(Secret::expose), Some(text));
        assert_eq!(c.elasticsearch.username.as_deref(), Some(text));
        assert_eq!(c.splunk_hec.token.as_ref().map(Secret::expose), Some(text));
        assert_eq!(c.splunk_hec.index.as_deref(), Some(text));
    }
}

#[test]
fn secrets_never_show_in_debug_display_or_serialised_config() {
    let c = load(
        &[
            ("ATTACKMESH_ELASTICSEARCH_URL", "https://es.example:9200"),
            ("ATTACKMESH_ELASTICSEARCH_API_KEY", "top-secret-api-key"),
            ("ATTACKMESH_SPLUNK_HEC_URL", "https://splunk.example:8088"),
            ("ATTACKMESH_SPLUNK_HEC_TOKEN", "top-secret-hec-token"),
        ],
        None,
    )
    .unwrap();
    let shown = [
        format!("{c:?}"),
        format!("{:#?}", c),
        serde_json::to_string(&c).unwrap(),
    ];
    for text in shown {
        assert!(!text.contains("top-secret"), "{text}");
        assert!(text.contains(REDACTED));
    }
    assert_eq!(
        c.splunk_hec.token.as_ref().map(|t| t.to_string()).as_deref(),
        Some(REDACTED)
    );
}

#[test]
fn with_no_sink_configured_the_file_sink_writes_under_the_data_dir() {
    let c = SiemExportConfig::default();
    c.validate().unwrap();
    let sinks = c.sinks();
    assert_eq!(sinks.len(), 1);
    let SinkSpec::File(f) = &sinks[0] else {
        panic!("{sinks:?}")
    };
    assert!(f.path.as_ref().unwrap().starts_with(&c.data_dir));
    assert_eq!(f.shape, FileShape::Canonical);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_their_path() {
    let err = load(&[], Some("siem_export:\n  elasticsearch:\n    urll: http://x\n")).unwrap_err();
    assert!(err.to_string().contains("urll"), "{err}");
    let bad = |f: fn(&mut SiemExportConfig)| {
        let mut c = SiemExportConfig::default();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(bad(|c| c.splunk_hec.url = Some("https://s:8088".into())).contains("token"));
    assert!(bad(|c| c.elasticsearch.url = Some("https://elastic:pw@es:9200".into())).contains("credentials"));
    assert!(bad(|c| c.elasticsearch.url = Some("ftp://es".into())).contains("http"));
    assert!(
        bad(|c| {
            c.elasticsearch.url = Some("http://es:9200".into());
            c.elasticsearch.index = "Bad Index".into();
        })
        .contains("index")
    );
    assert!(bad(|c| c.batch.max_events = 0).contains("max_events"));
    assert!(bad(|c| c.queue.max_bytes = 10).contains("max_bytes"));
    assert!(
        bad(|c| {
            c.elasticsearch.url = Some("http://es:9200".into());
            c.elasticsearch.username = Some("elastic".into());
        })
        .contains("together")
    );
}

#[test]
fn fsync_policy_and_durations_read_from_yaml() {
    let c = load(&[], Some("siem_export:\n  queue: {fsync: never, max_bytes: 1048576, segment_bytes: 65536}\n  retry: {max_duration: 2m}\n")).unwrap();
    assert_eq!(c.queue.fsync, FsyncPolicy::Never);
    assert_eq!(c.retry.max_duration, Duration::from_secs(120));
    c.validate().unwrap();
}

#[test]
fn extra_file_sinks_are_named_file_dash_name_next_to_the_file_sink() {
    let c = load(
        &[],
        Some(
            "siem_export:\n  file: {path: /tmp/am/events.ndjson}\n  files:\n    - {name: ecs, path: /tmp/am/ecs.ndjson, shape: ecs}\n    - {name: hec-2, path: /tmp/am/hec.ndjson, shape: hec}\n",
        ),
    )
    .unwrap();
    c.validate().unwrap();
    let sinks: Vec<(String, &str)> = c.sinks().iter().map(|s| (s.name().into_owned(), s.kind())).collect();
    assert_eq!(
        sinks,
        vec![
            ("file".into(), "file"),
            ("file-ecs".into(), "file"),
            ("file-hec-2".into(), "file")
        ]
    );
    let SinkSpec::File(hec) = &c.sinks()[2] else { panic!() };
    assert_eq!(hec.shape, FileShape::Hec);
}

#[test]
fn extra_file_sinks_alone_replace_the_default_file_sink() {
    let mut c = SiemExportConfig::default();
    c.files.push(FileSinkConfig {
        name: Some("ecs".into()),
        path: Some("/tmp/am/ecs.ndjson".into()),
        shape: FileShape::Ecs,
        ..Default::default()
    });
    c.validate().unwrap();
    let names: Vec<String> = c.sinks().iter().map(|s| s.name().into_owned()).collect();
    assert_eq!(names, vec!["file-ecs"]);
}

#[test]
fn extra_file_sinks_need_a_unique_well_formed_name_and_a_path() {
    let with = |files: Vec<(Option<&str>, Option<&str>)>| {
        let c = SiemExportConfig {
            files: files
                .into_iter()
                .map(|(name, path)| FileSinkConfig {
                    name: name.map(Into::into),
                    path: path.map(Into::into),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        c.validate().map(|()| c.sinks().len()).map_err(|e| e.to_string())
    };
    assert_eq!(
        with(vec![(Some("a"), Some("/tmp/a")), (Some("0-b"), Some("/tmp/b"))]),
        Ok(2)
    );
    let err = with(vec![(Some("a"), Some("/tmp/a")), (None, Some("/tmp/b"))]).unwrap_err();
    assert!(err.contains("files[1].name must be set"), "{err}");
    for bad in ["", "-a", "Upper", "a_b", "a.b", &"x".repeat(33)] {
        let err = with(vec![(Some(bad), Some("/tmp/a"))]).unwrap_err();
        assert!(err.contains("files[0].name `"), "{bad}: {err}");
    }
    assert_eq!(with(vec![(Some(&"x".repeat(32)), Some("/tmp/a"))]), Ok(1));
    let err = with(vec![(Some("a"), Some("/tmp/a")), (Some("a"), Some("/tmp/b"))]).unwrap_err();
    assert!(err.contains("files[1].name `a` is used by another entry"), "{err}");
    let err = with(vec![(Some("a"), None)]).unwrap_err();
    assert!(err.contains("files[0].path must be set"), "{err}");
    let mut c = SiemExportConfig::default();
    c.files.push(FileSinkConfig {
        name: Some("a".into()),
        path: Some("/tmp/a".into()),
        rotate_bytes: 10,
        ..Default::default()
    });
    assert!(c.validate().unwrap_err().to_string().contains("files[0].rotate_bytes"));
    let mut c = SiemExportConfig::default();
    c.file.name = Some("x".into());
    assert!(c.validate().unwrap_err().to_string().contains("file.name"));
}
