//! The proxy listener.
