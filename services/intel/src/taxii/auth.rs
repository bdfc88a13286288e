//! TAXII per-collection authorisation.
//!
//! Credentials are checked by the runtime ([`Authenticator::check_http`] with the TAXII rows of
//! the RBAC table): only `analyst` and `admin` tokens reach TAXII. Here, `admin` may read and write
//! every collection, an analyst what the collection's `read`/`write` lists name.
//!
//! [`Authenticator::check_http`]: attackmesh_runtime::auth::Authenticator::check_http

use attackmesh_runtime::auth::{Caller, Role};

use crate::config::CollectionConfig;

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
    use super::*;

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
