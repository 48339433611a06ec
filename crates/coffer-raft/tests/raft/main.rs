//! coffer-raft tests: openraft's storage suite, the storage over restarts and snapshots, the
//! gRPC transport, and a three-node cluster on loopback.

mod cluster;
mod kv;
mod storage;
mod transport;
