//! Size limits of a `DetectionEvent`, shared by the parsers that build events and by validation
//! that enforces them.
//!
//! Parsers truncate or drop data to stay inside these limits; validation rejects events that do
//! not. Both must use these constants so that a parsed event is never rejected for its size.

/// Most entries an event's `attributes` map may hold.
pub const MAX_ATTRIBUTES: usize = 128;

/// Longest attribute key, in bytes.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 128;

/// Longest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;

/// Longest `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Longest `original` record, in bytes (64 KiB).
pub const MAX_ORIGINAL_BYTES: usize = 65536;

/// Most `indicators` one event may carry.
pub const MAX_INDICATORS: usize = 256;

/// Most `technique_hints` one event may carry.
pub const MAX_TECHNIQUE_HINTS: usize = 64;

/// Longest `event_type`, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 128;

/// Longest `source_service`, in bytes.
pub const MAX_SOURCE_SERVICE_BYTES: usize = 128;

/// Longest `event_id`, in bytes (characters of `[A-Za-z0-9._:-]`).
pub const MAX_EVENT_ID_BYTES: usize = 128;

/// Longest indicator value, in bytes.
pub const MAX_INDICATOR_BYTES: usize = 2048;

/// Longest host name, in bytes (DNS limit).
pub const MAX_HOSTNAME_BYTES: usize = 255;

/// Longest user name, in bytes.
pub const MAX_USER_BYTES: usize = 256;

/// Longest process command line, in bytes.
pub const MAX_COMMAND_LINE_BYTES: usize = 8192;

/// Longest short string elsewhere (process name, path, format name), in bytes.
pub const MAX_SHORT_BYTES: usize = 1024;

/// Most events in one batch on any stream.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Most techniques attributed to one event.
pub const MAX_TECHNIQUES: usize = 64;

/// Largest gRPC message accepted by any service, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Earliest timestamp accepted: 1990-01-01T00:00:00Z, in Unix seconds.
pub const MIN_TIMESTAMP_SECS: i64 = 631_152_000;

/// How far in the future a timestamp may lie (clock skew allowance), in seconds.
pub const MAX_FUTURE_SKEW_SECS: i64 = 86_400;
