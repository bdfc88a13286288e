//! SIEM export service.
