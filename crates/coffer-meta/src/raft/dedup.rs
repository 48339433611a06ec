//! At-most-once application of write requests: the state machine records the [`RequestId`] of
//! every proposal it applies, with the encoded answer, in the same write batch as the
//! proposal's effects; a proposal whose id is recorded is answered with the recorded answer and
//! changes nothing but the applied index. A client may thus retry a write whose outcome it does
//! not know (the leader died after the entry was sent, a deadline passed while it waited for a
//! quorum) with the same id, even if the first attempt was committed after all.
//!
//! # Expiry
//! A record is kept for [`REQUEST_ID_TTL_MS`] of *request clock*: the largest `proposed_ms`
//! (the wall clock of the member that put the entry in the log, written into the entry) of the
//! proposals applied so far. Everything expiry looks at is in the log, so every member keeps and
//! drops the same records at the same log index: their states (and digests) stay identical,
//! whatever their own clocks say. After each request, at most [`EXPIRE_PER_REQUEST`] expired
//! records are deleted (oldest first), so the work per entry is bounded; a record expired but
//! not deleted yet is treated as absent.
//!
//! A retry is deduplicated as long as it is applied within the TTL of the first attempt: a
//! [`super::GrpcMetaClient`] retries only within its request timeout, which must be under half
//! the TTL (checked when it is made), leaving the other half for clock skew between members.
//!
//! The records are state like any other (snapshots carry them, the digest covers them): they
//! decide the answers a member gives to retries once it leads, so members must agree on them.

use serde::{Deserialize, Serialize};

use super::wire::{self, Proposal, ProposalAnswer, RequestId};
use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::state_machine::Applier;

/// How long (ms of request clock) an applied request id is remembered.
pub const REQUEST_ID_TTL_MS: u64 = 120_000;

/// At most this many expired records are deleted per request applied (one is added), so the
/// records never pile up while the clock advances steadily.
const EXPIRE_PER_REQUEST: usize = 8;

/// The value of `M rid <id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RequestRecord {
    /// The `proposed_ms` of the entry that applied the request.
    proposed_ms: u64,
    /// Its log index.
    index: u64,
    /// SHA-256 of the encoded commands: a retry must carry the same commands.
    commands_sha256: Vec<u8>,
    /// The encoded [`ProposalAnswer`] it got.
    answer: Vec<u8>,
}

fn commands_sha256(proposal: &Proposal) -> Result<Vec<u8>, MetaError> {
    let encoded = wire::encode(&proposal.commands)?;
    Ok(ring::digest::digest(&ring::digest::SHA256, &encoded)
        .as_ref()
        .to_vec())
}

fn expired(proposed_ms: u64, clock: u64) -> bool {
    clock.saturating_sub(proposed_ms) > REQUEST_ID_TTL_MS
}

/// Applies `proposal`, the entry at `index`, with `applier`; returns its encoded
/// [`ProposalAnswer`]. `Err` (only `MetaError::Storage`) is fatal, as for [`Applier::apply`].
pub(crate) fn apply(
    applier: &mut Applier<'_>,
    index: u64,
    proposal: &Proposal,
) -> Result<Vec<u8>, MetaError> {
    let Some(RequestId(id)) = proposal.request else {
        let results = applier.apply(index, &proposal.commands)?;
        return wire::encode(&ProposalAnswer::Ok(results));
    };
    let clock = match applier.get(&keys::request_clock())? {
        Some(v) => codec::decode_u64(&v)?,
        None => 0,
    }
    .max(proposal.proposed_ms);
    let sha256 = commands_sha256(proposal)?;
    let known = match applier.get(&keys::request(&id))? {
        Some(v) => Some(codec::decode::<RequestRecord>(&v)?),
        None => None,
    };
    let answer = match known {
        Some(record) if !expired(record.proposed_ms, clock) => {
            applier.apply(index, &[])?;
            if record.commands_sha256 == sha256 {
                record.answer
            } else {
                wire::encode(&ProposalAnswer::Err(MetaError::Invalid(format!(
                    "request id already used by the other commands of log entry {}",
                    record.index
                ))))?
            }
        }
        stale => {
            if let Some(old) = stale {
                applier.delete(keys::request_expiry(old.proposed_ms, &id));
            }
            let results = applier.apply(index, &proposal.commands)?;
            let answer = wire::encode(&ProposalAnswer::Ok(results))?;
            let record = RequestRecord {
                proposed_ms: proposal.proposed_ms,
                index,
                commands_sha256: sha256,
                answer: answer.clone(),
            };
            applier.put(keys::request(&id), codec::encode(&record)?);
            applier.put(keys::request_expiry(proposal.proposed_ms, &id), Vec::new());
            answer
        }
    };
    applier.put(keys::request_clock(), codec::encode_u64(clock));
    expire(applier, clock)?;
    Ok(answer)
}

/// Deletes up to [`EXPIRE_PER_REQUEST`] of the oldest records expired at `clock`.
fn expire(applier: &mut Applier<'_>, clock: u64) -> Result<(), MetaError> {
    let Some(horizon) = clock.checked_sub(REQUEST_ID_TTL_MS) else {
        return Ok(());
    };
    let prefix = keys::request_expiry_prefix();
    // Records proposed strictly before `horizon` are expired (`clock - proposed_ms > TTL`).
    let end = [&prefix[..], &horizon.to_be_bytes()].concat();
    for (key, _) in applier.scan(&prefix, &end, EXPIRE_PER_REQUEST)? {
        let id: [u8; 16] = key[key.len() - 16..]
            .try_into()
            .map_err(|_| MetaError::Storage("bad request expiry key".into()))?;
        applier.delete(key);
        applier.delete(keys::request(&id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{bucket, put};
    use crate::read::Reader;
    use crate::state_machine::state_cf;
    use crate::types::{Command, CommandOutput, Versioning};
    use rocksdb::WriteBatch;

    /// Applies one proposal as log entry `index` and commits it; returns the decoded answer.
    fn apply_one(db: &rocksdb::DB, index: u64, proposal: &Proposal) -> ProposalAnswer {
        let mut applier = Applier::new(db).unwrap();
        let answer = apply(&mut applier, index, proposal).unwrap();
        let mut batch = WriteBatch::default();
        applier.finish(&mut batch);
        db.write(batch).unwrap();
        wire::decode(&answer).unwrap()
    }

    fn open() -> (tempfile::TempDir, std::sync::Arc<rocksdb::DB>) {
        let dir = tempfile::tempdir().unwrap();
        let db = coffer_raft::open_db(dir.path(), &[crate::state_machine::STATE_CF]).unwrap();
        (dir, db)
    }

    fn stamped(commands: Vec<Command>, id: u8, proposed_ms: u64) -> Proposal {
        Proposal {
            commands,
            request: Some(RequestId([id; 16])),
            proposed_ms,
        }
    }

    fn outputs(answer: ProposalAnswer) -> Vec<Result<CommandOutput, MetaError>> {
        answer.expect("the proposal is applied")
    }

    #[test]
    fn a_known_request_is_answered_from_its_record_without_applying_again() {
        let (_dir, db) = open();
        let create = stamped(
            vec![
                Command::CreateBucket(bucket("b", Versioning::Enabled)),
                put("b", "k", "v1", 1),
            ],
            1,
            1_000,
        );
        let first = outputs(apply_one(&db, 1, &create));
        assert!(first.iter().all(Result::is_ok), "{first:?}");
        // The same request again (a retry): the recorded answer, not BucketAlreadyExists.
        let again = outputs(apply_one(&db, 2, &create));
        assert_eq!(again, first);
        // The same commands under another id are applied: they fail this time.
        let other = outputs(apply_one(
            &db,
            3,
            &stamped(create.commands.clone(), 2, 1_500),
        ));
        assert!(other.iter().all(Result::is_err), "{other:?}");
        // A reused id with other commands is refused as a whole.
        let reused = stamped(vec![put("b", "x", "v9", 9)], 1, 2_000);
        assert!(matches!(
            apply_one(&db, 4, &reused),
            Err(MetaError::Invalid(m)) if m.contains("log entry 1")
        ));
        let reader = Reader::new(&db, state_cf(&db).unwrap());
        assert_eq!(reader.list_buckets().unwrap().len(), 1);
        assert!(reader.get_object("b", "x", None).is_err());
        assert_eq!(reader.digest().unwrap().last_applied, 4);
        // A proposal without an id (an older client) is applied each time.
        drop(reader);
        let bare = Proposal {
            request: None,
            ..stamped(vec![put("b", "k2", "v1", 2)], 0, 0)
        };
        assert!(outputs(apply_one(&db, 5, &bare))[0].is_ok());
        assert!(matches!(
            outputs(apply_one(&db, 6, &bare))[0],
            Err(MetaError::Invalid(_))
        ));
    }

    #[test]
    fn records_expire_by_the_clock_in_the_log_alike_on_every_member() {
        let (_a_dir, a) = open();
        let (_b_dir, b) = open();
        let t0 = 10_000_000;
        let old = stamped(vec![put("missing", "k", "v", 1)], 7, t0);
        let later = |id: u8, ms: u64| stamped(vec![], id, ms);
        // Member a applies the entries one write at a time, member b all in one batch.
        let entries = [
            (1, old.clone()),
            (2, later(8, t0 + REQUEST_ID_TTL_MS)),
            // A member with a clock behind: the request clock does not go back.
            (3, later(9, t0 + 5)),
        ];
        for (index, p) in &entries {
            apply_one(&a, *index, p).unwrap();
        }
        {
            let mut applier = Applier::new(&b).unwrap();
            for (index, p) in &entries {
                apply(&mut applier, *index, p).unwrap();
            }
            let mut batch = WriteBatch::default();
            applier.finish(&mut batch);
            b.write(batch).unwrap();
        }
        let digest = |db: &rocksdb::DB| Reader::new(db, state_cf(db).unwrap()).digest().unwrap();
        assert_eq!(digest(&a), digest(&b));
        // Exactly at the TTL the first record is still known: its retry is not applied again.
        let get = |db: &rocksdb::DB, key: Vec<u8>| db.get_cf(state_cf(db).unwrap(), key).unwrap();
        assert!(get(&a, keys::request(&[7; 16])).is_some());
        assert_eq!(
            apply_one(&a, 4, &stamped(old.commands.clone(), 7, t0 + 10)),
            apply_one(&b, 4, &old)
        );
        assert_eq!(digest(&a), digest(&b));
        // One ms later it expires: deleted with its expiry key; the retry would be applied anew.
        apply_one(&a, 5, &later(10, t0 + REQUEST_ID_TTL_MS + 1)).unwrap();
        assert!(get(&a, keys::request(&[7; 16])).is_none());
        assert!(get(&a, keys::request_expiry(t0, &[7; 16])).is_none());
        assert!(get(&a, keys::request(&[8; 16])).is_some());
        assert_eq!(
            get(&a, keys::request_clock()),
            Some(codec::encode_u64(t0 + REQUEST_ID_TTL_MS + 1))
        );
    }

    #[test]
    fn expiry_is_bounded_per_request_and_catches_up() {
        let (_dir, db) = open();
        for i in 0..20u8 {
            apply_one(
                &db,
                u64::from(i) + 1,
                &stamped(vec![], i, 1_000 + u64::from(i)),
            )
            .unwrap();
        }
        let count = |db: &rocksdb::DB| {
            db.prefix_iterator_cf(state_cf(db).unwrap(), keys::request_expiry_prefix())
                .map(Result::unwrap)
                .take_while(|(k, _)| k.starts_with(&keys::request_expiry_prefix()))
                .count()
        };
        assert_eq!(count(&db), 20);
        let far = 1_000_000;
        apply_one(&db, 21, &stamped(vec![], 100, far)).unwrap();
        assert_eq!(count(&db), 20 + 1 - EXPIRE_PER_REQUEST);
        apply_one(&db, 22, &stamped(vec![], 101, far)).unwrap();
        apply_one(&db, 23, &stamped(vec![], 102, far)).unwrap();
        assert_eq!(count(&db), 3);
        // An expired record not yet deleted counts as absent.
        // (Its expiry key sorts after those of ten others proposed at the same time.)
        let (_dir2, db2) = open();
        let create = || vec![Command::CreateBucket(bucket("b", Versioning::Enabled))];
        apply_one(&db2, 1, &stamped(create(), 200, 1_000)).unwrap();
        for i in 2..12u8 {
            apply_one(&db2, u64::from(i), &stamped(vec![], i, 1_000)).unwrap();
        }
        apply_one(&db2, 12, &stamped(vec![], 50, far)).unwrap();
        let get = |key: Vec<u8>| db2.get_cf(state_cf(&db2).unwrap(), key).unwrap();
        assert!(get(keys::request(&[200; 16])).is_some());
        assert!(get(keys::request(&[2; 16])).is_none());
        assert!(matches!(
            outputs(apply_one(&db2, 13, &stamped(create(), 200, far)))[0],
            Err(MetaError::BucketAlreadyExists(_))
        ));
        // Applied anew, it is recorded anew (and its old expiry key is gone).
        assert!(get(keys::request_expiry(1_000, &[200; 16])).is_none());
        assert!(get(keys::request_expiry(far, &[200; 16])).is_some());
    }
}
