//! Proto ⇄ domain conversions of the KMS service, in one place.

use coffer_proto::kms as pb;
use tonic::{Code, Status};

use crate::kms::*;
use crate::KmsError;

use super::ERROR_METADATA;

/// The coarse gRPC code a `KmsError` travels with.
fn code_of(e: &KmsError) -> Code {
    match e {
        KmsError::NotFound(_) => Code::NotFound,
        KmsError::Disabled(_) | KmsError::InvalidState(_) => Code::FailedPrecondition,
        KmsError::InvalidCiphertext(_)
        | KmsError::IncorrectKey(_)
        | KmsError::Validation(_)
        | KmsError::InvalidArn(_)
        | KmsError::InvalidMarker(_) => Code::InvalidArgument,
        KmsError::AlreadyExists(_) => Code::AlreadyExists,
        KmsError::Internal(_) => Code::Internal,
        KmsError::Unavailable(_) => Code::Unavailable,
    }
}

/// A `KmsError` as a gRPC status: coarse code, AWS exception name in metadata, message.
pub fn status_from_error(e: &KmsError) -> Status {
    let mut st = Status::new(code_of(e), e.message().to_owned());
    st.metadata_mut().insert(
        ERROR_METADATA,
        e.aws_name().parse().expect("ASCII exception name"),
    );
    st
}

/// A gRPC status back as the `KmsError` the server returned; transport failures (no
/// exception name) become `Unavailable` for Unavailable / DeadlineExceeded / Cancelled and
/// `Internal` otherwise.
pub fn error_from_status(st: &Status) -> KmsError {
    let name = st
        .metadata()
        .get(ERROR_METADATA)
        .and_then(|v| v.to_str().ok());
    error_from_parts(name, st.code(), st.message())
}

/// A failed item of a batch: the code, exception name and message its status would carry.
pub fn item_error_to_pb(e: &KmsError) -> pb::ItemError {
    pb::ItemError {
        code: code_of(e) as i32,
        exception: e.aws_name().to_owned(),
        message: e.message().to_owned(),
    }
}

/// A failed item back as its `KmsError`, as [`error_from_status`] rebuilds a failed call.
pub fn item_error_from_pb(e: &pb::ItemError) -> KmsError {
    error_from_parts(Some(&e.exception), Code::from(e.code), &e.message)
}

fn error_from_parts(name: Option<&str>, code: Code, message: &str) -> KmsError {
    if let Some(e) = name.and_then(|n| KmsError::from_aws_name(n, message)) {
        return e;
    }
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            KmsError::Unavailable(format!("KMS unreachable: {message}"))
        }
        _ => KmsError::Internal(format!("KMS call failed: {code:?}: {message}")),
    }
}

/// Domain key state → proto.
pub fn key_state_to_pb(s: KeyState) -> pb::KeyState {
    match s {
        KeyState::Enabled => pb::KeyState::Enabled,
        KeyState::Disabled => pb::KeyState::Disabled,
        KeyState::PendingDeletion => pb::KeyState::PendingDeletion,
    }
}

fn key_state_from_pb(v: i32) -> Result<KeyState, KmsError> {
    match pb::KeyState::try_from(v) {
        Ok(pb::KeyState::Enabled) => Ok(KeyState::Enabled),
        Ok(pb::KeyState::Disabled) => Ok(KeyState::Disabled),
        Ok(pb::KeyState::PendingDeletion) => Ok(KeyState::PendingDeletion),
        _ => Err(KmsError::Internal(format!(
            "unknown key state {v} from the KMS"
        ))),
    }
}

impl From<&KeyMetadata> for pb::KeyMetadata {
    fn from(m: &KeyMetadata) -> Self {
        pb::KeyMetadata {
            key_id: m.key_id.clone(),
            arn: m.arn.clone(),
            aws_account_id: m.aws_account_id.clone(),
            creation_date: m.creation_date,
            enabled: m.enabled,
            description: m.description.clone(),
            key_state: key_state_to_pb(m.key_state) as i32,
            key_manager: match m.key_manager {
                KeyManager::Aws => pb::KeyManager::Aws,
                KeyManager::Customer => pb::KeyManager::Customer,
            } as i32,
            deletion_date: m.deletion_date,
            pending_deletion_window_in_days: m.pending_deletion_window_in_days,
            rotation_enabled: m.rotation_enabled,
            rotation_period_in_days: m.rotation_period_in_days,
            current_material_version: m.current_material_version,
        }
    }
}

impl TryFrom<pb::KeyMetadata> for KeyMetadata {
    type Error = KmsError;

    fn try_from(m: pb::KeyMetadata) -> Result<Self, KmsError> {
        Ok(KeyMetadata {
            key_state: key_state_from_pb(m.key_state)?,
            key_manager: match pb::KeyManager::try_from(m.key_manager) {
                Ok(pb::KeyManager::Aws) => KeyManager::Aws,
                Ok(pb::KeyManager::Customer) => KeyManager::Customer,
                _ => {
                    return Err(KmsError::Internal(format!(
                        "unknown key manager {} from the KMS",
                        m.key_manager
                    )))
                }
            },
            key_id: m.key_id,
            arn: m.arn,
            aws_account_id: m.aws_account_id,
            creation_date: m.creation_date,
            enabled: m.enabled,
            description: m.description,
            deletion_date: m.deletion_date,
            pending_deletion_window_in_days: m.pending_deletion_window_in_days,
            rotation_enabled: m.rotation_enabled,
            rotation_period_in_days: m.rotation_period_in_days,
            current_material_version: m.current_material_version,
        })
    }
}

impl From<KeyListEntry> for pb::KeyListEntry {
    fn from(e: KeyListEntry) -> Self {
        pb::KeyListEntry {
            key_id: e.key_id,
            key_arn: e.key_arn,
        }
    }
}

impl From<pb::KeyListEntry> for KeyListEntry {
    fn from(e: pb::KeyListEntry) -> Self {
        KeyListEntry {
            key_id: e.key_id,
            key_arn: e.key_arn,
        }
    }
}

impl From<AliasEntry> for pb::AliasEntry {
    fn from(e: AliasEntry) -> Self {
        pb::AliasEntry {
            alias_name: e.alias_name,
            alias_arn: e.alias_arn,
            target_key_id: e.target_key_id,
            creation_date: e.creation_date,
        }
    }
}

impl From<pb::AliasEntry> for AliasEntry {
    fn from(e: pb::AliasEntry) -> Self {
        AliasEntry {
            alias_name: e.alias_name,
            alias_arn: e.alias_arn,
            target_key_id: e.target_key_id,
            creation_date: e.creation_date,
        }
    }
}

impl From<RotationEntry> for pb::RotationEntry {
    fn from(e: RotationEntry) -> Self {
        pb::RotationEntry {
            key_id: e.key_id,
            material_version: e.material_version,
            rotation_date: e.rotation_date,
            rotation_type: e.rotation_type,
        }
    }
}

impl From<pb::RotationEntry> for RotationEntry {
    fn from(e: pb::RotationEntry) -> Self {
        RotationEntry {
            key_id: e.key_id,
            material_version: e.material_version,
            rotation_date: e.rotation_date,
            rotation_type: e.rotation_type,
        }
    }
}

impl From<RotationStatus> for pb::RotationStatus {
    fn from(s: RotationStatus) -> Self {
        pb::RotationStatus {
            key_id: s.key_id,
            enabled: s.enabled,
            rotation_period_in_days: s.rotation_period_in_days,
            next_rotation_date: s.next_rotation_date,
            on_demand_rotation_start_date: s.on_demand_rotation_start_date,
        }
    }
}

impl From<pb::RotationStatus> for RotationStatus {
    fn from(s: pb::RotationStatus) -> Self {
        RotationStatus {
            key_id: s.key_id,
            enabled: s.enabled,
            rotation_period_in_days: s.rotation_period_in_days,
            next_rotation_date: s.next_rotation_date,
            on_demand_rotation_start_date: s.on_demand_rotation_start_date,
        }
    }
}

impl From<&ReEncryptItem> for pb::ReEncryptRequest {
    fn from(it: &ReEncryptItem) -> Self {
        pb::ReEncryptRequest {
            ciphertext_blob: it.ciphertext_blob.clone(),
            source_encryption_context: it.source_context.clone(),
            source_key_id: it.source_key_id.clone(),
            destination_key_id: it.destination_key_id.clone(),
            destination_encryption_context: it.destination_context.clone(),
        }
    }
}

impl From<pb::ReEncryptRequest> for ReEncryptItem {
    fn from(r: pb::ReEncryptRequest) -> Self {
        ReEncryptItem {
            ciphertext_blob: r.ciphertext_blob,
            source_context: r.source_encryption_context,
            source_key_id: r.source_key_id,
            destination_key_id: r.destination_key_id,
            destination_context: r.destination_encryption_context,
        }
    }
}

impl From<ReEncrypted> for pb::ReEncryptResponse {
    fn from(e: ReEncrypted) -> Self {
        pb::ReEncryptResponse {
            source_key_id: e.source_key_id,
            key_id: e.key_id,
            ciphertext_blob: e.ciphertext_blob,
        }
    }
}

impl From<pb::ReEncryptResponse> for ReEncrypted {
    fn from(e: pb::ReEncryptResponse) -> Self {
        ReEncrypted {
            source_key_id: e.source_key_id,
            key_id: e.key_id,
            ciphertext_blob: e.ciphertext_blob,
        }
    }
}

/// One result of a batch in proto form.
pub fn batch_result_to_pb(r: Result<ReEncrypted, KmsError>) -> pb::ReEncryptBatchResult {
    use pb::re_encrypt_batch_result::Outcome as R;
    pb::ReEncryptBatchResult {
        outcome: Some(match r {
            Ok(e) => R::Ok(e.into()),
            Err(e) => R::Error(item_error_to_pb(&e)),
        }),
    }
}

/// One result of a batch back in domain form; a result with neither field is a server bug.
pub fn batch_result_from_pb(r: pb::ReEncryptBatchResult) -> Result<ReEncrypted, KmsError> {
    use pb::re_encrypt_batch_result::Outcome as R;
    match r.outcome {
        Some(R::Ok(e)) => Ok(e.into()),
        Some(R::Error(e)) => Err(item_error_from_pb(&e)),
        None => Err(KmsError::Internal(
            "ReEncryptBatch result without outcome from the KMS".into(),
        )),
    }
}

/// A `usize` byte count as the proto's `uint32`, saturating (the server validates the bound).
pub fn count_to_pb(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips() {
        for e in [
            KmsError::NotFound("a".into()),
            KmsError::Disabled("b".into()),
            KmsError::InvalidState("c".into()),
            KmsError::InvalidCiphertext("d".into()),
            KmsError::IncorrectKey("e".into()),
            KmsError::AlreadyExists("f".into()),
            KmsError::Validation("g".into()),
            KmsError::InvalidArn("h".into()),
            KmsError::InvalidMarker("i".into()),
            KmsError::Internal("j".into()),
            KmsError::Unavailable("k".into()),
        ] {
            let back = error_from_status(&status_from_error(&e));
            assert_eq!(back.aws_name(), e.aws_name());
            assert_eq!(back.message(), e.message());
            // A batch item's error carries the same code, name and message as the status.
            let item = item_error_to_pb(&e);
            assert_eq!(item.code, status_from_error(&e).code() as i32);
            let back = item_error_from_pb(&item);
            assert_eq!(back.aws_name(), e.aws_name());
            assert_eq!(back.message(), e.message());
        }
        let transport = Status::unavailable("connection refused");
        assert!(matches!(
            error_from_status(&transport),
            KmsError::Unavailable(_)
        ));
        assert!(matches!(
            error_from_status(&Status::deadline_exceeded("t")),
            KmsError::Unavailable(_)
        ));
        assert!(matches!(
            error_from_status(&Status::unknown("?")),
            KmsError::Internal(_)
        ));
    }

    #[test]
    fn metadata_round_trips() {
        let m = KeyMetadata {
            key_id: "k".into(),
            arn: "arn".into(),
            aws_account_id: "111122223333".into(),
            creation_date: 5,
            enabled: false,
            description: "d".into(),
            key_state: KeyState::PendingDeletion,
            key_manager: KeyManager::Aws,
            deletion_date: Some(9),
            pending_deletion_window_in_days: Some(7),
            rotation_enabled: true,
            rotation_period_in_days: Some(90),
            current_material_version: 3,
        };
        assert_eq!(KeyMetadata::try_from(pb::KeyMetadata::from(&m)).unwrap(), m);
    }
}
