//! End-to-end tests: the real `coffer` binary on ephemeral loopback ports, driven by aws-sdk-s3.

mod blob_repair;
mod cluster_admin;
mod cluster_faults;
mod crash;
mod errors;
mod health;
mod kms_role;
mod objects;
mod reencrypt_faults;
mod replication;
mod roles;
mod sse;
