//! PutObject, GetObject, HeadObject, DeleteObject.

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use coffer_meta::{
    Checksum, Command, ObjectVersion, PartRef, Versioning, WriteCondition, FORMAT_VERSION,
};
use http::StatusCode;

use super::common::*;
use super::data::{self, BlobSink};
use crate::error::{S3Error, S3ErrorCode, S3Result};
use crate::http::body::{expectations_from_headers, BodyReader, BodySummary};
use crate::s3_error;
use crate::sse;
use crate::state::ReqCtx;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Streams a request body into a new blob under `keys`; verifies every digest before returning.
/// On any error the blob is discarded, so nothing is stored.
pub async fn store_body(
    ctx: &ReqCtx,
    body: Body,
    keys: &sse::DataKeys,
    part_number: u32,
    max_len: u64,
) -> S3Result<(PartRef, BodySummary)> {
    let exp = expectations_from_headers(&ctx.parts.headers, max_len)?;
    let mut reader = BodyReader::new(body, &ctx.parts.headers, &ctx.auth.payload, exp)?;
    let mut sink = BlobSink::create(&ctx.state, keys, part_number).await?;
    let result: S3Result<BodySummary> = async {
        while let Some(chunk) = reader.next().await? {
            ctx.state.metrics.bytes_in.inc_by(chunk.len() as u64);
            sink.write(&chunk).await?;
        }
        reader.finish().await
    }
    .await;
    match result {
        Ok(summary) => {
            let mut part = sink.finish().await?;
            part.etag = hex::encode(summary.md5);
            part.checksum = summary.checksum.as_ref().map(|(_, raw)| B64.encode(raw));
            Ok((part, summary))
        }
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    }
}

/// The checksum record of a single-part object.
pub fn full_object_checksum(summary: &BodySummary) -> Option<Checksum> {
    summary.checksum.as_ref().map(|(alg, raw)| Checksum {
        algorithm: alg.as_str().to_string(),
        value: B64.encode(raw),
        checksum_type: "FULL_OBJECT".to_string(),
    })
}

/// Response headers that report a stored checksum.
pub fn checksum_headers(c: &Checksum) -> Vec<(&'static str, String)> {
    let name = match c.algorithm.as_str() {
        "CRC32" => "x-amz-checksum-crc32",
        "CRC32C" => "x-amz-checksum-crc32c",
        "CRC64NVME" => "x-amz-checksum-crc64nvme",
        "SHA1" => "x-amz-checksum-sha1",
        _ => "x-amz-checksum-sha256",
    };
    vec![
        (name, c.value.clone()),
        ("x-amz-checksum-type", c.checksum_type.clone()),
    ]
}

/// Reads `If-None-Match: *` / `If-Match` of a write.
pub fn write_condition(ctx: &ReqCtx) -> S3Result<Option<WriteCondition>> {
    match (ctx.header("if-none-match"), ctx.header("if-match")) {
        (Some("*"), None) => Ok(Some(WriteCondition::IfNoneMatchStar)),
        (Some(_), _) => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented"
        )
        .with_detail("Header", "If-None-Match")),
        (None, Some(etag)) => Ok(Some(WriteCondition::IfMatch(
            etag.trim().trim_matches('"').to_string(),
        ))),
        (None, None) => Ok(None),
    }
}

/// PutObject.
pub async fn put(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let state = ctx.state.clone();
    check_key(ctx.key())?;
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    sse::refuse_blocked_sse_c(&ctx, &bucket)?;
    let headers = object_headers(&ctx.parts.headers)?;
    let condition = write_condition(&ctx)?;
    let sse_req = sse::requested(&ctx.parts.headers, &bucket)?;
    let version_id = version_id_for(&bucket)?;
    let (retention, legal_hold) = super::object_lock::lock_for_new_object(&ctx, &bucket)?;
    let okey = sse::new_object_key(&state, ctx.bucket(), ctx.key(), &sse_req).await?;
    let (part, summary) = store_body(&ctx, body, &okey.keys, 0, state.config.max_put_size).await?;
    let checksum = full_object_checksum(&summary);
    let version = ObjectVersion {
        v: FORMAT_VERSION,
        key: ctx.key().to_string(),
        version_id,
        seq: 0,
        delete_marker: false,
        size: summary.len,
        etag: part.etag.clone(),
        last_modified_ms: now_ms(),
        headers,
        checksum: checksum.clone(),
        parts: vec![part.clone()],
        envelope: Some(okey.envelope.clone()),
        retention,
        legal_hold,
        multipart_parts: 0,
    };
    let version_id = version.version_id.clone();
    let cmd = Command::PutObject {
        bucket: ctx.bucket().to_string(),
        version,
        condition,
    };
    let out = match state.meta.apply(cmd).await {
        Ok(out) => out,
        Err(e) => {
            data::discard_unreferenced(&state.blobs, &[part.blob_id], &e).await;
            return Err(e.into());
        }
    };
    data::delete_blobs(&state.blobs, &out.freed_blobs).await;
    let mut h = vec![("etag", quote(&part.etag))];
    h.extend(sse::response_headers(&okey.envelope));
    h.extend(sse::context_header(&okey.envelope, ctx.bucket()));
    if bucket.versioning != Versioning::Unversioned {
        h.push(("x-amz-version-id", version_id));
    }
    if let Some(c) = &checksum {
        h.extend(checksum_headers(c));
    }
    Ok(response(StatusCode::OK, h, Body::empty()))
}

/// Looks up the version a GET/HEAD names; a delete marker answers as S3 does.
pub async fn find_version(ctx: &ReqCtx, version_id: Option<&str>) -> S3Result<ObjectVersion> {
    let v = ctx
        .state
        .meta
        .get_object(ctx.bucket(), ctx.key(), version_id)
        .await?;
    if v.delete_marker {
        let e = if version_id.is_some() {
            s3_error!(
                MethodNotAllowed,
                "The specified method is not allowed against this resource."
            )
            .with_header("x-amz-delete-marker", "true")
            .with_header("x-amz-version-id", v.version_id.clone())
            .with_header("last-modified", crate::xml::http_date(v.last_modified_ms))
        } else {
            s3_error!(NoSuchKey, "The specified key does not exist.")
                .with_detail("Key", ctx.key())
                .with_header("x-amz-delete-marker", "true")
                .with_header("x-amz-version-id", v.version_id.clone())
        };
        return Err(e);
    }
    Ok(v)
}

/// GetObject (`head` = HeadObject: same headers, no body).
pub async fn get(ctx: ReqCtx, head: bool) -> S3Result<Response> {
    let state = ctx.state.clone();
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    let version_id = version_param(ctx.query("versionId")).map(str::to_string);
    let v = find_version(&ctx, version_id.as_deref()).await?;
    check_conditions(&ctx.parts.headers, &GET_CONDITIONS, &v, false)?;
    let env = v
        .envelope
        .as_ref()
        .ok_or_else(|| S3Error::internal("object version without envelope"))?;
    if ctx.header("x-amz-server-side-encryption").is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption header is not supported for this operation."
        ));
    }
    // SSE-C: the key is checked (400 missing, 403 wrong) before anything else is returned.
    let keys = if head && env.algorithm != coffer_meta::SseAlgorithm::SseC {
        None
    } else {
        Some(
            sse::open_for_read(
                &state,
                env,
                &ctx.parts.headers,
                sse::CustomerKeyHeaders::Object,
            )
            .await?,
        )
    };

    // Which bytes: a part number, a Range, or everything.
    let mut range: Option<(u64, u64)> = None;
    let mut part_count_header = None;
    if let Some(pn) = ctx.query("partNumber") {
        let pn: u32 = pn
            .parse()
            .ok()
            .filter(|n| (1..=10000).contains(n))
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "Part number must be an integer between 1 and 10000, inclusive"
                )
            })?;
        if ctx.header("range").is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        let (start, len, count) = if v.multipart_parts == 0 {
            if pn != 1 {
                return Err(s3_error!(
                    InvalidPartNumber,
                    "The requested partnumber is not satisfiable"
                ));
            }
            (0, v.size, 1)
        } else {
            let idx = (pn - 1) as usize;
            let part = v.parts.get(idx).ok_or_else(|| {
                s3_error!(
                    InvalidPartNumber,
                    "The requested partnumber is not satisfiable"
                )
            })?;
            let start: u64 = v.parts[..idx].iter().map(|p| p.size).sum();
            (start, part.size, v.multipart_parts)
        };
        part_count_header = Some(count);
        if len > 0 {
            range = Some((start, start + len - 1));
        }
    } else if let Some(r) = ctx.header("range") {
        match crate::http::range::parse_range(r, v.size) {
            Ok(r) => range = r,
            Err(e) => return Err(e.with_header("content-range", format!("bytes */{}", v.size))),
        }
    }

    let mut h = version_headers(&bucket, &v);
    override_headers(&ctx, &mut h)?;
    let (status, start, end) = match range {
        Some((s, e)) => {
            h.push(("content-range", format!("bytes {s}-{e}/{}", v.size)));
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
        None => (StatusCode::OK, 0, v.size.saturating_sub(1)),
    };
    let len = if v.size == 0 { 0 } else { end + 1 - start };
    h.push(("content-length", len.to_string()));
    if let Some(n) = part_count_header {
        h.push(("x-amz-mp-parts-count", n.to_string()));
    }
    if ctx.header("x-amz-checksum-mode") == Some("ENABLED") && range.is_none() {
        if let Some(c) = &v.checksum {
            h.extend(checksum_headers(c));
        }
    }
    let body = match keys {
        Some(keys) if !head && len > 0 => {
            // The first piece is read before the status goes out, so a blob store that cannot
            // be reached answers 503 rather than a 200 whose body breaks.
            use futures::StreamExt;
            let mut stream = Box::pin(data::read_range(state.blobs.clone(), &v, keys, start, end));
            let first = match stream.next().await {
                Some(Err(e)) => return Err(first_read_error(e)),
                first => first,
            };
            state.metrics.bytes_out.inc_by(len);
            Body::from_stream(futures::stream::iter(first).chain(stream))
        }
        _ => Body::empty(),
    };
    let mut resp = response(status, h, body);
    add_user_metadata(&mut resp, &v);
    Ok(resp)
}

/// The error of a GET whose first read failed: a blob store error keeps its meaning (503 when
/// the store cannot be reached), anything else is internal.
fn first_read_error(e: std::io::Error) -> S3Error {
    match e
        .into_inner()
        .map(|inner| inner.downcast::<coffer_blob::BlobError>())
    {
        Some(Ok(blob)) => S3Error::from(*blob),
        Some(Err(other)) => S3Error::internal(other),
        None => S3Error::internal("blob read failed"),
    }
}

/// `response-*` query parameters override stored headers (signed requests only).
fn override_headers(ctx: &ReqCtx, h: &mut Vec<(&'static str, String)>) -> S3Result<()> {
    const OVERRIDES: &[(&str, &str)] = &[
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ];
    for (param, header) in OVERRIDES {
        if let Some(value) = ctx.query(param) {
            h.retain(|(n, _)| n != header);
            h.push((header, value.to_string()));
        }
    }
    Ok(())
}

/// DeleteObject.
pub async fn delete(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    let version_id = version_param(ctx.query("versionId")).map(str::to_string);
    let bypass = ctx
        .header("x-amz-bypass-governance-retention")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let out = delete_one(&ctx, &bucket, ctx.key(), version_id, bypass).await?;
    let mut h = Vec::new();
    if out.delete_marker {
        h.push(("x-amz-delete-marker", "true".to_string()));
    }
    if let Some(v) = out.version_id {
        if bucket.versioning != Versioning::Unversioned {
            h.push(("x-amz-version-id", v));
        }
    }
    Ok(response(StatusCode::NO_CONTENT, h, Body::empty()))
}

/// Deletes one key or version (shared with DeleteObjects).
pub async fn delete_one(
    ctx: &ReqCtx,
    bucket: &coffer_meta::BucketRecord,
    key: &str,
    version_id: Option<String>,
    bypass_governance: bool,
) -> S3Result<coffer_meta::CommandOutput> {
    let marker_version_id = match bucket.versioning {
        Versioning::Enabled => new_version_id()?,
        _ => "null".to_string(),
    };
    let cmd = Command::DeleteObject {
        bucket: bucket.name.clone(),
        key: key.to_string(),
        version_id,
        marker_version_id,
        now_ms: now_ms(),
        bypass_governance,
    };
    let out = ctx.state.meta.apply(cmd).await.map_err(|e| match e {
        coffer_meta::MetaError::NoSuchVersion(v) => {
            S3Error::new(S3ErrorCode::InvalidArgument, "Invalid version id specified")
                .with_detail("ArgumentName", "versionId")
                .with_detail("ArgumentValue", v)
        }
        other => other.into(),
    })?;
    data::delete_blobs(&ctx.state.blobs, &out.freed_blobs).await;
    Ok(out)
}
