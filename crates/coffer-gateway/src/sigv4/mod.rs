//! SigV4 verification.
