//! The whole keyspace of the state machine's column family, in one place.
//!
//! ```text
//! M applied                                  → u64 BE: last applied log index
//! M layout                                   → u64 BE: LAYOUT_VERSION of this keyspace
//! M seq                                      → u64 BE: last assigned `seq` (versions, uploads)
//! M rclock                                   → u64 BE: request clock (ms, see raft::dedup)
//! M rid <request id 16 bytes>                → RequestRecord: an applied request and its answer
//! M rexp <proposed_ms u64 BE> <request id>   → empty: the request records in expiry order
//! G <name>                                   → config value (raw bytes)
//! B <bucket>                                 → BucketRecord
//! J <job id>                                 → JobRecord (background jobs)
//! D <bucket>$ C <key>$                       → current ObjectVersion (only when not a delete marker)
//! D <bucket>$ V <key>$ <!seq u64 BE>         → ObjectVersion (newest first within a key)
//! D <bucket>$ I <key>$ <version_id>$         → u64 BE: seq of that version
//! D <bucket>$ U <key>$ <seq u64 BE>          → MultipartUpload (by key, then initiation order)
//! D <bucket>$ u <upload_id>$                 → UploadIndex { key, seq }
//! D <bucket>$ P <upload_id>$ <part u32 BE>   → UploadedPart
//! D <bucket>$ R <blob_id 16 bytes>           → u64 BE: number of records referencing the blob
//! ```
//!
//! `x$` is a string component in *escaped* form: every `0x00` byte is written `0x00 0xFF`, and
//! the component ends with the terminator `0x00 0x01`. The terminator sorts below every byte a
//! component may continue with (`0x01..=0xFF`, and `0x00 0xFF` for an embedded NUL), so:
//! - components are prefix-free, and the order of encoded keys is the byte order of the strings
//!   (S3 lists in UTF-8 binary order), whatever follows the component;
//! - the escaped form of a string without its terminator is a byte prefix of the escaped form of
//!   every string that starts with it, which is what `prefix` listings scan.
//!
//! Object keys are therefore arbitrary UTF-8, U+0000 included: nothing is rejected here.
//!
//! Every key of a bucket's objects, versions, uploads and parts lives under `D <bucket>$`, so
//! the keyspace can later be split into Raft groups by bucket ranges (TiKV's region prefix);
//! `B`, `G`, `J` and `M` stay with the root group. Integers are big-endian so that they sort.

/// Version of this layout, stored at `M layout` when a state is created and checked on open:
/// a build refuses a state whose layout it does not know (a later layout comes with a migration).
pub const LAYOUT_VERSION: u64 = 1;

/// Prefix of state-machine bookkeeping (`M applied`, `M layout`, `M seq`).
pub const META_PREFIX: u8 = b'M';
/// Prefix of the global config space.
pub const CONFIG_PREFIX: u8 = b'G';
/// Prefix of bucket records.
pub const BUCKET_PREFIX: u8 = b'B';
/// Prefix of job records.
pub const JOB_PREFIX: u8 = b'J';
/// Prefix of per-bucket data.
pub const DATA_PREFIX: u8 = b'D';

/// Kind (after `D <bucket>$`): current-version index.
pub const CURRENT: u8 = b'C';
/// Kind: all versions and delete markers.
pub const VERSION: u8 = b'V';
/// Kind: version id → seq.
pub const VERSION_ID: u8 = b'I';
/// Kind: multipart uploads by key.
pub const UPLOAD: u8 = b'U';
/// Kind: upload id → key and seq.
pub const UPLOAD_ID: u8 = b'u';
/// Kind: uploaded parts by upload id.
pub const PART: u8 = b'P';
/// Kind: reference counts of blobs.
pub const BLOB_REF: u8 = b'R';

/// Terminator of an escaped component.
pub const TERMINATOR: [u8; 2] = [0x00, 0x01];
const ESCAPED_NUL: [u8; 2] = [0x00, 0xFF];

/// Appends `s` escaped, without the terminator.
pub fn push_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if b == 0 {
            out.extend_from_slice(&ESCAPED_NUL);
        } else {
            out.push(b);
        }
    }
}

/// Appends `s` escaped and terminated.
pub fn push_component(out: &mut Vec<u8>, s: &[u8]) {
    push_escaped(out, s);
    out.extend_from_slice(&TERMINATOR);
}

/// Decodes one escaped, terminated component at the start of `bytes`: the string's bytes and
/// the rest after the terminator; `None` if `bytes` does not start with a well-formed component.
pub fn split_component(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0 {
            match bytes.get(i + 1)? {
                0x01 => return Some((out, &bytes[i + 2..])),
                0xFF => out.push(0),
                _ => return None,
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    None
}

/// The smallest byte string greater than every string that starts with `prefix`; `None` if there
/// is none (`prefix` is empty or all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// The smallest byte string greater than `key` (for "start strictly after").
pub fn key_successor(key: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    out.push(0);
    out
}

/// `M applied`.
pub fn applied_index() -> Vec<u8> {
    [&[META_PREFIX][..], b"applied"].concat()
}

/// `M layout`.
pub fn layout_version() -> Vec<u8> {
    [&[META_PREFIX][..], b"layout"].concat()
}

/// `M rclock`: the largest `proposed_ms` of the requests applied so far.
pub fn request_clock() -> Vec<u8> {
    [&[META_PREFIX][..], b"rclock"].concat()
}

/// `M rid <id>`: the record of an applied request.
pub fn request(id: &[u8; 16]) -> Vec<u8> {
    [&[META_PREFIX][..], b"rid", id].concat()
}

/// `M rexp`: prefix of the request records by the time they were proposed.
pub fn request_expiry_prefix() -> Vec<u8> {
    [&[META_PREFIX][..], b"rexp"].concat()
}

/// `M rexp <proposed_ms> <id>`.
pub fn request_expiry(proposed_ms: u64, id: &[u8; 16]) -> Vec<u8> {
    [&request_expiry_prefix()[..], &proposed_ms.to_be_bytes(), id].concat()
}

/// `M seq`.
pub fn seq_counter() -> Vec<u8> {
    [&[META_PREFIX][..], b"seq"].concat()
}

/// `G <name>`.
pub fn config(name: &str) -> Vec<u8> {
    [&[CONFIG_PREFIX][..], name.as_bytes()].concat()
}

/// `B <bucket>`.
pub fn bucket(name: &str) -> Vec<u8> {
    [&[BUCKET_PREFIX][..], name.as_bytes()].concat()
}

/// `B`: the prefix of all bucket records.
pub fn bucket_prefix() -> Vec<u8> {
    vec![BUCKET_PREFIX]
}

/// `J <id>`.
pub fn job(id: &str) -> Vec<u8> {
    [&[JOB_PREFIX][..], id.as_bytes()].concat()
}

/// `J`: the prefix of all job records.
pub fn job_prefix() -> Vec<u8> {
    vec![JOB_PREFIX]
}

/// `D <bucket>$ <kind>`: the prefix of one kind of a bucket's records.
pub fn kind_prefix(bucket: &str, kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 4);
    out.push(DATA_PREFIX);
    push_component(&mut out, bucket.as_bytes());
    out.push(kind);
    out
}

/// `D <bucket>$ <kind> <escaped s>` (no terminator): the prefix of every record of that kind
/// whose first component starts with `s`.
pub fn component_prefix(bucket: &str, kind: u8, s: &str) -> Vec<u8> {
    let mut out = kind_prefix(bucket, kind);
    push_escaped(&mut out, s.as_bytes());
    out
}

/// `D <bucket>$ <kind> <s>$`: the prefix of every record of that kind whose first component is
/// exactly `s`, or the whole key for kinds with one component.
pub fn component_key(bucket: &str, kind: u8, s: &str) -> Vec<u8> {
    let mut out = kind_prefix(bucket, kind);
    push_component(&mut out, s.as_bytes());
    out
}

/// `D <bucket>$ C <key>$`.
pub fn current(bucket: &str, key: &str) -> Vec<u8> {
    component_key(bucket, CURRENT, key)
}

/// `D <bucket>$ V <key>$ <!seq>`.
pub fn version(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut out = component_key(bucket, VERSION, key);
    out.extend_from_slice(&(!seq).to_be_bytes());
    out
}

/// `D <bucket>$ V <key>$`: the prefix of all versions of a key.
pub fn versions_of(bucket: &str, key: &str) -> Vec<u8> {
    component_key(bucket, VERSION, key)
}

/// The seq of a version record key (its last 8 bytes).
pub fn version_seq(raw: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = raw.get(raw.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(!u64::from_be_bytes(tail))
}

/// `D <bucket>$ I <key>$ <version_id>$`.
pub fn version_id(bucket: &str, key: &str, version_id: &str) -> Vec<u8> {
    let mut out = component_key(bucket, VERSION_ID, key);
    push_component(&mut out, version_id.as_bytes());
    out
}

/// `D <bucket>$ U <key>$ <seq>`.
pub fn upload(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut out = component_key(bucket, UPLOAD, key);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// `D <bucket>$ u <upload_id>$`.
pub fn upload_id(bucket: &str, upload_id: &str) -> Vec<u8> {
    component_key(bucket, UPLOAD_ID, upload_id)
}

/// `D <bucket>$ P <upload_id>$ <part>`.
pub fn part(bucket: &str, upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut out = component_key(bucket, PART, upload_id);
    out.extend_from_slice(&part_number.to_be_bytes());
    out
}

/// `D <bucket>$ P <upload_id>$`: the prefix of all parts of an upload.
pub fn parts_of(bucket: &str, upload_id: &str) -> Vec<u8> {
    component_key(bucket, PART, upload_id)
}

/// `D <bucket>$ R <blob_id>`.
pub fn blob_ref(bucket: &str, blob_id: &[u8; 16]) -> Vec<u8> {
    let mut out = kind_prefix(bucket, BLOB_REF);
    out.extend_from_slice(blob_id);
    out
}

/// The object key of a `C`, `V`, `I` or `U` record key of `bucket` (the first component after
/// the kind byte), as bytes.
pub fn object_key_of(bucket: &str, raw: &[u8]) -> Option<Vec<u8>> {
    let head = kind_prefix(bucket, 0);
    let rest = raw.get(head.len()..)?;
    if raw[..head.len() - 1] != head[..head.len() - 1] {
        return None;
    }
    split_component(rest).map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_key() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('\u{1}'),
                Just('a'),
                Just('/'),
                Just('é'),
                Just('\u{FFFF}'),
                Just('\u{10FFFF}'),
            ],
            0..6,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    #[test]
    fn component_roundtrip_and_nul() {
        let raw = current("b", "a\0b");
        assert_eq!(object_key_of("b", &raw).unwrap(), b"a\0b".to_vec());
        assert_eq!(split_component(&[b'a', 0, 0x02]), None);
        assert_eq!(split_component(b"abc"), None);
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }

    #[test]
    fn versions_sort_newest_first_and_before_next_key() {
        let a_old = version("b", "a", 1);
        let a_new = version("b", "a", 2);
        let a_nul = version("b", "a\0", 0);
        assert!(a_new < a_old);
        assert!(a_old < a_nul);
        assert!(a_nul < version("b", "a\u{1}", u64::MAX));
        assert_eq!(version_seq(&a_new), Some(2));
        // Buckets are contiguous ranges: all of bucket "b" sorts before bucket "bb".
        assert!(version("b", "\u{10FFFF}", 0) < kind_prefix("bb", CURRENT));
    }

    proptest! {
        #[test]
        fn encoding_preserves_order(a in any_key(), b in any_key(), s1 in any::<u64>(), s2 in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), current("x", &a).cmp(&current("x", &b)));
            if a != b {
                prop_assert_eq!(a.cmp(&b), version("x", &a, s1).cmp(&version("x", &b, s2)));
                prop_assert_eq!(a.cmp(&b), upload("x", &a, s1).cmp(&upload("x", &b, s2)));
            }
        }

        #[test]
        fn prefix_scan_is_exact(k in any_key(), p in any_key()) {
            let start = component_prefix("x", CURRENT, &p);
            let end = prefix_successor(&start).unwrap();
            let enc = current("x", &k);
            let inside = enc >= start && enc < end;
            prop_assert_eq!(inside, k.starts_with(&p));
            prop_assert_eq!(object_key_of("x", &enc).unwrap(), k.into_bytes());
        }
    }
}
