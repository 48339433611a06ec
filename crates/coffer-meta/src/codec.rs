//! Value encoding of the state machine: one leading format byte, then the record as MessagePack
//! with field names (`rmp_serde::to_vec_named`), so that a reader tolerates fields added later
//! (`#[serde(default)]`) and ignores unknown ones. Counters are bare big-endian `u64`s.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::MetaError;

/// Format byte of MessagePack-with-names values.
pub const VALUE_FORMAT_MSGPACK: u8 = 1;

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    let mut out = vec![VALUE_FORMAT_MSGPACK];
    rmp_serde::encode::write_named(&mut out, value)
        .map_err(|e| MetaError::Storage(format!("encode: {e}")))?;
    Ok(out)
}

/// Decodes a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MetaError> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT_MSGPACK, body)) => {
            rmp_serde::from_slice(body).map_err(|e| MetaError::Storage(format!("decode: {e}")))
        }
        Some((other, _)) => Err(MetaError::Storage(format!("unknown value format {other}"))),
        None => Err(MetaError::Storage("empty value".into())),
    }
}

/// Encodes a counter.
pub fn encode_u64(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Decodes a counter.
pub fn decode_u64(bytes: &[u8]) -> Result<u64, MetaError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| MetaError::Storage(format!("counter of {} bytes", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// The value of `D <bucket>$ u <upload_id>$`: where the upload record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadIndex {
    /// Object key of the upload.
    pub key: String,
    /// Its seq (position among the uploads of that key).
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Old {
        a: u32,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct New {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn added_fields_default_and_bad_format_is_an_error() {
        let old = encode(&Old { a: 7 }).unwrap();
        assert_eq!(old[0], VALUE_FORMAT_MSGPACK);
        assert_eq!(decode::<New>(&old).unwrap(), New { a: 7, b: None });
        let mut bad = old.clone();
        bad[0] = 9;
        assert!(matches!(decode::<New>(&bad), Err(MetaError::Storage(_))));
        assert!(matches!(decode::<New>(&[]), Err(MetaError::Storage(_))));
        assert_eq!(decode_u64(&encode_u64(42)).unwrap(), 42);
        assert!(decode_u64(&[1, 2]).is_err());
    }
}
