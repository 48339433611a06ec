//! Server-side encryption: choosing the envelope of a new object version, unwrapping the data
//! key of an existing one, and the response headers that describe it.

use std::collections::BTreeMap;

use coffer_crypto::DataKey;
use coffer_meta::{BucketRecord, Envelope, SseAlgorithm, FORMAT_VERSION};
use http::HeaderMap;
use zeroize::Zeroizing;

use crate::error::{S3Error, S3Result};
use crate::s3_error;
use crate::state::AppState;

/// The encryption context key S3 binds every SSE-KMS data key to.
pub const S3_ARN_CONTEXT: &str = "aws:s3:arn";

/// A new object version's data key and the envelope that stores it wrapped.
pub struct ObjectKey {
    /// The plaintext data key; zeroized on drop.
    pub dek: DataKey,
    /// What is stored in meta.
    pub envelope: Envelope,
}

/// The encryption a request asked for (or the bucket default supplies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRequest {
    /// Algorithm.
    pub algorithm: SseAlgorithm,
    /// KMS key as the user named it (ID, ARN or alias), for SSE-KMS.
    pub kms_key_id: Option<String>,
    /// Extra encryption context (SSE-KMS).
    pub context: Option<BTreeMap<String, String>>,
    /// Wrap the data key with an S3 Bucket Key instead of a KMS call per object.
    pub bucket_key: bool,
    /// SSE-C: the customer's key.
    pub customer_key: Option<CustomerKey>,
}

/// A customer-provided key (SSE-C), zeroized on drop.
#[derive(Clone)]
pub struct CustomerKey {
    key: Zeroizing<[u8; 32]>,
    /// Base64 MD5 of the key, as sent and returned.
    pub md5_b64: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomerKey(md5={})", self.md5_b64)
    }
}

impl PartialEq for CustomerKey {
    fn eq(&self, other: &Self) -> bool {
        self.md5_b64 == other.md5_b64
    }
}

impl Eq for CustomerKey {}

/// Which header names carry an SSE-C key: the object's own, or a copy source's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CustomerKeyHeaders {
    /// `x-amz-server-side-encryption-customer-*`.
    Object,
    /// `x-amz-copy-source-server-side-encryption-customer-*`.
    CopySource,
}

/// Reads an SSE-C key from request headers; `None` when no SSE-C header is present.
pub fn customer_key(
    headers: &HeaderMap,
    which: CustomerKeyHeaders,
) -> S3Result<Option<CustomerKey>> {
    use base64::Engine;
    use md5::Digest;
    let prefix = match which {
        CustomerKeyHeaders::Object => "x-amz-server-side-encryption-customer-",
        CustomerKeyHeaders::CopySource => "x-amz-copy-source-server-side-encryption-customer-",
    };
    let h = |n: &str| {
        headers
            .get(format!("{prefix}{n}"))
            .and_then(|v| v.to_str().ok())
    };
    let (alg, key, md5) = (h("algorithm"), h("key"), h("key-md5"));
    if alg.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    match alg {
        Some("AES256") => {}
        Some(_) => {
            return Err(S3Error::new(
                crate::error::S3ErrorCode::InvalidEncryptionAlgorithmError,
                "The Encryption request you specified is not valid. Supported value: AES256.",
            ))
        }
        None => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
            ))
        }
    }
    let key = key.ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
        )
    })?;
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap_or_default(),
    );
    if raw.len() != 32 {
        return Err(s3_error!(
            InvalidArgument,
            "The secret key was invalid for the specified algorithm."
        ));
    }
    let computed =
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(raw.as_slice()));
    let md5 = md5.ok_or_else(|| {
        s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
        )
    })?;
    if md5 != computed {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&raw);
    Ok(Some(CustomerKey {
        key: k,
        md5_b64: computed,
    }))
}

const SSE_C_AAD: &str = "coffer/sse-c/v1|";

/// Reads `x-amz-server-side-encryption*` headers of a write, falling back to the bucket default.
pub fn requested(headers: &HeaderMap, bucket: &BucketRecord) -> S3Result<SseRequest> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(ck) = customer_key(headers, CustomerKeyHeaders::Object)? {
        if h("x-amz-server-side-encryption").is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
            ));
        }
        return Ok(SseRequest {
            algorithm: SseAlgorithm::SseC,
            kms_key_id: None,
            context: None,
            bucket_key: false,
            customer_key: Some(ck),
        });
    }
    let algorithm = match h("x-amz-server-side-encryption") {
        Some("AES256") => SseAlgorithm::Aes256,
        Some("aws:kms") => SseAlgorithm::AwsKms,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported"
            )
            .with_detail("ArgumentName", "x-amz-server-side-encryption")
            .with_detail("ArgumentValue", other))
        }
        None => {
            let default = bucket.encryption.as_ref();
            let algorithm = default
                .map(|d| d.sse_algorithm)
                .unwrap_or(SseAlgorithm::Aes256);
            let kms_key_id = default.and_then(|d| d.kms_master_key_id.clone());
            let bucket_key =
                algorithm == SseAlgorithm::AwsKms && default.is_some_and(|d| d.bucket_key_enabled);
            return Ok(SseRequest {
                algorithm,
                kms_key_id,
                context: None,
                bucket_key,
                customer_key: None,
            });
        }
    };
    let kms_key_id = h("x-amz-server-side-encryption-aws-kms-key-id").map(str::to_string);
    if kms_key_id.is_some() && algorithm != SseAlgorithm::AwsKms {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
        ));
    }
    let context = match h("x-amz-server-side-encryption-context") {
        None => None,
        Some(b64) => Some(parse_context(b64)?),
    };
    let bucket_key = match h("x-amz-server-side-encryption-bucket-key-enabled") {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => bucket
            .encryption
            .as_ref()
            .is_some_and(|d| d.bucket_key_enabled && d.sse_algorithm == algorithm),
    } && algorithm == SseAlgorithm::AwsKms;
    Ok(SseRequest {
        algorithm,
        kms_key_id,
        context,
        bucket_key,
        customer_key: None,
    })
}

fn parse_context(b64: &str) -> S3Result<BTreeMap<String, String>> {
    use base64::Engine;
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which represents a string-string map"
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

/// The S3 ARN of an object, bound as encryption context.
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

/// Generates the data key of a new object version and wraps it as `req` says.
pub async fn new_object_key(
    state: &AppState,
    bucket: &str,
    key: &str,
    req: &SseRequest,
) -> S3Result<ObjectKey> {
    let mut context = BTreeMap::new();
    if let Some(user) = &req.context {
        context.extend(user.clone());
    }
    context.insert(S3_ARN_CONTEXT.to_string(), object_arn(bucket, key));
    if let Some(ck) = &req.customer_key {
        let dek = DataKey::generate().map_err(crate::error::S3Error::internal)?;
        let salt: [u8; 16] =
            coffer_crypto::random_bytes().map_err(crate::error::S3Error::internal)?;
        let aad = format!("{SSE_C_AAD}{}", object_arn(bucket, key));
        let wrapped_dek = coffer_crypto::wrap::seal(&ck.key, dek.as_bytes(), aad.as_bytes())
            .map_err(crate::error::S3Error::internal)?;
        let envelope = Envelope {
            v: FORMAT_VERSION,
            algorithm: SseAlgorithm::SseC,
            kms_key_arn: None,
            wrapped_dek,
            context,
            user_context: None,
            bucket_key_id: None,
            second_wrapped_dek: None,
            sse_c_key_hmac: Some(coffer_crypto::hmac_sha256(&salt, ck.key.as_ref()).to_vec()),
            sse_c_salt: Some(salt.to_vec()),
            sse_c_key_md5: Some(ck.md5_b64.clone()),
            generation: 0,
        };
        return Ok(ObjectKey { dek, envelope });
    }
    let key_id = match req.algorithm {
        SseAlgorithm::Aes256 => state.config.sse_s3_key_arn.clone(),
        SseAlgorithm::AwsKms => match &req.kms_key_id {
            Some(k) => k.clone(),
            None => aws_managed_s3_key(state).await?,
        },
        _ => {
            return Err(s3_error!(
                NotImplemented,
                "A header you provided implies functionality that is not implemented"
            ))
        }
    };
    if req.bucket_key {
        let bk = crate::bucket_keys::active(state, bucket, &key_id).await?;
        let dek = DataKey::generate().map_err(crate::error::S3Error::internal)?;
        let wrapped_dek = bk.seal_dek(&dek, &object_arn(bucket, key))?;
        let envelope = Envelope {
            v: FORMAT_VERSION,
            algorithm: req.algorithm,
            kms_key_arn: Some(bk.kms_key_arn.clone()),
            wrapped_dek,
            context,
            user_context: req.context.clone(),
            bucket_key_id: Some(bk.id.clone()),
            second_wrapped_dek: None,
            sse_c_key_hmac: None,
            sse_c_salt: None,
            sse_c_key_md5: None,
            generation: 0,
        };
        return Ok(ObjectKey { dek, envelope });
    }
    let generated = state
        .kms
        .generate_data_key(&key_id, &context, coffer_crypto::DEK_LEN)
        .await?;
    let plaintext = generated
        .plaintext
        .ok_or_else(|| crate::error::S3Error::internal("KMS returned no plaintext data key"))?;
    let dek = DataKey::from_slice(&plaintext).map_err(crate::error::S3Error::internal)?;
    let envelope = Envelope {
        v: FORMAT_VERSION,
        algorithm: req.algorithm,
        kms_key_arn: Some(generated.key_id),
        wrapped_dek: generated.ciphertext_blob,
        context,
        user_context: req.context.clone(),
        bucket_key_id: None,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation: 0,
    };
    Ok(ObjectKey { dek, envelope })
}

/// The account's AWS-managed-style key for S3 (`alias/aws/s3`), created on first use.
pub async fn aws_managed_s3_key(state: &AppState) -> S3Result<String> {
    const ALIAS: &str = "alias/aws/s3";
    match state.kms.describe_key(ALIAS).await {
        Ok(meta) => Ok(meta.arn),
        Err(coffer_kms::KmsError::NotFound(_)) => {
            let meta = state
                .kms
                .create_key(coffer_kms::CreateKeyRequest {
                    description:
                        "Default key that protects my S3 objects when no other key is defined"
                            .into(),
                    aws_managed: true,
                    tags: BTreeMap::new(),
                })
                .await?;
            match state.kms.create_alias(ALIAS, &meta.key_id).await {
                Ok(()) => Ok(meta.arn),
                // Another request created it first: use theirs.
                Err(coffer_kms::KmsError::AlreadyExists(_)) => {
                    Ok(state.kms.describe_key(ALIAS).await?.arn)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Unwraps the data key of a version for a read: SSE-C objects need the customer's key in
/// `headers` (400 when missing, 403 when wrong — checked before any data is read); for others
/// SSE-C headers are refused.
pub async fn open_for_read(
    state: &AppState,
    envelope: &Envelope,
    headers: &HeaderMap,
    which: CustomerKeyHeaders,
) -> S3Result<DataKey> {
    let ck = customer_key(headers, which)?;
    if envelope.algorithm != SseAlgorithm::SseC {
        if ck.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The encryption parameters are not applicable to this object."
            ));
        }
        return open_object_key(state, envelope).await;
    }
    let ck = ck.ok_or_else(|| {
        s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )
    })?;
    check_customer_key(envelope, &ck)?;
    let arn = envelope
        .context
        .get(S3_ARN_CONTEXT)
        .cloned()
        .unwrap_or_default();
    let plain = coffer_crypto::wrap::open(
        &ck.key,
        &envelope.wrapped_dek,
        format!("{SSE_C_AAD}{arn}").as_bytes(),
    )
    .map_err(|_| s3_error!(AccessDenied, "Access Denied"))?;
    DataKey::from_slice(&plain).map_err(crate::error::S3Error::internal)
}

/// Rejects a wrong SSE-C key with 403 by its salted HMAC (constant-time), before any data is read.
pub fn check_customer_key(envelope: &Envelope, ck: &CustomerKey) -> S3Result<()> {
    let (Some(salt), Some(tag)) = (&envelope.sse_c_salt, &envelope.sse_c_key_hmac) else {
        return Err(crate::error::S3Error::internal(
            "SSE-C envelope without key fingerprint",
        ));
    };
    if !coffer_crypto::hmac_sha256_verify(salt, ck.key.as_ref(), tag) {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    Ok(())
}

/// Unwraps an existing version's data key (SSE-S3 / SSE-KMS; SSE-C needs [`open_for_read`]).
pub async fn open_object_key(state: &AppState, envelope: &Envelope) -> S3Result<DataKey> {
    if let Some(id) = &envelope.bucket_key_id {
        let bk = crate::bucket_keys::by_id(state, id).await?;
        let arn = envelope
            .context
            .get(S3_ARN_CONTEXT)
            .cloned()
            .unwrap_or_default();
        return bk.open_dek(&envelope.wrapped_dek, &arn);
    }
    match envelope.algorithm {
        SseAlgorithm::Aes256 | SseAlgorithm::AwsKms => {
            let d = state
                .kms
                .decrypt(
                    &envelope.wrapped_dek,
                    &envelope.context,
                    envelope.kms_key_arn.as_deref(),
                )
                .await?;
            DataKey::from_slice(&d.plaintext).map_err(crate::error::S3Error::internal)
        }
        _ => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented"
        )),
    }
}

/// The `x-amz-server-side-encryption*` response headers for an envelope.
pub fn response_headers(envelope: &Envelope) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match envelope.algorithm {
        SseAlgorithm::Aes256 => out.push(("x-amz-server-side-encryption", "AES256".to_string())),
        SseAlgorithm::AwsKms | SseAlgorithm::AwsKmsDsse => {
            let alg = if envelope.algorithm == SseAlgorithm::AwsKms {
                "aws:kms"
            } else {
                "aws:kms:dsse"
            };
            out.push(("x-amz-server-side-encryption", alg.to_string()));
            if let Some(arn) = &envelope.kms_key_arn {
                out.push(("x-amz-server-side-encryption-aws-kms-key-id", arn.clone()));
            }
            if envelope.bucket_key_id.is_some() {
                out.push((
                    "x-amz-server-side-encryption-bucket-key-enabled",
                    "true".to_string(),
                ));
            }
        }
        SseAlgorithm::SseC => {
            out.push((
                "x-amz-server-side-encryption-customer-algorithm",
                "AES256".to_string(),
            ));
            if let Some(md5) = &envelope.sse_c_key_md5 {
                out.push(("x-amz-server-side-encryption-customer-key-MD5", md5.clone()));
            }
        }
    }
    out
}

/// A new envelope for the same data key under `target_arn` (SSE-KMS), for UpdateObjectEncryption
/// and re-encryption jobs. Without Bucket Keys on either side this is one KMS ReEncrypt and the
/// plaintext data key never leaves the KMS. The caller sets the generation.
pub async fn rewrap(
    state: &AppState,
    bucket: &str,
    key: &str,
    env: &Envelope,
    target_arn: &str,
    bucket_key: bool,
) -> S3Result<Envelope> {
    let context = env.context.clone();
    let (kms_key_arn, wrapped_dek, bucket_key_id) = match (&env.bucket_key_id, bucket_key) {
        (None, false) => {
            let r = state
                .kms
                .re_encrypt(
                    &env.wrapped_dek,
                    &env.context,
                    env.kms_key_arn.as_deref(),
                    target_arn,
                    &context,
                )
                .await?;
            (r.key_id, r.ciphertext_blob, None)
        }
        (_, true) => {
            let dek = open_object_key(state, env).await?;
            let bk = crate::bucket_keys::active(state, bucket, target_arn).await?;
            let wrapped = bk.seal_dek(&dek, &object_arn(bucket, key))?;
            (bk.kms_key_arn.clone(), wrapped, Some(bk.id.clone()))
        }
        (Some(_), false) => {
            let dek = open_object_key(state, env).await?;
            let e = state
                .kms
                .encrypt(target_arn, dek.as_bytes(), &context)
                .await?;
            (e.key_id, e.ciphertext_blob, None)
        }
    };
    Ok(Envelope {
        v: FORMAT_VERSION,
        algorithm: SseAlgorithm::AwsKms,
        kms_key_arn: Some(kms_key_arn),
        wrapped_dek,
        context,
        user_context: env.user_context.clone(),
        bucket_key_id,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation: env.generation,
    })
}
