//! `revgate demo`.
