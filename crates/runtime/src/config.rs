//! Layered, typed configuration: defaults → YAML/JSON file → `ATTACKMESH_…` environment.
//!
//! Environment keys map to config paths by lower-casing and splitting on `__`
//! (`ATTACKMESH_ATTRIBUTION__RELOAD_INTERVAL=10s` sets `attribution.reload_interval`); a short
//! alias table keeps the seed's variable names working. A value is text until its field says
//! otherwise: string settings (passwords, tokens, names) get it verbatim, whatever it looks
//! like; numeric, boolean and list settings read it as YAML (`5`, `true`, `[a, b]`).
//! Unknown keys are rejected by the target types (`deny_unknown_fields`), wherever they come from.
//! Loaders take the environment as a map so tests never touch the process environment.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{auth::AuthConfig, error::Error, http::HttpLimits, telemetry::TelemetryConfig, tls::TlsConfig};

mod layers;

/// Prefix of every environment variable that configures attackmesh.
pub const ENV_PREFIX: &str = "ATTACKMESH_";
/// Environment variable naming the config file (not itself a config key).
pub const ENV_CONFIG_FILE: &str = "ATTACKMESH_CONFIG";

/// Settings every service shares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Logs, traces and metrics.
    pub telemetry: TelemetryConfig,
    /// Who may call which RPC.
    pub auth: AuthConfig,
    /// TLS for every listener and client.
    pub tls: TlsConfig,
    /// Timeouts and connection caps of the HTTP listeners (Falco input, TAXII, metrics).
    pub http: HttpLimits,
    /// How long a stopping service waits for in-flight streams before closing them.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            http: HttpLimits::default(),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl RuntimeConfig {
    /// Checks what serde cannot: files exist, values are consistent.
    pub fn validate(&self) -> Result<(), Error> {
        self.auth.validate()?;
        self.tls.validate()?;
        self.telemetry.validate()?;
        self.http.validate()?;
        if self.shutdown_grace > Duration::from_secs(600) {
            return Err(Error::ConfigInvalid("shutdown_grace: must be at most 10m".into()));
        }
        Ok(())
    }
}

/// Loads `T` from defaults, an optional file and the `ATTACKMESH_…` entries of `env`.
/// `aliases` maps whole variable names to config paths (`("ATTACKMESH_SPLUNK_INDEX", "siem_export.splunk_hec.index")`).
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
    aliases: &[(&str, &str)],
) -> Result<T, Error> {
    let mut root = match file {
        Some(path) => match read_file(path)? {
            Value::Null => layers::Node::empty(),
            value => layers::Node::File(value),
        },
        None => layers::Node::empty(),
    };
    for (key, raw) in env {
        if key == ENV_CONFIG_FILE || !key.starts_with(ENV_PREFIX) {
            continue;
        }
        let path = match aliases.iter().find(|(name, _)| name == key) {
            Some((_, path)) => path.split('.').map(str::to_owned).collect::<Vec<_>>(),
            None => key[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .split("__")
                .map(str::to_owned)
                .collect(),
        };
        root.set(&path, raw)
            .map_err(|why| Error::ConfigInvalid(format!("{key}: {why}")))?;
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(root, &mut track);
    T::deserialize(de).map_err(|e| {
        let path = track.path().to_string();
        if path == "." || path.is_empty() {
            Error::ConfigInvalid(e.to_string())
        } else {
            Error::ConfigInvalid(format!("{path}: {e}"))
        }
    })
}

fn read_file(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
        path: path.into(),
        source,
    })?;
    serde_yaml::from_str::<Value>(&text)
        .map_err(|e| Error::ConfigInvalid(format!("{}: not valid YAML/JSON: {e}", path.display())))
}

/// Deserialises a string, also from a number or boolean (an unquoted YAML value in a file);
/// null reads as the empty string. Environment values arrive as the text they are.
pub fn scalar_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    deserializer.deserialize_any(Text)
}

/// [`scalar_string`] for optional fields: empty or whitespace-only reads as `None`.
pub fn opt_scalar_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    scalar_string(deserializer).map(|s| if s.trim().is_empty() { None } else { Some(s) })
}

/// The process environment as a map (call once, in `main`).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        name: String,
        count: u32,
        inner: Inner,
    }

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        url: String,
        on: bool,
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_overrides_file_with_typed_values_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "name: a\ncount: 1\ninner:\n  url: x\n").unwrap();
        let e = env(&[
            ("ATTACKMESH_COUNT", "7"),
            ("ATTACKMESH_INNER__ON", "true"),
            ("ATTACKMESH_URL", "http://h"),
            ("HOME", "/root"),
        ]);
        let got: Demo = load(Some(&file), &e, &[("ATTACKMESH_URL", "inner.url")]).unwrap();
        assert_eq!(
            got,
            Demo {
                name: "a".into(),
                count: 7,
                inner: Inner {
                    url: "http://h".into(),
                    on: true
                }
            }
        );
    }

    /// Text that YAML would read as a number (hex, exponent, sign, octal, bare or trailing-zero
    /// decimals) is a plausible password or token.
    const NUMBER_LOOKING: [&str; 6] = ["0x1F2E3D4C", "1e3", "+1", "0o17", ".5", "1.50"];

    #[test]
    fn string_settings_from_env_keep_the_text_verbatim() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct Secrets {
            password: String,
            token: Option<String>,
            names: Vec<String>,
            count: u32,
            ratio: f64,
        }
        for text in NUMBER_LOOKING {
            let e = env(&[
                ("ATTACKMESH_PASSWORD", text),
                ("ATTACKMESH_TOKEN", text),
                ("ATTACKMESH_NAMES", &format!("[{text}, b]")),
            ]);
            let got: Secrets = load(None, &e, &[]).unwrap();
            assert_eq!(got.password, text);
            assert_eq!(got.token.as_deref(), Some(text));
            assert_eq!(got.names, vec![text.to_owned(), "b".to_owned()]);
        }
        for text in ["a: b", "'quoted'", "x # not a comment", "*alias", "null", ""] {
            let got: Secrets = load(None, &env(&[("ATTACKMESH_PASSWORD", text)]), &[]).unwrap();
            assert_eq!(got.password, text);
        }
        // Numeric settings still take numbers from the environment.
        let got: Secrets = load(
            None,
            &env(&[("ATTACKMESH_COUNT", "0x10"), ("ATTACKMESH_RATIO", ".5")]),
            &[],
        )
        .unwrap();
        assert_eq!((got.count, got.ratio), (16, 0.5));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let err = load::<Demo>(None, &env(&[("ATTACKMESH_INNER__URLL", "x")]), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("urll"), "{msg}");
        assert_eq!(err.exit_code(), 64);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = load::<Demo>(None, &env(&[("ATTACKMESH_COUNT", "many")]), &[]).unwrap_err();
        assert!(err.to_string().contains("count"), "{err}");
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let err = load::<Demo>(Some(Path::new("/nonexistent/x.yaml")), &BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 64);
    }
}
