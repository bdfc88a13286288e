//! Adding objects (`POST …/objects/`) and the status resources that answer it.
//!
//! Every posted object is checked on its own ([`super::envelope`]); the valid ones are written
//! and the status resource lists each object as a success or a failure, so one bad object never
//! costs the others. attackmesh's own objects are attackmesh's to version: an object that names
//! attackmesh's identity as its creator, or carries the id attackmesh gives that content, is
//! refused from any writer but an admin (attackmesh's services on other hosts), whose copies
//! fold into the stored versions as in-process ingest does. A status resource is seen by its
//! requester, admins and the readers of the collection written; to anyone else it does not
//! exist.

use attackmesh::error::ServiceErrorCode;
use attackmesh_runtime::auth::{Caller, HttpEndpoint, Role};
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    TAXII_MEDIA_TYPE, TaxiiError, TaxiiState,
    auth::access,
    envelope::{self, Failure},
    handlers::{Segments, begin, find_collection, finish, segments},
    media::names_taxii,
    taxii_json,
};
use crate::{
    stix::{StixObject, StixOptions, builder::has_attackmesh_id},
    store::{StoredStatus, WriteMode, WriteResult},
};

/// How one valid posted object is written.
#[derive(Debug, PartialEq)]
enum Route {
    /// As given.
    Exact,
    /// Folded into attackmesh's stored versions.
    Merge,
    /// Not at all, for this reason.
    Refused(String),
}

/// Whose an object is, and so how `caller` may write it.
fn route(object: &StixObject, options: &StixOptions, caller: &Caller) -> Route {
    let producer = options.producer.id();
    let admin = caller.role == Role::Admin;
    if object.creator() == producer {
        return match object.object_type() {
            "indicator" | "sighting" | "relationship" if admin => Route::Merge,
            _ if admin => Route::Exact,
            _ => Route::Refused(format!(
                "objects created by attackmesh's identity `{producer}` are versioned by attackmesh only"
            )),
        };
    }
    if object.id() == producer && *object != options.producer.object() {
        return Route::Refused(format!("`{producer}` is attackmesh's identity"));
    }
    if has_attackmesh_id(object, &producer) {
        return Route::Refused(format!(
            "`{}` is the id attackmesh gives this {}; post it under an id of your own",
            object.id(),
            object.object_type()
        ));
    }
    Route::Exact
}

fn entry(result: &WriteResult) -> Result<Value, Value> {
    match &result.refused {
        None => Ok(json!({"id": result.id, "version": result.version})),
        Some(why) => Err(json!({"id": result.id, "version": result.version, "message": why})),
    }
}

pub(super) async fn add_objects(
    State(state): State<TaxiiState>,
    path: Segments<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    finish(
        "add_objects",
        async {
            let (root, id) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiWrite)?;
            let (_, a) = find_collection(&state, &caller, &id)?;
            if !a.write {
                return Err(TaxiiError::forbidden(format!("you may not write to collection `{id}`")));
            }
            if !names_taxii(headers.get(header::CONTENT_TYPE), false) {
                return Err(TaxiiError::new(
                    ServiceErrorCode::UnsupportedMediaType,
                    format!("send {TAXII_MEDIA_TYPE}"),
                ));
            }
            let max = state.inner.max_body_bytes;
            let too_large = || TaxiiError::new(ServiceErrorCode::PayloadTooLarge, format!("the limit is {max} bytes"));
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            if declared.is_some_and(|n| n > max) {
                return Err(too_large());
            }
            let bytes = axum::body::to_bytes(body, max).await.map_err(|_| too_large())?;
            let now = Utc::now();
            let posted = envelope::read(&bytes, now).map_err(TaxiiError::bad_request)?;
            let mut failures: Vec<Value> = posted.failures.iter().map(|f| json!(f)).collect();
            let (mut exact, mut merge) = (Vec::new(), Vec::new());
            for object in posted.objects {
                match route(&object, state.inner.intel.options(), &caller) {
                    Route::Exact => exact.push(object),
                    Route::Merge => merge.push(object),
                    Route::Refused(why) => failures.push(json!(Failure::of(&Value::Object(object.0), why))),
                }
            }
            let store = state.inner.intel.store();
            let mut written = store.write(&id, exact, WriteMode::Exact, now).await?;
            // Each of attackmesh's objects on its own: a merge is written whole or not at all.
            let mut merged = Vec::new();
            for object in merge {
                merged.extend(store.write(&id, vec![object], WriteMode::Merge, now).await?);
            }
            state.inner.intel.prune(&id, &merged).await;
            written.extend(merged);
            crate::metrics::objects_added(written.iter().filter(|w| w.added).count());
            let mut successes = Vec::new();
            for result in &written {
                match entry(result) {
                    Ok(success) => successes.push(success),
                    Err(failure) => failures.push(failure),
                }
            }
            let status_id = uuid::Uuid::new_v4().to_string();
            let status = json!({
                "id": status_id,
                "status": "complete",
                "request_timestamp": crate::stix::timestamp(now),
                "total_count": successes.len() + failures.len(),
                "success_count": successes.len(),
                "successes": successes,
                "failure_count": failures.len(),
                "failures": failures,
                "pending_count": 0,
                "pendings": [],
            })
            .to_string();
            let stored = StoredStatus {
                collection: id.clone(),
                requester: caller.name.to_string(),
                body: status.clone(),
            };
            store.put_status(&status_id, &stored, now).await?;
            tracing::info!(
                collection = %id,
                caller = %caller.name,
                added = successes.len(),
                failed = failures.len(),
                "objects added over taxii"
            );
            Ok(taxii_json(StatusCode::ACCEPTED, status))
        }
        .await,
    )
}

pub(super) async fn status(
    State(state): State<TaxiiState>,
    path: Segments<(String, String)>,
    headers: HeaderMap,
) -> Response {
    finish(
        "status",
        async {
            let (root, status) = segments(path)?;
            let caller = begin(&state, &headers, Some(&root), HttpEndpoint::TaxiiRead)?;
            let stored = state.inner.intel.store().status(&status).await?;
            let visible = stored.filter(|s| {
                s.requester == *caller.name
                    || caller.role == Role::Admin
                    || state
                        .inner
                        .collections
                        .iter()
                        .any(|c| c.id == s.collection && access(&caller, c).read)
            });
            match visible {
                Some(s) => Ok(taxii_json(StatusCode::OK, s.body)),
                None => Err(TaxiiError::not_found(format!("status `{status}` not found"))),
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn caller(role: Role) -> Caller {
        Caller { name: "w".into(), role }
    }

    #[test]
    fn only_admins_write_attackmesh_objects() {
        let options = StixOptions::default();
        let kb = attackmesh_attack::Kb::embedded().unwrap();
        let event = attackmesh::proto::EnrichedEvent {
            technique_ids: vec!["T1046".into()],
            related_indicators: vec![attackmesh::proto::Indicator {
                r#type: attackmesh::proto::IndicatorType::Ipv4 as i32,
                value: "203.0.113.1".into(),
            }],
            ..Default::default()
        };
        let objects = crate::stix::stix_objects_for(&event, &kb, &options);
        let analyst = caller(Role::Analyst);
        for object in &objects {
            assert_eq!(route(object, &options, &caller(Role::Admin)), Route::Merge);
            assert!(matches!(route(object, &options, &analyst), Route::Refused(_)));
            // Without attackmesh's identity, still under the id attackmesh gives this content.
            let mut unnamed = object.clone();
            unnamed.0.remove("created_by_ref");
            assert!(matches!(route(&unnamed, &options, &analyst), Route::Refused(_)));
        }
        let identity = options.producer.object();
        assert_eq!(route(&identity, &options, &analyst), Route::Exact, "a copy as it is");
        let mut renamed = identity;
        renamed.set("name", "someone else");
        assert!(matches!(route(&renamed, &options, &analyst), Route::Refused(_)));
        let theirs = StixObject::from_value(json!({"type": "indicator",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "pattern": "[a:b = 'c']"}))
        .unwrap();
        assert_eq!(route(&theirs, &options, &analyst), Route::Exact);
    }
}
