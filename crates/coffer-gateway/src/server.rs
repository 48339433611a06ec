//! The S3 listener: routing, authentication, dispatch, error rendering. (The admin listener is
//! served by the binary, crates/coffer/src/cmd/health.rs, with [`crate::jobs_api::router`].)

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderValue, Method, StatusCode};
use tokio::net::TcpListener;

use crate::directory;
use crate::error::{S3Error, S3ErrorCode, S3Result};
use crate::kms_api::{self, KmsApiState};
use crate::router::{self, Op};
use crate::s3::{
    bucket, bucket_encryption, copy, list, multipart, object, object_lock, update_encryption,
};
use crate::s3_error;
use crate::sigv4;
use crate::state::{AppState, ReqCtx};

/// Serves the S3 API (and the KMS JSON API routed by `X-Amz-Target`) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn request_id() -> String {
    let raw: [u8; 8] = coffer_crypto::random_bytes().unwrap_or_default();
    hex::encode_upper(raw)
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let (parts, body) = req.into_parts();
    let is_head = parts.method == Method::HEAD;
    let has_body = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    if parts.method == Method::POST && parts.headers.contains_key("x-amz-target") {
        // The KMS JSON API shares the port; it signs the body, so it authenticates on its own.
        let kms = KmsApiState {
            kms: state.kms.clone(),
            creds: state.creds.clone(),
            region: state.config.region.clone(),
        };
        let mut resp = kms_api::handle(&kms, parts, body).await;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
        state.metrics.observe(
            "KmsApi",
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        return resp;
    }
    let mut op_name = "Unknown";
    let result: S3Result<Response> = async {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        let endpoint = router::route(
            &parts.method,
            host.as_deref(),
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
            &state.config.domains,
        )?;
        op_name = endpoint.op.name();
        if endpoint.op == Op::UpdateObjectEncryption
            && parts
                .headers
                .get(http::header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes().starts_with(b"AWS "))
        {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                update_encryption::msg::SIGV4,
            ));
        }
        if sigv4::is_anonymous(&parts) {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        // Directory bucket clients sign for `s3express`; Zonal endpoint requests carry the
        // CreateSession token and are signed with the session's credentials.
        let service = directory::signing_service(&parts);
        let session = match parts
            .headers
            .get("x-amz-s3session-token")
            .and_then(|v| v.to_str().ok())
        {
            None => None,
            Some(token) => {
                let s = state.sessions.get(token).ok_or_else(|| {
                    s3_error!(AccessDenied, "The provided token has expired or is not valid.")
                })?;
                if endpoint.bucket.as_deref() != Some(s.bucket.as_str()) {
                    return Err(s3_error!(AccessDenied, "Access Denied"));
                }
                Some(s)
            }
        };
        let creds: &dyn sigv4::CredentialProvider = match &session {
            Some(s) => s.as_ref(),
            None => state.creds.as_ref(),
        };
        let auth = sigv4::verify(
            &parts,
            creds,
            &state.config.region,
            service,
            chrono::Utc::now(),
        )?;
        let mut parts = parts;
        if let Some(s) = &session {
            directory::apply_session(s, &endpoint, &mut parts.headers)?;
        }
        let directory_bucket = endpoint
            .bucket
            .as_deref()
            .is_some_and(directory::is_directory_name);
        if directory_bucket
            && endpoint.op == Op::PutBucketEncryption
            && parts.headers.contains_key("x-amz-expected-bucket-owner")
        {
            // Seed 001: "For directory buckets, this header is not supported in this API
            // operation. If you specify this header, the request fails with the HTTP status
            // code 501 Not Implemented."
            return Err(s3_error!(
                NotImplemented,
                "The x-amz-expected-bucket-owner header is not supported for directory buckets in this API operation."
            ));
        }
        if let Some(owner) = parts.headers.get("x-amz-expected-bucket-owner") {
            if owner.as_bytes() != state.config.account_id.as_bytes() {
                return Err(s3_error!(AccessDenied, "Access Denied"));
            }
        }
        let ctx = ReqCtx {
            state: state.clone(),
            request_id: request_id.clone(),
            endpoint,
            auth,
            parts,
        };
        dispatch(ctx, body).await
    }
    .await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            let mut r = error_response(&e, &request_id, is_head, op_name);
            // The body may be unread: close the connection rather than leave it to the pool.
            if has_body {
                r.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amz-request-id", v.clone());
        h.insert("x-amz-id-2", v);
    }
    h.insert(http::header::SERVER, HeaderValue::from_static("Coffer"));
    state.metrics.observe(
        op_name,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// Renders an error; HEAD responses and 304s carry no body.
fn error_response(e: &S3Error, request_id: &str, is_head: bool, op: &str) -> Response {
    if e.code() == S3ErrorCode::InternalError {
        tracing::error!(op, request_id, error = ?e, "internal error");
    } else {
        tracing::debug!(op, request_id, error = ?e, "request failed");
    }
    let status = e.code().status();
    let no_body = is_head || status == StatusCode::NOT_MODIFIED;
    let mut resp = if no_body {
        Response::new(Body::empty())
    } else {
        let mut r = Response::new(Body::from(e.to_xml(request_id)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        r
    };
    *resp.status_mut() = status;
    for (name, value) in e.headers() {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(*name, v);
        }
    }
    resp
}

async fn dispatch(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    use Op::*;
    match ctx.endpoint.op {
        ListBuckets => bucket::list(ctx).await,
        CreateBucket => bucket::create(ctx, body).await,
        HeadBucket => bucket::head(ctx).await,
        DeleteBucket => bucket::delete(ctx).await,
        GetBucketLocation => bucket::location(ctx).await,
        GetBucketVersioning => bucket::get_versioning(ctx).await,
        PutBucketVersioning => bucket::put_versioning(ctx, body).await,
        ListObjects => list::list_objects(ctx, false).await,
        ListObjectsV2 => list::list_objects(ctx, true).await,
        ListObjectVersions => list::list_versions(ctx).await,
        DeleteObjects => list::delete_objects(ctx, body).await,
        PutObject => object::put(ctx, body).await,
        GetObject => object::get(ctx, false).await,
        HeadObject => object::get(ctx, true).await,
        DeleteObject => object::delete(ctx).await,
        GetBucketEncryption => bucket_encryption::get(ctx).await,
        PutBucketEncryption => bucket_encryption::put(ctx, body).await,
        DeleteBucketEncryption => bucket_encryption::delete(ctx).await,
        UpdateObjectEncryption => update_encryption::handle(ctx, body).await,
        GetObjectRetention => object_lock::get_retention(ctx).await,
        PutObjectRetention => object_lock::put_retention(ctx, body).await,
        GetObjectLegalHold => object_lock::get_legal_hold(ctx).await,
        PutObjectLegalHold => object_lock::put_legal_hold(ctx, body).await,
        GetObjectLockConfiguration => object_lock::get_config(ctx).await,
        PutObjectLockConfiguration => object_lock::put_config(ctx, body).await,
        CopyObject => copy::copy_object(ctx).await,
        CreateMultipartUpload => multipart::create(ctx).await,
        UploadPart => multipart::upload_part(ctx, body).await,
        UploadPartCopy => copy::upload_part_copy(ctx).await,
        CompleteMultipartUpload => multipart::complete(ctx, body).await,
        AbortMultipartUpload => multipart::abort(ctx).await,
        ListParts => multipart::list_parts(ctx).await,
        ListMultipartUploads => multipart::list_uploads(ctx).await,
        CreateSession => directory::create_session(ctx).await,
        op => Err(s3_error!(
            NotImplemented,
            "A header or query you provided requested a function that is not implemented: {}",
            op.name()
        )),
    }
}

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        error_response(&self, "0", false, "Unknown")
    }
}
