//! The AWS KMS JSON 1.1 HTTP API (`POST /`, `X-Amz-Target: TrentService.<Op>`, SigV4 with
//! service `kms`): served on `coffer dev`'s S3 port (routed by the header, as local AWS emulators
//! do) and alone by the `coffer kms` role ([`serve`]).
//!
//! AWS KMS clients sign the SHA-256 of the JSON body without sending `x-amz-content-sha256`, so
//! the body is read (it is small and bounded) before the signature is checked.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use coffer_kms::Kms;
use http::{HeaderValue, Method, StatusCode};
use tokio::net::TcpListener;

use crate::error::{S3Error, S3ErrorCode};
use crate::sigv4::{self, CredentialProvider};

/// The largest request body accepted: KMS requests carry at most 4 KiB of plaintext or a
/// 6 KiB ciphertext blob, base64-encoded, plus a few fields.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// What the KMS HTTP API needs: the keys, who may sign, and the region of the signing scope.
#[derive(Clone)]
pub struct KmsApiState {
    /// The KMS the API drives.
    pub kms: Arc<dyn Kms>,
    /// Who may sign requests.
    pub creds: Arc<dyn CredentialProvider>,
    /// The region requests are signed for.
    pub region: String,
}

/// Serves only the KMS JSON API until `shutdown` resolves (the `coffer kms` role).
pub async fn serve(
    listener: TcpListener,
    state: KmsApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(
            |State(state): State<KmsApiState>, req: Request| async move {
                let (parts, body) = req.into_parts();
                let mut resp = handle(&state, parts, body).await;
                let id = uuid::Uuid::new_v4().to_string();
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert("x-amzn-requestid", v);
                }
                resp
            },
        )
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Authenticates and answers one KMS JSON API request; every failure is a KMS JSON error.
pub async fn handle(state: &KmsApiState, parts: http::request::Parts, body: Body) -> Response {
    match authenticate_and_dispatch(state, parts, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn authenticate_and_dispatch(
    state: &KmsApiState,
    parts: http::request::Parts,
    body: Body,
) -> Result<Response, S3Error> {
    if parts.method != Method::POST {
        return Err(S3Error::new(
            S3ErrorCode::MethodNotAllowed,
            "The KMS API accepts only POST requests",
        ));
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let op = target
        .strip_prefix(coffer_kms::json_api::TARGET_PREFIX)
        .ok_or_else(|| {
            S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!("Unknown operation {target}"),
            )
        })?
        .to_string();
    if sigv4::is_anonymous(&parts) {
        return Err(S3Error::new(
            S3ErrorCode::AccessDenied,
            "Request is missing Authentication Token",
        ));
    }
    let raw = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|_| {
            S3Error::new(
                S3ErrorCode::InvalidRequest,
                format!("The request body is larger than {MAX_REQUEST_BODY} bytes or unreadable"),
            )
        })?;
    sigv4::verify_with_body(
        &parts,
        &raw,
        state.creds.as_ref(),
        &state.region,
        "kms",
        chrono::Utc::now(),
    )?;
    let (status, json) = coffer_kms::json_api::dispatch(state.kms.as_ref(), &op, &raw).await;
    Ok(json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        json,
    ))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}

/// Errors before the KMS was reached (routing, authentication), as AWS KMS names them.
fn error_response(e: &S3Error) -> Response {
    let (name, status) = match e.code() {
        S3ErrorCode::SignatureDoesNotMatch => {
            ("InvalidSignatureException", StatusCode::BAD_REQUEST)
        }
        S3ErrorCode::InvalidAccessKeyId => ("UnrecognizedClientException", StatusCode::BAD_REQUEST),
        S3ErrorCode::AccessDenied if e.message().contains("Authentication Token") => (
            "MissingAuthenticationTokenException",
            StatusCode::BAD_REQUEST,
        ),
        S3ErrorCode::AccessDenied => ("AccessDeniedException", StatusCode::BAD_REQUEST),
        S3ErrorCode::RequestTimeTooSkewed => ("InvalidSignatureException", StatusCode::BAD_REQUEST),
        S3ErrorCode::MethodNotAllowed => ("UnknownOperationException", StatusCode::BAD_REQUEST),
        S3ErrorCode::InternalError => ("KMSInternalException", StatusCode::INTERNAL_SERVER_ERROR),
        _ => ("ValidationException", StatusCode::BAD_REQUEST),
    };
    let body = serde_json::json!({ "__type": name, "message": e.message() }).to_string();
    json_response(status, body.into_bytes())
}
