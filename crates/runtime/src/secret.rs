//! [`Secret`]: the one type every credential of the product is held in — bearer tokens, API keys,
//! passwords, HEC tokens, database URLs with a password.
//!
//! A secret prints as [`REDACTED`] in `Debug`, `Display` and serialised config, so deriving
//! `Debug` on a config struct that holds one is safe, and a secret cannot reach a log line, an
//! error or a metric label by accident. Only [`Secret::expose`] yields the value, and only code
//! that builds an outgoing request (or stores a digest) should call it.
//!
//! [`SecretSource`] is where a credential comes from: the config itself, or a file (`*_file`
//! keys, e.g. a mounted Kubernetes Secret) that is read again whenever it changes, so the
//! credential rotates without a restart. [`read_file`] is the one way a secret file is read.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{error::Error, secret_file::Watched};

/// Text shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A credential. Deserialises from a string (kept exactly as written, whitespace included) or
/// from a number or boolean (an environment value that looks like one); prints as [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself; use it only to build an outgoing request or a digest.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no credential was given (empty or only whitespace).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::config::scalar_string(deserializer).map(Secret)
    }
}

/// Reads the secret `what` from `path`: UTF-8 text, surrounding whitespace (a trailing newline)
/// removed, not empty. The error names the file, never the contents.
pub fn read_file(what: &'static str, path: &Path) -> Result<Secret, Error> {
    parse_file(
        what,
        path,
        std::fs::read(path).map_err(|e| file_error(what, path, e.kind().to_string()))?,
    )
}

fn parse_file(what: &'static str, path: &Path, bytes: Vec<u8>) -> Result<Secret, Error> {
    let text = String::from_utf8(bytes).map_err(|_| file_error(what, path, "not UTF-8 text".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(file_error(what, path, "the file is empty".into()));
    }
    Ok(Secret::new(text))
}

fn file_error(what: &'static str, path: &Path, reason: String) -> Error {
    Error::Secret {
        what,
        path: path.to_owned(),
        reason,
    }
}

/// Where a credential comes from: the config (fixed) or a file, read again when it changes
/// (see [`Watched`]), so the credential rotates without a restart. A changed file that cannot
/// be used (unreadable, empty) keeps the credential loaded before; the failure is logged and
/// counted once per change ([`crate::secret_file::reload_failed`]). Cheap to clone; clones
/// share the loaded value.
#[derive(Clone, Debug)]
pub struct SecretSource(Arc<Origin>);

#[derive(Debug)]
enum Origin {
    Fixed(Secret),
    File {
        what: &'static str,
        state: Mutex<(Watched, Secret)>,
    },
}

impl SecretSource {
    /// A credential given in config.
    pub fn fixed(secret: Secret) -> Self {
        Self(Arc::new(Origin::Fixed(secret)))
    }

    /// The credential `what` in the file `path`, read now (an unusable file is an error here)
    /// and again whenever it changes.
    pub fn file(what: &'static str, path: PathBuf) -> Result<Self, Error> {
        let mut watched = Watched::new(vec![path.clone()]);
        let contents = watched
            .changed()
            .map_err(|(path, e)| file_error(what, &path, e.kind().to_string()))?
            .and_then(|mut files| files.pop())
            .unwrap_or_default();
        let secret = parse_file(what, &path, contents)?;
        Ok(Self(Arc::new(Origin::File {
            what,
            state: Mutex::new((watched, secret)),
        })))
    }

    /// The credential of a `<key>` / `<key>_file` pair of settings: the file when set, else the
    /// value, else `None`.
    pub fn from_config(what: &'static str, value: Option<&Secret>, file: Option<&Path>) -> Result<Option<Self>, Error> {
        match (file, value) {
            (Some(path), _) => Self::file(what, path.to_owned()).map(Some),
            (None, Some(secret)) if !secret.is_empty() => Ok(Some(Self::fixed(secret.clone()))),
            (None, _) => Ok(None),
        }
    }

    /// The credential now: a file is checked for change (a `stat`, and a read when it moved)
    /// and re-read; on a failure the credential loaded before is returned.
    pub fn current(&self) -> Secret {
        match &*self.0 {
            Origin::Fixed(secret) => secret.clone(),
            Origin::File { what, state } => {
                let Ok(mut state) = state.lock() else {
                    return Secret::default();
                };
                let (watched, secret) = &mut *state;
                let path = watched.paths().first().cloned().unwrap_or_default();
                match watched.changed() {
                    Ok(None) => {}
                    Ok(Some(mut files)) => match parse_file(what, &path, files.pop().unwrap_or_default()) {
                        Ok(new) => {
                            tracing::info!(what = *what, path = %path.display(), "secret file changed; new value in use");
                            *secret = new;
                        }
                        Err(error) => crate::secret_file::reload_failed(what, &error),
                    },
                    Err((path, e)) => {
                        crate::secret_file::reload_failed(what, &file_error(what, &path, e.kind().to_string()))
                    }
                }
                secret.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Holder {
        token: Secret,
    }

    #[test]
    fn a_secret_keeps_its_value_and_shows_only_redacted() {
        let held: Holder = serde_json::from_str(r#"{"token": "  s3cr3t value\n"}"#).unwrap();
        assert_eq!(held.token.expose(), "  s3cr3t value\n", "kept exactly as written");
        for shown in [
            format!("{held:?}"),
            format!("{held:#?}"),
            held.token.to_string(),
            serde_json::to_string(&held).unwrap(),
        ] {
            assert!(!shown.contains("s3cr3t") && shown.contains(REDACTED), "{shown}");
        }
        let numeric: Holder = serde_json::from_str(r#"{"token": 123456}"#).unwrap();
        assert_eq!(numeric.token.expose(), "123456");
        assert!(Secret::new(" \n").is_empty() && !Secret::from("x").is_empty());
    }

    #[test]
    fn a_file_source_follows_the_file_and_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = SecretSource::file("HEC token", path.clone()).unwrap();
        assert_eq!(source.current().expose(), "first", "trimmed");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(source.current().expose(), "second", "a changed file is read again");
        std::fs::write(&path, "  \n").unwrap();
        assert_eq!(
            source.current().expose(),
            "second",
            "an empty file keeps the last value"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            source.current().expose(),
            "second",
            "a missing file keeps the last value"
        );
        std::fs::write(&path, "third").unwrap();
        assert_eq!(source.current().expose(), "third");

        let err = SecretSource::file("HEC token", dir.path().join("missing")).unwrap_err();
        assert!(
            err.to_string().contains("HEC token") && err.to_string().contains("missing"),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        let err = SecretSource::file("HEC token", path.clone()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let fixed = SecretSource::from_config("api key", Some(&Secret::new("k")), None)
            .unwrap()
            .unwrap();
        assert_eq!(fixed.current().expose(), "k");
        assert!(SecretSource::from_config("api key", None, None).unwrap().is_none());
    }
}
