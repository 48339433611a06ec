//! The KMS over gRPC (`proto/kms.proto`): [`KmsService`] serves any `Arc<dyn Kms>`, and
//! [`GrpcKmsClient`] implements [`crate::Kms`] against a remote `coffer kms`, so a gateway uses a
//! remote KMS exactly like the in-process one.
//!
//! Errors cross the wire as a status plus the AWS exception name in the `x-coffer-kms-error`
//! metadata ([`convert::status_from_error`] / [`convert::error_from_status`]).

mod client;
pub mod convert;
mod service;

pub use client::{ClientConfig, GrpcKmsClient};
pub use service::{serve, KmsService};

/// Metadata key carrying the AWS exception name of a failed call.
pub const ERROR_METADATA: &str = "x-coffer-kms-error";

/// Largest message either side sends or accepts: a full ReEncrypt batch of the largest blobs
/// (1000 × 6 KiB, plus contexts) exceeds tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::backend::local::LocalKms;
    use crate::testing::{self, assert_err};
    use crate::Kms;

    struct Server {
        addr: std::net::SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn start(listener: TcpListener) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open(
            dir.path(),
            zeroize::Zeroizing::new([9u8; 32]),
            "us-west-2",
            "210987654321",
        )
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(Arc::new(kms), listener, async {
                let _ = rx.await;
            })
            .await
            .expect("gRPC server");
        });
        Server {
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    impl Server {
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            self.task.await.unwrap();
        }
    }

    /// A ReEncrypt item for calls that never reach a KMS.
    fn unroutable_item() -> crate::ReEncryptItem {
        crate::ReEncryptItem {
            ciphertext_blob: vec![1],
            source_context: Default::default(),
            source_key_id: None,
            destination_key_id: "alias/any".into(),
            destination_context: Default::default(),
        }
    }

    fn client(addr: std::net::SocketAddr, timeout: Duration) -> GrpcKmsClient {
        GrpcKmsClient::connect_lazy(ClientConfig {
            endpoint: format!("http://{addr}"),
            timeout,
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite_over_grpc() {
        let server = start(TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
        let c = client(server.addr, Duration::from_secs(5));
        testing::suite(&c).await;
        // Errors keep their variant across the wire.
        let e = c
            .describe_key(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap_err();
        assert!(matches!(e, crate::KmsError::NotFound(_)), "{e}");
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn re_encrypt_batch_wire_format() {
        use coffer_proto::kms as pb;
        use coffer_proto::kms::kms_client::KmsClient;

        let server = start(TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
        let c = client(server.addr, Duration::from_secs(5));
        let k = c.create_key(Default::default()).await.unwrap();
        let ctx = crate::EncryptionContext::from([("k".to_owned(), "v".to_owned())]);
        let blob = c.encrypt(&k.key_id, b"dek", &ctx).await.unwrap();
        let item = crate::ReEncryptItem {
            ciphertext_blob: blob.ciphertext_blob,
            source_context: ctx.clone(),
            source_key_id: None,
            destination_key_id: k.arn.clone(),
            destination_context: ctx.clone(),
        };
        let mut wrong_ctx = item.clone();
        wrong_ctx.source_context.clear();

        // The raw rpc: one response for the whole batch, an outcome per item, and a failed
        // item carries the code and exception name its single call's status would.
        let mut raw = KmsClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        let resp = raw
            .re_encrypt_batch(pb::ReEncryptBatchRequest {
                items: vec![(&item).into(), (&wrong_ctx).into()],
            })
            .await
            .unwrap()
            .into_inner();
        use pb::re_encrypt_batch_result::Outcome as R;
        let [ok, err] = &resp.results[..] else {
            panic!("two results expected, got {}", resp.results.len());
        };
        assert!(matches!(&ok.outcome, Some(R::Ok(r)) if r.key_id == k.arn));
        let Some(R::Error(e)) = &err.outcome else {
            panic!("item 1 must fail");
        };
        let single = raw
            .re_encrypt(pb::ReEncryptRequest::from(&wrong_ctx))
            .await
            .unwrap_err();
        assert_eq!(e.code, single.code() as i32);
        assert_eq!(e.exception, "InvalidCiphertextException");
        assert_eq!(e.message, single.message());
        // The server refuses an oversized batch as a whole.
        let over = raw
            .re_encrypt_batch(pb::ReEncryptBatchRequest {
                items: vec![(&item).into(); crate::MAX_REENCRYPT_BATCH + 1],
            })
            .await
            .unwrap_err();
        assert_err(
            Err::<(), _>(convert::error_from_status(&over)),
            "ValidationException",
            "oversized batch at the server",
        );

        // The client rebuilds the variants.
        let res = c.re_encrypt_batch(vec![item, wrong_ctx]).await.unwrap();
        let plain = c
            .decrypt(&res[0].as_ref().unwrap().ciphertext_blob, &ctx, None)
            .await
            .unwrap();
        assert_eq!(&plain.plaintext[..], b"dek");
        assert!(
            matches!(res[1], Err(crate::KmsError::InvalidCiphertext(_))),
            "{:?}",
            res[1]
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn oversized_batch_is_refused_before_any_round_trip() {
        // Nothing listens: a round trip would fail with Unavailable, not Validation.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let c = client(addr, Duration::from_secs(2));
        let item = unroutable_item();
        assert_err(
            c.re_encrypt_batch(vec![item; crate::MAX_REENCRYPT_BATCH + 1])
                .await,
            "ValidationException",
            "oversized batch",
        );
    }

    #[tokio::test]
    async fn dead_endpoint_fails_fast_with_unavailable() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: nothing listens on addr.
        let timeout = Duration::from_secs(2);
        let c = client(addr, timeout);
        let t = Instant::now();
        let e = c
            .generate_data_key("alias/any", &Default::default(), 32)
            .await
            .err()
            .expect("must fail");
        assert!(matches!(e, crate::KmsError::Unavailable(_)), "{e}");
        assert!(
            t.elapsed() < timeout,
            "failed after {:?}, deadline {timeout:?}",
            t.elapsed()
        );
        assert_err(
            c.describe_key("alias/any").await,
            "DependencyTimeoutException",
            "down KMS",
        );
    }

    #[tokio::test]
    async fn unresponsive_endpoint_hits_the_deadline() {
        // Accepts TCP connections (backlog) but never speaks HTTP/2.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(700);
        let c = client(silent.local_addr().unwrap(), timeout);
        let t = Instant::now();
        let e = c.describe_key("alias/any").await.unwrap_err();
        assert!(matches!(e, crate::KmsError::Unavailable(_)), "{e}");
        assert!(
            t.elapsed() < timeout + Duration::from_millis(500),
            "took {:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_batch_waits_one_deadline_per_hundred_items() {
        // As above, nothing answers: a batch of 150 items waits two deadlines, not one.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(400);
        let c = client(silent.local_addr().unwrap(), timeout);
        let item = unroutable_item();
        let t = Instant::now();
        let e = c.re_encrypt_batch(vec![item; 150]).await.unwrap_err();
        assert!(matches!(e, crate::KmsError::Unavailable(_)), "{e}");
        assert!(
            t.elapsed() >= 2 * timeout - Duration::from_millis(50)
                && t.elapsed() < 2 * timeout + Duration::from_millis(500),
            "took {:?}",
            t.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lazy_client_works_once_the_kms_comes_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = client(addr, Duration::from_secs(2));
        assert_err(
            c.generate_random(8).await,
            "DependencyTimeoutException",
            "before the KMS starts",
        );
        let server = start(TcpListener::bind(addr).await.unwrap()).await;
        assert_eq!(
            c.generate_random(8)
                .await
                .expect("after the KMS starts")
                .len(),
            8
        );
        let k = c.create_key(Default::default()).await.unwrap();
        assert!(k.arn.starts_with("arn:aws:kms:us-west-2:210987654321:key/"));
        server.stop().await;
    }
}
