//! [`MetaApp`]: the metadata state machine as a coffer-raft application.

use coffer_raft::{ApplyError, LogCommand, StateMachineApp};
use rocksdb::{WriteBatch, DB};

use super::dedup;
use super::wire::{self, Proposal, ProposalAnswer};
use crate::error::MetaError;
use crate::state_machine::{Applier, STATE_CF};

/// The metadata state machine replicated by Raft: its state is the column family
/// [`STATE_CF`] of the node's database, with the keyspace of [`crate::keys`].
///
/// Each Raft entry is an encoded [`Proposal`]; its commands are applied by the same code as
/// [`crate::StateMachine`]'s ([`Applier`]), at most once per request id (`super::dedup`), and
/// its answer is an encoded [`ProposalAnswer`]. An
/// entry that does not decode is answered with `MetaError::Invalid` and changes nothing. A
/// `MetaError::Storage` while applying (the state cannot be read, or is corrupt) is fatal for
/// the node: Raft stops it rather than let the members diverge.
#[derive(Debug, Default, Clone, Copy)]
pub struct MetaApp;

fn apply_error(e: MetaError) -> ApplyError {
    ApplyError(e.to_string())
}

impl StateMachineApp for MetaApp {
    const COLUMN_FAMILIES: &'static [&'static str] = &[STATE_CF];

    fn apply(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        commands: &[LogCommand],
    ) -> Result<Vec<Vec<u8>>, ApplyError> {
        let mut applier = Applier::new(db).map_err(apply_error)?;
        let mut answers = Vec::with_capacity(commands.len());
        for entry in commands {
            let answer = match wire::decode::<Proposal>(&entry.data) {
                Ok(proposal) => {
                    dedup::apply(&mut applier, entry.index, &proposal).map_err(apply_error)?
                }
                Err(e) => wire::encode(&ProposalAnswer::Err(MetaError::Invalid(format!(
                    "undecodable proposal: {e}"
                ))))
                .map_err(apply_error)?,
            };
            answers.push(answer);
        }
        applier.finish(batch);
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{bucket, put};
    use crate::read::Reader;
    use crate::state_machine::state_cf;
    use crate::types::{Command, Versioning};

    #[test]
    fn applies_proposals_into_the_batch_like_the_local_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let db = coffer_raft::open_db(dir.path(), MetaApp::COLUMN_FAMILIES).unwrap();
        let proposal = |commands: Vec<Command>| LogCommand {
            index: 0,
            data: wire::encode(&Proposal::new(commands)).unwrap(),
        };
        let entries = vec![
            LogCommand {
                index: 3,
                ..proposal(vec![
                    Command::CreateBucket(bucket("b", Versioning::Enabled)),
                    put("b", "k", "v1", 1),
                    put("b", "k", "v1", 2),
                ])
            },
            LogCommand {
                index: 5,
                data: b"garbage".to_vec(),
            },
            LogCommand {
                index: 6,
                ..proposal(vec![put("b", "k", "v2", 3)])
            },
        ];
        let mut batch = WriteBatch::default();
        let answers = MetaApp.apply(&db, &mut batch, &entries).unwrap();
        // Nothing is written by apply itself.
        assert!(db
            .iterator_cf(state_cf(&db).unwrap(), rocksdb::IteratorMode::Start)
            .next()
            .is_none());
        db.write(batch).unwrap();
        let answers: Vec<ProposalAnswer> =
            answers.iter().map(|a| wire::decode(a).unwrap()).collect();
        let first = answers[0].as_ref().unwrap();
        assert!(first[0].is_ok() && first[1].is_ok());
        assert!(matches!(first[2], Err(MetaError::Invalid(_))));
        assert!(matches!(answers[1], Err(MetaError::Invalid(_))));
        // The third entry saw the first one's effects.
        let third = answers[2].as_ref().unwrap();
        assert!(third[0].as_ref().unwrap().seq > first[1].as_ref().unwrap().seq);
        let reader = Reader::new(&db, state_cf(&db).unwrap());
        assert_eq!(reader.get_object("b", "k", None).unwrap().version_id, "v2");
        assert_eq!(reader.digest().unwrap().last_applied, 6);
        drop(reader);
        // An index at or below the applied one is refused (fatal).
        let mut batch = WriteBatch::default();
        let again = [LogCommand {
            index: 6,
            ..proposal(vec![put("b", "x", "v9", 9)])
        }];
        assert!(MetaApp.apply(&db, &mut batch, &again).is_err());
    }
}
