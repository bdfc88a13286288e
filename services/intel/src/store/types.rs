//! What the store takes and gives back: stored object versions, pages, write modes and results,
//! TAXII status resources, and the objects of one ingested event.

use crate::{stix::StixObject, store::campaigns, store::matrix};

/// One stored object version.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the store's write order (the paging cursor).
    pub seq: i64,
    /// STIX id.
    pub id: String,
    /// TAXII version: `modified`, `created`, or the date added.
    pub version: String,
    /// When this version was added to the collection, in microseconds since the epoch.
    pub date_added_us: i64,
    /// `spec_version` of the object.
    pub spec_version: String,
    /// The object as JSON.
    pub body: String,
}

/// A page of records in write order.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The records.
    pub records: Vec<Record>,
    /// More records match after the last one.
    pub more: bool,
}

/// How objects are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// As given (TAXII `POST`): a version already present is left alone.
    Exact,
    /// Objects attackmesh produces: folded into the latest stored version (see [`crate::stix::merge`]).
    Merge,
}

/// What happened to one object of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// STIX id.
    pub id: String,
    /// The version stored (new or already present).
    pub version: String,
    /// True when a new version was added.
    pub added: bool,
    /// Why the object was refused (nothing was written for it), e.g. a version by another
    /// creator, or a stored version no later one can follow.
    pub refused: Option<String>,
}

/// An event none of whose objects were written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRefused {
    /// Position of the event in the write.
    pub index: usize,
    /// The event's id.
    pub event_id: String,
    /// Why one of its objects was refused.
    pub reason: String,
}

/// A TAXII status resource as stored, with who asked for it and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatus {
    /// The collection written to (empty for statuses stored before this was recorded).
    pub collection: String,
    /// Name of the caller whose request it answers.
    pub requester: String,
    /// The status resource (JSON).
    pub body: String,
}

/// The objects built from one enriched event, written only when the collection has not yet seen
/// the event at this or a higher revision.
#[derive(Debug, Clone, PartialEq)]
pub struct EventObjects {
    /// The event's id.
    pub event_id: String,
    /// The event's enrichment revision; a higher one supersedes (re-attributes) a lower one.
    pub revision: u32,
    /// Objects merged whenever the event is applied (indicators, relationships, …).
    pub objects: Vec<StixObject>,
    /// Objects that record the observation itself (sightings): merged only the first time the
    /// event is applied, since a re-attribution is not another observation.
    pub observations: Vec<StixObject>,
    /// What the live matrix counts of the event (recorded with its objects, once per revision).
    pub matrix: Option<matrix::Observation>,
    /// The campaign a campaign alert carries (kept at its latest revision for the page).
    pub campaign: Option<campaigns::CampaignRecord>,
}

/// What a write of events did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventsWritten {
    /// What happened to each object written, in order.
    pub results: Vec<WriteResult>,
    /// Events left alone because the collection had them at the same or a higher revision.
    pub duplicates: usize,
    /// Events refused as a whole (none of their objects written, the event not recorded).
    pub refused: Vec<EventRefused>,
}
