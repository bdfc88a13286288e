//! Enrichment service.
