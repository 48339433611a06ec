//! coffer-raft tests: openraft's storage suite, the storage over restarts and snapshots, the
//! gRPC transport, a three-node cluster on loopback, and its administration from outside.

mod admin;
mod cluster;
mod kv;
mod storage;
mod transport;
