//! Object round trips, ranges, listing, multipart and copies with aws-sdk-s3.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use coffer_tests::{body_of, bucket_name, md5_hex, Coffer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_delete_round_trip_is_encrypted_at_rest() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("rt");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    for (i, len) in [0usize, 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17]
        .into_iter()
        .enumerate()
    {
        let key = format!("obj-{i}");
        let data = body_of(len, i as u64 + 1);
        let put = s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.e_tag(),
            Some(format!("\"{}\"", md5_hex(&data)).as_str())
        );
        assert_eq!(
            put.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256)
        );
        let got = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256)
        );
        assert_eq!(got.content_length(), Some(len as i64));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes.as_ref() == data.as_slice(),
            "body mismatch for len {len}"
        );
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(len as i64));
    }

    // The plaintext never reaches the disk: a recognisable pattern is absent from every file.
    let marker = b"COFFER-PLAINTEXT-MARKER-0123456789".repeat(1000);
    s3.put_object()
        .bucket(&bucket)
        .key("marker")
        .body(ByteStream::from(marker.clone()))
        .send()
        .await
        .unwrap();
    let needle = &marker[..34];
    let mut scanned = 0;
    for entry in walk(&coffer.dir.join("data")) {
        let content = std::fs::read(&entry).unwrap_or_default();
        scanned += content.len();
        assert!(
            !content.windows(needle.len()).any(|w| w == needle),
            "plaintext found in {}",
            entry.display()
        );
    }
    assert!(scanned > marker.len(), "the blob files were scanned");

    s3.delete_object()
        .bucket(&bucket)
        .key("obj-1")
        .send()
        .await
        .unwrap();
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("obj-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchKey"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_open_only_what_they_need_and_return_exact_bytes() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("range");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let data = body_of(2 * (1 << 20) + 100, 7);
    s3.put_object()
        .bucket(&bucket)
        .key("k")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let n = data.len();
    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=0-0".into(), 0, 0),
        ("bytes=10-20".into(), 10, 20),
        (
            format!("bytes={}-{}", (1 << 20) - 5, (1 << 20) + 5),
            (1 << 20) - 5,
            (1 << 20) + 5,
        ),
        ("bytes=-100".into(), n - 100, n - 1),
        (format!("bytes={}-", n - 3), n - 3, n - 1),
        (format!("bytes=5-{}", n + 1000), 5, n - 1),
    ];
    for (range, s, e) in cases {
        let got = s3
            .get_object()
            .bucket(&bucket)
            .key("k")
            .range(&range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {s}-{e}/{n}").as_str()),
            "{range}"
        );
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(bytes.as_ref() == &data[s..=e], "{range}");
    }
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("k")
        .range(format!("bytes={n}-"))
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(416));
    assert_eq!(err.into_service_error().meta().code(), Some("InvalidRange"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_objects_v2_with_prefix_delimiter_and_pages() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("list");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let keys = ["a/1", "a/2", "a/b/3", "b", "c/4", "c/5", "d"];
    for k in keys {
        s3.put_object()
            .bucket(&bucket)
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let out = s3
        .list_objects_v2()
        .bucket(&bucket)
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let names: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(names, ["b", "d"]);
    assert_eq!(prefixes, ["a/", "c/"]);
    assert_eq!(out.key_count(), Some(4));

    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&bucket)
            .max_keys(2)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        all.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_string);
        assert!(token.is_some());
    }
    assert_eq!(all, keys);
    let out = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("a/")
        .start_after("a/1")
        .send()
        .await
        .unwrap();
    let names: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(names, ["a/2", "a/b/3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_and_copy() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("mpu");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let part1 = body_of(5 << 20, 11);
    let part2 = body_of(1234, 12);
    let up = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut completed = Vec::new();
    for (n, data) in [(1, &part1), (2, &part2)] {
        let r = s3
            .upload_part()
            .bucket(&bucket)
            .key("big")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        completed.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut md5s = Vec::new();
    for p in [&part1, &part2] {
        md5s.extend(hex::decode(md5_hex(p)).unwrap());
    }
    assert_eq!(
        done.e_tag(),
        Some(format!("\"{}-2\"", md5_hex(&md5s)).as_str())
    );
    let whole: Vec<u8> = [part1.clone(), part2.clone()].concat();
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == whole.as_slice());
    // A range across the part boundary.
    let s = (5 << 20) - 10;
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("big")
        .range(format!("bytes={s}-{}", s + 19))
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == &whole[s..s + 20]);

    s3.copy_object()
        .bucket(&bucket)
        .key("copy")
        .copy_source(format!("{bucket}/big"))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("copy")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == whole.as_slice());
}
