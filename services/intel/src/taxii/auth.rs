//! TAXII authentication and per-collection authorisation.
//!
//! Credentials are the runtime's bearer tokens, checked against the same SHA-256 digests as gRPC
//! calls: `Authorization: Bearer <token>`, or HTTP Basic with the token as password (TAXII clients
//! such as OpenCTI and MISP speak Basic). A Basic user name, when given, must be the token's name.
//! Only `analyst` and `admin` tokens reach TAXII (detectors may only ingest); `admin` may read and
//! write every collection, an analyst what the collection's `read`/`write` lists name.

use attackmesh_runtime::auth::{Authenticator, Caller, Denied, Role};
use base64::Engine as _;
use http::HeaderMap;

use super::TaxiiError;
use crate::config::CollectionConfig;

/// gRPC method whose RBAC entry governs TAXII access (analyst or admin).
const RBAC_PATH: &str = "/attackmesh.v1.IntelService/ListCollections";

/// Authenticates a request's `Authorization` header.
pub fn authenticate(auth: &Authenticator, headers: &HeaderMap) -> Result<Caller, TaxiiError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let (bearer, basic_user) = match value {
        None => (None, None),
        Some(v) => {
            let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
            match scheme.to_ascii_lowercase().as_str() {
                "bearer" => (Some(rest.trim().to_owned()), None),
                "basic" => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(rest.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| TaxiiError::unauthorized("malformed Basic credentials"))?;
                    let (user, password) = decoded.split_once(':').unwrap_or(("", decoded.as_str()));
                    (Some(password.to_owned()), Some(user.to_owned()))
                }
                _ => {
                    return Err(TaxiiError::unauthorized(
                        "use HTTP Basic (token as password) or a Bearer token",
                    ));
                }
            }
        }
    };
    let header = bearer.map(|t| format!("Bearer {t}"));
    match auth.check(RBAC_PATH, header.as_deref()) {
        Ok(Some(caller)) => {
            if let Some(user) = basic_user.filter(|u| !u.is_empty())
                && user != *caller.name
            {
                return Err(TaxiiError::unauthorized("user name does not match the token"));
            }
            Ok(caller)
        }
        Ok(None) => Err(TaxiiError::unauthorized("missing credentials")),
        Err(Denied::Unauthenticated(why)) => Err(TaxiiError::unauthorized(why)),
        Err(Denied::PermissionDenied { role, .. }) => {
            Err(TaxiiError::forbidden(format!("role `{role}` may not use TAXII")))
        }
    }
}

/// What a caller may do with a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    /// May read objects.
    pub read: bool,
    /// May add objects.
    pub write: bool,
}

/// The caller's access to `collection`.
pub fn access(caller: &Caller, collection: &CollectionConfig) -> Access {
    if caller.role == Role::Admin {
        return Access {
            read: true,
            write: true,
        };
    }
    let listed = |names: &[String]| names.iter().any(|n| n == "*" || n.as_str() == &*caller.name);
    Access {
        read: listed(&collection.read),
        write: listed(&collection.write),
    }
}

#[cfg(test)]
mod tests {
    use attackmesh_runtime::auth::{AuthConfig, TokenEntry, hash_token};
    use http::StatusCode;

    use super::*;

    fn authn() -> Authenticator {
        let entry = |name: &str, role, token: &str| TokenEntry {
            name: name.into(),
            role,
            sha256: hash_token(token),
        };
        Authenticator::new(&AuthConfig {
            tokens: vec![
                entry("reader", Role::Analyst, "r-tok"),
                entry("det", Role::Detector, "d-tok"),
            ],
            ..Default::default()
        })
        .unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn bearer_and_basic_use_the_token_digests() {
        let a = authn();
        assert_eq!(&*authenticate(&a, &headers("Bearer r-tok")).unwrap().name, "reader");
        assert_eq!(
            &*authenticate(&a, &headers(&basic("reader", "r-tok"))).unwrap().name,
            "reader"
        );
        assert_eq!(
            &*authenticate(&a, &headers(&basic("", "r-tok"))).unwrap().name,
            "reader"
        );
        for bad in [
            basic("reader", "nope"),
            basic("other", "r-tok"),
            "Bearer nope".into(),
            "Digest x".into(),
        ] {
            assert_eq!(
                authenticate(&a, &headers(&bad)).unwrap_err().status(),
                StatusCode::UNAUTHORIZED,
                "{bad}"
            );
        }
        assert_eq!(
            authenticate(&a, &HeaderMap::new()).unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authenticate(&a, &headers("Bearer d-tok")).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn collection_lists_grant_access_and_admins_get_everything() {
        let c = CollectionConfig {
            id: "c".into(),
            title: "C".into(),
            description: String::new(),
            read: vec!["*".into()],
            write: vec!["writer".into()],
        };
        let caller = |name: &str, role| Caller {
            name: name.into(),
            role,
        };
        assert_eq!(
            access(&caller("reader", Role::Analyst), &c),
            Access {
                read: true,
                write: false
            }
        );
        assert_eq!(
            access(&caller("writer", Role::Analyst), &c),
            Access {
                read: true,
                write: true
            }
        );
        assert_eq!(
            access(&caller("ops", Role::Admin), &c),
            Access {
                read: true,
                write: true
            }
        );
    }
}
