//! Intel service.
