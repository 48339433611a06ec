//! The openraft type configuration and the opaque application request and response.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use openraft::BasicNode;

/// A Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of every Coffer Raft group: opaque command bytes in,
    /// opaque response bytes out, `u64` node ids, nodes known by their gRPC address, and
    /// snapshots kept in files.
    pub TypeConfig:
        D = AppRequest,
        R = AppResponse,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of a Coffer Raft group.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (leader term and node, index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership config together with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
/// A snapshot: metadata and its file.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// The metrics a Raft node publishes.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, BasicNode>;
/// The error type of every storage operation.
pub type StorageError = openraft::StorageError<NodeId>;

/// An application command: opaque bytes that Raft replicates and hands to
/// [`crate::StateMachineApp::apply`] in log order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AppRequest(pub Vec<u8>);

/// The application's answer to one command, returned to the writer once the command is applied.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AppResponse(pub Vec<u8>);

impl fmt::Debug for AppRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppRequest({} bytes)", self.0.len())
    }
}

impl fmt::Debug for AppResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppResponse({} bytes)", self.0.len())
    }
}

// Both are serialized as a byte string (MessagePack `bin`), not as a sequence of integers, which
// would cost up to twice the size on the wire and in the log.
macro_rules! bytes_serde {
    ($t:ident) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_byte_buf(BytesVisitor).map($t)
            }
        }
    };
}

bytes_serde!(AppRequest);
bytes_serde!(AppResponse);

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    // Formats without a byte string type (JSON) write a sequence of integers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_msgpack_byte_string() {
        let req = AppRequest(vec![0xff; 300]);
        let encoded = rmp_serde::to_vec_named(&req).unwrap();
        // bin16 marker, two length bytes, then the bytes themselves.
        assert_eq!(encoded.len(), 3 + 300);
        assert_eq!(encoded[0], 0xc5);
        let back: AppRequest = rmp_serde::from_slice(&encoded).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn entry_round_trips() {
        let entry = Entry {
            log_id: openraft::testing::log_id(3, 1, 7),
            payload: openraft::EntryPayload::Normal(AppRequest(b"put k v".to_vec())),
        };
        let encoded = rmp_serde::to_vec_named(&entry).unwrap();
        let back: Entry = rmp_serde::from_slice(&encoded).unwrap();
        assert_eq!(back.log_id, entry.log_id);
        match back.payload {
            openraft::EntryPayload::Normal(r) => assert_eq!(r.0, b"put k v"),
            other => panic!("unexpected payload {other:?}"),
        }
    }
}
