//! The one parser of `Authorization` values, for gRPC metadata and HTTP headers alike:
//! `Bearer <token>`, or HTTP Basic whose password is the token (and whose user, when given,
//! must be the token's name). Which schemes a surface accepts is the caller's decision.

use base64::Engine as _;

/// Credentials as presented.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Credentials {
    /// `Bearer <token>`.
    Bearer(String),
    /// `Basic base64(user:password)`; the password is the token.
    Basic {
        /// The user name (may be empty).
        user: String,
        /// The token.
        password: String,
    },
    /// Another scheme, or no scheme at all.
    Unsupported,
}

impl Credentials {
    /// Parses an `Authorization` value; schemes are case-insensitive. Fails (with the reason
    /// for the client) only on Basic credentials that are not base64 of UTF-8.
    pub(super) fn parse(value: &str) -> Result<Self, &'static str> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Credentials::Bearer(rest.trim().to_owned()))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or("malformed Basic credentials")?;
            let (user, password) = decoded.split_once(':').unwrap_or(("", decoded.as_str()));
            Ok(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        } else {
            Ok(Credentials::Unsupported)
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::Credentials;

    fn basic(pair: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    #[test]
    fn bearer_and_basic_are_told_apart_in_any_case() {
        assert_eq!(Credentials::parse("Bearer abc"), Ok(Credentials::Bearer("abc".into())));
        assert_eq!(
            Credentials::parse("bearer  abc "),
            Ok(Credentials::Bearer("abc".into()))
        );
        assert_eq!(
            Credentials::parse(&basic("reader:tok:en")),
            Ok(Credentials::Basic {
                user: "reader".into(),
                password: "tok:en".into()
            })
        );
        assert_eq!(
            Credentials::parse(&basic("tok")),
            Ok(Credentials::Basic {
                user: String::new(),
                password: "tok".into()
            })
        );
        assert_eq!(Credentials::parse("Digest x"), Ok(Credentials::Unsupported));
        assert_eq!(Credentials::parse(""), Ok(Credentials::Unsupported));
        assert!(Credentials::parse("Basic not-base64!").is_err());
    }
}
