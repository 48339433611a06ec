//! CopyObject and UploadPartCopy.
//!
//! A copy never moves ciphertext: the source's plaintext is streamed out under the source's data
//! key and sealed again under the destination's (a new object's, or the upload's), so each
//! version keeps its own key and envelope.

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use coffer_meta::{
    BucketRecord, Checksum, Command, ObjectVersion, PartRef, Versioning, FORMAT_VERSION,
};
use futures::StreamExt;
use http::StatusCode;
use md5::{Digest, Md5};
use percent_encoding::percent_decode_str;

use super::common::*;
use super::data::{self, BlobSink};
use super::multipart::{self, MAX_PART_SIZE};
use super::object::write_condition;
use crate::error::{S3Error, S3Result};
use crate::http::checksum::{ChecksumAlgorithm, Checksummer};
use crate::s3_error;
use crate::sse::{self, CustomerKeyHeaders};
use crate::state::{AppState, ReqCtx};
use crate::xml::{iso8601_ms, XmlWriter};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Largest object a single copy can read (S3's 5 GiB).
pub const MAX_COPY_SOURCE: u64 = MAX_PART_SIZE;

/// A parsed `x-amz-copy-source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// Source bucket.
    pub bucket: String,
    /// Source key.
    pub key: String,
    /// `?versionId=`, if given.
    pub version_id: Option<String>,
}

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=v]`, the bucket and key URL-encoded.
pub fn parse_copy_source(raw: &str) -> S3Result<CopySource> {
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        )
        .with_detail("ArgumentName", "x-amz-copy-source")
        .with_detail("ArgumentValue", raw)
    };
    // `?` separates the version: a `?` inside a key arrives encoded.
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').ok_or_else(invalid)?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid())
    };
    let (bucket, key) = (decode(bucket)?, decode(key)?);
    if bucket.is_empty() || key.is_empty() {
        return Err(invalid());
    }
    let mut version_id = None;
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if k == "versionId" {
                if v.is_empty() {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Version id cannot be the empty string"
                    )
                    .with_detail("ArgumentName", "versionId")
                    .with_detail("ArgumentValue", ""));
                }
                version_id = Some(v.into_owned());
            }
        }
    }
    Ok(CopySource {
        bucket,
        key,
        version_id,
    })
}

/// Parses `x-amz-copy-source-range: bytes=first-last` against the source size; returns the
/// inclusive range.
pub fn parse_copy_range(value: &str, size: u64) -> S3Result<(u64, u64)> {
    let malformed = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
        .with_detail("ArgumentName", "x-amz-copy-source-range")
        .with_detail("ArgumentValue", value)
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(malformed)?;
    let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(last) {
        return Err(malformed());
    }
    let (first, last) = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(f), Ok(l)) if f <= l => (f, l),
        _ => return Err(malformed()),
    };
    if first >= size {
        return Err(s3_error!(
            InvalidRequest,
            "The specified copy range is invalid for the source object size"
        ));
    }
    if last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        )
        .with_detail("ArgumentName", "x-amz-copy-source-range")
        .with_detail("ArgumentValue", value));
    }
    Ok((first, last))
}

/// The copy source of a request, resolved: its bucket and the version to read.
struct Source {
    spec: CopySource,
    bucket: BucketRecord,
    version: ObjectVersion,
}

/// Resolves `x-amz-copy-source` and evaluates the `x-amz-copy-source-if-*` conditions.
async fn resolve_source(ctx: &ReqCtx) -> S3Result<Source> {
    let raw = ctx.header("x-amz-copy-source").unwrap_or_default();
    let spec = parse_copy_source(raw)?;
    let bucket = ctx.state.meta.get_bucket(&spec.bucket).await?;
    let version = ctx
        .state
        .meta
        .get_object(&spec.bucket, &spec.key, spec.version_id.as_deref())
        .await?;
    if version.delete_marker {
        return Err(if spec.version_id.is_some() {
            s3_error!(
                InvalidRequest,
                "The source of a copy request may not specifically refer to a delete marker by version id."
            )
        } else {
            s3_error!(NoSuchKey, "The specified key does not exist.")
                .with_detail("Key", spec.key.clone())
        });
    }
    check_conditions(&ctx.parts.headers, &COPY_CONDITIONS, &version, true)?;
    Ok(Source {
        spec,
        bucket,
        version,
    })
}

fn too_large() -> S3Error {
    s3_error!(
        InvalidRequest,
        "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_COPY_SOURCE}"
    )
}

/// What re-sealing a range of the source produced.
struct Copied {
    part: PartRef,
    md5: [u8; 16],
    checksum: Vec<u8>,
}

/// The source's data key: SSE-C sources need `x-amz-copy-source-server-side-encryption-customer-*`.
async fn open_source_key(ctx: &ReqCtx, src: &ObjectVersion) -> S3Result<sse::DataKeys> {
    let env = src
        .envelope
        .as_ref()
        .ok_or_else(|| S3Error::internal("object version without envelope"))?;
    sse::open_for_read(
        &ctx.state,
        env,
        &ctx.parts.headers,
        CustomerKeyHeaders::CopySource,
    )
    .await
}

/// Streams plaintext bytes `range` of `src` (opened with `src_keys`) into a new blob sealed
/// under `keys` as `part_number`, computing MD5 and a checksum of `algorithm` on the way. The
/// blob is discarded on any error.
async fn reseal(
    state: &AppState,
    src: &ObjectVersion,
    src_keys: sse::DataKeys,
    range: Option<(u64, u64)>,
    keys: &sse::DataKeys,
    part_number: u32,
    algorithm: ChecksumAlgorithm,
) -> S3Result<Copied> {
    let mut md5 = Md5::new();
    let mut sum = Checksummer::new(algorithm);
    let mut sink = BlobSink::create(state, keys, part_number).await?;
    let result: S3Result<()> = async {
        if let Some((start, end)) = range {
            let mut stream = std::pin::pin!(data::read_range(
                state.blobs.clone(),
                src,
                src_keys,
                start,
                end
            ));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(S3Error::internal)?;
                md5.update(&chunk);
                sum.update(&chunk);
                sink.write(&chunk).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        sink.abort().await;
        return Err(e);
    }
    let part = sink.finish().await?;
    Ok(Copied {
        part,
        md5: md5.finalize().into(),
        checksum: sum.finish(),
    })
}

/// The whole object as a range, or `None` when it is empty.
fn whole(size: u64) -> Option<(u64, u64)> {
    (size > 0).then(|| (0, size - 1))
}

/// `x-amz-metadata-directive`: true for REPLACE.
fn replace_metadata(ctx: &ReqCtx) -> S3Result<bool> {
    match ctx.header("x-amz-metadata-directive") {
        None | Some("COPY") => Ok(false),
        Some("REPLACE") => Ok(true),
        Some(other) => Err(s3_error!(InvalidArgument, "Unknown metadata directive.")
            .with_detail("ArgumentName", "x-amz-metadata-directive")
            .with_detail("ArgumentValue", other)),
    }
}

/// The checksum algorithm of a copy: the one asked for, else the source's full-object one,
/// else S3's default.
fn copy_algorithm(ctx: &ReqCtx, src: &ObjectVersion) -> S3Result<ChecksumAlgorithm> {
    if let Some(asked) = ctx.header("x-amz-checksum-algorithm") {
        return ChecksumAlgorithm::from_name(asked.trim())
            .ok_or_else(multipart::unsupported_algorithm);
    }
    Ok(src
        .checksum
        .as_ref()
        .filter(|c| c.checksum_type == multipart::FULL_OBJECT)
        .and_then(|c| ChecksumAlgorithm::from_name(&c.algorithm))
        .unwrap_or(multipart::DEFAULT_ALGORITHM))
}

fn source_version_header(src: &Source, h: &mut Vec<(&'static str, String)>) {
    if src.bucket.versioning != Versioning::Unversioned && src.version.version_id != "null" {
        h.push((
            "x-amz-copy-source-version-id",
            src.version.version_id.clone(),
        ));
    }
}

/// CopyObject.
pub async fn copy_object(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    check_key(ctx.key())?;
    let dest_bucket = state.meta.get_bucket(ctx.bucket()).await?;
    sse::refuse_blocked_sse_c(&ctx, &dest_bucket)?;
    let src = resolve_source(&ctx).await?;
    if src.version.size > MAX_COPY_SOURCE {
        return Err(too_large());
    }
    let replace = replace_metadata(&ctx)?;
    let requested = object_headers(&ctx.parts.headers)?;
    let same_object = src.spec.bucket == ctx.bucket() && src.spec.key == ctx.key();
    if same_object && !replace {
        // Restoring an older version onto the key is a change; so is new encryption, a storage
        // class, a website redirect, or a bucket default encryption to apply.
        let changes_something = requested.storage_class.is_some()
            || requested.website_redirect_location.is_some()
            || ctx.header("x-amz-server-side-encryption").is_some()
            || ctx
                .header("x-amz-server-side-encryption-aws-kms-key-id")
                .is_some()
            || ctx
                .header("x-amz-server-side-encryption-customer-algorithm")
                .is_some()
            || dest_bucket
                .encryption
                .as_ref()
                .is_some_and(|e| !super::bucket_encryption::is_sse_s3_default(e))
            || match &src.spec.version_id {
                Some(v) => state
                    .meta
                    .get_object(ctx.bucket(), ctx.key(), None)
                    .await
                    .map(|cur| cur.version_id != *v)
                    .unwrap_or(true),
                None => false,
            };
        if !changes_something {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
    }
    let headers = if replace {
        requested
    } else {
        // COPY keeps the source's headers and metadata; storage class and website redirect are
        // never copied, they come from the request.
        let mut h = src.version.headers.clone();
        h.storage_class = requested.storage_class;
        h.website_redirect_location = requested.website_redirect_location;
        h
    };
    let condition = write_condition(&ctx)?;
    let (retention, legal_hold) = super::object_lock::lock_for_new_object(&ctx, &dest_bucket)?;
    let algorithm = copy_algorithm(&ctx, &src.version)?;
    let sse_req = sse::requested(&ctx.parts.headers, &dest_bucket)?;
    let version_id = version_id_for(&dest_bucket)?;
    let src_keys = open_source_key(&ctx, &src.version).await?;
    let okey = sse::new_object_key(&state, ctx.bucket(), ctx.key(), &sse_req).await?;
    let copied = reseal(
        &state,
        &src.version,
        src_keys,
        whole(src.version.size),
        &okey.keys,
        0,
        algorithm,
    )
    .await?;

    let etag = hex::encode(copied.md5);
    let checksum = Checksum {
        algorithm: algorithm.as_str().to_string(),
        value: B64.encode(&copied.checksum),
        checksum_type: multipart::FULL_OBJECT.to_string(),
    };
    let mut part = copied.part;
    part.etag = etag.clone();
    part.checksum = Some(checksum.value.clone());
    let blob_id = part.blob_id;
    let last_modified_ms = now_ms();
    let version = ObjectVersion {
        v: FORMAT_VERSION,
        key: ctx.key().to_string(),
        version_id: version_id.clone(),
        seq: 0,
        delete_marker: false,
        size: part.size,
        etag: etag.clone(),
        last_modified_ms,
        headers,
        checksum: Some(checksum.clone()),
        parts: vec![part],
        envelope: Some(okey.envelope.clone()),
        retention,
        legal_hold,
        multipart_parts: 0,
    };
    let cmd = Command::PutObject {
        bucket: ctx.bucket().to_string(),
        version,
        condition,
    };
    let out = match state.meta.apply(cmd).await {
        Ok(out) => out,
        Err(e) => {
            data::discard_unreferenced(&state.blobs, &[blob_id], &e).await;
            return Err(e.into());
        }
    };
    data::delete_blobs(&state.blobs, &out.freed_blobs).await;

    let mut w = XmlWriter::new("CopyObjectResult");
    w.elem("ETag", quote(&etag))
        .elem("LastModified", iso8601_ms(last_modified_ms))
        .elem("ChecksumType", &checksum.checksum_type)
        .elem(algorithm.xml_element(), &checksum.value);
    let mut h = vec![("content-type", "application/xml".to_string())];
    if dest_bucket.versioning != Versioning::Unversioned {
        h.push(("x-amz-version-id", version_id));
    }
    source_version_header(&src, &mut h);
    h.extend(sse::response_headers(&okey.envelope));
    h.extend(sse::context_header(&okey.envelope, ctx.bucket()));
    Ok(response(
        StatusCode::OK,
        h,
        Body::from(w.finish("CopyObjectResult")),
    ))
}

/// UploadPartCopy.
pub async fn upload_part_copy(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    sse::refuse_blocked_sse_c(&ctx, &bucket)?;
    let part_number = multipart::parse_part_number(ctx.query("partNumber"))?;
    let src = resolve_source(&ctx).await?;
    let upload = multipart::find_upload(&ctx).await?;
    let range = match ctx.header("x-amz-copy-source-range") {
        Some(r) => Some(parse_copy_range(r, src.version.size)?),
        None => {
            if src.version.size > MAX_COPY_SOURCE {
                return Err(too_large());
            }
            whole(src.version.size)
        }
    };
    if let Some((first, last)) = range {
        if last - first + 1 > MAX_COPY_SOURCE {
            return Err(too_large());
        }
    }
    let algorithm = multipart::part_algorithm(&upload);
    let src_keys = open_source_key(&ctx, &src.version).await?;
    let keys = multipart::open_upload_key(&ctx, &upload).await?;
    let copied = reseal(
        &state,
        &src.version,
        src_keys,
        range,
        &keys,
        part_number,
        algorithm,
    )
    .await?;
    drop(keys);

    let etag = hex::encode(copied.md5);
    let mut part = copied.part;
    part.etag = etag.clone();
    part.checksum = Some(B64.encode(&copied.checksum));
    let checksum_value = part.checksum.clone();
    let last_modified_ms = now_ms();
    multipart::record_part(&ctx, &upload.upload_id, part, last_modified_ms).await?;

    let mut w = XmlWriter::new("CopyPartResult");
    w.elem("ETag", quote(&etag))
        .elem("LastModified", iso8601_ms(last_modified_ms));
    if let (Some(alg), Some(v)) = (multipart::upload_algorithm(&upload), checksum_value) {
        w.elem(alg.xml_element(), v);
    }
    let mut h = vec![("content-type", "application/xml".to_string())];
    source_version_header(&src, &mut h);
    h.extend(sse::response_headers(&upload.envelope));
    Ok(response(
        StatusCode::OK,
        h,
        Body::from(w.finish("CopyPartResult")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_forms() {
        let s = parse_copy_source("bucket/some%20dir/key%3F.txt").unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.key.as_str(), s.version_id),
            ("bucket", "some dir/key?.txt", None)
        );
        let s = parse_copy_source("/bucket/a/b?versionId=3%2Fxyz").unwrap();
        assert_eq!((s.bucket.as_str(), s.key.as_str()), ("bucket", "a/b"));
        assert_eq!(s.version_id.as_deref(), Some("3/xyz"));
        let s = parse_copy_source("b/k%2Bplus").unwrap();
        assert_eq!(s.key, "k+plus");
        for bad in [
            "",
            "bucket",
            "/bucket",
            "bucket/",
            "/bucket/",
            "/key-only",
            "%ff/x",
        ] {
            let e = parse_copy_source(bad).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidArgument", "{bad}");
        }
        assert_eq!(
            parse_copy_source("bucket").unwrap_err().message(),
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        );
        assert_eq!(
            parse_copy_source("b/k?versionId=")
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidArgument"
        );
    }

    #[test]
    fn copy_source_range() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), (0, 9));
        assert_eq!(parse_copy_range("bytes=5-5", 10).unwrap(), (5, 5));
        for bad in [
            "0-9",
            "bytes=-9",
            "bytes=3-",
            "bytes=9-3",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "bits=0-1",
            "bytes=1",
        ] {
            let e = parse_copy_range(bad, 10).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidArgument", "{bad}");
            assert!(
                e.message()
                    .starts_with("The x-amz-copy-source-range value must be of the form"),
                "{bad}"
            );
        }
        let e = parse_copy_range("bytes=0-10", 10).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.message()),
            (
                "InvalidArgument",
                "Range specified is not valid for source object of size: 10"
            )
        );
        let e = parse_copy_range("bytes=10-12", 10).unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidRequest");
        assert_eq!(
            parse_copy_range("bytes=0-0", 0)
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidRequest"
        );
    }

    #[test]
    fn too_large_message() {
        assert_eq!(
            too_large().message(),
            "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
        );
    }
}
