//! Error origin to HTTP response, in one place.
