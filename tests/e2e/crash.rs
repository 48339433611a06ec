//! Crash safety: SIGKILL in the middle of concurrent PUTs loses no acknowledged object and
//! lists no partial one.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use coffer_tests::{body_of, bucket_name, Coffer};
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_puts_keeps_every_acknowledged_object() {
    let mut coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("crash");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let acked: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let s3 = s3.clone();
        let bucket = bucket.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000u64 {
                let seed = w * 1_000_000 + i;
                let len = 1000 + ((seed * 7919) % 300_000) as usize;
                let key = format!("w{w}/obj-{i}");
                match s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(body_of(len, seed)))
                    .send()
                    .await
                {
                    Ok(_) => acked.lock().await.push((key, seed, len)),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let the writers run, then kill the server in the middle of their requests.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().await.len() < 200 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    coffer.kill_with(9);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() >= 50,
        "only {} PUTs were acknowledged before the kill",
        acked.len()
    );

    coffer.restart();
    let s3 = coffer.s3().await;
    for (key, seed, len) in &acked {
        let got = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes.as_ref() == body_of(*len, *seed).as_slice(),
            "{key} differs after the crash"
        );
    }
    // Every listed object is whole: it reads back completely with its recorded size.
    let mut token = None;
    let mut listed = 0;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&bucket)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            let got = s3
                .get_object()
                .bucket(&bucket)
                .key(o.key().unwrap())
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            assert_eq!(bytes.len() as i64, o.size().unwrap());
            listed += 1;
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
    }
    assert!(listed >= acked.len());
}
