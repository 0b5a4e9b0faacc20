//! Admin API (SPEC §5).
