//! The gRPC server side: any `Arc<dyn Kms>` behind `proto/kms.proto`.

use std::future::Future;
use std::sync::Arc;

use coffer_proto::kms as pb;
use coffer_proto::kms::kms_server::{Kms as KmsRpc, KmsServer};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use zeroize::Zeroize;

use super::convert::{batch_result_to_pb, count_to_pb, status_from_error};
use super::MAX_MESSAGE_BYTES;
use crate::{Kms, KmsError};

/// Serves a [`Kms`] over gRPC.
#[derive(Clone)]
pub struct KmsService {
    kms: Arc<dyn Kms>,
}

impl KmsService {
    /// Wraps `kms`.
    pub fn new(kms: Arc<dyn Kms>) -> Self {
        KmsService { kms }
    }

    /// The tonic service, to add to a `tonic::transport::Server`.
    pub fn into_server(self) -> KmsServer<KmsService> {
        KmsServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Serves `kms` on `listener` until `shutdown` completes.
pub async fn serve(
    kms: Arc<dyn Kms>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(KmsService::new(kms).into_server())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

fn st(e: KmsError) -> Status {
    status_from_error(&e)
}

fn usize_of(n: u32) -> usize {
    n as usize
}

#[tonic::async_trait]
impl KmsRpc for KmsService {
    async fn create_key(
        &self,
        r: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::KeyMetadata>, Status> {
        let r = r.into_inner();
        let req = crate::CreateKeyRequest {
            description: r.description,
            aws_managed: r.aws_managed,
            tags: r.tags,
        };
        let m = self.kms.create_key(req).await.map_err(st)?;
        Ok(Response::new((&m).into()))
    }

    async fn describe_key(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::KeyMetadata>, Status> {
        let m = self
            .kms
            .describe_key(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new((&m).into()))
    }

    async fn list_keys(
        &self,
        r: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let r = r.into_inner();
        let p = self
            .kms
            .list_keys(r.limit, r.marker.as_deref())
            .await
            .map_err(st)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: p.items.into_iter().map(Into::into).collect(),
            next_marker: p.next_marker,
        }))
    }

    async fn create_alias(
        &self,
        r: Request<pb::AliasRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        self.kms
            .create_alias(&r.alias_name, &r.target_key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn update_alias(
        &self,
        r: Request<pb::AliasRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        self.kms
            .update_alias(&r.alias_name, &r.target_key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn delete_alias(
        &self,
        r: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.kms
            .delete_alias(&r.into_inner().alias_name)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_aliases(
        &self,
        r: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let r = r.into_inner();
        let p = self
            .kms
            .list_aliases(r.key_id.as_deref(), r.limit, r.marker.as_deref())
            .await
            .map_err(st)?;
        Ok(Response::new(pb::ListAliasesResponse {
            aliases: p.items.into_iter().map(Into::into).collect(),
            next_marker: p.next_marker,
        }))
    }

    async fn enable_key(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.kms
            .enable_key(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn disable_key(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.kms
            .disable_key(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn schedule_key_deletion(
        &self,
        r: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<pb::KeyMetadata>, Status> {
        let r = r.into_inner();
        let m = self
            .kms
            .schedule_key_deletion(&r.key_id, r.pending_window_in_days)
            .await
            .map_err(st)?;
        Ok(Response::new((&m).into()))
    }

    async fn cancel_key_deletion(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::KeyMetadata>, Status> {
        let m = self
            .kms
            .cancel_key_deletion(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new((&m).into()))
    }

    async fn enable_key_rotation(
        &self,
        r: Request<pb::EnableKeyRotationRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        self.kms
            .enable_key_rotation(&r.key_id, r.rotation_period_in_days)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn disable_key_rotation(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.kms
            .disable_key_rotation(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_key_rotation_status(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::RotationStatus>, Status> {
        let s = self
            .kms
            .get_key_rotation_status(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(s.into()))
    }

    async fn rotate_key_on_demand(
        &self,
        r: Request<pb::KeyIdRequest>,
    ) -> Result<Response<pb::RotateKeyOnDemandResponse>, Status> {
        let key_id = self
            .kms
            .rotate_key_on_demand(&r.into_inner().key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RotateKeyOnDemandResponse { key_id }))
    }

    async fn list_key_rotations(
        &self,
        r: Request<pb::ListKeyRotationsRequest>,
    ) -> Result<Response<pb::ListKeyRotationsResponse>, Status> {
        let r = r.into_inner();
        let p = self
            .kms
            .list_key_rotations(&r.key_id, r.limit, r.marker.as_deref())
            .await
            .map_err(st)?;
        Ok(Response::new(pb::ListKeyRotationsResponse {
            rotations: p.items.into_iter().map(Into::into).collect(),
            next_marker: p.next_marker,
        }))
    }

    async fn encrypt(
        &self,
        r: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        let mut r = r.into_inner();
        let res = self
            .kms
            .encrypt(&r.key_id, &r.plaintext, &r.encryption_context)
            .await;
        r.plaintext.zeroize();
        let e = res.map_err(st)?;
        Ok(Response::new(pb::EncryptResponse {
            key_id: e.key_id,
            ciphertext_blob: e.ciphertext_blob,
        }))
    }

    async fn decrypt(
        &self,
        r: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        let r = r.into_inner();
        let d = self
            .kms
            .decrypt(
                &r.ciphertext_blob,
                &r.encryption_context,
                r.key_id.as_deref(),
            )
            .await
            .map_err(st)?;
        // The response buffer is handed to prost for encoding and freed unzeroized; the domain
        // copy is zeroized on drop.
        Ok(Response::new(pb::DecryptResponse {
            key_id: d.key_id.clone(),
            plaintext: d.plaintext.to_vec(),
        }))
    }

    async fn re_encrypt(
        &self,
        r: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        let r = r.into_inner();
        let e = self
            .kms
            .re_encrypt(
                &r.ciphertext_blob,
                &r.source_encryption_context,
                r.source_key_id.as_deref(),
                &r.destination_key_id,
                &r.destination_encryption_context,
            )
            .await
            .map_err(st)?;
        Ok(Response::new(e.into()))
    }

    async fn re_encrypt_batch(
        &self,
        r: Request<pb::ReEncryptBatchRequest>,
    ) -> Result<Response<pb::ReEncryptBatchResponse>, Status> {
        let items = r.into_inner().items.into_iter().map(Into::into).collect();
        let results = self.kms.re_encrypt_batch(items).await.map_err(st)?;
        Ok(Response::new(pb::ReEncryptBatchResponse {
            results: results.into_iter().map(batch_result_to_pb).collect(),
        }))
    }

    async fn generate_data_key(
        &self,
        r: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let r = r.into_inner();
        let g = self
            .kms
            .generate_data_key(
                &r.key_id,
                &r.encryption_context,
                usize_of(r.number_of_bytes),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: g.plaintext.as_ref().map(|p| p.to_vec()),
            key_id: g.key_id,
            ciphertext_blob: g.ciphertext_blob,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        r: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let r = r.into_inner();
        let g = self
            .kms
            .generate_data_key_without_plaintext(
                &r.key_id,
                &r.encryption_context,
                usize_of(r.number_of_bytes),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: None,
            key_id: g.key_id,
            ciphertext_blob: g.ciphertext_blob,
        }))
    }

    async fn generate_random(
        &self,
        r: Request<pb::GenerateRandomRequest>,
    ) -> Result<Response<pb::GenerateRandomResponse>, Status> {
        let n = r.into_inner().number_of_bytes;
        let plaintext = self.kms.generate_random(usize_of(n)).await.map_err(st)?;
        debug_assert_eq!(count_to_pb(plaintext.len()), n);
        Ok(Response::new(pb::GenerateRandomResponse { plaintext }))
    }

    async fn create_reserved_alias(
        &self,
        r: Request<pb::AliasRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        self.kms
            .create_reserved_alias(&r.alias_name, &r.target_key_id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::Empty {}))
    }
}
