//! Coffer crypto
