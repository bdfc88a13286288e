//! Object queries (TAXII filters and the paging cursor) and their SQL, shared by both engines:
//! only the placeholder syntax differs (`?N` for SQLite, `$N` for PostgreSQL).

/// One `match[version]` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionMatch {
    /// The latest version of each object (the TAXII default).
    Last,
    /// The earliest version.
    First,
    /// Every version.
    All,
    /// The version with this `modified` (microseconds since the epoch).
    At(i64),
}

/// What to list.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only this object (single-object and versions endpoints).
    pub object_id: Option<String>,
    /// Only versions added strictly after this instant (microseconds since the epoch).
    pub added_after_us: Option<i64>,
    /// `match[id]`.
    pub ids: Vec<String>,
    /// `match[type]`.
    pub types: Vec<String>,
    /// `match[spec_version]`.
    pub spec_versions: Vec<String>,
    /// `match[version]`; empty means [`VersionMatch::Last`].
    pub versions: Vec<VersionMatch>,
    /// Only records after this sequence number (the `next` cursor); 0 from the start.
    pub after_seq: i64,
    /// Most records to return.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            object_id: None,
            added_after_us: None,
            ids: Vec::new(),
            types: Vec::new(),
            spec_versions: Vec::new(),
            versions: Vec::new(),
            after_seq: 0,
            limit: 100,
        }
    }
}

/// A bound SQL parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Text.
    Text(String),
    /// 64-bit integer.
    Int(i64),
}

impl Query {
    /// The SELECT for this query in `collection` with placeholders made by `ph(n)` (1-based);
    /// it fetches one row more than `limit` so the caller knows whether more follow.
    pub fn to_sql(&self, collection: &str, ph: impl Fn(usize) -> String) -> (String, Vec<Param>) {
        let mut params = vec![Param::Text(collection.to_owned()), Param::Int(self.after_seq)];
        let mut sql = format!(
            "SELECT seq, id, version, date_added_us, spec_version, body FROM objects o \
             WHERE o.collection = {} AND o.seq > {}",
            ph(1),
            ph(2)
        );
        let bind = |p: Param, params: &mut Vec<Param>| {
            params.push(p);
            ph(params.len())
        };
        if let Some(us) = self.added_after_us {
            let p = bind(Param::Int(us), &mut params);
            sql.push_str(&format!(" AND o.date_added_us > {p}"));
        }
        if let Some(id) = &self.object_id {
            let p = bind(Param::Text(id.clone()), &mut params);
            sql.push_str(&format!(" AND o.id = {p}"));
        }
        for (column, values) in [
            ("id", &self.ids),
            ("type", &self.types),
            ("spec_version", &self.spec_versions),
        ] {
            if values.is_empty() {
                continue;
            }
            let list: Vec<String> = values
                .iter()
                .map(|v| bind(Param::Text(v.clone()), &mut params))
                .collect();
            sql.push_str(&format!(" AND o.{column} IN ({})", list.join(", ")));
        }
        let versions = if self.versions.is_empty() {
            &[VersionMatch::Last][..]
        } else {
            &self.versions
        };
        if !versions.contains(&VersionMatch::All) {
            let terms: Vec<String> = versions
                .iter()
                .map(|v| match v {
                    VersionMatch::Last | VersionMatch::First => format!(
                        "o.version_us = (SELECT {}(o2.version_us) FROM objects o2 \
                         WHERE o2.collection = o.collection AND o2.id = o.id)",
                        if *v == VersionMatch::Last { "MAX" } else { "MIN" }
                    ),
                    VersionMatch::At(us) => format!("o.version_us = {}", bind(Param::Int(*us), &mut params)),
                    VersionMatch::All => "1 = 1".into(),
                })
                .collect();
            sql.push_str(&format!(" AND ({})", terms.join(" OR ")));
        }
        let limit = i64::try_from(self.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let p = bind(Param::Int(limit), &mut params);
        sql.push_str(&format!(" ORDER BY o.seq LIMIT {p}"));
        (sql, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_bound_parameters() {
        let q = Query {
            added_after_us: Some(5),
            types: vec!["indicator".into(), "sighting".into()],
            versions: vec![VersionMatch::First, VersionMatch::At(7)],
            limit: 10,
            ..Default::default()
        };
        let (sql, params) = q.to_sql("c1", |n| format!("${n}"));
        assert!(sql.contains("o.date_added_us > $3"), "{sql}");
        assert!(sql.contains("o.type IN ($4, $5)"), "{sql}");
        assert!(sql.contains("MIN(o2.version_us)"), "{sql}");
        assert!(sql.contains("o.version_us = $6"), "{sql}");
        assert!(sql.ends_with("LIMIT $7"), "{sql}");
        assert_eq!(params.len(), 7);
        assert_eq!(params[6], Param::Int(11));
        assert!(!sql.contains("indicator"), "values are never spliced into SQL");
    }
}
