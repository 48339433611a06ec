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
