//! A small Vault / OpenBao HTTP client: token auth, a timeout on every call, bounded retries
//! when the connection cannot be made, and zeroized request and response bodies.
//!
//! Only connection failures are retried: the request never reached Vault, so retrying a
//! non-idempotent call (encrypt, rotate) is safe. A timeout or a failure after sending is
//! reported as [`KmsError::Unavailable`] at once. Vault's answers, whatever their status, are
//! returned as a [`Response`] for the caller to interpret.
//!
//! Zeroizing is best effort: our copies of bodies are wiped on drop, hyper's own read and write
//! buffers are not.

use std::time::Duration;

use bytes::Buf;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KmsError;

/// Attempts per call when the connection cannot be made.
const ATTEMPTS: u32 = 3;
/// Backoff before the second attempt; doubled before each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Largest response body read (a LIST of many keys is the largest answer we expect).
const MAX_BODY: usize = 64 << 20;

/// A request or response body that is zeroized on drop.
pub(super) struct SecretBody {
    bytes: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl Buf for SecretBody {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    fn advance(&mut self, cnt: usize) {
        self.pos = (self.pos + cnt).min(self.bytes.len());
    }
}

/// Serializes `value` as JSON into a zeroizing buffer sized exactly, so no reallocation
/// leaves an unwiped copy of a plaintext behind.
pub(super) fn json_body<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let encode_err = |e: serde_json::Error| KmsError::Internal(format!("encoding request: {e}"));
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(encode_err)?;
    let mut out = Zeroizing::new(Vec::with_capacity(count.0));
    serde_json::to_writer(&mut *out, value).map_err(encode_err)?;
    Ok(out)
}

/// Vault's answer: status and body (zeroized on drop).
pub(super) struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// The raw body.
    pub body: Zeroizing<Vec<u8>>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl Response {
    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The `data` member of a successful answer.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, KmsError> {
        serde_json::from_slice::<Envelope<T>>(&self.body)
            .map(|e| e.data)
            .map_err(|e| KmsError::Internal(format!("unexpected answer from Vault: {e}")))
    }

    /// Vault's `errors`, joined (empty when there are none).
    pub fn errors(&self) -> String {
        serde_json::from_slice::<Errors>(&self.body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default()
    }

    /// The error for an answer the caller did not expect: `Unavailable` when Vault is sealed,
    /// overloaded or behind a failing proxy, `Internal` otherwise (including permission denied,
    /// a configuration error of the token's policy).
    pub fn unexpected(&self, what: &str) -> KmsError {
        let msg = format!("Vault {what}: HTTP {}: {}", self.status, self.errors());
        match self.status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => KmsError::Unavailable(msg),
            _ => KmsError::Internal(msg),
        }
    }
}

/// A connection to one Vault server, authenticated by a token. Cheap to share.
pub(super) struct Vault {
    client: Client<HttpConnector, Full<SecretBody>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: HeaderValue,
    namespace: Option<HeaderValue>,
    timeout: Duration,
}

impl Vault {
    /// A client of the Vault at `address` (`http://host[:port]`). No request is made.
    pub fn new(
        address: &str,
        token: &str,
        namespace: Option<&str>,
        timeout: Duration,
    ) -> Result<Vault, KmsError> {
        let uri: Uri = address
            .parse()
            .map_err(|e| KmsError::Validation(format!("invalid Vault address '{address}': {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(KmsError::Validation(format!(
                    "Vault address '{address}': https is not supported by this build; reach \
                     Vault over a loopback or private http listener (or a local TLS-terminating \
                     agent)"
                )))
            }
            _ => {
                return Err(KmsError::Validation(format!(
                    "Vault address '{address}' must start with http://"
                )))
            }
        }
        if uri.host().is_none() || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(KmsError::Validation(format!(
                "Vault address '{address}' must be http://host[:port]"
            )));
        }
        if token.is_empty() {
            return Err(KmsError::Validation("the Vault token is empty".into()));
        }
        let mut token = HeaderValue::from_str(token)
            .map_err(|_| KmsError::Validation("the Vault token is not a valid header".into()))?;
        token.set_sensitive(true);
        let namespace = namespace
            .map(|n| {
                HeaderValue::from_str(n)
                    .map_err(|_| KmsError::Validation(format!("invalid Vault namespace '{n}'")))
            })
            .transpose()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(3))));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Vault {
            client,
            base: address.trim_end_matches('/').to_owned(),
            token,
            namespace,
            timeout,
        })
    }

    /// `GET /v1/<path>` (`path` may carry a query such as `?list=true`).
    pub async fn get(&self, path: &str) -> Result<Response, KmsError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST /v1/<path>` with a JSON body.
    pub async fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<Response, KmsError> {
        let body = json_body(body)?;
        self.call(Method::POST, path, Some(&body)).await
    }

    /// `DELETE /v1/<path>`.
    pub async fn delete(&self, path: &str) -> Result<Response, KmsError> {
        self.call(Method::DELETE, path, None).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Zeroizing<Vec<u8>>>,
    ) -> Result<Response, KmsError> {
        let uri = format!("{}/v1/{path}", self.base);
        // The path without its query, for messages.
        let what = path.split('?').next().unwrap_or(path);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let req = self.request(&method, &uri, body)?;
            match tokio::time::timeout(self.timeout, self.send(req)).await {
                Ok(Ok(resp)) => {
                    tracing::debug!(%method, path = what, status = %resp.status, "vault call");
                    return Ok(resp);
                }
                Ok(Err(SendError::Connect(e))) if attempt < ATTEMPTS => {
                    tracing::debug!(%method, path = what, attempt, error = %e, "vault connect failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Ok(Err(e)) => {
                    return Err(KmsError::Unavailable(format!(
                        "Vault at {} is unreachable ({method} /v1/{what}): {e}",
                        self.base
                    )))
                }
                Err(_) => {
                    return Err(KmsError::Unavailable(format!(
                        "Vault at {} did not answer {method} /v1/{what} within {:?}",
                        self.base, self.timeout
                    )))
                }
            }
        }
    }

    fn request(
        &self,
        method: &Method,
        uri: &str,
        body: Option<&Zeroizing<Vec<u8>>>,
    ) -> Result<Request<Full<SecretBody>>, KmsError> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("X-Vault-Token", self.token.clone());
        if let Some(ns) = &self.namespace {
            b = b.header("X-Vault-Namespace", ns.clone());
        }
        if body.is_some() {
            b = b.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let bytes = body.cloned().unwrap_or_default();
        b.body(Full::new(SecretBody { bytes, pos: 0 }))
            .map_err(|e| KmsError::Internal(format!("building a Vault request: {e}")))
    }

    async fn send(&self, req: Request<Full<SecretBody>>) -> Result<Response, SendError> {
        let resp = self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(error_chain(&e))
            } else {
                SendError::Other(error_chain(&e))
            }
        })?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut out = Zeroizing::new(Vec::new());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| SendError::Other(error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > MAX_BODY {
                    return Err(SendError::Other(format!(
                        "response body over {MAX_BODY} bytes"
                    )));
                }
                // Grow by copying into a fresh zeroizing buffer, so no unwiped copy remains.
                if out.capacity() < out.len() + data.len() {
                    let mut bigger = Zeroizing::new(Vec::with_capacity(
                        (out.len() + data.len()).max(out.capacity() * 2),
                    ));
                    bigger.extend_from_slice(&out);
                    out = bigger;
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Response { status, body: out })
    }
}

enum SendError {
    /// The connection could not be made; the request was not sent.
    Connect(String),
    /// Anything else: the request may have reached Vault.
    Other(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connection failed: {e}"),
            SendError::Other(e) => f.write_str(e),
        }
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_tokens_are_checked() {
        let t = Duration::from_secs(1);
        assert!(Vault::new("http://127.0.0.1:8200", "tok", None, t).is_ok());
        assert!(Vault::new("http://vault.internal:8200/", "tok", Some("ns1"), t).is_ok());
        for bad in [
            "https://127.0.0.1:8200",
            "127.0.0.1:8200",
            "ftp://x",
            "http://h/v1/x",
        ] {
            let r = Vault::new(bad, "tok", None, t);
            assert!(matches!(r, Err(KmsError::Validation(_))), "{bad}");
        }
        assert!(Vault::new("http://127.0.0.1:8200", "", None, t).is_err());
        assert!(Vault::new("http://127.0.0.1:8200", "bad\ntoken", None, t).is_err());
    }

    #[test]
    fn json_body_is_exact_and_secret_body_drains() {
        let v = serde_json::json!({"plaintext": "aGVsbG8=", "n": 1});
        let b = json_body(&v).unwrap();
        assert_eq!(b.capacity(), b.len());
        assert_eq!(&b[..], serde_json::to_vec(&v).unwrap().as_slice());
        let mut s = SecretBody {
            bytes: b.clone(),
            pos: 0,
        };
        assert_eq!(s.remaining(), b.len());
        s.advance(3);
        assert_eq!(s.chunk(), &b[3..]);
        s.advance(usize::MAX / 2);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn unexpected_statuses() {
        let r = |status: u16, body: &str| Response {
            status: StatusCode::from_u16(status).unwrap(),
            body: Zeroizing::new(body.as_bytes().to_vec()),
        };
        let sealed = r(503, r#"{"errors":["Vault is sealed"]}"#);
        assert!(matches!(sealed.unexpected("x"), KmsError::Unavailable(_)));
        assert!(sealed.unexpected("x").message().contains("Vault is sealed"));
        assert!(matches!(
            r(403, r#"{"errors":["permission denied"]}"#).unexpected("x"),
            KmsError::Internal(_)
        ));
        assert_eq!(r(500, "not json").errors(), "");
    }
}
